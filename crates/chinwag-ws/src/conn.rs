//! One WebSocket connection behind the transport seam, for any [`Engine`]: the owned reader and
//! writer halves, keepalive, and the close handshake with its timeout.
//!
//! Layout: both halves share an `Arc<Shared>` holding
//! * the engine's reader in a [`Lock`] (an async lock that is cheap when uncontended). The
//!   reader half holds it while `read_frame` runs; the writer half takes it only while closing,
//!   when nobody else is reading, to wait for the peer's close frame itself;
//! * the engine's writer in a [`Lock`], taken per `feed`/`flush` by the writer half and, for
//!   pongs, pings and close replies, by the reader half (reads never wait for the writer except
//!   for those control frames).
//!
//! No task is spawned per connection: pings are sent by the reader half while `read_frame` is
//! pending, which is when a session is waiting for input anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chinwag_transport::{
    CloseCode, CloseReason, ConnectionPermit, Frame, FrameRead, FrameWrite, Framing, PeerActivity,
    PeerAddr, Transport, TransportError,
};
use tokio::sync::Notify;

use crate::lock::{Guard, Lock};
use tokio::time::{Instant, Sleep};

use crate::WsConfig;
use crate::engine::{Engine, Incoming, Outgoing, RawRead, RawWrite, ReadError};

type ReadFuture<R> = Pin<Box<dyn Future<Output = (R, Result<Incoming, ReadError>)> + Send>>;

/// The engine reader, or its unfinished read (kept so that cancelling `read_frame` loses nothing
/// even when the engine's read is not cancel-safe), or the end state.
enum ReadSlot<R> {
    Idle(R),
    Busy(ReadFuture<R>),
    /// The peer closed (with this reason) or the connection failed.
    Closed(Option<CloseReason>),
    Failed,
}

impl<R: RawRead> ReadSlot<R> {
    async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            match self {
                ReadSlot::Idle(r) => {
                    // An engine whose read is cancel-safe reads in place: nothing to keep.
                    if let Some(read) = r.read_in_place() {
                        return read.await;
                    }
                    let ReadSlot::Idle(mut r) = std::mem::replace(self, ReadSlot::Failed) else {
                        unreachable!("matched Idle above")
                    };
                    *self = ReadSlot::Busy(Box::pin(async move {
                        let res = r.read().await;
                        (r, res)
                    }));
                }
                ReadSlot::Busy(fut) => {
                    let (r, res) = fut.as_mut().await;
                    *self = ReadSlot::Idle(r);
                    return res;
                }
                ReadSlot::Closed(_) | ReadSlot::Failed => {
                    return Err(ReadError::dead(TransportError::Closed));
                }
            }
        }
    }
}

struct WriteCore<W> {
    raw: W,
    close_sent: bool,
    shut_down: bool,
}

impl<W: RawWrite> WriteCore<W> {
    /// Sends a close frame unless one was sent already.
    async fn send_close(&mut self, reason: Option<CloseReason>) -> Result<(), TransportError> {
        if self.close_sent {
            return Ok(());
        }
        self.close_sent = true;
        self.raw.feed(Outgoing::Close(reason)).await?;
        self.raw.flush().await
    }

    async fn shutdown(&mut self) {
        if !self.shut_down {
            self.shut_down = true;
            let _ = self.raw.shutdown().await;
        }
    }
}

struct Shared<E: Engine> {
    read: Lock<ReadSlot<E::Read>>,
    write: Lock<WriteCore<E::Write>>,
    /// Set once the connection is finished (peer's close seen, or read failure).
    done: AtomicBool,
    done_notify: Notify,
    close_timeout: Duration,
    /// When the connection was made: the origin of `control_at`.
    epoch: Instant,
    /// Nanoseconds after `epoch` when the last ping or pong arrived from the peer
    /// (`u64::MAX`: none yet). Written per control frame only; read by whoever watches the
    /// peer's liveness (a session's idle timer) through [`PeerActivity`].
    control_at: AtomicU64,
}

impl<E: Engine> PeerActivity for Shared<E> {
    fn last_control_frame(&self) -> Option<Instant> {
        match self.control_at.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }
}

impl<E: Engine> Shared<E> {
    /// A ping or pong arrived from the peer.
    fn control_frame_seen(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.control_at.store(nanos, Ordering::Relaxed);
    }

    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.done_notify.notify_waiters();
    }

    /// Best effort: send a close frame and shut the socket down, bounded by the close timeout
    /// (a peer that stopped reading must not hold us).
    async fn close_and_shutdown(&self, reason: Option<CloseReason>) {
        let _ = tokio::time::timeout(self.close_timeout, async {
            let mut w = self.write.lock().await;
            let _ = w.send_close(reason).await;
            w.shutdown().await;
        })
        .await;
    }
}

