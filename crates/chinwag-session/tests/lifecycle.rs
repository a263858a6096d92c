//! One session's life over in-process pipes (so `tokio::time::pause()` is exact): close
//! callbacks, attributes, refusal, idle timeout, heartbeat, cron, write deadline, protocol
//! errors, in-order delivery and inbound backpressure.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag_session::{
    CloseCause, Codec, Decoder, FrameCodec, Handler, LengthDelimited, Session, SessionConfig,
    WireCodec, spawn_session,
};
use chinwag_transport::pipe::{self, PipeConfig, PipeTransport};
use chinwag_transport::{CloseCode, CloseReason, Frame, FrameRead, FrameWrite, Framing, Transport};
use chinwag_wire::Message;
use common::{Event, Recorder, next_close, next_message, wait_until, within};
use tokio::sync::{Semaphore, mpsc};

fn config() -> SessionConfig {
    SessionConfig::default()
}

/// A session on one end of a pipe; the raw other end for the test.
fn session_on_pipe<C: Codec, H: Handler<C>>(
    codec: C,
    handler: H,
    cfg: SessionConfig,
    capacity: usize,
) -> (Session<C>, PipeTransport) {
    let mut pc = PipeConfig::default();
    pc.capacity = capacity;
    let (ours, theirs) = pipe::pair(&pc);
    let s = spawn_session(ours, Arc::new(codec), Arc::new(handler), Arc::new(cfg));
    (s, theirs)
}

#[tokio::test]
async fn close_callbacks_run_once_in_add_order_and_survive_a_panic() {
    let (rec, mut rx) = Recorder::new();
    let (s, peer) = session_on_pipe(FrameCodec, rec, config(), 64);
    let order = Arc::new(Mutex::new(Vec::new()));
    for key in ["a", "b", "c", "d"] {
        let order = order.clone();
        s.add_close_callback(key, move |_| order.lock().unwrap().push(key));
    }
    // Replacing keeps the position; the replacement panics, the others still run.
    let replaced = s.add_close_callback("b", |_| panic!("callback b fails"));
    assert!(replaced);
    assert!(s.remove_close_callback("c"));
    assert!(!s.remove_close_callback("nope"));
    let o = order.clone();
    s.add_close_callback("e", move |cause: &CloseCause| {
        assert_eq!(*cause, CloseCause::Local);
        o.lock().unwrap().push("e")
    });
    s.close();
    assert_eq!(within(s.closed()).await, CloseCause::Local);
    assert_eq!(*order.lock().unwrap(), ["a", "d", "e"]);
    assert_eq!(next_close(&mut rx).await, CloseCause::Local);
    // Added after the end: runs at once, exactly once.
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    s.add_close_callback("late", move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
    // The peer saw an orderly close with code 1000.
    let (mut rd, _wr) = peer.split();
    assert_eq!(within(rd.read_frame()).await.unwrap(), None);
    assert_eq!(rd.close_reason().unwrap().code, CloseCode::NORMAL);
}

#[tokio::test]
async fn typed_attributes() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(String);
    #[derive(Clone, Debug, PartialEq)]
    struct Room(u32);
    let (rec, _rx) = Recorder::new();
    let (s, _peer) = session_on_pipe(FrameCodec, rec, config(), 64);
    assert_eq!(s.attr::<User>(), None);
    assert_eq!(s.set_attr(User("ann".into())), None);
    assert_eq!(s.set_attr(Room(7)), None);
    assert_eq!(s.set_attr(User("bob".into())), Some(User("ann".into())));
    assert_eq!(s.attr::<User>(), Some(User("bob".into())));
    assert_eq!(s.with_attr(|r: &Room| r.0 * 2), Some(14));
    assert_eq!(s.remove_attr::<Room>(), Some(Room(7)));
    assert_eq!(s.attr::<Room>(), None);
}

