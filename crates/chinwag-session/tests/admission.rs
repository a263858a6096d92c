//! Admission at connect, on real loopback sockets: a WebSocket client refused by
//! `Service::admit` gets the HTTP status (401/403) with the reason as the body, before any
//! upgrade; an admitted one carries the state admission made into every event of its session,
//! and gets the subprotocol admission chose. Both engines, plain and over TLS. Admission is
//! bounded: a slow one is refused with 503 at the timeout, and past `max_admissions` in progress
//! new connections are refused with 503 at once.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    Admission, CloseCause, ConnectInfo, FrameCodec, Refusal, Server, ServerConfig, Service, Session,
};
use chinwag_transport::{Frame, FrameRead, FrameWrite, Transport, TransportError};
use chinwag_ws::{ConnectOptions, Engine, WsAcceptor, WsConfig};
use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Admits `?user=NAME` (not `mallory`); `slow` waits until released. The state is the user's
/// name, which every echo is prefixed with; `on_close` reports the name.
struct Gate {
    release: Arc<Notify>,
    /// Told when a `slow` admission starts waiting.
    waiting: mpsc::UnboundedSender<()>,
    closed: mpsc::UnboundedSender<(String, CloseCause)>,
}

impl Service<FrameCodec> for Gate {
    type State = String;

    async fn admit(
        &self,
        _session: &Session<FrameCodec>,
        info: &ConnectInfo,
    ) -> Result<Admission<String>, Refusal> {
        let user = info
            .query_param("user")
            .ok_or_else(|| Refusal::unauthorized("no user given: connect with ?user=NAME"))?;
        if user == "mallory" {
            return Err(Refusal::forbidden("mallory is not allowed here"));
        }
        if user == "slow" {
            let released = self.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let _ = self.waiting.send(());
            released.await;
        }
        // Over TLS the admission sees the handshake: the client asked for `localhost` (SNI).
        let user = match info.tls() {
            Some(t) if t.sni.as_deref() == Some("localhost") => format!("{user} (tls)"),
            Some(t) => return Err(Refusal::forbidden(format!("unexpected SNI {:?}", t.sni))),
            None => user,
        };
        let mut admission = Admission::new(user);
        if info.subprotocols().iter().any(|p| p == "chat.v1") {
            admission = admission.with_subprotocol("chat.v1");
        }
        Ok(admission)
    }

    async fn on_message(&self, session: &Session<FrameCodec>, user: &String, frame: Frame) {
        let text = String::from_utf8_lossy(frame.payload()).into_owned();
        let _ = session
            .send(&Frame::Text(Bytes::from(format!("{user}: {text}"))))
            .await;
    }

    fn on_close(&self, _session: &Session<FrameCodec>, user: &String, cause: &CloseCause) {
        let _ = self.closed.send((user.clone(), cause.clone()));
    }
}

struct Fixture<E: Engine> {
    addr: SocketAddr,
    scheme: &'static str,
    tls_client: Option<Arc<rustls::ClientConfig>>,
    release: Arc<Notify>,
    waiting: mpsc::UnboundedReceiver<()>,
    closed: mpsc::UnboundedReceiver<(String, CloseCause)>,
    _server: chinwag_session::ServerHandle<FrameCodec>,
    _engine: std::marker::PhantomData<E>,
}

async fn serve<E: Engine>(tls: bool, config: ServerConfig) -> Fixture<E> {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (acceptor, tls_client) = if tls {
        let ca = common::Ca::new();
        let (chain, key) = ca.server_cert();
        let server =
            chinwag_transport::tls::TlsServerConfig::from_pem(chain.as_bytes(), key.as_bytes())
                .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in chinwag_transport::tls::certs_from_pem(ca.cert_pem.as_bytes()).unwrap() {
            roots.add(c).unwrap();
        }
        let acc =
            WsAcceptor::<E>::bind_tls(loopback, None, WsConfig::default(), server.to_rustls())
                .await
                .unwrap();
        (acc, Some(chinwag_ws::tls_config_with_roots(roots)))
    } else {
        let acc = WsAcceptor::<E>::bind(loopback, WsConfig::default())
            .await
            .unwrap();
        (acc, None)
    };
    let addr = acceptor.local_addr();
    let release = Arc::new(Notify::new());
    let (tx, closed) = mpsc::unbounded_channel();
    let (wtx, waiting) = mpsc::unbounded_channel();
    let gate = Gate {
        release: release.clone(),
        waiting: wtx,
        closed: tx,
    };
    let server = Server::spawn(acceptor, FrameCodec, gate, config);
    Fixture {
        addr,
        scheme: if tls { "wss" } else { "ws" },
        tls_client,
        release,
        waiting,
        closed,
        _server: server,
        _engine: std::marker::PhantomData,
    }
}

impl<E: Engine> Fixture<E> {
    fn url(&self, query: &str) -> String {
        let host = if self.tls_client.is_some() {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        };
        format!("{}://{host}/{query}", self.scheme)
    }

