//! [`WsConfig`], [`OriginPolicy`] and [`HostPolicy`]: the limits and policies every engine
//! obeys.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use http::HeaderValue;

/// Limits, timers and policies of a WebSocket connection, shared by every engine.
///
/// Every field has a documented default (see `docs/websocket.md` for the table). Build one with
/// [`WsConfig::default`] and the `with_*` methods; the struct is `#[non_exhaustive]` so new
/// fields can be added without breaking callers.
///
/// ```
/// use std::time::Duration;
/// use chinwag::ws::WsConfig;
///
/// let cfg = WsConfig::default()
///     .with_max_message_size(1 << 20)
///     .with_ping_interval(Some(Duration::from_secs(20)));
/// assert_eq!(cfg.max_message_size, 1 << 20);
/// ```
///
/// With the `serde` feature it reads from (and writes to) a table of these fields: durations
/// as [`chinwag_transport::duration`] writes them (`"10s"`), `ping_interval = "off"` for no
/// keepalive, `origin` as a table of [`OriginPolicy`]'s fields and `host` as
/// [`HostPolicy`] describes. A missing field keeps its default and an unknown one is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct WsConfig {
    /// Largest inbound message (after reassembling fragments), in bytes. A peer that sends more
    /// is closed with 1009 and the reader gets [`TransportError::TooLarge`].
    /// Default: 16 MiB.
    ///
    /// [`TransportError::TooLarge`]: chinwag_transport::TransportError::TooLarge
    pub max_message_size: usize,
    /// Largest inbound frame payload, in bytes. Checked against the length in the frame header,
    /// before any memory is reserved for the payload. Default: 16 MiB.
    pub max_frame_size: usize,
    /// Outbound messages larger than this are sent as several frames of at most this many
    /// payload bytes (fragmentation is done by the engine). It also bounds what tungstenite
    /// copies into its write buffer at once (that buffer keeps its largest size for the life of
    /// the connection). Default: 64 KiB.
    pub fragment_size: usize,
    /// Largest HTTP head (request line and headers) accepted during the server handshake.
    /// hyper cannot go below 8 KiB, so smaller values act as 8 KiB. An over-limit request gets
    /// `431 Request Header Fields Too Large` and the connection is closed. Default: 16 KiB.
    pub max_header_size: usize,
    /// Time allowed for the opening handshake: reading the request head on the server, and
    /// connect + TLS + upgrade on the client. Default: 10 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub handshake_timeout: Duration,
    /// Time allowed for the closing handshake: after sending a close frame we wait at most this
    /// long for the peer's answer before dropping the TCP connection. Default: 3 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub close_timeout: Duration,
    /// Send a ping when no frame arrived from the peer for this long (checked once per
    /// interval, so a silent peer is pinged after one to two intervals); `None` disables
    /// keepalive. Pings are sent by the reader half while a [`read_frame`] is pending.
    /// Default: 30 s.
    ///
    /// [`read_frame`]: chinwag_transport::FrameRead::read_frame
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub ping_interval: Option<Duration>,
    /// How long to wait for the pong (or any other frame) after a keepalive ping before the
    /// connection is closed (1001) and the reader gets `TransportError::Timeout`. Default: 10 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub pong_wait: Duration,
    /// Read buffer per connection (tungstenite, and yawc's starting size: fastwebsockets always
    /// allocates 8 KiB).
    /// tungstenite allocates it eagerly and keeps it, so it dominates an idle connection's
    /// memory; it grows for large frames. Reads go through a 32 KiB stack read-ahead, so a
    /// small buffer does not mean one syscall per kilobyte. Default: 1 KiB.
    pub read_buffer_size: usize,
    /// Fed frames are buffered until this many bytes are pending, then written; [`flush`]
    /// writes whatever is pending. This is what lets a batch of small frames go out in one
    /// syscall. The buffer is allocated lazily. Default: 64 KiB.
    ///
    /// [`flush`]: chinwag_transport::FrameWrite::flush
    pub write_buffer_size: usize,
    /// Which browser origins may open a connection (server side).
    pub origin: OriginPolicy,
    /// Which `Host` names the server answers (server side): a defence against DNS rebinding.
    /// Default [`HostPolicy::any`].
    pub host: HostPolicy,
    /// Sockets a [`WsAcceptor`](crate::WsAcceptor) holds open at once, whatever their phase
    /// (TLS handshake, HTTP keep-alive, upgrade, hand-off, session): its
    /// [`ConnectionBudget`](chinwag_transport::ConnectionBudget). Past it, requests get
    /// `503 Service Unavailable` with `Retry-After` before any upgrade (at most
    /// [`REFUSALS_IN_FLIGHT`](crate::REFUSALS_IN_FLIGHT) such answers at once; beyond those a
    /// connection is closed at once). Default
    /// [`ConnectionBudget::default_cap`](chinwag_transport::ConnectionBudget::default_cap):
    /// half the process-wide limit derived from `RLIMIT_NOFILE`, at most 10 000.
    pub max_connections: usize,
    /// permessage-deflate (RFC 7692): offered by clients and accepted by servers on engines
    /// that implement it (yawc; the others ignore it). `None` (the default): no compression.
    /// Written as a table of [`DeflateConfig`]'s fields, or `"off"` for `None`.
    #[cfg_attr(feature = "serde", serde(with = "deflate_or_off"))]
    pub deflate: Option<DeflateConfig>,
}

