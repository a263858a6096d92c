// Run: cargo run --release --example hub -- --listen 127.0.0.1:9400 --tcp 127.0.0.1:9401 \
//          --secret 'a long HS256 secret' [--engine fastwebsockets|yawc] [--queue redb:/tmp/hub.redb] \
//          [--history memory|redb:PATH|redis:URL] [--protected-room NAME:PASSWORD].. \
//          [--deflate [--compress-once false]]
//
// The chinwag IM hub behind the `hub-*` scenarios of `cargo xtask bench`: one hub with JWT
// (HS256) sign-in and its doors on loopback:
//
//   ws://ADDR/ws?room=NAME   the raw room door (plumego style): every message is published to
//                            the room as it is; token in `Authorization: Bearer`
//   ws://ADDR/gotalk/        the chat door (docs/chat-protocol.md), gotalk over WebSocket
//   tcp ADDR (--tcp)         the chat door over TCP (first-message `auth`)
//
// Both WebSocket doors share the `--listen` port (one acceptor per path). The limits a
// benchmark would trip are raised: members per room (20 000), connections (--max-connections),
// and the connection and message rates are off (the load comes from a few loopback addresses
// at rates far above a person's). The offline queue is memory, redb (a file) or Redis; room
// history is off unless `--history` names a store (the `hub-history-*` scenarios).
// `--protected-room NAME:PASSWORD` (repeatable) creates a room with a password at start (for the
// password-guessing scenario, `hub-guess`); the room-password limits (Argon2 checks at once,
// guess rates per connection and per address, the strike-out) stay at the hub's defaults.
// `--deflate` accepts permessage-deflate on both WebSocket doors (engines that implement it:
// yawc) with `server_no_context_takeover` and `client_no_context_takeover` asked, and
// `--compress-once` sets `DeflateConfig::compress_once` (default true: a room's publish is
// compressed once for every member; false: each connection compresses its own copy); the other
// deflate settings are `DeflateConfig`'s defaults (the `hub-deflate-*` scenarios).
//
// Once listening it prints `rooms ws://ADDR/ws`, `chat ws://ADDR/gotalk/` and, with --tcp,
// `tcp ADDR` on stdout (port 0 works).

//! The hub benchmark server (see the comment at the top of the file for how to run it).

#[path = "process.rs"]
mod process;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::auth::{JwtAuthenticator, JwtConfig, JwtKey};
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::chat::ChatDoor;
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::{Hub, HubConfig, HubLimits, RoomOptions};
use chinwag_queue::{History, HistoryConfig, MemoryHistory, MemoryQueue, Queue, QueueConfig};
use chinwag_rpc::RpcConfig;
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use chinwag_ws::{DeflateConfig, Engine, OriginPolicy, WsAcceptor, WsConfig};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EngineName {
    Tungstenite,
    Fastwebsockets,
    Yawc,
}

/// The chinwag hub with its room and chat doors, for benchmarks.
#[derive(Debug, Parser)]
struct Args {
    /// HTTP address of the WebSocket doors: the room door at /ws, the chat door at /gotalk/.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// TCP address of the chat door (none by default).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Which WebSocket engine to use.
    #[arg(long, value_enum, default_value = "tungstenite")]
    engine: EngineName,
    /// The HS256 secret tokens are signed with.
    #[arg(long, default_value = "chinwag bench secret, not for production")]
    secret: String,
    /// Offline queue: `memory`, `redb:PATH` or `redis:URL` (`redis:redis://127.0.0.1:6379/`).
    #[arg(long, default_value = "memory")]
    queue: String,
    /// Room history: `off`, `memory`, `redb:PATH` or `redis:URL`. With a store, every room keeps
    /// its last 1 000 publishes (the hub's default).
    #[arg(long, default_value = "off")]
    history: String,
    /// Connections the hub (and each listener) admits.
    #[arg(long, default_value_t = 12_000)]
    max_connections: usize,
    /// Members of one room.
    #[arg(long, default_value_t = 20_000)]
    max_members_per_room: usize,
    /// Seconds between keepalives: WebSocket pings, and gotalk heartbeats on the chat door.
    #[arg(long, default_value_t = 20)]
    ping_interval: u64,
    /// A room created at start with a password, as `NAME:PASSWORD` (the name ends at the first
    /// `:`). Repeatable.
    #[arg(long = "protected-room", value_parser = parse_protected_room)]
    protected_rooms: Vec<(String, String)>,
    /// Accept permessage-deflate (yawc), asking `server_no_context_takeover` and
    /// `client_no_context_takeover`.
    #[arg(long)]
    deflate: bool,
    /// With --deflate: compress a message handed to many connections once for all of them
    /// (`DeflateConfig::compress_once`); false: every connection compresses its own copy.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, requires = "deflate")]
    compress_once: bool,
}

fn parse_protected_room(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_owned(), password.to_owned()))
        }
        _ => Err(format!("expected NAME:PASSWORD, got {s:?}")),
    }
}

