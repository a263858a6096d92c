//! The server's configuration: one typed tree ([`Settings`]) whose defaults come from the
//! libraries' own defaults, filled from four layers with this precedence:
//! **flags > `CHINWAG_*` environment variables > the TOML file > defaults**.
//!
//! Every key is `section.name` (`limits.max_connections`); its environment variable is
//! `CHINWAG_SECTION_NAME` (`CHINWAG_LIMITS_MAX_CONNECTIONS`) and its flag `--section-name`
//! (`--limits-max-connections`; the `server` keys also without the prefix: `--listen`). The
//! layers are merged as TOML values against the default tree, so an unknown key (in the file,
//! an unknown `CHINWAG_*` variable, a flag) or a value of the wrong type is an error that names
//! the key, before anything starts. `docs/server.md` lists every key; a test checks it
//! against [`KEYS`] and the defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

/// A duration written as a number with a unit: `500ms`, `10s`, `5m`, `2h`, `7d` (`0` alone
/// is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `500ms`, `10s`, `5m`, `2h`, `7d` or `0`.
    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{s}` has no unit (ms, s, m, h, d)"))?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("`{s}` does not start with a whole number"))?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h, d)")),
        }
        .ok_or_else(|| format!("`{s}` is too long"))?;
        Ok(Dur(Duration::from_millis(ms)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[server]`: where the doors listen, the engine, the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct ServerSection {
    pub listen: String,
    pub tcp_listen: String,
    pub tok_listen: String,
    pub engine: String,
    pub data_dir: String,
    pub shutdown_timeout: Dur,
}

/// `[tls]`: certificate and key (PEM files); both empty: no TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct TlsSection {
    pub cert: String,
    pub key: String,
}

/// `[auth]`: how tokens are checked and where they are looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct AuthSection {
    pub secret: String,
    pub public_key: String,
    pub algorithm: String,
    pub issuer: String,
    pub audience: String,
    pub leeway: Dur,
    pub device_claim: String,
    pub anonymous: bool,
    pub first_message: bool,
    pub query_param: String,
    pub max_token_len: u64,
    pub dev_tokens: bool,
    pub dev_token_ttl: Dur,
}

/// `[hub]`: sign-on policy, timers and delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct HubSection {
    pub sign_on: String,
    pub max_connections_per_user: u64,
    pub auth_timeout: Dur,
    pub token_grace: Dur,
    pub default_ttl: Dur,
    pub max_ttl: Dur,
    pub partial: String,
    pub replay_page: u64,
    pub replay_timeout: Dur,
    pub auto_create_rooms: bool,
    pub sweep_interval: Dur,
}

/// `[limits]`: the hub's bounds (`chinwag_hub::HubLimits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct LimitsSection {
    pub max_connections: u64,
    pub max_rooms: u64,
    pub max_members_per_room: u64,
    pub max_rooms_per_connection: u64,
    pub connection_rate: u64,
    pub connection_burst: u64,
    pub message_rate: u64,
    pub message_burst: u64,
    pub rate_limit_strikes: u64,
    pub max_body_bytes: u64,
    pub max_room_name_bytes: u64,
    pub max_password_bytes: u64,
    pub max_held_live: u64,
    pub max_unacked: u64,
    pub max_page: u64,
    pub password_checks: u64,
    pub password_wait: Dur,
    pub max_tracked_ips: u64,
}

/// `[queue]`: the offline queue's backend and bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct QueueSection {
    pub backend: String,
    pub path: String,
    pub redis_url: String,
    pub max_entries_per_recipient: u64,
    pub max_bytes_per_recipient: u64,
    pub max_total_bytes: u64,
    pub max_payload_bytes: u64,
    pub overflow: String,
}

/// `[websocket]`: limits and timers of the HTTP/WebSocket port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct WebSocketSection {
    pub max_connections: u64,
    pub max_message_size: u64,
    pub max_header_size: u64,
    pub handshake_timeout: Dur,
    pub ping_interval: Dur,
    pub pong_wait: Dur,
    pub allowed_origins: String,
    pub allowed_hosts: String,
}

