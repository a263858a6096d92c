//! The peer handle and the connection driver: requests out, handlers in, on one session.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::codec::{CodecError, WireCodec};
use chinwag_session::{
    Admission, ByteBudget, Charge, CloseCause, ConnectInfo, Encoded, OverflowPolicy, Refusal,
    SendError, Service, Session, SessionError,
};
use chinwag_wire::{Message, Name, ProtocolErrorCode, RequestId};
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::RpcConfig;
use crate::error::{Disconnect, HandlerError, RpcError};
use crate::handlers::{Handlers, Heartbeat, OpHandler};
use crate::stream::{RequestStream, ResultSink, ResultStream, StreamWriter};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An answer routed to a waiting request.
#[derive(Debug)]
pub(crate) enum Reply {
    Single(Bytes),
    Part(Bytes),
    End,
    Error(String),
    Retry { wait: Duration, text: String },
}

/// A request waiting for its answer; dropping it forgets the request (frees its id).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) peer: Peer,
    pub(crate) id: RequestId,
    pub(crate) rx: mpsc::Receiver<Reply>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.peer.inner.pending).remove(&self.id);
    }
}

struct Inner {
    session: Session<WireCodec>,
    config: Arc<RpcConfig>,
    handlers: RwLock<Arc<Handlers>>,
    next_id: AtomicU32,
    pending: Mutex<HashMap<RequestId, mpsc::Sender<Reply>>>,
    streams_in: Mutex<HashMap<RequestId, mpsc::Sender<(Bytes, Charge)>>>,
    /// Bytes of requests being handled and answers not yet written (a child of the server's).
    budget: ByteBudget,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    notes: OnceLock<mpsc::Sender<(Name, Bytes, Charge)>>,
    closed: AtomicBool,
    reason: Mutex<Option<Disconnect>>,
    heartbeat: Mutex<Option<Heartbeat>>,
    stats: [AtomicU64; 4],
    /// Notifications handed to the notification task, and those it has handled (run, ignored
    /// or panicked): [`Peer::notifications_drained`] waits for the two to meet.
    notes_queued: AtomicU64,
    notes_handled: AtomicU64,
    notes_idle: tokio::sync::Notify,
}

const SENT: usize = 0;
const RETRIES_RECEIVED: usize = 1;
const SERVED: usize = 2;
const RETRIES_SENT: usize = 3;

/// Counters of one RPC connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcStats {
    /// Requests we sent (each retry counts again).
    pub requests_sent: u64,
    /// RetryResults the peer answered our requests with.
    pub retries_received: u64,
    /// Requests (single and stream) whose handler we ran.
    pub requests_served: u64,
    /// Requests we answered with a RetryResult because we were at our limit.
    pub retries_sent: u64,
    /// Our requests waiting for an answer now.
    pub pending: usize,
}

/// One RPC connection, from either end: call the other side ([`request`](Self::request),
/// [`notify`](Self::notify), streams) and serve it (the [`Handlers`] in force).
///
/// Cheap to clone and usable from many tasks at once: requests, notifications and streams are
/// multiplexed over the one connection and never wait for each other (each request waits
/// only for its own answer).
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("session", &self.inner.session.id())
            .field("peer", self.inner.session.peer_addr())
            .finish()
    }
}

