//! Hostile peers against a gotalk RPC server, on real loopback sockets, at a scale CI runs:
//! every pipelined request is answered (TCP and WebSocket on both engines, with the default
//! limits and with `max_requests = 1`), a flood past the WebSocket port's connection budget is
//! refused with 503 while the TCP port of the same server still serves, a trickling TCP peer is
//! cut with `f00000003`, and a gotalk protocol error over WebSocket closes with 1002.
//!
//! Memory under non-reading peers is measured alone in `tests/hostile_memory.rs`. No test
//! asserts a timing; waits are bounded so a bug fails instead of hanging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag_rpc::{HandlerError, Handlers, RpcConfig, RpcServer};
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use chinwag_transport::{CloseCode, Frame, FrameRead, FrameWrite, Transport};
use chinwag_wire::{FramedDecoder, Message, Name, RequestId, StreamDecoder, WireLimits};
use chinwag_ws::{Engine, WsAcceptor, WsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(120), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within 120 s"),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn handlers() -> Arc<Handlers> {
    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    Arc::new(h)
}

fn request(i: u32) -> Message {
    Message::SingleRequest {
        id: RequestId(i.to_be_bytes()),
        op: Name::from_static("echo"),
        payload: Bytes::from_static(b"0123456789abcdef0123456789abcdef"),
    }
}

/// What came back for the pipelined requests.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answers {
    results: u64,
    errors: u64,
    retries: u64,
}

impl Answers {
    fn total(&self) -> u64 {
        self.results + self.errors + self.retries
    }

    fn count(&mut self, m: &Message) {
        match m {
            Message::SingleResult { .. } => self.results += 1,
            Message::ErrorResult { .. } => self.errors += 1,
            Message::RetryResult { .. } => self.retries += 1,
            Message::Heartbeat { .. } => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// `n` requests pipelined on one raw TCP connection, written as fast as the server takes them
/// while a reader counts every answer.
async fn pipeline_tcp(addr: SocketAddr, n: u32) -> Answers {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut buf = BytesMut::new();
        chinwag_wire::write_version(&mut buf);
        for i in 0..n {
            request(i).encode(&mut buf).unwrap();
            if buf.len() > 64 << 10 {
                wr.write_all(&buf).await.unwrap();
                buf.clear();
            }
        }
        wr.write_all(&buf).await.unwrap();
        wr // kept open: the server must answer everything before we close
    });
    let mut dec = StreamDecoder::new(WireLimits::default());
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut answers = Answers::default();
    while answers.total() < u64::from(n) {
        let r = rd.read_buf(&mut buf).await.unwrap();
        assert!(r > 0, "the server closed after {answers:?}");
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            answers.count(&m);
        }
    }
    drop(writer.await.unwrap());
    answers
}

/// The same over WebSocket with chinwag's client transport (framed layout: header and payload
/// as separate messages).
async fn pipeline_ws<E: Engine>(url: &str, n: u32) -> Answers {
    let conn = chinwag_ws::connect::<E>(url, &WsConfig::default())
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.split();
    let writer = tokio::spawn(async move {
        wr.send(Frame::Binary(Bytes::from_static(chinwag_wire::VERSION)))
            .await
            .unwrap();
        let mut scratch = BytesMut::new();
        for i in 0..n {
            let (h, p) = request(i).encode_framed(&mut scratch).unwrap();
            wr.feed(Frame::Binary(h)).await.unwrap();
            if let Some(p) = p {
                wr.feed(Frame::Binary(p)).await.unwrap();
            }
            if i % 256 == 255 {
                wr.flush().await.unwrap();
            }
        }
        wr.flush().await.unwrap();
        wr
    });
    let mut dec = FramedDecoder::new(WireLimits::default());
    let mut answers = Answers::default();
    while answers.total() < u64::from(n) {
        let frame = rd.read_frame().await.unwrap();
        let frame = frame.unwrap_or_else(|| panic!("the server closed after {answers:?}"));
        if let Some(m) = dec.decode_frame(frame.into_payload()).unwrap() {
            answers.count(&m);
        }
    }
    drop(writer.await.unwrap());
    answers
}

