//! The server's configuration: one typed tree ([`Settings`]) that *is* the libraries'
//! configuration — `[hub]` is [`HubConfig`] (with `[hub.limits]`, [`HubLimits`](chinwag::hub::HubLimits)),
//! `[queue.limits]` is [`QueueConfig`], `[queue.redb]` is [`RedbOptions`], `[websocket]` is
//! [`WsConfig`], `[sessions]` is the doors' [`ServerConfig`] — read with their own serde
//! (feature `serde` of the `chinwag` facade), plus what only the server has: listen addresses,
//! the engine, the data directory, TLS files, the JWT key, dev sign-in, logs.
//!
//! Four layers, with this precedence: **flags > `CHINWAG_*` environment variables > the TOML
//! file > defaults**. The keys are not listed here: they are the leaves of the default tree
//! serialized ([`keys`]), so a setting added to a library configuration is a key of the
//! server (with its default, its variable and its flag) with no code here. Every key
//! `a.b.c` is the variable `CHINWAG_A_B_C` and the flag `--a-b-c`.
//!
//! The layers are merged as TOML values over the default tree; an unknown key (in the file,
//! an unknown `CHINWAG_*` variable, a flag) or a value the libraries' types refuse is an error
//! that names the key and where it was set, before anything starts.
//!
//! A table the libraries also read as `"off"` (`websocket.deflate`,
//! `hub.limits.connection_rate`, ...: [`switches`], found by trying) is also a variable and a
//! flag of its own that take `off`: `CHINWAG_WEBSOCKET_DEFLATE=off`, `--websocket-deflate off`.
//!
//! The server compresses WebSocket messages by default ([`DEFLATE_BY_DEFAULT`], with
//! [`server_deflate`]'s settings, on the yawc engine only); `[websocket.deflate]`'s keys are
//! keys whatever that default.
//!
//! The help text of each key is its row in `docs/server.md` (embedded, [`reference`]), which a
//! test checks against [`keys`] and the defaults: a key without a row, or a row without a key,
//! fails it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chinwag::WsEngine;
use chinwag::cluster::redis::DirectoryConfig;
use chinwag::hub::HubConfig;
use chinwag::proxy::{FailurePolicy, ProxyConfig};
use chinwag::queue::QueueConfig;
use chinwag::queue::redb::RedbOptions;
use chinwag::session::ServerConfig;
use chinwag::ws::{DeflateConfig, WsConfig};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// A configuration error: what is wrong and with which key. The server exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// `[server]`: where the doors listen, the engine, the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct ServerSection {
    pub listen: String,
    pub tcp_listen: String,
    pub tok_listen: String,
    #[serde(with = "engine_name")]
    pub engine: WsEngine,
    pub data_dir: PathBuf,
    #[serde(with = "chinwag::transport::duration")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            tcp_listen: "127.0.0.1:8081".into(),
            tok_listen: "127.0.0.1:8082".into(),
            engine: WsEngine::Tungstenite,
            data_dir: "chinwag-data".into(),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The engine by the facade's own names (`tungstenite`, `fastwebsockets`, `yawc`).
mod engine_name {
    use chinwag::WsEngine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(e: &WsEngine, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(e.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WsEngine, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e: chinwag::Error| serde::de::Error::custom(e))
    }
}

/// `[tls]`: certificate and key (PEM files); both empty: no TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct TlsSection {
    pub cert: String,
    pub key: String,
}

/// The algorithm of `auth.public_key` (HS256 goes with `auth.secret`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)] // the names say it
pub enum Algorithm {
    #[default]
    #[serde(rename = "HS256")]
    Hs256,
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
    EdDSA,
}

/// `[auth]`: the JWT key and checks, and dev sign-in. Where tokens are looked for is the
/// hub's (`[hub.tokens]`), and so is `hub.anonymous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct AuthSection {
    pub secret: String,
    pub public_key: String,
    pub algorithm: Algorithm,
    pub issuer: String,
    pub audience: String,
    #[serde(with = "chinwag::transport::duration")]
    pub leeway: Duration,
    pub device_claim: String,
    pub dev_tokens: bool,
    #[serde(with = "chinwag::transport::duration")]
    pub dev_token_ttl: Duration,
}

impl Default for AuthSection {
    fn default() -> Self {
        use chinwag::hub::auth::{JwtConfig, JwtKey};
        let jwt = JwtConfig::new(JwtKey::hs256(b"defaults"));
        AuthSection {
            secret: String::new(),
            public_key: String::new(),
            algorithm: Algorithm::Hs256,
            issuer: String::new(),
            audience: String::new(),
            leeway: jwt.leeway,
            device_claim: jwt.device_claim,
            dev_tokens: true,
            dev_token_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where the offline queue lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // the names say it
pub enum Backend {
    #[default]
    Redb,
    Memory,
    Redis,
}

/// `[queue]`: the backend (the server's choice) and the libraries' settings of the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct QueueSection {
    pub backend: Backend,
    pub path: String,
    pub redis_url: String,
    /// `[queue.limits]`: `chinwag_queue::QueueConfig`.
    pub limits: QueueConfig,
    /// `[queue.redb]`: `chinwag_queue_redb::RedbOptions`.
    pub redb: RedbOptions,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            backend: Backend::Redb,
            path: String::new(),
            redis_url: String::new(),
            limits: QueueConfig::default(),
            redb: RedbOptions::default(),
        }
    }
}

/// `[cluster]`: several servers as one hub through Redis (`chinwag::cluster::redis`); an
/// empty `redis_url` is no cluster (one node, as without this section). The durations are
/// those of [`DirectoryConfig`](chinwag::cluster::redis::DirectoryConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct ClusterSection {
    pub redis_url: String,
    /// 0: a random id at each start ([`ClusterSection::node_id`]).
    pub node: u64,
    pub prefix: String,
    #[serde(with = "chinwag::transport::duration")]
    pub lease_ttl: Duration,
    #[serde(with = "chinwag::transport::duration")]
    pub sweep_lock: Duration,
    #[serde(with = "chinwag::transport::duration")]
    pub timeout: Duration,
    #[serde(with = "chinwag::transport::duration")]
    pub ping_interval: Duration,
    #[serde(with = "chinwag::transport::duration")]
    pub reconnect_min: Duration,
    #[serde(with = "chinwag::transport::duration")]
    pub reconnect_max: Duration,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let d = DirectoryConfig::default();
        ClusterSection {
            redis_url: String::new(),
            node: 0,
            prefix: chinwag::cluster::redis::DEFAULT_PREFIX.into(),
            lease_ttl: d.lease_ttl,
            sweep_lock: d.sweep_lock,
            timeout: d.timeout,
            ping_interval: d.ping_interval,
            reconnect_min: d.reconnect_min,
            reconnect_max: d.reconnect_max,
        }
    }
}

/// The largest random node id: 2^53 - 1, so that ids stay exact as JSON numbers and fit a
/// TOML integer.
pub const MAX_RANDOM_NODE: u64 = (1 << 53) - 1;

impl ClusterSection {
    /// Whether the server runs as a cluster node (`redis_url` is set).
    pub fn is_on(&self) -> bool {
        !self.redis_url.is_empty()
    }

    /// This start's node id: `node`, or when it is 0 a random one in 1..=2^53-1 (a fresh id
    /// per process start, as the node leases want: a restarted or fenced node comes back
    /// under a new id and never waits for its old lease).
    pub fn node_id(&self) -> u64 {
        if self.node != 0 {
            self.node
        } else {
            rand::random_range(1..=MAX_RANDOM_NODE)
        }
    }

    /// The directory's settings.
    pub fn directory_config(&self) -> DirectoryConfig {
        DirectoryConfig::default()
            .with_lease_ttl(self.lease_ttl)
            .with_sweep_lock(self.sweep_lock)
            .with_timeout(self.timeout)
            .with_ping_interval(self.ping_interval)
            .with_reconnect(self.reconnect_min, self.reconnect_max)
    }
}

/// One entry of `tok.tokens`: an opaque token and who it signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // documented in docs/server.md
pub struct StaticToken {
    pub token: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// `[tok]`: what lets an unchanged tok client in (`docs/server.md`, "tok profile"): static
/// tokens, the frame limit, the server ping, the tok door over WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct TokSection {
    pub tokens: Vec<StaticToken>,
    pub max_frame_bytes: usize,
    pub ping: String,
    #[serde(with = "chinwag::transport::duration")]
    pub ping_interval: Duration,
    pub ws_path: String,
    pub ws_token_query: String,
}

impl Default for TokSection {
    fn default() -> Self {
        TokSection {
            tokens: Vec::new(),
            max_frame_bytes: 0,
            ping: String::new(),
            ping_interval: chinwag::hub::doors::tok::TokPing::TOK_PERIOD,
            ws_path: String::new(),
            ws_token_query: String::new(),
        }
    }
}