impl Peer {
    fn new(
        session: Session<WireCodec>,
        config: Arc<RpcConfig>,
        handlers: Arc<Handlers>,
        server_budget: &ByteBudget,
    ) -> Self {
        Peer {
            inner: Arc::new(Inner {
                budget: server_budget.child(config.max_in_flight_bytes),
                requests: Arc::new(Semaphore::new(config.max_requests.max(1))),
                streams: Arc::new(Semaphore::new(config.max_streams.max(1))),
                session,
                config,
                handlers: RwLock::new(handlers),
                next_id: AtomicU32::new(0),
                pending: Mutex::new(HashMap::new()),
                streams_in: Mutex::new(HashMap::new()),
                notes: OnceLock::new(),
                closed: AtomicBool::new(false),
                reason: Mutex::new(None),
                heartbeat: Mutex::new(None),
                stats: Default::default(),
                notes_queued: AtomicU64::new(0),
                notes_handled: AtomicU64::new(0),
                notes_idle: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The session carrying this connection (stats, attributes, peer address, close
    /// callbacks).
    pub fn session(&self) -> &Session<WireCodec> {
        &self.inner.session
    }

    /// The settings in force.
    pub fn config(&self) -> &RpcConfig {
        &self.inner.config
    }

    /// Replaces the handlers serving this connection (for instance a child of the server's
    /// set, see [`Handlers::with_parent`], after the peer signed in).
    pub fn set_handlers(&self, handlers: Arc<Handlers>) {
        *self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handlers;
    }

    /// The handlers serving this connection.
    pub fn handlers(&self) -> Arc<Handlers> {
        self.inner
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection's counters.
    pub fn stats(&self) -> RpcStats {
        let n = |i: usize| self.inner.stats[i].load(Ordering::Relaxed);
        RpcStats {
            requests_sent: n(SENT),
            retries_received: n(RETRIES_RECEIVED),
            requests_served: n(SERVED),
            retries_sent: n(RETRIES_SENT),
            pending: lock(&self.inner.pending).len(),
        }
    }

    fn count(&self, i: usize) {
        self.inner.stats[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The last heartbeat the peer sent, if any.
    pub fn last_heartbeat(&self) -> Option<Heartbeat> {
        *lock(&self.inner.heartbeat)
    }

    /// Requests `op` with `value` as JSON and decodes the JSON result.
    ///
    /// # Errors
    ///
    /// See [`RpcError`]: the peer's error result, overload after retries, timeout, a closed
    /// connection, or JSON that does not fit.
    pub async fn request<Req, Res>(&self, op: &str, value: &Req) -> Result<Res, RpcError>
    where
        Req: Serialize + ?Sized,
        Res: DeserializeOwned,
    {
        let payload = serde_json::to_vec(value).map_err(RpcError::json)?;
        let res = self.request_bytes(op, payload).await?;
        serde_json::from_slice(&res).map_err(RpcError::json)
    }

    /// Requests `op` with a raw payload and returns the raw result. A streamed result is
    /// collected into one value (bounded by the payload limit). Retries after RetryResults,
    /// honouring the peer's wait, up to [`RpcConfig::max_retries`] times; the whole call is
    /// bounded by [`RpcConfig::request_timeout`]. Dropping the future forgets the request.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub async fn request_bytes(
        &self,
        op: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        let payload = payload.into();
        let op = Name::new(op)?;
        self.with_timeout(async {
            let (pending, first) = self.call(&op, &payload).await?;
            ResultStream::with_first(pending, first).collect().await
        })
        .await
    }

    /// Sends a single request, waiting and retrying after RetryResults (up to
    /// [`RpcConfig::max_retries`] times, waits up to [`RpcConfig::max_retry_wait`]); returns
    /// the request and its first answer that is not a RetryResult.
    async fn call(&self, op: &Name, payload: &Bytes) -> Result<(Pending, Reply), RpcError> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut pending = self.register()?;
            self.count(SENT);
            self.send_msg(&Message::SingleRequest {
                id: pending.id,
                op: op.clone(),
                payload: payload.clone(),
            })
            .await?;
            match pending.rx.recv().await {
                None => return Err(self.closed_error()),
                Some(Reply::Retry { wait, text }) => {
                    if attempts > self.inner.config.max_retries
                        || wait > self.inner.config.max_retry_wait
                    {
                        return Err(RpcError::Overloaded {
                            attempts,
                            wait,
                            message: text,
                        });
                    }
                    drop(pending);
                    tokio::time::sleep(wait).await;
                }
                Some(first) => return Ok((pending, first)),
            }
        }
    }

    /// Requests `op` and returns its result as a stream of chunks (for operations that answer
    /// with a streamed result; a single result is a stream of one chunk). Retries after
    /// RetryResults like [`request_bytes`](Self::request_bytes) until the first chunk arrives;
    /// the timeout covers the wait for the first chunk.
    ///
    /// # Errors
    ///
    /// See [`RpcError`].
    pub async fn request_stream(
        &self,
        op: &str,
        payload: impl Into<Bytes>,
    ) -> Result<ResultStream, RpcError> {
        let payload = payload.into();
        let op = Name::new(op)?;
        self.with_timeout(async {
            let (pending, first) = self.call(&op, &payload).await?;
            Ok(ResultStream::with_first(pending, first))
        })
        .await
    }

    /// Starts a stream request: `first` is its first chunk; write more with the returned
    /// [`StreamWriter`] and end it; read the answer (single or streamed) from the
    /// [`ResultStream`]. Stream requests are not retried (their chunks are gone): an overloaded
    /// peer's RetryResult ends the result stream with [`RpcError::Overloaded`].
    ///
    /// # Errors
    ///
    /// The connection is closed or the send queue refused the request.
    pub async fn stream_request(
        &self,
        op: &str,
        first: impl Into<Bytes>,
    ) -> Result<(StreamWriter, ResultStream), RpcError> {
        let op = Name::new(op)?;
        let pending = self.register()?;
        self.count(SENT);
        let id = pending.id;
        self.send_msg(&Message::StreamRequest {
            id,
            op,
            payload: first.into(),
        })
        .await?;
        Ok((
            StreamWriter::new(self.clone(), id),
            ResultStream::new(pending),
        ))
    }

    /// Sends notification `name` with `value` as JSON (never answered).
    ///
    /// # Errors
    ///
    /// JSON encoding failed, the connection is closed, or the send queue refused it.
    pub async fn notify<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), RpcError> {
        let payload = serde_json::to_vec(value).map_err(RpcError::json)?;
        self.notify_bytes(name, payload).await
    }

    /// Sends notification `name` with a raw payload.
    ///
    /// # Errors
    ///
    /// The connection is closed or the send queue refused it.
    pub async fn notify_bytes(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), RpcError> {
        let name = Name::new(name)?;
        self.send_msg(&Message::Notification {
            name,
            payload: payload.into(),
        })
        .await
    }

    /// Closes the connection cleanly: what is queued is sent first; pending requests fail
    /// with [`Disconnect::Clean`].
    pub fn close(&self) {
        self.set_reason(Disconnect::Clean);
        self.inner.session.close();
    }

    /// Waits until the connection has closed and returns why.
    pub async fn closed(&self) -> Disconnect {
        let cause = self.inner.session.closed().await;
        self.reason_or(&cause)
    }

    /// Waits until the connection has closed **and** every notification that arrived before
    /// the close has been handled, then returns why it closed. A client whose server says
    /// goodbye in a last notification (the chat protocol's `bye`) learns it this way without a
    /// race: [`closed`](Self::closed) can resolve while that notification still waits for its
    /// handler.
    pub async fn notifications_drained(&self) -> Disconnect {
        let why = self.closed().await;
        loop {
            let mut idle = std::pin::pin!(self.inner.notes_idle.notified());
            idle.as_mut().enable();
            let queued = self.inner.notes_queued.load(Ordering::Acquire);
            if self.inner.notes_handled.load(Ordering::Acquire) >= queued {
                return why;
            }
            idle.await;
        }
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<Disconnect> {
        if let Some(r) = lock(&self.inner.reason).clone() {
            return Some(r);
        }
        self.inner.session.close_cause().map(|c| self.reason_or(&c))
    }

    // --- internals --------------------------------------------------------------------------

    fn reason_or(&self, cause: &CloseCause) -> Disconnect {
        if let Some(r) = lock(&self.inner.reason).clone() {
            return r;
        }
        match cause {
            c if c.is_clean() => Disconnect::Clean,
            CloseCause::IdleTimeout => Disconnect::Timeout,
            CloseCause::ProtocolError(m) => Disconnect::ProtocolError {
                code: ProtocolErrorCode::INVALID_MSG.0,
                detail: m.clone(),
            },
            other => Disconnect::Session(other.clone()),
        }
    }

    fn set_reason(&self, r: Disconnect) {
        let mut slot = lock(&self.inner.reason);
        if slot.is_none() {
            *slot = Some(r);
        }
    }

    pub(crate) fn closed_error(&self) -> RpcError {
        RpcError::Closed(self.close_reason().unwrap_or(Disconnect::Closing))
    }

    async fn with_timeout<T>(
        &self,
        fut: impl Future<Output = Result<T, RpcError>>,
    ) -> Result<T, RpcError> {
        match self.inner.config.request_timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or(Err(RpcError::Timeout(t))),
        }
    }

    /// Registers a new request id and its answer channel.
    fn register(&self) -> Result<Pending, RpcError> {
        let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer.max(1));
        let mut map = lock(&self.inner.pending);
        if self.inner.closed.load(Ordering::Acquire) {
            drop(map);
            return Err(self.closed_error());
        }
        // The Go style: a little-endian counter. Skip ids still in use after a wrap-around.
        let id = loop {
            let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let id = RequestId(n.to_le_bytes());
            if !map.contains_key(&id) {
                break id;
            }
        };
        map.insert(id, tx);
        drop(map);
        Ok(Pending {
            peer: self.clone(),
            id,
            rx,
        })
    }

    pub(crate) async fn send_msg(&self, msg: &Message) -> Result<(), RpcError> {
        self.inner.session.send(msg).await.map_err(|e| match e {
            _ if self.inner.session.is_closing() => self.closed_error(),
            SendError::Codec(c) => RpcError::Encode(Arc::new(c)),
            other => RpcError::Queue(Arc::new(other)),
        })
    }

    /// Queues an answer (result, error, retry, stream part): it waits for room in the send
    /// queue up to [`RpcConfig::reply_timeout`] whatever the session's overflow policy, and is
    /// never dropped. One that cannot be queued in time closes the connection (the peer is not
    /// reading; it then knows every outstanding request failed). `charge` is released once the
    /// answer is written.
    pub(crate) async fn send_reply(
        &self,
        msg: &Message,
        charge: Option<Charge>,
    ) -> Result<(), RpcError> {
        let session = &self.inner.session;
        let enc = session
            .encode(msg)
            .map_err(|e| RpcError::Encode(Arc::new(e)))?;
        let policy = OverflowPolicy::Block {
            timeout: self.inner.config.reply_timeout,
        };
        let sent = match charge {
            Some(mut c) => {
                // The answer holds at least its own size until written.
                c.grow_to(enc.len());
                session.send_charged(enc, c, policy).await
            }
            None => session.send_encoded_with(enc, policy).await,
        };
        match sent {
            Ok(()) => Ok(()),
            Err(SendError::Closed) => Err(self.closed_error()),
            Err(e) => {
                tracing::debug!(session = session.id(), error = %e, "an answer could not be queued; closing");
                self.set_reason(Disconnect::NotReading);
                session.close_with(CloseCause::Overflow, None);
                Err(self.closed_error())
            }
        }
    }

    pub(crate) fn try_send_msg(&self, msg: &Message) {
        if let Ok(enc) = self.inner.session.encode(msg) {
            let _ = self.inner.session.try_send_encoded(enc);
        }
    }

    /// Our load for heartbeats: the share of request slots in use, 0 (idle) ..= 0xffff.
    pub fn load(&self) -> u16 {
        let max = self.inner.config.max_requests.max(1);
        let used = max.saturating_sub(self.inner.requests.available_permits());
        ((used as u64 * 0xffff) / max as u64) as u16
    }

    fn retry_result(&self, id: RequestId, why: &str) -> Message {
        let wait = self.inner.config.retry_wait.pick(rand::random());
        Message::RetryResult {
            id,
            wait_ms: wait.as_millis() as u32,
            payload: Bytes::from(format!("{why}; retry later")),
        }
    }

    /// Routes an answer to its waiting request. Returns false if nobody waits for `id`.
    async fn route(&self, id: RequestId, reply: Reply, last: bool) {
        let tx = {
            let mut map = lock(&self.inner.pending);
            if last {
                map.remove(&id)
            } else {
                map.get(&id).cloned()
            }
        };
        match tx {
            // Waits when the requestor's buffer is full: the connection stops reading
            // (bounded inbound) until it catches up.
            Some(tx) => {
                let _ = tx.send(reply).await;
            }
            None => tracing::debug!(?id, "answer for an unknown or abandoned request; ignored"),
        }
    }

    /// Takes a slot for a request (a stream request when `stream`) and charges its first
    /// chunk to the in-flight budgets; `Err` says why not (for the RetryResult).
    fn try_admit(
        &self,
        stream: bool,
        len: usize,
    ) -> Result<(OwnedSemaphorePermit, Charge), &'static str> {
        let (sem, what) = if stream {
            (&self.inner.streams, "too many concurrent stream requests")
        } else {
            (&self.inner.requests, "too many concurrent requests")
        };
        let permit = sem.clone().try_acquire_owned().map_err(|_| what)?;
        let charge = self
            .inner
            .budget
            .try_charge(len)
            .ok_or("too many request bytes in flight")?;
        Ok((permit, charge))
    }

    /// Answers a request we did not admit with a RetryResult. The RetryResult waits for room in
    /// the send queue (so this connection stops reading meanwhile): an over-limit request is
    /// answered, never dropped. The caller has dropped the request's payload first, so a
    /// waiting reader holds no refused request.
    async fn refuse(&self, id: RequestId, why: &str) {
        self.count(RETRIES_SENT);
        let _ = self.send_reply(&self.retry_result(id, why), None).await;
    }

    /// Runs the handler of `op` in its own task, holding `permit` until it has answered.
    fn serve(&self, permit: OwnedSemaphorePermit, id: RequestId, op: Name, input: RequestStream) {
        self.count(SERVED);
        let peer = self.clone();
        let mut request = Box::pin(async move {
            let _permit = permit;
            let handler = peer.handlers();
            let outcome = std::panic::AssertUnwindSafe(peer.run_handler(&handler, id, &op, input))
                .catch_unwind()
                .await;
            let (msg, charge) = match outcome {
                Ok((Some(msg), charge)) => (msg, Some(charge)),
                Ok((None, _)) => return,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(op = op.as_str(), panic = %what, "RPC handler panicked");
                    let msg = Message::ErrorResult {
                        id,
                        payload: Bytes::from(format!(
                            "internal error: the handler of \"{}\" panicked",
                            op.as_str()
                        )),
                    };
                    (msg, None)
                }
            };
            let _ = peer.send_reply(&msg, charge).await;
        });
        // The first poll happens here, on the connection's task: a handler that answers at once
        // (most do) costs no task of its own, no hand-over to another thread and no wake-up.
        // It is polled with a no-op waker; one that is not done moves to its own task, whose
        // first poll registers the real waker (a future re-checks its state at every poll).
        // Panics are caught inside, around the handler.
        if (&mut request).now_or_never().is_none() {
            tokio::spawn(request);
        }
    }

    /// Runs the handler for `op`; returns the final message to send (None when a streaming
    /// handler already ended its stream) and the request's charge, which the answer keeps
    /// until it is written.
    async fn run_handler(
        &self,
        handlers: &Handlers,
        id: RequestId,
        op: &Name,
        mut input: RequestStream,
    ) -> (Option<Message>, Charge) {
        let error = |e: HandlerError| Message::ErrorResult {
            id,
            payload: Bytes::from(e.to_string()),
        };
        let limit = self.inner.config.wire.max_payload;
        match handlers.op(op.as_str()) {
            Some(OpHandler::Stream(f)) => {
                // The first chunk stays charged until the answer is written; parts the handler
                // takes stay charged while it holds the stream.
                let charge = input.take_charge();
                let sink = ResultSink::new(self.clone(), id);
                let msg = match f(self.clone(), input, sink).await {
                    Ok(()) => Message::StreamResult {
                        id,
                        payload: Bytes::new(),
                    },
                    Err(e) => error(e),
                };
                (Some(msg), charge)
            }
            Some(OpHandler::Bytes(f)) => {
                let collected = collect_input(&mut input, limit).await;
                let charge = input.take_charge();
                drop(input);
                let msg = match collected {
                    Ok(payload) => match f(self.clone(), payload).await {
                        Ok(res) => Message::SingleResult { id, payload: res },
                        Err(e) => error(e),
                    },
                    Err(e) => error(e),
                };
                (Some(msg), charge)
            }
            None => match handlers.fallback_fn() {
                Some(f) => {
                    let collected = collect_input(&mut input, limit).await;
                    let charge = input.take_charge();
                    drop(input);
                    let msg = match collected {
                        Ok(payload) => match f(self.clone(), op.as_str().to_owned(), payload).await
                        {
                            Ok(res) => Message::SingleResult { id, payload: res },
                            Err(e) => error(e),
                        },
                        Err(e) => error(e),
                    };
                    (Some(msg), charge)
                }
                None => (
                    Some(error(HandlerError::new(format!(
                        "unknown operation \"{op}\""
                    )))),
                    input.take_charge(),
                ),
            },
        }
    }

    fn notifications(&self) -> &mpsc::Sender<(Name, Bytes, Charge)> {
        self.inner.notes.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<(Name, Bytes, Charge)>(
                self.inner.config.notification_buffer.max(1),
            );
            // A weak handle: the task must not keep the connection alive.
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                while let Some((name, payload, _charge)) = rx.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    let peer = Peer { inner };
                    let handlers = peer.handlers();
                    match handlers.note(name.as_str()) {
                        Some(f) => {
                            let fut = std::panic::AssertUnwindSafe(f(peer.clone(), payload));
                            if fut.catch_unwind().await.is_err() {
                                tracing::error!(
                                    name = name.as_str(),
                                    "notification handler panicked"
                                );
                            }
                        }
                        None => tracing::debug!(
                            name = name.as_str(),
                            "notification without a handler; ignored"
                        ),
                    }
                    peer.inner.notes_handled.fetch_add(1, Ordering::AcqRel);
                    peer.inner.notes_idle.notify_waiters();
                }
            });
            tx
        })
    }

    async fn dispatch(&self, msg: Message) {
        match msg {
            Message::SingleRequest { id, op, payload } => {
                match self.try_admit(false, payload.len()) {
                    Ok((permit, charge)) => {
                        self.serve(permit, id, op, RequestStream::single(payload, charge));
                    }
                    Err(why) => {
                        drop(payload);
                        self.refuse(id, why).await;
                    }
                }
            }
            Message::StreamRequest { id, op, payload } => {
                // The slot is taken before the stream is registered, so parts of a refused
                // stream are ignored and an accepted stream gets every part.
                match self.try_admit(true, payload.len()) {
                    Ok((permit, charge)) => {
                        let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer.max(1));
                        lock(&self.inner.streams_in).insert(id, tx);
                        self.serve(permit, id, op, RequestStream::streamed(payload, charge, rx));
                    }
                    Err(why) => {
                        drop(payload);
                        self.refuse(id, why).await;
                    }
                }
            }
            Message::StreamReqPart { id, payload } => {
                let tx = {
                    let mut map = lock(&self.inner.streams_in);
                    if payload.is_empty() {
                        map.remove(&id);
                        None
                    } else {
                        map.get(&id).cloned()
                    }
                };
                if let Some(tx) = tx {
                    // A part waits (and this connection stops reading) until it fits the
                    // in-flight budget; one that cannot fit in time closes the connection.
                    let Some(charge) = self.charge_or_close(payload.len()).await else {
                        return;
                    };
                    if tx.send((payload, charge)).await.is_err() {
                        // The handler stopped reading: forget the stream.
                        lock(&self.inner.streams_in).remove(&id);
                    }
                }
            }
            Message::SingleResult { id, payload } => {
                self.route(id, Reply::Single(payload), true).await
            }
            Message::StreamResult { id, payload } => {
                if payload.is_empty() {
                    self.route(id, Reply::End, true).await
                } else {
                    self.route(id, Reply::Part(payload), false).await
                }
            }
            Message::ErrorResult { id, payload } => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                self.route(id, Reply::Error(text), true).await
            }
            Message::RetryResult {
                id,
                wait_ms,
                payload,
            } => {
                self.count(RETRIES_RECEIVED);
                let text = String::from_utf8_lossy(&payload).into_owned();
                let wait = Duration::from_millis(u64::from(wait_ms));
                self.route(id, Reply::Retry { wait, text }, true).await
            }
            Message::Notification { name, payload } => {
                let Some(charge) = self.charge_or_close(payload.len()).await else {
                    return;
                };
                self.inner.notes_queued.fetch_add(1, Ordering::AcqRel);
                if self
                    .notifications()
                    .send((name, payload, charge))
                    .await
                    .is_err()
                {
                    self.inner.notes_handled.fetch_add(1, Ordering::AcqRel);
                }
            }
            Message::Heartbeat { load, time } => {
                let hb = Heartbeat { load, time };
                *lock(&self.inner.heartbeat) = Some(hb);
                if let Some(f) = self.handlers().heartbeat_fn() {
                    f(self, hb);
                }
            }
            Message::ProtocolError { code } => {
                self.set_reason(Disconnect::PeerProtocolError { code: code.0 });
                self.inner.session.close();
            }
        }
    }

    /// Charges `len` inbound bytes, waiting up to the reply timeout for room (the connection
    /// does not read meanwhile); closes the connection when they never fit.
    async fn charge_or_close(&self, len: usize) -> Option<Charge> {
        let charge = self
            .inner
            .budget
            .charge(len, self.inner.config.reply_timeout)
            .await;
        if charge.is_none() {
            self.set_reason(Disconnect::NotReading);
            self.inner.session.close_with(CloseCause::Overflow, None);
        }
        charge
    }

    /// The connection ended: fail everything waiting.
    fn on_closed(&self, cause: &CloseCause) {
        let reason = self.reason_or(cause);
        self.set_reason(reason);
        self.inner.closed.store(true, Ordering::Release);
        // Dropping the senders wakes every waiting request with "closed".
        let pending = std::mem::take(&mut *lock(&self.inner.pending));
        drop(pending);
        let streams = std::mem::take(&mut *lock(&self.inner.streams_in));
        drop(streams);
    }
}