/// permessage-deflate settings ([`WsConfig::deflate`]): what a server accepts and a client
/// offers. The limits of [`WsConfig`] apply to the inflated payloads (checked while inflating).
///
/// ```
/// use chinwag::ws::{DeflateConfig, WsConfig};
///
/// let cfg = WsConfig::default()
///     .with_deflate(Some(DeflateConfig::default().with_server_no_context_takeover(true)));
/// assert_eq!(cfg.deflate.unwrap().threshold, 256);
/// ```
///
/// With the `serde` feature it reads from a table of these fields; a missing field keeps its
/// default, and an unknown field or window bits outside 9..=15 are an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server starts every message with a fresh compressor (`server_no_context_takeover`,
    /// asked by the server or accepted from the client's offer): it keeps no window between
    /// messages (less memory per connection, a lower ratio). Default: false.
    pub server_no_context_takeover: bool,
    /// The client starts every message with a fresh compressor (`client_no_context_takeover`):
    /// offered by a client, asked of the client by a server. Default: false.
    pub client_no_context_takeover: bool,
    /// The server compressor's LZ77 window, 2^bits bytes (9..=15): the most a server agrees to
    /// (`server_max_window_bits`, answered when the client offered it or when below 15).
    /// Default: 15.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "window_bits"))]
    pub server_max_window_bits: u8,
    /// The client compressor's window, 9..=15 (`client_max_window_bits`, answered only when the
    /// client offered the parameter, as RFC 7692 requires). Default: 15.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "window_bits"))]
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed (a fragmented message is
    /// always compressed). Default: 256.
    pub threshold: usize,
    /// Compress once for many connections: a message handed to several connections (a room's
    /// broadcast, encoded once) is compressed by the first and the compressed frame shared by
    /// every connection that agreed the same parameters. Applies where the server starts every
    /// message with a fresh compressor (`server_no_context_takeover` agreed) and on engines that
    /// can send a compressed frame (yawc). When false every connection compresses its own copy.
    /// Default: true.
    pub compress_once: bool,
    /// A compressed frame that inflates to more than this many times its size on the wire and
    /// to more than 64 KiB closes the connection with 1009, checked while inflating: the bound
    /// on what a small frame can cost (deflate itself reaches about 1 000 times). 0: no ratio
    /// limit (the message limits still hold). Default: 256.
    pub max_inflate_ratio: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            threshold: 256,
            compress_once: true,
            max_inflate_ratio: 256,
        }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn with_server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }
    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn with_client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }
    /// Sets [`DeflateConfig::server_max_window_bits`] (clamped to 9..=15).
    pub fn with_server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }
    /// Sets [`DeflateConfig::client_max_window_bits`] (clamped to 9..=15).
    pub fn with_client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(9, 15);
        self
    }
    /// Sets [`DeflateConfig::threshold`].
    pub fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
    /// Sets [`DeflateConfig::compress_once`].
    pub fn with_compress_once(mut self, on: bool) -> Self {
        self.compress_once = on;
        self
    }
    /// Sets [`DeflateConfig::max_inflate_ratio`] (0: no ratio limit).
    pub fn with_max_inflate_ratio(mut self, ratio: usize) -> Self {
        self.max_inflate_ratio = ratio;
        self
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            fragment_size: 64 << 10,
            max_header_size: 16 << 10,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(3),
            ping_interval: Some(Duration::from_secs(30)),
            pong_wait: Duration::from_secs(10),
            read_buffer_size: 1 << 10,
            write_buffer_size: 64 << 10,
            origin: OriginPolicy::default(),
            host: HostPolicy::default(),
            max_connections: chinwag_transport::ConnectionBudget::default_cap(),
            deflate: None,
        }
    }
}

