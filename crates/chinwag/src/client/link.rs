//! The client's connections: opening and signing in, the notification handlers, automatic
//! acknowledgements, and the task that reconnects by the close-code table and rejoins rooms.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::error::ChatError;
use super::types::{
    Bye, CloseInfo, Disconnected, Event, Gap, JoinResult, Me, Presence, Reconnected, WireMessage,
    WireRoom,
};
use super::{Options, Target, TokenRequest, TokenSource};
use crate::rpc::{Disconnect, Handlers, Peer, RpcConfig};
use crate::session::CloseCause;
use crate::transport::{CloseCode, Reconnect};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A room the client is in: its password (for rejoins) and its position, the epoch and seq of
/// the last publish emitted.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomEntry {
    pub(crate) password: Option<String>,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

/// What the notification handlers share with the client (no connection in it: no cycle).
pub(crate) struct Core {
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) rooms: Mutex<BTreeMap<String, RoomEntry>>,
    pub(crate) last_message_id: AtomicU64,
    pub(crate) auto_ack: bool,
    /// The highest direct-message id [`Events::next`](super::Events::next) handed out.
    pub(crate) handed: AtomicU64,
    /// The acknowledgements of the newest connection: a message is acknowledged on the
    /// connection that is current when it is handed out (a replay sent it there too).
    pub(crate) acks: Mutex<Option<Arc<ConnAcks>>>,
}

impl Core {
    /// Hands `ev` to the application; waits while the event buffer is full (backpressure: the
    /// connection stops reading). Fails only when the [`Events`](super::Events) are dropped.
    pub(crate) async fn emit(&self, ev: Event) {
        let _ = self.events.send(ev).await;
    }

    async fn on_message(&self, payload: &[u8], acks: &Arc<ConnAcks>) {
        let Ok(m) = serde_json::from_slice::<WireMessage>(payload) else {
            tracing::warn!("chat client: a malformed message notification; ignored");
            return;
        };
        let Ok(m) = m.into_message() else {
            tracing::warn!("chat client: a message notification with a bad body; ignored");
            return;
        };
        let last = self.last_message_id.fetch_max(m.id, Ordering::AcqRel);
        if m.id <= last {
            // Seen already (a replay after a reconnect): dropped, and acknowledged again on
            // this connection so the server forgets it — but no further than what the
            // application was handed (the first copy may still wait in the event buffer).
            if self.auto_ack {
                let handed = self.handed.load(Ordering::Acquire);
                if handed > 0 {
                    acks.want_again(m.id.min(handed));
                }
            }
            return;
        }
        self.emit(Event::Message(m)).await;
    }

    async fn on_room(&self, payload: &[u8]) {
        let Some(m) = serde_json::from_slice::<WireRoom>(payload)
            .ok()
            .and_then(|m| m.into_room().ok())
        else {
            tracing::warn!("chat client: a malformed room notification; ignored");
            return;
        };
        let mut gap = None;
        {
            let mut rooms = lock(&self.rooms);
            if let Some(pos) = rooms.get_mut(&m.room) {
                if pos.epoch == m.epoch && m.seq <= pos.seq {
                    return; // at or below the position: emitted already
                }
                if pos.epoch == m.epoch && m.seq > pos.seq + 1 {
                    gap = Some(Gap {
                        room: m.room.clone(),
                        since: (pos.epoch, pos.seq),
                        now: (m.epoch, m.seq - 1),
                        reason: "missed".into(),
                    });
                }
                pos.epoch = m.epoch;
                pos.seq = m.seq;
            }
        }
        if let Some(g) = gap {
            self.emit(Event::Gap(g)).await;
        }
        self.emit(Event::Room(m)).await;
    }

    /// Moves a room's position to a join result's, unless it is ahead already. Not after a
    /// recovery: the recovered publishes (written before the result, but handed out by the
    /// notification task, maybe after it) move it themselves.
    pub(crate) fn position_at_least(&self, room: &str, r: &JoinResult) {
        move_at_least(&mut lock(&self.rooms), room, r);
    }
}

fn move_at_least(rooms: &mut BTreeMap<String, RoomEntry>, room: &str, r: &JoinResult) {
    if r.recovered == Some(true) {
        return;
    }
    if let Some(pos) = rooms.get_mut(room)
        && (pos.epoch != r.epoch || pos.seq < r.seq)
    {
        pos.epoch = r.epoch;
        pos.seq = r.seq;
    }
}

