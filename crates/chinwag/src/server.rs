//! [`ServerBuilder`]: a hub server from parts in a few lines, and [`Server`], the running one.

use std::fmt;
use std::net::SocketAddr;
#[cfg(feature = "queue-redb")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{API_PREFIX, Api, ApiConfig};
use crate::error::{Error, Result};
use crate::history::{HistoryBackend, open_history};
use crate::http::{HttpFallback, HttpHandler, HttpRoutes};
use crate::hub::auth::{Authenticator, JwtAuthenticator, JwtConfig, JwtKey, StaticTokens};
use crate::hub::doors::DoorHandle;
use crate::hub::doors::chat::ChatDoor;
use crate::hub::doors::rooms::RoomsDoor;
use crate::hub::doors::tok::{ByeFn, TokDoor, TokPing};
use crate::hub::{App, Directory, Hub, HubConfig, HubLimits, RoomOptions, SignOn};
use crate::queue::{History, HistoryConfig, MemoryQueue, Queue, QueueConfig};
use crate::rpc::{CHINWAG_JS, RpcConfig};
use crate::session::ServerConfig;
use crate::transport::tcp::{TcpAcceptor, TcpConfig};
use crate::transport::{PeerAddr, TransportError};
use crate::ws::{Engine, StaticAsset, WsAcceptor, WsConfig};

/// The default path of the chat door over WebSocket (where `chinwag.js` and gotalk.js
/// clients connect).
pub const DEFAULT_CHAT_PATH: &str = "/gotalk/";
/// The default path of the raw WebSocket room door (`GET /ws?room=NAME`).
pub const DEFAULT_ROOMS_PATH: &str = "/ws";
/// Where the builder serves the JavaScript client by default (see
/// [`ServerBuilder::js_client`]).
pub const JS_CLIENT_PATH: &str = "/chinwag.js";

/// A WebSocket engine compiled into this build (features `ws-tungstenite`,
/// `ws-fastwebsockets`, `ws-yawc`). They behave the same (one shared test suite, Autobahn
/// clean); they differ in speed and in the code they bring (`docs/websocket.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WsEngine {
    /// tungstenite (`chinwag-ws-tungstenite`), feature `ws-tungstenite` (default).
    #[cfg(feature = "ws-tungstenite")]
    Tungstenite,
    /// fastwebsockets (`chinwag-ws-fastwebsockets`), feature `ws-fastwebsockets`.
    #[cfg(feature = "ws-fastwebsockets")]
    FastWebSockets,
    /// yawc (`chinwag-ws-yawc`), feature `ws-yawc`.
    #[cfg(feature = "ws-yawc")]
    Yawc,
}

impl WsEngine {
    /// The engines compiled in, the preferred (the builder's default) first.
    pub const ALL: &'static [WsEngine] = &[
        #[cfg(feature = "ws-tungstenite")]
        WsEngine::Tungstenite,
        #[cfg(feature = "ws-fastwebsockets")]
        WsEngine::FastWebSockets,
        #[cfg(feature = "ws-yawc")]
        WsEngine::Yawc,
    ];

    /// The builder's default: tungstenite when compiled in, else fastwebsockets, else yawc;
    /// `None` when no engine feature is on (then only the TCP doors can be served).
    pub fn preferred() -> Option<WsEngine> {
        Self::ALL.first().copied()
    }

    /// Its name: `tungstenite`, `fastwebsockets` or `yawc` (what [`FromStr`](std::str::FromStr)
    /// reads).
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "ws-tungstenite")]
            WsEngine::Tungstenite => "tungstenite",
            #[cfg(feature = "ws-fastwebsockets")]
            WsEngine::FastWebSockets => "fastwebsockets",
            #[cfg(feature = "ws-yawc")]
            WsEngine::Yawc => "yawc",
        }
    }
}

impl fmt::Display for WsEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WsEngine {
    type Err = Error;

