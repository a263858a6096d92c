//! The [`Session`] handle: sending through the bounded queue, closing, state, counters,
//! attributes and close callbacks. The task that runs a session is in `driver`.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chinwag_transport::{ConnectionPermit, Framing, PeerAddr};
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::budget::Charge;
use crate::codec::{Codec, CodecError, Encoded, Farewell};
use crate::config::{OverflowPolicy, SessionConfig};
use crate::driver::run_callback;
use crate::error::{CloseCause, CloseMode, SendError};

pub(crate) const OPEN: u8 = 0;
pub(crate) const CLOSING: u8 = 1;
pub(crate) const ABORTING: u8 = 2;
pub(crate) const CLOSED: u8 = 3;
pub(crate) const FINISHED: u8 = 4;
pub(crate) const NONE: u64 = u64::MAX;

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
pub(crate) struct Counters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) items: VecDeque<Entry>,
    pub(crate) bytes: usize,
    /// The policy [`Session::set_overflow_policy`] chose, if it did (under the queue's lock
    /// rather than one of its own: 8 bytes less per session).
    pub(crate) overflow: Option<OverflowPolicy>,
}

/// A close under way: why, and when the session is dropped if it has not finished by then
/// (milliseconds since the session's epoch).
pub(crate) struct Closing {
    pub(crate) cause: CloseCause,
    pub(crate) deadline_ms: u64,
}

/// One queued message, with the bytes it holds against a budget until written.
pub(crate) struct Entry {
    pub(crate) msg: Encoded,
    pub(crate) charge: Option<Charge>,
    /// Queued under `DropOldest`/`DropNewest`: `DropOldest` may discard it for room.
    pub(crate) droppable: bool,
    /// The codec's preamble: kept when a close discards the queue, so a farewell is never
    /// written before it.
    pub(crate) preamble: bool,
}

impl Entry {
    pub(crate) fn new(msg: Encoded) -> Self {
        Entry {
            msg,
            charge: None,
            droppable: false,
            preamble: false,
        }
    }
}

type CloseCallback = Box<dyn FnOnce(&CloseCause) + Send>;
type AttrMap = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

pub(crate) struct Inner<C: Codec> {
    pub(crate) id: u64,
    pub(crate) peer: PeerAddr,
    pub(crate) framing: Framing,
    pub(crate) codec: Arc<C>,
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) epoch: Instant,
    pub(crate) state: AtomicU8,
    /// For waiters outside the session's task (`wait_state`, senders blocked for room).
    pub(crate) state_changed: Notify,
    /// The session's own task (its writer and timer register here while they wait): woken by
    /// a push from another task, a state change, a kick of the timer. One slot serves them
    /// both since every wake-up polls the writer and the timer (see `driver::Drive`), and it
    /// keeps the waiting futures free of `Notified`s (64 bytes each per idle session).
    pub(crate) task: AtomicWaker,
    /// Something was queued since the writer last took the queue.
    pub(crate) queued: AtomicBool,
    /// A close that discards the queue has begun: the writer feeds no further message of a
    /// batch it took before (see `driver::write_batch`). Set under the queue's lock.
    pub(crate) discarding: AtomicBool,
    /// The timer should recompute its deadlines (see `kick_timer`).
    pub(crate) timer_kick: AtomicBool,
    /// Senders waiting for room under `OverflowPolicy::Block` (the writer tells them only
    /// when there are some).
    pub(crate) blocked_senders: AtomicUsize,
    pub(crate) queue: Mutex<Queue>,
    /// Why and until when it closes, once a close began (boxed: most of a session's life
    /// has none, and the cause is large; see `tests::a_session_fits_in_384_bytes`).
    pub(crate) closing: Mutex<Option<Box<Closing>>>,
    pub(crate) counters: Counters,
    pub(crate) last_read_ms: AtomicU64,
    pub(crate) last_write_ms: AtomicU64,
    pub(crate) write_started_ms: AtomicU64,
    /// Byte streams: when the message now being received started (`NONE`: none under way),
    /// and how many of its bytes have arrived.
    pub(crate) partial_started_ms: AtomicU64,
    pub(crate) partial_bytes: AtomicU64,
    pub(crate) attrs: Mutex<Option<Box<AttrMap>>>,
    pub(crate) callbacks: Mutex<Vec<(Cow<'static, str>, CloseCallback)>>,
    /// The connection's place in its acceptor's budget, while the session runs (accepted
    /// connections only).
    pub(crate) permit: Mutex<Option<ConnectionPermit>>,
    /// [`Session::establish`] was called.
    pub(crate) established: AtomicBool,
}

