// Run: cargo run --release --example rpc_call -- --url tcp://127.0.0.1:9300 echo hello
//      cargo run --release --example rpc_call -- --url ws://127.0.0.1:9301/gotalk/ echo.json '{"a":1}'
//
//      cargo run --release --example rpc_call -- --url tcp://127.0.0.1:9300 --stream-request stream.echo a b c
//
// Makes one gotalk request and prints the result on stdout (a streamed result: each part on
// its own line with --stream). With --stream-request the payload and the words after it are
// sent as a streaming request (`s` with the first part, then `p` parts and the end): what a Go
// gotalk stream handler answers. WebSocket clients send an Origin derived from the URL (as a
// browser would; gotalk's Go server refuses requests without one); --no-origin omits it. This is the client side used against any gotalk server: a
// chinwag `rpc_echo`, or a Go gotalk server. Exits with status 1 and the error on stderr when
// the request fails (an error result, a timeout, a refused connection).

//! One gotalk request from the command line (see the comment at the top of the file).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chinwag_rpc::{Handlers, Peer, RpcConfig, connect};
use chinwag_ws::{ConnectOptions, WsConfig};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tungstenite,
    Fastwebsockets,
    Yawc,
}

/// Makes one gotalk request and prints the result.
#[derive(Debug, Parser)]
struct Args {
    /// The server: tcp://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH.
    #[arg(long)]
    url: String,
    /// WebSocket engine for ws:// and wss:// URLs.
    #[arg(long, value_enum, default_value = "tungstenite")]
    engine: EngineName,
    /// Print each part of a streamed result on its own line.
    #[arg(long)]
    stream: bool,
    /// Send a streaming request: the payload and every further PART as its parts.
    #[arg(long)]
    stream_request: bool,
    /// Send no `Origin` header on WebSocket connections.
    #[arg(long)]
    no_origin: bool,
    /// Seconds before the request gives up.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The operation to call.
    op: String,
    /// The payload (sent as is; JSON operations expect JSON text). Empty when omitted.
    #[arg(default_value = "")]
    payload: String,
    /// More parts of a streaming request (with --stream-request).
    parts: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc_call: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dial(args: &Args, config: RpcConfig) -> Result<Peer, String> {
    let handlers = Arc::new(Handlers::new());
    if let Some(addr) = args.url.strip_prefix("tcp://") {
        let t = chinwag_transport::tcp::connect(addr.trim_end_matches('/'), &Default::default())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.url))?;
        return Ok(connect(t, handlers, config));
    }
    if args.url.starts_with("ws://") || args.url.starts_with("wss://") {
        let cfg = WsConfig::default();
        let mut opts = ConnectOptions::default();
        if args.no_origin {
            opts = opts.without_origin();
        }
        let err = |e| format!("cannot connect to {}: {e}", args.url);
        return Ok(match args.engine {
            EngineName::Tungstenite => {
                let t = chinwag_ws::connect_with::<chinwag_ws_tungstenite::Tungstenite>(
                    &args.url, &cfg, &opts,
                )
                .await
                .map_err(err)?;
                connect(t, handlers, config)
            }
            EngineName::Fastwebsockets => {
                let t = chinwag_ws::connect_with::<chinwag_ws_fastwebsockets::FastWebSockets>(
                    &args.url, &cfg, &opts,
                )
                .await
                .map_err(err)?;
                connect(t, handlers, config)
            }
            EngineName::Yawc => {
                let t = chinwag_ws::connect_with::<chinwag_ws_yawc::Yawc>(&args.url, &cfg, &opts)
                    .await
                    .map_err(err)?;
                connect(t, handlers, config)
            }
        });
    }
    Err(format!(
        "unsupported URL {:?}: use tcp://, ws:// or wss://",
        args.url
    ))
}

async fn run(args: &Args) -> Result<(), String> {
    let config = RpcConfig::client().with_request_timeout(Some(Duration::from_secs(args.timeout)));
    let peer = dial(args, config).await?;
    let mut out = std::io::stdout().lock();
    if args.stream_request {
        let (mut writer, mut parts) = peer
            .stream_request(&args.op, args.payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        for p in &args.parts {
            writer.write(p.clone()).await.map_err(|e| e.to_string())?;
        }
        writer.end().await.map_err(|e| e.to_string())?;
        while let Some(part) = parts.next().await {
            let part = part.map_err(|e| e.to_string())?;
            out.write_all(&part).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
    } else if args.stream {
        let mut parts = peer
            .request_stream(&args.op, args.payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(part) = parts.next().await {
            let part = part.map_err(|e| e.to_string())?;
            out.write_all(&part).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
    } else {
        let res = peer
            .request_bytes(&args.op, args.payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        out.write_all(&res).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    peer.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), peer.closed()).await;
    Ok(())
}
