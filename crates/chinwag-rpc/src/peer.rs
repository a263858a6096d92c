//! The peer handle and the connection driver: requests out, handlers in, on one session.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::codec::{CodecError, WireCodec};
use chinwag_session::{CloseCause, Handler, Refusal, Session, SessionError};
use chinwag_wire::{Message, Name, ProtocolErrorCode, RequestId};
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::RpcConfig;
use crate::error::{CloseReason, HandlerError, RpcError};
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
    streams_in: Mutex<HashMap<RequestId, mpsc::Sender<Bytes>>>,
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    notes: OnceLock<mpsc::Sender<(Name, Bytes)>>,
    closed: AtomicBool,
    reason: Mutex<Option<CloseReason>>,
    heartbeat: Mutex<Option<Heartbeat>>,
    random: AtomicU64,
    stats: [AtomicU64; 4],
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
    fn new(session: Session<WireCodec>, config: Arc<RpcConfig>, handlers: Arc<Handlers>) -> Self {
        let seed = RandomState::new().hash_one(session.id());
        Peer {
            inner: Arc::new(Inner {
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
                random: AtomicU64::new(seed | 1),
                stats: Default::default(),
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
        let payload = serde_json::to_vec(value).map_err(|e| RpcError::Json(e.to_string()))?;
        let res = self.request_bytes(op, payload).await?;
        serde_json::from_slice(&res).map_err(|e| RpcError::Json(e.to_string()))
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
        let op = Name::new(op).map_err(|e| RpcError::Send(e.to_string()))?;
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
                            text,
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
        let op = Name::new(op).map_err(|e| RpcError::Send(e.to_string()))?;
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
        let op = Name::new(op).map_err(|e| RpcError::Send(e.to_string()))?;
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
        let payload = serde_json::to_vec(value).map_err(|e| RpcError::Json(e.to_string()))?;
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
        let name = Name::new(name).map_err(|e| RpcError::Send(e.to_string()))?;
        self.send_msg(&Message::Notification {
            name,
            payload: payload.into(),
        })
        .await
    }

    /// Closes the connection cleanly: what is queued is sent first; pending requests fail
    /// with [`CloseReason::Clean`].
    pub fn close(&self) {
        self.set_reason(CloseReason::Clean);
        self.inner.session.close();
    }

    /// Waits until the connection has closed and returns why.
    pub async fn closed(&self) -> CloseReason {
        let cause = self.inner.session.closed().await;
        self.reason_or(&cause)
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        if let Some(r) = lock(&self.inner.reason).clone() {
            return Some(r);
        }
        self.inner.session.close_cause().map(|c| self.reason_or(&c))
    }

    // --- internals --------------------------------------------------------------------------

    fn reason_or(&self, cause: &CloseCause) -> CloseReason {
        if let Some(r) = lock(&self.inner.reason).clone() {
            return r;
        }
        match cause {
            c if c.is_clean() => CloseReason::Clean,
            CloseCause::IdleTimeout => CloseReason::Timeout,
            CloseCause::ProtocolError(m) => CloseReason::ProtocolError {
                code: ProtocolErrorCode::INVALID_MSG.0,
                detail: m.clone(),
            },
            other => CloseReason::Transport(other.to_string()),
        }
    }

    fn set_reason(&self, r: CloseReason) {
        let mut slot = lock(&self.inner.reason);
        if slot.is_none() {
            *slot = Some(r);
        }
    }

    pub(crate) fn closed_error(&self) -> RpcError {
        RpcError::Closed(
            self.close_reason()
                .unwrap_or_else(|| CloseReason::Transport("the connection is closing".into())),
        )
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
        self.inner.session.send(msg).await.map_err(|e| {
            if self.inner.session.is_closing() {
                self.closed_error()
            } else {
                RpcError::Send(e.to_string())
            }
        })
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

    fn random(&self) -> u64 {
        // xorshift64*: enough to spread retry waits; not for secrets.
        let mut x = self.inner.random.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.inner.random.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn retry_result(&self, id: RequestId, what: &str) -> Message {
        let wait = self.inner.config.retry_wait.pick(self.random());
        Message::RetryResult {
            id,
            wait_ms: wait.as_millis() as u32,
            payload: Bytes::from(format!("too many concurrent {what}; retry later")),
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

    /// Takes a slot for a request (a stream request when `stream`), or answers it with a
    /// RetryResult when none is free.
    fn slot(&self, id: RequestId, stream: bool) -> Option<OwnedSemaphorePermit> {
        let (sem, what) = if stream {
            (&self.inner.streams, "stream requests")
        } else {
            (&self.inner.requests, "requests")
        };
        match sem.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.count(RETRIES_SENT);
                self.try_send_msg(&self.retry_result(id, what));
                None
            }
        }
    }

    /// Runs the handler of `op` in its own task, holding `permit` until it has answered.
    fn serve(&self, permit: OwnedSemaphorePermit, id: RequestId, op: Name, input: RequestStream) {
        self.count(SERVED);
        let peer = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handler = peer.handlers();
            let op_name = op.as_str().to_owned();
            let outcome =
                std::panic::AssertUnwindSafe(peer.run_handler(&handler, id, op_name, input))
                    .catch_unwind()
                    .await;
            let msg = match outcome {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    tracing::error!(op = op.as_str(), panic = %what, "RPC handler panicked");
                    Message::ErrorResult {
                        id,
                        payload: Bytes::from(format!(
                            "internal error: the handler of \"{}\" panicked",
                            op.as_str()
                        )),
                    }
                }
            };
            let _ = peer.send_msg(&msg).await;
        });
    }

    /// Runs the handler for `op`; returns the final message to send (None when a streaming
    /// handler already ended its stream).
    async fn run_handler(
        &self,
        handlers: &Handlers,
        id: RequestId,
        op: String,
        mut input: RequestStream,
    ) -> Option<Message> {
        let error = |e: HandlerError| Message::ErrorResult {
            id,
            payload: Bytes::from(e.0),
        };
        match handlers.op(&op) {
            Some(OpHandler::Stream(f)) => {
                let sink = ResultSink::new(self.clone(), id);
                let sink_peer = self.clone();
                match f(sink_peer, input, sink).await {
                    Ok(()) => Some(Message::StreamResult {
                        id,
                        payload: Bytes::new(),
                    }),
                    Err(e) => Some(error(e)),
                }
            }
            Some(OpHandler::Bytes(f)) => {
                let payload =
                    match collect_input(&mut input, self.inner.config.wire.max_payload).await {
                        Ok(p) => p,
                        Err(e) => return Some(error(e)),
                    };
                Some(match f(self.clone(), payload).await {
                    Ok(res) => Message::SingleResult { id, payload: res },
                    Err(e) => error(e),
                })
            }
            None => match handlers.fallback_fn() {
                Some(f) => {
                    let payload =
                        match collect_input(&mut input, self.inner.config.wire.max_payload).await {
                            Ok(p) => p,
                            Err(e) => return Some(error(e)),
                        };
                    Some(match f(self.clone(), op, payload).await {
                        Ok(res) => Message::SingleResult { id, payload: res },
                        Err(e) => error(e),
                    })
                }
                None => Some(error(HandlerError(format!("unknown operation \"{op}\"")))),
            },
        }
    }

    fn notifications(&self) -> &mpsc::Sender<(Name, Bytes)> {
        self.inner.notes.get_or_init(|| {
            let (tx, mut rx) =
                mpsc::channel::<(Name, Bytes)>(self.inner.config.notification_buffer.max(1));
            // A weak handle: the task must not keep the connection alive.
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                while let Some((name, payload)) = rx.recv().await {
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
                }
            });
            tx
        })
    }

    async fn dispatch(&self, msg: Message) {
        match msg {
            Message::SingleRequest { id, op, payload } => {
                if let Some(permit) = self.slot(id, false) {
                    self.serve(permit, id, op, RequestStream::single(payload));
                }
            }
            Message::StreamRequest { id, op, payload } => {
                // The slot is taken before the stream is registered, so parts of a refused
                // stream are ignored and an accepted stream gets every part.
                if let Some(permit) = self.slot(id, true) {
                    let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer.max(1));
                    lock(&self.inner.streams_in).insert(id, tx);
                    self.serve(permit, id, op, RequestStream::streamed(payload, rx));
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
                if let Some(tx) = tx
                    && tx.send(payload).await.is_err()
                {
                    // The handler stopped reading: forget the stream.
                    lock(&self.inner.streams_in).remove(&id);
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
                let _ = self.notifications().send((name, payload)).await;
            }
            Message::Heartbeat { load, time } => {
                let hb = Heartbeat { load, time };
                *lock(&self.inner.heartbeat) = Some(hb);
                if let Some(f) = self.handlers().heartbeat_fn() {
                    f(self, hb);
                }
            }
            Message::ProtocolError { code } => {
                self.set_reason(CloseReason::PeerProtocolError { code: code.0 });
                self.inner.session.close();
            }
        }
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
    let first = input.next().await.unwrap_or_default();
    let Some(second) = input.next().await else {
        return Ok(first);
    };
    let mut out = bytes::BytesMut::from(&first[..]);
    out.extend_from_slice(&second);
    while let Some(c) = input.next().await {
        if out.len() + c.len() > limit as usize {
            return Err(HandlerError(format!(
                "streamed request larger than the limit of {limit} bytes"
            )));
        }
        out.extend_from_slice(&c);
    }
    Ok(out.freeze())
}

/// The session handler that runs RPC on every session of a server or client.
pub(crate) struct RpcHandler {
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) config: Arc<RpcConfig>,
    pub(crate) on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    create: Mutex<()>,
}