/// A handle to one session: cheap to clone, usable from any task.
///
/// It sends (through the bounded outbound queue), closes, and exposes the session's
/// attributes, counters, activity times and close callbacks. The session itself runs in one
/// task spawned by a [`Server`](crate::Server) or [`Client`](crate::Client) (or by
/// [`spawn_session`](crate::spawn_session)).
pub struct Session<C: Codec> {
    pub(crate) inner: Arc<Inner<C>>,
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
                task: AtomicWaker::new(),
                queued: AtomicBool::new(false),
                discarding: AtomicBool::new(false),
                timer_kick: AtomicBool::new(false),
                blocked_senders: AtomicUsize::new(0),
                queue: Mutex::new(Queue::default()),
                closing: Mutex::new(None),
                counters: Counters::default(),
                last_read_ms: AtomicU64::new(0),
                last_write_ms: AtomicU64::new(0),
                write_started_ms: AtomicU64::new(NONE),
                partial_started_ms: AtomicU64::new(NONE),
                partial_bytes: AtomicU64::new(0),
                attrs: Mutex::new(None),
                callbacks: Mutex::new(Vec::new()),
                permit: Mutex::new(None),
                established: AtomicBool::new(false),
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

    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn at(&self, ms: u64) -> Instant {
        self.inner.epoch + Duration::from_millis(ms)
    }

    /// When the session opened.
    pub fn opened_at(&self) -> Instant {
        self.inner.epoch
    }

