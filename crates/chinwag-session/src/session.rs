//! One connection's life: the [`Session`] handle, its configuration, and the driver that reads,
//! decodes, writes and keeps time for it.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use chinwag_transport::{
    CloseCode, CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport,
    TransportError,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::codec::{Codec, CodecError, Decoder, Encoded};

// ---------------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------------

/// What a session does when its outbound queue is full (in messages or in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// The sender waits up to `timeout` for room; then the message is not queued and the send
    /// fails with [`SendError::Timeout`]. Use for peers that must not lose messages and may be
    /// briefly slow. A broadcast to such a session waits too.
    Block {
        /// How long a send may wait for room.
        timeout: Duration,
    },
    /// The new message is discarded ([`SendError::Dropped`]); what is queued stays.
    DropNewest,
    /// The oldest queued messages are discarded until the new one fits; the send succeeds.
    /// Right for "latest state wins" feeds (prices, presence, cursors).
    DropOldest,
    /// The session is closed with [`CloseCause::Overflow`] and its queue discarded; the send
    /// fails with [`SendError::Overflow`]. The default: a peer that cannot keep up is cut off
    /// rather than allowed to hold memory or slow anyone else.
    #[default]
    Close,
}

/// Settings of one session. Servers and clients share one value between all their sessions.
///
/// | field | default |
/// |---|---|
/// | [`queue_max_messages`](Self::queue_max_messages) | 1 024 |
/// | [`queue_max_bytes`](Self::queue_max_bytes) | 4 MiB |
/// | [`overflow`](Self::overflow) | [`OverflowPolicy::Close`] |
/// | [`idle_timeout`](Self::idle_timeout) | 300 s |
/// | [`heartbeat_interval`](Self::heartbeat_interval) | 60 s (codecs with a heartbeat only) |
/// | [`write_timeout`](Self::write_timeout) | 10 s |
/// | [`close_timeout`](Self::close_timeout) | 5 s |
/// | [`cron_interval`](Self::cron_interval) | `None` |
/// | [`max_decode_buffer`](Self::max_decode_buffer) | 32 MiB |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Most messages waiting in the outbound queue. Default 1 024. Values below 1 act as 1.
    pub queue_max_messages: usize,
    /// Most bytes waiting in the outbound queue. Default 4 MiB. A single message larger than
    /// this is accepted only into an empty queue (otherwise it could never be sent).
    pub queue_max_bytes: usize,
    /// What happens when the queue is full. Default [`OverflowPolicy::Close`].
    pub overflow: OverflowPolicy,
    /// Close with [`CloseCause::IdleTimeout`] when no frame arrived from the peer for this long.
    /// Default 300 s. Only inbound frames count (our own heartbeats must not keep a dead peer's
    /// session alive); WebSocket pongs are consumed by the engine and do not count, so peers
    /// that only listen must send something (codec heartbeats do).
    pub idle_timeout: Option<Duration>,
    /// Send the codec's heartbeat ([`Codec::heartbeat`]) when nothing was written for this long.
    /// Default 60 s; ignored by codecs without one.
    pub heartbeat_interval: Option<Duration>,
    /// Close with [`CloseCause::WriteTimeout`] (dropping the connection) when one batch of
    /// writes does not finish within this time — a peer that stopped reading. Default 10 s.
    pub write_timeout: Duration,
    /// After a close starts, how long the session may take to drain its queue and finish the
    /// close handshake before the connection is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// Call [`Handler::on_cron`] this often. Default `None` (idle sessions then need no timer).
    pub cron_interval: Option<Duration>,
    /// Byte streams: the most bytes the decode buffer may hold while the codec waits for the
    /// rest of a message. A safety net under the codec's own limits (which should refuse a
    /// too-large message from its header): over it, the session closes as a protocol error.
    /// Default 32 MiB (above the 16 MiB gotalk and 8 MiB length-delimited defaults).
    pub max_decode_buffer: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            queue_max_messages: 1024,
            queue_max_bytes: 4 * 1024 * 1024,
            overflow: OverflowPolicy::Close,
            idle_timeout: Some(Duration::from_secs(300)),
            heartbeat_interval: Some(Duration::from_secs(60)),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            cron_interval: None,
            max_decode_buffer: 32 * 1024 * 1024,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// errors and close causes
// ---------------------------------------------------------------------------------------------

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// We closed it ([`Session::close`]): clean.
    Local,
    /// The peer closed in an orderly way: a close frame (with its code and reason) or the end
    /// of a byte stream (`None`: byte streams carry no code). Clean when the code is 1000 or
    /// absent.
    Peer(Option<CloseReason>),
    /// The connection broke (reset, I/O error, a transport deadline such as a missing pong).
    PeerGone(String),
    /// Nothing arrived from the peer for [`SessionConfig::idle_timeout`].
    IdleTimeout,
    /// A batch of writes took longer than [`SessionConfig::write_timeout`].
    WriteTimeout,
    /// The peer sent something the codec or the transport refused.
    ProtocolError(String),
    /// The outbound queue overflowed under [`OverflowPolicy::Close`].
    Overflow,
    /// The server or client that owns the session is shutting down.
    Shutdown,
    /// [`Handler::on_open`] refused the session.
    Refused(CloseReason),
    /// [`Handler::on_message`] panicked (the panic was caught and logged; the peer gets 1011).
    HandlerPanic(String),
}