/// `[log]`: the tracing filter and format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct LogSection {
    pub filter: String,
    pub json: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is documented in `KEYS` (and `--help`, docs/server.md)
pub struct Settings {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub auth: AuthSection,
    pub hub: HubSection,
    pub limits: LimitsSection,
    pub queue: QueueSection,
    pub websocket: WebSocketSection,
    pub log: LogSection,
}

fn n(v: usize) -> u64 {
    v as u64
}

impl Default for Settings {
    /// The libraries' defaults, and the server's own where it has its own (addresses, the
    /// data directory, the redb queue).
    fn default() -> Self {
        use chinwag::hub::{HubConfig, HubLimits, auth::JwtConfig};
        let hub = HubConfig::default();
        let lim = HubLimits::default();
        let q = chinwag::queue::QueueConfig::default();
        let ws = chinwag::ws::WsConfig::default();
        let jwt = JwtConfig::new(chinwag::hub::auth::JwtKey::hs256(b"defaults"));
        let rate = |r: Option<chinwag::hub::Rate>| r.map_or((0, 0), |r| (r.per_second, r.burst));
        let (connection_rate, connection_burst) = rate(lim.connection_rate);
        let (message_rate, message_burst) = rate(lim.message_rate);
        Settings {
            server: ServerSection {
                listen: "127.0.0.1:8080".into(),
                tcp_listen: "127.0.0.1:8081".into(),
                tok_listen: "127.0.0.1:8082".into(),
                engine: "tungstenite".into(),
                data_dir: "chinwag-data".into(),
                shutdown_timeout: Dur(Duration::from_secs(10)),
            },
            tls: TlsSection {
                cert: String::new(),
                key: String::new(),
            },
            auth: AuthSection {
                secret: String::new(),
                public_key: String::new(),
                algorithm: "HS256".into(),
                issuer: String::new(),
                audience: String::new(),
                leeway: Dur(jwt.leeway),
                device_claim: jwt.device_claim.clone(),
                anonymous: hub.anonymous,
                first_message: hub.tokens.first_message,
                query_param: hub.tokens.query.clone().unwrap_or_default(),
                max_token_len: n(hub.tokens.max_token_len),
                dev_tokens: true,
                dev_token_ttl: Dur(Duration::from_secs(24 * 3600)),
            },
            hub: HubSection {
                sign_on: "single".into(),
                max_connections_per_user: 4,
                auth_timeout: Dur(hub.auth_timeout),
                token_grace: Dur(hub.token_grace),
                default_ttl: Dur(hub.default_ttl),
                max_ttl: Dur(hub.max_ttl),
                partial: "any_delivered".into(),
                replay_page: n(hub.replay_page),
                replay_timeout: Dur(hub.replay_timeout),
                auto_create_rooms: hub.auto_create_rooms,
                sweep_interval: Dur(hub.sweep_interval),
            },
            limits: LimitsSection {
                max_connections: n(lim.max_connections),
                max_rooms: n(lim.max_rooms),
                max_members_per_room: n(lim.max_members_per_room),
                max_rooms_per_connection: n(lim.max_rooms_per_connection),
                connection_rate: connection_rate.into(),
                connection_burst: connection_burst.into(),
                message_rate: message_rate.into(),
                message_burst: message_burst.into(),
                rate_limit_strikes: lim.rate_limit_strikes.into(),
                max_body_bytes: n(lim.max_body_bytes),
                max_room_name_bytes: n(lim.max_room_name_bytes),
                max_password_bytes: n(lim.max_password_bytes),
                max_held_live: n(lim.max_held_live),
                max_unacked: n(lim.max_unacked),
                max_page: n(lim.max_page),
                password_checks: n(lim.password_checks),
                password_wait: Dur(lim.password_wait),
                max_tracked_ips: n(lim.max_tracked_ips),
            },
            queue: QueueSection {
                backend: "redb".into(),
                path: String::new(),
                redis_url: String::new(),
                max_entries_per_recipient: q.max_entries_per_recipient,
                max_bytes_per_recipient: q.max_bytes_per_recipient,
                max_total_bytes: q.max_total_bytes,
                max_payload_bytes: q.max_payload_bytes,
                overflow: "refuse".into(),
            },
            websocket: WebSocketSection {
                max_connections: n(ws.max_connections),
                // A chat message is at most `limits.max_body_bytes` (64 KiB) plus its JSON
                // envelope: 1 MiB is plenty, and far less than the library's 16 MiB.
                max_message_size: 1 << 20,
                max_header_size: n(ws.max_header_size),
                handshake_timeout: Dur(ws.handshake_timeout),
                ping_interval: Dur(ws.ping_interval.unwrap_or(Duration::ZERO)),
                pong_wait: Dur(ws.pong_wait),
                allowed_origins: String::new(),
                allowed_hosts: String::new(),
            },
            log: LogSection {
                filter: "info".into(),
                json: false,
            },
        }
    }
}