    /// `tungstenite`, `fastwebsockets` or `yawc` (when compiled in).
    ///
    /// ```
    /// # #[cfg(feature = "ws-tungstenite")] {
    /// let e: chinwag::WsEngine = "tungstenite".parse().unwrap();
    /// assert_eq!(e.name(), "tungstenite");
    /// # }
    /// assert!("netty".parse::<chinwag::WsEngine>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        WsEngine::ALL
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WsEngine::ALL.iter().map(|e| e.name()).collect();
                Error::Config(format!(
                    "unknown WebSocket engine `{s}` (compiled in: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }
}

/// How a server joins a cluster through Redis (feature `cluster-redis`): see
/// [`ServerBuilder::redis_cluster`].
#[cfg(feature = "cluster-redis")]
enum Cluster {
    /// Connect at start.
    Connect {
        url: String,
        prefix: String,
        config: crate::cluster::redis::DirectoryConfig,
    },
    /// A directory connected already.
    Ready(Arc<crate::cluster::redis::RedisDirectory>),
}

/// A running cluster node's part of a [`Server`]: its directory and the listener
/// ([`RedisDirectory::serve`](crate::cluster::redis::RedisDirectory::serve)) the server stops
/// at shutdown.
#[cfg(feature = "cluster-redis")]
struct ClusterNode {
    directory: Arc<crate::cluster::redis::RedisDirectory>,
    status: tokio::sync::watch::Receiver<crate::cluster::redis::ListenerStatus>,
    listener: std::sync::Mutex<Option<crate::cluster::redis::Listener>>,
}

/// Where undelivered direct messages wait for their users (the hub's offline queue).
#[derive(Clone)]
#[non_exhaustive]
pub enum QueueBackend {
    /// In memory (the default): lost when the process ends.
    Memory,
    /// Durable in one file on disk (redb, fsync per commit): survives restarts and kill -9,
    /// opened with these [`RedbOptions`](crate::queue::redb::RedbOptions) (the page cache's
    /// size). Feature `queue-redb`. The file is created if missing; its directory must exist.
    #[cfg(feature = "queue-redb")]
    Redb(PathBuf, crate::queue::redb::RedbOptions),
    /// In Redis at this URL (`redis://host:port/db`), shared by several nodes. Feature
    /// `queue-redis`. Redis must be reachable when the server starts.
    #[cfg(feature = "queue-redis")]
    Redis(String),
    /// A queue you built (any [`Queue`] implementation).
    Custom(Arc<dyn Queue>),
}

impl fmt::Debug for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueBackend::Memory => f.write_str("Memory"),
            #[cfg(feature = "queue-redb")]
            QueueBackend::Redb(p, o) => f.debug_tuple("Redb").field(p).field(o).finish(),
            #[cfg(feature = "queue-redis")]
            QueueBackend::Redis(_) => f.write_str("Redis(..)"),
            QueueBackend::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

enum Auth {
    None,
    Jwt(JwtConfig),
    Custom(Arc<dyn Authenticator>),
}

enum Fallback {
    Fixed(HttpFallback),
    WithHub(Box<dyn FnOnce(&Hub) -> HttpFallback + Send>),
}

/// Assembles a hub server: its listeners, WebSocket engine, sign-in, sign-on policy, offline
/// queue, limits, TLS and extra HTTP routes. Make one with [`Server::builder`], then
/// [`start`](ServerBuilder::start) it.
///
/// What is served where:
///
/// | listener | set with | serves |
/// |---|---|---|
/// | HTTP/WebSocket | [`http`](Self::http) | the chat door over WebSocket at [`DEFAULT_CHAT_PATH`] (`/gotalk/`), the room door at [`DEFAULT_ROOMS_PATH`] (`/ws?room=NAME`), the JS client at [`JS_CLIENT_PATH`], and every other plain HTTP request through [`http_fallback`](Self::http_fallback) (404 without one) |
/// | chat over TCP | [`chat_tcp`](Self::chat_tcp) | the chat door (gotalk over TCP) |
/// | tok over TCP | [`tok_tcp`](Self::tok_tcp) | the tok-style door (`u32` length-prefixed frames, the first is the token) |
/// | tok over WebSocket | [`tok_ws_path`](Self::tok_ws_path) (on the HTTP listener) | the tok-style door, one frame per WebSocket message, the token from the HTTP request (off by default) |
///
/// With `tls` (feature `tls`) every listener serves TLS (`wss://`, `https://`).
///
/// Defaults: no listener (set at least one), the preferred [`WsEngine`],
/// [`WsConfig::default`] (its Origin policy lets browsers of the same host and non-browser
/// clients in), no sign-in (set one, or enable anonymous connections in the
/// [`HubConfig`]), [`HubConfig::default`] (sign-on [`SignOn::Single`], the limits of
/// [`HubLimits::default`]), the memory queue with [`QueueConfig::default`].
///
/// ```no_run
/// use std::time::Duration;
/// use chinwag::{Server, hub::{HubLimits, SignOn}};
///
/// # #[tokio::main] async fn main() -> chinwag::Result<()> {
/// let server = Server::builder()
///     .http("127.0.0.1:8080".parse()?)
///     .chat_tcp("127.0.0.1:4100".parse()?)
///     .tok_tcp("127.0.0.1:4200".parse()?)
///     .jwt_secret("a long random secret that signs the tokens")
///     .sign_on(SignOn::PerDevice)
///     .limits(HubLimits::default().with_max_connections(50_000))
///     .start()
///     .await?;
/// println!("chat at {}", server.chat_url().unwrap());
/// server.shutdown(Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until started"]
pub struct ServerBuilder {
    http: Option<SocketAddr>,
    chat_path: String,
    rooms_path: Option<String>,
    rooms_password_in_query: bool,
    rooms: Vec<(String, RoomOptions)>,
    chat_tcp: Option<SocketAddr>,
    tok_tcp: Option<SocketAddr>,
    engine: Option<WsEngine>,
    ws: WsConfig,
    tcp: TcpConfig,
    auth: Auth,
    hub: HubConfig,
    queue: QueueBackend,
    queue_config: QueueConfig,
    history: HistoryBackend,
    history_config: HistoryConfig,
    app: Option<Arc<dyn App>>,
    directory: Option<Arc<dyn Directory>>,
    #[cfg(feature = "cluster-redis")]
    cluster: Option<Cluster>,
    rpc: RpcConfig,
    sessions: Option<ServerConfig>,
    tok_bye: Option<ByeFn>,
    tok_ws_path: Option<String>,
    tok_ws_token_query: Option<String>,
    tok_max_frame: Option<usize>,
    tok_ping: Option<TokPing>,
    static_tokens: Option<StaticTokens>,
    fallback: Option<Fallback>,
    handlers: Vec<(String, HttpHandler)>,
    api: Option<ApiConfig>,
    js_client: bool,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            http: None,
            chat_path: DEFAULT_CHAT_PATH.to_owned(),
            rooms_path: Some(DEFAULT_ROOMS_PATH.to_owned()),
            rooms_password_in_query: false,
            rooms: Vec::new(),
            chat_tcp: None,
            tok_tcp: None,
            engine: WsEngine::preferred(),
            ws: WsConfig::default(),
            tcp: TcpConfig::default(),
            auth: Auth::None,
            hub: HubConfig::default(),
            queue: QueueBackend::Memory,
            queue_config: QueueConfig::default(),
            history: HistoryBackend::Memory,
            history_config: HistoryConfig::default(),
            app: None,
            directory: None,
            #[cfg(feature = "cluster-redis")]
            cluster: None,
            rpc: RpcConfig::default(),
            sessions: None,
            tok_bye: None,
            tok_ws_path: None,
            tok_ws_token_query: None,
            tok_max_frame: None,
            tok_ping: None,
            static_tokens: None,
            fallback: None,
            handlers: Vec::new(),
            api: None,
            js_client: true,
            tls: None,
        }
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("http", &self.http)
            .field("chat_path", &self.chat_path)
            .field("rooms_path", &self.rooms_path)
            .field("chat_tcp", &self.chat_tcp)
            .field("tok_tcp", &self.tok_tcp)
            .field("tok_ws_path", &self.tok_ws_path)
            .field("engine", &self.engine)
            .field("queue", &self.queue)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    // ---- listeners --------------------------------------------------------------------------

    /// The HTTP/WebSocket listener: the chat door at `/gotalk/`, the room door at `/ws`, the
    /// JS client at `/chinwag.js`, other requests through the [`http_fallback`](Self::http_fallback).
    /// Port 0 picks a free port ([`Server::http_addr`] tells which).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// The path of the chat door on the HTTP listener (exact match). Default `/gotalk/`.
    pub fn chat_path(mut self, path: impl Into<String>) -> Self {
        self.chat_path = path.into();
        self
    }

    /// The path of the room door on the HTTP listener (exact match; the room is the `room`
    /// query parameter), or `None` for no room door. Default `/ws`.
    pub fn rooms_path(mut self, path: Option<&str>) -> Self {
        self.rooms_path = path.map(str::to_owned);
        self
    }

    /// Whether the room door also takes a room's password from the `password` query parameter
    /// (besides the `X-Room-Password` header). Off by default: URLs end up in logs.
    pub fn rooms_password_in_query(mut self, on: bool) -> Self {
        self.rooms_password_in_query = on;
        self
    }

    /// A TCP listener for the chat door (gotalk over TCP: Go gotalk clients, `chinwag-rpc`).
    pub fn chat_tcp(mut self, addr: SocketAddr) -> Self {
        self.chat_tcp = Some(addr);
        self
    }

    /// A TCP listener for the tok-style door (length-prefixed frames; the first is the token,
    /// later ones go to [`App::on_receive`](crate::hub::App::on_receive)).
    pub fn tok_tcp(mut self, addr: SocketAddr) -> Self {
        self.tok_tcp = Some(addr);
        self
    }

    /// The goodbye frame the tok door sends before the hub closes a connection (none by
    /// default: TCP has no close codes).
    pub fn tok_bye(mut self, bye: ByeFn) -> Self {
        self.tok_bye = Some(bye);
        self
    }

    /// The path of the tok-style door over WebSocket on the HTTP listener (exact match), or
    /// `None` (the default) for none. As tok's WebSocket adapters: the token comes with the
    /// HTTP request (the `Authorization` header: the token or `Bearer <token>`; the query
    /// parameter of [`tok_ws_token_query`](Self::tok_ws_token_query) when set), every
    /// WebSocket message is one frame to [`App::on_receive`](crate::hub::App::on_receive), and
    /// every frame the server sends is one binary message. The WebSocket message limit
    /// ([`ws_config`](Self::ws_config)) must allow the door's largest frame.
    ///
    /// ```no_run
    /// # async fn f() -> chinwag::Result<()> {
    /// let server = chinwag::Server::builder()
    ///     .http("127.0.0.1:8080".parse()?)
    ///     .tok_ws_path(Some("/tok"))
    ///     .jwt_secret("a long random secret that signs the tokens")
    ///     .start()
    ///     .await?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn tok_ws_path(mut self, path: Option<&str>) -> Self {
        self.tok_ws_path = path.map(str::to_owned);
        self
    }

