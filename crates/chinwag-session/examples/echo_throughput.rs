//! Session-level echo throughput over loopback TCP: messages per second through a chinwag
//! `Server` whose handler echoes, driven by a `Client` pool in the same process.
//!
//! ```text
//! cargo run --release -p chinwag-session --example echo_throughput -- [--conns 100] [--size 64] [--inflight 1] [--secs 5]
//! ```
//!
//! Closed loop: each of `--conns` client sessions keeps `--inflight` messages of `--size`
//! bytes (u32 length-delimited) in flight and sends the next one when an echo comes back.
//! Reported: echoed messages per second (each is one message into and one out of a server
//! session, and the same at the client), measured over `--secs` after one second of warm-up.
//! Client and server share the process and the machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chinwag_session::{
    Client, ClientConfig, Handler, LengthDelimited, Server, ServerConfig, Session,
};
use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig};

struct Echo;
impl Handler<LengthDelimited> for Echo {
    async fn on_message(&self, s: &Session<LengthDelimited>, msg: Bytes) {
        let _ = s.send(&msg).await;
    }
}

/// Counts an echo and sends the next message.
struct Pinger(Arc<AtomicU64>);
impl Handler<LengthDelimited> for Pinger {
    async fn on_message(&self, s: &Session<LengthDelimited>, msg: Bytes) {
        self.0.fetch_add(1, Ordering::Relaxed);
        let _ = s.send(&msg).await;
    }
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let conns: usize = arg("--conns", 100);
    let size: usize = arg("--size", 64);
    let inflight: usize = arg("--inflight", 1);
    let secs: u64 = arg("--secs", 5);

    let acceptor = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let server = Server::spawn(
        acceptor,
        LengthDelimited::default(),
        Echo,
        ServerConfig::default(),
    );

    let count = Arc::new(AtomicU64::new(0));
    let mut cfg = ClientConfig::default().with_pool_size(conns);
    cfg.session.idle_timeout = None;
    let client = Client::spawn(
        move || async move { tcp::connect(addr, &TcpConfig::default()).await },
        LengthDelimited::default(),
        Pinger(count.clone()),
        cfg,
    );
    assert!(client.wait_open(conns).await, "clients connected");
    let payload = Bytes::from(vec![0xabu8; size]);
    for s in client.sessions() {
        for _ in 0..inflight {
            s.send(&payload).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let n = count.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed().as_secs_f64();
    let server_stats = server
        .sessions()
        .iter()
        .map(|s| s.stats())
        .fold((0u64, 0u64), |(m, b), st| {
            (m + st.messages_out, b + st.bytes_out)
        });
    println!(
        "conns={conns} size={size} inflight={inflight} secs={secs}: {:.0} echoes/s \
         ({:.1} MB/s of payload each way); server sessions wrote {} messages total",
        n as f64 / elapsed,
        n as f64 * size as f64 / elapsed / 1e6,
        server_stats.0,
    );
    client.shutdown(Duration::from_secs(2)).await;
    server.shutdown(Duration::from_secs(2)).await;
}
