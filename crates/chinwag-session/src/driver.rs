//! The driver: the one task per session that reads, decodes and hands messages to the handler,
//! writes the queue in batches, and keeps time (one timer for every deadline).

use std::any::Any;
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use chinwag_transport::{
    CloseCode, CloseReason, ConnectInfo, Frame, FrameRead, FrameWrite, Framing, PeerActivity,
    Refusal, Transport, TransportError,
};
use futures_util::FutureExt;
use futures_util::future::{Fuse, FusedFuture};
use futures_util::task::AtomicWaker;

use crate::budget::Charge;
use crate::codec::{Codec, CodecError, Decoder, Farewell};
use crate::config::SessionConfig;
use crate::error::{CloseCause, SessionError};
use crate::handle::{ABORTING, CLOSED, CLOSING, Entry, FINISHED, NONE, OPEN, Session, lock};
use crate::handler::Service;

/// Runs a session on `transport` in a new task and returns its handle at once: admission
/// first ([`Service::admit`], with what the transport tells: its peer address), then the
/// session. Servers and clients use this internally; use it directly for a connection you made
/// yourself. A refused admission ends the session with [`CloseCause::NotAdmitted`].
pub fn spawn_session<T, C, H>(
    transport: T,
    codec: Arc<C>,
    handler: Arc<H>,
    config: Arc<SessionConfig>,
) -> Session<C>
where
    T: Transport,
    C: Codec,
    H: Service<C>,
{
    let session = Session::new(transport.peer_addr(), transport.framing(), codec, config);
    if let Some(p) = transport.permit() {
        session.attach_permit(p.clone());
    }
    if handler.establish_on_admit() {
        session.establish();
    }
    let s = session.clone();
    tokio::spawn(async move {
        let info = ConnectInfo::new(transport.peer_addr());
        match handler.admit(&s, &info).await {
            Ok(admission) => {
                run(s, transport, handler, admission.state).await;
            }
            Err(refusal) => not_admitted(&s, refusal),
        }
    });
    session
}

/// Ends a session whose connection was refused at admission (it never started).
pub(crate) fn not_admitted<C: Codec>(s: &Session<C>, refusal: Refusal) {
    tracing::debug!(session = s.inner.id, peer = %s.inner.peer, %refusal, "not admitted");
    s.begin_close(CloseCause::NotAdmitted(refusal), None);
    s.release_permit();
    s.set_state(CLOSED);
    let cause = s.close_cause().unwrap_or(CloseCause::Local);
    s.run_close_callbacks(&cause);
    s.set_state(FINISHED);
}

