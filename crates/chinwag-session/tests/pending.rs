//! The pending share of the connection budget, through a session server over TCP: connections
//! of a service that signs peers in later stay pending until `Session::establish`; when the
//! share is full, the oldest pending one is evicted and closed as an idle timeout closes
//! (with the codec's farewell); established ones are never evicted.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chinwag_session::{
    Admission, CloseCause, ConnectInfo, Refusal, Server, ServerConfig, ServerHandle, Service,
    Session, SessionConfig, WireCodec,
};
use chinwag_transport::ConnectionBudget;
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use common::{Lines, wait_until, within};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A service whose peers sign in with a first line `login` (then it echoes); until then they
/// are pending. Reports every close.
struct SignsInLater {
    closed: mpsc::UnboundedSender<(SocketAddr, CloseCause)>,
}

fn peer(s: &Session<impl chinwag_session::Codec>) -> SocketAddr {
    match s.peer_addr() {
        chinwag_transport::PeerAddr::Ip(a) => *a,
        other => panic!("not an IP peer: {other:?}"),
    }
}

impl Service<Lines> for SignsInLater {
    type State = ();

    async fn admit(&self, _: &Session<Lines>, _: &ConnectInfo) -> Result<Admission<()>, Refusal> {
        Ok(Admission::new(()))
    }

    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn on_message(&self, s: &Session<Lines>, _: &(), line: String) {
        if line == "login" {
            s.establish();
        }
        let _ = s.send(&line).await;
    }

    fn on_close(&self, s: &Session<Lines>, _: &(), cause: &CloseCause) {
        let _ = self.closed.send((peer(s), cause.clone()));
    }
}

impl Service<WireCodec> for SignsInLater {
    type State = ();

    async fn admit(
        &self,
        _: &Session<WireCodec>,
        _: &ConnectInfo,
    ) -> Result<Admission<()>, Refusal> {
        Ok(Admission::new(()))
    }

    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn on_message(&self, _: &Session<WireCodec>, _: &(), _: chinwag_wire::Message) {}

    fn on_close(&self, s: &Session<WireCodec>, _: &(), cause: &CloseCause) {
        let _ = self.closed.send((peer(s), cause.clone()));
    }
}

type Closes = mpsc::UnboundedReceiver<(SocketAddr, CloseCause)>;

/// A TCP server for `codec` whose pending share is `share`; its address and budget.
fn serve<C: chinwag_session::Codec>(
    codec: C,
    share: usize,
) -> (SocketAddr, ConnectionBudget, ServerHandle<C>, Closes)
where
    SignsInLater: Service<C>,
{
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone().with_pending_share(share);
    let (tx, rx) = mpsc::unbounded_channel();
    // No idle timeout: only an eviction may close the pending connections.
    let cfg = SessionConfig::default()
        .with_idle_timeout(None)
        .with_message_timeout(None);
    let server = Server::spawn(
        acceptor,
        codec,
        SignsInLater { closed: tx },
        ServerConfig::default().with_session(cfg),
    );
    (addr, budget, server, rx)
}