/// Every key with its help text, in the order `--help` and `docs/server.md` list them.
pub const KEYS: &[(&str, &str)] = &[
    (
        "server.listen",
        "HTTP/WebSocket address: the demo at /, /chinwag.js, the chat door at /gotalk/, the room door at /ws, /metrics, /healthz, /readyz",
    ),
    (
        "server.tcp_listen",
        "address of the chat door over TCP (gotalk); empty: off",
    ),
    (
        "server.tok_listen",
        "address of the tok-style TCP door (length-delimited frames); empty: off",
    ),
    (
        "server.engine",
        "WebSocket engine: tungstenite or fastwebsockets",
    ),
    (
        "server.data_dir",
        "directory for the durable offline queue (created if missing)",
    ),
    (
        "server.shutdown_timeout",
        "on SIGTERM/SIGINT, how long connections get to close (1001) before exit",
    ),
    (
        "tls.cert",
        "PEM certificate chain: serves https/wss and TLS on the TCP doors (with tls.key)",
    ),
    ("tls.key", "PEM private key for tls.cert"),
    (
        "auth.secret",
        "HS256 secret for JWTs; empty and no public key: dev sign-in on loopback, else nobody gets in",
    ),
    (
        "auth.public_key",
        "PEM public key file for RS256/ES256/EdDSA tokens (see auth.algorithm)",
    ),
    (
        "auth.algorithm",
        "algorithm of auth.public_key: RS256, ES256 or EdDSA (HS256 with auth.secret)",
    ),
    ("auth.issuer", "required `iss` claim; empty: not checked"),
    ("auth.audience", "required `aud` claim; empty: not checked"),
    ("auth.leeway", "clock skew allowed on exp and nbf"),
    ("auth.device_claim", "the claim naming the device"),
    (
        "auth.anonymous",
        "let connections without a token in, each as a new user anon-<hex>",
    ),
    (
        "auth.first_message",
        "allow the token in the first message (auth) within hub.auth_timeout",
    ),
    (
        "auth.query_param",
        "also take the token from this query parameter (leaks into logs); empty: off",
    ),
    (
        "auth.max_token_len",
        "longest token accepted, in bytes (refused before parsing)",
    ),
    (
        "auth.dev_tokens",
        "serve /dev/token?user=NAME (random per-start secret) when no secret or key is set and every door is on loopback",
    ),
    ("auth.dev_token_ttl", "lifetime of a dev token"),
    (
        "hub.sign_on",
        "sign-on policy: single (a new sign-on replaces every older connection), per_device, multi",
    ),
    (
        "hub.max_connections_per_user",
        "connections a user keeps under sign_on = multi",
    ),
    (
        "hub.auth_timeout",
        "how long a first-message login may take",
    ),
    (
        "hub.token_grace",
        "how long past its token's exp a connection lives without refresh",
    ),
    (
        "hub.default_ttl",
        "offline-queue lifetime of a direct message that names none",
    ),
    ("hub.max_ttl", "largest TTL a sender may ask for"),
    (
        "hub.partial",
        "what a partially delivered live-only send reports: any_delivered, all_or_error, queue_for_user",
    ),
    (
        "hub.replay_page",
        "queue entries read at a time in a replay",
    ),
    (
        "hub.replay_timeout",
        "a replaying client that does not read for this long is closed",
    ),
    (
        "hub.auto_create_rooms",
        "joining an unknown room creates it (no password, removed when empty)",
    ),
    (
        "hub.sweep_interval",
        "how often expired queue entries are swept",
    ),
    ("limits.max_connections", "signed-in connections at once"),
    ("limits.max_rooms", "rooms at once"),
    ("limits.max_members_per_room", "members of one room"),
    (
        "limits.max_rooms_per_connection",
        "rooms one connection is in",
    ),
    (
        "limits.connection_rate",
        "new connections per second per client address; 0: unlimited",
    ),
    ("limits.connection_burst", "burst of limits.connection_rate"),
    (
        "limits.message_rate",
        "messages per second per connection; 0: unlimited",
    ),
    ("limits.message_burst", "burst of limits.message_rate"),
    (
        "limits.rate_limit_strikes",
        "refused messages in a row before the connection is closed (4008)",
    ),
    ("limits.max_body_bytes", "largest message body"),
    ("limits.max_room_name_bytes", "longest room name"),
    ("limits.max_password_bytes", "longest room password"),
    (
        "limits.max_held_live",
        "live-only messages held for a connection while it replays",
    ),
    (
        "limits.max_unacked",
        "unacknowledged message ids remembered per connection",
    ),
    ("limits.max_page", "largest page of members or rooms"),
    (
        "limits.password_checks",
        "room password verifications (Argon2id) at once",
    ),
    (
        "limits.password_wait",
        "how long a join waits for a verification slot",
    ),
    (
        "limits.max_tracked_ips",
        "client addresses whose connection rate is tracked at once",
    ),
    (
        "queue.backend",
        "offline queue: redb (durable, in server.data_dir), memory, redis",
    ),
    (
        "queue.path",
        "redb file; empty: <server.data_dir>/queue.redb",
    ),
    (
        "queue.redis_url",
        "Redis URL for queue.backend = redis, e.g. redis://127.0.0.1:6379/",
    ),
    (
        "queue.max_entries_per_recipient",
        "most messages queued for one user",
    ),
    (
        "queue.max_bytes_per_recipient",
        "most bytes queued for one user",
    ),
    ("queue.max_total_bytes", "most bytes queued overall"),
    ("queue.max_payload_bytes", "largest queued message"),
    (
        "queue.overflow",
        "a full queue: refuse (the send fails) or drop_oldest (of that user)",
    ),
    (
        "websocket.max_connections",
        "open sockets on the HTTP/WebSocket port (past it: 503)",
    ),
    ("websocket.max_message_size", "largest WebSocket message"),
    ("websocket.max_header_size", "largest HTTP request head"),
    (
        "websocket.handshake_timeout",
        "time to send the request head and finish the upgrade",
    ),
    (
        "websocket.ping_interval",
        "keepalive ping interval; 0: no pings",
    ),
    (
        "websocket.pong_wait",
        "a peer that does not answer a ping within this is closed",
    ),
    (
        "websocket.allowed_origins",
        "comma-separated browser origins allowed besides the server's own host; * for any",
    ),
    (
        "websocket.allowed_hosts",
        "comma-separated Host names (with or without port) the HTTP port answers; empty: any, \
         or only loopback names (localhost, 127.0.0.1, [::1]) when dev sign-in is on",
    ),
    (
        "log.filter",
        "tracing filter (RUST_LOG syntax), e.g. info or chinwag_hub=debug",
    ),
    ("log.json", "log one JSON object per line"),
];