/// Runs `session` on `transport` to its end (the session's whole life, in the caller's task),
/// with the per-connection `state` admission made.
pub(crate) fn run<T, C, H>(
    session: Session<C>,
    transport: T,
    handler: Arc<H>,
    state: H::State,
) -> impl Future<Output = CloseCause> + Send
where
    T: Transport,
    C: Codec,
    H: Service<C>,
{
    // Split before the future is made, and an `async move` block rather than an `async fn`:
    // the future then keeps the halves only (not the transport beside them), and no copy of
    // its arguments (an `async fn` keeps each argument twice, captured and moved into a
    // local). The reader and writer borrow the halves rather than take them: what an async
    // block captures stays in its future for its whole life, so halves moved on into the
    // loops would be kept twice. Every idle connection carries this future; `docs/session.md`
    // has the sizes.
    let (mut reader, mut writer) = transport.split();
    async move {
        let s = &session;
        let state = &state;
        let opened =
            guarded(s.inner.id, "on_open", || handler.on_open(s, state)).unwrap_or_else(|m| {
                Err(CloseReason::new(
                    CloseCode::INTERNAL,
                    format!("on_open panicked: {m}"),
                ))
            });
        if let Err(refusal) = opened {
            s.begin_close(CloseCause::Refused(refusal.clone()), None);
            let _ = tokio::time::timeout(s.inner.config.close_timeout, writer.close(refusal)).await;
            drop((reader, writer));
            s.release_permit();
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
        // Frames the reader consumes itself (WebSocket pings and pongs) count for the idle timeout
        // too; the timer looks at them only when the idle deadline passes.
        let activity = s.inner.config.idle_timeout.and_then(|_| reader.activity());
        Drive {
            id: s.inner.id,
            read: read_loop(s, &mut reader, decoder, &*handler, state).fuse(),
            write: write_loop(s, &mut writer).fuse(),
            timer: timer_loop(s, &*handler, state, activity).fuse(),
        }
        .await;
        // The transport's halves go with the drive: so does the connection's budget place.
        drop((reader, writer));
        s.release_permit();
        let cause = s.close_cause().unwrap_or(CloseCause::Local);
        tracing::debug!(session = s.inner.id, %cause, "session closed");
        let _ = guarded(s.inner.id, "on_close", || {
            handler.on_close(s, state, &cause)
        });
        s.run_close_callbacks(&cause);
        s.set_state(FINISHED);
        cause
    }
}

thread_local! {
    /// The session whose reader or writer this thread is polling now (0: none). What they
    /// queue for the writer, or tell the timer, needs no wake-up: [`Drive`] polls the writer
    /// after the reader and the timer after both, in the same pass.
    static DRIVING: Cell<u64> = const { Cell::new(0) };
}

/// Whether this thread is inside session `id`'s reader or writer (so the writer, or the
/// timer, is polled after it in this pass).
pub(crate) fn in_drive_of(id: u64) -> bool {
    DRIVING.with(|r| r.get() == id)
}

/// The three parts of a session, polled in a fixed order in one task: reader, writer, timer.
/// The order is what lets the reader's pushes and the writer's batches skip the wake-ups
/// (and the extra polls of the task they cause) that `tokio::join!` (which rotates its
/// order) would need: whatever the reader queued, the writer sees in the same pass.
#[pin_project::pin_project]
struct Drive<R, W, T> {
    id: u64,
    #[pin]
    read: Fuse<R>,
    #[pin]
    write: Fuse<W>,
    #[pin]
    timer: Fuse<T>,
}

impl<R: Future<Output = ()>, W: Future<Output = ()>, T: Future<Output = ()>> Future
    for Drive<R, W, T>
{
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let outer = DRIVING.with(|r| r.replace(*this.id));
        let ended_before = this.write.is_terminated() && this.timer.is_terminated();
        if !this.read.is_terminated() {
            let _ = this.read.as_mut().poll(cx);
        }
        if !this.write.is_terminated() {
            let _ = this.write.as_mut().poll(cx);
        }
        DRIVING.with(|r| r.set(outer));
        if !this.timer.is_terminated() {
            let _ = this.timer.as_mut().poll(cx);
        }
        // The reader waits for the close without a waker of its own (`Session::reached`): the
        // timer's wake-ups poll it. When the writer closed the session and the timer ended in
        // this very poll, after the reader was polled, nothing would wake the task again: poll
        // the reader once more, now that it sees the session closed (found by a stress loop of
        // the hub's `hooks` test: a tok session hung at shutdown about once in 100 runs).
        if !ended_before
            && this.write.is_terminated()
            && this.timer.is_terminated()
            && !this.read.is_terminated()
        {
            let outer = DRIVING.with(|r| r.replace(*this.id));
            let _ = this.read.as_mut().poll(cx);
            DRIVING.with(|r| r.set(outer));
        }
        if this.read.is_terminated() && this.write.is_terminated() && this.timer.is_terminated() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
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
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice; see `run`"
)]
fn read_loop<'a, R, C, H>(
    s: &'a Session<C>,
    rd: &'a mut R,
    mut dec: C::Decoder,
    handler: &'a H,
    state: &'a H::State,
) -> impl Future<Output = ()> + Send + 'a
where
    R: FrameRead + 'a,
    C: Codec,
    H: Service<C>,
{
    // An `async move` block, not an `async fn`: see `run`.
    async move {
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
                            Ok(Some(m)) => deliver(s, handler, state, m).await,
                            Ok(None) => true,
                            Err(e) => return codec_failed(s, handler, state, e),
                        },
                        Framing::Stream => {
                            let payload = frame.into_payload();
                            let arrived = payload.len();
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
                                    return codec_failed(s, handler, state, e);
                                }
                                buf.extend_from_slice(&payload);
                            }
                            let mut ok = true;
                            let mut completed = false;
                            while ok {
                                match dec.decode(&mut buf) {
                                    Ok(Some(m)) => {
                                        if !completed {
                                            // A whole message is here: nothing is late on the
                                            // peer's side while we handle it (our handler may
                                            // wait, e.g. for room to answer); the deadline of
                                            // what is left starts again after this pass.
                                            s.inner
                                                .partial_started_ms
                                                .store(NONE, Ordering::Release);
                                        }
                                        completed = true;
                                        ok = deliver(s, handler, state, m).await;
                                    }
                                    Ok(None) => break,
                                    Err(e) => return codec_failed(s, handler, state, e),
                                }
                            }
                            if buf.is_empty() {
                                // Release the chunk: an idle session holds no read buffer (an empty
                                // view may still share, and so keep alive, the last message's
                                // allocation even with no capacity of its own).
                                buf = BytesMut::new();
                            }
                            track_partial(s, buf.len(), arrived, completed);
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
                                    if !deliver(s, handler, state, m).await {
                                        return;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => return codec_failed(s, handler, state, e),
                            }
                        }
                    }
                    s.begin_close(CloseCause::Peer(rd.close_reason().cloned()), None);
                    return;
                }
                Err(e) => {
                    let cause = transport_cause(&e);
                    let _ = guarded(s.inner.id, "on_error", || {
                        handler.on_error(s, state, &SessionError::Transport(e))
                    });
                    s.begin_close(cause, None);
                    return;
                }
            }
        }
    }
}

