//! Idle memory per WebSocket session: opens N idle WebSocket connections to a chinwag
//! `Server` and reports the server process's resident memory per connection.
//!
//! ```text
//! cargo run --release -p chinwag-session --example idle_memory -- [--conns 10000] [--engine tungstenite|fastwebsockets] [--baseline]
//! ```
//!
//! The server (this process) accepts through the chosen engine's `WsAcceptor`, with the
//! default `SessionConfig` (idle timeout and its timer armed) and `FrameCodec`; every session
//! echoes one message and then sits idle. The clients run in a **child process** (each
//! process may hold 20 000 open files), speak a minimal hand-written WebSocket client (so
//! their memory is not ours), and bind source addresses 127.0.0.2 … 127.0.0.9 in turn so no
//! single source address runs out of ports.
//!
//! Reported: `(VmRSS after N sessions − VmRSS before) / N`, from `/proc/self/status`, after a
//! warm-up of 200 connections that were opened and closed before the baseline (so the
//! runtime's, hyper's and the allocator's one-time costs are not counted per connection).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chinwag_session::{FrameCodec, Handler, Server, ServerConfig, ServerHandle, Session};
use chinwag_transport::{Acceptor, Frame, FrameRead, FrameWrite, Transport};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

struct EchoOnce;
impl Handler<FrameCodec> for EchoOnce {
    async fn on_message(&self, s: &Session<FrameCodec>, msg: Frame) {
        let _ = s.send(&msg).await;
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// One client connection: handshake, one masked binary message, read its echo.
async fn client_conn(server: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let mut s = sock.connect(server).await?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await?;
        head.push(byte[0]);
        if head.len() > 8192 {
            return Err(std::io::Error::other("response head too long"));
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).to_string(),
        ));
    }
    // FIN + binary, masked, 2 bytes "hi".
    let mask = [1u8, 2, 3, 4];
    let frame = [
        0x82,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        b'h' ^ mask[0],
        b'i' ^ mask[1],
    ];
    s.write_all(&frame).await?;
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await?;
    if echo != [0x82, 0x02, b'h', b'i'] {
        return Err(std::io::Error::other(format!("unexpected echo {echo:?}")));
    }
    Ok(s)
}

/// Child process: opens `n` connections, prints "ready", holds them until stdin closes.
async fn run_clients(server: SocketAddr, n: usize) {
    let mut conns = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0usize;
    while conns.len() < n {
        while pending.len() < 64 && next < n {
            let source = Ipv4Addr::new(127, 0, 0, 2 + (next % 8) as u8);
            pending.spawn(client_conn(server, source));
            next += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(c))) => conns.push(c),
            Some(Ok(Err(e))) => panic!("client connection failed: {e}"),
            Some(Err(e)) => panic!("client task failed: {e}"),
            None => break,
        }
    }
    println!("ready {}", conns.len());
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
    drop(conns);
}

async fn spawn_clients(server: SocketAddr, n: usize) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--client", &server.to_string(), "--conns", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the client process");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(line.starts_with("ready"), "client process said {line:?}");
    child
}

async fn wait_sessions<C: chinwag_session::Codec>(h: &ServerHandle<C>, n: usize) {
    while h.session_count() != n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `--baseline`: no sessions, only the transport with a minimal echo task per connection (what
/// `docs/websocket.md` measured), to separate the engine's cost from the session's.
fn spawn_baseline<A: Acceptor>(mut acceptor: A) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok(conn) = acceptor.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                c.fetch_add(1, Ordering::SeqCst);
                let (mut r, mut w) = conn.split();
                while let Ok(Some(f)) = r.read_frame().await {
                    if w.send(f).await.is_err() {
                        break;
                    }
                }
                c.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    count
}

async fn wait_count(c: &AtomicUsize, n: usize) {
    while c.load(Ordering::SeqCst) != n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn measure_baseline<A: Acceptor>(acceptor: A, addr: SocketAddr, n: usize, engine: &str) {
    let count = spawn_baseline(acceptor);
    let warm = spawn_clients(addr, 200).await;
    wait_count(&count, 200).await;
    drop(warm);
    wait_count(&count, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = vm_rss_kib();
    let mut clients = spawn_clients(addr, n).await;
    wait_count(&count, n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = vm_rss_kib();
    report(engine, "transport only (echo task)", n, before, after);
    drop(clients.stdin.take());
    let _ = clients.wait().await;
}

fn report(engine: &str, what: &str, n: usize, before: u64, after: u64) {
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "engine={engine} mode={what} conns={n} rss_before={before} KiB rss_after={after} KiB \
         per_conn={per_conn:.0} B ({:.2} KiB)",
        per_conn / 1024.0
    );
}

async fn measure<A: Acceptor>(acceptor: A, addr: SocketAddr, n: usize, engine: &str) {
    if std::env::args().any(|a| a == "--baseline") {
        return measure_baseline(acceptor, addr, n, engine).await;
    }
    let server = Server::spawn(acceptor, FrameCodec, EchoOnce, ServerConfig::default());
    // Warm-up: open and close 200 connections.
    let warm = spawn_clients(addr, 200).await;
    wait_sessions(&server, 200).await;
    drop(warm); // kill_on_drop is off: close its stdin instead
    wait_sessions(&server, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = vm_rss_kib();

    let mut clients = spawn_clients(addr, n).await;
    wait_sessions(&server, n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = vm_rss_kib();
    report(engine, "session", n, before, after);
    drop(clients.stdin.take());
    let _ = clients.wait().await;
    server.shutdown(Duration::from_secs(5)).await;
}

#[tokio::main]
async fn main() {
    let n: usize = arg("--conns")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if let Some(server) = arg("--client") {
        run_clients(server.parse().expect("server address"), n).await;
        return;
    }
    let engine = arg("--engine").unwrap_or_else(|| "tungstenite".into());
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    match engine.as_str() {
        "tungstenite" => {
            use chinwag_ws_tungstenite::{WsAcceptor, WsConfig};
            let a = WsAcceptor::bind(bind, WsConfig::default()).await.unwrap();
            let addr = a.local_addr();
            measure(a, addr, n, &engine).await;
        }
        "fastwebsockets" => {
            use chinwag_ws_fastwebsockets::{WsAcceptor, WsConfig};
            let a = WsAcceptor::bind(bind, WsConfig::default()).await.unwrap();
            let addr = a.local_addr();
            measure(a, addr, n, &engine).await;
        }
        other => panic!("unknown engine {other:?} (tungstenite or fastwebsockets)"),
    }
}
