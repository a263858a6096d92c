//! The hub scenarios: load shaped like an IM server's, not like an echo.
//!
//! A run of a [`Mode`] other than [`Mode::Echo`] comes here from [`crate::load::run`]. Every
//! member or user is a connection of its own, signed in with an HS256 JWT minted here from the
//! spec's `secret` (`sub` = `u<index>`, device `bench`, `exp` a day ahead): in an
//! `Authorization: Bearer` header on WebSocket, with an `auth` request over TCP; on the chat
//! door each user is a `chinwag::client` client (`src/chat.rs`). Connections are
//! spread over `procs` worker processes and `source_ips` loopback source addresses as in echo
//! runs. Times that cross processes (a publish in one, its deliveries in others) are wall-clock
//! nanoseconds (`CLOCK_REALTIME`, the same clock for every process of the machine); the parent
//! hands every worker the same "go" instant, so all agree on the measured window.
//!
//! * [`Mode::Fanout`]: `conns` members connect to the raw room door (`ws://…/ws?room=R`, or
//!   any plumego-style room server: every message a member sends goes to every member, the
//!   sender included); member 0 publishes `size`-byte binary messages at `rate` per second,
//!   each starting with its send time and a sequence number. Every delivery is timed. Figures:
//!   deliveries received per second in the window, the publish-to-**last**-delivery latency of
//!   each publish (p50/p99 over publishes), every delivery's latency, the publishes that did
//!   not reach every member, and deliveries out of order or twice. On a **cluster** (`targets`)
//!   member `i` connects to node `i % nodes`; the nodes' CPU is summed and Redis counted as for
//!   sends (below).
//!   With `payload` chat a publish is a chat-like JSON text instead ([`crate::payload`]); with
//!   `deflate` the members (yawc clients) offer permessage-deflate with no context takeover
//!   either way; with `wire_bytes` the bytes the server's sockets sent in the window are
//!   counted ([`crate::wire`]) and reported ([`HubFigures::wire_bytes`]).
//! * [`Mode::Send`]: `conns` users on the chat door (`gotalk+ws://` or `gotalk+tcp://`); users
//!   take turns sending to a random other user, `rate` sends per second in all. Latency is
//!   from the `send` request to the recipient's `message` notification; recipients acknowledge
//!   each message (`ack`). Figures: sends answered per second, delivery latency, the sends of
//!   the window answered and delivered within a second after it, duplicates. On a **cluster**
//!   (`targets`: the other nodes' URLs) user `i` connects to node `i % nodes` and every send
//!   goes to a user on another node; the nodes' CPU is summed, and the Redis commands of the
//!   window are counted ([`crate::redis_monitor`]).
//! * [`Mode::Replay`]: `conns` senders, taking turns, queue `messages` messages (with
//!   `in_flight` sends in flight in all) for one user who is offline (the queue fill: how many
//!   sends to one recipient the hub stores per second); then that user connects and signs in, and the clock runs until
//!   all of them have arrived (acknowledged every 100 and at the end, as the protocol allows).
//! * [`Mode::IdleAuth`]: `conns` signed-in connections, each in one of `rooms` rooms (room
//!   door: `?room=R-k`; chat door: a `join`), idle but answering the server's pings and
//!   heartbeats; the server's RSS per connection.
//! * [`Mode::Guess`]: a legitimate user's right-password joins of a protected room, alone and
//!   while other connections guess its password as fast as the hub lets them
//!   ([`crate::guess`]).
//! * [`Mode::Recover`]: a member that missed `messages` publications of a room with history
//!   connects and joins with `since`; the time from its TCP connect to the last of them, and
//!   a plain join's for comparison ([`crate::recover`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use chinwag::client::{Client, Event, Events};
use chinwag_transport::Transport;
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::BoxError;
use crate::chat;
use crate::load::{
    Latency, LoadSpec, RunOptions, RunReport, ServerUsage, WorkerSpec, latency, split_shares,
};
use crate::payload::{self, Payload};
use crate::procfs::{self, ProcSample};
use crate::proto::{self, ClientEngine, Protocol, Reader, Target, Writer};
use crate::redis_monitor::{self, Info, Monitor, RedisFigures};
use crate::{wire, workers};

/// After the measured window, how long readers keep reading deliveries of publishes (and
/// sends) made inside it.
const LINGER: Duration = Duration::from_secs(1);
/// Open loop: lateness forgiven as timer slack (as in echo runs).
const TIMER_SLACK: Duration = Duration::from_millis(2);
/// Connection attempts answered with 503 (admission bound) are retried this many times.
const CONNECT_RETRIES: u32 = 20;
/// The replay recipient acknowledges every this many messages, and the last one.
const REPLAY_ACK_EVERY: u64 = 100;
/// Smallest fan-out payload: send time and sequence number.
pub const MIN_FANOUT_PAYLOAD: usize = 16;

/// What a run measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Echo (closed or open loop, idle, stalled): [`crate::load`].
    #[default]
    Echo,
    /// One member publishes to a room of `conns` members (raw room door).
    Fanout,
    /// `conns` users send to random users (chat door).
    Send,
    /// `messages` queued for an offline user, then replayed when it connects (chat door).
    Replay,
    /// `conns` idle signed-in connections, each in a room: server RSS per connection.
    IdleAuth,
    /// Right-password joins of a protected room, unloaded and under a guessing attack (chat
    /// door): [`crate::guess`].
    Guess,
    /// A member that missed `messages` publications of a room with history joins with
    /// `since` and gets them back (chat door): [`crate::recover`].
    Recover,
}

