//! Servers and clients: connection limit, accept backoff, graceful shutdown, reconnection, and
//! one stalled client among fifty.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    Client, ClientConfig, CloseCause, Encoded, FrameCodec, Handler, LengthDelimited,
    OverflowPolicy, ReconnectPolicy, Server, ServerConfig, Session,
};
use chinwag_transport::pipe::{self, PipeConfig, PipeConnector, PipeTransport};
use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig};
use chinwag_transport::{Acceptor, Frame, PeerAddr, TransportError};
use common::{Event, Recorder, next_close, next_message, wait_until, within};
use tokio::sync::mpsc;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The server's connection limit is its acceptor's budget: at the cap a new connection is
/// closed at once (no session), and a place freed by a session's end is reused.
#[tokio::test]
async fn connection_limit_at_its_boundary() {
    use chinwag_transport::{FrameRead, Transport};
    let mut tcp_cfg = TcpConfig::default();
    tcp_cfg.max_connections = 2;
    let acceptor = TcpAcceptor::bind(loopback(), tcp_cfg.clone()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone();
    let (rec, mut rx) = Recorder::<Bytes>::new();
    let server = Server::spawn(
        acceptor,
        LengthDelimited::default(),
        rec,
        ServerConfig::default(),
    );
    let a = tcp::connect(addr, &tcp_cfg).await.unwrap();
    let b = tcp::connect(addr, &tcp_cfg).await.unwrap();
    let mut opened = Vec::new();
    while opened.len() < 2 {
        if let Event::Open(id) = within(rx.recv()).await.unwrap() {
            opened.push(id);
        }
    }
    // The third connection is accepted by the kernel and closed by the acceptor at once.
    let (mut third, _w) = tcp::connect(addr, &tcp_cfg).await.unwrap().split();
    assert!(within(third.read_frame()).await.unwrap().is_none());
    assert_eq!(budget.refused(), 1);
    assert_eq!(server.session_count(), 2);
    assert!(rx.try_recv().is_err(), "no third session at the limit");
    // One leaves: its place is reused.
    drop(a);
    wait_until(|| budget.open() < 2).await;
    let _c = tcp::connect(addr, &tcp_cfg).await.unwrap();
    loop {
        match within(rx.recv()).await.unwrap() {
            Event::Open(id) => {
                assert!(!opened.contains(&id));
                break;
            }
            Event::Close(..) | Event::Error(..) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.session_count(), 2);
    drop(b);
    within(server.shutdown(Duration::from_secs(1))).await;
}

/// An acceptor that fails like a process out of file descriptors, then works.
struct Flaky {
    fail: usize,
    calls: Arc<AtomicUsize>,
    inner: pipe::PipeAcceptor,
}

impl Acceptor for Flaky {
    type Conn = PipeTransport;
    type Offer = chinwag_transport::Ready<PipeTransport>;
    async fn offer(&mut self) -> Result<Self::Offer, TransportError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail {
            return Err(TransportError::Io(io::Error::from_raw_os_error(24))); // EMFILE
        }
        self.inner.offer().await
    }
    fn local_addr(&self) -> Option<PeerAddr> {
        Some(PeerAddr::Local)
    }
}

#[tokio::test(start_paused = true)]
async fn accept_backs_off_on_emfile_and_recovers() {
    let (connector, inner) = pipe::listener(&PipeConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let acceptor = Flaky {
        fail: 4,
        calls: calls.clone(),
        inner,
    };
    let (rec, mut rx) = Recorder::<Frame>::new();
    let start = tokio::time::Instant::now();
    let server = Server::spawn(acceptor, FrameCodec, rec, ServerConfig::default());
    let _conn = connector.connect().await.unwrap();
    loop {
        if let Event::Open(_) = within(rx.recv()).await.unwrap() {
            break;
        }
    }
    // Four failures, then the accept that opened this session (the loop may already wait in
    // the next one).
    assert!(calls.load(Ordering::SeqCst) >= 5);
    // 5 + 10 + 20 + 40 ms of backoff (paused time is exact).
    assert!(start.elapsed() >= Duration::from_millis(75));
    within(server.shutdown(Duration::from_secs(1))).await;
}

/// Collects length-delimited messages and the close.
#[tokio::test]
async fn graceful_shutdown_delivers_everything_queued() {
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let (srec, mut srx) = Recorder::<Bytes>::new();
    let mut cfg = ServerConfig::default();
    cfg.session.queue_max_messages = 10_000;
    let server = Server::spawn(acceptor, LengthDelimited::default(), srec, cfg);
    let (crec, mut crx) = Recorder::<Bytes>::new();
    let client = Client::spawn(
        move || async move { tcp::connect(addr, &TcpConfig::default()).await },
        LengthDelimited::default(),
        crec,
        ClientConfig::default(),
    );
    assert!(within(client.wait_open(1)).await);
    let id = loop {
        if let Event::Open(id) = within(srx.recv()).await.unwrap() {
            break id;
        }
    };
    let s = server.session(id).unwrap();
    const N: u32 = 5000;
    for i in 0..N {
        s.send(&Bytes::copy_from_slice(&i.to_be_bytes()))
            .await
            .unwrap();
    }
    let report = within(server.shutdown(Duration::from_secs(10))).await;
    assert_eq!(report.sessions, 1);
    assert_eq!(report.undrained, 0);
    for i in 0..N {
        assert_eq!(next_message(&mut crx).await[..], i.to_be_bytes());
    }
    // Over TCP the server's goodbye is an end of stream: clean, and the client stays down.
    assert_eq!(next_close(&mut crx).await, CloseCause::Peer(None));
    within(client.stopped()).await;
    assert_eq!(client.dial_count(), 1);
    assert_eq!(s.close_cause(), Some(CloseCause::Shutdown));
    // The listener is closed.
    assert!(tcp::connect(addr, &TcpConfig::default()).await.is_err());
}

/// A connector to whatever pipe "server" is up now (none: connection refused).
#[derive(Clone, Default)]
struct Switch(Arc<Mutex<Option<PipeConnector>>>);

impl Switch {
    fn set(&self, c: Option<PipeConnector>) {
        *self.0.lock().unwrap() = c;
    }
    async fn connect(&self) -> Result<PipeTransport, TransportError> {
        let c = self.0.lock().unwrap().clone();
        match c {
            Some(c) => c.connect().await,
            None => Err(TransportError::Io(io::ErrorKind::ConnectionRefused.into())),
        }
    }
}

fn reconnecting(max_attempts: Option<u32>) -> ClientConfig {
    let mut cfg = ClientConfig::default();
    cfg.reconnect = ReconnectPolicy::default();
    cfg.reconnect.initial_backoff = Duration::from_millis(100);
    cfg.reconnect.max_backoff = Duration::from_secs(2);
    cfg.reconnect.max_attempts = max_attempts;
    cfg
}

#[tokio::test(start_paused = true)]
async fn reconnects_with_backoff_when_the_server_comes_back() {
    let switch = Switch::default();
    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    switch.set(Some(connector));
    let server = Server::spawn(acceptor, FrameCodec, common::Echo, ServerConfig::default());
    let sw = switch.clone();
    let (rec, mut rx) = Recorder::<Frame>::new();
    let client = Client::spawn(
        move || {
            let sw = sw.clone();
            async move { sw.connect().await }
        },
        FrameCodec,
        rec,
        reconnecting(Some(20)),
    );
    assert!(within(client.wait_open(1)).await);
    assert_eq!(client.dial_count(), 1);

    // The server goes away (shutdown: 1001, not a clean close) and stays away a while.
    switch.set(None);
    within(server.shutdown(Duration::from_secs(1))).await;
    match next_close(&mut rx).await {
        CloseCause::Peer(Some(r)) => assert_eq!(r.code.0, 1001),
        other => panic!("{other:?}"),
    }
    wait_until(|| client.dial_count() >= 5).await;
    assert!(client.sessions().is_empty());

    // It comes back: the client finds it, and works.
    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    switch.set(Some(connector));
    let server = Server::spawn(acceptor, FrameCodec, common::Echo, ServerConfig::default());
    assert!(within(client.wait_open(1)).await);
    let s = client.session().unwrap();
    s.send(&Frame::Text(Bytes::from_static(b"back")))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut rx).await,
        Frame::Text(Bytes::from_static(b"back"))
    );
    assert!(client.dial_count() >= 6);
    within(client.shutdown(Duration::from_secs(1))).await;
    within(server.shutdown(Duration::from_secs(1))).await;
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_within_the_backoff_caps() {
    let switch = Switch::default();
    let sw = switch.clone();
    let (rec, _rx) = Recorder::<Frame>::new();
    let cfg = reconnecting(Some(5));
    let policy = cfg.reconnect.clone();
    let start = tokio::time::Instant::now();
    let client = Client::spawn(
        move || {
            let sw = sw.clone();
            async move { sw.connect().await }
        },
        FrameCodec,
        rec,
        cfg,
    );
    within(client.stopped()).await;
    assert_eq!(client.dial_count(), 5);
    assert!(!within(client.wait_open(1)).await);
    // Full jitter: each pause is at most its cap (100, 200, 400, 800 ms before dials 2..5).
    let caps: Duration = (1..5).map(|n| policy.cap(n)).sum();
    assert!(start.elapsed() <= caps, "{:?} > {caps:?}", start.elapsed());
    assert_eq!(policy.cap(0), Duration::from_millis(100));
    assert_eq!(policy.cap(3), Duration::from_millis(800));
    assert_eq!(policy.cap(30), Duration::from_secs(2));
}

/// A server handler that closes every session cleanly right away.
struct Goodbye;
impl Handler<FrameCodec> for Goodbye {
    fn on_open(&self, s: &Session<FrameCodec>) -> Result<(), chinwag_transport::CloseReason> {
        s.close();
        Ok(())
    }
    async fn on_message(&self, _: &Session<FrameCodec>, _: Frame) {}
}

#[tokio::test(start_paused = true)]
async fn no_reconnect_after_a_clean_close_unless_configured() {
    for reconnect_after_clean_close in [false, true] {
        let (connector, acceptor) = pipe::listener(&PipeConfig::default());
        let server = Server::spawn(acceptor, FrameCodec, Goodbye, ServerConfig::default());
        let (rec, mut rx) = Recorder::<Frame>::new();
        let mut cfg = reconnecting(Some(3));
        cfg.reconnect.reconnect_after_clean_close = reconnect_after_clean_close;
        let client = Client::spawn(
            move || {
                let c = connector.clone();
                async move { c.connect().await }
            },
            FrameCodec,
            rec,
            cfg,
        );
        match next_close(&mut rx).await {
            CloseCause::Peer(Some(r)) => assert_eq!(r.code.0, 1000),
            other => panic!("{other:?}"),
        }
        if reconnect_after_clean_close {
            // It dials again (and again gets a goodbye).
            assert!(matches!(next_close(&mut rx).await, CloseCause::Peer(_)));
            assert!(client.dial_count() >= 2);
            within(client.shutdown(Duration::from_secs(1))).await;
        } else {
            within(client.stopped()).await;
            assert_eq!(client.dial_count(), 1);
        }
        within(server.shutdown(Duration::from_secs(1))).await;
    }
}

/// Counts messages per client and checks their order.
struct Counter {
    next: AtomicUsize,
    done: mpsc::UnboundedSender<usize>,
}
impl Handler<LengthDelimited> for Counter {
    async fn on_message(&self, _: &Session<LengthDelimited>, msg: Bytes) {
        let want = self.next.fetch_add(1, Ordering::SeqCst);
        let got = u32::from_be_bytes(msg[..4].try_into().unwrap()) as usize;
        assert_eq!(got, want, "messages out of order or lost");
        let _ = self.done.send(want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stalled_client_of_fifty() {
    const CLIENTS: usize = 49;
    const MESSAGES: usize = 2000;
    const SIZE: usize = 4096;
    const WINDOW: usize = 50;
    const QUEUE: usize = 128;
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let mut cfg = ServerConfig::default();
    cfg.session.queue_max_messages = QUEUE;
    cfg.session.overflow = OverflowPolicy::Close;
    // The stalled client never reads, so its close frame can never go out: its session is
    // dropped at the close deadline.
    cfg.session.close_timeout = Duration::from_millis(200);
    let (srec, mut srx) = Recorder::<Bytes>::new();
    let server = Server::spawn(acceptor, LengthDelimited::default(), srec, cfg);

    // 49 well-behaved clients, each counting what it receives.
    let mut progress = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (tx, rx) = mpsc::unbounded_channel();
        progress.push(rx);
        clients.push(Client::spawn(
            move || async move { tcp::connect(addr, &TcpConfig::default()).await },
            LengthDelimited::default(),
            Counter {
                next: AtomicUsize::new(0),
                done: tx,
            },
            ClientConfig::default(),
        ));
    }
    // One client that connects and never reads, with a small receive buffer.
    let stalled_sock = tokio::net::TcpSocket::new_v4().unwrap();
    stalled_sock.set_recv_buffer_size(4096).unwrap();
    let stalled = stalled_sock.connect(addr).await.unwrap();
    let stalled_local = stalled.local_addr().unwrap();

    let mut opened = 0;
    while opened < CLIENTS + 1 {
        if let Event::Open(_) = within(srx.recv()).await.unwrap() {
            opened += 1;
        }
    }
    let sessions = server.sessions();
    let stalled_session = sessions
        .iter()
        .find(|s| *s.peer_addr() == PeerAddr::Ip(stalled_local))
        .unwrap()
        .clone();

    let codec = LengthDelimited::default();
    let mut received = vec![0usize; CLIENTS];
    let mut max_depth = 0;
    for window in 0..MESSAGES / WINDOW {
        for i in window * WINDOW..(window + 1) * WINDOW {
            let mut m = vec![0u8; SIZE];
            m[..4].copy_from_slice(&(i as u32).to_be_bytes());
            // Encoded once, shared by all fifty queues.
            let enc: Encoded = chinwag_session::Codec::encode(
                &codec,
                &Bytes::from(m),
                chinwag_transport::Framing::Stream,
            )
            .unwrap();
            chinwag_session::broadcast(&sessions, &enc);
            max_depth = max_depth.max(stalled_session.queue_len());
        }
        // Wait for the 49 to catch up with this window (the stalled one is not waited for).
        for (c, rx) in progress.iter_mut().enumerate() {
            while received[c] < (window + 1) * WINDOW {
                within(rx.recv()).await.unwrap();
                received[c] += 1;
            }
        }
    }
    assert!(received.iter().all(|&n| n == MESSAGES));
    // The stalled one was cut off by its policy, with its queue never over the limit.
    let cause = within(stalled_session.closed()).await;
    assert!(
        matches!(cause, CloseCause::Overflow | CloseCause::WriteTimeout),
        "{cause:?}"
    );
    assert!(max_depth <= QUEUE, "queue depth {max_depth}");
    assert_eq!(stalled_session.queue_len(), 0);
    // Nobody else was closed.
    assert_eq!(server.session_count(), CLIENTS);
    for c in &clients {
        assert_eq!(c.sessions().len(), 1);
    }
    drop(stalled);
    within(server.shutdown(Duration::from_secs(5))).await;
    for c in &clients {
        within(c.stopped()).await;
    }
}

#[tokio::test]
async fn client_keeps_a_pool_and_round_robins() {
    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    let server = Server::spawn(acceptor, FrameCodec, common::Echo, ServerConfig::default());
    let (rec, _rx) = Recorder::<Frame>::new();
    let client = Client::spawn(
        move || {
            let c = connector.clone();
            async move { c.connect().await }
        },
        FrameCodec,
        rec,
        ClientConfig::default().with_pool_size(3),
    );
    assert!(within(client.wait_open(3)).await);
    assert_eq!(client.sessions().len(), 3);
    assert_eq!(client.running_slots(), 3);
    let ids: std::collections::HashSet<u64> =
        (0..6).map(|_| client.session().unwrap().id()).collect();
    assert_eq!(ids.len(), 3, "round robin over the whole pool");
    assert_eq!(server.session_count(), 3);
    // One pooled session breaks (not cleanly): its slot dials a replacement.
    client.sessions()[0].close_with(CloseCause::PeerGone("test".into()), None);
    wait_until(|| client.dial_count() == 4 && client.sessions().len() == 3).await;
    within(client.shutdown(Duration::from_secs(1))).await;
    within(server.shutdown(Duration::from_secs(1))).await;
}

/// Real sockets: a TCP server goes away (graceful shutdown) and comes back on the same port;
/// a client configured to reconnect after the (clean, on TCP) end of stream finds it again.
#[tokio::test]
async fn tcp_server_restart_on_the_same_port() {
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let server = Server::spawn(
        acceptor,
        LengthDelimited::default(),
        common::Echo,
        ServerConfig::default(),
    );
    let mut cfg = reconnecting(Some(50));
    cfg.reconnect.initial_backoff = Duration::from_millis(10);
    cfg.reconnect.max_backoff = Duration::from_millis(200);
    cfg.reconnect.reconnect_after_clean_close = true;
    let (rec, mut rx) = Recorder::<Bytes>::new();
    let client = Client::spawn(
        move || async move { tcp::connect(addr, &TcpConfig::default()).await },
        LengthDelimited::default(),
        rec,
        cfg,
    );
    assert!(within(client.wait_open(1)).await);
    within(server.shutdown(Duration::from_secs(1))).await;
    assert_eq!(next_close(&mut rx).await, CloseCause::Peer(None));
    // Refused dials while the server is down.
    wait_until(|| client.dial_count() >= 3).await;
    let acceptor = TcpAcceptor::bind(addr, TcpConfig::default()).unwrap();
    let server = Server::spawn(
        acceptor,
        LengthDelimited::default(),
        common::Echo,
        ServerConfig::default(),
    );
    assert!(within(client.wait_open(1)).await);
    let s = client.session().unwrap();
    s.send(&Bytes::from_static(b"again")).await.unwrap();
    assert_eq!(&next_message(&mut rx).await[..], b"again");
    within(client.shutdown(Duration::from_secs(1))).await;
    within(server.shutdown(Duration::from_secs(1))).await;
}

/// Fan-out never waits on the slowest receiver: a broadcast to 1 000 sessions, one of which
/// never reads, returns at once every time (it is not even async); the other 999 receive every
/// message; the stalled one fills its queue and is closed by its policy (`Close`, the default)
/// — after which broadcasts report it closed.
#[tokio::test]
async fn broadcast_to_a_thousand_with_one_stalled() {
    use chinwag_transport::{FrameRead, Transport};
    const SESSIONS: usize = 1000;
    const ROUNDS: usize = 40;
    let mut pc = PipeConfig::default();
    pc.capacity = 1;
    let (connector, acceptor) = pipe::listener(&pc);
    let mut cfg = ServerConfig::default();
    cfg.session.queue_max_messages = 16;
    // The stalled peer never reads, so its close can never go out: its session is dropped at
    // the close deadline.
    cfg.session.close_timeout = Duration::from_millis(200);
    struct Quiet;
    impl chinwag_session::Handler<FrameCodec> for Quiet {
        async fn on_message(&self, _: &Session<FrameCodec>, _: Frame) {}
    }
    let server = Server::spawn(acceptor, FrameCodec, Quiet, cfg);
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<()>();
    let mut stalled = None;
    for i in 0..SESSIONS {
        let t = connector.connect().await.unwrap();
        if i == 500 {
            stalled = Some(t); // held, never read
            continue;
        }
        let got = got_tx.clone();
        tokio::spawn(async move {
            let (mut r, _w) = t.split();
            while let Ok(Some(_)) = r.read_frame().await {
                let _ = got.send(());
            }
        });
    }
    wait_until(|| server.session_count() == SESSIONS).await;
    let sessions = server.sessions();
    let mut reports = Vec::new();
    for round in 0..ROUNDS {
        let enc = Encoded::frame(Frame::Binary(Bytes::from(vec![round as u8; 32])));
        reports.push(chinwag_session::broadcast(&sessions, &enc));
        // The 999 readers each get this round's message; the stalled one is not waited for.
        for _ in 0..SESSIONS - 1 {
            within(got_rx.recv()).await.unwrap();
        }
    }
    // Every round reached the 999 readers.
    assert!(
        reports.iter().all(|r| r.queued >= SESSIONS - 1),
        "{reports:?}"
    );
    // The stalled one: queued until its queue (16) was full, then closed by its policy, then
    // reported closed.
    let overflowed: usize = reports.iter().map(|r| r.overflowed).sum();
    assert_eq!(overflowed, 1, "{reports:?}");
    assert!(reports.last().unwrap().closed == 1, "{reports:?}");
    let stalled_session = sessions
        .iter()
        .find(|s| s.close_cause().is_some())
        .expect("the stalled session is closing")
        .clone();
    assert_eq!(within(stalled_session.closed()).await, CloseCause::Overflow);
    assert_eq!(
        server.session_count(),
        SESSIONS - 1,
        "nobody else was closed"
    );
    assert!(got_rx.try_recv().is_err(), "no extra deliveries");
    drop(stalled);
    within(server.shutdown(Duration::from_secs(5))).await;
}