/// Automatic acknowledgements of one connection: cumulative and coalesced, one `ack` in
/// flight at a time, for the highest id wanted.
pub(crate) struct ConnAcks {
    /// Taken away when the connection ends (the peer's handlers hold these acks: without
    /// that, the two would keep each other alive).
    peer: Mutex<Option<Peer>>,
    state: Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    wanted: u64,
    sent: u64,
    /// Send `wanted` once more even if it was sent.
    again: bool,
    running: bool,
}

impl Core {
    /// The application took message `id` from the events: acknowledge it (automatic acks).
    pub(crate) fn handed_out(&self, id: u64) {
        if !self.auto_ack {
            return;
        }
        self.handed.fetch_max(id, Ordering::AcqRel);
        let acks = lock(&self.acks).clone();
        if let Some(acks) = acks {
            acks.want(id);
        }
    }
}

impl ConnAcks {
    pub(crate) fn want(self: &Arc<Self>, id: u64) {
        {
            let mut st = lock(&self.state);
            if id <= st.wanted {
                return;
            }
            st.wanted = id;
            if st.running {
                return;
            }
            st.running = true;
        }
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
    }

    /// As [`want`](Self::want), and sent again if it was sent already: an ack that reached
    /// the server before the replay had sent the message there again removed nothing.
    pub(crate) fn want_again(self: &Arc<Self>, id: u64) {
        {
            let mut st = lock(&self.state);
            st.wanted = st.wanted.max(id);
            st.again = true;
            if st.running {
                return;
            }
            st.running = true;
        }
        let me = self.clone();
        tokio::spawn(async move { me.run().await });
    }

    fn detach(&self) {
        lock(&self.peer).take();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let Some(peer) = lock(&self.peer).clone() else {
                lock(&self.state).running = false;
                return;
            };
            let id = {
                let mut st = lock(&self.state);
                if st.sent >= st.wanted && !st.again {
                    st.running = false;
                    return;
                }
                st.again = false;
                st.wanted
            };
            let r = peer.request::<_, Value>("ack", &json!({ "id": id })).await;
            if let Err(e) = &r {
                // The messages stay queued; they come again after a reconnect (and are then
                // dropped as duplicates and acknowledged).
                tracing::debug!(error = %e, id, "chat client: ack failed");
                if e.is_closed() {
                    lock(&self.state).running = false;
                    return;
                }
            }
            let mut st = lock(&self.state);
            st.sent = st.sent.max(id);
        }
    }
}

/// One signed-in connection.
pub(crate) struct Conn {
    pub(crate) peer: Peer,
    pub(crate) me: Me,
    acks: Arc<ConnAcks>,
    bye: Arc<Mutex<Option<Bye>>>,
    up_since: Instant,
    /// The token's `exp` (UNIX seconds), when it is a JWT that has one.
    expires: Option<u64>,
}

/// Where the client is.
#[derive(Clone)]
pub(crate) enum Link {
    /// Not signed in: calls wait.
    Connecting,
    /// Signed in: calls go out on it.
    Up(Arc<Conn>),
    /// Closed for good.
    Closed(CloseInfo),
}

pub(crate) struct Shared {
    pub(crate) core: Arc<Core>,
    pub(crate) opts: Options,
    pub(crate) target: Target,
    pub(crate) token: TokenSource,
    pub(crate) link: watch::Sender<Link>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) stop: watch::Sender<bool>,
}

fn handlers(core: &Arc<Core>, acks: &Arc<ConnAcks>, bye: &Arc<Mutex<Option<Bye>>>) -> Handlers {
    let mut h = Handlers::new();
    let (c, a) = (core.clone(), acks.clone());
    h.handle_notification("message", move |_p, payload: Bytes| {
        let (c, a) = (c.clone(), a.clone());
        async move { c.on_message(&payload, &a).await }
    });
    let c = core.clone();
    h.handle_notification("room", move |_p, payload: Bytes| {
        let c = c.clone();
        async move { c.on_room(&payload).await }
    });
    let c = core.clone();
    h.handle_notification("presence", move |_p, payload: Bytes| {
        let c = c.clone();
        async move {
            match serde_json::from_slice::<Presence>(&payload) {
                Ok(p) => c.emit(Event::Presence(p)).await,
                Err(_) => tracing::warn!("chat client: a malformed presence notification"),
            }
        }
    });
    let (c, b) = (core.clone(), bye.clone());
    h.handle_notification("bye", move |_p, payload: Bytes| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            if let Ok(bye) = serde_json::from_slice::<Bye>(&payload) {
                // Recorded before it is emitted: the reconnect decision must not wait for the
                // application to read.
                *lock(&b) = Some(bye.clone());
                c.emit(Event::Bye(bye)).await;
            }
        }
    });
    h
}