/// The hub figures of a run (in [`RunReport::hub`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HubFigures {
    /// Fan-out: publishes made in the measured window.
    pub publishes: u64,
    /// Fan-out: of those, publishes that did not reach every member by the end.
    pub incomplete: u64,
    /// Fan-out: deliveries per second asked for (publish rate × members).
    pub offered_per_sec: f64,
    /// Fan-out and send: the latency of every delivery (µs).
    pub delivery_latency_us: Latency,
    /// Send: sends that failed.
    pub send_errors: u64,
    /// Replay: milliseconds to queue the messages (the sends, answered).
    pub fill_ms: f64,
    /// Replay: milliseconds from the recipient's connect to its first message.
    pub first_ms: f64,
    /// Replay: milliseconds from the recipient's connect to its last message.
    pub replay_ms: f64,
    /// Replay: milliseconds from the recipient's connect to the answer to its last `ack`.
    pub acked_ms: f64,
    /// Replay: messages received (the distinct ones).
    pub replayed: u64,
    /// Send and fan-out: the nodes the users or members were spread over (1: one server).
    #[serde(default)]
    pub nodes: usize,
    /// Send: sends made in the window (send time in it).
    #[serde(default)]
    pub made: u64,
    /// Send: of those, sends answered without error by the end of the run.
    #[serde(default)]
    pub answered: u64,
    /// Send: distinct deliveries of sends made in the window, received until a second after
    /// it; fan-out: deliveries received in the window.
    #[serde(default)]
    pub delivered: u64,
    /// Send: deliveries of a message its recipient had already received; fan-out: deliveries
    /// of a publication not after the last one the member got (duplicate or out of order).
    #[serde(default)]
    pub duplicates: u64,
    /// Each node's CPU time in the window (ms), when the pids were given.
    #[serde(default)]
    pub node_cpu_ms: Vec<f64>,
    /// The Redis commands of the window, when a Redis was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisFigures>,
    /// Fan-out with `wire_bytes`: the bytes the server's TCP sockets sent in the measured
    /// window (every node's; [`crate::wire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_bytes: Option<u64>,
}

/// What one worker of a hub run sends back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubWorkerResult {
    /// Connections established.
    pub connected: usize,
    /// Deliveries (fan-out, send) or sends answered (send) received in the window.
    pub in_window: u64,
    /// Sends answered in the window (send).
    pub sends: u64,
    /// Sends made in the window (send).
    #[serde(default)]
    pub made: u64,
    /// Of those, sends answered without error (send).
    #[serde(default)]
    pub answered: u64,
    /// Deliveries of a message already received (send).
    #[serde(default)]
    pub duplicates: u64,
    /// Per-delivery latency histogram (ns) as `(value, count)`.
    pub histogram: Vec<(u64, u64)>,
    /// Fan-out: per publish sequence number (made in the window), the latest delivery (ns)
    /// and how many deliveries.
    pub per_publish: Vec<(u64, u64, u64)>,
    /// Fan-out: the sequence numbers published in the window (the publisher's worker).
    pub published: Vec<u64>,
    /// Replay figures (the worker that ran it).
    pub replay: Option<HubFigures>,
    /// Errors.
    pub errors: u64,
    /// Send errors.
    pub send_errors: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Wall-clock nanoseconds (the clock every process of the machine shares).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An HS256 JWT for `user` (device `bench`, valid for a day), signed with `secret`.
