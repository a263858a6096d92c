//! Shared by the hub's tests: a hub with JWT sign-in on real loopback doors, a chat-protocol
//! client on chinwag-rpc (TCP or WebSocket), a private redis-server, the metrics registry.

#![allow(dead_code, unreachable_pub)]

#[allow(unused_imports)]
pub use chinwag_queue_redis::test_server::RedisServer;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chinwag_hub::auth::{JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey};
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::chat::ChatDoor;
use chinwag_hub::{Hub, HubConfig};
use chinwag_queue::Queue;
use chinwag_rpc::{Disconnect, Handlers, Peer, RpcConfig, RpcError};
use chinwag_session::CloseCause;
use chinwag_transport::PeerAddr;
use chinwag_transport::tcp::{self, TcpAcceptor};
use chinwag_ws::{ConnectOptions, Engine, OriginPolicy, WsAcceptor, WsConfig};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const SECRET: &[u8] = b"the hub tests' HS256 secret, long enough";
/// How long any awaited event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn issuer() -> JwtIssuer {
    JwtIssuer::hs256(SECRET)
}

pub fn token(user: &str, device: &str) -> String {
    issuer().issue(user, Some(device), Duration::from_secs(3600))
}

pub fn authenticator() -> Arc<JwtAuthenticator> {
    Arc::new(JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET))))
}

/// Limits that loopback load does not trip (tests of a limit set it themselves).
pub fn config() -> HubConfig {
    HubConfig::default().with_limits(
        chinwag_hub::HubLimits::default()
            .with_connection_rate(None)
            .with_message_rate(None),
    )
}

/// A hub keeping room (and conversation) history in `history`, with settings `h`.
pub fn history_hub(history: Arc<dyn chinwag_queue::History>, h: chinwag_hub::RoomHistory) -> Hub {
    Hub::builder()
        .config(config().with_history(h))
        .authenticator(authenticator())
        .history(history)
        .build()
}

/// A fresh in-memory history store.
pub fn memory() -> Arc<dyn chinwag_queue::History> {
    Arc::new(chinwag_queue::MemoryHistory::new(
        chinwag_queue::HistoryConfig::default(),
    ))
}

pub fn hub(config: HubConfig, queue: Option<Arc<dyn Queue>>) -> Hub {
    let mut b = Hub::builder().config(config).authenticator(authenticator());
    if let Some(q) = queue {
        b = b.queue(q);
    }
    b.build()
}

pub fn addr_of(d: &DoorHandle) -> SocketAddr {
    match d.local_addr() {
        Some(PeerAddr::Ip(a)) => *a,
        other => panic!("door without an IP address: {other:?}"),
    }
}

/// The chat door on loopback TCP.
pub fn chat_tcp(hub: &Hub) -> (DoorHandle, SocketAddr) {
    let acc = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let door = ChatDoor::new(hub.clone()).serve(acc);
    let addr = addr_of(&door);
    (door, addr)
}

pub fn ws_config() -> WsConfig {
    WsConfig::default().with_origin(OriginPolicy::any())
}

/// The chat door on loopback WebSocket (engine `E`), any path.
pub async fn chat_ws<E: Engine>(hub: &Hub) -> (DoorHandle, String) {
    let acc = WsAcceptor::<E>::bind("127.0.0.1:0".parse().unwrap(), ws_config())
        .await
        .unwrap();
    let url = format!("ws://{}/chat", acc.local_addr());
    (ChatDoor::new(hub.clone()).serve(acc), url)
}

/// What the server sent us, in order.
#[derive(Debug, Clone)]
pub struct Note {
    pub name: String,
    pub body: Value,
}

/// A chat-protocol client.
pub struct Client {
    pub peer: Peer,
    pub notes: mpsc::UnboundedReceiver<Note>,
}

/// The error text of a chat error result, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatErr {
    pub code: String,
    pub message: String,
}

fn note_handlers() -> (Arc<Handlers>, mpsc::UnboundedReceiver<Note>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut h = Handlers::new();
    for name in ["message", "room", "presence", "bye"] {
        let tx = tx.clone();
        h.handle_notification(name, move |_peer, payload| {
            let tx = tx.clone();
            async move {
                let body: Value = serde_json::from_slice(&payload).expect("notifications are JSON");
                let _ = tx.send(Note {
                    name: name.to_owned(),
                    body,
                });
            }
        });
    }
    (Arc::new(h), rx)
}

