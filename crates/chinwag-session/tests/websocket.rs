//! Sessions over WebSocket on both engines: what only WebSocket has (control frames, close
//! frames), and the eviction of pending sessions. Each test is generic over the engine and instantiated for both at the bottom.
//!
//! Paused-time tests pause after the connection is up (the handshake runs on real time), then
//! let virtual time pass; loopback writes land in the peer's socket at once, so every ping and
//! pong is seen before the clock moves on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    Admission, CloseCause, ConnectInfo, FrameCodec, OverflowPolicy, Refusal, SendError, Server,
    ServerConfig, Service, Session, SessionConfig,
};
use chinwag_transport::{CloseCode, Frame, FrameRead, FrameWrite, Transport, TransportError};
use chinwag_ws::{Engine, WsAcceptor, WsConfig, connect};
use common::{Event, Recorder, wait_until, within};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Waits until the server has a session and returns it.
async fn first_session(server: &chinwag_session::ServerHandle<FrameCodec>) -> Session<FrameCodec> {
    within(async {
        loop {
            if let Some(s) = server.sessions().pop() {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// No close event arrived (the session is open).
fn no_close(rx: &mut mpsc::UnboundedReceiver<Event<Frame>>) {
    while let Ok(ev) = rx.try_recv() {
        if let Event::Close(_, cause) = ev {
            panic!("the session closed: {cause:?}");
        }
    }
}

/// Idle timeout 10 s on the server; the client sends no data and its reader runs (so it
/// answers pings, and pings by itself when `client_pings`). Returns the server's session, its
/// events, and the client's reader task (abort it to make the client fall silent).
async fn listening_client<E: Engine>(
    server_ws: WsConfig,
    client_ws: WsConfig,
) -> (
    Session<FrameCodec>,
    mpsc::UnboundedReceiver<Event<Frame>>,
    tokio::task::JoinHandle<Result<(), TransportError>>,
    chinwag_ws::WsWriter<E>,
) {
    let acceptor = WsAcceptor::<E>::bind(loopback(), server_ws).await.unwrap();
    let url = format!("ws://{}/", acceptor.local_addr());
    let (rec, rx) = Recorder::new();
    let cfg = SessionConfig::default().with_idle_timeout(Some(Duration::from_secs(10)));
    let server = Server::spawn(
        acceptor,
        FrameCodec,
        rec,
        ServerConfig::default().with_session(cfg),
    );
    let (mut cr, cw) = within(connect::<E>(&url, &client_ws))
        .await
        .unwrap()
        .split();
    let s = first_session(&server).await;
    let reader = tokio::spawn(async move {
        while cr.read_frame().await?.is_some() {}
        Ok(())
    });
    (s, rx, reader, cw)
}

/// The server pings every 3 s; the client answers (its reader runs) and sends no data: the
/// session outlives five idle timeouts. Once the client stops answering, the idle timeout
/// closes it (our own pings do not count; the pong wait is longer than the idle timeout).
pub async fn pongs_keep_a_listening_peer_alive<E: Engine>() {
    let server_ws = WsConfig::default()
        .with_ping_interval(Some(Duration::from_secs(3)))
        .with_pong_wait(Duration::from_secs(60))
        .with_close_timeout(Duration::from_secs(1));
    let client_ws = WsConfig::default().with_ping_interval(None);
    let (s, mut rx, reader, _cw) = listening_client::<E>(server_ws, client_ws).await;
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert!(!s.is_closing(), "closed: {:?}", s.close_cause());
    no_close(&mut rx);
    assert_eq!(s.stats().messages_in, 0, "the client sent no data");

    reader.abort();
    assert_eq!(within(s.closed()).await, CloseCause::IdleTimeout);
}

/// The client pings (every 2 s of silence), the server does not: the pings it answers keep
/// the session alive too. Once the client falls silent, the idle timeout closes it.
pub async fn pings_keep_a_listening_peer_alive<E: Engine>() {
    let server_ws = WsConfig::default()
        .with_ping_interval(None)
        .with_close_timeout(Duration::from_secs(1));
    let client_ws = WsConfig::default()
        .with_ping_interval(Some(Duration::from_secs(2)))
        .with_pong_wait(Duration::from_secs(600));
    let (s, mut rx, reader, _cw) = listening_client::<E>(server_ws, client_ws).await;
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert!(!s.is_closing(), "closed: {:?}", s.close_cause());
    no_close(&mut rx);

    reader.abort();
    assert_eq!(within(s.closed()).await, CloseCause::IdleTimeout);
}

/// A peer that answers nothing (its reader never runs, so it neither pongs nor pings) is
/// closed at the idle timeout although the server keeps pinging it.
pub async fn a_silent_peer_is_still_idle<E: Engine>() {
    let server_ws = WsConfig::default()
        .with_ping_interval(Some(Duration::from_secs(3)))
        .with_pong_wait(Duration::from_secs(60))
        .with_close_timeout(Duration::from_secs(1));
    let client_ws = WsConfig::default().with_ping_interval(None);
    let (s, _rx, reader, _cw) = listening_client::<E>(server_ws, client_ws).await;
    reader.abort();
    tokio::time::pause();
    let opened = tokio::time::Instant::now();
    assert_eq!(within(s.closed()).await, CloseCause::IdleTimeout);
    // Closed by the idle timeout (10 s), not by the pong wait (60 s).
    assert!(opened.elapsed() < Duration::from_secs(60));
}

/// A client that stops reading until the server closes it for overflow (its send queue filled
/// while the writer waited for the socket), then reads: it gets a prefix of what was sent, in
/// order — the queued messages were discarded, never written — and then the close frame with
/// 1008 and the reason. The timeouts are generous: nothing here waits for them.
pub async fn overflow_close_reaches_a_peer_that_reads_again<E: Engine>() {
    let long = Duration::from_secs(60);
    let server_ws = WsConfig::default()
        .with_ping_interval(None)
        .with_close_timeout(long);
    let acceptor = WsAcceptor::<E>::bind(loopback(), server_ws).await.unwrap();
    let url = format!("ws://{}/", acceptor.local_addr());
    let (rec, _rx) = Recorder::new();
    let cfg = SessionConfig::default()
        .with_queue_max_bytes(64 << 10)
        .with_overflow(OverflowPolicy::Close)
        .with_idle_timeout(None)
        .with_write_timeout(long)
        .with_close_timeout(long);
    let server = Server::spawn(
        acceptor,
        FrameCodec,
        rec,
        ServerConfig::default().with_session(cfg),
    );
    let client_ws = WsConfig::default().with_ping_interval(None);
    let (mut cr, _cw) = within(connect::<E>(&url, &client_ws))
        .await
        .unwrap()
        .split();
    let s = first_session(&server).await;

    // Send (letting the writer run after each message) until the queue overflows: the writer
    // is then stuck on a full socket, and four 16 KiB messages fill the 64 KiB queue.
    let sent = within(async {
        let mut i = 0u32;
        loop {
            let mut m = vec![7u8; 16 << 10];
            m[..4].copy_from_slice(&i.to_be_bytes());
            match s.send(&Frame::Binary(Bytes::from(m))).await {
                Ok(()) => i += 1,
                Err(SendError::Overflow) => return i,
                Err(e) => panic!("send {i}: {e}"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(s.is_closing());

    // The client reads again.
    let mut received = 0u32;
    while let Some(f) = within(cr.read_frame()).await.unwrap() {
        assert_eq!(f.payload()[..4], received.to_be_bytes(), "in order");
        received += 1;
    }
    let reason = cr.close_reason().expect("a close frame");
    assert_eq!(reason.code, CloseCode::POLICY);
    assert_eq!(reason.reason, "send queue overflow");
    assert!(
        received + 4 <= sent,
        "the queued messages were not written ({received} of {sent})"
    );
    assert_eq!(within(s.closed()).await, CloseCause::Overflow);
}

/// A service whose peers would sign in later: its connections stay pending.
struct SignsInLater;

impl Service<FrameCodec> for SignsInLater {
    type State = ();

    async fn admit(
        &self,
        _: &Session<FrameCodec>,
        _: &ConnectInfo,
    ) -> Result<Admission<()>, Refusal> {
        Ok(Admission::new(()))
    }

    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn on_message(&self, _: &Session<FrameCodec>, _: &(), _: Frame) {}
}

/// A WebSocket session that has not signed in is pending: with a pending share of 1, a new
/// connection (a raw socket still sending its request head) evicts it — closed as an idle
/// timeout closes, with 1013 and the reason — and takes its place.
pub async fn a_pending_session_is_evicted_with_1013<E: Engine>() {
    let server_ws = WsConfig::default().with_handshake_timeout(Duration::from_secs(60));
    let acceptor = WsAcceptor::<E>::bind(loopback(), server_ws).await.unwrap();
    let addr = acceptor.local_addr();
    let budget = acceptor.budget().clone().with_pending_share(1);
    let cfg = SessionConfig::default().with_idle_timeout(None);
    let server = Server::spawn(
        acceptor,
        FrameCodec,
        SignsInLater,
        ServerConfig::default().with_session(cfg),
    );
    let client_ws = WsConfig::default().with_ping_interval(None);
    let (mut cr, _cw) = within(connect::<E>(&format!("ws://{addr}/"), &client_ws))
        .await
        .unwrap()
        .split();
    let s = first_session(&server).await;
    assert!(!s.is_established());
    assert_eq!(budget.pending(), 1);

    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(within(cr.read_frame()).await.unwrap(), None);
    let reason = cr.close_reason().expect("a close frame");
    assert_eq!(reason.code, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(reason.reason, "server busy: evicted before signing in");
    assert_eq!(within(s.closed()).await, CloseCause::Evicted);
    assert_eq!((budget.pending(), budget.evicted()), (1, 1));
}

/// The same session, signed in (`Session::establish`), survives a flood of stalled requests.
pub async fn an_established_session_is_not_evicted<E: Engine>() {
    let server_ws = WsConfig::default().with_handshake_timeout(Duration::from_secs(60));
    let acceptor = WsAcceptor::<E>::bind(loopback(), server_ws).await.unwrap();
    let addr = acceptor.local_addr();
    let budget = acceptor.budget().clone().with_pending_share(1);
    let server = Server::spawn(acceptor, FrameCodec, SignsInLater, ServerConfig::default());
    let client_ws = WsConfig::default().with_ping_interval(None);
    let (_cr, mut cw) = within(connect::<E>(&format!("ws://{addr}/"), &client_ws))
        .await
        .unwrap()
        .split();
    let s = first_session(&server).await;
    s.establish();
    assert_eq!(budget.pending(), 0);
    let mut flood = Vec::new();
    for _ in 0..5 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        flood.push(tcp);
    }
    wait_until(|| budget.evicted() == 4).await;
    assert_eq!(budget.pending(), 1);
    assert!(!s.is_closing());
    cw.send(Frame::Text("still here".into())).await.unwrap();
    wait_until(|| s.stats().messages_in == 1).await;
}

macro_rules! engine_tests {
    ($module:ident, $engine:ty) => {
        mod $module {
            #[tokio::test]
            async fn pongs_keep_a_listening_peer_alive() {
                super::pongs_keep_a_listening_peer_alive::<$engine>().await
            }
            #[tokio::test]
            async fn pings_keep_a_listening_peer_alive() {
                super::pings_keep_a_listening_peer_alive::<$engine>().await
            }
            #[tokio::test]
            async fn a_silent_peer_is_still_idle() {
                super::a_silent_peer_is_still_idle::<$engine>().await
            }
            #[tokio::test]
            async fn a_pending_session_is_evicted_with_1013() {
                super::a_pending_session_is_evicted_with_1013::<$engine>().await
            }
            #[tokio::test]
            async fn an_established_session_is_not_evicted() {
                super::an_established_session_is_not_evicted::<$engine>().await
            }
            #[tokio::test]
            async fn overflow_close_reaches_a_peer_that_reads_again() {
                super::overflow_close_reaches_a_peer_that_reads_again::<$engine>().await
            }
        }
    };
}

engine_tests!(tungstenite, chinwag_ws_tungstenite::Tungstenite);
engine_tests!(fastwebsockets, chinwag_ws_fastwebsockets::FastWebSockets);