impl RpcHandler {
    pub(crate) fn new(
        handlers: Arc<Handlers>,
        config: Arc<RpcConfig>,
        on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    ) -> Self {
        RpcHandler {
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
        let p = Peer::new(session.clone(), self.config.clone(), self.handlers.clone());
        session.set_attr(p.clone());
        p
    }
}

impl Handler<WireCodec> for RpcHandler {
    fn on_open(&self, session: &Session<WireCodec>) -> Result<(), Refusal> {
        let peer = self.peer(session);
        if let Some(f) = &self.on_connect {
            f(peer);
        }
        Ok(())
    }

    async fn on_message(&self, session: &Session<WireCodec>, msg: Message) {
        let peer = self.peer(session);
        peer.dispatch(msg).await;
    }

    fn on_error(&self, session: &Session<WireCodec>, error: &SessionError) {
        // A peer that breaks the protocol gets gotalk's `f` with the right code before we
        // close (version mismatch: 1, anything else: 2). Closing here, before the session
        // does, makes the close drain the queue so the `f` is written.
        if let SessionError::Codec(e) = error {
            let code = match e {
                CodecError::Wire(d) => d.protocol_code(),
                _ => ProtocolErrorCode::INVALID_MSG,
            };
            let peer = self.peer(session);
            peer.set_reason(CloseReason::ProtocolError {
                code: code.0,
                detail: e.to_string(),
            });
            peer.try_send_msg(&Message::ProtocolError { code });
            session.close();
        }
    }

    /// The heartbeat: sent from the cron tick (rather than the session's codec heartbeat) so
    /// it carries our real load — the share of request slots in use, 0 ..= 0xffff.
    fn on_cron(&self, session: &Session<WireCodec>) {
        let peer = self.peer(session);
        peer.try_send_msg(&Message::Heartbeat {
            load: peer.load(),
            time: unix_time(),
        });
    }

    fn on_close(&self, session: &Session<WireCodec>, cause: &CloseCause) {
        if let Some(peer) = session.remove_attr::<Peer>() {
            peer.on_closed(cause);
        }
    }
}