/// The environment variable of `key`: `CHINWAG_` and the key in capitals, `.` as `_`.
pub fn env_name(key: &str) -> String {
    format!("CHINWAG_{}", key.replace('.', "_").to_uppercase())
}

/// The flag of `key`: `--section-name` (underscores as dashes).
pub fn flag_name(key: &str) -> String {
    key.replace(['.', '_'], "-")
}

/// The variable that names the configuration file (besides `--config`).
pub const CONFIG_ENV: &str = "CHINWAG_CONFIG";

/// The default tree as TOML values.
pub fn default_table() -> Table {
    match Value::try_from(Settings::default()) {
        Ok(Value::Table(t)) => t,
        _ => unreachable!("Settings serializes to a table"),
    }
}

/// The value of `key` (`section.name`) in `t`.
pub fn lookup<'a>(t: &'a Table, key: &str) -> Option<&'a Value> {
    let (section, name) = key.split_once('.')?;
    t.get(section)?.as_table()?.get(name)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Parses `raw` (from the environment or a flag) as the type of `key`'s default.
fn parse_like(key: &str, default: &Value, raw: &str, origin: &str) -> Result<Value, ConfigError> {
    let bad = |why: String| err(format!("{origin}: bad value for `{key}`: {why}"));
    match default {
        Value::String(_) => {
            if matches!(key.rsplit('.').next(), Some(k) if DURATION_KEYS.contains(&k)) {
                Dur::parse(raw).map_err(bad)?;
            }
            Ok(Value::String(raw.to_owned()))
        }
        Value::Integer(_) => raw
            .trim()
            .replace('_', "")
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Value::Integer)
            .ok_or_else(|| bad(format!("`{raw}` is not a whole number"))),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(bad(format!("`{raw}` is not true or false"))),
        },
        _ => Err(bad("unsupported type".into())),
    }
}

