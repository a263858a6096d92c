//! [`Server`]: accepts connections on any [`Acceptor`] and runs a session for each.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chinwag_transport::{Acceptor, Offer, PeerAddr, TransportError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{Codec, Encoded};
use crate::driver;
use crate::handle::CLOSING;
use crate::{CloseCause, OverflowPolicy, Refusal, SendError, Service, Session, SessionConfig};

/// Settings of a [`Server`].
///
/// | field | default |
/// |---|---|
/// | [`admission_timeout`](Self::admission_timeout) | 5 s |
/// | [`max_admissions`](Self::max_admissions) | 1 024 |
/// | [`accept_backoff_initial`](Self::accept_backoff_initial) | 5 ms |
/// | [`accept_backoff_max`](Self::accept_backoff_max) | 1 s |
/// | [`session`](Self::session) | [`SessionConfig::default()`] |
///
/// With the `serde` feature it reads from a table of these fields (the session's as a
/// `session` table), as [`SessionConfig`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long [`Service::admit`] may take for one connection; past it the connection is
    /// refused with `503` (WebSocket; byte streams are closed). Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub admission_timeout: Duration,
    /// Admissions running at once; past it a new connection is refused with `503` at once
    /// (rather than queued), so a flood of slow admissions cannot pile up. Default 1 024.
    pub max_admissions: usize,
    /// The first pause after an accept error such as `EMFILE` (out of file descriptors); it
    /// doubles per consecutive error up to [`accept_backoff_max`](Self::accept_backoff_max)
    /// and resets after a successful accept. Default 5 ms. Errors that concern only one
    /// connection (a failed TLS handshake, a connection reset before accept) do not back off.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub accept_backoff_initial: Duration,
    /// The longest pause between accept attempts after errors. Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub accept_backoff_max: Duration,
    /// Settings of every session.
    pub session: SessionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            admission_timeout: Duration::from_secs(5),
            max_admissions: 1024,
            accept_backoff_initial: Duration::from_millis(5),
            accept_backoff_max: Duration::from_secs(1),
            session: SessionConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Sets [`admission_timeout`](Self::admission_timeout).
    pub fn with_admission_timeout(mut self, admission_timeout: Duration) -> Self {
        self.admission_timeout = admission_timeout;
        self
    }

    /// Sets [`max_admissions`](Self::max_admissions).
    pub fn with_max_admissions(mut self, max_admissions: usize) -> Self {
        self.max_admissions = max_admissions;
        self
    }

    /// Sets [`accept_backoff_initial`](Self::accept_backoff_initial).
    pub fn with_accept_backoff_initial(mut self, accept_backoff_initial: Duration) -> Self {
        self.accept_backoff_initial = accept_backoff_initial;
        self
    }

    /// Sets [`accept_backoff_max`](Self::accept_backoff_max).
    pub fn with_accept_backoff_max(mut self, accept_backoff_max: Duration) -> Self {
        self.accept_backoff_max = accept_backoff_max;
        self
    }

    /// Sets [`session`](Self::session).
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }
}

/// What a [`ServerHandle::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Sessions that were open when the shutdown began.
    pub sessions: usize,
    /// Of those, sessions whose queues were not fully written before the deadline.
    pub undrained: usize,
}

/// What a [`broadcast`] did, session by session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Sessions that queued the message.
    pub queued: usize,
    /// Sessions whose full queue did not take it (`DropNewest`, or `Block`, which a broadcast
    /// never waits for); they stay open.
    pub dropped: usize,
    /// Sessions closed by their `Close` policy because their queue was full.
    pub overflowed: usize,
    /// Sessions that were closing or closed already.
    pub closed: usize,
}

impl BroadcastReport {
    /// Sessions that did not queue the message.
    pub fn failed(&self) -> usize {
        self.dropped + self.overflowed + self.closed
    }
}

/// `Retry-After` for refusals because the server is busy.
const BUSY_RETRY: Duration = Duration::from_secs(1);