/// `[api]`: the server API (`chinwag::api`, `docs/server-api.md`) at `POST /api/<method>` on
/// the HTTP port; an empty `key` is no API (404). The bounds are
/// [`ApiConfig`](chinwag::api::ApiConfig)'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct ApiSection {
    pub key: String,
    pub max_body_bytes: usize,
    #[serde(with = "chinwag::transport::duration")]
    pub body_timeout: Duration,
    pub max_batch: usize,
    pub max_page: usize,
    pub rate: chinwag::hub::Rate,
}

impl Default for ApiSection {
    fn default() -> Self {
        let d = chinwag::api::ApiConfig::default();
        ApiSection {
            key: String::new(),
            max_body_bytes: d.max_body_bytes,
            body_timeout: d.body_timeout,
            max_batch: d.max_batch,
            max_page: d.max_page,
            rate: d.rate,
        }
    }
}

impl TokSection {
    /// The table of `tok.tokens` (empty when there are none).
    ///
    /// # Errors
    ///
    /// An empty or repeated token, or a user or device that breaks the id grammar.
    pub fn static_tokens(&self) -> Result<chinwag::hub::auth::StaticTokens, ConfigError> {
        let mut t = chinwag::hub::auth::StaticTokens::new();
        for (i, e) in self.tokens.iter().enumerate() {
            t = t
                .with_token(&e.token, &e.user, e.device.as_deref())
                .map_err(|why| err(format!("bad value for `tok.tokens` (entry {i}): {why}")))?;
        }
        Ok(t)
    }

    /// The door's frame limit: `max_frame_bytes`, or the hub's body limit when it is 0.
    pub fn max_frame(&self, hub: &HubConfig) -> usize {
        if self.max_frame_bytes == 0 {
            hub.limits.max_body_bytes
        } else {
            self.max_frame_bytes
        }
    }

    /// The server ping: `ping` every `ping_interval`, when `ping` is set.
    pub fn ping(&self) -> Option<chinwag::hub::doors::tok::TokPing> {
        (!self.ping.is_empty()).then(|| {
            chinwag::hub::doors::tok::TokPing::new(
                self.ping.clone().into_bytes(),
                self.ping_interval,
            )
        })
    }
}

impl ApiSection {
    /// The API's configuration (off when `key` is empty).
    pub fn api_config(&self) -> chinwag::api::ApiConfig {
        let mut c = chinwag::api::ApiConfig::new(self.key.clone());
        c.max_body_bytes = self.max_body_bytes;
        c.body_timeout = self.body_timeout;
        c.max_batch = self.max_batch;
        c.max_page = self.max_page;
        c.rate = self.rate;
        c
    }
}

/// `[rooms]`: rooms the server makes at start, and whether the room door takes a password from
/// the query (plumego's `room_password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct RoomsSection {
    /// The rooms made at start, before any door listens.
    pub declared: Vec<DeclaredRoom>,
    pub password_query: bool,
}

impl Default for RoomsSection {
    /// The demo's room, `lobby`, with presence events (its member list follows joins and
    /// leaves as they happen); no password from the query.
    fn default() -> Self {
        RoomsSection {
            declared: vec![DeclaredRoom {
                presence_events: true,
                ..DeclaredRoom::named("lobby")
            }],
            password_query: false,
        }
    }
}

/// One room of `rooms.declared`, e.g. `{ name = "staff", password = "s3cret", presence_events =
/// true, max_members = 50, history = false }`. Only `name` is required; a field left out is
/// the default and is not printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredRoom {
    /// The room's name (the identifier rules of room names).
    pub name: String,
    /// The password members must give (empty: none). Stored as the hub stores every room
    /// password (an Argon2id hash); `--print-config` redacts it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Whether members get `presence` events when others join or leave.
    #[serde(default, skip_serializing_if = "is_false")]
    pub presence_events: bool,
    /// A member limit below the hub's (`hub.limits.max_members_per_room`); 0: the hub's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_members: usize,
    /// Whether the room keeps its recent publishes (as `[hub.history]` says); false: none.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub history: bool,
    /// Whether signed-in users that are not members may read its history.
    #[serde(default, skip_serializing_if = "is_false")]
    pub history_public: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DeclaredRoom {
    /// A room of this name with no password, no presence events, the hub's limits and history.
    pub fn named(name: &str) -> Self {
        DeclaredRoom {
            name: name.to_owned(),
            password: String::new(),
            presence_events: false,
            max_members: 0,
            history: true,
            history_public: false,
        }
    }

    /// The hub's options of this room; `history` is the hub's `[hub.history]`.
    pub fn options(&self, history: &chinwag::hub::RoomHistory) -> chinwag::hub::RoomOptions {
        use chinwag::hub::{Keep, KeepHistory, RoomOptions};
        let mut o = RoomOptions::new().with_presence_events(self.presence_events);
        if !self.password.is_empty() {
            o = o.with_password(self.password.clone());
        }
        if self.max_members > 0 {
            o = o.with_max_members(self.max_members);
        }
        if !self.history {
            o = o.with_history(KeepHistory::Off);
        } else if self.history_public && history.max_len > 0 {
            o = o.with_history(KeepHistory::Keep(
                Keep::new(history.max_len, history.max_age).readable_by_all(),
            ));
        }
        o
    }
}

/// `[proxy]`: the event proxy to the application's backend (`chinwag::proxy`): a URL per
/// event (empty: that event is not proxied), the bounds and the failure policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct ProxySection {
    pub connect_url: String,
    pub app_url: String,
    pub join_url: String,
    pub publish_url: String,
    pub disconnect_url: String,
    #[serde(with = "chinwag::transport::duration")]
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub max_answer_bytes: usize,
    pub app_failure: FailurePolicy,
    pub join_failure: FailurePolicy,
    pub publish_failure: FailurePolicy,
    pub disconnect_retries: u32,
    pub disconnect_queue: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        let d = ProxyConfig::default();
        ProxySection {
            connect_url: String::new(),
            app_url: String::new(),
            join_url: String::new(),
            publish_url: String::new(),
            disconnect_url: String::new(),
            timeout: d.timeout,
            max_in_flight: d.max_in_flight,
            max_answer_bytes: d.max_answer_bytes,
            app_failure: d.app_failure,
            join_failure: d.join_failure,
            publish_failure: d.publish_failure,
            disconnect_retries: d.disconnect_retries,
            disconnect_queue: d.disconnect_queue,
        }
    }
}

impl ProxySection {
    /// The proxy's configuration; `None` when no URL is set (no proxy).
    ///
    /// # Errors
    ///
    /// A URL that is not `http://host[:port]/path`, or a zero bound, naming its key.
    pub fn proxy_config(&self) -> Result<Option<ProxyConfig>, ConfigError> {
        let mut c = ProxyConfig::default()
            .with_timeout(self.timeout)
            .with_max_in_flight(self.max_in_flight)
            .with_max_answer_bytes(self.max_answer_bytes)
            .with_app_failure(self.app_failure)
            .with_join_failure(self.join_failure)
            .with_publish_failure(self.publish_failure)
            .with_disconnect_retries(self.disconnect_retries)
            .with_disconnect_queue(self.disconnect_queue);
        let mut any = false;
        for (key, url) in [
            ("proxy.connect_url", &self.connect_url),
            ("proxy.app_url", &self.app_url),
            ("proxy.join_url", &self.join_url),
            ("proxy.publish_url", &self.publish_url),
            ("proxy.disconnect_url", &self.disconnect_url),
        ] {
            if url.is_empty() {
                continue;
            }
            any = true;
            let uri: chinwag::http::Uri = url
                .parse()
                .ok()
                .filter(|u: &chinwag::http::Uri| {
                    u.scheme_str() == Some("http") && u.host().is_some_and(|h| !h.is_empty())
                })
                .ok_or_else(|| {
                    err(format!(
                        "bad value for `{key}`: not an http:// URL like http://127.0.0.1:9000/chinwag/{}",
                        &key[6..key.len() - 4]
                    ))
                })?;
            c = match key {
                "proxy.connect_url" => c.with_connect(uri),
                "proxy.app_url" => c.with_app(uri),
                "proxy.join_url" => c.with_join(uri),
                "proxy.publish_url" => c.with_publish(uri),
                _ => c.with_disconnect(uri),
            };
        }
        for (key, v) in [
            ("proxy.max_in_flight", self.max_in_flight),
            ("proxy.max_answer_bytes", self.max_answer_bytes),
            ("proxy.disconnect_queue", self.disconnect_queue),
        ] {
            if v == 0 {
                return Err(err(format!("bad value for `{key}`: at least 1")));
            }
        }
        if self.timeout.is_zero() {
            return Err(err("bad value for `proxy.timeout`: above 0".to_owned()));
        }
        Ok(any.then_some(c))
    }
}

/// `[log]`: the tracing filter and format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // each key is documented in docs/server.md (and `--help`)
pub struct LogSection {
    pub filter: String,
    pub json: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".into(),
            json: false,
        }
    }
}