impl CloseCause {
    /// Whether this is an orderly close that a client should not reconnect after (unless
    /// configured to): our own [`Local`](Self::Local) close, or the peer's close with code 1000
    /// or, on a byte stream, its end of stream.
    pub fn is_clean(&self) -> bool {
        match self {
            CloseCause::Local => true,
            CloseCause::Peer(None) => true,
            CloseCause::Peer(Some(r)) => r.code == CloseCode::NORMAL,
            _ => false,
        }
    }

    /// The close code and reason sent to the peer for this cause.
    pub fn to_transport_reason(&self) -> CloseReason {
        match self {
            CloseCause::Local | CloseCause::Peer(_) => CloseReason::normal(),
            CloseCause::PeerGone(_) => CloseReason::new(CloseCode::INTERNAL, "connection broken"),
            CloseCause::IdleTimeout => CloseReason::new(CloseCode::GOING_AWAY, "idle timeout"),
            CloseCause::WriteTimeout => CloseReason::new(CloseCode::POLICY, "write timeout"),
            CloseCause::ProtocolError(m) => CloseReason::new(CloseCode::PROTOCOL, m.clone()),
            CloseCause::Overflow => CloseReason::new(CloseCode::POLICY, "send queue overflow"),
            CloseCause::Shutdown => CloseReason::new(CloseCode::GOING_AWAY, "shutting down"),
            CloseCause::Refused(r) => r.clone(),
            CloseCause::HandlerPanic(_) => CloseReason::new(CloseCode::INTERNAL, "internal error"),
        }
    }

    /// How the writer ends the connection.
    fn mode(&self) -> CloseMode {
        match self {
            CloseCause::Local | CloseCause::Shutdown | CloseCause::Peer(_) => CloseMode::Drain,
            CloseCause::IdleTimeout
            | CloseCause::Overflow
            | CloseCause::ProtocolError(_)
            | CloseCause::Refused(_)
            | CloseCause::HandlerPanic(_) => CloseMode::CloseNow,
            CloseCause::PeerGone(_) | CloseCause::WriteTimeout => CloseMode::Abort,
        }
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Local => f.write_str("closed locally"),
            CloseCause::Peer(None) => f.write_str("peer closed"),
            CloseCause::Peer(Some(r)) => write!(f, "peer closed: {r}"),
            CloseCause::PeerGone(e) => write!(f, "peer gone: {e}"),
            CloseCause::IdleTimeout => f.write_str("idle timeout"),
            CloseCause::WriteTimeout => f.write_str("write timeout"),
            CloseCause::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseCause::Overflow => f.write_str("send queue overflow"),
            CloseCause::Shutdown => f.write_str("shutdown"),
            CloseCause::Refused(r) => write!(f, "refused: {r}"),
            CloseCause::HandlerPanic(m) => write!(f, "handler panicked: {m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseMode {
    /// Write what is queued, then close (bounded by the close deadline).
    Drain,
    /// Discard the queue, send the close frame (bounded), drop.
    CloseNow,
    /// Discard the queue and drop the connection without writing.
    Abort,
}

/// Why a send did not queue the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closing or closed; the message was not queued. Stop sending to it.
    #[error("session closed")]
    Closed,
    /// The queue was full and the policy is [`OverflowPolicy::DropNewest`]: this message was
    /// discarded. The session stays open.
    #[error("send queue full: message dropped")]
    Dropped,
    /// The queue stayed full for the [`OverflowPolicy::Block`] timeout; the message was not
    /// queued. The session stays open.
    #[error("send queue full: timed out waiting for room")]
    Timeout,
    /// The queue was full and the policy is [`OverflowPolicy::Close`]: the session is closing.
    #[error("send queue overflow: session closed")]
    Overflow,
    /// The codec could not encode the message; nothing was queued.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// An error a session reports to [`Handler::on_error`] before it closes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The transport failed (see [`TransportError`] for what each variant means).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The codec refused the peer's input.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// [`Handler::on_open`]'s answer when it refuses a session: the connection is closed with
/// this code and reason, [`Handler::on_close`] is not called.
pub type Refusal = CloseReason;

// ---------------------------------------------------------------------------------------------
// handler
// ---------------------------------------------------------------------------------------------

/// The application's side of a session: lifecycle events, called from the session's own task.
///
/// One handler value serves every session of a server or client. Messages are delivered one
/// at a time and in order; while [`on_message`](Self::on_message) runs, the session does not
/// read (inbound backpressure: a slow handler slows only its own peer, through TCP flow
/// control). Do not block inside the callbacks; `on_message` may await.
pub trait Handler<C: Codec>: Send + Sync + 'static {
    /// A session opened. Return `Err` to refuse it (it is closed with that reason).
    fn on_open(&self, session: &Session<C>) -> Result<(), Refusal> {
        let _ = session;
        Ok(())
    }

    /// One decoded message from the peer.
    fn on_message(&self, session: &Session<C>, msg: C::In) -> impl Future<Output = ()> + Send;

    /// The transport or the codec failed; the session closes next.
    fn on_error(&self, session: &Session<C>, error: &SessionError) {
        let _ = (session, error);
    }

    /// The session closed (after its writer finished). Close callbacks run after this.
    fn on_close(&self, session: &Session<C>, cause: &CloseCause) {
        let _ = (session, cause);
    }

    /// The periodic tick ([`SessionConfig::cron_interval`]).
    fn on_cron(&self, session: &Session<C>) {
        let _ = session;
    }
}

// ---------------------------------------------------------------------------------------------
// the session
// ---------------------------------------------------------------------------------------------

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const ABORTING: u8 = 2;
const CLOSED: u8 = 3;
const FINISHED: u8 = 4;
const NONE: u64 = u64::MAX;

/// A snapshot of a session's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes received (transport frame payloads).
    pub bytes_in: u64,
    /// Bytes written to the transport.
    pub bytes_out: u64,
    /// Messages decoded and delivered to the handler.
    pub messages_in: u64,
    /// Messages written to the transport (preamble and heartbeats included).
    pub messages_out: u64,
    /// Messages discarded by [`OverflowPolicy::DropNewest`] / [`OverflowPolicy::DropOldest`].
    pub messages_dropped: u64,
}

