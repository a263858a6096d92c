//! Memory under non-reading peers, alone in its own process so the measurement is not blurred
//! by other tests: clients that send 1 MiB echo requests and never read cannot push the
//! server's resident memory beyond its in-flight budget plus a fixed overhead per connection.
//!
//! The bound asserted (see `docs/limits.md`): the server-wide in-flight budget, plus per
//! connection the message being received (outside the budget: it is not a request until it has
//! arrived; at most the payload limit, 1 MiB here, counted twice for the moment its buffer is
//! replaced by an exact one), plus 24 MiB of fixed slack for the runtime, the allocator's
//! arenas and the test's own clients. Without the budget the same attack grows the server by
//! about 900 MiB over TCP (measured: 919 668 KiB).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag_rpc::{HandlerError, Handlers, RpcConfig, RpcServer};
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use chinwag_wire::{Message, Name, RequestId};
use chinwag_ws::{Engine, WsAcceptor, WsConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The process's resident memory in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const CLIENTS: usize = 20;
const REQUESTS: u32 = 40;
const MIB: usize = 1 << 20;
const BUDGET: usize = 8 * MIB;

fn handlers() -> Arc<Handlers> {
    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    Arc::new(h)
}

fn config() -> RpcConfig {
    let mut c = RpcConfig::default()
        .with_max_server_in_flight_bytes(BUDGET)
        .with_max_in_flight_bytes(4 * MIB)
        // Cut non-readers quickly so the test is short; the bound holds for any timeout.
        .with_reply_timeout(Duration::from_secs(2));
    c.session.write_timeout = Duration::from_secs(2);
    c
}

fn big_request(i: u32, payload: &Bytes) -> Message {
    Message::SingleRequest {
        id: RequestId(i.to_be_bytes()),
        op: Name::from_static("echo"),
        payload: payload.clone(),
    }
}

/// Samples RSS until `done`; returns the peak.
async fn peak_rss(done: Arc<AtomicBool>) -> u64 {
    let mut peak = rss_kib();
    while !done.load(Ordering::Acquire) {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    peak.max(rss_kib())
}

/// Runs the non-readers with `client`, which sends REQUESTS requests on one connection and
/// never reads; returns the server's RSS growth in KiB.
async fn measure<F, Fut>(client: F) -> u64
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let payload = Bytes::from(vec![7u8; MIB]);
    let before = rss_kib();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(peak_rss(done.clone()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client(payload.clone())))
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a non-reader did not finish")
            .unwrap();
    }
    done.store(true, Ordering::Release);
    let peak = sampler.await.unwrap();
    peak.saturating_sub(before)
}

/// The allowed growth: the budget, twice the message being received per connection, and 24 MiB
/// of slack (runtime, allocator arenas, the test's own clients).
fn allowed_kib() -> u64 {
    ((BUDGET + CLIENTS * 2 * MIB + 24 * MIB) / 1024) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_readers_with_1_mib_requests_stay_within_the_budget() {
    // TCP.
    let acc = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), TcpConfig::default()).unwrap();
    let addr: SocketAddr = acc.local_socket_addr().unwrap();
    let server = RpcServer::spawn(acc, handlers(), config(), None);
    let grew = measure(|payload| async move {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            return;
        };
        let _ = tcp.write_all(b"01").await;
        let mut header = BytesMut::new();
        for i in 0..REQUESTS {
            // The header, then the shared payload (no copy on the client side: this process's
            // memory is the server's measurement).
            header.clear();
            big_request(i, &payload).encode_header(&mut header).unwrap();
            // The server stops reading, then closes: the write fails. This client never reads.
            if tcp.write_all(&header).await.is_err() || tcp.write_all(&payload).await.is_err() {
                return;
            }
        }
    })
    .await;
    server.shutdown(Duration::from_secs(2)).await;
    println!(
        "TCP: {CLIENTS} non-readers x {REQUESTS} x 1 MiB: server RSS grew {grew} KiB (allowed {} KiB)",
        allowed_kib()
    );
    assert!(grew <= allowed_kib(), "TCP: grew {grew} KiB");

    ws::<chinwag_ws_tungstenite::Tungstenite>().await;
    ws::<chinwag_ws_fastwebsockets::FastWebSockets>().await;
}

async fn ws<E: Engine>() {
    let acc = WsAcceptor::<E>::bind("127.0.0.1:0".parse().unwrap(), WsConfig::default())
        .await
        .unwrap();
    let url = format!("ws://{}/", acc.local_addr());
    let server = RpcServer::spawn(acc, handlers(), config(), None);
    let grew = measure(move |payload| {
        let url = url.clone();
        async move {
            use chinwag_transport::{Frame, FrameWrite, Transport};
            let Ok(conn) = chinwag_ws::connect::<E>(&url, &WsConfig::default()).await else {
                return;
            };
            let (rd, mut wr) = conn.split();
            let _ = wr.send(Frame::Binary(Bytes::from_static(b"01"))).await;
            let mut scratch = BytesMut::new();
            for i in 0..REQUESTS {
                let (h, p) = big_request(i, &payload)
                    .encode_framed(&mut scratch)
                    .unwrap();
                if wr.feed(Frame::Binary(h)).await.is_err() {
                    break;
                }
                if let Some(p) = p
                    && wr.send(Frame::Binary(p)).await.is_err()
                {
                    break;
                }
            }
            drop((rd, wr));
        }
    })
    .await;
    server.shutdown(Duration::from_secs(2)).await;
    println!(
        "WebSocket ({}): {CLIENTS} non-readers x {REQUESTS} x 1 MiB: server RSS grew {grew} KiB (allowed {} KiB)",
        E::NAME,
        allowed_kib()
    );
    assert!(grew <= allowed_kib(), "{}: grew {grew} KiB", E::NAME);
}