/// The socket has not been closed by the server (nothing to read, no end of stream).
fn still_open(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(tcp.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// With a pending share of 3: three TCP sockets that never sign in, then one more — the
/// oldest is evicted (closed after gotalk's farewell `f00000003`, as an idle timeout closes),
/// the pending count stays 3, and the three others stay open.
#[tokio::test]
async fn the_oldest_pending_connection_is_evicted_at_the_share() {
    let (addr, budget, server, mut closes) = serve(WireCodec::default(), 3);
    let mut socks = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // The server's version arrives once its session runs.
        let mut version = [0u8; 2];
        within(tcp.read_exact(&mut version)).await.unwrap();
        assert_eq!(&version, b"01");
        socks.push(tcp);
    }
    assert_eq!((budget.pending(), budget.evicted()), (3, 0));

    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let mut version = [0u8; 2];
    within(fourth.read_exact(&mut version)).await.unwrap();
    // The first one gets the farewell, then the end of the stream.
    let mut rest = Vec::new();
    within(socks[0].read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"f00000003");
    let (who, cause) = within(closes.recv()).await.unwrap();
    assert_eq!(who, socks[0].local_addr().unwrap());
    assert_eq!(cause, CloseCause::Evicted);
    assert_eq!((budget.pending(), budget.evicted()), (3, 1));
    wait_until(|| server.session_count() == 3 && budget.open() == 3).await;
    assert!(socks[1..].iter().all(still_open) && still_open(&fourth));
}

/// A session that called `establish()` survives a flood of 20 sockets that never sign in (the
/// pending share is 3): every flood socket but the last three is evicted, the signed-in one
/// still echoes.
#[tokio::test]
async fn an_established_session_survives_a_flood() {
    let (addr, budget, server, mut closes) = serve(Lines { max: 64 }, 3);
    let (rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut rd = BufReader::new(rd).lines();
    wr.write_all(b"login\n").await.unwrap();
    assert_eq!(
        within(rd.next_line()).await.unwrap().as_deref(),
        Some("login")
    );
    assert_eq!(budget.pending(), 0, "signed in: out of the pending share");

    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_until(|| budget.evicted() == 17).await;
    assert_eq!(budget.pending(), 3);
    for _ in 0..17 {
        let (_, cause) = within(closes.recv()).await.unwrap();
        assert_eq!(cause, CloseCause::Evicted);
    }
    // Evicted in arrival order: the first 17 are closed, the last 3 are not.
    for tcp in &mut flood[..17] {
        let mut rest = Vec::new();
        within(tcp.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "no farewell in this codec");
    }
    wait_until(|| server.session_count() == 4).await;
    assert!(flood[17..].iter().all(still_open));
    // The signed-in session was never touched.
    wr.write_all(b"still here\n").await.unwrap();
    assert_eq!(
        within(rd.next_line()).await.unwrap().as_deref(),
        Some("still here")
    );
    assert!(closes.try_recv().is_err());
    within(server.shutdown(Duration::from_secs(5))).await;
}

/// Services that establish on admission (the default: no sign-in step) are never evicted,
/// whatever the share.
#[tokio::test]
async fn default_services_establish_at_admission() {
    struct Quiet;
    impl chinwag_session::Handler<Lines> for Quiet {
        async fn on_message(&self, _: &Session<Lines>, _: String) {}
    }
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone().with_pending_share(1);
    let server = Server::spawn(acceptor, Lines { max: 64 }, Quiet, ServerConfig::default());
    let mut socks = Vec::new();
    for _ in 0..5 {
        socks.push(TcpStream::connect(addr).await.unwrap());
    }
    wait_until(|| server.session_count() == 5).await;
    assert_eq!((budget.pending(), budget.evicted()), (0, 0));
    assert!(server.sessions().iter().all(Session::is_established));
    assert!(socks.iter().all(still_open));
}

/// Evicted while its admission is still running (a slow `admit`), a connection is refused at
/// once: its socket is closed, its session never starts.
#[tokio::test]
async fn a_connection_evicted_during_admission_is_refused() {
    struct SlowAdmission {
        closed: mpsc::UnboundedSender<CloseCause>,
    }
    impl Service<Lines> for SlowAdmission {
        type State = ();
        async fn admit(
            &self,
            s: &Session<Lines>,
            _: &ConnectInfo,
        ) -> Result<Admission<()>, Refusal> {
            let tx = self.closed.clone();
            s.add_close_callback("test", move |c| {
                let _ = tx.send(c.clone());
            });
            // Never decides.
            std::future::pending().await
        }
        fn establish_on_admit(&self) -> bool {
            false
        }
        async fn on_message(&self, _: &Session<Lines>, _: &(), _: String) {}
    }
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone().with_pending_share(1);
    let (tx, mut closes) = mpsc::unbounded_channel();
    let cfg = ServerConfig::default().with_admission_timeout(Duration::from_secs(600));
    let _server = Server::spawn(
        acceptor,
        Lines { max: 64 },
        SlowAdmission { closed: tx },
        cfg,
    );
    let mut first = TcpStream::connect(addr).await.unwrap();
    wait_until(|| budget.pending() == 1).await;
    let second = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    within(first.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(within(closes.recv()).await.unwrap(), CloseCause::Evicted);
    assert_eq!((budget.pending(), budget.evicted()), (1, 1));
    assert!(still_open(&second));
}