struct Shared<C: Codec> {
    sessions: Mutex<HashMap<u64, Session<C>>>,
    /// Admissions in progress (`ServerConfig::max_admissions`).
    admissions: Arc<Semaphore>,
    /// Cancelled by `shutdown`: the accept loop stops.
    stop: CancellationToken,
    /// Every session task, so `shutdown` can wait for the last one to end.
    tasks: TaskTracker,
    local_addr: Option<PeerAddr>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server: accepts on one [`Acceptor`] (TCP, TLS, Unix, WebSocket through either engine,
/// [`UdpAcceptor`](chinwag_transport::udp::UdpAcceptor), pipes) and runs a session per connection.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts accepting on `acceptor` in a new task; every connection becomes a session with
    /// `codec` and `handler`. Returns the handle that lists, broadcasts to and shuts down the
    /// sessions.
    ///
    /// Must be called inside a Tokio runtime. The server runs until
    /// [`ServerHandle::shutdown`] (or until the acceptor reports
    /// [`TransportError::Closed`]); dropping the handle does not stop it.
    pub fn spawn<A, C, H>(
        acceptor: A,
        codec: C,
        handler: H,
        config: ServerConfig,
    ) -> ServerHandle<C>
    where
        A: Acceptor,
        C: Codec,
        H: Service<C>,
    {
        let shared = Arc::new(Shared {
            sessions: Mutex::new(HashMap::new()),
            admissions: Arc::new(Semaphore::new(config.max_admissions.max(1))),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            local_addr: acceptor.local_addr(),
        });
        let accept_task = tokio::spawn(accept_loop(
            acceptor,
            Arc::new(codec),
            Arc::new(handler),
            Arc::new(config.session.clone()),
            config,
            shared.clone(),
        ));
        ServerHandle {
            shared,
            accept_task: Arc::new(Mutex::new(Some(accept_task))),
        }
    }
}

/// Whether an accept error concerns only one connection (no backoff) rather than the process
/// or the listener (back off: e.g. `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`).
fn per_connection(e: &TransportError) -> bool {
    match e {
        TransportError::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        ),
        _ => true,
    }
}

async fn accept_loop<A, C, H>(
    mut acceptor: A,
    codec: Arc<C>,
    handler: Arc<H>,
    session_config: Arc<SessionConfig>,
    config: ServerConfig,
    shared: Arc<Shared<C>>,
) where
    A: Acceptor,
    C: Codec,
    H: Service<C>,
{
    let mut backoff = config.accept_backoff_initial;
    loop {
        // The connection limit is the acceptor's budget (see
        // `chinwag_transport::ConnectionBudget`): it counts every socket from accept to close
        // and refuses past it, so no second limit is kept here.
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => break,
            r = acceptor.offer() => r,
        };
        let offer = match accepted {
            Ok(t) => {
                backoff = config.accept_backoff_initial;
                t
            }
            Err(TransportError::Closed) => {
                tracing::debug!("acceptor closed; server stops accepting");
                break;
            }
            Err(e) if per_connection(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "accept failed; backing off");
                tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.accept_backoff_max);
                continue;
            }
        };
        // Admissions run in their own tasks (one may wait on a database), at most
        // `max_admissions` at once; past that the connection is refused as busy at once.
        let Ok(admitting) = shared.admissions.clone().try_acquire_owned() else {
            tracing::debug!(peer = %offer.info().peer(), "admissions at their limit; refusing");
            shared.tasks.spawn(offer.refuse(Refusal::unavailable(
                "server busy: too many connections being admitted; retry later",
                BUSY_RETRY,
            )));
            continue;
        };
        let session = Session::new(
            offer.info().peer().clone(),
            offer.framing(),
            codec.clone(),
            session_config.clone(),
        );
        // The connection is pending in its acceptor's budget until established: an eviction
        // from now on closes the session (or ends its admission). Services without a sign-in
        // step establish it here, as admission starts (its handshakes are done), so a burst of
        // connections waiting for admission cannot evict one another.
        if let Some(p) = offer.permit() {
            session.attach_permit(p.clone());
        }
        if handler.establish_on_admit() {
            session.establish();
        }
        let handler = handler.clone();
        let shared2 = shared.clone();
        // What only the admission uses goes in one box: a task keeps what its future captured
        // for its whole life, and these (the offer above all) are spent once admitted.
        let admission = Box::new((offer, admitting, config.admission_timeout));
        shared.tasks.spawn(async move {
            // The admission's futures (the service's `admit`, the engine's handshake answer)
            // live in their own allocation, freed before the session runs: the task then keeps
            // only the session's own future for the connection's whole life.
            let Some((transport, state)) = Box::pin(admit(&session, admission, &*handler)).await
            else {
                return;
            };
            let id = session.id();
            lock(&shared2.sessions).insert(id, session.clone());
            if shared2.stop.is_cancelled() {
                // Admitted while the server shuts down (after it listed its sessions).
                session.close_with(CloseCause::Shutdown, None);
            }
            driver::run(session, transport, handler, state).await;
            lock(&shared2.sessions).remove(&id);
        });
    }
    // Dropping the acceptor closes the listener: new connections are refused from here on.
    drop(acceptor);
}