fn unix_time() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

async fn collect_input(input: &mut RequestStream, limit: u32) -> Result<Bytes, HandlerError> {
    if let Some(whole) = input.take_single() {
        return Ok(whole);
    }
    let first = input.next().await.unwrap_or_default();
    let Some(second) = input.next().await else {
        return Ok(first);
    };
    let mut out = bytes::BytesMut::from(&first[..]);
    out.extend_from_slice(&second);
    while let Some(c) = input.next().await {
        if out.len() + c.len() > limit as usize {
            return Err(HandlerError::new(format!(
                "streamed request larger than the limit of {limit} bytes"
            )));
        }
        out.extend_from_slice(&c);
    }
    Ok(out.freeze())
}

/// An RPC server's admission: decides, from what a connection arrived with, whether it may
/// start — before a WebSocket upgrade is answered, so a refusal is an HTTP status with a
/// reason — and may attach per-connection state to the peer's session
/// ([`Session::set_attr`](chinwag_session::Session::set_attr)) for the handlers to find.
/// Bounded by the server's admission timeout and limit
/// ([`ServerConfig`](chinwag_session::ServerConfig)). Used with
/// [`RpcServer::spawn_admitting`](crate::RpcServer::spawn_admitting).
pub trait Admit: Send + Sync + 'static {
    /// Admits `peer` (returning the WebSocket subprotocol to confirm, if any — one the client
    /// offered) or refuses it.
    fn admit<'a>(
        &'a self,
        peer: &'a Peer,
        info: &'a ConnectInfo,
    ) -> Pin<Box<dyn Future<Output = Result<Option<String>, Refusal>> + Send + 'a>>;

    /// Whether admitted connections are taken out of their acceptor's pending share at once
    /// (see [`Service::establish_on_admit`](chinwag_session::Service::establish_on_admit)).
    /// Default `true`. Return `false` when peers sign in later (with a request), and call
    /// `peer.session().establish()` when they do; until then the oldest pending connection is
    /// evicted when a new one needs the place.
    fn establish_on_admit(&self) -> bool {
        true
    }
}