    fn opts(&self) -> ConnectOptions {
        match &self.tls_client {
            Some(c) => ConnectOptions::default().with_tls(c.clone()),
            None => ConnectOptions::default(),
        }
    }

    async fn connect(&self, query: &str) -> Result<chinwag_ws::WsConnection<E>, TransportError> {
        chinwag_ws::connect_with::<E>(&self.url(query), &WsConfig::default(), &self.opts()).await
    }
}

/// The raw HTTP answer to an upgrade request over plain TCP: (status, headers + body).
async fn raw_upgrade(addr: SocketAddr, target: &str, extra: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Read the head (and the body, when the server closes after it).
    loop {
        let n = within(tcp.read(&mut buf)).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            break;
        }
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

async fn refusals_and_state<E: Engine>(tls: bool) {
    let mut f = serve::<E>(tls, ServerConfig::default()).await;
    if !tls {
        // The exact answers on the wire.
        let (status, text) = raw_upgrade(f.addr, "/", "").await;
        assert_eq!(status, 401, "{text}");
        assert!(
            text.ends_with("no user given: connect with ?user=NAME\n"),
            "{text}"
        );
        let (status, text) = raw_upgrade(f.addr, "/?user=mallory", "").await;
        assert_eq!(status, 403, "{text}");
        assert!(text.ends_with("mallory is not allowed here\n"), "{text}");
        let (status, text) = raw_upgrade(
            f.addr,
            "/?user=ann",
            "Sec-WebSocket-Protocol: other, chat.v1\r\n",
        )
        .await;
        assert_eq!(status, 101, "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("sec-websocket-protocol: chat.v1"),
            "{text}"
        );
    }
    // Through the client: refusals are handshake errors naming the status.
    for (query, status) in [("", "401"), ("?user=mallory", "403")] {
        match within(f.connect(query)).await {
            Err(TransportError::Handshake(m)) => assert!(m.contains(status), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Admitted: every message of the session sees the state admission made.
    let (mut r, mut w) = within(f.connect("?user=bob")).await.unwrap().split();
    let bob = if tls { "bob (tls)" } else { "bob" };
    for text in ["one", "two"] {
        w.send(Frame::Text(Bytes::from(text))).await.unwrap();
        let echo = within(r.read_frame()).await.unwrap().unwrap();
        assert_eq!(echo.payload().as_ref(), format!("{bob}: {text}").as_bytes());
    }
    w.close(chinwag_transport::CloseReason::normal())
        .await
        .unwrap();
    // on_close gets the state too (the raw client `ann` above may end first).
    loop {
        let (user, cause) = within(f.closed.recv()).await.unwrap();
        if user == bob {
            assert!(cause.is_clean(), "{cause:?}");
            break;
        }
        assert_eq!(user, "ann");
    }
}

#[tokio::test]
async fn admission_on_tungstenite() {
    refusals_and_state::<chinwag_ws_tungstenite::Tungstenite>(false).await;
}

#[tokio::test]
async fn admission_on_fastwebsockets() {
    refusals_and_state::<chinwag_ws_fastwebsockets::FastWebSockets>(false).await;
}

#[tokio::test]
async fn admission_over_tls_on_tungstenite() {
    refusals_and_state::<chinwag_ws_tungstenite::Tungstenite>(true).await;
}

#[tokio::test]
async fn admission_over_tls_on_fastwebsockets() {
    refusals_and_state::<chinwag_ws_fastwebsockets::FastWebSockets>(true).await;
}

/// An admission that does not decide within `admission_timeout` is refused with 503 (and
/// `Retry-After`); the session never starts.
#[tokio::test]
async fn a_slow_admission_is_refused_at_the_timeout() {
    let mut config = ServerConfig::default();
    config.admission_timeout = Duration::from_millis(200);
    let f = serve::<chinwag_ws_tungstenite::Tungstenite>(false, config).await;
    let (status, text) = raw_upgrade(f.addr, "/?user=slow", "").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("admission timed out"), "{text}");
}

/// At most `max_admissions` run at once: with two slow ones in progress a third connection is
/// refused with 503 at once; once they are released, connections are admitted again.
#[tokio::test]
async fn admissions_in_progress_are_limited() {
    let mut config = ServerConfig::default();
    config.max_admissions = 2;
    let mut f = serve::<chinwag_ws_fastwebsockets::FastWebSockets>(false, config).await;
    let addr = f.addr;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { raw_upgrade(addr, "/?user=slow", "").await.0 }))
        .collect();
    for _ in 0..2 {
        within(f.waiting.recv()).await.unwrap();
    }
    // Both admissions are in progress: the third connection is refused at once.
    let (status, text) = raw_upgrade(addr, "/?user=carol", "").await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("too many connections being admitted"),
        "{text}"
    );
    f.release.notify_waiters();
    for s in slow {
        assert_eq!(within(s).await.unwrap(), 101);
    }
    let (status, _) = raw_upgrade(addr, "/?user=dave", "").await;
    assert_eq!(status, 101);
}