pub fn token(secret: &str, user: &str) -> Result<String, BoxError> {
    let exp = wall_ns() / 1_000_000_000 + 86_400;
    let claims = json!({ "sub": user, "device": "bench", "exp": exp });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The user id of connection `i`.
fn user(i: usize) -> String {
    format!("u{i}")
}

/// State shared by one worker's tasks.
struct Shared {
    /// Wall-clock ns of the start and the end of the measured window.
    start: u64,
    end: u64,
    hist: Mutex<Histogram<u64>>,
    in_window: AtomicU64,
    sends: AtomicU64,
    made: AtomicU64,
    answered: AtomicU64,
    duplicates: AtomicU64,
    /// Send: the messages received (send time, sender, sender's count), for duplicates.
    seen: Mutex<HashSet<(u64, u64, u64)>>,
    errors: AtomicU64,
    send_errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn new(go: u64, spec: &LoadSpec) -> Self {
        let start = go + (spec.warmup * 1e9) as u64;
        Shared {
            start,
            end: start + (spec.duration * 1e9) as u64,
            hist: Mutex::new(new_histogram()),
            in_window: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            made: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            seen: Mutex::new(HashSet::new()),
            errors: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < 5 {
            first.push(what.to_string());
        }
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.start && t < self.end
    }

    fn record(&self, samples: &mut Vec<u64>) {
        if samples.is_empty() {
            return;
        }
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        for &s in samples.iter() {
            h.saturating_record(s.max(1));
        }
        samples.clear();
    }

    /// A tokio instant for wall-clock `t` (ns).
    fn instant(&self, t: u64) -> tokio::time::Instant {
        let now = wall_ns();
        let now_i = tokio::time::Instant::now();
        if t >= now {
            now_i + Duration::from_nanos(t - now)
        } else {
            now_i
                .checked_sub(Duration::from_nanos(now - t))
                .unwrap_or(now_i)
        }
    }

    fn result(&self, connected: usize) -> HubWorkerResult {
        let hist = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        HubWorkerResult {
            connected,
            in_window: self.in_window.load(Ordering::Relaxed),
            sends: self.sends.load(Ordering::Relaxed),
            made: self.made.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            histogram: hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            errors: self.errors.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            first_errors: self
                .first_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..HubWorkerResult::default()
        }
    }
}

/// The room-door URL of connection `i`: the target's room (its `room=` parameter, else
/// `spec.room`), suffixed `-k` when the connections are spread over several rooms.
fn room_url(target: &Target, spec: &LoadSpec, i: usize) -> (String, String) {
    let url = target.ws_url();
    let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let mut room = spec.room.clone();
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.strip_prefix("room=") {
            Some(r) => room = r.to_owned(),
            None => rest.push(kv.to_owned()),
        }
    }
    if spec.rooms > 1 {
        room = format!("{room}-{}", i % spec.rooms);
    }
    rest.push(format!("room={room}"));
    (format!("{base}?{}", rest.join("&")), room)
}

/// One room-door member: a WebSocket connection with the token in `Authorization`.
pub(crate) async fn room_member(
    target: &Target,
    spec: &LoadSpec,
    i: usize,
    source: Option<IpAddr>,
) -> Result<(Reader, Writer), BoxError> {
    let (url, _) = room_url(target, spec, i);
    let mut headers = Vec::new();
    if let Some(secret) = &spec.secret {
        headers.push((
            "authorization",
            format!("Bearer {}", token(secret, &user(i))?),
        ));
    }
    let tcp = proto::tcp_connect(target, source).await?;
    let cfg = proto::client_ws_config_with(spec.deflate);
    Ok(match spec.client_engine {
        ClientEngine::Fastwebsockets => {
            let c = proto::ws_handshake_with::<FastWebSockets>(target, tcp, &url, &headers, &cfg)
                .await?;
            let (r, w) = c.split();
            (Reader::WsFast(r), Writer::WsFast(w))
        }
        ClientEngine::Tungstenite => {
            let c =
                proto::ws_handshake_with::<Tungstenite>(target, tcp, &url, &headers, &cfg).await?;
            let (r, w) = c.split();
            (Reader::WsTung(r), Writer::WsTung(w))
        }
        ClientEngine::Yawc => {
            let c = proto::ws_handshake_with::<chinwag_ws_yawc::Yawc>(
                target, tcp, &url, &headers, &cfg,
            )
            .await?;
            let (r, w) = c.split();
            (Reader::WsYawc(r), Writer::WsYawc(w))
        }
    })
}

/// Retries `f` after 503s (an admission bound), with a growing pause.
pub(crate) async fn with_retries<T, F, Fut>(mut f: F) -> Result<T, BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>>,
{
    let mut pause = Duration::from_millis(10);
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if attempt < CONNECT_RETRIES && e.to_string().contains("503") => {
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// A chat-door user of a send or idle run: its client and its global index. A send run's
/// events are read by a task of its own from the start (`events` is `None`).
struct ChatUser {
    index: usize,
    client: Client,
    events: Option<Events>,
}

/// A worker whose connections are open, waiting for "go".
pub struct HubPrepared {
    ws: WorkerSpec,
    members: Vec<(usize, Reader, Writer)>,
    users: Vec<ChatUser>,
    /// Send: latency samples and counters filled by the notification handlers.
    shared: Option<Arc<SharedCell>>,
    errors: Vec<String>,
}

impl std::fmt::Debug for HubPrepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubPrepared")
            .field("members", &self.members.len())
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl HubPrepared {
    /// Connections established.
    pub fn connected(&self) -> usize {
        self.members.len() + self.users.len()
    }
}

/// The [`Shared`] state of a send run, set at "go" (the handlers exist before it).
type SharedCell = std::sync::OnceLock<Arc<Shared>>;

/// The body of a send: `<send time ns>:<sender index>:<sender's count>:` padded with `x` to
/// `size` bytes (the three numbers make every message of a run distinct).
fn send_body(ts: u64, from: usize, k: usize, size: usize) -> String {
    let mut body = format!("{ts}:{from}:{k}:");
    let pad = size.saturating_sub(body.len());
    body.extend(std::iter::repeat_n('x', pad));
    body
}

/// The three numbers of a [`send_body`].
fn parse_send_body(body: &str) -> Option<(u64, u64, u64)> {
    let mut it = body.splitn(4, ':');
    let mut n = || it.next()?.parse::<u64>().ok();
    Some((n()?, n()?, n()?))
}

/// Reads a send-run user's events: each direct message is timed (its body starts with the
/// send time) and, by the client, acknowledged once read; a message received twice is counted
/// as a duplicate, not timed again.
fn read_sends(mut events: Events, cell: Arc<SharedCell>) {
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            let Event::Message(m) = ev else { continue };
            let now = wall_ns();
            let key = m.text().and_then(parse_send_body);
            if let (Some(shared), Some(key)) = (cell.get(), key)
                && shared.in_window(key.0)
            {
                let first = shared
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key);
                if first {
                    shared.in_window.fetch_add(1, Ordering::Relaxed);
                    shared
                        .hist
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .saturating_record(now.saturating_sub(key.0).max(1));
                } else {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

/// Connects this worker's share.
pub async fn prepare(ws: WorkerSpec) -> Result<HubPrepared, BoxError> {
    let target: Target = ws.spec.target.parse()?;
    let spec = Arc::new(ws.spec.clone());
    let mut errors = Vec::new();
    let mut members = Vec::new();
    let mut users = Vec::new();
    let mut shared = None;
    match spec.mode {
        Mode::Echo => return Err("echo runs are not hub runs".into()),
        // The replay connects at "go".
        Mode::Replay => {}
        Mode::Guess => return Err("guess runs are run by crate::guess, in one process".into()),
        Mode::Recover => {
            return Err("recover runs are run by crate::recover, in one process".into());
        }
        Mode::Fanout | Mode::IdleAuth | Mode::Send => {
            let chat = matches!(target.protocol, Protocol::RpcTcp | Protocol::RpcWs);
            if spec.mode == Mode::Fanout && target.protocol != Protocol::Ws {
                return Err("fan-out runs load a raw room door (ws://…/ws?room=R)".into());
            }
            if spec.mode == Mode::Send && !chat {
                return Err("send runs load the chat door (gotalk+ws:// or gotalk+tcp://)".into());
            }
            let mut nodes = vec![target.clone()];
            for t in &spec.targets {
                let t: Target = t.parse()?;
                if t.protocol != target.protocol {
                    return Err("every node of a cluster is loaded over one protocol".into());
                }
                nodes.push(t);
            }
            let cell: Arc<SharedCell> = Arc::default();
            if spec.mode == Mode::Send {
                shared = Some(cell.clone());
            }
            let gate = Arc::new(Semaphore::new(spec.connect_concurrency.max(1)));
            let mut set = JoinSet::new();
            for i in ws.first..ws.first + ws.conns {
                let target = nodes[i % nodes.len()].clone();
                let (spec, gate, cell) = (spec.clone(), gate.clone(), cell.clone());
                set.spawn(async move {
                    let _permit = gate.acquire_owned().await?;
                    let source = proto::source_addr(&target, i, spec.source_ips);
                    if !chat {
                        let (r, w) =
                            with_retries(|| room_member(&target, &spec, i, source)).await?;
                        return Ok::<_, BoxError>((i, Some((r, w)), None));
                    }
                    let name = user(i);
                    let (client, events) =
                        with_retries(|| chat::connect(&target, &spec, &name, source, true)).await?;
                    let events = if spec.mode == Mode::Send {
                        read_sends(events, cell);
                        None
                    } else {
                        let (_, room) = room_url(&target, &spec, i);
                        client
                            .join(&room)
                            .await
                            .map_err(|e| format!("join: {}", chat::error(&e)))?;
                        Some(events)
                    };
                    let user = ChatUser {
                        index: i,
                        client,
                        events,
                    };
                    Ok((i, None, Some(user)))
                });
            }
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(Ok((i, Some((r, w)), _))) => members.push((i, r, w)),
                    Ok(Ok((_, None, Some(user)))) => users.push(user),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => errors.push(format!("connect: {e}")),
                    Err(e) => errors.push(format!("connect task: {e}")),
                }
            }
            members.sort_by_key(|m| m.0);
        }
    }
    Ok(HubPrepared {
        ws,
        members,
        users,
        shared,
        errors,
    })
}

/// Runs a prepared worker from "go" (wall-clock ns) to the end of its work.
pub async fn run_prepared(p: HubPrepared, go: u64) -> HubWorkerResult {
    let spec = p.ws.spec.clone();
    let connected = p.connected();
    let shared = Arc::new(Shared::new(go, &spec));
    for e in &p.errors {
        shared.error(e);
    }
    match spec.mode {
        Mode::Fanout => fanout(p, shared, connected).await,
        Mode::Send => send(p, shared, connected).await,
        Mode::Replay => replay(&spec, shared).await,
        Mode::IdleAuth | Mode::Echo | Mode::Guess | Mode::Recover => {
            idle(p, shared, connected).await
        }
    }
}

async fn idle(p: HubPrepared, shared: Arc<Shared>, connected: usize) -> HubWorkerResult {
    let end = shared.instant(shared.end);
    let mut set = JoinSet::new();
    for (_, mut r, w) in p.members {
        let shared = shared.clone();
        set.spawn(async move {
            let _w = w;
            loop {
                match tokio::time::timeout_at(end, r.read()).await {
                    Err(_) => break,
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) => {
                        shared.error("server closed an idle connection");
                        break;
                    }
                    Ok(Err(e)) => {
                        shared.error(format!("idle read: {e}"));
                        break;
                    }
                }
            }
        });
    }
    for u in p.users {
        let shared = shared.clone();
        let Some(mut events) = u.events else { continue };
        set.spawn(async move {
            let _client = u.client;
            let closed = async {
                while let Some(ev) = events.next().await {
                    match ev {
                        Event::Disconnected(d) => return Some(d.close),
                        Event::Closed(c) => return Some(c),
                        _ => {}
                    }
                }
                None
            };
            if let Ok(close) = tokio::time::timeout_at(end, closed).await {
                let why = close.map_or(String::new(), |c| format!(" ({} {})", c.code, c.reason));
                shared.error(format!("server closed an idle chat connection{why}"));
            }
        });
    }
    while set.join_next().await.is_some() {}
    shared.result(connected)
}

async fn fanout(p: HubPrepared, shared: Arc<Shared>, connected: usize) -> HubWorkerResult {
    let spec = p.ws.spec.clone();
    let size = spec.size.max(MIN_FANOUT_PAYLOAD);
    let payload = spec.payload;
    let until = shared.instant(shared.end + LINGER.as_nanos() as u64);
    let per_publish: Arc<Mutex<HashMap<u64, (u64, u64)>>> = Arc::default();
    let mut set = JoinSet::new();
    let mut publisher = None;
    for (i, mut r, w) in p.members {
        // Every member's writer stays open until its reader is done.
        let w = if i == 0 {
            publisher = Some(w);
            None
        } else {
            Some(w)
        };
        let (shared, per_publish) = (shared.clone(), per_publish.clone());
        set.spawn(async move {
            let _w = w;
            let mut samples = Vec::with_capacity(256);
            let mut mine: Vec<(u64, u64)> = Vec::new();
            // Publications come in publish order: one not after the last is a duplicate or
            // out of order.
            let mut last_seq = 0;
            loop {
                let got = match tokio::time::timeout_at(until, r.read()).await {
                    Err(_) => break,
                    Ok(got) => got,
                };
                let now = wall_ns();
                let stamp = |b: &Bytes| match payload {
                    Payload::Chat => payload::parse_chat(b),
                    Payload::Bytes if b.len() >= MIN_FANOUT_PAYLOAD => Some((
                        u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
                        u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
                    )),
                    Payload::Bytes => None,
                };
                match got {
                    Ok(Some(b)) if stamp(&b).is_some() => {
                        let (ts, seq) = stamp(&b).expect("checked");
                        if seq <= last_seq {
                            shared.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        last_seq = last_seq.max(seq);
                        if shared.in_window(now) {
                            shared.in_window.fetch_add(1, Ordering::Relaxed);
                        }
                        if shared.in_window(ts) {
                            let lat = now.saturating_sub(ts);
                            samples.push(lat);
                            mine.push((seq, lat));
                            if samples.len() >= 256 {
                                shared.record(&mut samples);
                            }
                        }
                    }
                    Ok(Some(b)) => {
                        shared.error(format!("a delivery of {} bytes without a stamp", b.len()));
                    }
                    Ok(None) => {
                        if now < shared.end {
                            shared.error("server closed a member");
                        }
                        break;
                    }
                    Err(e) => {
                        if now < shared.end {
                            shared.error(format!("member read: {e}"));
                        }
                        break;
                    }
                }
            }
            shared.record(&mut samples);
            let mut map = per_publish.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, lat) in mine {
                let e = map.entry(seq).or_insert((0, 0));
                e.0 = e.0.max(lat);
                e.1 += 1;
            }
        });
    }
    let mut published = Vec::new();
    if let (Some(mut w), Some(rate)) = (publisher, spec.rate) {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3)).as_nanos() as u64;
        let go = shared.start - (spec.warmup * 1e9) as u64;
        let end = shared.instant(shared.end);
        let mut template = BytesMut::from(&vec![0x5a; size][..]);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(wall_ns());
        let mut next = go;
        let mut seq = 0u64;
        let res = tokio::time::timeout_at(end, async {
            loop {
                tokio::time::sleep_until(shared.instant(next)).await;
                let now = wall_ns();
                while next <= now {
                    seq += 1;
                    let ts = if now - next > TIMER_SLACK.as_nanos() as u64 {
                        next
                    } else {
                        now
                    };
                    if shared.in_window(ts) {
                        published.push(seq);
                    }
                    match payload {
                        Payload::Chat => {
                            let text = payload::chat_text(ts, seq, spec.size, &mut rng)?;
                            w.feed_text(Bytes::from(text)).await?;
                        }
                        Payload::Bytes => {
                            template[..8].copy_from_slice(&ts.to_le_bytes());
                            template[8..16].copy_from_slice(&seq.to_le_bytes());
                            w.feed(Bytes::copy_from_slice(&template)).await?;
                        }
                    }
                    next += interval;
                }
                w.flush().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .await;
        if let Ok(Err(e)) = res {
            shared.error(format!("publish: {e}"));
        }
        // Keep the publisher open while the deliveries drain.
        tokio::time::sleep_until(until).await;
        drop(w);
    }
    while set.join_next().await.is_some() {}
    let mut out = shared.result(connected);
    out.published = published;
    let map = per_publish.lock().unwrap_or_else(|p| p.into_inner());
    out.per_publish = map.iter().map(|(s, (l, c))| (*s, *l, *c)).collect();
    out
}

async fn send(p: HubPrepared, shared: Arc<Shared>, connected: usize) -> HubWorkerResult {
    let spec = p.ws.spec.clone();
    if let Some(cell) = &p.shared {
        let _ = cell.set(shared.clone());
    }
    let users = p.users;
    let total_users = spec.conns.max(2);
    let until = shared.instant(shared.end + LINGER.as_nanos() as u64);
    let end = shared.instant(shared.end);
    // This worker's share of the rate.
    let rate = spec.rate.unwrap_or(1000.0) * users.len() as f64 / total_users as f64;
    if !users.is_empty() && rate > 0.0 {
        let interval = (1e9 / rate) as u64;
        let go = shared.start - (spec.warmup * 1e9) as u64;
        let mut next = go;
        let mut k = 0usize;
        let nodes = 1 + spec.targets.len();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(wall_ns() ^ p.ws.first as u64);
        let inflight = Arc::new(Semaphore::new(20_000));
        let _ = tokio::time::timeout_at(end, async {
            loop {
                tokio::time::sleep_until(shared.instant(next)).await;
                let now = wall_ns();
                while next <= now {
                    let from = &users[k % users.len()];
                    k += 1;
                    let to = recipient(&mut rng, from.index, total_users, nodes);
                    let ts = if now - next > TIMER_SLACK.as_nanos() as u64 {
                        next
                    } else {
                        now
                    };
                    next += interval;
                    let Ok(permit) = inflight.clone().try_acquire_owned() else {
                        shared.send_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if shared.in_window(ts) {
                        shared.made.fetch_add(1, Ordering::Relaxed);
                    }
                    let (client, shared) = (from.client.clone(), shared.clone());
                    let body = send_body(ts, from.index, k, spec.size);
                    tokio::spawn(async move {
                        let r = client.send(&user(to), body).await;
                        let done = wall_ns();
                        if r.is_ok() && shared.in_window(ts) {
                            shared.answered.fetch_add(1, Ordering::Relaxed);
                        }
                        match r {
                            Ok(_) if shared.in_window(done) => {
                                shared.sends.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                shared.send_errors.fetch_add(1, Ordering::Relaxed);
                                shared.error(format!("send: {}", chat::error(&e)));
                            }
                        }
                        drop(permit);
                    });
                }
            }
        })
        .await;
    }
    tokio::time::sleep_until(until).await;
    let out = shared.result(connected);
    drop(users);
    out
}

/// A random recipient for user `from` among `total` users: any other user on one server; on
/// a cluster of `nodes` (user `i` on node `i % nodes`), a user on another node.
fn recipient(rng: &mut impl Rng, from: usize, total: usize, nodes: usize) -> usize {
    if nodes <= 1 || total <= nodes {
        let mut to = rng.random_range(0..total - 1);
        if to >= from {
            to += 1;
        }
        return to;
    }
    loop {
        let to = rng.random_range(0..total);
        if to % nodes != from % nodes {
            return to;
        }
    }
}

async fn replay(spec: &LoadSpec, shared: Arc<Shared>) -> HubWorkerResult {
    let mut out = HubWorkerResult::default();
    match replay_inner(spec, &shared).await {
        Ok(fig) => {
            out = shared.result(1);
            out.replay = Some(fig);
        }
        Err(e) => {
            shared.error(format!("replay: {e}"));
            out.errors = shared.errors.load(Ordering::Relaxed);
            out.first_errors = shared
                .first_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
        }
    }
    out
}

async fn replay_inner(spec: &LoadSpec, shared: &Arc<Shared>) -> Result<HubFigures, BoxError> {
    let target: Target = spec.target.parse()?;
    let n = spec.messages.max(1) as u64;
    let recipient = format!("replay-{}", wall_ns());
    // `conns` senders (users of their own), taking turns; `in_flight` sends in flight in all.
    let mut senders = Vec::new();
    for i in 0..spec.conns.max(1) {
        let source = proto::source_addr(&target, i, spec.source_ips);
        let user = format!("replay-sender-{i}");
        let (sender, sender_events) = chat::connect(&target, spec, &user, source, true).await?;
        chat::drain(sender_events);
        senders.push(sender);
    }
    let started = std::time::Instant::now();
    let gate = Arc::new(Semaphore::new(spec.in_flight.max(1)));
    let mut set = JoinSet::new();
    for k in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let sender = &senders[usize::try_from(k).unwrap_or(0) % senders.len()];
        let (client, to) = (sender.clone(), recipient.clone());
        let body = format!("{k}:{}", "x".repeat(spec.size.saturating_sub(8)));
        set.spawn(async move {
            let r = client.send(&to, body).await;
            drop(permit);
            r.map(|report| report.queued)
        });
    }
    let mut queued = 0u64;
    while let Some(r) = set.join_next().await {
        match r? {
            Ok(true) => queued += 1,
            Ok(false) => shared.error("a send to the offline user was not queued"),
            Err(e) => shared.error(format!("send: {}", chat::error(&e))),
        }
    }
    let fill_ms = started.elapsed().as_secs_f64() * 1e3;

    // The recipient connects: count the distinct messages, ack every REPLAY_ACK_EVERY and the
    // last (the client drops a message it already handed out, by id).
    #[derive(Default)]
    struct Progress {
        seen: u64,
        first: Option<std::time::Instant>,
        last: Option<std::time::Instant>,
        acked: Option<std::time::Instant>,
    }
    let mut p = Progress::default();
    let connect = std::time::Instant::now();
    let source = proto::source_addr(&target, 1, spec.source_ips);
    let (client, mut events) = chat::connect(&target, spec, &recipient, source, false).await?;
    let replayed = async {
        while let Some(ev) = events.next().await {
            let m = match ev {
                Event::Message(m) => m,
                Event::Disconnected(d) => return Err(format!("disconnected: {}", d.close.reason)),
                _ => continue,
            };
            p.seen += 1;
            let now = std::time::Instant::now();
            p.first.get_or_insert(now);
            if p.seen == queued {
                p.last = Some(now);
                client
                    .ack(m.id)
                    .await
                    .map_err(|e| format!("ack: {}", chat::error(&e)))?;
                p.acked = Some(std::time::Instant::now());
                return Ok(());
            }
            if p.seen.is_multiple_of(REPLAY_ACK_EVERY) {
                let client = client.clone();
                tokio::spawn(async move { client.ack(m.id).await });
            }
        }
        Err("the client closed".to_owned())
    };
    match tokio::time::timeout(Duration::from_secs(300), replayed).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => shared.error(format!("replay: {e} after {} of {queued}", p.seen)),
        Err(_) => shared.error(format!(
            "replay: {} of {queued} messages within 300 s",
            p.seen
        )),
    }
    let ms = |t: Option<std::time::Instant>| {
        t.map_or(f64::NAN, |t| t.duration_since(connect).as_secs_f64() * 1e3)
    };
    let fig = HubFigures {
        fill_ms,
        first_ms: ms(p.first),
        replay_ms: ms(p.last),
        acked_ms: ms(p.acked),
        replayed: p.seen,
        ..HubFigures::default()
    };
    client.close().await;
    for sender in senders {
        sender.close().await;
    }
    Ok(fig)
}

/// The `chinwag-load worker` side for hub modes: connect, print `ready N`, wait for
/// `go <wall ns>`, run, print the [`HubWorkerResult`] as one JSON line.
pub async fn worker_main(ws: WorkerSpec) -> Result<(), BoxError> {
    let prepared = prepare(ws).await?;
    let line = workers::ready_then_go(prepared.connected()).await?;
    let go = line
        .strip_prefix("go ")
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| format!("expected `go <ns>`, got {line:?}"))?;
    workers::print_result(&run_prepared(prepared, go).await)
}

/// Runs a hub-mode `spec` and reports.
pub async fn run(spec: &LoadSpec, opts: &RunOptions) -> Result<RunReport, BoxError> {
    let target: Target = spec.target.parse()?;
    check(spec, &target)?;
    if spec.mode == Mode::Guess {
        return crate::guess::run(spec, opts).await;
    }
    if spec.mode == Mode::Recover {
        return crate::recover::run(spec, opts).await;
    }
    // The servers' ports, for the bytes their sockets send (checked before connecting).
    let mut ports = vec![target.addr.port()];
    for t in &spec.targets {
        ports.push(t.parse::<Target>()?.addr.port());
    }
    let wire_sample = || -> Result<Option<wire::WireSample>, BoxError> {
        Ok(if spec.wire_bytes {
            Some(wire::sample(&ports)?)
        } else {
            None
        })
    };
    wire_sample()?;
    // Every node's pid (one server: one), sampled together.
    let pids: Vec<u32> = opts
        .server_pid
        .into_iter()
        .chain(opts.other_server_pids.iter().copied())
        .collect();
    let sample = || -> Option<Vec<ProcSample>> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| procfs::sample(p)).collect()
    };
    let redis_cpu = || opts.redis_pid.and_then(procfs::sample);
    let before = sample();
    // The servers' thread count while everyone connects and runs (a sign-on storm is when a
    // server that reads its queue on a blocking pool would grow threads).
    let threads = ThreadPeak::start(pids.clone());
    let mut shares = split_shares(spec);
    if spec.mode == Mode::Replay {
        shares.truncate(1);
    }
    let workers = workers::start(shares, opts, prepare, HubPrepared::connected).await?;
    let (connected, mut children) = (workers.connected, workers.children);
    let redis_addr = match &opts.redis {
        Some(url) if spec.mode != Mode::Replay => Some(redis_monitor::parse_url(url)?),
        _ => None,
    };
    let monitor = match redis_addr {
        Some(addr) if opts.redis_monitor => Some(Monitor::start(addr).await?),
        _ => None,
    };
    let info = || async move {
        match redis_addr {
            Some(addr) => Some(Info::read(addr).await),
            None => None,
        }
    };
    // Everyone starts at the same wall-clock instant, a little ahead.
    let go = wall_ns() + 20_000_000;
    let go_at = tokio::time::Instant::now() + Duration::from_millis(20);
    let local = workers.local.map(|p| tokio::spawn(run_prepared(p, go)));
    children.go(&format!("go {go}"))?;
    // The Redis commands stamped in the measured window (read until a little after it).
    let window_start = go + (spec.warmup * 1e9) as u64;
    let window_end = window_start + (spec.duration * 1e9) as u64;
    let monitor = monitor.map(|m| {
        let stop = go_at
            + Duration::from_secs_f64(spec.warmup + spec.duration)
            + Duration::from_millis(500);
        tokio::spawn(m.count(window_start, window_end, stop))
    });
    let (at_start, at_end, redis_at, info_at, wire_at) = if spec.mode == Mode::Replay {
        (sample(), None, None, None, None)
    } else {
        tokio::time::sleep_until(go_at + Duration::from_secs_f64(spec.warmup)).await;
        let (a, ra) = (sample(), redis_cpu());
        let wa = wire_sample()?;
        let ia = info().await.transpose()?;
        tokio::time::sleep_until(go_at + Duration::from_secs_f64(spec.warmup + spec.duration))
            .await;
        let (b, rb) = (sample(), redis_cpu());
        let wb = wire_sample()?;
        let ib = info().await.transpose()?;
        (a, b, ra.zip(rb), ia.zip(ib), wa.zip(wb))
    };
    let mut results = Vec::new();
    if let Some(h) = local {
        results.push(h.await?);
    }
    results.extend(children.results::<HubWorkerResult>()?);
    let at_end = at_end.or_else(sample);
    let monitored = match monitor {
        Some(h) => Some(h.await??),
        None => None,
    };
    let redis = info_at.map(|(a, b)| RedisFigures {
        cpu_ms: redis_at.map(|(a, b)| b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1000.0),
        monitored,
        ..a.until(&b)
    });
    let samples = Samples {
        before,
        at_start,
        at_end,
        wire_bytes: wire_at.map(|(a, b)| wire::sent_between(&a, &b)),
        threads_peak: threads.stop(),
    };
    Ok(merge(spec, opts, connected, results, samples, redis))
}

