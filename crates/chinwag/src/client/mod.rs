//! A chat client in Rust: the chat protocol of a chinwag hub (`docs/chat-protocol.md`), the
//! same client as `chinwag.js`'s `chat()`, over WebSocket (`ws://…/gotalk/`, `wss://`) or the
//! chat door's TCP port (`tcp://host:port`).
//!
//! [`Client::builder`] takes the URL and a token (fixed, or a function called for every
//! (re)connect); [`connect`](ClientBuilder::connect) signs in and returns the [`Client`] (the
//! calls: [`send`](Client::send), [`join`](Client::join), [`publish`](Client::publish),
//! [`history`](Client::history), ...) and its [`Events`] (direct messages, room publishes,
//! presence, goodbyes, reconnects).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use chinwag::Server;
//! use chinwag::client::{Client, Event};
//! use chinwag::hub::auth::JwtIssuer;
//!
//! const SECRET: &str = "a long random secret that signs the users' tokens";
//! let server = Server::builder()
//!     .chat_tcp("127.0.0.1:0".parse()?)
//!     .jwt_secret(SECRET)
//!     .start()
//!     .await?;
//! let url = format!("tcp://{}", server.chat_tcp_addr().unwrap());
//! let issuer = JwtIssuer::hs256(SECRET);
//! let token = |user| issuer.issue(user, Some("laptop"), Duration::from_secs(3600));
//!
//! let (ada, mut ada_events) = Client::builder(&url).token(token("ada")).connect().await?;
//! let (bob, _bob_events) = Client::builder(&url).token(token("bob")).connect().await?;
//!
//! bob.send("ada", "hello ada").await?;
//! match ada_events.next().await {
//!     // handed to the application: acknowledged by itself
//!     Some(Event::Message(m)) => assert_eq!(m.text(), Some("hello ada")),
//!     other => panic!("{other:?}"),
//! }
//!
//! ada.join("lobby").await?;
//! ada.publish("lobby", "hi, lobby").await?;
//! match ada_events.next().await {
//!     Some(Event::Room(m)) => assert_eq!((m.room.as_str(), m.seq), ("lobby", 1)),
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(ada.whoami().await?.user, "ada");
//! ada.close().await;
//! server.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # Reconnects and recovery
//!
//! A connection that ends is handled by the close-code table (`docs/chat-protocol.md` §6; the
//! `bye`'s `reconnect` advice, else the WebSocket close code, else 1006):
//!
//! | advice | codes | what the client does |
//! |---|---|---|
//! | `never` | 1000, 4001 auth_failed, 4003 replaced, 4004 kicked | [`Event::Closed`]: closed for good |
//! | `after_refresh` | 4002 token_expired | with a token function: a new token, at once; with a fixed token: closed |
//! | `backoff` | everything else (1001, 1006, 1008, 1011, 1013, 4008, 4009, 4010, …) | waits a random time in `[0, min(30 s, 0.5 s · 2ⁿ)]` (full jitter; n = attempts in a row, back to 0 after a connection that stayed up 5 s), then connects and signs in again |
//!
//! After a reconnect every room is joined again (with its password) and with `since` = the
//! epoch and seq of the last publish the client emitted: on a server that keeps room history
//! the missed publishes arrive as [`Event::Room`]s, and [`Event::Reconnected`] lists each
//! room's [`JoinResult`] (`recovered`). A room the server could not recover is reported as an
//! [`Event::Gap`] (its reason: `no_history`, `trimmed`, ...); [`Client::history`] reads what
//! is still kept. A live `seq` that jumps (the server's send queue dropped publishes for this
//! connection) is a [`Gap`] with reason `missed`. (Unlike `chinwag.js`, the client does not
//! fill gaps from the history by itself.) Direct messages are at least once: unacknowledged
//! ones come again after a reconnect, and the client drops those at or below the last id it
//! emitted.
//!
//! With a token function, the client also presents a fresh token (`refresh`) 30 s before a
//! JWT's `exp` ([`refresh_before`](ClientBuilder::refresh_before)), so the server does not
//! close the connection with 4002.
//!
//! Calls made while the client is not signed in wait for the next sign-in (within the call
//! timeout). A call sent on a connection that then breaks fails with `closed`: it may or may
//! not have happened, so it is not resent.
//!
//! # Bounds
//!
//! | bound | default | past it |
//! |---|---|---|
//! | events not yet read ([`event_buffer`](ClientBuilder::event_buffer)) | 256 | **backpressure**: the connection stops reading until the application reads. The server then treats it as a slow client: room publishes and presence events for it are dropped (a later `seq` jump is an [`Event::Gap`]), direct messages wait in its offline queue, and a client that reads nothing for long is closed by the server (1008, or 1006 when a write to it stays stuck) and reconnects. Answers to calls come on the same connection, so read the events on a task of their own. [`Client::close`] does not wait for the application |
//! | calls in flight ([`max_in_flight`](ClientBuilder::max_in_flight)) | 256 (the server's per-connection limit) | further calls wait for a slot (inside their own future: nothing is queued by the client) |
//! | one call, including waiting for a slot and a sign-in ([`call_timeout`](ClientBuilder::call_timeout)) | 30 s | `timeout` |
//! | reconnect attempts in a row ([`reconnect_attempts`](ClientBuilder::reconnect_attempts)) | unbounded | [`Event::Closed`] |
//! | the wait between attempts | at most 30 s ([`backoff`](ClientBuilder::backoff)) | — |
//! | silence from the server ([`read_timeout`](ClientBuilder::read_timeout)) | 70 s (it sends a heartbeat every 20 s) | the connection counts as lost (1006): reconnect |