    /// The query parameter the tok WebSocket door also takes the token from (when the request
    /// has no `Authorization` header: what a browser can send). Default none: URLs end up in
    /// logs.
    pub fn tok_ws_token_query(mut self, name: Option<&str>) -> Self {
        self.tok_ws_token_query = name.map(str::to_owned);
        self
    }

    /// The largest frame of the tok door (both transports), in bytes. Default: the hub's body
    /// limit ([`HubLimits::max_body_bytes`]); more than it is refused at
    /// [`start`](Self::start), since the hub would refuse such frames (tok's limit is 4 MiB:
    /// raise both).
    pub fn tok_max_frame(mut self, bytes: usize) -> Self {
        self.tok_max_frame = Some(bytes);
        self
    }

    /// tok's server ping on the tok door (both transports): the frame the server writes
    /// whenever it wrote nothing else for the period. None by default.
    pub fn tok_ping(mut self, ping: Option<TokPing>) -> Self {
        self.tok_ping = ping;
        self
    }

    /// Settings of the TCP listeners (backlog, `TCP_NODELAY`, connection budget).
    pub fn tcp_config(mut self, config: TcpConfig) -> Self {
        self.tcp = config;
        self
    }

    // ---- WebSocket --------------------------------------------------------------------------

    /// The WebSocket engine of the HTTP listener. Default [`WsEngine::preferred`].
    pub fn engine(mut self, engine: WsEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// WebSocket settings of the HTTP listener: limits, keepalive, the Origin policy, the
    /// connection budget (shared by both doors on the port). Default [`WsConfig::default`].
    pub fn ws_config(mut self, config: WsConfig) -> Self {
        self.ws = config;
        self
    }

    /// Answers the plain HTTP requests of the HTTP listener (pages, `/metrics`, health
    /// checks). It runs on the connection's task: answer quickly, from prepared bytes.
    /// Returning `None` falls through to the JS client (if on) and then 404.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chinwag::http::{self, HttpFallback};
    ///
    /// let routes: HttpFallback = Arc::new(|req| match req.uri().path() {
    ///     "/healthz" => Some(http::text(200, "ok\n")),
    ///     _ => None,
    /// });
    /// let builder = chinwag::Server::builder().http_fallback(routes);
    /// ```
    pub fn http_fallback(mut self, fallback: HttpFallback) -> Self {
        self.fallback = Some(Fallback::Fixed(fallback));
        self
    }

    /// Like [`http_fallback`](Self::http_fallback), made once the hub exists — for routes
    /// that need it (`/readyz` asking [`Hub::is_stopping`], a page showing who is online).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chinwag::http::{self, HttpFallback};
    ///
    /// let builder = chinwag::Server::builder().http_fallback_with(|hub| {
    ///     let hub = hub.clone();
    ///     let f: HttpFallback = Arc::new(move |req| {
    ///         (req.uri().path() == "/readyz").then(|| match hub.is_stopping() {
    ///             false => http::text(200, "ready\n"),
    ///             true => http::text(503, "stopping\n"),
    ///         })
    ///     });
    ///     f
    /// });
    /// ```
    pub fn http_fallback_with(
        mut self,
        make: impl FnOnce(&Hub) -> HttpFallback + Send + 'static,
    ) -> Self {
        self.fallback = Some(Fallback::WithHub(Box::new(make)));
        self
    }

    /// Answers the plain HTTP requests of the HTTP listener whose path starts with `prefix`
    /// with `handler`, asynchronously and with the whole request (it may read the body: bound
    /// it with [`read_body`](crate::http::read_body)). Handlers are tried before the
    /// [`http_fallback`](Self::http_fallback), in the order they were added.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use chinwag::http::{self, HttpHandler, read_body};
    ///
    /// let echo: HttpHandler = Arc::new(|req| {
    ///     Box::pin(async move {
    ///         match read_body(req.into_body(), 4096, Duration::from_secs(5)).await {
    ///             Ok(body) => http::with_type(200, "text/plain", body),
    ///             Err(e) => e.to_response(),
    ///         }
    ///     })
    /// });
    /// let builder = chinwag::Server::builder().http_handler("/echo/", echo);
    /// ```
    pub fn http_handler(mut self, prefix: impl Into<String>, handler: HttpHandler) -> Self {
        self.handlers.push((prefix.into(), handler));
        self
    }

    /// The server API ([`crate::api`], `docs/server-api.md`) at `POST /api/<method>` on the
    /// HTTP listener, with `config`'s key and bounds. Off (404) when the key is empty, or when
    /// this is not called.
    ///
    /// ```
    /// use chinwag::api::ApiConfig;
    ///
    /// let builder = chinwag::Server::builder().api(ApiConfig::new("a long random API key"));
    /// ```
    pub fn api(mut self, config: ApiConfig) -> Self {
        self.api = Some(config);
        self
    }

    /// Whether the HTTP listener serves the JavaScript client (`chinwag.js`, with ETag and
    /// gzip) at [`JS_CLIENT_PATH`] when the fallback does not answer that path. Default on.
    pub fn js_client(mut self, on: bool) -> Self {
        self.js_client = on;
        self
    }

    /// TLS for every listener (`wss://` and `https://` on the HTTP listener, TLS on the TCP
    /// doors). Build the config with [`tls::server_config`](crate::tls::server_config) from
    /// PEM, or by hand with rustls. Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    // ---- sign-in and the hub ----------------------------------------------------------------

    /// Sign-in with HS256 JWTs signed with `secret` (`sub` is the user, `device` the device;
    /// see `chinwag::hub::auth`). Replaces any other sign-in set before.
    pub fn jwt_secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.jwt(JwtConfig::new(JwtKey::hs256(secret)))
    }

    /// Sign-in with JWTs under `config` (any key: HS*, RS256, ES256, Ed25519; issuer,
    /// audience, leeway). Replaces any other sign-in set before.
    pub fn jwt(mut self, config: JwtConfig) -> Self {
        self.auth = Auth::Jwt(config);
        self
    }