/// Opens a connection and signs it in with a token from the source.
pub(crate) async fn open(shared: &Shared, req: TokenRequest) -> Result<Arc<Conn>, ChatError> {
    let token = match &shared.token {
        TokenSource::Static(t) => t.clone(),
        TokenSource::Fn(f) => f(req)
            .await
            .map_err(|e| ChatError::new("token", format!("the token function failed: {e}")))?,
    };
    let timeout = shared.opts.call_timeout;
    tokio::time::timeout(timeout, open_with(shared, token))
        .await
        .map_err(|_| ChatError::new("timeout", format!("not signed in within {timeout:?}")))?
}

async fn open_with(shared: &Shared, token: String) -> Result<Arc<Conn>, ChatError> {
    let mut cfg = RpcConfig::client();
    cfg.session.heartbeat_interval = Some(shared.opts.heartbeat_interval);
    cfg.session.idle_timeout = shared.opts.read_timeout;
    let bye = Arc::new(Mutex::new(None));
    let core = &shared.core;
    let acks = Arc::new(ConnAcks {
        peer: Mutex::new(None),
        state: Mutex::new(AckState::default()),
    });
    let h = Arc::new(handlers(core, &acks, &bye));
    let in_header = shared.opts.token_in_header && matches!(shared.target, Target::Ws(_));
    let header = in_header.then_some(token.as_str());
    let peer = connect_transport(shared, h, cfg, header).await?;
    *lock(&acks.peer) = Some(peer.clone());
    *lock(&core.acks) = Some(acks.clone());
    // Closes the connection if this future is dropped before it is signed in (the client
    // was closed meanwhile) or the sign-in fails.
    let mut unfinished = Unfinished(Some((peer.clone(), acks.clone())));
    let me: Result<Me, ChatError> = if in_header {
        peer.request("whoami", &json!({})).await
    } else {
        peer.request("auth", &json!({ "token": token })).await
    }
    .map_err(ChatError::from_rpc);
    let me = me?;
    unfinished.0 = None;
    Ok(Arc::new(Conn {
        peer,
        me,
        acks,
        bye,
        up_since: Instant::now(),
        expires: jwt_exp(&token),
    }))
}

/// The `exp` claim of a JWT (`None` for any other token).
fn jwt_exp(token: &str) -> Option<u64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// When to present a fresh token: `refresh_before` ahead of `exp`, at least a second from now
/// (token functions only).
fn refresh_at(shared: &Shared, exp: Option<u64>) -> Option<Instant> {
    if !matches!(shared.token, TokenSource::Fn(_)) {
        return None;
    }
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(exp?);
    let left = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    // At least a second apart (less only for a token that expires sooner), so a token
    // function that hands out short-lived tokens is not asked in a loop.
    let floor = (left / 2).min(Duration::from_secs(1));
    Some(Instant::now() + left.saturating_sub(shared.opts.refresh_before).max(floor))
}

/// Asks the token function for a fresh token and presents it (`refresh`); the next expiry.
async fn refresh(shared: &Shared, conn: &Conn) -> Result<Option<u64>, ChatError> {
    let TokenSource::Fn(f) = &shared.token else {
        return Ok(None);
    };
    let req = TokenRequest {
        reconnect: false,
        refused: None,
        attempt: 1,
        refresh: true,
    };
    let work = async {
        let token = f(req)
            .await
            .map_err(|e| ChatError::new("token", format!("the token function failed: {e}")))?;
        let r: Value = conn
            .peer
            .request("refresh", &json!({ "token": token }))
            .await
            .map_err(ChatError::from_rpc)?;
        Ok(r["expires_at"].as_u64())
    };
    tokio::time::timeout(shared.opts.call_timeout, work)
        .await
        .map_err(|_| ChatError::new("timeout", "refresh"))?
}