/// A WebSocket connection (either engine) behind the transport seam.
///
/// Obtain one from [`WsAcceptor`](crate::WsAcceptor), [`upgrade`](crate::upgrade) or
/// [`connect`](crate::connect); [`Transport::split`] it into a [`WsReader`] and a [`WsWriter`].
pub struct WsConnection<E: Engine> {
    reader: WsReader<E>,
    writer: WsWriter<E>,
    peer: PeerAddr,
}

impl<E: Engine> WsConnection<E> {
    /// Holds `permit` (the socket's place in its acceptor's budget) until both halves are
    /// dropped.
    pub fn with_permit(mut self, permit: ConnectionPermit) -> Self {
        self.reader.permit = Some(permit.clone());
        self.writer.permit = Some(permit);
        self
    }
}

impl<E: Engine> std::fmt::Debug for WsConnection<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("engine", &E::NAME)
            .field("peer", &self.peer)
            .finish()
    }
}

impl<E: Engine> WsConnection<E> {
    /// Builds a connection from an engine's halves.
    pub fn from_raw(read: E::Read, write: E::Write, peer: PeerAddr, cfg: &WsConfig) -> Self {
        let shared = Arc::new(Shared::<E> {
            read: Lock::new(ReadSlot::Idle(read)),
            write: Lock::new(WriteCore {
                raw: write,
                close_sent: false,
                shut_down: false,
            }),
            done: AtomicBool::new(false),
            done_notify: Notify::new(),
            close_timeout: cfg.close_timeout,
            epoch: Instant::now(),
            control_at: AtomicU64::new(u64::MAX),
        });
        let keepalive = cfg.ping_interval.map(|interval| {
            let interval = interval.max(Duration::from_millis(1));
            Box::new(Keepalive {
                interval,
                pong_wait: cfg.pong_wait,
                sleep: Box::pin(tokio::time::sleep(interval)),
                awaiting_pong: false,
                seen: false,
            })
        });
        WsConnection {
            reader: WsReader {
                shared: shared.clone(),
                close_reason: None,
                keepalive,
                state: ReaderState::Open,
                permit: None,
            },
            writer: WsWriter {
                shared,
                permit: None,
            },
            peer,
        }
    }

    /// The engine's name ("tungstenite", "fastwebsockets" or "yawc").
    pub fn engine(&self) -> &'static str {
        E::NAME
    }
}

impl<E: Engine> Transport for WsConnection<E> {
    type Reader = WsReader<E>;
    type Writer = WsWriter<E>;

    fn framing(&self) -> Framing {
        Framing::Message
    }

    fn peer_addr(&self) -> PeerAddr {
        self.peer.clone()
    }

    fn split(self) -> (WsReader<E>, WsWriter<E>) {
        (self.reader, self.writer)
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        self.reader.permit.as_ref()
    }
}

struct Keepalive {
    interval: Duration,
    pong_wait: Duration,
    sleep: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    /// A frame arrived since the last tick.
    seen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    Open,
    /// `Ok(None)` was returned.
    Ended,
    /// An error was returned.
    Failed,
}

/// The reading half of a [`WsConnection`]: yields whole messages, answers pings, sends
/// keepalive pings while a read is pending, and reports the peer's close.
pub struct WsReader<E: Engine> {
    shared: Arc<Shared<E>>,
    close_reason: Option<CloseReason>,
    keepalive: Option<Box<Keepalive>>,
    state: ReaderState,
    permit: Option<ConnectionPermit>,
}

impl<E: Engine> std::fmt::Debug for WsReader<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader")
            .field("engine", &E::NAME)
            .field("state", &self.state)
            .finish()
    }
}

enum Step {
    Event(Result<Incoming, ReadError>),
    Tick,
}

/// What handling a rare event left the read to do: read on, or end with this result.
enum After<'a, R> {
    ReadOn(Guard<'a, ReadSlot<R>>),
    End(Result<Option<Frame>, TransportError>),
}