/// Refuses options that do not fit the run, with a clear error (instead of a run that
/// measures something else): deflate needs the yawc client and a room door; chat payloads and
/// wire bytes are for fan-out runs, chat payloads at least [`payload::MIN_CHAT_PAYLOAD`] bytes.
fn check(spec: &LoadSpec, target: &Target) -> Result<(), BoxError> {
    let room_door = target.protocol == Protocol::Ws;
    if spec.deflate {
        if spec.client_engine != ClientEngine::Yawc {
            return Err(
                "--deflate needs --client-engine yawc (the generator's only client that \
                        implements permessage-deflate)"
                    .into(),
            );
        }
        if !matches!(spec.mode, Mode::Fanout | Mode::IdleAuth) || !room_door {
            return Err(
                "--deflate is for room-door runs (--mode fanout or idle-auth on ws://…)".into(),
            );
        }
    }
    if spec.payload == Payload::Chat {
        if spec.mode != Mode::Fanout {
            return Err("--payload chat is for fan-out runs".into());
        }
        if spec.size < payload::MIN_CHAT_PAYLOAD {
            return Err(format!(
                "--payload chat needs --size {} or more (got {})",
                payload::MIN_CHAT_PAYLOAD,
                spec.size
            )
            .into());
        }
    }
    if spec.wire_bytes && spec.mode != Mode::Fanout {
        return Err("--wire-bytes is for fan-out runs".into());
    }
    Ok(())
}