impl Client {
    /// Over TCP; with a token, signs in with `auth` first.
    pub async fn tcp(addr: SocketAddr, token: Option<&str>) -> Client {
        let t = tcp::connect(addr, &Default::default()).await.unwrap();
        Client::signed_in(t, token).await
    }

    /// Over TCP from the source address `ip` (127.0.0.x: a client address of its own); with a
    /// token, signs in with `auth` first.
    #[allow(dead_code)]
    pub async fn tcp_from(addr: SocketAddr, ip: &str, token: Option<&str>) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
        let t = sock.connect(addr).await.unwrap();
        let t = tcp::TcpTransport::from_stream(t, &Default::default()).unwrap();
        Client::signed_in(t, token).await
    }

    async fn signed_in<T: chinwag_transport::Transport>(t: T, token: Option<&str>) -> Client {
        let (h, notes) = note_handlers();
        let c = Client {
            peer: chinwag_rpc::connect(t, h, RpcConfig::client()),
            notes,
        };
        if let Some(token) = token {
            c.req("auth", json!({ "token": token }))
                .await
                .expect("auth");
        }
        c
    }

    /// Over WebSocket with engine `E` and `opts` (e.g. an `Authorization` header).
    pub async fn ws<E: Engine>(
        url: &str,
        opts: ConnectOptions,
    ) -> Result<Client, chinwag_transport::TransportError> {
        let t = chinwag_ws::connect_with::<E>(url, &ws_config(), &opts).await?;
        let (h, notes) = note_handlers();
        Ok(Client {
            peer: chinwag_rpc::connect(t, h, RpcConfig::client()),
            notes,
        })
    }

    /// Over WebSocket with the token in an `Authorization: Bearer` header.
    pub async fn ws_bearer<E: Engine>(url: &str, token: &str) -> Client {
        let opts =
            ConnectOptions::default().with_header("authorization", format!("Bearer {token}"));
        Client::ws::<E>(url, opts).await.expect("WebSocket connect")
    }

    /// A request; `Err` for a chat error result.
    pub async fn req(&self, op: &str, body: Value) -> Result<Value, ChatErr> {
        match tokio::time::timeout(DEADLINE, self.peer.request::<_, Value>(op, &body)).await {
            Err(_) => panic!("{op}: no answer within {DEADLINE:?}"),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(RpcError::Remote { message, .. })) => {
                let v: Value = serde_json::from_str(&message)
                    .unwrap_or_else(|_| panic!("{op}: error text is not JSON: {message}"));
                Err(ChatErr {
                    code: v["code"].as_str().unwrap().to_owned(),
                    message: v["message"].as_str().unwrap_or_default().to_owned(),
                })
            }
            Ok(Err(e)) => Err(ChatErr {
                code: "transport".into(),
                message: e.to_string(),
            }),
        }
    }

    /// The next notification (within the deadline).
    pub async fn note(&mut self) -> Note {
        tokio::time::timeout(DEADLINE, self.notes.recv())
            .await
            .expect("a notification within the deadline")
            .expect("the connection is open")
    }

    /// The next notification named `name`, skipping others.
    pub async fn note_named(&mut self, name: &str) -> Note {
        loop {
            let n = self.note().await;
            if n.name == name {
                return n;
            }
        }
    }

    /// Waits for the connection to end; the close code when there was one.
    pub async fn closed(&self) -> Option<u16> {
        let d = tokio::time::timeout(DEADLINE, self.peer.closed())
            .await
            .expect("closed within the deadline");
        close_code(&d)
    }
}

pub fn close_code(d: &Disconnect) -> Option<u16> {
    match d {
        Disconnect::Session(CloseCause::Peer(Some(r))) => Some(r.code.0),
        _ => None,
    }
}

/// Waits until `f(hub)` holds, woken by the hub's changes (sign-ons, sign-offs, closes, joins,
/// leaves: no polling), failing after the deadline.
pub async fn until(hub: &Hub, what: &str, f: impl Fn(&Hub) -> bool) {
    let mut changes = hub.changes();
    let r = tokio::time::timeout(DEADLINE, async {
        while !f(hub) {
            changes.changed().await.expect("the hub is alive");
        }
    })
    .await;
    assert!(r.is_ok(), "not within {DEADLINE:?}: {what}");
}

