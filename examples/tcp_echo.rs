// Run: cargo run --release --example tcp_echo -- --listen 127.0.0.1:9002
//
// A TCP echo server speaking tok's framing: every frame is a u32 big-endian length followed by
// that many bytes, and every frame comes back unchanged. It runs on chinwag sessions with the
// `LengthDelimited` codec (a declared length over `--max-frame` is refused before any memory is
// reserved for it), so the same server works over TLS or a Unix socket by swapping the
// acceptor.
//
// It runs with the library's defaults, so it is as safe as the library: the acceptor's
// connection budget (past it, connections are closed at once), the session's idle timeout
// (300 s), write timeout (10 s), message deadline (a frame that has started must keep
// arriving) and bounded send queue. An echo waits for room in the queue; one that cannot be
// queued within the write timeout closes the connection. The session's writer sends everything
// queued with one vectored write. SIGINT/SIGTERM shut it down gracefully. `RUST_LOG=debug` logs
// every connection.
//
// Try it: printf '\0\0\0\5hello' | nc -q1 127.0.0.1 9002 | od -c

//! TCP echo server with u32 big-endian length-prefixed frames (see the comment at the top of
//! the file for how to run it).

#[path = "process.rs"]
mod process;

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    CloseCause, Handler, LengthDelimited, OverflowPolicy, Server, ServerConfig, Session,
};
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use clap::Parser;

/// TCP echo server for u32 big-endian length-prefixed frames.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: SocketAddr,
    /// Largest frame accepted, in bytes; a peer declaring more is disconnected.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame: usize,
    /// Listen backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: u32,
}

/// Sends every frame back.
struct Echo;

impl Handler<LengthDelimited> for Echo {
    fn on_open(&self, s: &Session<LengthDelimited>) -> Result<(), chinwag_transport::CloseReason> {
        tracing::debug!(session = s.id(), peer = %s.peer_addr(), "open");
        Ok(())
    }

    async fn on_message(&self, s: &Session<LengthDelimited>, frame: Bytes) {
        let wait = OverflowPolicy::Block {
            timeout: s.config().write_timeout,
        };
        let sent = match s.encode(&frame) {
            Ok(enc) => s.send_encoded_with(enc, wait).await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            s.close();
        }
    }

    fn on_close(&self, s: &Session<LengthDelimited>, cause: &CloseCause) {
        tracing::debug!(session = s.id(), %cause, "closed");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    process::init_logging();
    let args = Args::parse();
    let mut config = TcpConfig::default();
    config.backlog = args.backlog;
    let acceptor = TcpAcceptor::bind(args.listen, config)?;
    tracing::info!(
        max_connections = acceptor.budget().cap(),
        "tcp_echo listening on {}",
        acceptor.local_socket_addr()?
    );
    let mut server_config = ServerConfig::default();
    // The decode buffer's safety net must hold one whole frame of the largest size.
    server_config.session.max_decode_buffer = server_config
        .session
        .max_decode_buffer
        .max(args.max_frame + 4);
    let server = Server::spawn(
        acceptor,
        LengthDelimited::new(args.max_frame),
        Echo,
        server_config,
    );
    process::signal().await;
    let report = server.shutdown(Duration::from_secs(5)).await;
    tracing::info!(sessions = report.sessions, "tcp_echo stopped");
    Ok(())
}