/// Whether chinwag-server compresses WebSocket messages (permessage-deflate, RFC 7692) when no
/// layer sets `websocket.deflate`: `true` is [`server_deflate`]'s settings, `false` is
/// `deflate = "off"`. Only the yawc engine implements it (`server.engine = "yawc"`); the other
/// engines ignore it (logged at start when it was set explicitly).
pub const DEFLATE_BY_DEFAULT: bool = true;

/// `[websocket.deflate]`'s defaults: the library's [`DeflateConfig`], with no context takeover
/// either way (each side starts every message with a fresh compressor: no window kept between
/// messages, and with `compress_once` one compressed frame serves every member of a room).
pub fn server_deflate() -> DeflateConfig {
    DeflateConfig::default()
        .with_server_no_context_takeover(true)
        .with_client_no_context_takeover(true)
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[server]`: addresses, engine, data directory, shutdown.
    pub server: ServerSection,
    /// `[tls]`: certificate and key files.
    pub tls: TlsSection,
    /// `[auth]`: the JWT key and checks, dev sign-in.
    pub auth: AuthSection,
    /// `[hub]`: the hub's own configuration, `chinwag_hub::HubConfig`.
    pub hub: HubConfig,
    /// `[queue]`: backend, and the queue's configuration.
    pub queue: QueueSection,
    /// `[websocket]`: the HTTP/WebSocket port, `chinwag_ws::WsConfig`.
    pub websocket: WsConfig,
    /// `[sessions]`: sessions and admission of the doors, `chinwag_session::ServerConfig`.
    pub sessions: ServerConfig,
    /// `[cluster]`: several servers as one hub through Redis.
    pub cluster: ClusterSection,
    /// `[tok]`: tok clients (static tokens, frame limit, ping, WebSocket).
    pub tok: TokSection,
    /// `[api]`: the server API.
    pub api: ApiSection,
    /// `[rooms]`: rooms made at start, the room door's password from the query.
    pub rooms: RoomsSection,
    /// `[proxy]`: the event proxy to the application's backend.
    pub proxy: ProxySection,
    /// `[log]`: logs.
    pub log: LogSection,
}

impl Default for Settings {
    /// The libraries' defaults, and the server's own where it has its own (addresses, the
    /// data directory, the redb queue, a 1 MiB WebSocket message, compression as
    /// [`DEFLATE_BY_DEFAULT`] says, presence events in rooms made by joining).
    fn default() -> Self {
        Settings {
            server: ServerSection::default(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            // The demo's rooms, made by joining too, show who comes and goes as it happens.
            hub: HubConfig::default().with_presence_on_join(true),
            queue: QueueSection::default(),
            // A chat message is at most `hub.limits.max_body_bytes` (64 KiB) plus its JSON
            // envelope: 1 MiB is plenty, and far less than the library's 16 MiB.
            websocket: WsConfig::default()
                .with_max_message_size(1 << 20)
                .with_max_frame_size(1 << 20)
                .with_deflate(DEFLATE_BY_DEFAULT.then(server_deflate)),
            sessions: ServerConfig::default(),
            cluster: ClusterSection::default(),
            tok: TokSection::default(),
            api: ApiSection::default(),
            rooms: RoomsSection::default(),
            proxy: ProxySection::default(),
            log: LogSection::default(),
        }
    }
}

// ---- keys, names, help ------------------------------------------------------------------------

/// The key of the compression table.
const DEFLATE: &str = "websocket.deflate";

/// The default tree as TOML values. `[websocket.deflate]` is there as [`server_deflate`] even
/// when [`DEFLATE_BY_DEFAULT`] is false (its keys are keys either way; [`load`] turns it off
/// when no layer set it).
pub fn default_table() -> Table {
    let mut s = Settings::default();
    s.websocket.deflate = Some(server_deflate());
    match Value::try_from(s) {
        Ok(Value::Table(t)) => t,
        other => unreachable!("Settings serializes to a table: {other:?}"),
    }
}

/// Every key: the path of each leaf (a value that is not a table) of `t`, `a.b.c`.
pub fn keys_of(t: &Table) -> Vec<String> {
    fn walk(t: &Table, prefix: &str, out: &mut Vec<String>) {
        for (name, v) in t {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match v {
                Value::Table(sub) => walk(sub, &key, out),
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    walk(t, "", &mut out);
    out
}

/// Every key of the configuration, from the serialized defaults.
pub fn keys() -> Vec<String> {
    keys_of(&default_table())
}

/// The tables of the default tree that the configuration's types also read as `"off"`
/// (`hub.limits.connection_rate`, `hub.limits.message_rate`, `websocket.deflate`): each is a
/// variable and a flag that take `off`, besides its keys. Found by trying each table.
pub fn switches() -> Vec<String> {
    fn tables(t: &Table, prefix: &str, out: &mut Vec<String>) {
        for (name, v) in t {
            if let Value::Table(sub) = v {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                tables(sub, &key, out);
                out.push(key);
            }
        }
    }
    let defaults = default_table();
    let mut all = Vec::new();
    tables(&defaults, "", &mut all);
    all.sort();
    all.retain(|key| {
        let mut t = defaults.clone();
        set(&mut t, &defaults, key, Value::String("off".into()));
        Value::Table(t).try_into::<Settings>().is_ok()
    });
    all
}

/// The value of `key` (`a.b.c`) in `t`.
pub fn lookup<'a>(t: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut v = t.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// Sets `key` in `t`. When an earlier layer replaced one of its tables by a value
/// (`connection_rate = "off"`), that table starts again from `defaults`.
fn set(t: &mut Table, defaults: &Table, key: &str, v: Value) {
    let (parents, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut table = t;
    let mut path = String::new();
    for p in parents.split('.').filter(|p| !p.is_empty()) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(p);
        if !matches!(table.get(p), Some(Value::Table(_))) {
            let fresh = match lookup(defaults, &path) {
                Some(Value::Table(d)) => d.clone(),
                _ => Table::new(),
            };
            table.insert(p.to_owned(), Value::Table(fresh));
        }
        let Some(Value::Table(sub)) = table.get_mut(p) else {
            unreachable!("made a table just above")
        };
        table = sub;
    }
    table.insert(name.to_owned(), v);
}

/// The environment variable of `key`: `CHINWAG_` and the key in capitals, `.` as `_`.
pub fn env_name(key: &str) -> String {
    format!("CHINWAG_{}", key.replace('.', "_").to_uppercase())
}

/// The flag of `key`: `--a-b-c` (dots and underscores as dashes).
pub fn flag_name(key: &str) -> String {
    key.replace(['.', '_'], "-")
}

/// The variable that names the configuration file (besides `--config`).
pub const CONFIG_ENV: &str = "CHINWAG_CONFIG";

/// A default as `--help` and `docs/server.md` show it: strings in quotes in the docs, bare
/// (`(empty)` when empty) in `--help`.
pub fn shown(v: &Value, quoted: bool) -> String {
    match v {
        Value::String(s) if quoted => format!("\"{s}\""),
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `docs/server.md`, the configuration reference (through the crate's `docs/server.md` link,
/// so the packaged crate has it too).
pub const REFERENCE: &str = include_str!("../docs/server.md");

/// One row of the reference's key tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    /// The key, `a.b.c`.
    pub key: String,
    /// The default as written (`"10s"`, `64`).
    pub default: String,
    /// What it means (markdown).
    pub meaning: String,
}

/// The rows `| `key` | `default` | meaning |` of a reference page, in its order.
pub fn reference_rows(page: &str) -> Vec<Documented> {
    page.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let key = cells.get(1)?;
            let default = cells.get(2)?;
            (cells.len() >= 5
                && key.starts_with('`')
                && key.ends_with('`')
                && key.contains('.')
                && !key.contains('/')
                && !key.contains(' ')
                && default.starts_with('`'))
            .then(|| Documented {
                key: key.trim_matches('`').to_owned(),
                default: default.trim_matches('`').to_owned(),
                meaning: cells[3].to_owned(),
            })
        })
        .collect()
}

/// The embedded reference's rows.
pub fn reference() -> Vec<Documented> {
    reference_rows(REFERENCE)
}

// ---- loading ----------------------------------------------------------------------------------