/// Admits one offered connection (`admission`: the offer, its admission slot and the
/// admission timeout): the service's [`admit`](Service::admit) within the timeout (ended
/// early by an eviction), then the transport's answer. Refuses and ends the session
/// otherwise (`None`). Releases the admission slot once the service decided.
async fn admit<O, C, H>(
    session: &Session<C>,
    admission: Box<(O, OwnedSemaphorePermit, Duration)>,
    handler: &H,
) -> Option<(O::Conn, H::State)>
where
    O: Offer,
    C: Codec,
    H: Service<C>,
{
    let (offer, admitting, timeout) = *admission;
    let decided = tokio::select! {
        biased;
        d = tokio::time::timeout(timeout, handler.admit(session, offer.info())) => d,
        // Evicted (or closed) while admission ran.
        () = session.wait_state(CLOSING) => Ok(Err(Refusal::unavailable(
            if session.close_cause() == Some(CloseCause::Evicted) {
                "server busy: evicted before signing in; retry later"
            } else {
                "closed during admission; retry later"
            },
            BUSY_RETRY,
        ))),
    };
    drop(admitting);
    let admission = match decided {
        Ok(Ok(a)) => a,
        Ok(Err(refusal)) => {
            offer.refuse(refusal.clone()).await;
            driver::not_admitted(session, refusal);
            return None;
        }
        Err(_) => {
            let refusal = Refusal::unavailable("admission timed out; retry later", BUSY_RETRY);
            offer.refuse(refusal.clone()).await;
            driver::not_admitted(session, refusal);
            return None;
        }
    };
    match offer.admit(admission.subprotocol).await {
        Ok(t) => Some((t, admission.state)),
        Err(e) => {
            tracing::debug!(error = %e, "admitted connection lost before it started");
            driver::not_admitted(session, Refusal::new(499, e.to_string()));
            None
        }
    }
}

/// Controls a running [`Server`]. Cheap to clone.
pub struct ServerHandle<C: Codec> {
    shared: Arc<Shared<C>>,
    accept_task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl<C: Codec> Clone for ServerHandle<C> {
    fn clone(&self) -> Self {
        ServerHandle {
            shared: self.shared.clone(),
            accept_task: self.accept_task.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for ServerHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.shared.local_addr)
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl<C: Codec> ServerHandle<C> {
    /// The acceptor's local address.
    pub fn local_addr(&self) -> Option<&PeerAddr> {
        self.shared.local_addr.as_ref()
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Handles of the sessions open now.
    pub fn sessions(&self) -> Vec<Session<C>> {
        lock(&self.shared.sessions).values().cloned().collect()
    }

    /// The session with `id`, if open.
    pub fn session(&self, id: u64) -> Option<Session<C>> {
        lock(&self.shared.sessions).get(&id).cloned()
    }

    /// Queues one already encoded message on every open session without waiting on any; see
    /// [`broadcast`]. Encode once with [`Codec::encode`] for the server's framing.
    pub fn broadcast(&self, msg: &Encoded) -> BroadcastReport {
        broadcast(&self.sessions(), msg)
    }

    /// Graceful shutdown: stops accepting (the listener is closed), asks every session to
    /// close with [`CloseCause::Shutdown`] — each writes what it has queued, then closes
    /// (WebSocket code 1001) — and waits until all sessions have ended. Sessions still
    /// writing at `now + deadline` are dropped. Returns when everything has ended.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let until = Instant::now() + deadline;
        self.shared.stop.cancel();
        let task = lock(&self.accept_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let sessions = self.sessions();
        for s in &sessions {
            s.close_with(CloseCause::Shutdown, Some(until));
        }
        let mut undrained = 0;
        for s in &sessions {
            s.closed().await;
            if s.queue_len() > 0 {
                undrained += 1;
            }
        }
        // Every session task has fully ended (transport dropped, callbacks run).
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        ShutdownReport {
            sessions: sessions.len(),
            undrained,
        }
    }
}

/// Queues `msg` (encoded once; its frames are shared) on every session in `sessions`, never
/// waiting on any of them: the time it takes does not depend on any receiver, however stalled.
/// A session whose queue is full is handled by its own overflow policy (`DropOldest` makes
/// room, `DropNewest` drops this message, `Close` closes it); under `Block` the message is
/// dropped for that session rather than waited for. Use [`broadcast_with`] to impose one
/// policy on this call.
pub fn broadcast<'a, C: Codec>(
    sessions: impl IntoIterator<Item = &'a Session<C>>,
    msg: &Encoded,
) -> BroadcastReport {
    fan_out(sessions, msg, None)
}

/// As [`broadcast`], under `policy` for every session instead of each session's own.
pub fn broadcast_with<'a, C: Codec>(
    sessions: impl IntoIterator<Item = &'a Session<C>>,
    msg: &Encoded,
    policy: OverflowPolicy,
) -> BroadcastReport {
    fan_out(sessions, msg, Some(policy))
}

fn fan_out<'a, C: Codec>(
    sessions: impl IntoIterator<Item = &'a Session<C>>,
    msg: &Encoded,
    policy: Option<OverflowPolicy>,
) -> BroadcastReport {
    let mut report = BroadcastReport::default();
    for s in sessions {
        let policy = policy.unwrap_or_else(|| s.overflow_policy());
        match s.try_send_encoded_with(msg.clone(), policy) {
            Ok(()) => report.queued += 1,
            Err(SendError::Dropped | SendError::Timeout) => report.dropped += 1,
            Err(SendError::Overflow) => report.overflowed += 1,
            Err(SendError::Closed | SendError::Codec(_)) => report.closed += 1,
        }
    }
    report
}