/// Dials the target and runs RPC on it with `h`.
async fn connect_transport(
    shared: &Shared,
    h: Arc<Handlers>,
    cfg: RpcConfig,
    bearer: Option<&str>,
) -> Result<Peer, ChatError> {
    let err = |e: crate::transport::TransportError| ChatError::new("connect", e.to_string());
    Ok(match &shared.target {
        Target::Tcp(addr) => {
            let tcp =
                crate::transport::tcp::TcpConfig::default().with_local_ip(shared.opts.local_ip);
            let t = crate::transport::tcp::connect(addr.as_str(), &tcp)
                .await
                .map_err(err)?;
            crate::rpc::connect(t, h, cfg)
        }
        Target::Ws(url) => ws_connect(shared, url, h, cfg, bearer).await?,
    })
}

struct Unfinished(Option<(Peer, Arc<ConnAcks>)>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some((peer, acks)) = self.0.take() {
            peer.close();
            acks.detach();
            peer.set_handlers(Arc::new(Handlers::new()));
        }
    }
}

impl Conn {
    /// Breaks the cycle between the peer's handlers and the acks once the connection ended
    /// and its notifications were handled.
    fn retire(&self) {
        self.acks.detach();
        self.peer.set_handlers(Arc::new(Handlers::new()));
    }
}

#[cfg(any(
    feature = "ws-tungstenite",
    feature = "ws-fastwebsockets",
    feature = "ws-yawc"
))]
async fn ws_connect(
    shared: &Shared,
    url: &str,
    h: Arc<Handlers>,
    cfg: RpcConfig,
    bearer: Option<&str>,
) -> Result<Peer, ChatError> {
    use crate::WsEngine;
    let err = |e: crate::transport::TransportError| ChatError::new("connect", e.to_string());
    let engine = shared
        .opts
        .engine
        .or_else(WsEngine::preferred)
        .ok_or_else(|| ChatError::new("connect", "no WebSocket engine compiled in"))?;
    let ws = &shared.opts.ws_config;
    let mut opts = shared.opts.ws_options.clone();
    if let Some(ip) = shared.opts.local_ip {
        opts = opts.with_local_ip(ip);
    }
    if let Some(token) = bearer {
        opts = opts.with_header("authorization", format!("Bearer {token}"));
    }
    let opts = &opts;
    Ok(match engine {
        #[cfg(feature = "ws-tungstenite")]
        WsEngine::Tungstenite => crate::rpc::connect(
            crate::ws::connect_with::<crate::ws::tungstenite::Tungstenite>(url, ws, opts)
                .await
                .map_err(err)?,
            h,
            cfg,
        ),
        #[cfg(feature = "ws-fastwebsockets")]
        WsEngine::FastWebSockets => crate::rpc::connect(
            crate::ws::connect_with::<crate::ws::fastwebsockets::FastWebSockets>(url, ws, opts)
                .await
                .map_err(err)?,
            h,
            cfg,
        ),
        #[cfg(feature = "ws-yawc")]
        WsEngine::Yawc => crate::rpc::connect(
            crate::ws::connect_with::<crate::ws::yawc::Yawc>(url, ws, opts)
                .await
                .map_err(err)?,
            h,
            cfg,
        ),
    })
}

#[cfg(not(any(
    feature = "ws-tungstenite",
    feature = "ws-fastwebsockets",
    feature = "ws-yawc"
)))]
async fn ws_connect(
    _shared: &Shared,
    _url: &str,
    _h: Arc<Handlers>,
    _cfg: RpcConfig,
    _bearer: Option<&str>,
) -> Result<Peer, ChatError> {
    Err(ChatError::new(
        "connect",
        "no WebSocket engine compiled in (features ws-tungstenite, ws-fastwebsockets, ws-yawc)",
    ))
}

/// How a connection ended: the `bye`'s code, else the WebSocket close frame's, else 1006.
fn close_info(conn: &Conn, why: &Disconnect, websocket: bool) -> CloseInfo {
    let bye = lock(&conn.bye).clone();
    let (code, reason, advice) = match (bye, why) {
        (Some(b), _) => {
            let advice = match b.reconnect.as_str() {
                "at_once" => Reconnect::AtOnce,
                "backoff" => Reconnect::Backoff,
                "after_refresh" => Reconnect::AfterRefresh,
                "never" => Reconnect::Never,
                _ => CloseCode(b.code).reconnect(),
            };
            (b.code, b.reason, advice)
        }
        (None, Disconnect::Session(CloseCause::Peer(Some(r)))) if websocket => {
            (r.code.0, r.reason.clone(), r.code.reconnect())
        }
        (None, other) => (1006, other.to_string(), Reconnect::Backoff),
    };
    CloseInfo {
        code,
        name: CloseCode(code).name(),
        reason,
        reconnect: advice.as_str(),
    }
}