    /// Opaque tokens from a fixed table, each naming a user and device (a tok client's first
    /// frame), checked before the sign-in set with [`jwt`](Self::jwt),
    /// [`jwt_secret`](Self::jwt_secret) or [`authenticator`](Self::authenticator) (which gets
    /// the tokens that are not in the table). Any fallback of `tokens` itself is replaced by
    /// that sign-in.
    ///
    /// ```no_run
    /// use chinwag::hub::auth::StaticTokens;
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens = StaticTokens::new().with_token("s3cret", "alice", Some("phone"))?;
    /// let server = chinwag::Server::builder()
    ///     .tok_tcp("127.0.0.1:4200".parse()?)
    ///     .static_tokens(tokens)
    ///     .start()
    ///     .await?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn static_tokens(mut self, tokens: StaticTokens) -> Self {
        self.static_tokens = Some(tokens);
        self
    }

    /// Sign-in by your own [`Authenticator`]. Replaces any other sign-in set before.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.auth = Auth::Custom(authenticator);
        self
    }

    /// A room made at [`start`](Self::start), before any door listens (so no join can make an
    /// open room of that name first): with a password, presence events, a member limit, its
    /// history ([`RoomOptions`]). It is kept when empty, as rooms made by
    /// [`Hub::create_room`] are. On a cluster node, a room another node made already is left
    /// as that node made it.
    ///
    /// ```no_run
    /// use chinwag::{Server, hub::RoomOptions};
    ///
    /// # #[tokio::main] async fn main() -> chinwag::Result<()> {
    /// let server = Server::builder()
    ///     .http("127.0.0.1:8080".parse()?)
    ///     .jwt_secret("a long random secret that signs the tokens")
    ///     .room("lobby", RoomOptions::new().with_presence_events(true))
    ///     .room("staff", RoomOptions::new().with_password("s3cret"))
    ///     .start()
    ///     .await?;
    /// assert!(server.hub().room("staff").is_some_and(|r| r.protected));
    /// # Ok(()) }
    /// ```
    pub fn room(mut self, name: impl Into<String>, options: RoomOptions) -> Self {
        self.rooms.push((name.into(), options));
        self
    }

    /// The hub's whole configuration (replaces what [`sign_on`](Self::sign_on),
    /// [`limits`](Self::limits) and [`anonymous`](Self::anonymous) set before; call them after
    /// it to change its fields).
    pub fn config(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// The sign-on policy: one connection per user ([`SignOn::Single`], the default; a new
    /// sign-on replaces the old, which gets a `bye`), per device, or up to N.
    pub fn sign_on(mut self, policy: SignOn) -> Self {
        self.hub.sign_on = policy;
        self
    }

    /// The hub's limits ([`HubLimits::default`] unless set).
    pub fn limits(mut self, limits: HubLimits) -> Self {
        self.hub.limits = limits;
        self
    }

    /// Lets connections without a token in, each as a new user `anon-<random>` (off by
    /// default).
    pub fn anonymous(mut self, on: bool) -> Self {
        self.hub.anonymous = on;
        self
    }

    /// The application's hooks (before-receive, before-send, after-send, close, tok frames).
    pub fn app(mut self, app: Arc<dyn App>) -> Self {
        self.app = Some(app);
        self
    }

    /// The event proxy ([`EventProxy`](crate::proxy::EventProxy)) as the application's hooks
    /// and, when it has a `connect` URL, as the sign-in (replacing any set before; set no
    /// other [`app`](Self::app) after it).
    pub fn event_proxy(mut self, proxy: crate::proxy::EventProxy) -> Self {
        if proxy.authenticates() {
            self.auth = Auth::Custom(Arc::new(proxy.clone()));
        }
        self.app = Some(Arc::new(proxy));
        self
    }

    /// Where users are connected (default: this process only; a cluster sets its own).
    /// For the Redis cluster, use `redis_cluster` (feature `cluster-redis`) instead: it also
    /// starts the node's listener and lease.
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    // ---- cluster ----------------------------------------------------------------------------

    /// Runs this server as one node of a cluster through the Redis at `url`
    /// (`redis://host:port/db`), with the default key prefix and
    /// [`DirectoryConfig`](crate::cluster::redis::DirectoryConfig). Feature `cluster-redis`.
    ///
    /// At [`start`](Self::start) the server connects a
    /// [`RedisDirectory`](crate::cluster::redis::RedisDirectory) (Redis must be reachable
    /// then), makes it the hub's directory, and starts its listener and node lease
    /// ([`RedisDirectory::serve`](crate::cluster::redis::RedisDirectory::serve));
    /// [`Server::shutdown`] stops them. Sign-ons are refused as unavailable until the lease is
    /// registered ([`Server::cluster_status`] tells when).
    ///
    /// The hub's [`HubConfig::node`] must be set, unique among the cluster's live processes
    /// and not 0 (a fresh random id per process start is simplest): `start` refuses node 0.
    ///
    /// The offline queue is the cluster's: the Redis queue on the same Redis (the default
    /// when no queue is set; a per-node queue is refused), publishing a notice of each push to
    /// the nodes holding the recipient's connections, and the hub runs with
    /// [`HubConfig::shared_queue`](crate::hub::HubConfig::shared_queue): message ids are the
    /// queue's per-user entry ids, one order across nodes. A [`queue`](Self::queue) you built
    /// must be shared by every node and publish those notices itself
    /// ([`RedisDirectory::notices_prefix`](crate::cluster::redis::RedisDirectory::notices_prefix)).
    ///
    /// Room history likewise: the Redis history on the cluster's Redis (the default; `None`
    /// keeps rooms per node), publishing each publication to the nodes with members in the
    /// room, with [`HubConfig::shared_history`](crate::hub::HubConfig::shared_history).
    ///
    /// What the cluster shares: the sign-on policies (a sign-on on one node replaces
    /// connections on others, closed with 4003), the online counts and device lists, direct
    /// messages (a send on any node reaches the user's connections on every node, in order;
    /// acks remove it cluster-wide), and the publications of rooms that keep history (one
    /// epoch and one offset order for all nodes), with their options, passwords and presence
    /// events and member lists (`docs/cluster.md`).
    ///
    /// ```no_run
    /// use chinwag::hub::{HubConfig, NodeId};
    ///
    /// # async fn f() -> chinwag::Result<()> {
    /// let server = chinwag::Server::builder()
    ///     .chat_tcp("0.0.0.0:4100".parse()?)
    ///     .jwt_secret("a long random secret that signs the tokens")
    ///     .config(HubConfig::default().with_node(NodeId(rand_node_id())))
    ///     .redis_cluster("redis://10.0.0.5:6379/") // the queue too, on the same Redis
    ///     .start()
    ///     .await?;
    /// # let _ = server; Ok(()) }
    /// # fn rand_node_id() -> u64 { 7 }
    /// ```
    #[cfg(feature = "cluster-redis")]
    pub fn redis_cluster(self, url: impl Into<String>) -> Self {
        self.redis_cluster_with(
            url,
            crate::cluster::redis::DEFAULT_PREFIX,
            crate::cluster::redis::DirectoryConfig::default(),
        )
    }

    /// Like [`redis_cluster`](Self::redis_cluster), with keys and channels under `prefix`
    /// (clusters with different prefixes on one Redis are independent) and the directory's
    /// `config` (lease TTL, reconnect backoff, ...). Feature `cluster-redis`.
    #[cfg(feature = "cluster-redis")]
    pub fn redis_cluster_with(
        mut self,
        url: impl Into<String>,
        prefix: impl Into<String>,
        config: crate::cluster::redis::DirectoryConfig,
    ) -> Self {
        self.cluster = Some(Cluster::Connect {
            url: url.into(),
            prefix: prefix.into(),
            config,
        });
        self
    }

    /// Like [`redis_cluster`](Self::redis_cluster), with a directory you connected yourself
    /// (the server serves it: do not call its `serve`). Feature `cluster-redis`.
    #[cfg(feature = "cluster-redis")]
    pub fn redis_directory(
        mut self,
        directory: Arc<crate::cluster::redis::RedisDirectory>,
    ) -> Self {
        self.cluster = Some(Cluster::Ready(directory));
        self
    }

    /// RPC settings of the chat door (request limits, heartbeats, the send queue).
    pub fn rpc_config(mut self, config: RpcConfig) -> Self {
        self.rpc = config;
        self
    }

    /// Server and session settings of the room and tok doors (send queue size and overflow
    /// policy, admission bounds), and the admission bounds of the chat door.
    pub fn session_config(mut self, config: ServerConfig) -> Self {
        self.sessions = Some(config);
        self
    }

    // ---- room history -----------------------------------------------------------------------

    /// Where rooms keep their recent publications (default [`HistoryBackend::Memory`]); what
    /// they keep is [`HubConfig::history`](crate::hub::HubConfig::history).
    pub fn history_backend(mut self, backend: HistoryBackend) -> Self {
        self.history = backend;
        self
    }

    /// Bounds of the history store (payload, rooms, bytes overall). Default
    /// [`HistoryConfig::default`].
    pub fn history_config(mut self, config: HistoryConfig) -> Self {
        self.history_config = config;
        self
    }

    // ---- offline queue ----------------------------------------------------------------------

    /// The offline queue's backend (default [`QueueBackend::Memory`]).
    pub fn queue_backend(mut self, backend: QueueBackend) -> Self {
        self.queue = backend;
        self
    }

    /// A queue you built.
    pub fn queue(self, queue: Arc<dyn Queue>) -> Self {
        self.queue_backend(QueueBackend::Custom(queue))
    }

    /// The durable queue in the redb file at `path` (created if missing; its directory must
    /// exist), with the default [`RedbOptions`](crate::queue::redb::RedbOptions). Feature
    /// `queue-redb`.
    #[cfg(feature = "queue-redb")]
    pub fn redb_queue(self, path: impl Into<PathBuf>) -> Self {
        self.redb_queue_with(path, crate::queue::redb::RedbOptions::default())
    }

    /// The durable queue in the redb file at `path`, opened with `options` (e.g. the page
    /// cache's size). Feature `queue-redb`.
    #[cfg(feature = "queue-redb")]
    pub fn redb_queue_with(
        self,
        path: impl Into<PathBuf>,
        options: crate::queue::redb::RedbOptions,
    ) -> Self {
        self.queue_backend(QueueBackend::Redb(path.into(), options))
    }

    /// The Redis queue at `url` (`redis://host:port/db`). Feature `queue-redis`.
    #[cfg(feature = "queue-redis")]
    pub fn redis_queue(self, url: impl Into<String>) -> Self {
        self.queue_backend(QueueBackend::Redis(url.into()))
    }

    /// Bounds of the memory, redb and Redis queues (entries and bytes per user and in total,
    /// overflow policy). Default [`QueueConfig::default`]. A [`queue`](Self::queue) you built
    /// keeps its own.
    ///
    /// With these backends the hub's offline store bound,
    /// [`OfflineShares::total_bytes`](crate::hub::OfflineShares::total_bytes), is set from
    /// [`max_total_bytes`](QueueConfig::max_total_bytes) at [`start`](Self::start), whatever
    /// the [`HubConfig`] says, so the two cannot disagree.
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        self.queue_config = config;
        self
    }

    // ---- start ------------------------------------------------------------------------------

    /// Opens the queue, builds the hub, binds the listeners and starts the doors. Call it
    /// inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no listener is set, nobody could sign in (no sign-in and no
    /// anonymous connections), the HTTP listener is set without a WebSocket engine, or a
    /// Redis cluster is set with node 0 or together with a [`directory`](Self::directory);
    /// [`Error::Queue`] when the queue cannot be opened; [`Error::Directory`] when the
    /// cluster's Redis cannot be reached; [`Error::Bind`] when a listener cannot be bound
    /// (what was started already is stopped again).
    pub async fn start(self) -> Result<Server> {
        if self.http.is_none() && self.chat_tcp.is_none() && self.tok_tcp.is_none() {
            return Err(Error::Config(
                "no listener: set at least one of http, chat_tcp, tok_tcp".into(),
            ));
        }
        let static_tokens = self.static_tokens.filter(|t| !t.is_empty());
        if matches!(self.auth, Auth::None) && static_tokens.is_none() && !self.hub.anonymous {
            return Err(Error::Config(
                "nobody could sign in: set jwt_secret, jwt, authenticator or static_tokens, or \
                 allow anonymous connections"
                    .into(),
            ));
        }
        let tok_max_frame = self.tok_max_frame.unwrap_or(self.hub.limits.max_body_bytes);
        if tok_max_frame > self.hub.limits.max_body_bytes {
            return Err(Error::Config(format!(
                "the tok door's frame limit ({tok_max_frame} bytes) is over the hub's body limit \
                 ({} bytes), which would refuse such frames: raise HubLimits::max_body_bytes too",
                self.hub.limits.max_body_bytes
            )));
        }
        if self.tok_ws_path.is_some() && self.http.is_some() {
            let ws_limit = self.ws.max_message_size.min(self.ws.max_frame_size);
            if ws_limit < tok_max_frame {
                return Err(Error::Config(format!(
                    "the tok WebSocket door's frame limit ({tok_max_frame} bytes) is over the \
                     WebSocket message limit ({ws_limit} bytes): raise WsConfig's \
                     max_message_size and max_frame_size"
                )));
            }
        }
        let engine = match (self.http, self.engine) {
            (Some(_), None) => {
                return Err(Error::Config(
                    "the HTTP listener needs a WebSocket engine: enable the ws-tungstenite, \
                     ws-fastwebsockets or ws-yawc feature"
                        .into(),
                ));
            }
            (_, e) => e,
        };
        if let Some(api) = self.api.as_ref().filter(|a| a.is_on()) {
            api.check()?;
        }
        if self.rooms_path.as_deref() == Some(self.chat_path.as_str()) {
            return Err(Error::Config(format!(
                "the chat and room doors cannot share the path {}",
                self.chat_path
            )));
        }
        if let Some(p) = &self.tok_ws_path
            && (p == &self.chat_path || self.rooms_path.as_ref() == Some(p))
        {
            return Err(Error::Config(format!(
                "the tok WebSocket door cannot share the path {p} with the chat or room door"
            )));
        }
        #[cfg(feature = "cluster-redis")]
        let cluster_url = match &self.cluster {
            Some(Cluster::Connect { url, .. }) => Some(url.clone()),
            _ => None,
        };
        #[cfg(feature = "cluster-redis")]
        let directory = match self.cluster {
            None => None,
            Some(_) if self.directory.is_some() => {
                return Err(Error::Config(
                    "set either a directory or a Redis cluster, not both".into(),
                ));
            }
            Some(_) if self.hub.node.0 == 0 => {
                return Err(Error::Config(
                    "a cluster node needs a node id other than 0 (HubConfig::node), unique \
                     among the cluster's live processes"
                        .into(),
                ));
            }
            Some(Cluster::Ready(d)) => Some(d),
            Some(Cluster::Connect {
                url,
                prefix,
                config,
            }) => Some(Arc::new(
                crate::cluster::redis::RedisDirectory::connect_with(&url, &prefix, config)
                    .await
                    .map_err(crate::hub::DirectoryError::from)?,
            )),
        };
        #[cfg(feature = "cluster-redis")]
        let self_directory = match &directory {
            Some(d) => Some(d.clone() as Arc<dyn Directory>),
            None => self.directory,
        };
        #[cfg(not(feature = "cluster-redis"))]
        let self_directory = self.directory;
        let mut hub_config = self.hub;
        #[allow(unused_mut)]
        let mut queue_backend = self.queue;
        #[allow(unused_mut)]
        let mut notices = None;
        #[allow(unused_mut)]
        let mut history_backend = self.history;
        #[allow(unused_mut)]
        let mut room_notices = None;
        #[cfg(feature = "cluster-redis")]
        if let Some(d) = &directory {
            // One queue for the whole cluster, whose order is every user's order, with a push
            // notice to the nodes holding the recipient's connections.
            hub_config.shared_queue = true;
            notices = Some(d.notices_prefix());
            queue_backend = cluster_queue(queue_backend, cluster_url.as_deref())?;
            // One history, whose offsets are every room's, with a notice of each publication
            // to the nodes with members in the room.
            let (b, shared) =
                crate::history::cluster_history(history_backend, cluster_url.as_deref())?;
            history_backend = b;
            hub_config.shared_history = shared;
            room_notices = shared.then(|| d.rooms_prefix());
        }
        if !matches!(queue_backend, QueueBackend::Custom(_)) {
            // The fair shares of the offline store are shares of the queue's own bound.
            hub_config.limits.offline.total_bytes = self.queue_config.max_total_bytes;
        }
        let (queue, history) = open_stores(
            (queue_backend, self.queue_config, notices),
            (history_backend, self.history_config, room_notices),
        )
        .await?;

        let mut hub = Hub::builder().config(hub_config).queue(queue);
        if let Some(h) = history {
            hub = hub.history(h);
        }
        let authenticator: Option<Arc<dyn Authenticator>> = match self.auth {
            Auth::None => None,
            Auth::Jwt(cfg) => Some(Arc::new(JwtAuthenticator::new(cfg))),
            Auth::Custom(a) => Some(a),
        };
        let authenticator = match (static_tokens, authenticator) {
            (Some(t), Some(a)) => Some(Arc::new(t.with_fallback(a)) as Arc<dyn Authenticator>),
            (Some(t), None) => Some(Arc::new(t) as Arc<dyn Authenticator>),
            (None, a) => a,
        };
        if let Some(a) = authenticator {
            hub = hub.authenticator(a);
        }
        if let Some(app) = self.app {
            hub = hub.app(app);
        }
        if let Some(d) = self_directory {
            hub = hub.directory(d);
        }
        let hub = hub.build();
        #[cfg(feature = "cluster-redis")]
        let cluster = directory.map(|directory| {
            let listener = directory.serve(&hub);
            tracing::info!(
                node = hub.config().node.0,
                "cluster node: listener and lease started"
            );
            ClusterNode {
                directory,
                status: listener.status(),
                listener: std::sync::Mutex::new(Some(listener)),
            }
        });

        for (name, options) in self.rooms {
            match hub.create_room(&name, options).await {
                Ok(_) => tracing::info!(room = %name, "room made at start"),
                Err(crate::hub::RoomError::Exists) if hub.config().node.0 != 0 => {
                    tracing::info!(room = %name, "room made at start by another node already");
                }
                Err(e) => {
                    hub.shutdown(Duration::ZERO).await;
                    return Err(Error::Config(format!("cannot make the room {name}: {e}")));
                }
            }
        }
        let sessions = self.sessions.unwrap_or_default();
        let chat = ChatDoor::new(hub.clone())
            .with_rpc_config(self.rpc)
            .with_server_config(sessions.clone());
        let rooms = RoomsDoor::new(hub.clone())
            .with_server_config(sessions.clone())
            .with_password_in_query(self.rooms_password_in_query);
        let mut tok = TokDoor::new(hub.clone())
            .with_server_config(sessions)
            .with_max_frame(tok_max_frame)
            .with_ping(self.tok_ping)
            .with_ws_token_query(self.tok_ws_token_query.as_deref());
        if let Some(bye) = self.tok_bye {
            tok = tok.with_bye(bye);
        }

        let tls = self.tls;
        let mut server = Server {
            hub: hub.clone(),
            doors: Vec::new(),
            http: None,
            chat_tcp: None,
            tok: None,
            engine: None,
            chat_path: self.chat_path.clone(),
            rooms_path: self.rooms_path.clone(),
            tok_ws_path: self.tok_ws_path.clone(),
            tls: tls.is_some(),
            #[cfg(feature = "cluster-redis")]
            cluster,
        };
        let started = async {
            if let (Some(addr), Some(engine)) = (self.http, engine) {
                let fallback = compose_fallback(
                    self.fallback.map(|f| match f {
                        Fallback::Fixed(f) => f,
                        Fallback::WithHub(make) => make(&hub),
                    }),
                    self.js_client,
                );
                let mut routes = HttpRoutes::new().fallback(fallback);
                if let Some(config) = self.api.filter(ApiConfig::is_on) {
                    routes = routes.handler(API_PREFIX, Api::new(hub.clone(), config)?.handler());
                    tracing::info!(prefix = API_PREFIX, "server API on");
                }
                for (prefix, handler) in self.handlers {
                    routes = routes.handler(prefix, handler);
                }
                let mut paths = vec![self.chat_path.as_str()];
                paths.extend(self.rooms_path.as_deref());
                paths.extend(self.tok_ws_path.as_deref());
                let http = HttpParts {
                    addr,
                    paths: &paths,
                    ws: self.ws,
                    tls: tls.clone(),
                    routes,
                    chat: &chat,
                    rooms: self.rooms_path.is_some().then_some(&rooms),
                    tok: self.tok_ws_path.is_some().then_some(&tok),
                };
                let (local, doors) = http.serve_with(engine).await?;
                server.http = Some(local);
                server.engine = Some(engine);
                server.doors.extend(doors);
            }
            if let Some(addr) = self.chat_tcp {
                let door = serve_tcp(addr, "chat-tcp", &self.tcp, tls.as_ref(), &chat)?;
                server.chat_tcp = door_addr(&door);
                server.doors.push(door);
            }
            if let Some(addr) = self.tok_tcp {
                let door = serve_tcp(addr, "tok", &self.tcp, tls.as_ref(), &tok)?;
                server.tok = door_addr(&door);
                server.doors.push(door);
            }
            Ok::<(), Error>(())
        }
        .await;
        match started {
            Ok(()) => {
                tracing::info!(
                    http = ?server.http,
                    chat_tcp = ?server.chat_tcp,
                    tok = ?server.tok,
                    engine = ?server.engine.map(WsEngine::name),
                    tls = server.tls,
                    "chinwag hub server started"
                );
                Ok(server)
            }
            Err(e) => {
                // Nothing is connected yet: stop what was started without waiting.
                server.shutdown(Duration::ZERO).await;
                Err(e)
            }
        }
    }
}