fn codec_failed<C: Codec, H: Service<C>>(
    s: &Session<C>,
    handler: &H,
    state: &H::State,
    e: CodecError,
) {
    let cause = CloseCause::ProtocolError(e.to_string());
    let farewell = s
        .inner
        .codec
        .farewell(Farewell::Invalid(&e), s.inner.framing);
    let _ = guarded(s.inner.id, "on_error", || {
        handler.on_error(s, state, &SessionError::Codec(e))
    });
    s.begin_close_with(cause, None, farewell);
}

/// Byte streams: notes whether a message is under way after a decode pass (`pending` bytes
/// left in the buffer, `arrived` in the last read, `completed` a message in this pass), for
/// the message deadline (see [`SessionConfig::message_timeout`]).
fn track_partial<C: Codec>(s: &Session<C>, pending: usize, arrived: usize, completed: bool) {
    let inner = &*s.inner;
    if inner.config.message_timeout.is_none() {
        return;
    }
    if pending == 0 {
        inner.partial_started_ms.store(NONE, Ordering::Release);
        return;
    }
    let was = inner.partial_started_ms.load(Ordering::Acquire);
    if was == NONE || completed {
        // A new message began (what is left after the last whole one).
        inner.partial_bytes.store(pending as u64, Ordering::Relaxed);
        inner
            .partial_started_ms
            .store(s.now_ms(), Ordering::Release);
        if was == NONE {
            // The timer may be asleep until a later deadline: let it see this one.
            s.kick_timer();
        }
    } else {
        inner
            .partial_bytes
            .fetch_add(arrived as u64, Ordering::Relaxed);
    }
}

