// Run: cargo run --release --example ws_echo -- --engine tungstenite|fastwebsockets|yawc --listen 127.0.0.1:9001
//
// A WebSocket echo server on any engine, on chinwag sessions: every text or binary message
// comes back unchanged. Any path is accepted, browsers from any Origin and clients without one
// are let in, and messages up to 16 MiB are allowed, because this is what the
// Autobahn|Testsuite fuzzing client runs against (`cargo xtask autobahn`).
//
// It runs with the library's defaults, so it is as safe as the library: the acceptor's
// connection budget (503 past it), the session's idle timeout (300 s), write timeout (10 s) and
// bounded send queue. An echo waits for room in the queue (the peer's own sending is slowed
// down while it does not read); one that cannot be queued within the write timeout closes the
// connection. SIGINT/SIGTERM shut it down gracefully (close 1001). `RUST_LOG=debug` logs every
// connection.

//! WebSocket echo server (see the comment at the top of the file for how to run it).

#[path = "process.rs"]
mod process;

use std::net::SocketAddr;
use std::time::Duration;

use chinwag_session::{
    CloseCause, Encoded, FrameCodec, Handler, OverflowPolicy, Server, ServerConfig, Session,
};
use chinwag_transport::Frame;
use chinwag_ws::{Engine, OriginPolicy, WsAcceptor, WsConfig};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tungstenite,
    Fastwebsockets,
    Yawc,
}

/// WebSocket echo server for conformance tests and benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// Which WebSocket engine to use.
    #[arg(long, value_enum, default_value = "tungstenite")]
    engine: EngineName,
    /// Address to listen on (loopback only, please).
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Seconds between keepalive pings on an idle connection (0 disables keepalive).
    #[arg(long, default_value_t = 30)]
    ping_interval: u64,
    /// Initial read buffer per connection in bytes (tungstenite; see `WsConfig`).
    #[arg(long)]
    read_buffer_size: Option<usize>,
    /// Most connections at once (default: the library's, derived from the descriptor limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Accept permessage-deflate with `DeflateConfig`'s defaults (engines that implement it:
    /// yawc).
    #[arg(long)]
    deflate: bool,
}

/// Sends every message back.
struct Echo;

impl Handler<FrameCodec> for Echo {
    fn on_open(&self, s: &Session<FrameCodec>) -> Result<(), chinwag_transport::CloseReason> {
        tracing::debug!(session = s.id(), peer = %s.peer_addr(), "open");
        Ok(())
    }

    async fn on_message(&self, s: &Session<FrameCodec>, frame: Frame) {
        let wait = OverflowPolicy::Block {
            timeout: s.config().write_timeout,
        };
        if s.send_encoded_with(Encoded::frame(frame), wait)
            .await
            .is_err()
        {
            s.close();
        }
    }

    fn on_close(&self, s: &Session<FrameCodec>, cause: &CloseCause) {
        tracing::debug!(session = s.id(), %cause, "closed");
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    process::init_logging();
    let args = Args::parse();
    let mut cfg = WsConfig::default()
        .with_origin(OriginPolicy::any())
        .with_max_message_size(16 << 20)
        .with_max_frame_size(16 << 20)
        .with_ping_interval(
            (args.ping_interval > 0).then(|| Duration::from_secs(args.ping_interval)),
        );
    if let Some(size) = args.read_buffer_size {
        cfg = cfg.with_read_buffer_size(size);
    }
    if args.deflate {
        cfg = cfg.with_deflate(Some(chinwag_ws::DeflateConfig::default()));
    }
    if let Some(n) = args.max_connections {
        cfg = cfg.with_max_connections(n);
    }
    match args.engine {
        EngineName::Tungstenite => {
            serve::<chinwag_ws_tungstenite::Tungstenite>(args.listen, cfg).await
        }
        EngineName::Fastwebsockets => {
            serve::<chinwag_ws_fastwebsockets::FastWebSockets>(args.listen, cfg).await
        }
        EngineName::Yawc => serve::<chinwag_ws_yawc::Yawc>(args.listen, cfg).await,
    }
}

async fn serve<E: Engine>(listen: SocketAddr, cfg: WsConfig) -> std::io::Result<()> {
    let acceptor = WsAcceptor::<E>::bind(listen, cfg).await?;
    tracing::info!(
        engine = E::NAME,
        max_connections = acceptor.budget().cap(),
        "ws_echo listening on ws://{}/",
        acceptor.local_addr()
    );
    let server = Server::spawn(acceptor, FrameCodec, Echo, ServerConfig::default());
    process::signal().await;
    let report = server.shutdown(Duration::from_secs(5)).await;
    tracing::info!(sessions = report.sessions, "ws_echo stopped");
    Ok(())
}