mod error;
mod link;
mod types;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc, watch};

pub use error::ChatError;
pub use types::{
    Bye, CloseInfo, DirectMessage, Disconnected, Event, Gap, History, HistoryMessage, HistoryPage,
    JoinResult, Me, Member, MembersPage, Online, Presence, PublishReport, Reconnected, RoomInfo,
    RoomMessage, SendReport, Sender,
};

use crate::hub::Body;
use crate::ws::{ConnectOptions, WsConfig};
use link::{Conn, Core, Link, RoomEntry, Shared, lock};

/// What a body can be made from: text (`&str`, `String`) is a text body (`body` on the
/// wire), bytes (`Vec<u8>`, `&[u8]`, `Bytes`) a binary one (`body_base64`), or a
/// [`Body`] as it is.
///
/// ```
/// use chinwag::client::IntoBody;
/// assert_eq!(IntoBody::into_body("hi").as_text(), Some("hi"));
/// assert!(IntoBody::into_body(vec![0u8, 255]).is_binary());
/// ```
pub trait IntoBody {
    /// The body.
    fn into_body(self) -> Body;
}

impl IntoBody for Body {
    fn into_body(self) -> Body {
        self
    }
}

impl IntoBody for &str {
    fn into_body(self) -> Body {
        Body::text(self)
    }
}

impl IntoBody for String {
    fn into_body(self) -> Body {
        Body::text(self)
    }
}

impl IntoBody for &String {
    fn into_body(self) -> Body {
        Body::text(self.as_str())
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Body {
        Body::binary(self)
    }
}

impl IntoBody for &[u8] {
    fn into_body(self) -> Body {
        Body::binary(bytes::Bytes::copy_from_slice(self))
    }
}

impl IntoBody for bytes::Bytes {
    fn into_body(self) -> Body {
        Body::binary(self)
    }
}

/// Why the token function is called ([`ClientBuilder::token_fn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequest {
    /// `false` for the first connection, `true` for reconnects.
    pub reconnect: bool,
    /// The code of the refusal of the token it gave last (`auth_expired`, ...): it gets one
    /// more try, then the client closes.
    pub refused: Option<String>,
    /// The attempt (1, 2, ...) of this reconnect.
    pub attempt: u32,
    /// `true`: for a `refresh` of the connection, ahead of the current token's expiry
    /// ([`ClientBuilder::refresh_before`]).
    pub refresh: bool,
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

#[derive(Clone)]
pub(crate) enum TokenSource {
    Static(String),
    Fn(Arc<dyn Fn(TokenRequest) -> TokenFuture + Send + Sync>),
}

#[derive(Debug, Clone)]
pub(crate) enum Target {
    Ws(String),
    Tcp(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) auto_ack: bool,
    pub(crate) rejoin: bool,
    pub(crate) reconnect: bool,
    pub(crate) reconnect_base: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) reconnect_attempts: Option<u32>,
    pub(crate) stable_after: Duration,
    pub(crate) event_buffer: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) call_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) last_message_id: u64,
    pub(crate) token_in_header: bool,
    pub(crate) refresh_before: Duration,
    pub(crate) engine: Option<crate::WsEngine>,
    pub(crate) ws_config: WsConfig,
    pub(crate) ws_options: ConnectOptions,
    pub(crate) local_ip: Option<std::net::IpAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auto_ack: true,
            rejoin: true,
            reconnect: true,
            reconnect_base: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            reconnect_attempts: None,
            stable_after: Duration::from_secs(5),
            event_buffer: 256,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            read_timeout: Some(Duration::from_secs(70)),
            heartbeat_interval: Duration::from_secs(20),
            last_message_id: 0,
            token_in_header: false,
            refresh_before: Duration::from_secs(30),
            engine: None,
            ws_config: WsConfig::default(),
            ws_options: ConnectOptions::default(),
            local_ip: None,
        }
    }
}