async fn open_queue(spec: &str) -> Result<Arc<dyn Queue>, Box<dyn std::error::Error>> {
    // Room for a replay of 10 000 messages to one user, and a margin.
    let cfg = QueueConfig::default()
        .with_max_entries_per_recipient(100_000)
        .with_max_bytes_per_recipient(256 << 20);
    Ok(if spec == "memory" {
        Arc::new(MemoryQueue::new(cfg))
    } else if let Some(path) = spec.strip_prefix("redb:") {
        Arc::new(chinwag_queue_redb::RedbQueue::open(path, cfg)?)
    } else if let Some(url) = spec.strip_prefix("redis:") {
        Arc::new(chinwag_queue_redis::RedisQueue::connect(url, cfg).await?)
    } else {
        return Err(format!("--queue {spec:?}: expected memory, redb:PATH or redis:URL").into());
    })
}

async fn open_history(spec: &str) -> Result<Option<Arc<dyn History>>, Box<dyn std::error::Error>> {
    let cfg = HistoryConfig::default();
    Ok(if spec == "off" {
        None
    } else if spec == "memory" {
        Some(Arc::new(MemoryHistory::new(cfg)))
    } else if let Some(path) = spec.strip_prefix("redb:") {
        Some(Arc::new(chinwag_queue_redb::RedbHistory::open(path, cfg)?))
    } else if let Some(url) = spec.strip_prefix("redis:") {
        Some(Arc::new(
            chinwag_queue_redis::RedisHistory::connect(url, cfg).await?,
        ))
    } else {
        return Err(
            format!("--history {spec:?}: expected off, memory, redb:PATH or redis:URL").into(),
        );
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init_logging();
    let args = Args::parse();
    let ping = Duration::from_secs(args.ping_interval.max(1));
    let limits = HubLimits::default()
        .with_max_connections(args.max_connections)
        .with_max_members_per_room(args.max_members_per_room)
        .with_connection_rate(None)
        .with_message_rate(None);
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(args.secret.as_bytes())));
    let mut hub = Hub::builder()
        .config(HubConfig::default().with_limits(limits))
        .authenticator(Arc::new(jwt))
        .queue(open_queue(&args.queue).await?);
    if let Some(history) = open_history(&args.history).await? {
        hub = hub.history(history);
    }
    let hub = hub.build();
    for (name, password) in &args.protected_rooms {
        hub.create_room(name, RoomOptions::new().with_password(password.as_str()))
            .await
            .map_err(|e| format!("--protected-room {name}: {e}"))?;
    }

    let mut rpc = RpcConfig::default();
    rpc.session.heartbeat_interval = Some(ping);
    let chat = ChatDoor::new(hub.clone()).with_rpc_config(rpc);
    let rooms = RoomsDoor::new(hub.clone());
    let mut ws = WsConfig::default()
        .with_origin(OriginPolicy::any())
        .with_ping_interval(Some(ping))
        .with_max_connections(args.max_connections);
    if args.deflate {
        ws = ws.with_deflate(Some(
            DeflateConfig::default()
                .with_server_no_context_takeover(true)
                .with_client_no_context_takeover(true)
                .with_compress_once(args.compress_once),
        ));
    }
    let (local, mut doors) = match args.engine {
        EngineName::Tungstenite => {
            serve_ws::<chinwag_ws_tungstenite::Tungstenite>(args.listen, ws, &chat, &rooms).await?
        }
        EngineName::Fastwebsockets => {
            serve_ws::<chinwag_ws_fastwebsockets::FastWebSockets>(args.listen, ws, &chat, &rooms)
                .await?
        }
        EngineName::Yawc => {
            serve_ws::<chinwag_ws_yawc::Yawc>(args.listen, ws, &chat, &rooms).await?
        }
    };
    let mut tcp_addr = None;
    if let Some(addr) = args.tcp {
        let cfg = TcpConfig::default().with_max_connections(args.max_connections);
        let acc = TcpAcceptor::bind(addr, cfg)?;
        tcp_addr = Some(acc.local_socket_addr()?);
        doors.push(chat.serve(acc));
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "rooms ws://{local}/ws")?;
    writeln!(out, "chat ws://{local}/gotalk/")?;
    if let Some(a) = tcp_addr {
        writeln!(out, "tcp {a}")?;
    }
    out.flush()?;
    drop(out);

    process::signal().await;
    let closed = hub.shutdown(Duration::from_secs(5)).await;
    for d in &doors {
        d.shutdown(Duration::from_secs(5)).await;
    }
    tracing::info!(closed, "hub stopped");
    Ok(())
}

/// Both WebSocket doors on one port: the room door at `/ws`, the chat door at `/gotalk/`.
async fn serve_ws<E: Engine>(
    addr: SocketAddr,
    cfg: WsConfig,
    chat: &ChatDoor,
    rooms: &RoomsDoor,
) -> std::io::Result<(SocketAddr, Vec<DoorHandle>)> {
    let mut acceptors = WsAcceptor::<E>::bind_routes(addr, &["/ws", "/gotalk/"], cfg, None, None)
        .await?
        .into_iter();
    let (Some(room_acc), Some(chat_acc)) = (acceptors.next(), acceptors.next()) else {
        return Err(std::io::Error::other("bind_routes: one acceptor per path"));
    };
    let local = room_acc.local_addr();
    Ok((local, vec![rooms.serve(room_acc), chat.serve(chat_acc)]))
}