fn config(max_requests: usize) -> RpcConfig {
    RpcConfig::default().with_max_requests(max_requests)
}

const PIPELINED: u32 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipelined_request_is_answered_over_tcp() {
    for max in [256, 1] {
        let acc = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
        let addr = acc.local_socket_addr().unwrap();
        let server = RpcServer::spawn(acc, handlers(), config(max), None);
        let a = within("pipeline", pipeline_tcp(addr, PIPELINED)).await;
        assert_eq!(a.total(), u64::from(PIPELINED), "max_requests {max}: {a:?}");
        assert_eq!(a.errors, 0);
        assert!(a.results > 0, "max_requests {max}: {a:?}");
        if max == 1 {
            assert!(a.retries > 0, "{a:?}");
        }
        server.shutdown(Duration::from_secs(1)).await;
    }
}

async fn pipelined_over_ws<E: Engine>() {
    for max in [256, 1] {
        let acc = WsAcceptor::<E>::bind(loopback(), WsConfig::default())
            .await
            .unwrap();
        let url = format!("ws://{}/", acc.local_addr());
        let server = RpcServer::spawn(acc, handlers(), config(max), None);
        let a = within("pipeline", pipeline_ws::<E>(&url, PIPELINED)).await;
        assert_eq!(a.total(), u64::from(PIPELINED), "max_requests {max}: {a:?}");
        assert_eq!(a.errors, 0);
        if max == 1 {
            assert!(a.retries > 0, "{a:?}");
        }
        server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipelined_request_is_answered_over_tungstenite() {
    pipelined_over_ws::<chinwag_ws_tungstenite::Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipelined_request_is_answered_over_fastwebsockets() {
    pipelined_over_ws::<chinwag_ws_fastwebsockets::FastWebSockets>().await;
}

/// Descriptors this process holds now (Linux).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The WebSocket door at its budget: 1 000 more attempts get 503 with `Retry-After` before any
/// upgrade, the server's sockets stay within the cap plus the refusals it may answer at once,
/// and a fresh client on the TCP door of the same server is served.
async fn flood_past_the_ws_budget<E: Engine>() {
    const CAP: usize = 40;
    let ws_acc = WsAcceptor::<E>::bind(loopback(), WsConfig::default().with_max_connections(CAP))
        .await
        .unwrap();
    let url = format!("ws://{}/", ws_acc.local_addr());
    let ws_addr = ws_acc.local_addr();
    let budget = ws_acc.budget().clone();
    let ws_server = RpcServer::spawn(ws_acc, handlers(), config(256), None);
    let tcp_acc = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let tcp_addr = tcp_acc.local_socket_addr().unwrap();
    let tcp_server = RpcServer::spawn(tcp_acc, handlers(), config(256), None);

    let base_fds = open_fds();
    let mut held = Vec::new();
    for _ in 0..CAP {
        let t = within(
            "connect",
            chinwag_ws::connect::<E>(&url, &WsConfig::default()),
        )
        .await
        .unwrap();
        held.push(chinwag_rpc::connect(t, handlers(), RpcConfig::client()));
    }
    let reply = within("a held peer works", held[0].request_bytes("echo", "x"))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"x");
    assert_eq!(budget.open(), CAP);

    // The flood: 1 000 upgrade attempts, 20 at a time.
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {ws_addr}\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut max_fds = 0;
    for _ in 0..50 {
        let batch: Vec<_> = (0..20)
            .map(|_| {
                let req = req.clone();
                tokio::spawn(async move {
                    let mut tcp = TcpStream::connect(ws_addr).await.unwrap();
                    tcp.write_all(req.as_bytes()).await.unwrap();
                    let mut resp = Vec::new();
                    let _ = tcp.read_to_end(&mut resp).await;
                    String::from_utf8_lossy(&resp).to_ascii_lowercase()
                })
            })
            .collect();
        max_fds = max_fds.max(open_fds());
        for t in batch {
            let resp = within("refusal", t).await.unwrap();
            assert!(resp.starts_with("http/1.1 503"), "{resp}");
            assert!(resp.contains("retry-after:"), "{resp}");
        }
    }
    assert_eq!(budget.refused(), 1000);
    assert_eq!(budget.open(), CAP, "no session past the cap");
    assert_eq!(ws_server.sessions().session_count(), CAP);
    // This process holds both ends: the held clients (CAP), the 20 flooding clients of a batch
    // and the server's sockets, which stay within the cap plus the refusals answered at once.
    let server_side = max_fds.saturating_sub(base_fds + CAP + 20);
    assert!(
        server_side <= CAP + chinwag_ws::REFUSALS_IN_FLIGHT,
        "server sockets {server_side} > cap {CAP} + {}",
        chinwag_ws::REFUSALS_IN_FLIGHT
    );

    // The TCP door of the same server still serves a fresh client.
    let t = chinwag_transport::tcp::connect(tcp_addr, &TcpConfig::default())
        .await
        .unwrap();
    let fresh = chinwag_rpc::connect(t, handlers(), RpcConfig::client());
    let reply = within(
        "tcp while flooded",
        fresh.request_bytes("echo", "still here"),
    )
    .await
    .unwrap();
    assert_eq!(&reply[..], b"still here");
    drop(held);
    ws_server.shutdown(Duration::from_secs(1)).await;
    tcp_server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn flood_past_the_ws_budget_on_tungstenite() {
    flood_past_the_ws_budget::<chinwag_ws_tungstenite::Tungstenite>().await;
}

#[tokio::test]
async fn flood_past_the_ws_budget_on_fastwebsockets() {
    flood_past_the_ws_budget::<chinwag_ws_fastwebsockets::FastWebSockets>().await;
}

/// A TCP peer that starts a request and trickles its payload one byte at a time is cut at the
/// message deadline, after `f00000003`.
#[tokio::test]
async fn a_trickling_tcp_peer_is_cut_with_f3() {
    let mut cfg = config(256);
    cfg.session.message_timeout = Some(Duration::from_millis(300));
    let acc = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acc.local_socket_addr().unwrap();
    let server = RpcServer::spawn(acc, handlers(), cfg, None);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"01r0001004echo00000400").await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        // Pacing the attacker (one byte every 20 ms: 1 024 bytes would take 20 s).
        for _ in 0..1024 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if wr.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    within("cut", rd.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"01f00000003");
    trickle.abort();
    server.shutdown(Duration::from_secs(1)).await;
}

/// A gotalk protocol error over WebSocket: `f00000002`, then the close code 1002.
async fn protocol_error_over_ws<E: Engine>() {
    let acc = WsAcceptor::<E>::bind(loopback(), WsConfig::default())
        .await
        .unwrap();
    let url = format!("ws://{}/", acc.local_addr());
    let server = RpcServer::spawn(acc, handlers(), config(256), None);
    let (mut rd, mut wr) = chinwag_ws::connect::<E>(&url, &WsConfig::default())
        .await
        .unwrap()
        .split();
    wr.send(Frame::Binary(Bytes::from_static(b"01")))
        .await
        .unwrap();
    wr.send(Frame::Binary(Bytes::from_static(b"x")))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while let Some(f) = within("frames", rd.read_frame()).await.unwrap() {
        frames.push(f.into_payload());
    }
    assert_eq!(
        frames.last().map(|b| &b[..]),
        Some(&b"f00000002"[..]),
        "{frames:?}"
    );
    assert_eq!(rd.close_reason().unwrap().code, CloseCode::PROTOCOL);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn protocol_error_over_tungstenite_closes_with_1002() {
    protocol_error_over_ws::<chinwag_ws_tungstenite::Tungstenite>().await;
}

#[tokio::test]
async fn protocol_error_over_fastwebsockets_closes_with_1002() {
    protocol_error_over_ws::<chinwag_ws_fastwebsockets::FastWebSockets>().await;
}