/// Hands one message to the handler. False when the connection closed meanwhile (the
/// handler's future is then dropped: nothing it could send would arrive).
async fn deliver<C: Codec, H: Service<C>>(
    s: &Session<C>,
    handler: &H,
    state: &H::State,
    m: C::In,
) -> bool {
    s.inner.counters.messages_in.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        biased;
        // Boxed: the handler's future exists only while a message is handled, so an idle
        // session does not carry its (application-defined) size.
        r = CatchUnwind(Box::pin(handler.on_message(s, state, m))) => match r {
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
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice; see `run`"
)]
fn write_loop<'a, W: FrameWrite + 'a, C: Codec>(
    s: &'a Session<C>,
    wr: &'a mut W,
) -> impl Future<Output = ()> + Send + 'a {
    // An `async move` block, not an `async fn`: see `run`.
    async move {
        let inner = &*s.inner;
        let mut batch: VecDeque<Entry> = VecDeque::new();
        loop {
            let state = s.state();
            if state >= ABORTING {
                s.set_state(CLOSED);
                return;
            }
            // Whether a discarding close may still cut this batch short: not once one has begun
            // (what is queued then — a farewell — must be written).
            let discardable;
            {
                let mut q = lock(&inner.queue);
                std::mem::swap(&mut q.items, &mut batch);
                if batch.is_empty() {
                    // Nothing queued: the session goes idle, and the storage of the last batches
                    // (one just swapped into the queue) goes with it, so an idle session keeps none.
                    q.items = VecDeque::new();
                    batch = VecDeque::new();
                }
                q.bytes = 0;
                inner.queued.store(false, Ordering::Release);
                discardable = !inner.discarding.load(Ordering::Acquire);
            }
            if batch.is_empty() {
                if state >= CLOSING {
                    break;
                }
                // Woken by a push from another task (through the task's waker), or seen in the
                // same pass when the push came from this session's own reader (`queued`, see
                // `Drive`). Checked again once registered: a push in between has set `queued`.
                let ready = || inner.queued.load(Ordering::Acquire) || s.state() >= CLOSING;
                std::future::poll_fn(|cx| until(&inner.task, cx, ready)).await;
                continue;
            }
            // Room was made: senders waiting under `OverflowPolicy::Block` may go on.
            if inner.blocked_senders.load(Ordering::Acquire) > 0 {
                inner.state_changed.notify_waiters();
            }
            let mut messages = 0u64;
            let mut bytes = 0u64;
            // Boxed: only exists while writing, so idle sessions stay small.
            let mut write = Box::pin(write_batch(
                &mut *wr,
                &mut batch,
                &mut messages,
                &mut bytes,
                discardable.then_some(&inner.discarding),
            ));
            // Most batches are written at once: only one that has to wait for the socket needs the
            // timer to watch its deadline (told through `kick_timer`).
            let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
            let mut closing_seen = state >= CLOSING;
            let written = if let Poll::Ready(r) = first {
                r
            } else {
                inner.write_started_ms.store(s.now_ms(), Ordering::Release);
                s.kick_timer();
                loop {
                    tokio::select! {
                        biased;
                        _ = s.reached(ABORTING) => {
                            s.set_state(CLOSED);
                            return;
                        }
                        // Overflow, idle or protocol error while a write is stuck (the peer does
                        // not read): `write_batch` feeds no further message of the batch (they are
                        // discarded, as the queue was), the write under way finishes as soon as
                        // the socket takes it, and the farewell and close frame follow — so a peer
                        // that reads again gets the close code. The close deadline bounds it all.
                        _ = s.reached(CLOSING), if !closing_seen => closing_seen = true,
                        r = &mut write => break r,
                    }
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
}

/// Feeds the batch's messages and flushes once, counting what it fed. Once the session closes
/// in a mode that discards (`discarding`, given for batches taken before such a close), the
/// messages not fed yet are dropped (with their charges) and only what was fed is flushed: a
/// message is never cut in half, and the close frame can follow as soon as the socket takes
/// the rest.
async fn write_batch<W: FrameWrite>(
    wr: &mut W,
    batch: &mut VecDeque<Entry>,
    messages: &mut u64,
    bytes: &mut u64,
    discarding: Option<&AtomicBool>,
) -> Result<(), TransportError> {
    // Charges of the batch's messages, released once the flush is done (the bytes are in the
    // transport's buffers until then). No allocation unless a message carries one.
    let mut charges: Vec<Charge> = Vec::new();
    while let Some(Entry {
        msg,
        charge,
        preamble,
        ..
    }) = batch.pop_front()
    {
        // The preamble always goes (a farewell must not come without it).
        if !preamble && discarding.is_some_and(|d| d.load(Ordering::Acquire)) {
            drop((msg, charge));
            batch.clear();
            break;
        }
        *messages += 1;
        if let Some(c) = charge {
            charges.push(c);
        }
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
    let flushed = wr.flush().await;
    drop(charges);
    flushed
}

/// The session's one timer: sleeps until the earliest of its deadlines (idle, heartbeat,
/// cron, write deadline, close deadline), acts on what is due, and sleeps again. No task and
/// no timer entry of its own beyond this one `Sleep`; while nothing is due (no idle timeout,
/// no heartbeat, no cron, no write in progress) it registers no timer at all.
///
/// The idle deadline counts from the last frame the reader handed out; when it passes, the
/// transport's `activity` (control frames it consumed: WebSocket pings and pongs) is
/// consulted, and a later one re-arms the deadline instead of closing. So control frames cost
/// no wake-up of the session.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice; see `run`"
)]
fn timer_loop<'a, C: Codec, H: Service<C>>(
    s: &'a Session<C>,
    handler: &'a H,
    app: &'a H::State,
    activity: Option<Arc<dyn PeerActivity>>,
) -> impl Future<Output = ()> + Send + 'a {
    // An `async move` block, not an `async fn`: see `run`.
    async move {
        let inner = &*s.inner;
        let cfg = &*inner.config;
        let ms = |d: Duration| d.as_millis() as u64;
        // Only whether the codec has one; it is encoded when due (nothing stored per session).
        // Turned off for this session the first time the service has no heartbeat to send.
        let mut heartbeat = cfg.heartbeat_interval.map(|d| ms(d).max(1));
        let mut next_cron = cfg.cron_interval.map(|d| ms(d).max(1));
        let sleep = tokio::time::sleep_until(inner.epoch);
        tokio::pin!(sleep);
        loop {
            // Cleared and read before the deadlines are: a kick or a state change after this
            // point is seen by the wait below (it checks both again once registered on the
            // task's waker). This is the session's only registered state waiter (see
            // `Session::reached`).
            inner.timer_kick.store(false, Ordering::Release);
            let state = s.state();
            if state >= CLOSED {
                return;
            }
            let now = s.now_ms();
            let mut next = NONE;
            if state == OPEN {
                if let Some(idle) = cfg.idle_timeout {
                    let mut at = inner.last_read_ms.load(Ordering::Relaxed) + ms(idle);
                    if now >= at
                        && let Some(seen) = activity.as_ref().and_then(|a| a.last_control_frame())
                    {
                        // A ping or pong from the peer since: it is alive; count from there.
                        let seen = seen.saturating_duration_since(inner.epoch);
                        at = at.max(ms(seen) + ms(idle));
                    }
                    if now >= at {
                        timed_out(
                            s,
                            handler,
                            app,
                            "session idle timeout",
                            CloseCause::IdleTimeout,
                        );
                        // The reader and writer do not register for state changes (see
                        // `Session::reached`); when the timer itself changes the state, yield so
                        // the task is polled again and they see it now.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    next = next.min(at);
                }
                if let Some(grace) = cfg.message_timeout {
                    let started = inner.partial_started_ms.load(Ordering::Acquire);
                    if started != NONE {
                        let rate = u64::from(cfg.message_min_rate);
                        let received = inner.partial_bytes.load(Ordering::Relaxed);
                        let extra = received.saturating_mul(1000).checked_div(rate).unwrap_or(0);
                        let at = started.saturating_add(ms(grace)).saturating_add(extra);
                        if now >= at {
                            tracing::debug!(
                                session = inner.id,
                                received,
                                "message too slow; closing"
                            );
                            timed_out(
                                s,
                                handler,
                                app,
                                "a message did not arrive in time",
                                CloseCause::MessageTimeout,
                            );
                            tokio::task::yield_now().await;
                            continue;
                        }
                        next = next.min(at);
                    }
                }
                if let Some(every) = heartbeat {
                    let at = inner.last_write_ms.load(Ordering::Relaxed) + every;
                    if now >= at {
                        if s.queue_len() == 0 {
                            match guarded(inner.id, "heartbeat", || handler.heartbeat(s, app)) {
                                Ok(Some(hb)) => s.push_unbounded(hb, false),
                                Ok(None) | Err(_) => heartbeat = None,
                            }
                        }
                        // Counts as written for scheduling even before the writer reports.
                        inner.last_write_ms.store(now, Ordering::Relaxed);
                        if heartbeat.is_some() {
                            next = next.min(now + every);
                        }
                    } else {
                        next = next.min(at);
                    }
                }
                if let Some(at) = next_cron {
                    if now >= at {
                        let _ = guarded(inner.id, "on_cron", || handler.on_cron(s, app));
                        let every = ms(cfg.cron_interval.unwrap_or_default()).max(1);
                        next_cron = Some(at + every * ((now - at) / every + 1));
                    }
                    next = next.min(next_cron.unwrap_or(NONE));
                }
            } else {
                let at = lock(&inner.closing)
                    .as_ref()
                    .map_or(NONE, |c| c.deadline_ms);
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
            // Kicked by this session's reader or writer (seen in the same pass, see `Drive`), a
            // state change, or the deadline.
            let woken = || inner.timer_kick.load(Ordering::Acquire) || s.state() != state;
            if next != NONE {
                let at = s.at(next);
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
            }
            std::future::poll_fn(|cx| {
                if next != NONE && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                until(&inner.task, cx, woken)
            })
            .await;
        }
    }
}

/// A deadline of the timer passed (`what`): tells the handler, then closes with `cause` after
/// the codec's timeout farewell.
fn timed_out<C: Codec, H: Service<C>>(
    s: &Session<C>,
    handler: &H,
    app: &H::State,
    what: &'static str,
    cause: CloseCause,
) {
    let inner = &*s.inner;
    let _ = guarded(inner.id, "on_error", || {
        handler.on_error(
            s,
            app,
            &SessionError::Transport(TransportError::Timeout(what)),
        )
    });
    let farewell = inner.codec.farewell(Farewell::Timeout, inner.framing);
    s.begin_close_with(cause, None, farewell);
}

/// Ready if `ready()` holds; otherwise registers the task's waker on `task` (the session's
/// `Inner::task`) and checks again, so a change between the first check and the registration
/// is not lost (whoever makes `ready()` true wakes `task` after).
fn until(task: &AtomicWaker, cx: &mut Context<'_>, ready: impl Fn() -> bool) -> Poll<()> {
    if ready() {
        return Poll::Ready(());
    }
    task.register(cx.waker());
    if ready() {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

pub(crate) fn run_callback(
    id: u64,
    key: &str,
    cb: Box<dyn FnOnce(&CloseCause) + Send>,
    cause: &CloseCause,
) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(cause))) {
        let msg = panic_message(&*panic);
        tracing::error!(session = id, key, panic = %msg, "close callback panicked");
    }
}

/// Runs a synchronous handler callback; a panic is caught and logged (`what` names it).
pub(crate) fn guarded<R>(id: u64, what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chinwag_transport::pipe::{self, PipeConfig};
    use chinwag_transport::{Frame, FrameRead, FrameWrite, Transport};

    use super::*;
    use crate::{FrameCodec, Handler};

    struct Echo;
    impl Handler<FrameCodec> for Echo {
        async fn on_message(&self, s: &Session<FrameCodec>, msg: Frame) {
            let _ = s.send(&msg).await;
        }
    }

    /// Every session keeps one `Arc` of its shared state: with the `Arc`'s two counts it fits
    /// jemalloc's 384-byte size class (the next is 448). The rare parts (a close under way, an
    /// overflow policy of its own, attributes) are boxed or share a lock to keep it there
    /// (`docs/session.md`, "Measured").
    #[test]
    fn a_session_fits_in_384_bytes() {
        let arc = std::mem::size_of::<crate::handle::Inner<FrameCodec>>()
            + 2 * std::mem::size_of::<usize>();
        assert!(arc <= 384, "Arc<Inner> is {arc} bytes");
    }

    /// Once what it queued is written, a session's queue keeps no storage: idle connections
    /// are many, and each kept its last batch's (the writer's batch, swapped into the queue).
    #[tokio::test]
    async fn an_idle_session_keeps_no_queue_storage() {
        let (ours, theirs) = pipe::pair(&PipeConfig::default());
        let s = spawn_session(
            ours,
            Arc::new(FrameCodec),
            Arc::new(Echo),
            Arc::new(SessionConfig::default()),
        );
        let (mut rd, mut wr) = theirs.split();
        for i in 0..10u8 {
            wr.feed(Frame::Binary(vec![i; 10].into())).await.unwrap();
        }
        wr.flush().await.unwrap();
        for _ in 0..10 {
            tokio::time::timeout(Duration::from_secs(10), rd.read_frame())
                .await
                .expect("an echo")
                .unwrap()
                .expect("open");
        }
        let storage = || lock(&s.inner.queue).items.capacity();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while storage() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue storage kept: {}",
                storage()
            );
            tokio::task::yield_now().await;
        }
    }
}