/// The queue of a cluster node: the cluster's Redis unless another Redis queue was set (the
/// memory default becomes the Redis at `cluster_url`); a per-node queue is refused. A queue
/// the caller built is taken as it is (it must be shared and publish push notices, see
/// [`ServerBuilder::redis_cluster`]).
#[cfg(feature = "cluster-redis")]
fn cluster_queue(backend: QueueBackend, cluster_url: Option<&str>) -> Result<QueueBackend> {
    match (backend, cluster_url) {
        (QueueBackend::Memory, Some(url)) => Ok(QueueBackend::Redis(url.to_owned())),
        (QueueBackend::Redis(url), Some(cluster)) if url != cluster => Err(Error::Config(format!(
            "a cluster node's offline queue must be on the cluster's Redis ({cluster}), not              {url}: the queue's push notices reach the nodes through it"
        ))),
        (b @ (QueueBackend::Redis(_) | QueueBackend::Custom(_)), _) => Ok(b),
        _ => Err(Error::Config(
            "a cluster node needs the offline queue every node shares: redis_queue on the              cluster's Redis (or none: it is then the default), not a per-node queue"
                .into(),
        )),
    }
}

/// The offline queue and the history. A Redis queue and a Redis history on the same Redis
/// share one connection, and the queue keeps the history: a direct message is queued and kept
/// in its conversation by one script ([`Queue::push_keeping`](crate::queue::Queue::push_keeping)).
async fn open_stores(
    (queue, queue_config, notices): (QueueBackend, QueueConfig, Option<String>),
    (history, history_config, room_notices): (HistoryBackend, HistoryConfig, Option<String>),
) -> Result<(Arc<dyn Queue>, Option<Arc<dyn History>>)> {
    #[cfg(feature = "queue-redis")]
    if let (QueueBackend::Redis(q_url), HistoryBackend::Redis(h_url)) = (&queue, &history)
        && q_url == h_url
    {
        let mut options = crate::queue::redis::RedisOptions::default();
        if let Some(prefix) = notices {
            options = options.notices(prefix);
        }
        let q = crate::queue::redis::RedisQueue::connect_with(q_url, queue_config, options).await?;
        let mut h = q.history(history_config);
        if let Some(prefix) = room_notices {
            h = h.with_notices(prefix);
        }
        let q = q.keeping(h.clone())?;
        return Ok((Arc::new(q), Some(Arc::new(h))));
    }
    let queue = open_queue(queue, queue_config, notices).await?;
    let history = open_history(history, history_config, room_notices).await?;
    Ok((queue, history))
}