#[derive(Default)]
struct Counters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    messages_dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Encoded>,
    bytes: usize,
}

type CloseCallback = Box<dyn FnOnce(&CloseCause) + Send>;
type AttrMap = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

struct Inner<C: Codec> {
    id: u64,
    peer: PeerAddr,
    framing: Framing,
    codec: Arc<C>,
    config: Arc<SessionConfig>,
    epoch: Instant,
    state: AtomicU8,
    state_changed: Notify,
    writer_wake: Notify,
    queue: Mutex<Queue>,
    cause: Mutex<Option<CloseCause>>,
    counters: Counters,
    last_read_ms: AtomicU64,
    last_write_ms: AtomicU64,
    write_started_ms: AtomicU64,
    close_deadline_ms: AtomicU64,
    overflow: Mutex<Option<OverflowPolicy>>,
    attrs: Mutex<Option<Box<AttrMap>>>,
    callbacks: Mutex<Vec<(Cow<'static, str>, CloseCallback)>>,
}

/// A handle to one session: cheap to clone, usable from any task.
///
/// It sends (through the bounded outbound queue), closes, and exposes the session's
/// attributes, counters, activity times and close callbacks. The session itself runs in one
/// task spawned by a [`Server`](crate::Server) or [`Client`](crate::Client) (or by
/// [`spawn_session`]).
pub struct Session<C: Codec> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Session<C> {
    fn clone(&self) -> Self {
        Session {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer)
            .field("state", &self.inner.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl<C: Codec> Session<C> {
    pub(crate) fn new(
        peer: PeerAddr,
        framing: Framing,
        codec: Arc<C>,
        config: Arc<SessionConfig>,
    ) -> Self {
        Session {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                framing,
                codec,
                config,
                epoch: Instant::now(),
                state: AtomicU8::new(OPEN),
                state_changed: Notify::new(),
                writer_wake: Notify::new(),
                queue: Mutex::new(Queue::default()),
                cause: Mutex::new(None),
                counters: Counters::default(),
                last_read_ms: AtomicU64::new(0),
                last_write_ms: AtomicU64::new(0),
                write_started_ms: AtomicU64::new(NONE),
                close_deadline_ms: AtomicU64::new(NONE),
                overflow: Mutex::new(None),
                attrs: Mutex::new(None),
                callbacks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A process-unique id (for logs and maps).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.inner.peer
    }

    /// Whether the transport keeps message boundaries.
    pub fn framing(&self) -> Framing {
        self.inner.framing
    }

    /// The session's settings.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    // ---- time -------------------------------------------------------------------------------

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.inner.epoch + Duration::from_millis(ms)
    }

    /// When the session opened.
    pub fn opened_at(&self) -> Instant {
        self.inner.epoch
    }

    /// When the last frame arrived from the peer (the session's open time before that). The
    /// idle timeout counts from here.
    pub fn last_read(&self) -> Instant {
        self.at(self.inner.last_read_ms.load(Ordering::Relaxed))
    }

    /// The last activity in either direction: a frame read or a batch written (getty's
    /// "active time").
    pub fn last_active(&self) -> Instant {
        let r = self.inner.last_read_ms.load(Ordering::Relaxed);
        let w = self.inner.last_write_ms.load(Ordering::Relaxed);
        self.at(r.max(w))
    }

    // ---- stats and queue --------------------------------------------------------------------

    /// The session's counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            messages_dropped: c.messages_dropped.load(Ordering::Relaxed),
        }
    }

    /// Messages waiting in the outbound queue (not yet taken by the writer).
    pub fn queue_len(&self) -> usize {
        lock(&self.inner.queue).items.len()
    }

    /// Bytes waiting in the outbound queue.
    pub fn queue_bytes(&self) -> usize {
        lock(&self.inner.queue).bytes
    }

    /// This session's overflow policy: the one set with
    /// [`set_overflow_policy`](Self::set_overflow_policy), else [`SessionConfig::overflow`].
    pub fn overflow_policy(&self) -> OverflowPolicy {
        lock(&self.inner.overflow).unwrap_or(self.inner.config.overflow)
    }

    /// Chooses this session's overflow policy (e.g. in [`Handler::on_open`], by who the peer
    /// is), overriding [`SessionConfig::overflow`].
    pub fn set_overflow_policy(&self, policy: OverflowPolicy) {
        *lock(&self.inner.overflow) = Some(policy);
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Encodes `item` with the session's codec (for this session's framing).
    ///
    /// # Errors
    ///
    /// The codec's error.
    pub fn encode(&self, item: &C::Out) -> Result<Encoded, CodecError> {
        self.inner.codec.encode(item, self.inner.framing)
    }

    /// Encodes and queues `item`; see [`send_encoded`](Self::send_encoded).
    ///
    /// # Errors
    ///
    /// As [`send_encoded`](Self::send_encoded), plus [`SendError::Codec`].
    pub fn send<'a>(
        &'a self,
        item: &C::Out,
    ) -> impl Future<Output = Result<(), SendError>> + Send + use<'a, C> {
        // Encoded before the future is made, so the future does not borrow `item` (which
        // need not be `Sync`).
        let encoded = self.encode(item);
        async move { self.send_encoded(encoded?).await }
    }