/// Turns `raw` (from the environment or a flag) into a value of the kind of `default`: a
/// number, true/false, a list (comma-separated, or a TOML array), or a string (a TOML inline
/// table when it starts with `{`, for forms like `{ multi = 3 }`; for a switch, whose default
/// is a table, always a string: its keys are set one by one). A value that does not fit stays
/// a string, and the configuration's types then refuse it, naming the key.
fn parse_raw(raw: &str, default: &Value) -> Value {
    let trimmed = raw.trim();
    if default.is_table() {
        return Value::String(trimmed.to_owned());
    }
    let toml_value = || {
        toml::from_str::<Table>(&format!("v = {trimmed}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    let fallback = || Value::String(raw.to_owned());
    match default {
        Value::Boolean(_) => match trimmed {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => fallback(),
        },
        Value::Integer(_) => trimmed
            .replace('_', "")
            .parse()
            .map_or_else(|_| fallback(), Value::Integer),
        Value::Float(_) => trimmed.parse().map_or_else(|_| fallback(), Value::Float),
        Value::Array(_) if trimmed.starts_with('[') => toml_value().unwrap_or_else(fallback),
        Value::Array(_) => Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        _ if trimmed.starts_with('{') || trimmed.starts_with('[') => {
            toml_value().unwrap_or_else(fallback)
        }
        _ => fallback(),
    }
}

/// Merges `from` (the file's tables) into `into` (the defaults): tables into tables, key by
/// key; anything else replaces what is there. A key the default tree does not have is an
/// error naming it.
fn merge(
    into: &mut Table,
    from: Table,
    prefix: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, v) in from {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match (into.get_mut(&name), v) {
            (None, _) => return Err(err(format!("{origin}: unknown key `{key}`"))),
            (Some(Value::Table(target)), Value::Table(sub)) => {
                // A table written in the file was set there, even with no keys.
                origins.insert(key.clone(), origin.to_owned());
                merge(target, sub, &key, origin, origins)?;
            }
            (Some(slot), v) => {
                *slot = v;
                origins.insert(key, origin.to_owned());
            }
        }
    }
    Ok(())
}

/// Reads the tree into [`Settings`]. When the types refuse it, finds the key at fault: the
/// set keys are tried one at a time over the defaults, so the error names the key and where
/// it was set.
fn typed(
    t: Table,
    defaults: &Table,
    origins: &BTreeMap<String, String>,
) -> Result<Settings, ConfigError> {
    let whole = match Value::Table(t.clone()).try_into::<Settings>() {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    for (key, origin) in origins {
        let Some(v) = lookup(&t, key) else { continue };
        if v.is_table() && lookup(defaults, key).is_some_and(Value::is_table) {
            continue; // a table the file wrote: its keys are tried one by one
        }
        let mut one = defaults.clone();
        set(&mut one, defaults, key, v.clone());
        if let Err(e) = Value::Table(one).try_into::<Settings>() {
            return Err(err(format!(
                "{origin}: bad value for `{key}`: {}",
                e.message().trim()
            )));
        }
    }
    Err(err(whole.message().trim().to_owned()))
}

/// Builds the effective configuration: the defaults, then the file (`file`, else
/// `$CHINWAG_CONFIG`), then `CHINWAG_*` variables from `env`, then `flags` (`key` or switch →
/// raw value).
///
/// # Errors
///
/// An unreadable or invalid file; an unknown key or variable; a value the configuration's
/// types refuse, or one the server cannot use (see [`Settings::check`]).
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(String, String)],
) -> Result<Settings, ConfigError> {
    load_traced(file, env, flags).map(|(s, _)| s)
}

/// Where the settings of a [`load`] came from: each key, switch or file table a layer set →
/// that layer (`the file's path`, ``environment `CHINWAG_…` ``, ``flag `--…` ``).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, String>);

impl Origins {
    /// Where `key`, or a key under it, was set (the first such in key order); `None`: it is
    /// its default.
    pub fn set_under(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| is_under(k, key))
            .map(|(_, origin)| origin.as_str())
    }
}

/// Whether `k` is `key` or a key under it (`key.…`).
fn is_under(k: &str, key: &str) -> bool {
    k.strip_prefix(key)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// [`load`], and where each setting came from.
///
/// # Errors
///
/// Those of [`load`].
pub fn load_traced(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(String, String)],
) -> Result<(Settings, Origins), ConfigError> {
    load_with(file, env, flags, DEFLATE_BY_DEFAULT)
}

/// [`load_traced`] with compression on or off when no layer sets it.
fn load_with(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(String, String)],
    deflate_by_default: bool,
) -> Result<(Settings, Origins), ConfigError> {
    let defaults = default_table();
    let mut t = defaults.clone();
    // key → where it was set (the last layer that set it)
    let mut origins = BTreeMap::new();
    let from_env: Option<PathBuf> = env
        .iter()
        .find(|(k, _)| k == CONFIG_ENV)
        .map(|(_, v)| PathBuf::from(v));
    if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let parsed: Table = toml::from_str(&text)
            .map_err(|e| err(format!("{}: {}", path.display(), e.message())))?;
        merge(
            &mut t,
            parsed,
            "",
            &path.display().to_string(),
            &mut origins,
        )?;
    }
    let mut all = keys_of(&defaults);
    all.extend(switches());
    let by_env: HashMap<String, &String> = all.iter().map(|k| (env_name(k), k)).collect();
    for (name, raw) in env {
        if !name.starts_with("CHINWAG_") || name == CONFIG_ENV {
            continue;
        }
        let Some(key) = by_env.get(name) else {
            return Err(err(format!(
                "unknown environment variable `{name}` (the CHINWAG_ prefix is for configuration keys; see --help)"
            )));
        };
        let default = lookup(&defaults, key).expect("every key has a default");
        set(&mut t, &defaults, key, parse_raw(raw, default));
        origins.insert((*key).clone(), format!("environment `{name}`"));
    }
    for (key, raw) in flags {
        let default = lookup(&defaults, key).ok_or_else(|| err(format!("unknown key `{key}`")))?;
        set(&mut t, &defaults, key, parse_raw(raw, default));
        origins.insert(key.clone(), format!("flag `--{}`", flag_name(key)));
    }
    if !deflate_by_default && !origins.keys().any(|k| is_under(k, DEFLATE)) {
        set(&mut t, &defaults, DEFLATE, Value::String("off".into()));
    }
    let mut s = typed(t, &defaults, &origins)?;
    s.check()?;
    // The hub's fair shares are shares of the queue's bound: the facade sets one from the
    // other, and so does the printed configuration.
    const OFFLINE_TOTAL: &str = "hub.limits.offline.total_bytes";
    let queue_total = s.queue.limits.max_total_bytes;
    if let Some(origin) = origins.get(OFFLINE_TOTAL)
        && s.hub.limits.offline.total_bytes != queue_total
    {
        return Err(err(format!(
            "{origin}: bad value for `{OFFLINE_TOTAL}`: it is always the queue's bound, \
             `queue.limits.max_total_bytes` ({queue_total}); set that instead"
        )));
    }
    s.hub.limits.offline.total_bytes = queue_total;
    Ok((s, Origins(origins)))
}

impl Settings {
    /// The Redis of the offline queue (and room history) with `queue.backend = "redis"`:
    /// `queue.redis_url`, or on a cluster node `cluster.redis_url` when that is empty.
    pub fn queue_redis_url(&self) -> &str {
        if self.queue.redis_url.is_empty() {
            &self.cluster.redis_url
        } else {
            &self.queue.redis_url
        }
    }

    /// Checks what types cannot: addresses that parse, files and keys that go together.
    ///
    /// # Errors
    ///
    /// The first bad value, naming its key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(err(format!("bad value for `{key}`: {why}")));
        if socket_addr(&self.server.listen).is_none() {
            return bad(
                "server.listen",
                "not an address like 127.0.0.1:8080 or localhost:8080",
            );
        }
        for (k, v) in [
            ("server.tcp_listen", &self.server.tcp_listen),
            ("server.tok_listen", &self.server.tok_listen),
        ] {
            if !v.is_empty() && socket_addr(v).is_none() {
                return bad(
                    k,
                    "not an address like 127.0.0.1:8081 or localhost:8081 (or empty: off)",
                );
            }
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return bad("tls.cert", "tls.cert and tls.key go together");
        }
        let a = &self.auth;
        if !a.secret.is_empty() && !a.public_key.is_empty() {
            return bad(
                "auth.secret",
                "set auth.secret or auth.public_key, not both",
            );
        }
        if !a.public_key.is_empty() && a.algorithm == Algorithm::Hs256 {
            return bad(
                "auth.algorithm",
                "RS256, ES256 or EdDSA with auth.public_key",
            );
        }
        if a.public_key.is_empty() && a.algorithm != Algorithm::Hs256 {
            return bad(
                "auth.algorithm",
                "HS256 (with auth.secret) unless auth.public_key is set",
            );
        }
        if self.queue.backend == Backend::Redis && self.queue_redis_url().is_empty() {
            return bad("queue.redis_url", "required with queue.backend = redis");
        }
        if self.cluster.is_on() {
            if self.queue.backend != Backend::Redis {
                return bad(
                    "queue.backend",
                    "\"redis\" on a cluster node: every node shares the offline queue, on the \
                     cluster's Redis",
                );
            }
            if self.queue_redis_url() != self.cluster.redis_url {
                return bad(
                    "queue.redis_url",
                    "empty on a cluster node (the queue is on cluster.redis_url), or the same URL",
                );
            }
        }
        if self.websocket.max_connections == 0 {
            return bad("websocket.max_connections", "at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.rooms.declared {
            if r.name.is_empty() || r.name == "*" {
                return bad(
                    "rooms.declared",
                    "every room needs a name (and `*` is none)",
                );
            }
            if !names.insert(r.name.as_str()) {
                return bad(
                    "rooms.declared",
                    &format!("the room {} is declared twice", r.name),
                );
            }
        }
        let c = &self.cluster;
        if c.prefix.contains(['{', '}']) {
            return bad("cluster.prefix", "may not contain `{` or `}`");
        }
        if c.is_on() && self.hub.node.0 != 0 {
            return bad(
                "hub.node",
                "a cluster node's id is `cluster.node` (0: random at each start); leave hub.node at 0",
            );
        }
        if c.lease_ttl < Duration::from_millis(30) {
            return bad("cluster.lease_ttl", "at least 30ms");
        }
        if c.reconnect_min.is_zero() || c.reconnect_max < c.reconnect_min {
            return bad(
                "cluster.reconnect_max",
                "cluster.reconnect_min above 0, and cluster.reconnect_max at least it",
            );
        }
        if !self.api.key.is_empty()
            && let Err(e) = self.api.api_config().check()
        {
            return Err(err(format!("bad `api.*` value: {e}")));
        }
        self.proxy.proxy_config()?;
        self.check_tok()
    }