async fn open_queue(
    backend: QueueBackend,
    config: QueueConfig,
    #[allow(unused_variables)] notices: Option<String>,
) -> Result<Arc<dyn Queue>> {
    Ok(match backend {
        QueueBackend::Memory => Arc::new(MemoryQueue::new(config)),
        #[cfg(feature = "queue-redb")]
        QueueBackend::Redb(path, options) => {
            // Opening reads (and after a crash repairs) the file: off the runtime's threads.
            let q = tokio::task::spawn_blocking(move || {
                let clock = Arc::new(crate::queue::SystemClock);
                crate::queue::redb::RedbQueue::open_with(path, config, options, clock)
            })
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??;
            Arc::new(q)
        }
        #[cfg(feature = "queue-redis")]
        QueueBackend::Redis(url) => {
            let mut options = crate::queue::redis::RedisOptions::default();
            if let Some(prefix) = notices {
                options = options.notices(prefix);
            }
            Arc::new(crate::queue::redis::RedisQueue::connect_with(&url, config, options).await?)
        }
        QueueBackend::Custom(q) => q,
    })
}

/// The user's routes first, then the JS client.
fn compose_fallback(user: Option<HttpFallback>, js_client: bool) -> Option<HttpFallback> {
    if !js_client {
        return user;
    }
    let js = Arc::new(StaticAsset::new(
        CHINWAG_JS,
        "text/javascript; charset=utf-8",
    ));
    Some(Arc::new(move |req| {
        if let Some(resp) = user.as_ref().and_then(|f| f(req)) {
            return Some(resp);
        }
        (req.uri().path() == JS_CLIENT_PATH).then(|| js.respond(req))
    }))
}

