//! Sessions over every transport, on real loopback sockets (and pipes): a server that echoes,
//! a client pool of one that sends and checks every message comes back, in order.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    Client, ClientConfig, CloseCause, Codec, FrameCodec, LengthDelimited, Server, ServerConfig,
    WireCodec,
};
use chinwag_transport::udp::{UdpAcceptor, UdpAcceptorConfig};
use chinwag_transport::{Acceptor, Frame, PeerAddr, Transport, TransportError};
use chinwag_wire::{Message, Name, RequestId};
use common::{Echo, Lines, Recorder, next_message, within};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs the echo check: `msgs` go out from a client session and come back in order.
async fn echo<A, C, F, Fut, T>(acceptor: A, connect: F, codec: C, msgs: Vec<C::Out>)
where
    A: Acceptor,
    C: Codec + Clone,
    C::Out: From<C::In> + Clone + PartialEq + std::fmt::Debug,
    C::In: std::fmt::Debug + Into<C::Out>,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
    T: Transport,
{
    let server = Server::spawn(acceptor, codec.clone(), Echo, ServerConfig::default());
    let (rec, mut rx) = Recorder::<C::In>::new();
    let client = Client::spawn(connect, codec, rec, ClientConfig::default());
    assert!(within(client.wait_open(1)).await, "client connected");
    let session = client.session().unwrap();
    for m in &msgs {
        session.send(m).await.unwrap();
    }
    for m in &msgs {
        let got: C::Out = next_message(&mut rx).await.into();
        assert_eq!(&got, m);
    }
    let stats = session.stats();
    assert_eq!(stats.messages_in, msgs.len() as u64);
    assert!(stats.messages_out >= msgs.len() as u64);
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0);
    // The server saw the same traffic from its side.
    let server_sessions = server.sessions();
    assert_eq!(server_sessions.len(), 1);
    assert_eq!(server_sessions[0].stats().messages_in, msgs.len() as u64);

    let report = within(server.shutdown(Duration::from_secs(5))).await;
    assert_eq!(report.sessions, 1);
    assert_eq!(server.session_count(), 0);
    // The client sees the server's close and (by default) does not redial after a clean
    // one; over WebSocket the server's 1001 is not clean, so stop the client explicitly.
    within(client.shutdown(Duration::from_secs(5))).await;
    assert!(session.is_closed());
}

fn byte_messages() -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"hello"),
        Bytes::new(),
        Bytes::from(vec![7u8; 100_000]),
        Bytes::from_static(b"bye"),
    ]
}

fn wire_messages() -> Vec<Message> {
    vec![
        Message::SingleRequest {
            id: RequestId(*b"0001"),
            op: Name::from_static("echo"),
            payload: Bytes::from_static(br#"{"message":"Hello World"}"#),
        },
        Message::Notification {
            name: Name::from_static("tick"),
            payload: Bytes::new(),
        },
        Message::SingleResult {
            id: RequestId(*b"0002"),
            payload: Bytes::from(vec![b'x'; 70_000]),
        },
    ]
}

#[tokio::test]
async fn tcp_length_delimited() {
    use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig};
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let connect = move || async move { tcp::connect(addr, &TcpConfig::default()).await };
    echo(
        acceptor,
        connect,
        LengthDelimited::default(),
        byte_messages(),
    )
    .await;
}

#[tokio::test]
async fn tcp_gotalk_wire_streamed() {
    use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig};
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let connect = move || async move { tcp::connect(addr, &TcpConfig::default()).await };
    echo(acceptor, connect, WireCodec::default(), wire_messages()).await;
}

#[tokio::test]
async fn tcp_user_codec_lines() {
    use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig};
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let connect = move || async move { tcp::connect(addr, &TcpConfig::default()).await };
    let lines = vec!["one".to_string(), String::new(), "three".repeat(100)];
    echo(acceptor, connect, Lines { max: 1024 }, lines).await;
}

#[tokio::test]
async fn tls_length_delimited() {
    use chinwag_transport::tls::{self, TlsAcceptor, TlsClientConfig, TlsConfig, TlsServerConfig};
    let ca = common::Ca::new();
    let (chain, key) = ca.server_cert();
    let server_cfg = TlsServerConfig::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    let acceptor = TlsAcceptor::bind(loopback(), server_cfg, TlsConfig::default()).unwrap();
    let addr = format!("localhost:{}", acceptor.local_socket_addr().unwrap().port());
    let client_cfg = TlsClientConfig::from_pem_roots(ca.cert_pem.as_bytes()).unwrap();
    let connect = move || {
        let addr = addr.clone();
        let client_cfg = client_cfg.clone();
        async move { tls::connect(&addr, &client_cfg, &TlsConfig::default()).await }
    };
    echo(
        acceptor,
        connect,
        LengthDelimited::default(),
        byte_messages(),
    )
    .await;
}