/// Settings of a [`Client`]; [`connect`](Self::connect) signs in.
///
/// ```no_run
/// # async fn f() -> Result<(), chinwag::client::ChatError> {
/// use std::time::Duration;
/// use chinwag::client::Client;
///
/// let (client, events) = Client::builder("ws://127.0.0.1:8080/gotalk/")
///     // called for the first connection and every reconnect
///     .token_fn(|_req| async { Ok::<_, String>("a JWT from your login service".to_owned()) })
///     .event_buffer(1024)
///     .backoff(Duration::from_millis(200), Duration::from_secs(10))
///     .connect()
///     .await?;
/// # let _ = (client, events); Ok(()) }
/// ```
#[must_use]
pub struct ClientBuilder {
    url: String,
    token: Option<TokenSource>,
    opts: Options,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Signs in with this token on every connection.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSource::Static(token.into()));
        self
    }

    /// Asks `f` for a token before every connection (so a reconnect after a long outage, or
    /// after 4002 token_expired, gets a fresh one). An error from it counts as a failed
    /// attempt (backoff), or fails [`connect`](Self::connect) with code `token`.
    pub fn token_fn<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        let f = Arc::new(f);
        self.token = Some(TokenSource::Fn(Arc::new(move |req| {
            let fut = f(req);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        })));
        self
    }

    /// Acknowledges direct messages by itself once [`Events::next`] has handed them out
    /// (default `true`). Off: call [`Client::ack`] after processing.
    pub fn auto_ack(mut self, on: bool) -> Self {
        self.opts.auto_ack = on;
        self
    }

    /// Reconnects by the close-code table (default `true`). Off: the first lost connection
    /// closes the client.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.opts.reconnect = on;
        self
    }

    /// Joins the rooms again after a reconnect, with recovery (default `true`).
    pub fn rejoin(mut self, on: bool) -> Self {
        self.opts.rejoin = on;
        self
    }

    /// The backoff: attempt n waits a random time in `[0, min(max, base · 2ⁿ)]`. Default
    /// 500 ms and 30 s.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.opts.reconnect_base = base;
        self.opts.reconnect_max = max;
        self
    }

    /// Reconnect attempts in a row before the client gives up (default `None`: no end).
    pub fn reconnect_attempts(mut self, max: Option<u32>) -> Self {
        self.opts.reconnect_attempts = max;
        self
    }

    /// How long a connection must have stayed up for the backoff to start again at attempt 0
    /// (default 5 s).
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.opts.stable_after = d;
        self
    }

    /// Events not yet read (default 256, at least 1); past it the connection stops reading.
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.opts.event_buffer = n.max(1);
        self
    }

    /// Calls in flight at once (default 256, at least 1); further calls wait for a slot.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.opts.max_in_flight = n.max(1);
        self
    }

    /// The longest a call (or a connection attempt) may take, waiting included (default 30 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.opts.call_timeout = d;
        self
    }

    /// Silence from the server after which the connection counts as lost (default 70 s;
    /// `None`: never).
    pub fn read_timeout(mut self, d: Option<Duration>) -> Self {
        self.opts.read_timeout = d;
        self
    }

    /// Drops direct messages at or below this id (the last one processed, kept across runs).
    pub fn last_message_id(mut self, id: u64) -> Self {
        self.opts.last_message_id = id;
        self
    }

    /// With a token function and a JWT that has an `exp`: asks the function for a fresh token
    /// this long before the expiry and presents it with `refresh`, so the connection is not
    /// closed with 4002 (default 30 s). Refreshes are at least a second apart (or half the
    /// token's remaining life, if that is shorter).
    pub fn refresh_before(mut self, d: Duration) -> Self {
        self.opts.refresh_before = d;
        self
    }

    /// Over WebSocket, presents the token at connect in an `Authorization: Bearer` header
    /// instead of an `auth` request (default `false`; TCP has no headers and always uses
    /// `auth`). A refused token is then an HTTP 401 before the upgrade: error code `connect`
    /// (not `auth_*`), and on a reconnect it is retried with backoff like any failed
    /// connection.
    pub fn token_in_header(mut self, on: bool) -> Self {
        self.opts.token_in_header = on;
        self
    }

    /// The WebSocket engine (default: [`WsEngine::preferred`](crate::WsEngine::preferred)).
    pub fn engine(mut self, engine: crate::WsEngine) -> Self {
        self.opts.engine = Some(engine);
        self
    }

    /// WebSocket settings (limits, handshake timeout).
    pub fn ws_config(mut self, config: WsConfig) -> Self {
        self.opts.ws_config = config;
        self
    }

    /// WebSocket client options: TLS roots for `wss://`, the `Origin`, more headers.
    pub fn ws_options(mut self, options: ConnectOptions) -> Self {
        self.opts.ws_options = options;
        self
    }

    /// Connects from this local address (bound before connecting, on every reconnect too;
    /// over WebSocket and TCP). A load generator spreads its clients over several loopback
    /// addresses this way; a host with several interfaces picks one. Default: the kernel
    /// picks.
    pub fn local_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.opts.local_ip = Some(ip);
        self
    }

    /// Connects and signs in. After this first sign-in the client keeps itself connected
    /// until [`Client::close`] or a close the table says not to reconnect after.
    ///
    /// # Errors
    ///
    /// The URL is not `ws://`, `wss://` or `tcp://` (`connect`), no token was given
    /// (`connect`), the connection could not be opened (`connect`), the token was refused
    /// (`auth_*`), the sign-on failed (`connections`, `shutting_down`, ...), or it all took
    /// longer than the call timeout (`timeout`).
    pub async fn connect(self) -> Result<(Client, Events), ChatError> {
        let target = if self.url.starts_with("ws://") || self.url.starts_with("wss://") {
            Target::Ws(self.url.clone())
        } else if let Some(addr) = self.url.strip_prefix("tcp://") {
            Target::Tcp(addr.trim_end_matches('/').to_owned())
        } else {
            return Err(ChatError::new(
                "connect",
                format!("{:?} is not a ws://, wss:// or tcp:// URL", self.url),
            ));
        };
        let token = self
            .token
            .ok_or_else(|| ChatError::new("connect", "no token: call token or token_fn"))?;
        let (tx, rx) = mpsc::channel(self.opts.event_buffer);
        let core = Arc::new(Core {
            events: tx,
            rooms: Default::default(),
            last_message_id: AtomicU64::new(self.opts.last_message_id),
            auto_ack: self.opts.auto_ack,
            handed: AtomicU64::new(self.opts.last_message_id),
            acks: Default::default(),
        });
        let shared = Arc::new(Shared {
            core,
            slots: Arc::new(Semaphore::new(self.opts.max_in_flight)),
            opts: self.opts,
            target,
            token,
            link: watch::channel(Link::Connecting).0,
            stop: watch::channel(false).0,
        });
        let req = TokenRequest {
            reconnect: false,
            refused: None,
            attempt: 1,
            refresh: false,
        };
        let conn = link::open(&shared, req).await?;
        shared.link.send_replace(Link::Up(conn.clone()));
        tokio::spawn(link::supervise(shared.clone(), conn));
        let core = shared.core.clone();
        let client = Client {
            shared: shared.clone(),
            _guard: Arc::new(CloseOnDrop(shared)),
        };
        Ok((
            client,
            Events {
                rx,
                core,
                done: false,
            },
        ))
    }
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.stop.send_replace(true);
    }
}