struct Refuse;
impl Handler<FrameCodec> for Refuse {
    fn on_open(&self, _: &Session<FrameCodec>) -> Result<(), chinwag_transport::CloseReason> {
        Err(CloseReason::new(CloseCode::POLICY, "not today"))
    }
    async fn on_message(&self, _: &Session<FrameCodec>, _: Frame) {
        unreachable!("a refused session gets no messages")
    }
}

#[tokio::test]
async fn open_may_refuse() {
    let (s, peer) = session_on_pipe(FrameCodec, Refuse, config(), 64);
    match within(s.closed()).await {
        CloseCause::Refused(r) => assert_eq!(r.reason, "not today"),
        other => panic!("{other:?}"),
    }
    let (mut rd, _wr) = peer.split();
    assert_eq!(within(rd.read_frame()).await.unwrap(), None);
    assert_eq!(rd.close_reason().unwrap().code, CloseCode::POLICY);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_last_inbound_frame() {
    let mut cfg = config();
    cfg.idle_timeout = Some(Duration::from_secs(30));
    cfg.heartbeat_interval = None;
    let (rec, mut rx) = Recorder::new();
    let (s, peer) = session_on_pipe(FrameCodec, rec, cfg, 64);
    let (mut prd, mut pwr) = peer.split();
    // Activity every 20 s keeps it open past several timeouts' worth of time.
    for i in 0..4u8 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        pwr.send(Frame::Binary(Bytes::from(vec![i]))).await.unwrap();
        assert_eq!(
            next_message(&mut rx).await,
            Frame::Binary(Bytes::from(vec![i]))
        );
        assert!(!s.is_closing(), "closed at round {i}");
    }
    let before = tokio::time::Instant::now();
    assert_eq!(within(s.closed()).await, CloseCause::IdleTimeout);
    // Exactly the idle timeout after the last frame (paused time is exact).
    assert!(before.elapsed() <= Duration::from_secs(30));
    assert_eq!(within(prd.read_frame()).await.unwrap(), None);
    assert_eq!(prd.close_reason().unwrap().code, CloseCode::GOING_AWAY);
}