    /// Queues an already encoded message (for a broadcast: encode once, clone the [`Encoded`]
    /// for every session — frames are shared `Bytes`). Waits only under
    /// [`OverflowPolicy::Block`]. Success means queued, not delivered.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], or what the overflow policy says when the queue is full.
    pub async fn send_encoded(&self, msg: Encoded) -> Result<(), SendError> {
        let mut msg = match self.push(msg) {
            Ok(()) => return Ok(()),
            Err(Pushed::Error(e)) => return Err(e),
            Err(Pushed::Full(msg)) => msg,
        };
        let OverflowPolicy::Block { timeout } = self.overflow_policy() else {
            return Err(SendError::Dropped);
        };
        let deadline = Instant::now() + timeout;
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            // Woken when the writer takes a batch (room) or the state changes (closing).
            let changed = self.inner.state_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            msg = match self.push(msg) {
                Ok(()) => return Ok(()),
                Err(Pushed::Error(e)) => return Err(e),
                Err(Pushed::Full(msg)) => msg,
            };
            tokio::select! {
                _ = changed => {}
                _ = &mut sleep => return Err(SendError::Timeout),
            }
        }
    }

    /// Queues an encoded message without waiting: under [`OverflowPolicy::Block`] a full queue
    /// gives [`SendError::Timeout`] at once. For synchronous contexts.
    ///
    /// # Errors
    ///
    /// As [`send_encoded`](Self::send_encoded).
    pub fn try_send_encoded(&self, msg: Encoded) -> Result<(), SendError> {
        match self.push(msg) {
            Ok(()) => Ok(()),
            Err(Pushed::Error(e)) => Err(e),
            Err(Pushed::Full(_)) => Err(SendError::Timeout),
        }
    }

    /// Applies the queue limits and the overflow policy (all but the waiting of `Block`).
    fn push(&self, msg: Encoded) -> Result<(), Pushed> {
        let inner = &*self.inner;
        if inner.state.load(Ordering::Acquire) >= CLOSING {
            return Err(Pushed::Error(SendError::Closed));
        }
        let cfg = &*inner.config;
        let max_msgs = cfg.queue_max_messages.max(1);
        let size = msg.len();
        let mut q = lock(&inner.queue);
        let fits = |q: &Queue| {
            q.items.is_empty()
                || (q.items.len() < max_msgs && q.bytes.saturating_add(size) <= cfg.queue_max_bytes)
        };
        if !fits(&q) {
            match self.overflow_policy() {
                OverflowPolicy::Block { .. } => return Err(Pushed::Full(msg)),
                OverflowPolicy::DropNewest => {
                    drop(q);
                    inner
                        .counters
                        .messages_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Pushed::Error(SendError::Dropped));
                }
                OverflowPolicy::DropOldest => {
                    let mut dropped = 0;
                    while !fits(&q) {
                        match q.items.pop_front() {
                            Some(old) => {
                                q.bytes -= old.len();
                                dropped += 1;
                            }
                            None => break,
                        }
                    }
                    inner
                        .counters
                        .messages_dropped
                        .fetch_add(dropped, Ordering::Relaxed);
                }
                OverflowPolicy::Close => {
                    drop(q);
                    self.begin_close(CloseCause::Overflow, None);
                    return Err(Pushed::Error(SendError::Overflow));
                }
            }
        }
        q.bytes += size;
        q.items.push_back(msg);
        drop(q);
        inner.writer_wake.notify_one();
        Ok(())
    }

    /// Queues a message outside the limits (preamble, heartbeat). `front` puts it first.
    fn push_unbounded(&self, msg: Encoded, front: bool) {
        let mut q = lock(&self.inner.queue);
        q.bytes += msg.len();
        if front {
            q.items.push_front(msg);
        } else {
            q.items.push_back(msg);
        }
        drop(q);
        self.inner.writer_wake.notify_one();
    }

    // ---- closing ----------------------------------------------------------------------------

    /// Closes cleanly: what is already queued is written (within
    /// [`SessionConfig::close_timeout`]), then the transport is closed with code 1000. Later
    /// sends fail with [`SendError::Closed`]. Returns at once; await [`closed`](Self::closed)
    /// to wait for the end.
    pub fn close(&self) {
        self.begin_close(CloseCause::Local, None);
    }

    /// Closes with `cause`; queued messages are written first when the cause is
    /// [`CloseCause::Local`], [`CloseCause::Shutdown`] or [`CloseCause::Peer`], and the whole
    /// close is bounded by `deadline` (default: now + [`SessionConfig::close_timeout`]).
    /// Returns false when the session was already closing.
    pub fn close_with(&self, cause: CloseCause, deadline: Option<Instant>) -> bool {
        self.begin_close(cause, deadline)
    }

    fn begin_close(&self, cause: CloseCause, deadline: Option<Instant>) -> bool {
        let inner = &*self.inner;
        {
            let mut slot = lock(&inner.cause);
            if slot.is_some() {
                return false;
            }
            *slot = Some(cause.clone());
        }
        let deadline_ms = match deadline {
            Some(d) => d.saturating_duration_since(inner.epoch).as_millis() as u64,
            None => self.now_ms() + inner.config.close_timeout.as_millis() as u64,
        };
        inner
            .close_deadline_ms
            .store(deadline_ms, Ordering::Release);
        let mode = cause.mode();
        if mode != CloseMode::Drain {
            let mut q = lock(&inner.queue);
            q.items = VecDeque::new();
            q.bytes = 0;
        }
        tracing::debug!(session = inner.id, peer = %inner.peer, %cause, "session closing");
        self.set_state(if mode == CloseMode::Abort {
            ABORTING
        } else {
            CLOSING
        });
        true
    }

    fn set_state(&self, s: u8) {
        let inner = &*self.inner;
        if inner.state.fetch_max(s, Ordering::AcqRel) < s {
            inner.state_changed.notify_waiters();
        }
    }

    fn state(&self) -> u8 {
        self.inner.state.load(Ordering::Acquire)
    }

    /// Ready once the state is at least `at_least`, **without registering a waker**.
    ///
    /// Only for the reader and writer futures, which run joined with the timer future in one
    /// task: the timer is always registered on `state_changed` while the task is idle (it
    /// waits on it until the session is closed), a wake-up polls every joined
    /// future, and so these checks see every state change. Saves a `Notified` (~100 bytes)
    /// per idle session each.
    fn reached(&self, at_least: u8) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if self.state() >= at_least {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    async fn wait_state(&self, at_least: u8) {
        loop {
            let changed = self.inner.state_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.state() >= at_least {
                return;
            }
            changed.await;
        }
    }

    /// Whether a close has started (sends fail from then on).
    pub fn is_closing(&self) -> bool {
        self.state() >= CLOSING
    }

    /// Whether the session has ended completely (handler told, callbacks run).
    pub fn is_closed(&self) -> bool {
        self.state() >= FINISHED
    }

    /// Why the session closed (or is closing); `None` while open.
    pub fn close_cause(&self) -> Option<CloseCause> {
        lock(&self.inner.cause).clone()
    }

    /// Waits until the session has ended completely (after [`Handler::on_close`] and the close
    /// callbacks), and returns why.
    pub async fn closed(&self) -> CloseCause {
        self.wait_state(FINISHED).await;
        self.close_cause().unwrap_or(CloseCause::Local)
    }

    // ---- close callbacks ---------------------------------------------------------------------

    /// Registers `callback` to run once when the session ends, under `key`. A callback already
    /// under `key` is replaced in place (keeping its position); returns true in that case.
    /// Callbacks run in the order their keys were first added; a panicking callback is caught
    /// and logged, and the others still run. Added after the session ended, `callback` runs at
    /// once.
    pub fn add_close_callback(
        &self,
        key: impl Into<Cow<'static, str>>,
        callback: impl FnOnce(&CloseCause) + Send + 'static,
    ) -> bool {
        let key = key.into();
        let mut cbs = lock(&self.inner.callbacks);
        if self.is_closed() {
            drop(cbs);
            let cause = self.close_cause().unwrap_or(CloseCause::Local);
            run_callback(self.inner.id, &key, Box::new(callback), &cause);
            return false;
        }
        if let Some(slot) = cbs.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = Box::new(callback);
            return true;
        }
        cbs.push((key, Box::new(callback)));
        false
    }

    /// Removes the close callback under `key`; returns whether there was one.
    pub fn remove_close_callback(&self, key: &str) -> bool {
        let mut cbs = lock(&self.inner.callbacks);
        let before = cbs.len();
        cbs.retain(|(k, _)| k != key);
        cbs.len() != before
    }

    fn run_close_callbacks(&self, cause: &CloseCause) {
        let cbs = std::mem::take(&mut *lock(&self.inner.callbacks));
        for (key, cb) in cbs {
            run_callback(self.inner.id, &key, cb, cause);
        }
    }

    // ---- attributes --------------------------------------------------------------------------

    /// Stores a typed attribute (one value per type); returns the previous value of that type.
    /// Use newtypes to keep several values of one underlying type.
    pub fn set_attr<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        let mut attrs = lock(&self.inner.attrs);
        let map = attrs.get_or_insert_with(Default::default);
        map.insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok())
            .map(|b| *b)
    }

    /// A clone of the attribute of type `T`.
    pub fn attr<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.with_attr(|v: &T| v.clone())
    }

    /// Calls `f` with the attribute of type `T`, if set.
    pub fn with_attr<T: Any + Send + Sync, R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let attrs = lock(&self.inner.attrs);
        attrs
            .as_ref()?
            .get(&TypeId::of::<T>())?
            .downcast_ref::<T>()
            .map(f)
    }

    /// Removes and returns the attribute of type `T`.
    pub fn remove_attr<T: Any + Send + Sync>(&self) -> Option<T> {
        let mut attrs = lock(&self.inner.attrs);
        let map = attrs.as_mut()?;
        let v = map
            .remove(&TypeId::of::<T>())?
            .downcast::<T>()
            .ok()
            .map(|b| *b);
        if map.is_empty() {
            *attrs = None;
        }
        v
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

fn run_callback(id: u64, key: &str, cb: CloseCallback, cause: &CloseCause) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(cause))) {
        let msg = panic_message(&*panic);
        tracing::error!(session = id, key, panic = %msg, "close callback panicked");
    }
}