/// A signed-in chat client (cheap to clone; the last clone dropped closes it). Made by
/// [`Client::builder`]; the module docs have a complete example.
///
/// ```no_run
/// # async fn f(client: chinwag::client::Client) -> Result<(), chinwag::client::ChatError> {
/// use std::time::Duration;
/// use chinwag::client::History;
///
/// // live only: delivered to bob's connections now, or the error `offline`
/// if let Err(e) = client.send_with("bob", "typing…", Some(Duration::ZERO)).await {
///     assert_eq!(e.code(), "offline");
/// }
/// // a protected room, recovering from where this client was
/// let since = client.position("vault");
/// let joined = client.join_with("vault", Some("open sesame"), since).await?;
/// if joined.recovered == Some(false) {
///     let page = client.history(History::room("vault").after(since.unwrap().1)).await?;
///     println!("{} publishes missed, {} still kept", joined.seq - since.unwrap().1, page.publications.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.shared.target)
            .field("me", &self.me())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the chat door at `url`: `ws://host:port/gotalk/`, `wss://...` or
    /// `tcp://host:port`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            opts: Options::default(),
        }
    }

    /// Who the current connection is (`None` while reconnecting or closed).
    pub fn me(&self) -> Option<Me> {
        match &*self.shared.link.borrow() {
            Link::Up(c) => Some(c.me.clone()),
            _ => None,
        }
    }

    /// Whether the client is closed for good.
    pub fn is_closed(&self) -> bool {
        matches!(&*self.shared.link.borrow(), Link::Closed(_))
    }

    /// Calls in flight now (waiting for a sign-in or an answer).
    pub fn in_flight(&self) -> usize {
        self.shared.opts.max_in_flight - self.shared.slots.available_permits()
    }

    /// The rooms the client is in (joined again after every reconnect).
    pub fn joined(&self) -> Vec<String> {
        lock(&self.shared.core.rooms).keys().cloned().collect()
    }

    /// A room's position: the epoch and seq of the last publish emitted (`None`: not in it).
    pub fn position(&self, room: &str) -> Option<(u64, u64)> {
        lock(&self.shared.core.rooms)
            .get(room)
            .map(|e| (e.epoch, e.seq))
    }

    /// The highest direct-message id emitted (keep it to drop duplicates across runs).
    pub fn last_message_id(&self) -> u64 {
        self.shared.core.last_message_id.load(Ordering::Acquire)
    }

    /// Closes for good (no reconnect) and waits until the connection is closed; the events
    /// end with [`Event::Closed`] (code 1000).
    pub async fn close(&self) {
        self.shared.stop.send_replace(true);
        let mut link = self.shared.link.subscribe();
        let _ = link.wait_for(|l| matches!(l, Link::Closed(_))).await;
    }

    /// Any operation of the protocol, JSON in and out (e.g. one this client has no method
    /// for).
    ///
    /// # Errors
    ///
    /// See [`ChatError`].
    pub async fn request(&self, op: &str, value: Value) -> Result<Value, ChatError> {
        self.call(op, value).await
    }

    async fn call<T: DeserializeOwned>(&self, op: &str, value: Value) -> Result<T, ChatError> {
        let deadline = tokio::time::Instant::now() + self.shared.opts.call_timeout;
        let timeout = || {
            ChatError::new(
                "timeout",
                format!("{op}: no answer within {:?}", self.shared.opts.call_timeout),
            )
        };
        let _slot = tokio::time::timeout_at(deadline, self.shared.slots.acquire())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| ChatError::closed("the client is closed"))?;
        let conn = tokio::time::timeout_at(deadline, self.signed_in())
            .await
            .map_err(|_| timeout())??;
        let v: Value = tokio::time::timeout_at(deadline, conn.peer.request(op, &value))
            .await
            .map_err(|_| timeout())?
            .map_err(ChatError::from_rpc)?;
        serde_json::from_value(v).map_err(|e| ChatError::new("bad_response", format!("{op}: {e}")))
    }

    async fn signed_in(&self) -> Result<Arc<Conn>, ChatError> {
        let mut link = self.shared.link.subscribe();
        let l = link
            .wait_for(|l| !matches!(l, Link::Connecting))
            .await
            .map_err(|_| ChatError::closed("the client is closed"))?;
        match &*l {
            Link::Up(c) => Ok(c.clone()),
            Link::Closed(info) => Err(ChatError::closed(format!(
                "the client is closed ({} {}: {})",
                info.code, info.name, info.reason
            ))),
            Link::Connecting => unreachable!("waited for it to change"),
        }
    }

    /// Who this connection is.
    ///
    /// # Errors
    ///
    /// See [`ChatError`].
    pub async fn whoami(&self) -> Result<Me, ChatError> {
        self.call("whoami", json!({})).await
    }

    /// Sends a direct message to every connection of `to`, kept in its offline queue for the
    /// server's default TTL (7 days).
    ///
    /// # Errors
    ///
    /// `rate_limited`, `refused`, `too_large`, `queue`, `quota`, `bad_recipient`, ... (see
    /// [`ChatError`]).
    pub async fn send(&self, to: &str, body: impl IntoBody) -> Result<SendReport, ChatError> {
        self.send_with(to, body, None).await
    }

    /// [`send`](Self::send) with a TTL: `Some(Duration::ZERO)` is live only (`offline` when
    /// the user has no connection).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and `offline`, `undelivered`, `partial` when live only.
    pub async fn send_with(
        &self,
        to: &str,
        body: impl IntoBody,
        ttl: Option<Duration>,
    ) -> Result<SendReport, ChatError> {
        let mut m = Map::new();
        m.insert("to".into(), to.into());
        types::put_body(&mut m, &body.into_body());
        if let Some(ttl) = ttl {
            m.insert("ttl_ms".into(), (ttl.as_millis() as u64).into());
        }
        self.call("send", Value::Object(m)).await
    }

    /// Acknowledges direct messages up to `id` (only needed with
    /// [`auto_ack(false)`](ClientBuilder::auto_ack)); returns how many were removed from the
    /// offline queue.
    ///
    /// # Errors
    ///
    /// `queue` (see [`ChatError`]).
    pub async fn ack(&self, id: u64) -> Result<u64, ChatError> {
        let r: types::WireRemoved = self.call("ack", json!({ "id": id })).await?;
        Ok(r.removed)
    }

    /// Joins `room` (made when it does not exist, if the server allows). It is joined again
    /// after every reconnect, with recovery.
    ///
    /// # Errors
    ///
    /// `bad_room`, `no_such_room`, `room_full`, `too_many_rooms`, `wrong_password`, ...
    pub async fn join(&self, room: &str) -> Result<JoinResult, ChatError> {
        self.join_with(room, None, None).await
    }

    /// [`join`](Self::join) with a password and/or `since` = `(epoch, seq)` of the last
    /// publish seen, for recovery: on a server that keeps the room's history the publishes
    /// after it arrive as [`Event::Room`]s before this returns (`recovered` says whether
    /// they did).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub async fn join_with(
        &self,
        room: &str,
        password: Option<&str>,
        since: Option<(u64, u64)>,
    ) -> Result<JoinResult, ChatError> {
        let mut req = json!({ "room": room });
        if let Some(p) = password {
            req["password"] = json!(p);
        }
        if let Some((epoch, seq)) = since {
            req["since"] = json!({ "epoch": epoch, "seq": seq });
        }
        // Tracked before the answer, so publishes that come before it are positioned too.
        let was_in = {
            let mut rooms = lock(&self.shared.core.rooms);
            let was_in = rooms.contains_key(room);
            let e = rooms.entry(room.to_owned()).or_default();
            e.password = password.map(str::to_owned);
            if let Some((epoch, seq)) = since {
                (e.epoch, e.seq) = (epoch, seq);
            }
            was_in
        };
        match self.call::<JoinResult>("join", req).await {
            Ok(r) => {
                self.shared.core.position_at_least(room, &r);
                Ok(r)
            }
            Err(e) => {
                if !was_in {
                    lock(&self.shared.core.rooms).remove(room);
                }
                Err(e)
            }
        }
    }

    /// Leaves `room`; whether the connection was a member.
    ///
    /// # Errors
    ///
    /// See [`ChatError`].
    pub async fn leave(&self, room: &str) -> Result<bool, ChatError> {
        let entry: Option<RoomEntry> = lock(&self.shared.core.rooms).remove(room);
        match self
            .call::<types::WireLeft>("leave", json!({ "room": room }))
            .await
        {
            Ok(r) => Ok(r.left),
            Err(e) => {
                if let Some(entry) = entry {
                    lock(&self.shared.core.rooms).insert(room.to_owned(), entry);
                }
                Err(e)
            }
        }
    }

    /// Publishes to a room this connection is in (every member gets it, this one too).
    ///
    /// # Errors
    ///
    /// `not_member`, `rate_limited`, `refused`, `too_large`, `history_unavailable`, `busy`.
    pub async fn publish(
        &self,
        room: &str,
        body: impl IntoBody,
    ) -> Result<PublishReport, ChatError> {
        let mut m = Map::new();
        m.insert("room".into(), room.into());
        types::put_body(&mut m, &body.into_body());
        self.call("publish", Value::Object(m)).await
    }

    /// A page of a room's history or of a conversation ([`History`]).
    ///
    /// # Errors
    ///
    /// `not_member`, `no_such_room`, `no_history`, `bad_recipient`, `history_unavailable`.
    pub async fn history(&self, which: History) -> Result<HistoryPage, ChatError> {
        let w: types::WireHistory = self.call("history", which.to_json()).await?;
        w.into_page()
            .map_err(|e| ChatError::new("bad_response", format!("history: {e}")))
    }

    /// Which devices of `users` (at most 100) are connected, and how many users are online.
    ///
    /// # Errors
    ///
    /// `too_many`, `unavailable`.
    pub async fn online(&self, users: &[&str]) -> Result<Online, ChatError> {
        self.call("online", json!({ "users": users })).await
    }

    /// A page of a room's members: from the start (`after` `None`) or after the previous
    /// page's `next`; `limit` `None`: the server's default (100).
    ///
    /// # Errors
    ///
    /// `no_such_room`.
    pub async fn members(
        &self,
        room: &str,
        after: Option<u64>,
        limit: Option<u64>,
    ) -> Result<MembersPage, ChatError> {
        let mut req = json!({ "room": room });
        if let Some(a) = after {
            req["after"] = json!(a);
        }
        if let Some(l) = limit {
            req["limit"] = json!(l);
        }
        self.call("members", req).await
    }

    /// Every room on the server (at most 1 000, by name).
    ///
    /// # Errors
    ///
    /// See [`ChatError`].
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, ChatError> {
        let r: types::WireRooms = self.call("rooms", json!({})).await?;
        Ok(r.rooms)
    }

    /// A message for the server application itself; returns once it has handled it, with
    /// its answer when it gave one (`App::on_receive`'s, or the event proxy's backend's).
    ///
    /// # Errors
    ///
    /// `refused`, `rate_limited`, `too_large`; `bad_response` for an answer that is not a
    /// body.
    pub async fn app(&self, body: impl IntoBody) -> Result<Option<Body>, ChatError> {
        let mut m = Map::new();
        types::put_body(&mut m, &body.into_body());
        let a: types::WireAnswer = self.call("app", Value::Object(m)).await?;
        a.into_answer()
            .map_err(|why| ChatError::new("bad_response", format!("app: {why}")))
    }

    /// Presents a fresh token for the current connection; returns its expiry (UNIX seconds,
    /// `None`: never).
    ///
    /// # Errors
    ///
    /// `auth_other_user` and the `auth_*` refusals.
    pub async fn refresh(&self, token: &str) -> Result<Option<u64>, ChatError> {
        let r: types::WireRefresh = self.call("refresh", json!({ "token": token })).await?;
        Ok(r.expires_at)
    }
}