/// The nodes' samples (one per pid, all or none) before the run and at the window's bounds.
struct Samples {
    before: Option<Vec<ProcSample>>,
    at_start: Option<Vec<ProcSample>>,
    at_end: Option<Vec<ProcSample>>,
    /// The bytes the servers' sockets sent in the window, when counted.
    wire_bytes: Option<u64>,
    /// The most threads the servers had at once (summed over nodes), when sampled.
    threads_peak: Option<u64>,
}

/// Samples the servers' thread count every 50 ms until stopped, keeping the highest sum.
struct ThreadPeak {
    peak: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ThreadPeak {
    fn start(pids: Vec<u32>) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let task = (!pids.is_empty()).then(|| {
            let peak = peak.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    let n: Option<u64> = pids
                        .iter()
                        .map(|&p| procfs::sample(p).map(|s| s.threads))
                        .sum();
                    if let Some(n) = n {
                        peak.fetch_max(n, Ordering::Relaxed);
                    }
                }
            })
        });
        ThreadPeak { peak, task }
    }

    /// Stops sampling; the peak, or `None` when nothing was sampled.
    fn stop(self) -> Option<u64> {
        let task = self.task?;
        task.abort();
        Some(self.peak.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }
}

/// The sum of the nodes' samples.
fn summed(v: &[ProcSample]) -> ProcSample {
    ProcSample {
        cpu_us: v.iter().map(|s| s.cpu_us).sum(),
        rss_kib: v.iter().map(|s| s.rss_kib).sum(),
        threads: v.iter().map(|s| s.threads).sum(),
    }
}