/// Runs a synchronous handler callback; a panic is caught and logged (`what` names it).
fn guarded<R>(id: u64, what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = panic_message(&*panic);
        tracing::error!(session = id, callback = what, panic = %msg, "handler panicked");
        msg
    })
}

/// Polls a boxed future, turning a panic into `Err(message)`: a panicking `on_message`
/// closes its session instead of killing the session's task half-way.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p.map(Ok),
            Err(panic) => std::task::Poll::Ready(Err(panic_message(&*panic))),
        }
    }
}

enum Pushed {
    Full(Encoded),
    Error(SendError),
}

// ---------------------------------------------------------------------------------------------
// the driver
// ---------------------------------------------------------------------------------------------

/// Runs a session on `transport` in a new task and returns its handle at once. Servers and
/// clients use this internally; use it directly for a connection you made yourself.
pub fn spawn_session<T, C, H>(
    transport: T,
    codec: Arc<C>,
    handler: Arc<H>,
    config: Arc<SessionConfig>,
) -> Session<C>
where
    T: Transport,
    C: Codec,
    H: Handler<C>,
{
    let session = Session::new(transport.peer_addr(), transport.framing(), codec, config);
    let s = session.clone();
    tokio::spawn(async move { run(s, transport, handler).await });
    session
}

/// Runs `session` on `transport` to its end (the session's whole life, in the caller's task).
pub(crate) async fn run<T, C, H>(session: Session<C>, transport: T, handler: Arc<H>) -> CloseCause
where
    T: Transport,
    C: Codec,
    H: Handler<C>,
{
    let (reader, mut writer) = transport.split();
    let s = &session;
    let opened = guarded(s.inner.id, "on_open", || handler.on_open(s)).unwrap_or_else(|m| {
        Err(CloseReason::new(
            CloseCode::INTERNAL,
            format!("on_open panicked: {m}"),
        ))
    });
    if let Err(refusal) = opened {
        s.begin_close(CloseCause::Refused(refusal.clone()), None);
        let _ = tokio::time::timeout(s.inner.config.close_timeout, writer.close(refusal)).await;
        s.set_state(CLOSED);
        let cause = s.close_cause().unwrap_or(CloseCause::Local);
        s.run_close_callbacks(&cause);
        s.set_state(FINISHED);
        return cause;
    }
    if let Some(p) = s.inner.codec.preamble(s.inner.framing) {
        s.push_unbounded(p, true);
    }
    let decoder = s.inner.codec.decoder(s.inner.framing);
    tokio::join!(
        read_loop(s, reader, decoder, &*handler),
        write_loop(s, writer),
        timer_loop(s, &*handler),
    );
    let cause = s.close_cause().unwrap_or(CloseCause::Local);
    tracing::debug!(session = s.inner.id, %cause, "session closed");
    let _ = guarded(s.inner.id, "on_close", || handler.on_close(s, &cause));
    s.run_close_callbacks(&cause);
    s.set_state(FINISHED);
    cause
}