/// The session handler that runs RPC on every session of a server or client.
pub(crate) struct RpcHandler {
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) config: Arc<RpcConfig>,
    pub(crate) on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    /// The application's admission (authentication), if any.
    pub(crate) admit: Option<Arc<dyn Admit>>,
    /// Bytes in flight on all connections of this server (each peer's budget is a child).
    pub(crate) budget: ByteBudget,
    create: Mutex<()>,
}

impl RpcHandler {
    pub(crate) fn new(
        handlers: Arc<Handlers>,
        config: Arc<RpcConfig>,
        on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    ) -> Self {
        RpcHandler {
            budget: ByteBudget::new(config.max_server_in_flight_bytes),
            admit: None,
            handlers,
            config,
            on_connect,
            create: Mutex::new(()),
        }
    }

    /// The peer of `session`, created on first use.
    pub(crate) fn peer(&self, session: &Session<WireCodec>) -> Peer {
        // The common case (every message) takes only the session's own attribute lock; the
        // handler-wide lock is for creation, where `connect` and `on_open` may race.
        if let Some(p) = session.attr::<Peer>() {
            return p;
        }
        let _g = lock(&self.create);
        if let Some(p) = session.attr::<Peer>() {
            return p;
        }
        let p = Peer::new(
            session.clone(),
            self.config.clone(),
            self.handlers.clone(),
            &self.budget,
        );
        session.set_attr(p.clone());
        p
    }
}