/// Keys (their last part) whose string value is a duration.
const DURATION_KEYS: &[&str] = &[
    "shutdown_timeout",
    "leeway",
    "dev_token_ttl",
    "auth_timeout",
    "token_grace",
    "default_ttl",
    "max_ttl",
    "replay_timeout",
    "sweep_interval",
    "password_wait",
    "handshake_timeout",
    "ping_interval",
    "pong_wait",
];

/// Merges the file's table into `into`: every key must exist in the defaults, with the same
/// type (integers may not be negative).
fn merge_file(into: &mut Table, file: Table, origin: &str) -> Result<(), ConfigError> {
    for (section, v) in file {
        let Some(Value::Table(target)) = into.get_mut(&section) else {
            return Err(err(format!("{origin}: unknown section or key `{section}`")));
        };
        let Value::Table(keys) = v else {
            return Err(err(format!(
                "{origin}: `{section}` must be a table ([{section}])"
            )));
        };
        for (name, value) in keys {
            let key = format!("{section}.{name}");
            let Some(slot) = target.get_mut(&name) else {
                return Err(err(format!("{origin}: unknown key `{key}`")));
            };
            if std::mem::discriminant(slot) != std::mem::discriminant(&value) {
                return Err(err(format!(
                    "{origin}: bad value for `{key}`: expected {}, got {}",
                    type_name(slot),
                    type_name(&value)
                )));
            }
            if let Value::String(v) = &value
                && DURATION_KEYS.contains(&name.as_str())
                && let Err(why) = Dur::parse(v)
            {
                return Err(err(format!("{origin}: bad value for `{key}`: {why}")));
            }
            if let Value::Integer(i) = value
                && i < 0
            {
                return Err(err(format!(
                    "{origin}: bad value for `{key}`: {i} is negative"
                )));
            }
            *slot = value;
        }
    }
    Ok(())
}

fn set(t: &mut Table, key: &str, v: Value) {
    let (section, name) = key.split_once('.').expect("section.name");
    if let Some(Value::Table(s)) = t.get_mut(section) {
        s.insert(name.to_owned(), v);
    }
}

