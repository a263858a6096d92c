//! [`Client`]: a pool of sessions to one server, dialled by a user-supplied connector and
//! reconnected with exponential backoff and full jitter.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chinwag_transport::{Transport, TransportError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::Codec;
use crate::driver;
use crate::{CloseCause, ConnectInfo, Service, Session, SessionConfig};

/// When and how a [`Client`] dials again.
///
/// | field | default |
/// |---|---|
/// | [`initial_backoff`](Self::initial_backoff) | 100 ms |
/// | [`max_backoff`](Self::max_backoff) | 30 s |
/// | [`max_attempts`](Self::max_attempts) | `Some(10)` |
/// | [`reconnect_after_clean_close`](Self::reconnect_after_clean_close) | `false` |
///
/// The pause before attempt *n* (counting from 0 after a session ended or a dial failed) is
/// drawn uniformly from `0 ..= min(max_backoff, initial_backoff × 2ⁿ)` ("full jitter"), so a
/// thousand clients of a restarted server do not come back in lockstep.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The backoff cap of the first attempt. Default 100 ms.
    pub initial_backoff: Duration,
    /// The largest backoff cap. Default 30 s.
    pub max_backoff: Duration,
    /// Consecutive failed dials after which a pool slot gives up (and logs once). `None`
    /// retries forever — getty did that and flooded logs; think twice. Default `Some(10)`.
    /// `Some(0)` never redials after the first dial failed or a session ended.
    pub max_attempts: Option<u32>,
    /// Whether to reconnect after a clean close ([`CloseCause::is_clean`]: we closed, or the
    /// peer closed with code 1000 or ended its byte stream). Default `false`: a server that
    /// says goodbye means it. Note that on byte streams (TCP, TLS, Unix) a server's graceful
    /// shutdown is an end of stream and therefore clean; set this for such clients that must
    /// survive server restarts.
    pub reconnect_after_clean_close: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_attempts: Some(10),
            reconnect_after_clean_close: false,
        }
    }
}

impl ReconnectPolicy {
    /// The backoff cap for attempt `n` (0-based): `min(max, initial × 2ⁿ)`.
    pub fn cap(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// Sets [`initial_backoff`](Self::initial_backoff).
    pub fn with_initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets [`max_backoff`](Self::max_backoff).
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`reconnect_after_clean_close`](Self::reconnect_after_clean_close).
    pub fn with_reconnect_after_clean_close(mut self, reconnect_after_clean_close: bool) -> Self {
        self.reconnect_after_clean_close = reconnect_after_clean_close;
        self
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Sessions kept open at once (each slot dials and redials on its own). Default 1. Values
    /// below 1 act as 1.
    pub pool_size: usize,
    /// Reconnection.
    pub reconnect: ReconnectPolicy,
    /// Settings of every session.
    pub session: SessionConfig,
}

impl ClientConfig {
    /// The default configuration with `pool_size` sessions.
    pub fn with_pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// Sets [`reconnect`](Self::reconnect).
    pub fn with_reconnect(mut self, reconnect: ReconnectPolicy) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Sets [`session`](Self::session).
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }
}

struct Shared<C: Codec> {
    live: Mutex<Vec<Session<C>>>,
    next: AtomicUsize,
    /// Cancelled by `shutdown`: slots stop dialling.
    stop: CancellationToken,
    /// The slot tasks (closed once all are spawned, so `wait` ends when the last slot does).
    slots: TaskTracker,
    dials: AtomicU64,
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool of sessions to one server. Cheap to clone.
///
/// Each of [`ClientConfig::pool_size`] slots dials with the connector, runs a session until it
/// ends, and dials again per the [`ReconnectPolicy`]. The connector is any closure returning a
/// future of a [`Transport`], so one client type serves TCP, TLS, Unix, UDP, WebSocket
/// through either engine, and pipes.
pub struct Client<C: Codec> {
    shared: Arc<Shared<C>>,
}

impl<C: Codec> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("live", &lock(&self.shared.live).len())
            .field("dials", &self.dial_count())
            .finish()
    }
}

impl<C: Codec> Client<C> {
    /// Starts the pool: every slot dials at once (in its own task). Must be called inside a
    /// Tokio runtime. The slots run until they stop by policy or [`shutdown`](Self::shutdown);
    /// dropping the `Client` does not stop them.
    pub fn spawn<F, Fut, T, H>(connect: F, codec: C, handler: H, config: ClientConfig) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
        T: Transport,
        H: Service<C>,
    {
        let slots = config.pool_size.max(1);
        let shared = Arc::new(Shared {
            live: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            slots: TaskTracker::new(),
            dials: AtomicU64::new(0),
            changed: Notify::new(),
        });
        let connect = Arc::new(connect);
        let codec = Arc::new(codec);
        let handler = Arc::new(handler);
        let policy = Arc::new(config.reconnect);
        let session_config = Arc::new(config.session);
        for slot in 0..slots {
            shared.slots.spawn(slot_loop(
                slot,
                connect.clone(),
                codec.clone(),
                handler.clone(),
                policy.clone(),
                session_config.clone(),
                shared.clone(),
            ));
        }
        shared.slots.close();
        Client { shared }
    }