fn transport_cause(e: &TransportError) -> CloseCause {
    match e {
        TransportError::TooLarge { .. } | TransportError::Protocol(_) => {
            CloseCause::ProtocolError(e.to_string())
        }
        _ => CloseCause::PeerGone(e.to_string()),
    }
}

/// Reads frames, decodes, and awaits the handler per message (in order; no read while the
/// handler runs). Ends when the peer closes or breaks, or when a close starts.
async fn read_loop<R, C, H>(s: &Session<C>, mut rd: R, mut dec: C::Decoder, handler: &H)
where
    R: FrameRead,
    C: Codec,
    H: Handler<C>,
{
    // The byte-stream decode buffer: empty (no allocation) between messages; a frame that
    // arrives into an empty buffer is taken over without copying.
    let mut buf = BytesMut::new();
    loop {
        let read = tokio::select! {
            biased;
            _ = s.reached(CLOSING) => return,
            r = rd.read_frame() => r,
        };
        match read {
            Ok(Some(frame)) => {
                s.inner
                    .counters
                    .bytes_in
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
                s.inner.last_read_ms.store(s.now_ms(), Ordering::Relaxed);
                let ok = match s.inner.framing {
                    Framing::Message => match dec.decode_frame(frame) {
                        Ok(Some(m)) => Box::pin(deliver(s, handler, m)).await,
                        Ok(None) => true,
                        Err(e) => return codec_failed(s, handler, e),
                    },
                    Framing::Stream => {
                        let payload = frame.into_payload();
                        if buf.is_empty() {
                            buf = BytesMut::from(payload);
                        } else {
                            let limit = s.inner.config.max_decode_buffer;
                            if buf.len().saturating_add(payload.len()) > limit {
                                let size = (buf.len() + payload.len()) as u64;
                                let e = CodecError::TooLarge {
                                    size,
                                    limit: limit as u64,
                                };
                                return codec_failed(s, handler, e);
                            }
                            buf.extend_from_slice(&payload);
                        }
                        let mut ok = true;
                        while ok {
                            match dec.decode(&mut buf) {
                                Ok(Some(m)) => ok = Box::pin(deliver(s, handler, m)).await,
                                Ok(None) => break,
                                Err(e) => return codec_failed(s, handler, e),
                            }
                        }
                        if buf.is_empty() && buf.capacity() > 0 {
                            // Release the chunk: an idle session holds no read buffer.
                            buf = BytesMut::new();
                        }
                        ok
                    }
                };
                if !ok {
                    return;
                }
            }
            Ok(None) => {
                if s.inner.framing == Framing::Stream {
                    loop {
                        match dec.decode_eof(&mut buf) {
                            Ok(Some(m)) => {
                                if !Box::pin(deliver(s, handler, m)).await {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return codec_failed(s, handler, e),
                        }
                    }
                }
                s.begin_close(CloseCause::Peer(rd.close_reason().cloned()), None);
                return;
            }
            Err(e) => {
                let cause = transport_cause(&e);
                let _ = guarded(s.inner.id, "on_error", || {
                    handler.on_error(s, &SessionError::Transport(e))
                });
                s.begin_close(cause, None);
                return;
            }
        }
    }
}

fn codec_failed<C: Codec, H: Handler<C>>(s: &Session<C>, handler: &H, e: CodecError) {
    let cause = CloseCause::ProtocolError(e.to_string());
    let _ = guarded(s.inner.id, "on_error", || {
        handler.on_error(s, &SessionError::Codec(e))
    });
    s.begin_close(cause, None);
}

/// Hands one message to the handler. False when the connection closed meanwhile (the
/// handler's future is then dropped: nothing it could send would arrive).
async fn deliver<C: Codec, H: Handler<C>>(s: &Session<C>, handler: &H, m: C::In) -> bool {
    s.inner.counters.messages_in.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        biased;
        // Boxed: the handler's future exists only while a message is handled, so an idle
        // session does not carry its (application-defined) size.
        r = CatchUnwind(Box::pin(handler.on_message(s, m))) => match r {
            Ok(()) => true,
            Err(msg) => {
                tracing::error!(session = s.inner.id, panic = %msg, "on_message panicked");
                s.begin_close(CloseCause::HandlerPanic(msg), None);
                false
            }
        },
        _ = s.wait_state(CLOSED) => false,
    }
}

/// Takes everything queued per wake-up, feeds it, flushes once. On close: drains (or not, by
/// the cause), closes the transport, and marks the session closed.
async fn write_loop<W: FrameWrite, C: Codec>(s: &Session<C>, mut wr: W) {
    let inner = &*s.inner;
    let mut batch: VecDeque<Encoded> = VecDeque::new();
    loop {
        let state = s.state();
        if state >= ABORTING {
            s.set_state(CLOSED);
            return;
        }
        {
            let mut q = lock(&inner.queue);
            std::mem::swap(&mut q.items, &mut batch);
            q.bytes = 0;
        }
        if batch.is_empty() {
            if state >= CLOSING {
                break;
            }
            if batch.capacity() > 0 {
                // Shrink back while idle: an idle session keeps no queue storage.
                batch = VecDeque::new();
            }
            tokio::select! {
                _ = inner.writer_wake.notified() => {}
                _ = s.reached(CLOSING) => {}
            }
            continue;
        }
        let messages = batch.len() as u64;
        let mut bytes = 0u64;
        inner.write_started_ms.store(s.now_ms(), Ordering::Release);
        // One notification per batch: the timer learns of the write deadline, and senders
        // blocked under `OverflowPolicy::Block` see the room.
        inner.state_changed.notify_waiters();
        // Boxed: only exists while writing, so idle sessions stay small.
        let mut write = Box::pin(write_batch(&mut wr, &mut batch, &mut bytes));
        let mut closing_seen = state >= CLOSING;
        let written = loop {
            tokio::select! {
                biased;
                _ = s.reached(ABORTING) => {
                    s.set_state(CLOSED);
                    return;
                }
                _ = s.reached(CLOSING), if !closing_seen => {
                    closing_seen = true;
                    if s.close_cause().is_some_and(|c| c.mode() != CloseMode::Drain) {
                        // Overflow, idle or protocol error while a write is stuck: a close
                        // frame could not be sent after a half-written frame anyway, so drop
                        // the connection now and release the batch.
                        s.set_state(CLOSED);
                        return;
                    }
                }
                r = &mut write => break r,
            }
        };
        drop(write);
        inner.write_started_ms.store(NONE, Ordering::Release);
        inner.last_write_ms.store(s.now_ms(), Ordering::Relaxed);
        inner.counters.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        inner
            .counters
            .messages_out
            .fetch_add(messages, Ordering::Relaxed);
        if batch.capacity() > 1024 {
            batch = VecDeque::new();
        }
        if let Err(e) = written {
            s.begin_close(CloseCause::PeerGone(e.to_string()), None);
            s.set_state(CLOSED);
            return;
        }
    }
    // Closing, and the queue is empty (drained, or discarded by the cause).
    let reason = s
        .close_cause()
        .map(|c| c.to_transport_reason())
        .unwrap_or_else(CloseReason::normal);
    tokio::select! {
        biased;
        _ = s.reached(ABORTING) => {}
        _ = Box::pin(wr.close(reason)) => {}
    }
    s.set_state(CLOSED);
}

async fn write_batch<W: FrameWrite>(
    wr: &mut W,
    batch: &mut VecDeque<Encoded>,
    bytes: &mut u64,
) -> Result<(), TransportError> {
    while let Some(msg) = batch.pop_front() {
        let mut frames: [Option<Frame>; 2] = [None, None];
        let mut rest: Vec<Frame> = Vec::new();
        let mut n = 0;
        msg.into_frames(|f| {
            *bytes += f.len() as u64;
            if n < 2 {
                frames[n] = Some(f);
            } else {
                rest.push(f);
            }
            n += 1;
        });
        for f in frames.into_iter().flatten().chain(rest) {
            wr.feed(f).await?;
        }
    }
    wr.flush().await
}

/// The session's one timer: sleeps until the earliest of its deadlines (idle, heartbeat,
/// cron, write deadline, close deadline), acts on what is due, and sleeps again. No task and
/// no timer entry of its own beyond this one `Sleep`; while nothing is due (no idle timeout,
/// no heartbeat, no cron, no write in progress) it registers no timer at all.
async fn timer_loop<C: Codec, H: Handler<C>>(s: &Session<C>, handler: &H) {
    let inner = &*s.inner;
    let cfg = &*inner.config;
    let ms = |d: Duration| d.as_millis() as u64;
    // Only whether the codec has one; it is encoded when due (nothing stored per session).
    let heartbeat = cfg
        .heartbeat_interval
        .filter(|_| inner.codec.heartbeat(inner.framing).is_some())
        .map(|d| ms(d).max(1));
    let mut next_cron = cfg.cron_interval.map(|d| ms(d).max(1));
    let sleep = tokio::time::sleep_until(inner.epoch);
    tokio::pin!(sleep);
    loop {
        // Registered before anything is read, so no notification between the checks below
        // and the wait is lost. This is the session's only registered state waiter (see
        // `Session::reached`); it also wakes for the writer's per-batch notification.
        let changed = inner.state_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let state = s.state();
        if state >= CLOSED {
            return;
        }
        let now = s.now_ms();
        let mut next = NONE;
        if state == OPEN {
            if let Some(idle) = cfg.idle_timeout {
                let at = inner.last_read_ms.load(Ordering::Relaxed) + ms(idle);
                if now >= at {
                    let _ = guarded(inner.id, "on_error", || {
                        handler.on_error(
                            s,
                            &SessionError::Transport(TransportError::Timeout(
                                "session idle timeout",
                            )),
                        )
                    });
                    s.begin_close(CloseCause::IdleTimeout, None);
                    // The reader and writer do not register for state changes (see
                    // `Session::reached`); when the timer itself changes the state, yield so
                    // the task is polled again and they see it now.
                    tokio::task::yield_now().await;
                    continue;
                }
                next = next.min(at);
            }
            if let Some(every) = heartbeat {
                let at = inner.last_write_ms.load(Ordering::Relaxed) + every;
                if now >= at {
                    if s.queue_len() == 0
                        && let Some(hb) = inner.codec.heartbeat(inner.framing)
                    {
                        s.push_unbounded(hb, false);
                    }
                    // Counts as written for scheduling even before the writer reports.
                    inner.last_write_ms.store(now, Ordering::Relaxed);
                    next = next.min(now + every);
                } else {
                    next = next.min(at);
                }
            }
            if let Some(at) = next_cron {
                if now >= at {
                    let _ = guarded(inner.id, "on_cron", || handler.on_cron(s));
                    let every = ms(cfg.cron_interval.unwrap_or_default()).max(1);
                    next_cron = Some(at + every * ((now - at) / every + 1));
                }
                next = next.min(next_cron.unwrap_or(NONE));
            }
        } else {
            let at = inner.close_deadline_ms.load(Ordering::Acquire);
            if now < at {
                next = next.min(at);
            } else if state < ABORTING {
                tracing::debug!(session = inner.id, "close deadline passed; dropping");
                s.set_state(ABORTING);
                tokio::task::yield_now().await;
                continue;
            }
        }
        let started = inner.write_started_ms.load(Ordering::Acquire);
        if started != NONE && state < ABORTING {
            let at = started + ms(cfg.write_timeout);
            if now >= at {
                if !s.begin_close(CloseCause::WriteTimeout, None) {
                    s.set_state(ABORTING);
                }
                tokio::task::yield_now().await;
                continue;
            }
            next = next.min(at);
        }
        if next == NONE {
            changed.await;
        } else {
            sleep.as_mut().reset(s.at(next));
            tokio::select! {
                _ = &mut sleep => {}
                _ = changed => {}
            }
        }
    }
}