struct HttpParts<'a> {
    addr: SocketAddr,
    paths: &'a [&'a str],
    ws: WsConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: HttpRoutes,
    chat: &'a ChatDoor,
    rooms: Option<&'a RoomsDoor>,
    tok: Option<&'a TokDoor>,
}

impl HttpParts<'_> {
    async fn serve_with(self, engine: WsEngine) -> Result<(SocketAddr, Vec<DoorHandle>)> {
        match engine {
            #[cfg(feature = "ws-tungstenite")]
            WsEngine::Tungstenite => self.serve::<crate::ws::tungstenite::Tungstenite>().await,
            #[cfg(feature = "ws-fastwebsockets")]
            WsEngine::FastWebSockets => {
                self.serve::<crate::ws::fastwebsockets::FastWebSockets>()
                    .await
            }
            #[cfg(feature = "ws-yawc")]
            WsEngine::Yawc => self.serve::<crate::ws::yawc::Yawc>().await,
        }
    }

    #[cfg_attr(
        not(any(
            feature = "ws-tungstenite",
            feature = "ws-fastwebsockets",
            feature = "ws-yawc"
        )),
        allow(dead_code)
    )]
    async fn serve<E: Engine>(self) -> Result<(SocketAddr, Vec<DoorHandle>)> {
        let mut acceptors = WsAcceptor::<E>::bind_routes_with(
            self.addr,
            self.paths,
            self.ws,
            self.tls,
            self.routes,
        )
        .await
        .map_err(|source| Error::Bind {
            what: "http",
            addr: self.addr,
            source,
        })?
        .into_iter();
        let chat = acceptors
            .next()
            .ok_or_else(|| Error::Config("no acceptor for the chat path".into()))?;
        let local = chat.local_addr();
        let mut doors = vec![self.chat.serve(chat)];
        // The acceptors come in the order of the paths: chat, rooms (if on), tok (if on).
        if let Some(rooms) = self.rooms {
            let acc = acceptors
                .next()
                .ok_or_else(|| Error::Config("no acceptor for the room path".into()))?;
            doors.push(rooms.serve(acc));
        }
        if let Some(tok) = self.tok {
            let acc = acceptors
                .next()
                .ok_or_else(|| Error::Config("no acceptor for the tok path".into()))?;
            doors.push(tok.serve_ws(acc));
        }
        Ok((local, doors))
    }
}

/// The doors a TCP listener can serve (generic over the acceptor: TCP or TLS).
trait ServeDoor {
    fn serve_on<A: crate::transport::Acceptor>(&self, acceptor: A) -> DoorHandle;
}

impl ServeDoor for ChatDoor {
    fn serve_on<A: crate::transport::Acceptor>(&self, acceptor: A) -> DoorHandle {
        self.serve(acceptor)
    }
}