impl<E: Engine> WsReader<E> {
    async fn read_inner(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.state {
            ReaderState::Open => {}
            ReaderState::Ended => return Ok(None),
            ReaderState::Failed => return Err(TransportError::Closed),
        }
        let shared = self.shared.clone();
        let mut slot = shared.read.lock().await;
        loop {
            // The writer may have finished the close handshake while we were not reading.
            if let ReadSlot::Closed(reason) = &*slot {
                self.close_reason = reason.clone();
                self.state = ReaderState::Ended;
                return Ok(None);
            }
            if let ReadSlot::Failed = &*slot {
                self.state = ReaderState::Failed;
                return Err(TransportError::Closed);
            }
            let step = match self.keepalive.as_mut() {
                None => Step::Event(slot.next().await),
                Some(ka) => tokio::select! {
                    biased;
                    ev = slot.next() => Step::Event(ev),
                    () = ka.sleep.as_mut() => Step::Tick,
                },
            };
            if let Step::Event(Ok(Incoming::Message(frame))) = step {
                self.alive();
                return Ok(Some(frame));
            }
            // Everything else (pings, pongs, keepalive ticks, the close, errors) is rare and
            // handled in its own allocation: the future every idle connection waits in (this
            // one) then holds only what reading a message needs.
            match Box::pin(self.on_rare(&shared, slot, step)).await {
                After::ReadOn(s) => slot = s,
                After::End(r) => return r,
            }
        }
    }

    /// Handles whatever [`read_inner`](Self::read_inner) read that is not a message.
    async fn on_rare<'a>(
        &mut self,
        shared: &'a Shared<E>,
        mut slot: Guard<'a, ReadSlot<E::Read>>,
        step: Step,
    ) -> After<'a, E::Read> {
        match step {
            Step::Tick => {
                if let Err(e) = self.on_tick().await {
                    *slot = ReadSlot::Failed;
                    self.state = ReaderState::Failed;
                    return After::End(Err(e));
                }
            }
            Step::Event(Ok(Incoming::Message(frame))) => {
                self.alive();
                return After::End(Ok(Some(frame)));
            }
            Step::Event(Ok(Incoming::Ping(payload))) => {
                self.alive();
                shared.control_frame_seen();
                let mut w = shared.write.lock().await;
                if !w.close_sent {
                    let res = match w.raw.feed(Outgoing::Pong(payload)).await {
                        Ok(()) => w.raw.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = res {
                        drop(w);
                        *slot = ReadSlot::Failed;
                        self.state = ReaderState::Failed;
                        shared.finish();
                        return After::End(Err(e));
                    }
                }
            }
            Step::Event(Ok(Incoming::PingAnswered)) => {
                self.alive();
                shared.control_frame_seen();
            }
            Step::Event(Ok(Incoming::Pong)) => {
                shared.control_frame_seen();
                // Pongs are rare (one per ping): re-arm the interval right away rather
                // than waiting for the pong deadline's tick.
                if let Some(ka) = self.keepalive.as_mut()
                    && ka.awaiting_pong
                {
                    ka.awaiting_pong = false;
                    ka.seen = false;
                    ka.sleep.as_mut().reset(Instant::now() + ka.interval);
                } else {
                    self.alive();
                }
            }
            Step::Event(Ok(Incoming::Close { reason, reply })) => {
                *slot = ReadSlot::Closed(reason.clone());
                self.close_reason = reason.clone();
                self.state = ReaderState::Ended;
                drop(slot);
                // Answer with the peer's code (RFC 6455 §5.5.1), then end our side.
                let echo = if reply {
                    reason.map(|r| CloseReason::new(r.code, String::new()))
                } else {
                    None
                };
                if reply {
                    shared.close_and_shutdown(echo).await;
                } else {
                    let _ = tokio::time::timeout(shared.close_timeout, async {
                        let mut w = shared.write.lock().await;
                        let _ = w.raw.flush().await;
                        w.close_sent = true;
                        w.shutdown().await;
                    })
                    .await;
                }
                shared.finish();
                return After::End(Ok(None));
            }
            Step::Event(Err(e)) => {
                *slot = ReadSlot::Failed;
                self.state = ReaderState::Failed;
                drop(slot);
                if let Some(code) = e.close {
                    let reason = CloseReason::new(code, e.error.to_string());
                    shared.close_and_shutdown(Some(reason)).await;
                }
                shared.finish();
                return After::End(Err(e.error));
            }
        }
        After::ReadOn(slot)
    }

    /// Any frame from the peer proves it is alive. Only a flag is set here (no timer
    /// re-arming per message); the next tick looks at it.
    fn alive(&mut self) {
        if let Some(ka) = self.keepalive.as_mut() {
            ka.seen = true;
        }
    }

    async fn on_tick(&mut self) -> Result<(), TransportError> {
        let Some(ka) = self.keepalive.as_mut() else {
            return Ok(());
        };
        if ka.seen {
            // Traffic since the last tick: no ping needed yet.
            ka.seen = false;
            ka.awaiting_pong = false;
            ka.sleep.as_mut().reset(Instant::now() + ka.interval);
            return Ok(());
        }
        if ka.awaiting_pong {
            tracing::debug!(engine = E::NAME, "no pong within the pong wait; closing");
            self.shared
                .close_and_shutdown(Some(CloseReason::new(
                    CloseCode::GOING_AWAY,
                    "keepalive: no pong",
                )))
                .await;
            self.shared.finish();
            return Err(TransportError::Timeout("no pong within the pong wait"));
        }
        ka.awaiting_pong = true;
        ka.sleep.as_mut().reset(Instant::now() + ka.pong_wait);
        let mut w = self.shared.write.lock().await;
        if !w.close_sent {
            w.raw.feed(Outgoing::Ping(bytes::Bytes::new())).await?;
            w.raw.flush().await?;
        }
        Ok(())
    }
}