/// Builds the effective configuration: the defaults, then the file (`file`, else
/// `$CHINWAG_CONFIG`), then `CHINWAG_*` variables from `env`, then `flags` (`key` → raw value).
///
/// # Errors
///
/// An unreadable or invalid file; an unknown key or variable; a value of the wrong type, or
/// one the server cannot use (see [`Settings::check`]).
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(String, String)],
) -> Result<Settings, ConfigError> {
    let defaults = default_table();
    let mut t = defaults.clone();
    let from_env: Option<PathBuf> = env
        .iter()
        .find(|(k, _)| k == CONFIG_ENV)
        .map(|(_, v)| PathBuf::from(v));
    if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let parsed: Table = toml::from_str(&text)
            .map_err(|e| err(format!("{}: {}", path.display(), e.message())))?;
        merge_file(&mut t, parsed, &path.display().to_string())?;
    }
    for (name, raw) in env {
        if !name.starts_with("CHINWAG_") || name == CONFIG_ENV {
            continue;
        }
        let Some((key, _)) = KEYS.iter().find(|(k, _)| env_name(k) == *name) else {
            return Err(err(format!(
                "unknown environment variable `{name}` (the CHINWAG_ prefix is for configuration keys; see --help)"
            )));
        };
        let default = lookup(&defaults, key).expect("every key has a default");
        let v = parse_like(key, default, raw, &format!("environment `{name}`"))?;
        set(&mut t, key, v);
    }
    for (key, raw) in flags {
        let default = lookup(&defaults, key).ok_or_else(|| err(format!("unknown key `{key}`")))?;
        let v = parse_like(key, default, raw, &format!("flag `--{}`", flag_name(key)))?;
        set(&mut t, key, v);
    }
    let s: Settings = Value::Table(t)
        .try_into()
        .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
    s.check()?;
    Ok(s)
}