impl WsConfig {
    /// Sets [`WsConfig::max_message_size`].
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets [`WsConfig::max_frame_size`].
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
    /// Sets [`WsConfig::fragment_size`] (values below 1 act as 1).
    pub fn with_fragment_size(mut self, bytes: usize) -> Self {
        self.fragment_size = bytes.max(1);
        self
    }
    /// Sets [`WsConfig::max_header_size`].
    pub fn with_max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes;
        self
    }
    /// Sets [`WsConfig::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// Sets [`WsConfig::close_timeout`].
    pub fn with_close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// Sets [`WsConfig::ping_interval`].
    pub fn with_ping_interval(mut self, d: Option<Duration>) -> Self {
        self.ping_interval = d;
        self
    }
    /// Sets [`WsConfig::pong_wait`].
    pub fn with_pong_wait(mut self, d: Duration) -> Self {
        self.pong_wait = d;
        self
    }
    /// Sets [`WsConfig::read_buffer_size`].
    pub fn with_read_buffer_size(mut self, bytes: usize) -> Self {
        self.read_buffer_size = bytes;
        self
    }
    /// Sets [`WsConfig::write_buffer_size`].
    pub fn with_write_buffer_size(mut self, bytes: usize) -> Self {
        self.write_buffer_size = bytes;
        self
    }
    /// Sets [`WsConfig::max_connections`].
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
    /// Sets [`WsConfig::origin`].
    pub fn with_origin(mut self, origin: OriginPolicy) -> Self {
        self.origin = origin;
        self
    }
    /// Sets [`WsConfig::host`].
    pub fn with_host(mut self, host: HostPolicy) -> Self {
        self.host = host;
        self
    }
    /// Sets [`WsConfig::deflate`].
    pub fn with_deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    /// hyper's minimum read buffer is 8 KiB; it panics below that.
    pub(crate) fn hyper_max_buf(&self) -> usize {
        self.max_header_size.max(8192)
    }
}

/// Which `Origin`s may open a WebSocket on the server (a defence against cross-site WebSocket
/// hijacking: browsers always send `Origin`, other clients usually do not).
///
/// A request is allowed when:
/// * it has no `Origin` header and [`OriginPolicy::allow_missing`] is true (the default:
///   non-browser clients such as other servers, CLI tools and the conformance suite send none);
/// * its `Origin` equals (ASCII case-insensitively) an entry of [`OriginPolicy::allowed`], or
///   the list contains `"*"`;
/// * [`OriginPolicy::allow_same_host`] is true (the default) and the `Origin`'s host and port
///   equal the request's `Host` header (the page was served by this server).
///
/// Everything else is refused with `403 Forbidden` before the upgrade. The default therefore
/// lets non-browser clients and same-site pages in, and refuses other sites' pages.
///
/// ```
/// use chinwag::ws::OriginPolicy;
/// let p = OriginPolicy::allow(["https://chat.example"]).with_allow_missing(false);
/// assert!(p.check(Some("https://chat.example"), None).is_ok());
/// assert!(p.check(Some("https://evil.example"), None).is_err());
/// assert!(p.check(None, None).is_err());
/// ```
///
/// With the `serde` feature it reads from a table of these fields
/// (`allowed = ["https://chat.example"]`); a missing field keeps its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct OriginPolicy {
    /// Allowed origins, e.g. `"https://chat.example"`; `"*"` allows every origin.
    pub allowed: Vec<String>,
    /// Allow origins whose `host[:port]` equals the request's `Host` header. Default: true.
    pub allow_same_host: bool,
    /// Allow requests without an `Origin` header (non-browser clients). Default: true.
    pub allow_missing: bool,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy {
            allowed: Vec::new(),
            allow_same_host: true,
            allow_missing: true,
        }
    }
}

impl OriginPolicy {
    /// Allows every origin and requests without one.
    pub fn any() -> Self {
        OriginPolicy {
            allowed: vec!["*".to_owned()],
            ..OriginPolicy::default()
        }
    }