#[tokio::test(start_paused = true)]
async fn gotalk_heartbeat_when_nothing_was_written() {
    let mut cfg = config();
    cfg.heartbeat_interval = Some(Duration::from_secs(10));
    cfg.idle_timeout = None;
    let (rec, _rx) = Recorder::new();
    let (s, peer) = session_on_pipe(WireCodec::default(), rec, cfg, 64);
    let (mut prd, _pwr) = peer.split();
    let mut dec = WireCodec::default().decoder(Framing::Message);
    // The version first, then heartbeats, one per interval of silence.
    assert_eq!(
        within(prd.read_frame()).await.unwrap().unwrap().payload(),
        &Bytes::from_static(b"01")
    );
    assert!(
        dec.decode_frame(Frame::Binary(Bytes::from_static(b"01")))
            .unwrap()
            .is_none()
    );
    for _ in 0..3 {
        let start = tokio::time::Instant::now();
        let f = within(prd.read_frame()).await.unwrap().unwrap();
        assert!(start.elapsed() >= Duration::from_secs(9));
        match dec.decode_frame(f).unwrap() {
            Some(Message::Heartbeat { load: 0, .. }) => {}
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    assert!(s.stats().messages_out >= 4);
    assert!(!s.is_closing());
}

#[tokio::test(start_paused = true)]
async fn cron_ticks() {
    let mut cfg = config();
    cfg.cron_interval = Some(Duration::from_secs(1));
    let (rec, mut rx) = Recorder::<Frame>::new();
    let (s, _peer) = session_on_pipe(FrameCodec, rec, cfg, 64);
    let mut ticks = 0;
    while ticks < 5 {
        if let Event::Cron(id) = within(rx.recv()).await.unwrap() {
            assert_eq!(id, s.id());
            ticks += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn write_deadline_drops_a_peer_that_stopped_reading() {
    let mut cfg = config();
    cfg.write_timeout = Duration::from_secs(5);
    let (rec, _rx) = Recorder::new();
    // A pipe that holds one frame: the second write waits for a reader that never comes.
    let (s, _peer) = session_on_pipe(FrameCodec, rec, cfg, 1);
    for i in 0..3u8 {
        s.send(&Frame::Binary(Bytes::from(vec![i]))).await.unwrap();
    }
    assert_eq!(within(s.closed()).await, CloseCause::WriteTimeout);
}

#[tokio::test]
async fn bad_input_is_a_protocol_error_not_a_panic() {
    let (rec, mut rx) = Recorder::new();
    let (s, peer) = session_on_pipe(LengthDelimited::new(16), rec, config(), 64);
    let (mut prd, mut pwr) = peer.split();
    // Over the limit by one byte (prefix says 17): refused from the prefix alone.
    let mut f = BytesMut::from(&17u32.to_be_bytes()[..]);
    f.extend_from_slice(&[0; 17]);
    pwr.send(Frame::Binary(f.freeze())).await.unwrap();
    match within(s.closed()).await {
        CloseCause::ProtocolError(m) => assert!(m.contains("17"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut saw_error = false;
    while let Some(ev) = rx.recv().await {
        if let Event::Error(_, e) = ev {
            assert!(e.contains("limit of 16"), "{e}");
            saw_error = true;
        }
    }
    assert!(saw_error);
    assert_eq!(within(prd.read_frame()).await.unwrap(), None);
    assert_eq!(prd.close_reason().unwrap().code, CloseCode::PROTOCOL);
}

#[tokio::test]
async fn peer_vanishing_is_peer_gone() {
    let (rec, _rx) = Recorder::new();
    let (s, peer) = session_on_pipe(FrameCodec, rec, config(), 64);
    drop(peer);
    assert!(matches!(within(s.closed()).await, CloseCause::PeerGone(_)));
}

/// A handler that takes a permit per message: the test controls how fast it goes.
struct Gated {
    gate: Arc<Semaphore>,
    seen: mpsc::UnboundedSender<Frame>,
}
impl Handler<FrameCodec> for Gated {
    async fn on_message(&self, _: &Session<FrameCodec>, msg: Frame) {
        self.gate.acquire().await.unwrap().forget();
        let _ = self.seen.send(msg);
    }
}

#[tokio::test]
async fn slow_handler_stops_reading_and_order_is_kept() {
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut seen) = mpsc::unbounded_channel();
    let handler = Gated {
        gate: gate.clone(),
        seen: tx,
    };
    // Pipe capacity 4: once the handler is stuck, the session reads nothing more and the
    // peer's writes stop after 4 frames in flight.
    let (s, peer) = session_on_pipe(FrameCodec, handler, config(), 4);
    let (_prd, mut pwr) = peer.split();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let writer = tokio::spawn(async move {
        for i in 0..100u32 {
            pwr.send(Frame::Binary(Bytes::copy_from_slice(&i.to_be_bytes())))
                .await
                .unwrap();
            sent2.fetch_add(1, Ordering::SeqCst);
        }
        pwr
    });
    // The handler holds message 0; the session has read nothing beyond it, so the peer can
    // have at most 1 (in the handler) + 4 (in the pipe) + 1 (being fed) frames out.
    wait_until(|| sent.load(Ordering::SeqCst) >= 5).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(sent.load(Ordering::SeqCst) <= 6, "session kept reading");
    assert_eq!(s.stats().messages_in, 1);
    // Let everything through: all 100 arrive, in order.
    gate.add_permits(100);
    for i in 0..100u32 {
        let f = within(seen.recv()).await.unwrap();
        assert_eq!(f.payload()[..], i.to_be_bytes());
    }
    within(writer).await.unwrap();
    assert_eq!(s.stats().messages_in, 100);
}

#[tokio::test(start_paused = true)]
async fn close_timeout_bounds_a_drain_that_cannot_finish() {
    let mut cfg = config();
    cfg.close_timeout = Duration::from_secs(5);
    cfg.write_timeout = Duration::from_secs(3600);
    let (rec, _rx) = Recorder::new();
    // The peer never reads and the pipe holds one frame: the drain cannot finish.
    let (s, _peer) = session_on_pipe(FrameCodec, rec, cfg, 1);
    for i in 0..3u8 {
        s.send(&Frame::Binary(Bytes::from(vec![i]))).await.unwrap();
    }
    let start = tokio::time::Instant::now();
    s.close();
    assert_eq!(within(s.closed()).await, CloseCause::Local);
    assert!(start.elapsed() >= Duration::from_secs(5));
}

/// Panics on a message saying "boom"; otherwise reports it.
struct Fragile(mpsc::UnboundedSender<Frame>);
impl Handler<FrameCodec> for Fragile {
    async fn on_message(&self, _: &Session<FrameCodec>, msg: Frame) {
        tokio::task::yield_now().await;
        if msg.payload()[..] == b"boom"[..] {
            panic!("handler bug");
        }
        let _ = self.0.send(msg);
    }
}

#[tokio::test]
async fn a_panicking_handler_closes_only_its_session() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let (s, peer) = session_on_pipe(FrameCodec, Fragile(tx.clone()), config(), 64);
    let (s2, peer2) = session_on_pipe(FrameCodec, Fragile(tx), config(), 64);
    let (mut prd, mut pwr) = peer.split();
    let (_prd2, mut pwr2) = peer2.split();
    pwr.send(Frame::Binary(Bytes::from_static(b"ok")))
        .await
        .unwrap();
    assert_eq!(&within(seen.recv()).await.unwrap().payload()[..], b"ok");
    pwr.send(Frame::Binary(Bytes::from_static(b"boom")))
        .await
        .unwrap();
    match within(s.closed()).await {
        CloseCause::HandlerPanic(m) => assert_eq!(m, "handler bug"),
        other => panic!("{other:?}"),
    }
    assert_eq!(within(prd.read_frame()).await.unwrap(), None);
    assert_eq!(prd.close_reason().unwrap().code, CloseCode::INTERNAL);
    // The other session goes on.
    pwr2.send(Frame::Binary(Bytes::from_static(b"still here")))
        .await
        .unwrap();
    assert_eq!(
        &within(seen.recv()).await.unwrap().payload()[..],
        b"still here"
    );
    assert!(!s2.is_closing());
}

/// A codec that never finds a message: only the session's decode-buffer cap stops it.
#[derive(Clone)]
struct Never;
struct NeverDecoder;
impl Decoder for NeverDecoder {
    type Item = Bytes;
    fn decode(&mut self, _: &mut BytesMut) -> Result<Option<Bytes>, chinwag_session::CodecError> {
        Ok(None)
    }
}
impl Codec for Never {
    type In = Bytes;
    type Out = Bytes;
    type Decoder = NeverDecoder;
    fn decoder(&self, _: Framing) -> NeverDecoder {
        NeverDecoder
    }
    fn encode(
        &self,
        item: &Bytes,
        _: Framing,
    ) -> Result<chinwag_session::Encoded, chinwag_session::CodecError> {
        Ok(chinwag_session::Encoded::binary(item.clone()))
    }
}

#[tokio::test]
async fn decode_buffer_cap_at_its_boundary() {
    use chinwag_transport::Acceptor;
    use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
    use tokio::io::AsyncWriteExt;
    let mut acceptor =
        TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let conn = within(acceptor.accept()).await.unwrap();
    let mut cfg = config();
    cfg.max_decode_buffer = 100_000;
    let (rec, _rx) = Recorder::new();
    let s = spawn_session(conn, Arc::new(Never), Arc::new(rec), Arc::new(cfg));
    raw.write_all(&vec![b'x'; 100_000]).await.unwrap();
    wait_until(|| s.stats().bytes_in == 100_000).await;
    assert!(!s.is_closing(), "exactly at the cap is allowed");
    raw.write_all(b"y").await.unwrap();
    match within(s.closed()).await {
        CloseCause::ProtocolError(m) => assert!(m.contains("limit of 100000"), "{m}"),
        other => panic!("{other:?}"),
    }
}