/// Waits until `user` has nothing queued: for the hub's own acks of what it wrote to clients
/// that cannot acknowledge (applied in its next batch of acks, which signals nothing), polled
/// every 5 ms within [`DEADLINE`].
pub async fn queue_empties(hub: &Hub, user: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let n = hub.queue().len(user).await.expect("queue len");
        if n == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{user} still has {n} queued after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The process-wide Prometheus recorder (installed once), for counting refusals.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("installing the metrics recorder")
    })
}

/// A counter's value in the Prometheus text (`name{labels}`), 0 when absent.
pub fn counter(series: &str) -> f64 {
    let text = metrics().render();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

// ---- added for the door, limit and lifecycle tests ------------------------------------------

impl Client {
    /// Over any connected transport (TLS, a socket bound to a chosen address, ...).
    pub fn over<T: chinwag_transport::Transport>(t: T) -> Client {
        let (h, notes) = note_handlers();
        Client {
            peer: chinwag_rpc::connect(t, h, RpcConfig::client()),
            notes,
        }
    }

    /// `whoami`'s answer (panics on an error).
    pub async fn whoami(&self) -> Value {
        self.req("whoami", json!({})).await.expect("whoami")
    }

    /// The next notification named `bye` (skipping others).
    pub async fn bye(&mut self) -> Value {
        self.note_named("bye").await.body
    }
}

/// A token for `user`/`device` that expired an hour ago (far past any leeway).
pub fn expired_token(user: &str, device: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    issuer().issue_claims(&json!({
        "sub": user,
        "device": device,
        "iat": now - 7200,
        "exp": now - 3600,
    }))
}

/// The HTTP answer to a hand-written upgrade request.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body (a refusal's reason); empty for a `101`.
    pub body: String,
    /// The socket, still open (after a `101`, the WebSocket connection).
    pub socket: tokio::net::TcpStream,
}

impl RawAnswer {
    /// A header's value (the first of that name, without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Options of [`raw_request`]: the source address to bind and the receive buffer.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawOpts {
    /// Bind the client socket to this address first (e.g. `127.0.0.2`).
    pub from: Option<std::net::IpAddr>,
    /// Set the socket's receive buffer (before connecting) to this many bytes.
    pub recv_buffer: Option<u32>,
}

/// Sends a WebSocket upgrade request for `url` by hand with `headers` and reads the answer's
/// head and (by its `Content-Length`) body.
pub async fn raw_request(url: &str, headers: &[(&str, String)], opts: RawOpts) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("ws://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let target: SocketAddr = host.parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(ip) = opts.from {
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    if let Some(n) = opts.recv_buffer {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let mut s = tokio::time::timeout(DEADLINE, sock.connect(target))
        .await
        .expect("connect within the deadline")
        .unwrap();
    let mut req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        (status, head, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, head, body) = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an HTTP answer within the deadline");
    RawAnswer {
        status,
        head,
        body,
        socket: s,
    }
}

/// `Authorization: Bearer <token>` as a header pair for [`raw_request`].
pub fn bearer_header(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// One server-to-client WebSocket frame read by hand: (opcode, payload). `None` at the end of
/// the stream.
pub async fn read_ws_frame(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; 2];
    if s.read_exact(&mut h).await.is_err() {
        return None;
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x0f, payload))
}

/// The next text or binary WebSocket message read by hand (pings skipped; `None` at a close
/// frame or the end of the stream), within the deadline.
pub async fn read_ws_message(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match read_ws_frame(s).await {
                Some((0x9 | 0xA, _)) => continue,
                Some((0x8, _)) | None => return None,
                Some(f) => return Some(f),
            }
        }
    })
    .await
    .expect("a WebSocket message within the deadline")
}

/// Writes one tok frame: a `u32` big-endian length, then the bytes.
pub async fn write_frame(s: &mut tokio::net::TcpStream, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut b = (body.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    s.write_all(&b).await.unwrap();
}

/// The next tok frame; `None` at the end of the stream (or a reset).
pub async fn read_frame(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(DEADLINE, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).await.ok()?;
        Some(b)
    })
    .await
    .expect("a frame or the end within the deadline")
}