#[tokio::test]
async fn unix_length_delimited() {
    use chinwag_transport::unix::{self, UnixAcceptor, UnixConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.sock");
    let acceptor = UnixAcceptor::bind(&path, UnixConfig::default()).unwrap();
    let connect = move || {
        let path = path.clone();
        async move { unix::connect(&path, &UnixConfig::default()).await }
    };
    echo(
        acceptor,
        connect,
        LengthDelimited::default(),
        byte_messages(),
    )
    .await;
}

#[tokio::test]
async fn udp_length_delimited() {
    use chinwag_transport::udp::{self, UdpConfig};
    let acceptor = UdpAcceptor::bind(loopback(), UdpAcceptorConfig::default())
        .await
        .unwrap();
    let addr = acceptor.local_socket_addr();
    assert_eq!(acceptor.local_addr(), Some(PeerAddr::Ip(addr)));
    let connect = move || async move { udp::connect(addr, &UdpConfig::default()).await };
    // One datagram per message: keep them under the datagram limit.
    let msgs = vec![
        Bytes::from_static(b"hello"),
        Bytes::new(),
        Bytes::from(vec![1u8; 60_000]),
    ];
    echo(acceptor, connect, LengthDelimited::default(), msgs).await;
}

#[tokio::test]
async fn pipe_frames_and_wire() {
    use chinwag_transport::pipe::{self, PipeConfig};
    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    let connect = move || {
        let c = connector.clone();
        async move { c.connect().await }
    };
    let frames = vec![
        Frame::Text(Bytes::from_static(b"text")),
        Frame::Binary(Bytes::from_static(b"\x00binary")),
    ];
    echo(acceptor, connect, FrameCodec, frames).await;

    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    let connect = move || {
        let c = connector.clone();
        async move { c.connect().await }
    };
    echo(acceptor, connect, WireCodec::default(), wire_messages()).await;
}

macro_rules! ws_tests {
    ($engine:ident, $frames:ident, $wire:ident) => {
        #[tokio::test]
        async fn $frames() {
            use $engine::{WsAcceptor, WsConfig, connect};
            let acceptor = WsAcceptor::bind(loopback(), WsConfig::default())
                .await
                .unwrap();
            let url = format!("ws://{}/", acceptor.local_addr());
            let dial = move || {
                let url = url.clone();
                async move { connect(&url, &WsConfig::default()).await }
            };
            let frames = vec![
                Frame::Text(Bytes::from_static("héllo".as_bytes())),
                Frame::Binary(Bytes::from(vec![9u8; 200_000])),
                Frame::Binary(Bytes::new()),
            ];
            echo(acceptor, dial, FrameCodec, frames).await;
        }

        /// gotalk's framed layout: version, header and payload as separate WS messages.
        #[tokio::test]
        async fn $wire() {
            use $engine::{WsAcceptor, WsConfig, connect};
            let acceptor = WsAcceptor::bind(loopback(), WsConfig::default())
                .await
                .unwrap();
            let url = format!("ws://{}/", acceptor.local_addr());
            let dial = move || {
                let url = url.clone();
                async move { connect(&url, &WsConfig::default()).await }
            };
            echo(acceptor, dial, WireCodec::default(), wire_messages()).await;
        }
    };
}

ws_tests!(
    chinwag_ws_tungstenite,
    ws_tungstenite_frames,
    ws_tungstenite_wire
);
ws_tests!(
    chinwag_ws_fastwebsockets,
    ws_fastwebsockets_frames,
    ws_fastwebsockets_wire
);

/// Over WebSocket the peer's close code reaches the other session's close cause.
#[tokio::test]
async fn ws_close_code_reaches_the_peer() {
    use chinwag_ws_tungstenite::{WsAcceptor, WsConfig, connect};
    let acceptor = WsAcceptor::bind(loopback(), WsConfig::default())
        .await
        .unwrap();
    let url = format!("ws://{}/", acceptor.local_addr());
    let (srec, mut srx) = Recorder::new();
    let server = Server::spawn(acceptor, FrameCodec, srec, ServerConfig::default());
    let (crec, mut crx) = Recorder::new();
    let client = Client::spawn(
        move || {
            let url = url.clone();
            async move { connect(&url, &WsConfig::default()).await }
        },
        FrameCodec,
        crec,
        ClientConfig::default(),
    );
    assert!(within(client.wait_open(1)).await);
    let s = within(async {
        loop {
            if let Some(s) = server.sessions().pop() {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    s.close();
    match common::next_close(&mut crx).await {
        CloseCause::Peer(Some(r)) => assert_eq!(r.code, chinwag_transport::CloseCode::NORMAL),
        other => panic!("client saw {other:?}"),
    }
    assert_eq!(common::next_close(&mut srx).await, CloseCause::Local);
    // A clean close: the client does not redial.
    within(client.stopped()).await;
    assert_eq!(client.dial_count(), 1);
}

/// `max_peers` at its boundary: a second peer is ignored while the first is tracked.
#[tokio::test]
async fn udp_acceptor_max_peers() {
    use chinwag_transport::FrameWrite;
    use chinwag_transport::udp::{self, UdpConfig};
    let mut cfg = UdpAcceptorConfig::default();
    cfg.max_peers = 1;
    let mut acceptor = UdpAcceptor::bind(loopback(), cfg).await.unwrap();
    let addr = acceptor.local_socket_addr();
    let (_r1, mut w1) = udp::connect(addr, &UdpConfig::default())
        .await
        .unwrap()
        .split();
    let (_r2, mut w2) = udp::connect(addr, &UdpConfig::default())
        .await
        .unwrap()
        .split();
    w1.send(Frame::Binary(Bytes::from_static(b"one")))
        .await
        .unwrap();
    let first = within(acceptor.accept()).await.unwrap();
    w2.send(Frame::Binary(Bytes::from_static(b"two")))
        .await
        .unwrap();
    // Datagrams from the first peer still reach it; the second peer never becomes one.
    w1.send(Frame::Binary(Bytes::from_static(b"three")))
        .await
        .unwrap();
    let (mut r, _w) = first.split();
    use chinwag_transport::FrameRead;
    assert_eq!(
        &within(r.read_frame()).await.unwrap().unwrap().payload()[..],
        b"one"
    );
    assert_eq!(
        &within(r.read_frame()).await.unwrap().unwrap().payload()[..],
        b"three"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), acceptor.accept())
            .await
            .is_err(),
        "no second peer while at max_peers"
    );
}