/// RPC on a session: the connection's [`Peer`] is its state, made at admission and handed to
/// every event (no attribute lookup per message).
impl Service<WireCodec> for RpcHandler {
    type State = Peer;

    async fn admit(
        &self,
        session: &Session<WireCodec>,
        info: &ConnectInfo,
    ) -> Result<Admission<Peer>, Refusal> {
        let peer = self.peer(session);
        let Some(admit) = &self.admit else {
            return Ok(Admission::new(peer));
        };
        match admit.admit(&peer, info).await {
            Ok(subprotocol) => {
                let mut a = Admission::new(peer);
                a.subprotocol = subprotocol;
                Ok(a)
            }
            Err(refusal) => {
                // The session never starts: break the session ↔ peer cycle here (on_close
                // will not run).
                session.remove_attr::<Peer>();
                Err(refusal)
            }
        }
    }

    fn establish_on_admit(&self) -> bool {
        self.admit.as_ref().is_none_or(|a| a.establish_on_admit())
    }

    fn on_open(
        &self,
        _session: &Session<WireCodec>,
        peer: &Peer,
    ) -> Result<(), chinwag_transport::CloseReason> {
        if let Some(f) = &self.on_connect {
            f(peer.clone());
        }
        Ok(())
    }

    async fn on_message(&self, _session: &Session<WireCodec>, peer: &Peer, msg: Message) {
        peer.dispatch(msg).await;
    }

    fn on_error(&self, _session: &Session<WireCodec>, peer: &Peer, error: &SessionError) {
        // A peer that breaks the protocol gets gotalk's `f` with the right code (version
        // mismatch: 1, anything else: 2) from the session, through `WireCodec::farewell`,
        // before the close (WebSocket: 1002). Here we only record why.
        if let SessionError::Codec(e) = error {
            let code = match e {
                CodecError::Wire(d) => d.protocol_code(),
                _ => ProtocolErrorCode::INVALID_MSG,
            };
            peer.set_reason(Disconnect::ProtocolError {
                code: code.0,
                detail: e.to_string(),
            });
        }
    }

    /// gotalk's `h`, carrying our real load: the share of request slots in use, 0 ..= 0xffff.
    fn heartbeat(&self, session: &Session<WireCodec>, peer: &Peer) -> Option<Encoded> {
        session
            .encode(&Message::Heartbeat {
                load: peer.load(),
                time: unix_time(),
            })
            .ok()
    }

    fn on_close(&self, session: &Session<WireCodec>, peer: &Peer, cause: &CloseCause) {
        session.remove_attr::<Peer>();
        peer.on_closed(cause);
    }
}