/// The client's events, in the order the server sent them (bounded: see the module docs).
/// [`next`](Self::next) returns `None` after [`Event::Closed`]. Read them on a task of their
/// own: answers to calls come on the same connection, behind the events.
///
/// ```no_run
/// # async fn f(mut events: chinwag::client::Events) {
/// use chinwag::client::Event;
///
/// let reader = chinwag::tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         match event {
///             Event::Message(m) => println!("{:?} says {:?}", m.from, m.text()),
///             Event::Room(m) => println!("#{} {}: {:?}", m.room, m.seq, m.text()),
///             Event::Gap(g) => println!("#{}: missed {:?}..{:?} ({})", g.room, g.since, g.now, g.reason),
///             Event::Disconnected(d) => println!("lost ({}), reconnecting: {}", d.close.reason, d.will_reconnect),
///             Event::Closed(c) => println!("closed for good: {} {}", c.code, c.name),
///             _ => {}
///         }
///     }
/// });
/// # let _ = reader; }
/// ```
pub struct Events {
    rx: mpsc::Receiver<Event>,
    core: Arc<Core>,
    done: bool,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("waiting", &self.rx.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` once the client is closed and every event was read. With
    /// automatic acknowledgements, a direct message is acknowledged when it is returned here.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let ev = self.rx.recv().await?;
        self.done = matches!(ev, Event::Closed(_));
        if let Event::Message(m) = &ev {
            self.core.handed_out(m.id);
        }
        Some(ev)
    }

    /// Events waiting to be read (at most the event buffer).
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}