impl<E: Engine> FrameRead for WsReader<E> {
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send {
        self.read_inner()
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// The pings and pongs this reader answers or consumes (they never reach the caller), so a
    /// session's idle timeout can count a peer that only answers keepalive pings as alive.
    fn activity(&self) -> Option<Arc<dyn PeerActivity>> {
        Some(self.shared.clone())
    }
}

/// The writing half of a [`WsConnection`]. `feed` buffers (up to
/// [`WsConfig::write_buffer_size`]), `flush` writes the batch, `close` runs the close handshake
/// bounded by [`WsConfig::close_timeout`].
pub struct WsWriter<E: Engine> {
    shared: Arc<Shared<E>>,
    permit: Option<ConnectionPermit>,
}

impl<E: Engine> std::fmt::Debug for WsWriter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter")
            .field("engine", &E::NAME)
            .finish()
    }
}

impl<E: Engine> WsWriter<E> {
    async fn close_inner(&mut self, reason: CloseReason) -> Result<(), TransportError> {
        let shared = self.shared.clone();
        let deadline = Instant::now() + shared.close_timeout;
        // 1. Send our close frame (after everything fed before it).
        let sent = tokio::time::timeout_at(deadline, async {
            let mut w = shared.write.lock().await;
            if w.close_sent {
                return Ok(false);
            }
            w.send_close(Some(reason)).await.map(|()| true)
        })
        .await;
        match sent {
            Err(_) => {
                self.force_shutdown().await;
                return Err(TransportError::Timeout("sending the close frame"));
            }
            Ok(Err(e)) => {
                self.force_shutdown().await;
                return Err(e);
            }
            Ok(Ok(false)) if shared.done.load(Ordering::SeqCst) => return Ok(()),
            Ok(Ok(_)) => {}
        }
        // 2. Wait for the peer's close frame: read by the reader half if it is reading, by us
        //    otherwise.
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                let notified = shared.done_notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if shared.done.load(Ordering::SeqCst) {
                    return;
                }
                tokio::select! {
                    () = notified => {}
                    mut slot = shared.read.lock() => {
                        loop {
                            match &*slot {
                                ReadSlot::Closed(_) | ReadSlot::Failed => break,
                                _ => {}
                            }
                            match slot.next().await {
                                Ok(Incoming::Close { reason, .. }) => {
                                    *slot = ReadSlot::Closed(reason);
                                    break;
                                }
                                // After our close frame, data and pings may be dropped.
                                Ok(_) => {}
                                Err(_) => {
                                    *slot = ReadSlot::Failed;
                                    break;
                                }
                            }
                        }
                        shared.finish();
                        return;
                    }
                }
            }
        })
        .await;
        self.force_shutdown().await;
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(TransportError::Timeout(
                "the peer did not answer our close frame",
            )),
        }
    }

    async fn force_shutdown(&self) {
        let shared = &self.shared;
        let _ = tokio::time::timeout(shared.close_timeout, async {
            shared.write.lock().await.shutdown().await;
        })
        .await;
    }
}

impl<E: Engine> FrameWrite for WsWriter<E> {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        let mut w = self.shared.write.lock().await;
        if w.close_sent {
            return Err(TransportError::Closed);
        }
        w.raw.feed(Outgoing::Message(frame)).await
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        let mut w = self.shared.write.lock().await;
        if w.shut_down {
            return Err(TransportError::Closed);
        }
        w.raw.flush().await
    }

    fn close(
        &mut self,
        reason: CloseReason,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.close_inner(reason)
    }
}