fn merge(
    spec: &LoadSpec,
    opts: &RunOptions,
    connected: usize,
    results: Vec<HubWorkerResult>,
    samples: Samples,
    redis: Option<RedisFigures>,
) -> RunReport {
    let mut deliveries = new_histogram();
    let mut per_publish: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut published = Vec::new();
    let (mut in_window, mut sends, mut errors, mut send_errors) = (0, 0, 0, 0);
    let (mut made, mut answered, mut duplicates) = (0, 0, 0);
    let mut first_errors = Vec::new();
    let mut replay = None;
    for r in results {
        for (v, c) in r.histogram {
            let _ = deliveries.record_n(v.max(1), c);
        }
        for (seq, lat, count) in r.per_publish {
            let e = per_publish.entry(seq).or_insert((0, 0));
            e.0 = e.0.max(lat);
            e.1 += count;
        }
        published.extend(r.published);
        in_window += r.in_window;
        sends += r.sends;
        made += r.made;
        answered += r.answered;
        duplicates += r.duplicates;
        errors += r.errors;
        send_errors += r.send_errors;
        for e in r.first_errors {
            if first_errors.len() < 5 {
                first_errors.push(e);
            }
        }
        if r.replay.is_some() {
            replay = r.replay;
        }
    }
    let secs = spec.duration.max(1e-9);
    let mut hub = replay.unwrap_or_default();
    hub.send_errors = send_errors;
    hub.delivery_latency_us = latency(&deliveries);
    let (messages, latency_us) = match spec.mode {
        Mode::Fanout => {
            let mut last = new_histogram();
            let mut incomplete = 0;
            for seq in &published {
                match per_publish.get(seq) {
                    Some((lat, count)) => {
                        if (*count as usize) < connected {
                            incomplete += 1;
                        }
                        last.saturating_record((*lat).max(1));
                    }
                    None => incomplete += 1,
                }
            }
            hub.publishes = published.len() as u64;
            hub.incomplete = incomplete;
            hub.nodes = 1 + spec.targets.len();
            hub.delivered = in_window;
            hub.duplicates = duplicates;
            hub.offered_per_sec = spec.rate.unwrap_or(0.0) * connected as f64;
            (in_window, latency(&last))
        }
        Mode::Send => {
            hub.nodes = 1 + spec.targets.len();
            hub.made = made;
            hub.answered = answered;
            hub.delivered = in_window;
            hub.duplicates = duplicates;
            (sends, hub.delivery_latency_us)
        }
        Mode::Replay => (hub.replayed, Latency::default()),
        _ => (0, Latency::default()),
    };
    let msgs_per_sec = match spec.mode {
        Mode::Replay if hub.replay_ms > 0.0 => hub.replayed as f64 / (hub.replay_ms / 1e3),
        Mode::Replay | Mode::IdleAuth | Mode::Echo | Mode::Guess | Mode::Recover => 0.0,
        _ => messages as f64 / secs,
    };
    hub.redis = redis;
    hub.wire_bytes = samples.wire_bytes;
    let server = match (
        opts.server_pid,
        samples.before,
        samples.at_start,
        samples.at_end,
    ) {
        (Some(pid), Some(before), Some(a), Some(b)) => {
            hub.node_cpu_ms = a
                .iter()
                .zip(&b)
                .map(|(a, b)| b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1000.0)
                .collect();
            let (before, a, b) = (summed(&before), summed(&a), summed(&b));
            let cpu_us = b.cpu_us.saturating_sub(a.cpu_us) as f64;
            let conns = connected.max(1) as f64;
            let idle = spec.mode == Mode::IdleAuth;
            Some(ServerUsage {
                pid,
                cpu_ms: cpu_us / 1000.0,
                cpu_us_per_msg: (messages > 0).then(|| cpu_us / messages as f64),
                rss_before_kib: before.rss_kib,
                rss_end_kib: b.rss_kib,
                rss_per_conn_kib: idle.then(|| (b.rss_kib as f64 - before.rss_kib as f64) / conns),
                cpu_us_per_conn_sec: idle.then(|| cpu_us / (conns * secs)),
                threads_peak: samples.threads_peak,
            })
        }
        _ => None,
    };
    RunReport {
        meta: opts.meta.clone(),
        spec: spec.clone(),
        connected,
        msgs_per_sec,
        messages,
        latency_us,
        errors,
        first_errors,
        server,
        hub: Some(hub),
        guess: None,
        recover: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_urls() {
        let t: Target = "ws://127.0.0.1:1/ws?room=lobby&x=1".parse().unwrap();
        let spec = LoadSpec::default();
        assert_eq!(
            room_url(&t, &spec, 3),
            (
                "ws://127.0.0.1:1/ws?x=1&room=lobby".to_owned(),
                "lobby".to_owned()
            )
        );
        let t: Target = "ws://127.0.0.1:1/ws".parse().unwrap();
        let spec = LoadSpec {
            rooms: 10,
            ..LoadSpec::default()
        };
        assert_eq!(room_url(&t, &spec, 13).1, "bench-3");
    }

    #[test]
    fn send_bodies_are_padded_and_parse_back() {
        let b = send_body(1_700_000_000_123, 42, 7, 100);
        assert_eq!(b.len(), 100);
        assert!(b.starts_with("1700000000123:42:7:xx"));
        assert_eq!(parse_send_body(&b), Some((1_700_000_000_123, 42, 7)));
        // Longer than asked when the numbers need it, never cut.
        assert_eq!(parse_send_body(&send_body(1, 2, 3, 0)), Some((1, 2, 3)));
        assert_eq!(parse_send_body("12:x"), None);
    }

    #[test]
    fn recipients_are_other_users_on_other_nodes() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..2000 {
            let from = rng.random_range(0..300);
            let to = recipient(&mut rng, from, 300, 1);
            assert!(to < 300 && to != from);
            for nodes in [2, 3] {
                let to = recipient(&mut rng, from, 300, nodes);
                assert!(to < 300);
                assert_ne!(
                    to % nodes,
                    from % nodes,
                    "user {from} sent to {to} on its node"
                );
            }
        }
    }

    #[test]
    fn tokens_are_hs256_jwts() {
        let t = token("s3cret", "u7").unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "sub"]);
        let d = jsonwebtoken::decode::<serde_json::Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &v,
        )
        .unwrap();
        assert_eq!(d.claims["sub"], "u7");
    }
}