    /// The `[tok]` keys: tokens, and the frame limit against the hub's and WebSocket's.
    fn check_tok(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(err(format!("bad value for `{key}`: {why}")));
        let t = &self.tok;
        t.static_tokens()?;
        let frame = t.max_frame(&self.hub);
        let body = self.hub.limits.max_body_bytes;
        if frame > body {
            return bad(
                "tok.max_frame_bytes",
                format!(
                    "{frame} is over `hub.limits.max_body_bytes` ({body}), which would refuse such \
                     frames: raise that too (tok's limit is 4194304 for both)"
                ),
            );
        }
        if frame > u32::MAX as usize {
            return bad("tok.max_frame_bytes", "at most 4294967295".into());
        }
        if !t.ping.is_empty() && t.ping_interval.is_zero() {
            return bad("tok.ping_interval", "above 0 with tok.ping".into());
        }
        if !t.ws_path.is_empty() {
            if !t.ws_path.starts_with('/') {
                return bad("tok.ws_path", "a path such as /tok (or empty: off)".into());
            }
            if [chinwag::DEFAULT_CHAT_PATH, chinwag::DEFAULT_ROOMS_PATH]
                .contains(&t.ws_path.as_str())
            {
                return bad(
                    "tok.ws_path",
                    format!("{} is the chat or room door's path", t.ws_path),
                );
            }
            let ws = self
                .websocket
                .max_message_size
                .min(self.websocket.max_frame_size);
            if ws < frame {
                return bad(
                    "tok.ws_path",
                    format!(
                        "the tok door's frames ({frame} bytes) are over the WebSocket limit \
                         ({ws} bytes): raise `websocket.max_message_size` and \
                         `websocket.max_frame_size`"
                    ),
                );
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted (for `--print-config`).
    pub fn to_toml(&self) -> String {
        let mut s = self.clone();
        if !s.auth.secret.is_empty() {
            s.auth.secret = "<redacted>".into();
        }
        for t in &mut s.tok.tokens {
            t.token = "<redacted>".into();
        }
        if !s.api.key.is_empty() {
            s.api.key = "<redacted>".into();
        }
        for r in &mut s.rooms.declared {
            if !r.password.is_empty() {
                r.password = "<redacted>".into();
            }
        }
        toml::to_string(&s).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// What to log at start when compression is on but the engine does not implement it (only
    /// yawc does): `Some((explicit, message))`, `explicit` when a layer set `websocket.deflate`
    /// (then the server warns; the default alone is worth a debug line at most). `None`: the
    /// engine compresses, or compression is off.
    pub fn deflate_unsupported(&self, origins: &Origins) -> Option<(bool, String)> {
        if self.websocket.deflate.is_none() || self.server.engine == WsEngine::Yawc {
            return None;
        }
        let engine = self.server.engine.name();
        Some(match origins.set_under(DEFLATE) {
            Some(origin) => (
                true,
                format!(
                    "{origin}: `websocket.deflate` is on, but the {engine} engine does not \
                     implement permessage-deflate: connections are not compressed (the yawc \
                     engine does: `server.engine = \"yawc\"`)"
                ),
            ),
            None => (
                false,
                format!(
                    "compression (websocket.deflate) is on by default, but the {engine} engine \
                     does not implement it"
                ),
            ),
        })
    }

    /// Whether every door listens on a loopback address only.
    pub fn loopback_only(&self) -> bool {
        [
            &self.server.listen,
            &self.server.tcp_listen,
            &self.server.tok_listen,
        ]
        .iter()
        .filter(|a| !a.is_empty())
        .all(|a| socket_addr(a).is_some_and(|a| a.ip().is_loopback()))
    }

    /// Whether `/dev/token` is served: asked for, no secret or key configured, loopback only.
    pub fn dev_sign_in(&self) -> bool {
        self.auth.dev_tokens
            && self.auth.secret.is_empty()
            && self.auth.public_key.is_empty()
            && self.loopback_only()
    }

    /// The WebSocket configuration the server runs with: `websocket`, but with dev sign-in on
    /// and `websocket.host = "any"`, only loopback names are answered (DNS rebinding: a page
    /// of any site whose name resolves to 127.0.0.1 could otherwise ask /dev/token for any
    /// user).
    pub fn ws_config(&self) -> WsConfig {
        let mut ws = self.websocket.clone();
        if ws.host.is_any() && self.dev_sign_in() {
            ws.host = chinwag::ws::HostPolicy::loopback();
        }
        ws
    }
}

/// The address a listen setting names: an IP address and port (`127.0.0.1:8080`, `[::1]:8080`),
/// or a host name and port (`localhost:8080`), resolved now (IPv4 first when the name has
/// both). `None`: neither.
pub fn socket_addr(v: &str) -> Option<std::net::SocketAddr> {
    if let Ok(a) = v.parse() {
        return Some(a);
    }
    use std::net::ToSocketAddrs;
    let all: Vec<std::net::SocketAddr> = v.to_socket_addrs().ok()?.collect();
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

#[cfg(test)]
mod tests {
    use chinwag::hub::{PartialDelivery, Rate, SignOn};
    use chinwag::ws::HostPolicy;

    use super::*;

    #[test]
    fn keys_names_and_flags_are_unique_and_every_key_has_help() {
        let documented: Vec<String> = reference().into_iter().map(|d| d.key).collect();
        // The switches are variables and flags too (and no keys: their keys are documented).
        let switches = switches();
        for k in &switches {
            assert!(!documented.contains(k), "{k} is a switch, no key");
        }
        let keys: Vec<String> = keys().into_iter().chain(switches).collect();
        let mut envs: Vec<String> = keys.iter().map(|k| env_name(k)).collect();
        envs.sort();
        envs.dedup();
        assert_eq!(envs.len(), keys.len(), "two keys share a variable");
        let mut flags: Vec<String> = keys.iter().map(|k| flag_name(k)).collect();
        flags.sort();
        flags.dedup();
        assert_eq!(flags.len(), keys.len(), "two keys share a flag");
        for k in keys
            .iter()
            .filter(|k| lookup(&default_table(), k).is_some_and(|v| !v.is_table()))
        {
            assert!(documented.contains(k), "{k} has no row in docs/server.md");
        }
        for k in &documented {
            assert!(
                keys.contains(k),
                "docs/server.md documents {k}, which is no key"
            );
        }
    }

    /// Adding a setting to a library configuration makes it a key of the server with no code
    /// here: the keys are the serialized defaults. Every field of the hub's configuration is
    /// a key under `hub.` (spot-checked with the newest limits).
    #[test]
    fn the_keys_are_the_libraries_fields() {
        let keys = keys();
        let hub = match Value::try_from(HubConfig::default()) {
            Ok(Value::Table(t)) => t,
            other => panic!("{other:?}"),
        };
        for k in keys_of(&hub) {
            assert!(keys.contains(&format!("hub.{k}")), "hub.{k}");
        }
        for k in [
            "hub.limits.password_guess_rate.per_second",
            "hub.limits.password_guess_rate_per_ip.burst",
            "hub.limits.password_strikes",
            "hub.limits.max_pending_per_user",
            "hub.limits.max_pending_publishes",
            "hub.limits.offline.per_sender_bytes",
            "queue.redb.cache_size",
            "queue.limits.max_total_bytes",
            "websocket.host",
            "websocket.origin.allowed",
            "sessions.session.idle_timeout",
        ] {
            assert!(keys.contains(&k.to_owned()), "{k}");
        }
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[hub.limits]\nmax_rooms = 10\nmax_page = 11\nmax_unacked = 12\n",
        )
        .unwrap();
        let env = vec![
            ("CHINWAG_HUB_LIMITS_MAX_PAGE".to_owned(), "21".to_owned()),
            ("CHINWAG_HUB_LIMITS_MAX_UNACKED".to_owned(), "22".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let flags = vec![("hub.limits.max_unacked".to_owned(), "33".to_owned())];
        let s = load(Some(&f), &env, &flags).unwrap();
        assert_eq!(s.hub.limits.max_rooms, 10);
        assert_eq!(s.hub.limits.max_page, 21);
        assert_eq!(s.hub.limits.max_unacked, 33);
        assert_eq!(
            s.hub.limits.max_members_per_room,
            Settings::default().hub.limits.max_members_per_room
        );
    }

    #[test]
    fn every_form_from_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[hub]\nsign_on = { multi = 3 }\npartial = { queue_for_user = \"1h\" }\n\
             [hub.limits]\nconnection_rate = \"off\"\n\
             [websocket]\nhost = [\"chat.example\"]\nping_interval = \"off\"\n",
        )
        .unwrap();
        let s = load(Some(&f), &[], &[]).unwrap();
        assert_eq!(s.hub.sign_on, SignOn::Multi { max: 3 });
        assert_eq!(
            s.hub.partial,
            PartialDelivery::QueueForUser {
                ttl: Duration::from_secs(3600)
            }
        );
        assert_eq!(s.hub.limits.connection_rate, None);
        assert_eq!(s.websocket.host, HostPolicy::allow(["chat.example"]));
        assert_eq!(s.websocket.ping_interval, None);
        assert_eq!(s.websocket.deflate, Some(server_deflate()), "untouched");

        let env = [
            ("CHINWAG_HUB_SIGN_ON", "{ multi = 5 }"),
            ("CHINWAG_HUB_LIMITS_MESSAGE_RATE_PER_SECOND", "7"),
            ("CHINWAG_HUB_LIMITS_PASSWORD_STRIKES", "9"),
            ("CHINWAG_WEBSOCKET_HOST", "a.example, loopback"),
            (
                "CHINWAG_WEBSOCKET_ORIGIN_ALLOWED",
                "https://a.example,https://b.example",
            ),
            ("CHINWAG_QUEUE_LIMITS_OVERFLOW", "drop_oldest"),
            ("CHINWAG_QUEUE_REDB_CACHE_SIZE", "1_048_576"),
            ("CHINWAG_SESSIONS_SESSION_OVERFLOW", "{ block = \"2s\" }"),
            ("CHINWAG_HUB_AUTO_CREATE_ROOMS", "off"),
            ("CHINWAG_HUB_TOKENS_QUERY", "token"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let flags = [
            ("hub.sign_on", "per_device"),
            ("server.engine", "fastwebsockets"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = load(Some(&f), &env, &flags).unwrap();
        assert_eq!(s.hub.sign_on, SignOn::PerDevice, "the flag wins");
        assert_eq!(s.hub.limits.message_rate, Some(Rate::new(7, 200)));
        assert_eq!(s.hub.limits.password_strikes, 9);
        assert_eq!(
            s.websocket.host,
            HostPolicy::allow(["a.example"]).with_loopback(true)
        );
        assert_eq!(
            s.websocket.origin.allowed,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(
            s.queue.limits.overflow,
            chinwag::queue::OverflowPolicy::DropOldest
        );
        assert_eq!(s.queue.redb.cache_size, 1 << 20);
        assert_eq!(
            s.sessions.session.overflow,
            chinwag::session::OverflowPolicy::Block {
                timeout: Duration::from_secs(2)
            }
        );
        assert!(!s.hub.auto_create_rooms);
        assert_eq!(s.hub.tokens.query.as_deref(), Some("token"));
        assert_eq!(s.server.engine, WsEngine::FastWebSockets);
        // What --print-config prints reads back the same.
        let printed: Settings = toml::from_str(&s.to_toml()).unwrap();
        assert_eq!(printed, s);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[hub.limits]\nmax_roomz = 1\n", "`hub.limits.max_roomz`"),
            ("[nope]\nx = 1\n", "`nope`"),
            (
                "[hub.limits]\nmax_rooms = \"ten\"\n",
                "`hub.limits.max_rooms`",
            ),
            ("[hub.limits]\nmax_rooms = -1\n", "`hub.limits.max_rooms`"),
            (
                "[hub]\nauth_timeout = \"10 parsecs\"\n",
                "`hub.auth_timeout`",
            ),
            ("[hub]\nsign_on = \"double\"\n", "`hub.sign_on`"),
            ("[hub]\nsign_on = { multi = 0 }\n", "`hub.sign_on`"),
            ("[server]\nlisten = \"nowhere\"\n", "`server.listen`"),
            ("[server]\nengine = \"steam\"\n", "`server.engine`"),
            ("[websocket]\nhost = []\n", "`websocket.host`"),
            ("[queue]\nbackend = \"floppy\"\n", "`queue.backend`"),
            (
                "[hub.limits.offline]\ntotal_bytes = 5\n",
                "`hub.limits.offline.total_bytes`",
            ),
        ];
        for (text, named) in cases {
            let f = dir.path().join("bad.toml");
            std::fs::write(&f, text).unwrap();
            let e = load(Some(&f), &[], &[]).unwrap_err();
            assert!(e.0.contains(named), "{text:?}: {e}");
        }
        let e = load(
            None,
            &[("CHINWAG_HUB_LIMITS_MAX_ROOMZ".into(), "1".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("CHINWAG_HUB_LIMITS_MAX_ROOMZ"), "{e}");
        let e = load(
            None,
            &[("CHINWAG_HUB_ANONYMOUS".into(), "maybe".into())],
            &[],
        )
        .unwrap_err();
        assert!(
            e.0.contains("`hub.anonymous`") && e.0.contains("CHINWAG_HUB_ANONYMOUS"),
            "{e}"
        );
        let e = load(None, &[], &[("hub.max_ttl".into(), "forever".into())]).unwrap_err();
        assert!(
            e.0.contains("`hub.max_ttl`") && e.0.contains("--hub-max-ttl"),
            "{e}"
        );
        // The same total as the queue's is no error.
        let s = load(
            None,
            &[],
            &[
                ("queue.limits.max_total_bytes".into(), "5000".into()),
                ("hub.limits.offline.total_bytes".into(), "5000".into()),
            ],
        )
        .unwrap();
        assert_eq!(s.hub.limits.offline.total_bytes, 5000);
        let s = load(
            None,
            &[],
            &[("queue.limits.max_total_bytes".into(), "6000".into())],
        )
        .unwrap();
        assert_eq!(s.hub.limits.offline.total_bytes, 6000, "follows the queue");
    }

    #[test]
    fn the_proxy_section() {
        let s = load(None, &[], &[]).unwrap();
        assert_eq!(s.proxy.proxy_config().unwrap(), None, "no proxy by default");
        let env =
            [("CHINWAG_PROXY_JOIN_FAILURE", "allow")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let flags = [
            ("proxy.connect_url", "http://127.0.0.1:9000/connect"),
            ("proxy.app_url", "http://backend:9000/app?v=1"),
            ("proxy.timeout", "2s"),
            ("proxy.max_in_flight", "8"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = load(None, &env, &flags)
            .unwrap()
            .proxy
            .proxy_config()
            .unwrap()
            .expect("a proxy");
        assert_eq!(c.connect.unwrap(), "http://127.0.0.1:9000/connect");
        assert_eq!(c.app.unwrap(), "http://backend:9000/app?v=1");
        assert!(c.join.is_none() && c.publish.is_none() && c.disconnect.is_none());
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.join_failure, FailurePolicy::Allow);
        assert_eq!(c.publish_failure, FailurePolicy::Refuse);
        for (key, raw, says) in [
            ("proxy.join_url", "https://x/join", "proxy.join_url"),
            ("proxy.publish_url", "not a url", "proxy.publish_url"),
            ("proxy.max_in_flight", "0", "proxy.max_in_flight"),
            ("proxy.app_failure", "maybe", "proxy.app_failure"),
        ] {
            let flags = [(key.to_owned(), raw.to_owned())];
            let e = load(None, &[], &flags).unwrap_err();
            assert!(e.0.contains(says), "{key}={raw}: {e:?}");
        }
    }

    #[test]
    fn the_cluster_section() {
        let s = load(None, &[], &[]).unwrap();
        assert!(!s.cluster.is_on(), "no cluster by default");
        assert_eq!(s.cluster.node, 0);
        let env = [
            ("CHINWAG_CLUSTER_LEASE_TTL", "3s"),
            ("CHINWAG_CLUSTER_PREFIX", "app:"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let flags = [
            ("cluster.redis_url", "redis://127.0.0.1:6379/"),
            ("queue.backend", "redis"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = load(None, &env, &flags).unwrap();
        assert!(s.cluster.is_on());
        assert_eq!(
            s.queue_redis_url(),
            "redis://127.0.0.1:6379/",
            "the cluster's Redis"
        );
        let d = s.cluster.directory_config();
        assert_eq!(d.lease_ttl, Duration::from_secs(3));
        assert_eq!(d.sweep_lock, Duration::from_secs(30));
        assert_eq!(s.cluster.prefix, "app:");
        // A random non-zero id at each start, unless set.
        let ids: std::collections::HashSet<u64> = (0..20).map(|_| s.cluster.node_id()).collect();
        assert!(ids.len() > 1 && ids.iter().all(|&n| (1..=MAX_RANDOM_NODE).contains(&n)));
        let mut fixed = s.cluster.clone();
        fixed.node = 7;
        assert_eq!(fixed.node_id(), 7);
        for (flags, named) in [
            (vec![("cluster.prefix", "a{b}")], "`cluster.prefix`"),
            (
                vec![
                    ("cluster.redis_url", "redis://x/"),
                    ("queue.backend", "redis"),
                    ("hub.node", "3"),
                ],
                "`hub.node`",
            ),
            (vec![("cluster.lease_ttl", "1ms")], "`cluster.lease_ttl`"),
            (vec![("cluster.redis_url", "redis://x/")], "`queue.backend`"),
            (
                vec![
                    ("cluster.redis_url", "redis://x/"),
                    ("queue.backend", "redis"),
                    ("queue.redis_url", "redis://y/"),
                ],
                "`queue.redis_url`",
            ),
            (vec![("cluster.node", "-1")], "`cluster.node`"),
        ] {
            let flags: Vec<(String, String)> = flags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let e = load(None, &[], &flags).unwrap_err();
            assert!(e.0.contains(named), "{flags:?}: {e}");
        }
    }

    #[test]
    fn the_tok_section() {
        let s = load(None, &[], &[]).unwrap();
        assert!(s.tok.static_tokens().unwrap().is_empty());
        assert_eq!(s.tok.max_frame(&s.hub), s.hub.limits.max_body_bytes);
        assert_eq!(s.tok.ping(), None, "no ping by default");
        assert_eq!(s.tok.ping_interval, Duration::from_secs(30), "tok's period");
        // The tok profile: tokens from a file, the 4 MiB limits, the ping, the WebSocket path.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok.toml");
        std::fs::write(
            &f,
            "[tok]\ntokens = [{ token = \"t-a\", user = \"alice\", device = \"phone\" }, \
             { token = \"t-b\", user = \"bob\" }]\nmax_frame_bytes = 4194304\nping = \"ping\"\n\
             ws_path = \"/tok\"\n[hub.limits]\nmax_body_bytes = 4194304\n[websocket]\n\
             max_message_size = 4194304\nmax_frame_size = 4194304\n",
        )
        .unwrap();
        let flags = [("tok.ping_interval", "250ms")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = load(Some(&f), &[], &flags).unwrap();
        assert_eq!(s.tok.static_tokens().unwrap().len(), 2);
        assert_eq!(s.tok.max_frame(&s.hub), 4 << 20);
        let ping = s.tok.ping().unwrap();
        assert_eq!(
            (&ping.payload[..], ping.every),
            (&b"ping"[..], Duration::from_millis(250))
        );
        let printed = s.to_toml();
        assert!(
            !printed.contains("t-a") && printed.contains("<redacted>"),
            "{printed}"
        );
        // From the environment, as a TOML array.
        let env = [("CHINWAG_TOK_TOKENS", "[{ token = \"x\", user = \"u\" }]")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = load(None, &env, &[]).unwrap();
        assert_eq!(s.tok.tokens[0].user, "u");
        // What is refused, naming the key.
        for (flags, named) in [
            (
                vec![("tok.max_frame_bytes", "65537")],
                "`tok.max_frame_bytes`",
            ),
            (
                vec![
                    ("tok.max_frame_bytes", "2000000"),
                    ("hub.limits.max_body_bytes", "2000000"),
                    ("tok.ws_path", "/tok"),
                ],
                "`websocket.max_message_size`",
            ),
            (vec![("tok.ws_path", "tok")], "`tok.ws_path`"),
            (vec![("tok.ws_path", "/ws")], "`tok.ws_path`"),
            (
                vec![("tok.ping", "p"), ("tok.ping_interval", "0s")],
                "`tok.ping_interval`",
            ),
            (
                vec![(
                    "tok.tokens",
                    "[{ token = \"x\", user = \"a\" }, { token = \"x\", user = \"b\" }]",
                )],
                "given twice",
            ),
            (
                vec![("tok.tokens", "[{ token = \"\", user = \"a\" }]")],
                "may not be empty",
            ),
            (
                vec![("tok.tokens", "[{ token = \"x\", user = \" a\" }]")],
                "`tok.tokens` (entry 0)",
            ),
            (vec![("tok.tokens", "[{ token = \"x\" }]")], "`tok.tokens`"),
        ] {
            let flags: Vec<(String, String)> = flags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let e = load(None, &[], &flags).unwrap_err();
            assert!(e.0.contains(named), "{flags:?}: {e}");
        }
    }

    #[test]
    fn declared_rooms_and_the_password_query() {
        let d = Settings::default();
        assert!(
            !d.rooms.password_query,
            "off by default: URLs end up in logs"
        );
        assert_eq!(
            d.rooms.declared,
            [DeclaredRoom {
                presence_events: true,
                ..DeclaredRoom::named("lobby")
            }],
            "the demo's room, with presence events"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[rooms]
password_query = true
declared = [
             { name = \"chat\", password = \"room-password\" },
             { name = \"staff\", presence_events = true, max_members = 5, history = false },
]
",
        )
        .unwrap();
        let s = load(Some(&f), &[], &[]).unwrap();
        assert!(s.rooms.password_query);
        let [chat, staff] = &s.rooms.declared[..] else {
            panic!("{:?}", s.rooms.declared)
        };
        let o = chat.options(&s.hub.history);
        assert_eq!(o.password.as_deref(), Some("room-password"));
        assert!(!o.presence_events);
        assert_eq!(o.max_members, None);
        assert_eq!(o.history, chinwag::hub::KeepHistory::HubDefault);
        let o = staff.options(&s.hub.history);
        assert_eq!(
            (o.password, o.presence_events, o.max_members, o.history),
            (None, true, Some(5), chinwag::hub::KeepHistory::Off)
        );
        // The printed configuration hides the password.
        let printed = s.to_toml();
        assert!(
            !printed.contains("room-password") && printed.contains("<redacted>"),
            "{printed}"
        );
        // From a variable: a TOML array; none at all: `[]`.
        let env = [(
            "CHINWAG_ROOMS_DECLARED".to_owned(),
            "[{ name = \"a\" }, { name = \"b\", history_public = true }]".to_owned(),
        )];
        let s = load(None, &env, &[]).unwrap();
        let names: Vec<&str> = s.rooms.declared.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let s = load(None, &[], &[("rooms.declared".into(), "[]".into())]).unwrap();
        assert!(s.rooms.declared.is_empty());
        // A room twice, a room without a name, an unknown field: errors naming the key.
        for bad in [
            "[{ name = \"a\" }, { name = \"a\" }]",
            "[{ name = \"\" }]",
            "[{ password = \"x\" }]",
            "[{ name = \"a\", colour = \"red\" }]",
        ] {
            let e = load(None, &[], &[("rooms.declared".into(), bad.into())]).unwrap_err();
            assert!(e.0.contains("`rooms.declared`"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_api_section() {
        let s = load(None, &[], &[]).unwrap();
        assert!(!s.api.api_config().is_on(), "no server API by default");
        assert_eq!(s.api.api_config(), chinwag::api::ApiConfig::default());
        let env = [
            ("CHINWAG_API_KEY", "k3y"),
            ("CHINWAG_API_RATE_BURST", "50"),
            ("CHINWAG_API_MAX_BATCH", "50"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let s = load(None, &env, &[]).unwrap();
        let c = s.api.api_config();
        assert_eq!((c.key.as_str(), c.rate.burst, c.max_batch), ("k3y", 50, 50));
        assert!(!s.to_toml().contains("k3y"), "the key is redacted");
        let e = load(None, &env, &[("api.max_batch".to_owned(), "51".to_owned())]).unwrap_err();
        assert!(e.0.contains("api.*") && e.0.contains("max_batch"), "{e}");
    }

    #[test]
    fn dev_sign_in_only_without_secrets_on_loopback() {
        let mut s = Settings::default();
        assert!(s.dev_sign_in());
        assert_eq!(s.ws_config().host, HostPolicy::loopback());
        s.server.tok_listen = "0.0.0.0:8082".into();
        assert!(!s.dev_sign_in());
        assert!(s.ws_config().host.is_any());
        let mut s = Settings::default();
        s.auth.secret = "x".into();
        assert!(!s.dev_sign_in());
        let mut s = Settings::default();
        s.auth.dev_tokens = false;
        assert!(!s.dev_sign_in());
        let mut s = Settings::default();
        s.websocket.host = HostPolicy::allow(["chat.example"]);
        assert_eq!(
            s.ws_config().host,
            HostPolicy::allow(["chat.example"]),
            "an allow-list is kept"
        );
    }
    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn deflate_by_default_with_no_context_takeover() {
        let want = DeflateConfig::default()
            .with_server_no_context_takeover(true)
            .with_client_no_context_takeover(true);
        assert_eq!(server_deflate(), want);
        let s = load(None, &[], &[]).unwrap();
        assert_eq!(
            s.websocket.deflate,
            DEFLATE_BY_DEFAULT.then(server_deflate),
            "one constant says whether the server compresses"
        );
        assert_eq!(Settings::default(), s);
        assert_eq!(s.ws_config().deflate, s.websocket.deflate);
        let keys = keys();
        for k in [
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
            "threshold",
            "compress_once",
            "max_inflate_ratio",
        ] {
            assert!(keys.contains(&format!("websocket.deflate.{k}")), "{k}");
        }
        assert_eq!(
            switches(),
            [
                "hub.limits.connection_rate",
                "hub.limits.message_rate",
                "websocket.deflate"
            ]
        );
    }

    #[test]
    fn the_deflate_table_from_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[websocket.deflate]\nthreshold = 100\nserver_max_window_bits = 9\n\
             client_max_window_bits = 15\ncompress_once = false\nmax_inflate_ratio = 0\n",
        )
        .unwrap();
        let s = load(Some(&f), &[], &[]).unwrap();
        let from_file = server_deflate()
            .with_threshold(100)
            .with_server_max_window_bits(9)
            .with_compress_once(false)
            .with_max_inflate_ratio(0);
        assert_eq!(
            s.websocket.deflate,
            Some(from_file.clone()),
            "over the server's"
        );
        let env = pairs(&[
            ("CHINWAG_WEBSOCKET_DEFLATE_CLIENT_MAX_WINDOW_BITS", "12"),
            ("CHINWAG_WEBSOCKET_DEFLATE_COMPRESS_ONCE", "on"),
        ]);
        let flags = pairs(&[("websocket.deflate.server_no_context_takeover", "false")]);
        let s = load(Some(&f), &env, &flags).unwrap();
        assert_eq!(
            s.websocket.deflate,
            Some(
                from_file
                    .with_client_max_window_bits(12)
                    .with_compress_once(true)
                    .with_server_no_context_takeover(false)
            )
        );
        // What --print-config prints reads back the same.
        let printed = dir.path().join("printed.toml");
        std::fs::write(&printed, s.to_toml()).unwrap();
        assert_eq!(load(Some(&printed), &[], &[]).unwrap(), s);
    }

    #[test]
    fn deflate_off_from_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let off = dir.path().join("off.toml");
        std::fs::write(&off, "[websocket]\ndeflate = \"off\"\n").unwrap();
        let s = load(Some(&off), &[], &[]).unwrap();
        assert_eq!(s.websocket.deflate, None);
        let printed = s.to_toml();
        assert!(printed.contains("deflate = \"off\""), "{printed}");
        let again = dir.path().join("printed.toml");
        std::fs::write(&again, printed).unwrap();
        assert_eq!(load(Some(&again), &[], &[]).unwrap(), s);
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE", "off")]);
        assert_eq!(load(None, &env, &[]).unwrap().websocket.deflate, None);
        let flags = pairs(&[("websocket.deflate", " OFF ")]);
        assert_eq!(load(None, &[], &flags).unwrap().websocket.deflate, None);
        // A key of the table turns it back on, from the server's defaults.
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE_THRESHOLD", "64")]);
        assert_eq!(
            load(Some(&off), &env, &[]).unwrap().websocket.deflate,
            Some(server_deflate().with_threshold(64))
        );
        // The other switches take `off` the same way.
        let env = pairs(&[("CHINWAG_HUB_LIMITS_CONNECTION_RATE", "off")]);
        let s = load(None, &env, &[]).unwrap();
        assert_eq!(s.hub.limits.connection_rate, None);
        assert!(s.hub.limits.message_rate.is_some());
    }

    #[test]
    fn deflate_off_by_default_is_one_constant_away() {
        let s = load_with(None, &[], &[], false).unwrap().0;
        assert_eq!(s.websocket.deflate, None);
        assert!(s.to_toml().contains("deflate = \"off\""));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("on.toml");
        std::fs::write(&f, "[websocket.deflate]\n").unwrap();
        let s = load_with(Some(&f), &[], &[], false).unwrap().0;
        assert_eq!(
            s.websocket.deflate,
            Some(server_deflate()),
            "an empty table"
        );
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE_MAX_INFLATE_RATIO", "10")]);
        let s = load_with(None, &env, &[], false).unwrap().0;
        assert_eq!(
            s.websocket.deflate,
            Some(server_deflate().with_max_inflate_ratio(10))
        );
    }

    #[test]
    fn bad_deflate_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        for (text, named) in [
            (
                "[websocket.deflate]\nserver_max_window_bits = 8\n",
                "`websocket.deflate.server_max_window_bits`",
            ),
            (
                "[websocket.deflate]\nclient_max_window_bits = 16\n",
                "`websocket.deflate.client_max_window_bits`",
            ),
            (
                "[websocket.deflate]\nlevel = 9\n",
                "`websocket.deflate.level`",
            ),
            (
                "[websocket.deflate]\nthreshold = -1\n",
                "`websocket.deflate.threshold`",
            ),
            ("[websocket]\ndeflate = \"on\"\n", "`websocket.deflate`"),
            ("[websocket]\ndeflate = 0\n", "`websocket.deflate`"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = load(Some(&f), &[], &[]).unwrap_err();
            assert!(e.0.contains(named), "{text:?}: {e}");
        }
        std::fs::write(&f, "[websocket.deflate]\nserver_max_window_bits = 8\n").unwrap();
        let e = load(Some(&f), &[], &[]).unwrap_err();
        assert!(e.0.contains("9..=15"), "{e}");
        for bits in ["9", "15"] {
            let flags = pairs(&[("websocket.deflate.server_max_window_bits", bits)]);
            load(None, &[], &flags).unwrap();
        }
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE_CLIENT_MAX_WINDOW_BITS", "16")]);
        let e = load(None, &env, &[]).unwrap_err();
        assert!(
            e.0.contains("`websocket.deflate.client_max_window_bits`")
                && e.0
                    .contains("CHINWAG_WEBSOCKET_DEFLATE_CLIENT_MAX_WINDOW_BITS"),
            "{e}"
        );
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE", "of")]);
        let e = load(None, &env, &[]).unwrap_err();
        assert!(
            e.0.contains("`websocket.deflate`") && e.0.contains("\"off\""),
            "{e}"
        );
        let flags = pairs(&[("websocket.deflate", "{ threshold = 1 }")]);
        let e = load(None, &[], &flags).unwrap_err();
        assert!(e.0.contains("--websocket-deflate"), "{e}");
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE_LEVEL", "9")]);
        let e = load(None, &env, &[]).unwrap_err();
        assert!(e.0.contains("CHINWAG_WEBSOCKET_DEFLATE_LEVEL"), "{e}");
    }

    #[test]
    fn deflate_on_an_engine_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[websocket.deflate]\nthreshold = 512\n").unwrap();
        let (s, o) = load_traced(None, &[], &[]).unwrap();
        if DEFLATE_BY_DEFAULT {
            let (explicit, why) = s.deflate_unsupported(&o).expect("tungstenite");
            assert!(!explicit && why.contains("tungstenite"), "{why}");
        }
        let (s, o) = load_traced(Some(&f), &[], &[]).unwrap();
        let (explicit, why) = s.deflate_unsupported(&o).expect("tungstenite");
        assert!(explicit, "set in the file");
        assert!(!why.contains("  "), "one line: {why}");
        assert!(
            why.contains(&f.display().to_string()) && why.contains("tungstenite"),
            "{why}"
        );
        let flags = pairs(&[("server.engine", "fastwebsockets")]);
        let env = pairs(&[("CHINWAG_WEBSOCKET_DEFLATE_COMPRESS_ONCE", "false")]);
        let (s, o) = load_traced(None, &env, &flags).unwrap();
        let (explicit, why) = s.deflate_unsupported(&o).expect("fastwebsockets");
        assert!(
            explicit && why.contains("CHINWAG_WEBSOCKET_DEFLATE_COMPRESS_ONCE"),
            "{why}"
        );
        for flags in [
            pairs(&[("server.engine", "yawc")]),
            pairs(&[("websocket.deflate", "off")]),
        ] {
            let (s, o) = load_traced(Some(&f), &[], &flags).unwrap();
            assert_eq!(s.deflate_unsupported(&o), None, "{flags:?}");
        }
    }
}