impl ServeDoor for TokDoor {
    fn serve_on<A: crate::transport::Acceptor>(&self, acceptor: A) -> DoorHandle {
        self.serve(acceptor)
    }
}

fn serve_tcp(
    addr: SocketAddr,
    what: &'static str,
    tcp: &TcpConfig,
    tls: Option<&Arc<rustls::ServerConfig>>,
    door: &impl ServeDoor,
) -> Result<DoorHandle> {
    let bind_err = |e: TransportError| match e {
        TransportError::Io(source) => Error::Bind { what, addr, source },
        other => Error::Transport(other),
    };
    Ok(match tls {
        Some(cfg) => {
            use crate::transport::tls::{TlsAcceptor, TlsConfig, TlsServerConfig};
            let server = TlsServerConfig::from_rustls(cfg.clone());
            let config = TlsConfig::default().with_tcp(tcp.clone());
            door.serve_on(TlsAcceptor::bind(addr, server, config).map_err(bind_err)?)
        }
        None => door.serve_on(TcpAcceptor::bind(addr, tcp.clone()).map_err(bind_err)?),
    })
}

fn door_addr(door: &DoorHandle) -> Option<SocketAddr> {
    match door.local_addr() {
        Some(PeerAddr::Ip(a)) => Some(*a),
        _ => None,
    }
}

/// A running hub server: its [`Hub`] (send to users, publish to rooms, ask who is online), the
/// addresses its doors listen on, and its graceful [`shutdown`](Server::shutdown).
///
/// Dropping it does not stop the doors: call [`shutdown`](Server::shutdown).
///
/// ```no_run
/// use std::time::Duration;
/// use chinwag::hub::{Body, SendOptions};
///
/// # async fn f() -> chinwag::Result<()> {
/// let server = chinwag::Server::builder()
///     .chat_tcp("127.0.0.1:4100".parse()?)
///     .jwt_secret("a long random secret that signs the tokens")
///     .start()
///     .await?;
/// let hub = server.hub();
/// hub.send("bob", Body::text("hello"), SendOptions::default().with_ttl(Duration::from_secs(3600)))
///     .await?;
/// println!("{} users online", hub.online_users().await?);
/// let summary = server.shutdown(Duration::from_secs(5)).await;
/// assert_eq!(summary.connections_left, 0);
/// # Ok(()) }
/// ```
pub struct Server {
    hub: Hub,
    doors: Vec<DoorHandle>,
    http: Option<SocketAddr>,
    chat_tcp: Option<SocketAddr>,
    tok: Option<SocketAddr>,
    engine: Option<WsEngine>,
    chat_path: String,
    rooms_path: Option<String>,
    tok_ws_path: Option<String>,
    tls: bool,
    #[cfg(feature = "cluster-redis")]
    cluster: Option<ClusterNode>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http)
            .field("chat_tcp", &self.chat_tcp)
            .field("tok", &self.tok)
            .field("engine", &self.engine)
            .field("tls", &self.tls)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// What a [`Server::shutdown`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Signed-on connections still open when the hub's part of the deadline ran out.
    pub connections_left: usize,
    /// Sessions (signed on or not) the doors had open when they began to stop.
    pub sessions: usize,
    /// Of those, sessions whose send queues were not fully written before the deadline.
    pub undrained: usize,
}

impl Server {
    /// A builder with the defaults listed at [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The hub: send to users, publish to rooms, kick, ask who is online.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The address of the HTTP/WebSocket listener (after binding port 0, the real port).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The URL of the chat door over WebSocket (`ws://ADDR/gotalk/`, `wss://` with TLS).
    pub fn chat_url(&self) -> Option<String> {
        let scheme = if self.tls { "wss" } else { "ws" };
        self.http
            .map(|a| format!("{scheme}://{a}{}", self.chat_path))
    }

    /// The URL of the tok door over WebSocket (`ws://ADDR/PATH`), when it is on.
    pub fn tok_ws_url(&self) -> Option<String> {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = self.tok_ws_path.as_deref()?;
        self.http.map(|a| format!("{scheme}://{a}{path}"))
    }

    /// The URL of the room door (`ws://ADDR/ws`; add `?room=NAME`), when it is on.
    pub fn rooms_url(&self) -> Option<String> {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = self.rooms_path.as_deref()?;
        self.http.map(|a| format!("{scheme}://{a}{path}"))
    }

    /// The address of the chat door over TCP.
    pub fn chat_tcp_addr(&self) -> Option<SocketAddr> {
        self.chat_tcp
    }

    /// The address of the tok-style door.
    pub fn tok_addr(&self) -> Option<SocketAddr> {
        self.tok
    }

    /// The WebSocket engine of the HTTP listener.
    pub fn engine(&self) -> Option<WsEngine> {
        self.engine
    }

    /// The running doors (`chat` over WebSocket and over TCP, `rooms`, `tok`), each with its
    /// address.
    pub fn doors(&self) -> &[DoorHandle] {
        &self.doors
    }

    /// With a Redis cluster ([`ServerBuilder::redis_cluster`]): a watch of the node's
    /// listener and lease ([`ListenerStatus`](crate::cluster::redis::ListenerStatus):
    /// `registered`, `fenced`, `subscribed`, ...), for readiness checks. `None` without a
    /// cluster. Feature `cluster-redis`.
    #[cfg(feature = "cluster-redis")]
    pub fn cluster_status(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::cluster::redis::ListenerStatus>> {
        self.cluster.as_ref().map(|c| c.status.clone())
    }

    /// With a Redis cluster: the node's directory (sweep a node by hand, read its keys).
    /// Feature `cluster-redis`.
    #[cfg(feature = "cluster-redis")]
    pub fn cluster_directory(&self) -> Option<&Arc<crate::cluster::redis::RedisDirectory>> {
        self.cluster.as_ref().map(|c| &c.directory)
    }

    /// Graceful shutdown within `deadline`: the hub refuses new sign-ons and closes every
    /// connection with 1001 (each gets what was queued for it first, then its door's
    /// goodbye; unacknowledged direct messages stay in the offline queue, so a durable queue
    /// delivers them after a restart); then the doors stop accepting, close what is left
    /// (1001) and wait for their sessions; a cluster node's listener and lease task stop
    /// last. Safe to call more than once.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownSummary {
        let until = Instant::now() + deadline;
        let connections_left = self.hub.shutdown(deadline).await;
        let left = until.saturating_duration_since(Instant::now());
        let reports =
            futures_util::future::join_all(self.doors.iter().map(|d| d.shutdown(left))).await;
        let mut summary = ShutdownSummary {
            connections_left,
            ..ShutdownSummary::default()
        };
        for r in reports {
            summary.sessions += r.sessions;
            summary.undrained += r.undrained;
        }
        // The cluster's listener and lease task end with the hub; stop them for sure. The
        // lease is not given back: the others sweep this node a TTL later (its sign-offs
        // removed its entries already).
        #[cfg(feature = "cluster-redis")]
        if let Some(c) = &self.cluster {
            let listener = c.listener.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(listener) = listener {
                listener.stop().await;
            }
        }
        tracing::info!(?summary, "chinwag hub server stopped");
        summary
    }
}
