//! RPC over every transport on real loopback sockets, and the exact bytes a gotalk peer sees
//! (version handshake, protocol errors, results) over raw TCP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_rpc::{HandlerError, Handlers, Peer, RpcConfig, RpcServer, connect};
use chinwag_transport::{Acceptor, Transport, tcp, tls, unix};
use chinwag_ws::{Engine, OriginPolicy, WsAcceptor, WsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("did not finish within 30 s")
}

fn server_handlers() -> Arc<Handlers> {
    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    // Calls the client back: both directions on every transport.
    h.handle("double.via.client", |peer: Peer, n: u64| async move {
        let half: u64 = peer.request("twice", &n).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(half)
    });
    Arc::new(h)
}

fn client_handlers() -> Arc<Handlers> {
    let mut h = Handlers::new();
    h.handle(
        "twice",
        |_p, n: u64| async move { Ok::<_, HandlerError>(n * 2) },
    );
    Arc::new(h)
}

/// A few calls both ways, one of them 1 MiB.
async fn exercise(client: Peer) {
    let small = within(client.request_bytes("echo", "hi")).await.unwrap();
    assert_eq!(&small[..], b"hi");
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let got = within(client.request_bytes("echo", big.clone()))
        .await
        .unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big);
    let d: u64 = within(client.request("double.via.client", &21))
        .await
        .unwrap();
    assert_eq!(d, 42);
    client.close();
    within(client.closed()).await;
}

fn serve<A: Acceptor>(acceptor: A) -> RpcServer {
    RpcServer::spawn(acceptor, server_handlers(), RpcConfig::default(), None)
}

fn dial<T: Transport>(t: T) -> Peer {
    connect(t, client_handlers(), RpcConfig::client())
}

#[tokio::test]
async fn over_tcp() {
    let acc = tcp::TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let addr = acc.local_socket_addr().unwrap();
    let server = serve(acc);
    let t = tcp::connect(addr, &Default::default()).await.unwrap();
    exercise(dial(t)).await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn over_unix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rpc.sock");
    let acc = unix::UnixAcceptor::bind(&path, Default::default()).unwrap();
    let server = serve(acc);
    let t = unix::connect(&path, &Default::default()).await.unwrap();
    exercise(dial(t)).await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let server_cfg =
        tls::TlsServerConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let acc = tls::TlsAcceptor::bind(
        "127.0.0.1:0".parse().unwrap(),
        server_cfg,
        Default::default(),
    )
    .unwrap();
    let port = acc.local_socket_addr().unwrap().port();
    let server = serve(acc);
    // The client verifies the server against the certificate it trusts.
    let client_cfg = tls::TlsClientConfig::from_pem_roots(cert_pem.as_bytes()).unwrap();
    let t = tls::connect(
        &format!("localhost:{port}"),
        &client_cfg,
        &Default::default(),
    )
    .await
    .unwrap();
    exercise(dial(t)).await;
    server.shutdown(Duration::from_secs(5)).await;
}

async fn over_ws<E: Engine>() {
    let cfg = WsConfig::default().with_origin(OriginPolicy::any());
    let acc = WsAcceptor::<E>::bind_path("127.0.0.1:0".parse().unwrap(), "/gotalk/", cfg.clone())
        .await
        .unwrap();
    let url = format!("ws://{}/gotalk/", acc.local_addr());
    let server = serve(acc);
    let t = chinwag_ws::connect::<E>(&url, &cfg).await.unwrap();
    exercise(dial(t)).await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn over_websocket_tungstenite() {
    over_ws::<chinwag_ws_tungstenite::Tungstenite>().await;
}

#[tokio::test]
async fn over_websocket_fastwebsockets() {
    over_ws::<chinwag_ws_fastwebsockets::FastWebSockets>().await;
}

#[tokio::test]
async fn over_pipes_through_an_acceptor() {
    let (connector, acc) = chinwag_transport::pipe::listener(&Default::default());
    let server = serve(acc);
    let t = connector.connect().await.unwrap();
    exercise(dial(t)).await;
    server.shutdown(Duration::from_secs(5)).await;
}

/// What a raw gotalk peer sees: bytes exactly as the protocol's vectors say. Reads until the
/// server closes or `expect.len()` bytes arrived, and compares.
async fn raw_exchange(send: &[u8], expect: &[u8]) {
    let acc = tcp::TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let addr = acc.local_socket_addr().unwrap();
    let server = serve(acc);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut out = Vec::new();
    // Read until the server closes, or until the expected answer is complete.
    let mut buf = [0u8; 4096];
    loop {
        match within(s.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() >= expect.len() {
            break;
        }
    }
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(expect),
        "after sending {:?}",
        String::from_utf8_lossy(send)
    );
}

#[tokio::test]
async fn a_raw_gotalk_request_gets_the_exact_bytes() {
    raw_exchange(b"01r0001004echo00000005hello", b"01R000100000005hello").await;
    // Request ids are opaque bytes, echoed verbatim (Go style: a little-endian counter).
    raw_exchange(
        b"01r\x01\x00\x00\x00004ECHO00000005hello",
        b"01E\x01\x00\x00\x0000000018unknown operation \"ECHO\"",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_version_gets_f1_and_a_close() {
    raw_exchange(b"02", b"01f00000001").await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_get_f2_and_a_close() {
    raw_exchange(b"01x", b"01f00000002").await;
    raw_exchange(b"01r0001004echoffffffff", b"01f00000002").await;
    raw_exchange(b"01h00zz00000000", b"01f00000002").await;
}

#[test]
fn the_js_client_is_embedded() {
    assert!(chinwag_rpc::CHINWAG_JS.contains("export"));
}

/// An admission that signs peers in later (`Admit::establish_on_admit` false) leaves the
/// connection pending in the acceptor's budget until a handler calls
/// `peer.session().establish()`; the default admission establishes at once.
#[tokio::test]
async fn admission_may_leave_connections_pending_until_sign_in() {
    use chinwag_rpc::Admit;
    use chinwag_session::ServerConfig;
    use chinwag_transport::{ConnectInfo, Refusal};
    use std::future::Future;
    use std::pin::Pin;

    struct Later;
    impl Admit for Later {
        fn admit<'a>(
            &'a self,
            _: &'a Peer,
            _: &'a ConnectInfo,
        ) -> Pin<Box<dyn Future<Output = Result<Option<String>, Refusal>> + Send + 'a>> {
            Box::pin(async { Ok(None) })
        }
        fn establish_on_admit(&self) -> bool {
            false
        }
    }
    let mut h = Handlers::new();
    h.handle_bytes("login", |peer: Peer, b: Bytes| async move {
        peer.session().establish();
        Ok::<_, HandlerError>(b)
    });
    let acceptor =
        tcp::TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), tcp::TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone();
    let server = RpcServer::spawn_admitting(
        acceptor,
        Arc::new(h),
        RpcConfig::default(),
        ServerConfig::default(),
        Arc::new(Later),
    );
    let t = within(tcp::connect(addr, &tcp::TcpConfig::default()))
        .await
        .unwrap();
    let client = connect(t, Arc::new(Handlers::new()), RpcConfig::client());
    within(async {
        while server.peers().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(budget.pending(), 1, "admitted, not signed in");
    within(client.request_bytes("login", "me")).await.unwrap();
    assert_eq!(budget.pending(), 0, "signed in");
    assert!(server.peers()[0].session().is_established());
    client.close();
    within(client.closed()).await;
}