    /// Allows exactly these origins (plus same-host and missing origins, as in the default).
    pub fn allow<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OriginPolicy {
            allowed: origins.into_iter().map(Into::into).collect(),
            ..OriginPolicy::default()
        }
    }

    /// Sets [`OriginPolicy::allow_missing`].
    pub fn with_allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// Sets [`OriginPolicy::allow_same_host`].
    pub fn with_allow_same_host(mut self, allow: bool) -> Self {
        self.allow_same_host = allow;
        self
    }

    /// Checks an `Origin` value against the policy; `host` is the request's `Host` header.
    /// `Err` says why the origin was refused.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), String> {
        let Some(origin) = origin else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err("a request without Origin is not allowed".to_owned())
            };
        };
        let origin = origin.trim();
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        if let (true, Some(host), Some(authority)) =
            (self.allow_same_host, host, origin_authority(origin))
            && authority.eq_ignore_ascii_case(host.trim())
        {
            return Ok(());
        }
        Err(format!("origin {origin:?} is not allowed"))
    }

    pub(crate) fn check_headers(
        &self,
        origin: Option<&HeaderValue>,
        host: Option<&HeaderValue>,
    ) -> Result<(), String> {
        let origin = match origin {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "the Origin header is not ASCII".to_owned())?,
            ),
        };
        let host = host.and_then(|h| h.to_str().ok());
        self.check(origin, host)
    }
}

/// Which `Host` names a server answers: a defence against **DNS rebinding**, where a page on
/// `evil.example` has its name re-pointed at `127.0.0.1` and then talks to a server on the
/// victim's machine as if it were the page's own origin (same-origin, so no Origin check
/// helps: the request's `Host` is still `evil.example`).
///
/// * [`HostPolicy::any`] (the default, as before): every `Host`, and none.
/// * [`HostPolicy::loopback`]: only names of the loopback interface — `localhost`, any
///   `*.localhost` name (RFC 6761 reserves them for loopback and they are never delegated in
///   public DNS, so an attacker cannot point one elsewhere; browsers resolve them to loopback
///   themselves), an IPv4 address in `127.0.0.0/8`, `[::1]` (and the IPv4-mapped
///   `[::ffff:127.x.y.z]`) — each with or without a port. For development servers.
/// * [`HostPolicy::allow`]: an explicit list of names (`chat.example` matches on any port,
///   `chat.example:8443` on that port only), optionally with the loopback names
///   ([`with_loopback`](Self::with_loopback)).
///
/// Names compare ASCII case-insensitively, and a trailing dot (`localhost.`) is ignored. A
/// `Host` that is not a plain `host[:port]` (userinfo, a path, a bare IPv6 address, a port
/// that is not a number up to 65535) is refused. Under any policy but `any`, a request
/// without `Host` is refused.
///
/// A [`WsAcceptor`](crate::WsAcceptor) applies its policy to **every** request it answers
/// (upgrades, its [`HttpFallback`](crate::HttpFallback) pages, 404s): a refused one gets
/// `403 Forbidden` with the reason as a `text/plain` body, before any upgrade.
/// [`upgrade`](crate::upgrade) applies it too; a hyper service of your own calls
/// [`check`](Self::check) (or [`check_request`](Self::check_request)) for its plain routes.
///
/// ```
/// use chinwag::ws::HostPolicy;
/// let p = HostPolicy::loopback();
/// assert!(p.check(Some("localhost:8080")).is_ok());
/// assert!(p.check(Some("127.0.0.1:1")).is_ok());
/// assert!(p.check(Some("[::1]")).is_ok());
/// assert!(p.check(Some("localhost.evil.example")).is_err());
/// assert!(p.check(None).is_err());
/// let p = HostPolicy::allow(["chat.example"]);
/// assert!(p.check(Some("Chat.Example:443")).is_ok());
/// assert!(p.check(Some("localhost")).is_err());
/// ```
///
/// With the `serde` feature a policy is written `"any"`, `"loopback"`, or a list of names
/// (`["chat.example", "chat.example:8443"]`, where the entry `"loopback"` adds the loopback
/// names). A string other than `any` and `loopback` is read as a comma-separated list
/// (`"chat.example, loopback"`), and an empty string as `any`. Entries that are not a plain
/// `host[:port]`, and an empty list (which would refuse every request), are errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// `None`: any host.
    allow: Option<HostList>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostList {
    loopback: bool,
    /// Lowercase names without a trailing dot, with the port when the entry named one.
    hosts: Vec<(String, Option<u16>)>,
}