    /// When the last data frame arrived from the peer (the session's open time before that).
    /// The idle timeout counts from here, or from a later control frame (a WebSocket ping or
    /// pong) the transport consumed itself.
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
        lock(&self.inner.queue)
            .overflow
            .unwrap_or(self.inner.config.overflow)
    }

    /// Chooses this session's overflow policy (e.g. in [`Handler::on_open`](crate::Handler::on_open), by who the peer
    /// is), overriding [`SessionConfig::overflow`].
    pub fn set_overflow_policy(&self, policy: OverflowPolicy) {
        lock(&self.inner.queue).overflow = Some(policy);
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
    /// for every session — frames are shared `Bytes`) under the session's
    /// [overflow policy](Self::overflow_policy). Waits only under [`OverflowPolicy::Block`].
    /// Success means queued, not delivered.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`], or what the overflow policy says when the queue is full.
    pub async fn send_encoded(&self, msg: Encoded) -> Result<(), SendError> {
        self.send_entry(Entry::new(msg), self.overflow_policy())
            .await
    }

    /// Queues `msg` under `policy` instead of the session's own (for instance
    /// `Block { timeout }` for an answer that must not be dropped, or `DropNewest` for a feed).
    ///
    /// # Errors
    ///
    /// As [`send_encoded`](Self::send_encoded), by `policy`.
    pub async fn send_encoded_with(
        &self,
        msg: Encoded,
        policy: OverflowPolicy,
    ) -> Result<(), SendError> {
        self.send_entry(Entry::new(msg), policy).await
    }

    /// Queues `msg` under `policy` together with `charge` (bytes held against a
    /// [`ByteBudget`](crate::ByteBudget)), which is released once the message has been written
    /// (or discarded by a close). On an error the charge is released at once.
    ///
    /// # Errors
    ///
    /// As [`send_encoded_with`](Self::send_encoded_with).
    pub async fn send_charged(
        &self,
        msg: Encoded,
        charge: Charge,
        policy: OverflowPolicy,
    ) -> Result<(), SendError> {
        let mut entry = Entry::new(msg);
        entry.charge = Some(charge);
        self.send_entry(entry, policy).await
    }

    async fn send_entry(&self, entry: Entry, policy: OverflowPolicy) -> Result<(), SendError> {
        let mut entry = match self.push(entry, policy) {
            Ok(()) => return Ok(()),
            Err(Pushed::Error(e)) => return Err(e),
            Err(Pushed::Full(entry)) => entry,
        };
        let OverflowPolicy::Block { timeout } = policy else {
            return Err(SendError::Dropped);
        };
        let deadline = Instant::now() + timeout;
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        let _blocked = Blocked::new(&self.inner.blocked_senders);
        loop {
            // Woken when the writer takes a batch (room) or the state changes (closing).
            let changed = self.inner.state_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            entry = match self.push(entry, policy) {
                Ok(()) => return Ok(()),
                Err(Pushed::Error(e)) => return Err(e),
                Err(Pushed::Full(entry)) => entry,
            };
            tokio::select! {
                _ = changed => {}
                _ = &mut sleep => return Err(SendError::Timeout),
            }
        }
    }

    /// Queues an encoded message without waiting, under the session's policy: under
    /// [`OverflowPolicy::Block`] a full queue gives [`SendError::Timeout`] at once. For
    /// synchronous contexts and fan-out (a stalled receiver never makes the sender wait).
    ///
    /// # Errors
    ///
    /// As [`send_encoded`](Self::send_encoded).
    pub fn try_send_encoded(&self, msg: Encoded) -> Result<(), SendError> {
        self.try_send_encoded_with(msg, self.overflow_policy())
    }

    /// As [`try_send_encoded`](Self::try_send_encoded) under `policy`.
    ///
    /// # Errors
    ///
    /// As [`send_encoded_with`](Self::send_encoded_with), with
    /// [`SendError::Timeout`] at once where `Block` would wait.
    pub fn try_send_encoded_with(
        &self,
        msg: Encoded,
        policy: OverflowPolicy,
    ) -> Result<(), SendError> {
        match self.push(Entry::new(msg), policy) {
            Ok(()) => Ok(()),
            Err(Pushed::Error(e)) => Err(e),
            Err(Pushed::Full(_)) => Err(SendError::Timeout),
        }
    }

    /// Applies the queue limits and `policy` (all but the waiting of `Block`).
    // The entry comes back by value when the queue is full under `Block` (the sender waits and
    // tries again); boxing it would allocate on that path for nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn push(&self, mut entry: Entry, policy: OverflowPolicy) -> Result<(), Pushed> {
        let inner = &*self.inner;
        if inner.state.load(Ordering::Acquire) >= CLOSING {
            return Err(Pushed::Error(SendError::Closed));
        }
        let cfg = &*inner.config;
        let max_msgs = cfg.queue_max_messages.max(1);
        let size = entry.msg.len();
        let mut q = lock(&inner.queue);
        let fits = |q: &Queue| {
            q.items.is_empty()
                || (q.items.len() < max_msgs && q.bytes.saturating_add(size) <= cfg.queue_max_bytes)
        };
        if !fits(&q) {
            match policy {
                OverflowPolicy::Block { .. } => return Err(Pushed::Full(entry)),
                OverflowPolicy::DropNewest => {
                    drop(q);
                    self.count_dropped(1);
                    return Err(Pushed::Error(SendError::Dropped));
                }
                OverflowPolicy::DropOldest => {
                    // Only messages queued under a dropping policy may go: an answer queued
                    // with `Block` (say) was promised to the peer.
                    let mut dropped = 0;
                    let mut i = 0;
                    while !fits(&q) && i < q.items.len() {
                        if q.items[i].droppable {
                            let old = q.items.remove(i).expect("index checked");
                            q.bytes -= old.msg.len();
                            dropped += 1;
                        } else {
                            i += 1;
                        }
                    }
                    let room = fits(&q);
                    drop(q);
                    self.count_dropped(dropped + u64::from(!room));
                    if !room {
                        return Err(Pushed::Error(SendError::Dropped));
                    }
                    q = lock(&inner.queue);
                }
                OverflowPolicy::Close => {
                    drop(q);
                    self.begin_close(CloseCause::Overflow, None);
                    return Err(Pushed::Error(SendError::Overflow));
                }
            }
        }
        entry.droppable = matches!(
            policy,
            OverflowPolicy::DropOldest | OverflowPolicy::DropNewest
        );
        q.bytes += size;
        q.items.push_back(entry);
        drop(q);
        self.wake_writer();
        Ok(())
    }

    /// Tells the writer something is queued. From this session's own reader no wake-up is
    /// needed: the writer is polled right after it, in the same pass (see `driver::Drive`).
    fn wake_writer(&self) {
        let inner = &*self.inner;
        inner.queued.store(true, Ordering::Release);
        if !crate::driver::in_drive_of(inner.id) {
            inner.task.wake();
        }
    }

    /// Tells the timer to look at its deadlines again (a write that has to wait, a message
    /// under way). From this session's own reader or writer no wake-up is needed: the timer is
    /// polled after them, in the same pass.
    pub(crate) fn kick_timer(&self) {
        let inner = &*self.inner;
        inner.timer_kick.store(true, Ordering::Release);
        if !crate::driver::in_drive_of(inner.id) {
            inner.task.wake();
        }
    }

    fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.inner
                .counters
                .messages_dropped
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Queues a message outside the limits: the preamble (first in the queue), heartbeats.
    pub(crate) fn push_unbounded(&self, msg: Encoded, preamble: bool) {
        let mut q = lock(&self.inner.queue);
        q.bytes += msg.len();
        let mut entry = Entry::new(msg);
        entry.preamble = preamble;
        if preamble {
            q.items.push_front(entry);
        } else {
            q.items.push_back(entry);
        }
        drop(q);
        self.wake_writer();
    }

    // ---- pending and established ---------------------------------------------------------------

    /// Moves this connection out of its acceptor's **pending share** for good: call it when
    /// the peer has signed in. Until then (for services whose
    /// [`establish_on_admit`](crate::Service::establish_on_admit) is false), the connection may
    /// be **evicted** when the share is full and a new connection needs a pending place: it is
    /// then closed as for an idle timeout (the codec's farewell, then WebSocket 1013), with
    /// [`CloseCause::Evicted`]. Idempotent; callable from admission on; no effect on a
    /// connection already evicted, or without a budget (dialled ones, pipes, UDP). See
    /// `chinwag_transport::budget`.
    pub fn establish(&self) {
        self.inner.established.store(true, Ordering::SeqCst);
        if let Some(p) = lock(&self.inner.permit).as_ref() {
            p.establish();
        }
    }

    /// Whether [`establish`](Self::establish) was called (by the application, or by the
    /// server at admission).
    pub fn is_established(&self) -> bool {
        self.inner.established.load(Ordering::SeqCst)
    }

    /// Takes the connection's budget place: an eviction closes this session, and an earlier
    /// or later [`establish`](Self::establish) applies to it.
    pub(crate) fn attach_permit(&self, permit: ConnectionPermit) {
        // Weak: the permit lives in the transport, which must not keep the session alive.
        let weak = Arc::downgrade(&self.inner);
        permit.on_evict(move || {
            if let Some(inner) = weak.upgrade() {
                Session { inner }.evict();
            }
        });
        *lock(&self.inner.permit) = Some(permit.clone());
        if self.inner.established.load(Ordering::SeqCst) {
            permit.establish();
        }
    }

    /// Lets go of the budget place (the session ended; its transport is gone or going).
    pub(crate) fn release_permit(&self) {
        let permit = lock(&self.inner.permit).take();
        drop(permit);
    }

    /// Evicted from the pending share: closes as an idle timeout does (farewell, close code).
    fn evict(&self) {
        let inner = &*self.inner;
        tracing::debug!(session = inner.id, peer = %inner.peer, "evicted while pending");
        let farewell = inner.codec.farewell(Farewell::Timeout, inner.framing);
        self.begin_close_with(CloseCause::Evicted, None, farewell);
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
    /// [`CloseCause::Local`], [`CloseCause::Application`], [`CloseCause::Shutdown`] or
    /// [`CloseCause::Peer`], and the whole
    /// close is bounded by `deadline` (default: now + [`SessionConfig::close_timeout`]).
    /// Returns false when the session was already closing.
    pub fn close_with(&self, cause: CloseCause, deadline: Option<Instant>) -> bool {
        self.begin_close(cause, deadline)
    }

    pub(crate) fn begin_close(&self, cause: CloseCause, deadline: Option<Instant>) -> bool {
        self.begin_close_with(cause, deadline, None)
    }

    /// Starts a close; `farewell` (the codec's last word for this cause, see
    /// [`Codec::farewell`]) is written after the queue is discarded, before the transport closes.
    pub(crate) fn begin_close_with(
        &self,
        cause: CloseCause,
        deadline: Option<Instant>,
        farewell: Option<Encoded>,
    ) -> bool {
        let inner = &*self.inner;
        let deadline_ms = match deadline {
            Some(d) => d.saturating_duration_since(inner.epoch).as_millis() as u64,
            None => self.now_ms() + inner.config.close_timeout.as_millis() as u64,
        };
        {
            let mut slot = lock(&inner.closing);
            if slot.is_some() {
                return false;
            }
            *slot = Some(Box::new(Closing {
                cause: cause.clone(),
                deadline_ms,
            }));
        }
        let mode = cause.mode();
        if mode != CloseMode::Drain {
            let mut q = lock(&inner.queue);
            // Under the queue's lock: a batch the writer took before this discards, one it
            // takes after (the farewell) is written.
            inner.discarding.store(true, Ordering::Release);
            let keep = mode == CloseMode::CloseNow && q.items.front().is_some_and(|e| e.preamble);
            if keep {
                q.items.truncate(1);
                q.bytes = q.items[0].msg.len();
            } else {
                q.items = VecDeque::new();
                q.bytes = 0;
            }
            if let Some(f) = farewell.filter(|_| mode == CloseMode::CloseNow) {
                q.bytes += f.len();
                q.items.push_back(Entry::new(f));
            }
        }
        tracing::debug!(session = inner.id, peer = %inner.peer, %cause, "session closing");
        self.set_state(if mode == CloseMode::Abort {
            ABORTING
        } else {
            CLOSING
        });
        true
    }

    pub(crate) fn set_state(&self, s: u8) {
        let inner = &*self.inner;
        if inner.state.fetch_max(s, Ordering::AcqRel) < s {
            inner.task.wake();
            inner.state_changed.notify_waiters();
        }
    }

    pub(crate) fn state(&self) -> u8 {
        self.inner.state.load(Ordering::Acquire)
    }

    /// Ready once the state is at least `at_least`, **without registering a waker**.
    ///
    /// Only for the reader and writer futures, which run joined with the timer future in one
    /// task: the timer is always registered on the task's waker (`Inner::task`, which every
    /// state change wakes) while the task is idle (it waits until the session is closed), a
    /// wake-up polls every joined future, and so these checks see every state change. Saves a
    /// `Notified` per idle session each.
    pub(crate) fn reached(&self, at_least: u8) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if self.state() >= at_least {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    pub(crate) async fn wait_state(&self, at_least: u8) {
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
        lock(&self.inner.closing).as_ref().map(|c| c.cause.clone())
    }

    /// Waits until the session has ended completely (after [`Handler::on_close`](crate::Handler::on_close) and the close
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
        // The first in exact room: a session has one or two callbacks, and `push`'s first growth
        // would keep room for four on every idle connection.
        if cbs.capacity() == 0 {
            cbs.reserve_exact(1);
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

    pub(crate) fn run_close_callbacks(&self, cause: &CloseCause) {
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

/// Counts a sender waiting for room while it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Blocked(n)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) enum Pushed {
    Full(Entry),
    Error(SendError),
}