/// The wait before reconnect attempt `n` (0, 1, ...): a random time in
/// `[0, min(max, base · 2ⁿ)]` (full jitter).
pub(crate) fn backoff(n: u32, base: Duration, max: Duration, random: u64) -> Duration {
    let cap = base
        .checked_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let nanos = cap.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random % (nanos + 1))
}

fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Waits for `conn` to end (or the client to be closed), then reconnects by the table until
/// the client is closed for good. Ends by emitting [`Event::Closed`].
pub(crate) async fn supervise(shared: Arc<Shared>, mut conn: Arc<Conn>) {
    let mut stop = shared.stop.subscribe();
    let websocket = matches!(shared.target, Target::Ws(_));
    let mut n: u32 = 0;
    let info = 'client: loop {
        let mut refresh_at = refresh_at(&shared, conn.expires);
        let why = loop {
            let when = refresh_at.unwrap_or_else(Instant::now);
            tokio::select! {
                why = conn.peer.notifications_drained() => break why,
                _ = stopped(&mut stop) => {
                    conn.peer.close();
                    conn.retire();
                    break 'client closed_by_client();
                }
                _ = tokio::time::sleep_until(when), if refresh_at.is_some() => {
                    // A fresh token before this one expires; if that fails, the server's
                    // 4002 at the expiry leads to a reconnect with a fresh token.
                    refresh_at = match refresh(&shared, &conn).await {
                        Ok(exp) => self::refresh_at(&shared, exp),
                        Err(e) => {
                            tracing::debug!(error = %e, "chat client: refresh failed");
                            None
                        }
                    };
                }
            }
        };
        conn.retire();
        shared.link.send_replace(Link::Connecting);
        let info = close_info(&conn, &why, websocket);
        let advice = match info.reconnect {
            "at_once" => Reconnect::AtOnce,
            "after_refresh" => Reconnect::AfterRefresh,
            "never" => Reconnect::Never,
            _ => Reconnect::Backoff,
        };
        let fn_token = matches!(shared.token, TokenSource::Fn(_));
        let will = shared.opts.reconnect
            && match advice {
                Reconnect::Never => false,
                Reconnect::AfterRefresh => fn_token,
                _ => true,
            };
        if conn.up_since.elapsed() >= shared.opts.stable_after {
            n = 0;
        }
        let first_delay = match advice {
            Reconnect::AtOnce | Reconnect::AfterRefresh => Duration::ZERO,
            _ => backoff(
                n,
                shared.opts.reconnect_base,
                shared.opts.reconnect_max,
                random(),
            ),
        };
        let ev = Event::Disconnected(Disconnected {
            close: info.clone(),
            will_reconnect: will,
            delay: first_delay,
        });
        if or_stop(&mut stop, shared.core.emit(ev)).await.is_none() {
            break closed_by_client();
        }
        if !will {
            break info;
        }
        // Attempts until one signs in, or the client is done.
        let mut delay = first_delay;
        let mut refused: Option<String> = None;
        let mut attempts = 0u32;
        let next = loop {
            if shared
                .opts
                .reconnect_attempts
                .is_some_and(|max| attempts >= max)
            {
                break Err(CloseInfo {
                    reason: format!("gave up after {attempts} reconnect attempts"),
                    ..info.clone()
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break Err(closed_by_client()),
            }
            attempts += 1;
            n = n.saturating_add(1);
            let req = TokenRequest {
                reconnect: true,
                refused: refused.clone(),
                attempt: attempts,
                refresh: false,
            };
            let Some(opened) = or_stop(&mut stop, open(&shared, req)).await else {
                break Err(closed_by_client());
            };
            match opened {
                Ok(c) => break Ok(c),
                Err(e) if e.is_auth() && e.code() != "auth_unavailable" => {
                    // A refused token: with a fixed one, the end; a token function is asked
                    // once more, told why.
                    if !fn_token || refused.is_some() {
                        break Err(CloseInfo {
                            code: CloseCode::AUTH_FAILED.0,
                            name: CloseCode::AUTH_FAILED.name(),
                            reason: e.to_string(),
                            reconnect: Reconnect::Never.as_str(),
                        });
                    }
                    refused = Some(e.code().to_owned());
                    delay = Duration::ZERO;
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempts, "chat client: reconnect failed");
                    delay = backoff(
                        n,
                        shared.opts.reconnect_base,
                        shared.opts.reconnect_max,
                        random(),
                    );
                }
            }
        };
        match next {
            Ok(c) => {
                conn = c;
                let Some(rooms) = or_stop(&mut stop, rejoin(&shared, &conn)).await else {
                    conn.peer.close();
                    conn.retire();
                    break closed_by_client();
                };
                shared.link.send_replace(Link::Up(conn.clone()));
                let ev = Event::Reconnected(Reconnected {
                    me: conn.me.clone(),
                    rooms,
                    attempts,
                });
                // (a stop meanwhile is seen at the top of the loop)
                let _ = or_stop(&mut stop, shared.core.emit(ev)).await;
            }
            Err(info) => break info,
        }
    };
    shared.link.send_replace(Link::Closed(info.clone()));
    shared.core.emit(Event::Closed(info)).await;
}