impl Settings {
    /// Checks what types cannot: known names, addresses that parse, files that go together.
    ///
    /// # Errors
    ///
    /// The first bad value, naming its key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(err(format!("bad value for `{key}`: {why}")));
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("server.listen", "not an address like 127.0.0.1:8080");
        }
        for (k, v) in [
            ("server.tcp_listen", &self.server.tcp_listen),
            ("server.tok_listen", &self.server.tok_listen),
        ] {
            if !v.is_empty() && v.parse::<std::net::SocketAddr>().is_err() {
                return bad(k, "not an address like 127.0.0.1:8081 (or empty: off)");
            }
        }
        if !matches!(
            self.server.engine.as_str(),
            "tungstenite" | "fastwebsockets"
        ) {
            return bad("server.engine", "tungstenite or fastwebsockets");
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return bad("tls.cert", "tls.cert and tls.key go together");
        }
        if !self.auth.secret.is_empty() && !self.auth.public_key.is_empty() {
            return bad(
                "auth.secret",
                "set auth.secret or auth.public_key, not both",
            );
        }
        if !self.auth.public_key.is_empty()
            && !matches!(self.auth.algorithm.as_str(), "RS256" | "ES256" | "EdDSA")
        {
            return bad(
                "auth.algorithm",
                "RS256, ES256 or EdDSA with auth.public_key",
            );
        }
        if self.auth.public_key.is_empty() && self.auth.algorithm != "HS256" {
            return bad(
                "auth.algorithm",
                "HS256 (with auth.secret) unless auth.public_key is set",
            );
        }
        if !matches!(self.hub.sign_on.as_str(), "single" | "per_device" | "multi") {
            return bad("hub.sign_on", "single, per_device or multi");
        }
        if self.hub.max_connections_per_user == 0 {
            return bad("hub.max_connections_per_user", "at least 1");
        }
        if !matches!(
            self.hub.partial.as_str(),
            "any_delivered" | "all_or_error" | "queue_for_user"
        ) {
            return bad(
                "hub.partial",
                "any_delivered, all_or_error or queue_for_user",
            );
        }
        if !matches!(self.queue.backend.as_str(), "redb" | "memory" | "redis") {
            return bad("queue.backend", "redb, memory or redis");
        }
        if self.queue.backend == "redis" && self.queue.redis_url.is_empty() {
            return bad("queue.redis_url", "required with queue.backend = redis");
        }
        if !matches!(self.queue.overflow.as_str(), "refuse" | "drop_oldest") {
            return bad("queue.overflow", "refuse or drop_oldest");
        }
        for (k, rate, burst) in [
            (
                "limits.connection_burst",
                self.limits.connection_rate,
                self.limits.connection_burst,
            ),
            (
                "limits.message_burst",
                self.limits.message_rate,
                self.limits.message_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return bad(k, "at least 1 when its rate is set");
            }
            if rate > u64::from(u32::MAX) || burst > u64::from(u32::MAX) {
                return bad(k, "too large");
            }
        }
        if self.websocket.max_connections == 0 {
            return bad("websocket.max_connections", "at least 1");
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted (for `--print-config`).
    pub fn to_toml(&self) -> String {
        let mut s = self.clone();
        if !s.auth.secret.is_empty() {
            s.auth.secret = "<redacted>".into();
        }
        toml::to_string(&s).unwrap_or_default()
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
        .all(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback())
        })
    }

    /// Whether `/dev/token` is served: asked for, no secret or key configured, loopback only.
    pub fn dev_sign_in(&self) -> bool {
        self.auth.dev_tokens
            && self.auth.secret.is_empty()
            && self.auth.public_key.is_empty()
            && self.loopback_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(t: &Table) -> Vec<String> {
        let mut v = Vec::new();
        for (section, s) in t {
            for name in s.as_table().unwrap().keys() {
                v.push(format!("{section}.{name}"));
            }
        }
        v.sort();
        v
    }

    #[test]
    fn every_key_has_help_and_every_help_a_key() {
        let mut listed: Vec<String> = KEYS.iter().map(|(k, _)| (*k).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, keys_of(&default_table()));
    }

    #[test]
    fn durations_round_trip() {
        for s in ["0", "500ms", "10s", "5m", "2h", "7d", "1500ms"] {
            assert_eq!(Dur::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Dur::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Dur::parse("120s").unwrap().to_string(), "2m");
        for bad in ["", "10", "s", "10x", "-1s", "1.5s"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[limits]\nmax_rooms = 10\nmax_page = 11\nmax_unacked = 12\n",
        )
        .unwrap();
        let env = vec![
            ("CHINWAG_LIMITS_MAX_PAGE".to_owned(), "21".to_owned()),
            ("CHINWAG_LIMITS_MAX_UNACKED".to_owned(), "22".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let flags = vec![("limits.max_unacked".to_owned(), "33".to_owned())];
        let s = load(Some(&f), &env, &flags).unwrap();
        assert_eq!(s.limits.max_rooms, 10);
        assert_eq!(s.limits.max_page, 21);
        assert_eq!(s.limits.max_unacked, 33);
        assert_eq!(
            s.limits.max_members_per_room,
            Settings::default().limits.max_members_per_room
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[limits]\nmax_roomz = 1\n", "`limits.max_roomz`"),
            ("[nope]\nx = 1\n", "`nope`"),
            ("[limits]\nmax_rooms = \"ten\"\n", "`limits.max_rooms`"),
            ("[limits]\nmax_rooms = -1\n", "`limits.max_rooms`"),
            (
                "[hub]\nauth_timeout = \"10 parsecs\"\n",
                "`hub.auth_timeout`",
            ),
            ("[hub]\nsign_on = \"double\"\n", "`hub.sign_on`"),
            ("[server]\nlisten = \"nowhere\"\n", "`server.listen`"),
        ];
        for (text, named) in cases {
            let f = dir.path().join("bad.toml");
            std::fs::write(&f, text).unwrap();
            let e = load(Some(&f), &[], &[]).unwrap_err();
            assert!(e.0.contains(named), "{text:?}: {e}");
        }
        let e = load(
            None,
            &[("CHINWAG_LIMITS_MAX_ROOMZ".into(), "1".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("CHINWAG_LIMITS_MAX_ROOMZ"), "{e}");
        let e = load(
            None,
            &[("CHINWAG_AUTH_ANONYMOUS".into(), "maybe".into())],
            &[],
        )
        .unwrap_err();
        assert!(e.0.contains("`auth.anonymous`"), "{e}");
        let e = load(None, &[], &[("hub.max_ttl".into(), "forever".into())]).unwrap_err();
        assert!(e.0.contains("`hub.max_ttl`"), "{e}");
    }

    #[test]
    fn dev_sign_in_only_without_secrets_on_loopback() {
        let mut s = Settings::default();
        assert!(s.dev_sign_in());
        s.server.tok_listen = "0.0.0.0:8082".into();
        assert!(!s.dev_sign_in());
        let mut s = Settings::default();
        s.auth.secret = "x".into();
        assert!(!s.dev_sign_in());
        let mut s = Settings::default();
        s.auth.dev_tokens = false;
        assert!(!s.dev_sign_in());
    }
}