    /// Sessions open now.
    pub fn sessions(&self) -> Vec<Session<C>> {
        lock(&self.shared.live).clone()
    }

    /// One open session, round robin; `None` while none is open.
    pub fn session(&self) -> Option<Session<C>> {
        let live = lock(&self.shared.live);
        if live.is_empty() {
            return None;
        }
        let i = self.shared.next.fetch_add(1, Ordering::Relaxed) % live.len();
        Some(live[i].clone())
    }

    /// Dials made so far (successful or not), over all slots.
    pub fn dial_count(&self) -> u64 {
        self.shared.dials.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` sessions are open (or every slot has stopped; then returns
    /// false).
    pub async fn wait_open(&self, n: usize) -> bool {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if lock(&self.shared.live).len() >= n {
                return true;
            }
            if self.shared.slots.is_empty() {
                return false;
            }
            tokio::select! {
                _ = changed => {}
                _ = self.shared.slots.wait() => {}
            }
        }
    }

    /// Slots still running (dialling, connected or waiting to redial).
    pub fn running_slots(&self) -> usize {
        self.shared.slots.len()
    }

    /// Waits until every slot has stopped (gave up, or a clean close it does not reconnect
    /// after, or [`shutdown`](Self::shutdown)).
    pub async fn stopped(&self) {
        self.shared.slots.wait().await;
    }

    /// Stops redialling and closes every session cleanly (queues drained within
    /// `deadline`), then waits for all slots to stop.
    pub async fn shutdown(&self, deadline: Duration) {
        self.shared.stop.cancel();
        let until = tokio::time::Instant::now() + deadline;
        for s in self.sessions() {
            s.close_with(CloseCause::Local, Some(until));
        }
        self.stopped().await;
    }
}

/// A uniformly random value in `0..=bound` (full jitter).
fn random_below(bound: u64) -> u64 {
    rand::random_range(0..=bound)
}

async fn slot_loop<F, Fut, T, C, H>(
    slot: usize,
    connect: Arc<F>,
    codec: Arc<C>,
    handler: Arc<H>,
    policy: Arc<ReconnectPolicy>,
    session_config: Arc<SessionConfig>,
    shared: Arc<Shared<C>>,
) where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
    T: Transport,
    C: Codec,
    H: Service<C>,
{
    // Consecutive failures (failed dials, or sessions that ended) since the last open.
    let mut attempt: u32 = 0;
    let mut first = true;
    loop {
        if shared.stop.is_cancelled() {
            break;
        }
        if !first {
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                tracing::warn!(
                    slot,
                    attempts = attempt,
                    "client slot gives up reconnecting"
                );
                break;
            }
            let cap = policy.cap(attempt);
            let pause = Duration::from_nanos(random_below(cap.as_nanos() as u64));
            tokio::select! {
                _ = shared.stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
            if shared.stop.is_cancelled() {
                break;
            }
        }
        first = false;
        shared.dials.fetch_add(1, Ordering::Relaxed);
        let transport = tokio::select! {
            _ = shared.stop.cancelled() => break,
            r = connect() => r,
        };
        let transport = match transport {
            Ok(t) => t,
            Err(e) => {
                attempt = attempt.saturating_add(1);
                tracing::debug!(slot, attempt, error = %e, "client dial failed");
                continue;
            }
        };
        attempt = 0;
        let session = Session::new(
            transport.peer_addr(),
            transport.framing(),
            codec.clone(),
            session_config.clone(),
        );
        let info = ConnectInfo::new(transport.peer_addr());
        let state = match handler.admit(&session, &info).await {
            Ok(a) => a.state,
            Err(refusal) => {
                // Our own side refused the connection it dialled: back off as after a refusal.
                driver::not_admitted(&session, refusal);
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        lock(&shared.live).push(session.clone());
        shared.changed.notify_waiters();
        let id = session.id();
        let cause = driver::run(session, transport, handler.clone(), state).await;
        lock(&shared.live).retain(|s| s.id() != id);
        shared.changed.notify_waiters();
        if shared.stop.is_cancelled() {
            break;
        }
        if matches!(cause, CloseCause::Refused(_)) {
            // A server that refuses us at once must not be redialled in a tight loop.
            attempt = attempt.saturating_add(1);
        }
        if cause.is_clean() && !policy.reconnect_after_clean_close {
            tracing::debug!(slot, %cause, "clean close; not reconnecting");
            break;
        }
        tracing::debug!(slot, %cause, "session ended; reconnecting");
    }
    // `wait_open` also waits on the tracker, which counts this slot until the task returns.
}