/// Resolves once the client is closed (holding no guard of the watch).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `f`, unless the client is closed first.
async fn or_stop<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    f: F,
) -> Option<F::Output> {
    tokio::select! {
        v = f => Some(v),
        _ = stopped(stop) => None,
    }
}

fn closed_by_client() -> CloseInfo {
    CloseInfo {
        code: CloseCode::NORMAL.0,
        name: CloseCode::NORMAL.name(),
        reason: "closed by the client".into(),
        reconnect: Reconnect::Never.as_str(),
    }
}

/// Joins every room again with its position as `since`; reports what was not recovered as
/// a [`Gap`] and forgets rooms that cannot be joined any more.
async fn rejoin(shared: &Shared, conn: &Conn) -> Vec<JoinResult> {
    if !shared.opts.rejoin {
        lock(&shared.core.rooms).clear();
        return Vec::new();
    }
    let rooms: Vec<(String, RoomEntry)> = lock(&shared.core.rooms)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut out = Vec::new();
    for (room, entry) in rooms {
        let mut req = json!({ "room": room });
        if let Some(p) = &entry.password {
            req["password"] = json!(p);
        }
        if entry.epoch != 0 {
            req["since"] = json!({ "epoch": entry.epoch, "seq": entry.seq });
        }
        match conn.peer.request::<_, JoinResult>("join", &req).await {
            Ok(r) => {
                // Reported unless a live publish got there first (it reported the hole as
                // `missed` when it moved the position), checked and moved under one lock.
                let gap = {
                    let mut rooms = lock(&shared.core.rooms);
                    let unmoved = rooms
                        .get(&room)
                        .is_some_and(|p| (p.epoch, p.seq) == (entry.epoch, entry.seq));
                    let gap =
                        (entry.epoch != 0 && r.recovered == Some(false) && unmoved).then(|| Gap {
                            room: room.clone(),
                            since: (entry.epoch, entry.seq),
                            now: (r.epoch, r.seq),
                            reason: r.reason.clone().unwrap_or_else(|| "unknown".into()),
                        });
                    move_at_least(&mut rooms, &room, &r);
                    gap
                };
                if let Some(g) = gap {
                    shared.core.emit(Event::Gap(g)).await;
                }
                out.push(r);
            }
            Err(e) if e.is_closed() => {
                // This connection is lost too: the rooms stay for the next one.
                break;
            }
            Err(e) => {
                lock(&shared.core.rooms).remove(&room);
                let error = ChatError::from_rpc(e);
                shared.core.emit(Event::RoomLost { room, error }).await;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff(0, base, max, 0), Duration::ZERO);
        // the largest random number reaches the cap exactly, never more
        assert_eq!(backoff(0, base, max, 500_000_000), base);
        assert!(backoff(3, base, max, u64::MAX) <= base * 8);
        for n in 0..80 {
            for r in [0, 1, 12_345, u64::MAX / 3, u64::MAX] {
                let d = backoff(n, base, max, r);
                assert!(d <= max, "attempt {n}: {d:?}");
                assert!(
                    d <= base.saturating_mul(1 << n.min(20)),
                    "attempt {n}: {d:?}"
                );
            }
        }
        assert_eq!(backoff(70, base, max, 30_000_000_000), max);
    }
}