impl HostPolicy {
    /// Every `Host` is answered, and requests without one (the default).
    pub fn any() -> Self {
        HostPolicy { allow: None }
    }

    /// Only loopback names: `localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]` (see the
    /// [type docs](Self)).
    pub fn loopback() -> Self {
        HostPolicy {
            allow: Some(HostList {
                loopback: true,
                hosts: Vec::new(),
            }),
        }
    }

    /// Only these hosts: `name` (any port) or `name:port`; IPv6 addresses in brackets
    /// (`[2001:db8::1]:443`). An entry that is not a valid `host[:port]` matches nothing.
    pub fn allow<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts = hosts
            .into_iter()
            .filter_map(|h| {
                let (name, port) = split_host(h.as_ref())?;
                Some((name, port))
            })
            .collect();
        HostPolicy {
            allow: Some(HostList {
                loopback: false,
                hosts,
            }),
        }
    }

    /// Also accepts (or no longer accepts) the loopback names, next to an allow-list. No
    /// effect on [`HostPolicy::any`].
    pub fn with_loopback(mut self, loopback: bool) -> Self {
        if let Some(list) = &mut self.allow {
            list.loopback = loopback;
        }
        self
    }

    /// Whether this is [`HostPolicy::any`] (nothing is refused).
    pub fn is_any(&self) -> bool {
        self.allow.is_none()
    }

    /// Checks a `Host` header value (`None`: the request had none). `Err` says why it is
    /// refused, for the `403` body and the logs.
    ///
    /// # Errors
    ///
    /// The host is not allowed, is not a plain `host[:port]`, or is missing (under any
    /// policy but [`HostPolicy::any`]).
    pub fn check(&self, host: Option<&str>) -> Result<(), String> {
        let Some(list) = &self.allow else {
            return Ok(());
        };
        let Some(raw) = host else {
            return Err("a request without Host is not allowed here".to_owned());
        };
        let Some((name, port)) = split_host(raw) else {
            return Err(format!("Host {raw:?} is not a valid host[:port]"));
        };
        if list.loopback && is_loopback_name(&name) {
            return Ok(());
        }
        if list
            .hosts
            .iter()
            .any(|(n, p)| *n == name && p.is_none_or(|p| Some(p) == port))
        {
            return Ok(());
        }
        Err(format!("Host {raw:?} is not allowed here"))
    }

    /// Checks a request's `Host` header, and the authority of its target when the request
    /// line names one (`GET http://host/path`, which takes precedence over `Host`).
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); also a `Host` that is not visible ASCII.
    pub fn check_request<B>(&self, req: &http::Request<B>) -> Result<(), String> {
        if self.allow.is_none() {
            return Ok(());
        }
        let host = match req.headers().get(http::header::HOST) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "the Host header is not ASCII".to_owned())?,
            ),
        };
        self.check(host)?;
        match req.uri().authority() {
            Some(a) => self.check(Some(a.as_str())),
            None => Ok(()),
        }
    }
}

/// [`WsConfig::deflate`]: `None` is written `"off"`; `"off"` reads as `None`, a table as
/// [`DeflateConfig`].
#[cfg(feature = "serde")]
mod deflate_or_off {
    use std::fmt;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::DeflateConfig;

    const OFF: &str = "off";

