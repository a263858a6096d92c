// Run: cargo run --release --example ws_echo -- --engine tungstenite|fastwebsockets --listen 127.0.0.1:9001
//
// A WebSocket echo server on either engine, through the chinwag transport seam: every text or
// binary message comes back unchanged. Any path is accepted, browsers from any Origin and
// clients without one are let in, and messages up to 16 MiB are allowed, because this is what
// the Autobahn|Testsuite fuzzing client runs against (`cargo xtask autobahn`).
//
// The echo loop reads one message, then feeds every message that is already available without
// waiting, and flushes once: a burst of small messages goes back in one write.

//! WebSocket echo server (see the comment at the top of the file for how to run it).

use std::net::SocketAddr;
use std::time::Duration;

use chinwag_transport::{Acceptor, FrameRead, FrameWrite, Transport, TransportError};
use chinwag_ws::{Engine, OriginPolicy, WsAcceptor, WsConfig};
use clap::{Parser, ValueEnum};
use futures_util::FutureExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tungstenite,
    Fastwebsockets,
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
}

/// Most messages fed before a flush, so one flood cannot delay its own echo forever.
const MAX_BATCH: usize = 64;

#[tokio::main]
async fn main() -> std::io::Result<()> {
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
    match args.engine {
        EngineName::Tungstenite => {
            serve::<chinwag_ws_tungstenite::Tungstenite>(args.listen, cfg).await
        }
        EngineName::Fastwebsockets => {
            serve::<chinwag_ws_fastwebsockets::FastWebSockets>(args.listen, cfg).await
        }
    }
}

async fn serve<E: Engine>(listen: SocketAddr, cfg: WsConfig) -> std::io::Result<()> {
    let mut acceptor = WsAcceptor::<E>::bind(listen, cfg).await?;
    eprintln!(
        "ws_echo ({}) listening on ws://{}/",
        E::NAME,
        acceptor.local_addr()
    );
    loop {
        match acceptor.accept().await {
            Ok(conn) => {
                tokio::spawn(async move {
                    let peer = conn.peer_addr();
                    if let Err(e) = echo(conn).await {
                        eprintln!("ws_echo: {peer}: {e}");
                    }
                });
            }
            Err(e) => eprintln!("ws_echo: accept: {e}"),
        }
    }
}

async fn echo<T: Transport>(conn: T) -> Result<(), TransportError> {
    let (mut r, mut w) = conn.split();
    while let Some(frame) = r.read_frame().await? {
        w.feed(frame).await?;
        // Everything already received goes into the same batch (read_frame is cancel-safe, so
        // polling it once and dropping it loses nothing).
        for _ in 1..MAX_BATCH {
            match r.read_frame().now_or_never() {
                Some(Ok(Some(frame))) => w.feed(frame).await?,
                Some(Ok(None)) => {
                    w.flush().await?;
                    return Ok(());
                }
                Some(Err(e)) => {
                    let _ = w.flush().await;
                    return Err(e);
                }
                None => break,
            }
        }
        w.flush().await?;
    }
    Ok(())
}
