// Run: cargo run --release --example rpc_echo -- --tcp 127.0.0.1:9300 --ws 127.0.0.1:9301
//      (add --engine fastwebsockets or --engine yawc for another WebSocket engine)
//
// A gotalk RPC server over TCP and over WebSocket (path `/gotalk/`, so a gotalk.js client
// whose address ends in `/gotalk/` finds it), serving the browser client at
// `/gotalk/chinwag.js`. Real gotalk peers (the Go library, gotalk.js) can call it.
//
// Operations:
//   echo         returns the payload bytes unchanged
//   echo.json    returns the JSON value it got
//   fail         answers with an error whose text is the payload
//   panic        its handler panics: the caller gets an error result, the connection lives on
//   callback     {"op": "...", "value": ...}: calls `op` on the caller and returns its result
//   count        n: a streamed result of n parts, 1, 2, ... n
//   stream.echo  a streaming request: every part comes back as a result part
//   sleep        ms: waits that long, then returns ms (with --max-requests 1, shows retries)
// Notifications: `note` is answered with a notification `note.ack` carrying the same payload.
//
// Once listening it prints `tcp ADDR` and `ws ws://ADDR/gotalk/` on stdout (tests read them,
// so port 0 works).

//! gotalk RPC echo server (see the comment at the top of the file for how to run it).

#[path = "process.rs"]
mod process;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_rpc::{CHINWAG_JS, HandlerError, Handlers, Peer, RpcConfig, RpcError, RpcServer};
use chinwag_transport::tcp::TcpAcceptor;
use chinwag_ws::{Engine, HttpFallback, OriginPolicy, StaticAsset, WsAcceptor, WsConfig};
use clap::{Parser, ValueEnum};
use serde_json::Value;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tungstenite,
    Fastwebsockets,
    Yawc,
}

/// gotalk RPC echo server over TCP and WebSocket.
#[derive(Debug, Parser)]
struct Args {
    /// TCP address for gotalk over TCP.
    #[arg(long, default_value = "127.0.0.1:9300")]
    tcp: SocketAddr,
    /// HTTP address for gotalk over WebSocket (path /gotalk/) and /gotalk/chinwag.js.
    #[arg(long, default_value = "127.0.0.1:9301")]
    ws: SocketAddr,
    /// Which WebSocket engine to use.
    #[arg(long, value_enum, default_value = "tungstenite")]
    engine: EngineName,
    /// Requests served at once per connection (over it, callers get a RetryResult).
    #[arg(long, default_value_t = 256)]
    max_requests: usize,
    /// Milliseconds between the server's heartbeats (gotalk `h`).
    #[arg(long, default_value_t = 20_000)]
    heartbeat_ms: u64,
}

fn handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    h.handle("echo.json", |_p, v: Value| async move {
        Ok::<_, HandlerError>(v)
    });
    h.handle_bytes("fail", |_p, b: Bytes| async move {
        Err::<Bytes, _>(String::from_utf8_lossy(&b).into_owned())
    });
    h.handle_bytes("panic", |_p, _b: Bytes| async move {
        if true {
            panic!("the panic operation panics, as asked");
        }
        Ok::<_, HandlerError>(Bytes::new())
    });
    h.handle("callback", |peer: Peer, req: Value| async move {
        let op = req
            .get("op")
            .and_then(Value::as_str)
            .ok_or("callback needs {\"op\": string, \"value\": any}")?
            .to_owned();
        let value = req.get("value").cloned().unwrap_or(Value::Null);
        match peer.request::<Value, Value>(&op, &value).await {
            Ok(v) => Ok(v),
            Err(RpcError::Remote { message }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    });
    h.handle_stream("count", |_p, mut input, mut out| async move {
        let n: u64 = serde_json::from_slice(&input.next().await.unwrap_or_default())
            .map_err(|e| format!("count needs a number: {e}"))?;
        for k in 1..=n {
            out.send_json(&k).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    h.handle_stream("stream.echo", |_p, mut input, mut out| async move {
        while let Some(chunk) = input.next().await {
            out.send(chunk).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    h.handle("sleep", |_p, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        Ok::<_, HandlerError>(ms)
    });
    h.handle_notification("note", |peer: Peer, payload: Bytes| async move {
        let _ = peer.notify_bytes("note.ack", payload).await;
    });
    h
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    process::init_logging();
    let args = Args::parse();
    let mut config = RpcConfig::default().with_max_requests(args.max_requests);
    config.session.heartbeat_interval = Some(Duration::from_millis(args.heartbeat_ms.max(10)));
    let handlers = Arc::new(handlers());

    let tcp = TcpAcceptor::bind(args.tcp, Default::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tcp_addr = tcp.local_socket_addr()?;
    let tcp_server = RpcServer::spawn(tcp, handlers.clone(), config.clone(), log_connects());

    let (ws_addr, ws_server) = match args.engine {
        EngineName::Tungstenite => {
            serve_ws::<chinwag_ws_tungstenite::Tungstenite>(args.ws, handlers, config).await?
        }
        EngineName::Fastwebsockets => {
            serve_ws::<chinwag_ws_fastwebsockets::FastWebSockets>(args.ws, handlers, config).await?
        }
        EngineName::Yawc => serve_ws::<chinwag_ws_yawc::Yawc>(args.ws, handlers, config).await?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "tcp {tcp_addr}")?;
    writeln!(out, "ws ws://{ws_addr}/gotalk/")?;
    out.flush()?;
    drop(out);
    process::signal().await;
    let (a, b) = tokio::join!(
        tcp_server.shutdown(Duration::from_secs(5)),
        ws_server.shutdown(Duration::from_secs(5))
    );
    tracing::info!(sessions = a.sessions + b.sessions, "rpc_echo stopped");
    Ok(())
}

async fn serve_ws<E: Engine>(
    addr: SocketAddr,
    handlers: Arc<Handlers>,
    config: RpcConfig,
) -> std::io::Result<(SocketAddr, RpcServer)> {
    // Browsers from any page may connect (this is a demo); clients without an Origin header
    // (Go, Node, curl) are allowed too.
    let cfg = WsConfig::default().with_origin(OriginPolicy::any());
    let js = Arc::new(StaticAsset::new(
        CHINWAG_JS,
        "text/javascript; charset=utf-8",
    ));
    let js: HttpFallback =
        Arc::new(move |req| (req.uri().path() == "/gotalk/chinwag.js").then(|| js.respond(req)));
    let acceptor = WsAcceptor::<E>::bind_with_fallback(addr, Some("/gotalk/"), cfg, js).await?;
    let local = acceptor.local_addr();
    Ok((
        local,
        RpcServer::spawn(acceptor, handlers, config, log_connects()),
    ))
}

/// Logs every connection at debug level (`RUST_LOG=debug`), and its end.
fn log_connects() -> Option<Arc<dyn Fn(Peer) + Send + Sync>> {
    Some(Arc::new(|peer: Peer| {
        let id = peer.session().id();
        tracing::debug!(session = id, peer = %peer.session().peer_addr(), "connected");
        peer.session().add_close_callback("log", move |cause| {
            tracing::debug!(session = id, %cause, "closed");
        });
    }))
}