    pub(super) fn serialize<S: Serializer>(
        d: &Option<DeflateConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            None => s.serialize_str(OFF),
            Some(d) => d.serialize(s),
        }
    }

    struct DeflateVisitor;

    impl<'de> Visitor<'de> for DeflateVisitor {
        type Value = Option<DeflateConfig>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of permessage-deflate settings or \"off\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<DeflateConfig>, E> {
            if v.trim().eq_ignore_ascii_case(OFF) {
                Ok(None)
            } else {
                Err(E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<DeflateConfig>, A::Error> {
            DeflateConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DeflateConfig>, D::Error> {
        d.deserialize_any(DeflateVisitor)
    }
}

/// [`DeflateConfig`]'s window bits: 9..=15, as RFC 7692 allows (the builder clamps instead).
#[cfg(feature = "serde")]
fn window_bits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let bits = <i64 as serde::Deserialize>::deserialize(d)?;
    match u8::try_from(bits) {
        Ok(b @ 9..=15) => Ok(b),
        _ => Err(serde::de::Error::custom(format!(
            "window bits are 9..=15 (a window of 2^bits bytes), not {bits}"
        ))),
    }
}

#[cfg(feature = "serde")]
mod host_serde {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{HostList, HostPolicy, split_host};

    const ANY: &str = "any";
    const LOOPBACK: &str = "loopback";

    impl Serialize for HostPolicy {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Some(list) = &self.allow else {
                return s.serialize_str(ANY);
            };
            if list.loopback && list.hosts.is_empty() {
                return s.serialize_str(LOOPBACK);
            }
            let mut seq = s.serialize_seq(Some(list.hosts.len() + usize::from(list.loopback)))?;
            if list.loopback {
                seq.serialize_element(LOOPBACK)?;
            }
            for (name, port) in &list.hosts {
                match port {
                    Some(p) => seq.serialize_element(&format!("{name}:{p}"))?,
                    None => seq.serialize_element(name)?,
                }
            }
            seq.end()
        }
    }

    /// A policy from list entries: names, `host:port`s and `loopback`.
    fn from_entries<E: de::Error>(
        entries: impl IntoIterator<Item = String>,
    ) -> Result<HostPolicy, E> {
        let mut list = HostList {
            loopback: false,
            hosts: Vec::new(),
        };
        let mut any_entry = false;
        for entry in entries {
            any_entry = true;
            let entry = entry.trim();
            if entry.eq_ignore_ascii_case(LOOPBACK) {
                list.loopback = true;
                continue;
            }
            let host = split_host(entry).ok_or_else(|| {
                E::custom(format!(
                    "`{entry}` is not a host name with an optional port (or `loopback`)"
                ))
            })?;
            list.hosts.push(host);
        }
        if !any_entry {
            return Err(E::custom(
                "an empty host list would refuse every request: write \"any\" to allow every host",
            ));
        }
        Ok(HostPolicy { allow: Some(list) })
    }

    struct HostVisitor;

    impl<'de> Visitor<'de> for HostVisitor {
        type Value = HostPolicy;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("\"any\", \"loopback\" or a list of host names")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<HostPolicy, E> {
            let v = v.trim();
            if v.is_empty() || v.eq_ignore_ascii_case(ANY) {
                return Ok(HostPolicy::any());
            }
            from_entries(
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned),
            )
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostPolicy, A::Error> {
            let mut entries = Vec::new();
            while let Some(e) = seq.next_element::<String>()? {
                entries.push(e);
            }
            from_entries(entries)
        }
    }

    impl<'de> Deserialize<'de> for HostPolicy {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostPolicy, D::Error> {
            d.deserialize_any(HostVisitor)
        }
    }
}

/// `host[:port]` → (lowercase name without a trailing dot, port); IPv6 literals keep their
/// brackets. `None` when it is not a plain host and port.
fn split_host(raw: &str) -> Option<(String, Option<u16>)> {
    let raw = raw.trim();
    let (name, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let (name, rest) = raw.split_at(end + 1);
        let inner = &name[1..name.len() - 1];
        inner.parse::<Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (name, port)
    } else {
        match raw.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (raw, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if name.is_empty() || (!name.starts_with('[') && !name.bytes().all(plain)) {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

/// Whether a name from [`split_host`] is a loopback name.
fn is_loopback_name(name: &str) -> bool {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|a| {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return v4.is_loopback();
    }
    if name == "localhost" {
        return true;
    }
    // `*.localhost`: every label non-empty, letters, digits and inner hyphens.
    name.strip_suffix(".localhost").is_some_and(|sub| {
        sub.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    })
}

/// `"https://a.example:8443"` → `"a.example:8443"`; `None` for `"null"` and other odd values.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        let p = OriginPolicy::default();
        assert!(p.check(None, Some("h:1")).is_ok());
        assert!(p.check(Some("http://h:1"), Some("h:1")).is_ok());
        assert!(p.check(Some("http://H:1"), Some("h:1")).is_ok());
        assert!(p.check(Some("http://evil:1"), Some("h:1")).is_err());
        assert!(p.check(Some("null"), Some("h:1")).is_err());
        assert!(p.check(Some("http://h:1"), None).is_err());
    }

    #[test]
    fn loopback_hosts_at_the_boundary() {
        let p = HostPolicy::loopback();
        for ok in [
            "localhost",
            "localhost:8080",
            "LocalHost:1",
            "localhost.",
            "localhost.:80",
            "app.localhost",
            "a-b.c.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.255.255.254:65535",
            "[::1]",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            " localhost ",
        ] {
            assert!(p.check(Some(ok)).is_ok(), "{ok} should pass");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "evil.example.localhost.com",
            "127.0.0.1.evil.example",
            "128.0.0.1",
            "0.0.0.0",
            "127.1",
            "[::2]",
            "::1",
            "[::1",
            "[::1]x",
            "localhost:",
            "localhost:65536",
            "localhost:123456",
            "localhost:+80",
            "user@localhost",
            "localhost/path",
            "-a.localhost",
            "a..localhost",
            ".localhost",
            "",
        ] {
            assert!(p.check(Some(bad)).is_err(), "{bad:?} should be refused");
        }
        assert!(p.check(None).is_err());
    }

    #[test]
    fn host_allow_lists() {
        let p = HostPolicy::allow(["Chat.Example", "api.example:8443", "[2001:db8::1]:443"]);
        assert!(p.check(Some("chat.example")).is_ok());
        assert!(p.check(Some("chat.example.:80")).is_ok());
        assert!(p.check(Some("api.example:8443")).is_ok());
        assert!(p.check(Some("api.example:443")).is_err());
        assert!(p.check(Some("api.example")).is_err());
        assert!(p.check(Some("[2001:db8::1]:443")).is_ok());
        assert!(p.check(Some("evil.example")).is_err());
        assert!(p.check(Some("localhost")).is_err());
        assert!(
            p.clone()
                .with_loopback(true)
                .check(Some("localhost"))
                .is_ok()
        );
        assert!(HostPolicy::any().check(None).is_ok());
        assert!(HostPolicy::any().check(Some("anything at all")).is_ok());
        assert!(HostPolicy::default().is_any());
        assert!(!p.is_any());
    }

    #[test]
    fn requests_with_an_absolute_target_are_checked_too() {
        let p = HostPolicy::loopback();
        let req = |target: &str, host: &str| {
            http::Request::get(target)
                .header(http::header::HOST, host)
                .body(())
                .unwrap()
        };
        assert!(p.check_request(&req("/ws", "localhost:1")).is_ok());
        assert!(p.check_request(&req("/ws", "evil.example")).is_err());
        assert!(
            p.check_request(&req("http://evil.example/ws", "localhost"))
                .is_err()
        );
        let none = http::Request::get("/ws").body(()).unwrap();
        assert!(p.check_request(&none).is_err());
        assert!(HostPolicy::any().check_request(&none).is_ok());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn config_round_trips_and_refuses_unknown_keys() {
        let d = WsConfig::default();
        let text = toml::to_string(&d).unwrap();
        assert_eq!(toml::from_str::<WsConfig>(&text).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<WsConfig>(&json).unwrap(), d);
        for line in [
            "handshake_timeout = \"10s\"",
            "ping_interval = \"30s\"",
            "host = \"any\"",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let c: WsConfig = toml::from_str(
            "ping_interval = \"off\"\nhost = [\"Chat.Example\", \"loopback\", \"api.example:8443\"]\n\
             [origin]\nallowed = [\"https://chat.example\"]\n",
        )
        .unwrap();
        let want = WsConfig::default()
            .with_ping_interval(None)
            .with_host(HostPolicy::allow(["chat.example", "api.example:8443"]).with_loopback(true))
            .with_origin(OriginPolicy::allow(["https://chat.example"]));
        assert_eq!(c, want);
        let back = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<WsConfig>(&back).unwrap(), want, "{back}");
        assert!(back.contains("ping_interval = \"off\""), "{back}");

        let e = toml::from_str::<WsConfig>("max_mesage_size = 1\n").unwrap_err();
        assert!(e.to_string().contains("`max_mesage_size`"), "{e}");
        let e = toml::from_str::<WsConfig>("[origin]\nallow = []\n").unwrap_err();
        assert!(e.to_string().contains("`allow`"), "{e}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deflate_is_off_unless_its_table_is_there() {
        assert_eq!(toml::from_str::<WsConfig>("").unwrap().deflate, None);
        let c: WsConfig = toml::from_str("[deflate]\n").unwrap();
        assert_eq!(c.deflate, Some(DeflateConfig::default()));
        let c: WsConfig =
            toml::from_str("[deflate]\nthreshold = 0\nserver_no_context_takeover = true\n")
                .unwrap();
        let want = DeflateConfig::default()
            .with_threshold(0)
            .with_server_no_context_takeover(true);
        assert_eq!(c.deflate.as_ref(), Some(&want));
        let back = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<WsConfig>(&back).unwrap(), c, "{back}");
        let e = toml::from_str::<WsConfig>("[deflate]\nlevel = 9\n").unwrap_err();
        assert!(e.to_string().contains("`level`"), "{e}");
        // `"off"` is `None`, and `None` is written so.
        let c: WsConfig = toml::from_str("deflate = \"off\"\n").unwrap();
        assert_eq!(c.deflate, None);
        let back = toml::to_string(&c).unwrap();
        assert!(back.contains("deflate = \"off\""), "{back}");
        let json = serde_json::to_string(&WsConfig::default()).unwrap();
        assert!(json.contains("\"deflate\":\"off\""), "{json}");
        let e = toml::from_str::<WsConfig>("deflate = \"on\"\n").unwrap_err();
        assert!(e.to_string().contains("\"off\""), "{e}");
        // Window bits at the boundaries: 9 and 15 read, 8 and 16 are refused.
        for (field, bits, ok) in [
            ("server_max_window_bits", 9, true),
            ("server_max_window_bits", 15, true),
            ("server_max_window_bits", 8, false),
            ("client_max_window_bits", 16, false),
            ("client_max_window_bits", 9, true),
            ("client_max_window_bits", 256, false),
            ("client_max_window_bits", -1, false),
        ] {
            let r = toml::from_str::<WsConfig>(&format!("[deflate]\n{field} = {bits}\n"));
            match r {
                Ok(c) => {
                    assert!(ok, "{field} = {bits} was read");
                    let d = c.deflate.unwrap();
                    let got = if field.starts_with("server") {
                        d.server_max_window_bits
                    } else {
                        d.client_max_window_bits
                    };
                    assert_eq!(i64::from(got), bits);
                }
                Err(e) => {
                    assert!(!ok, "{field} = {bits}: {e}");
                    assert!(e.to_string().contains("9..=15"), "{e}");
                }
            }
        }
        // Window bits outside 9..=15 are clamped by the builder.
        assert_eq!(
            DeflateConfig::default()
                .with_client_max_window_bits(8)
                .with_server_max_window_bits(16),
            DeflateConfig::default()
                .with_client_max_window_bits(9)
                .with_server_max_window_bits(15)
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn host_policies_as_written() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct W {
            host: HostPolicy,
        }
        let read = |v: &str| toml::from_str::<W>(&format!("host = {v}")).map(|w| w.host);
        assert_eq!(read("\"any\"").unwrap(), HostPolicy::any());
        assert_eq!(read("\"\"").unwrap(), HostPolicy::any());
        assert_eq!(read("\"loopback\"").unwrap(), HostPolicy::loopback());
        assert_eq!(
            read("\"a.example, b.example:81\"").unwrap(),
            HostPolicy::allow(["a.example", "b.example:81"])
        );
        assert_eq!(
            read("[\"[::1]:80\"]").unwrap(),
            HostPolicy::allow(["[::1]:80"])
        );
        assert!(read("[]").is_err(), "an empty list refuses everything");
        let e = read("[\"user@evil\"]").unwrap_err();
        assert!(e.to_string().contains("user@evil"), "{e}");
        for p in [
            HostPolicy::any(),
            HostPolicy::loopback(),
            HostPolicy::allow(["a.example", "[2001:db8::1]:443"]).with_loopback(true),
        ] {
            let text = toml::to_string(&W { host: p.clone() }).unwrap();
            assert_eq!(toml::from_str::<W>(&text).unwrap().host, p, "{text}");
        }
    }

    #[test]
    fn lists_and_wildcards() {
        let p = OriginPolicy::allow(["https://a.example/"]).with_allow_same_host(false);
        assert!(p.check(Some("https://A.example"), None).is_ok());
        assert!(p.check(Some("https://b.example"), None).is_err());
        assert!(OriginPolicy::any().check(Some("x"), None).is_ok());
        assert!(
            OriginPolicy::any()
                .with_allow_missing(false)
                .check(None, None)
                .is_err()
        );
    }
}
