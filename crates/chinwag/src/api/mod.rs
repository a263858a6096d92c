//! The **server API**: what an application's backend asks of the hub over HTTP — send to a
//! user, publish to a room, broadcast, create, change and remove rooms, kick, who is online,
//! room members, the room list, history, stats, and batches of these — as JSON over `POST
//! /api/<method>` on the HTTP listener. The wire format is `docs/server-api.md`.
//!
//! The operations are the [`Hub`]'s methods; [`Api`] is a thin door over them: it checks the
//! key (`Authorization: apikey KEY`, compared in constant time), bounds every call (body size
//! and time, batch size, page sizes) and rate limits them, turns JSON into the hub's calls and
//! their results and errors back into JSON. Mount it with
//! [`ServerBuilder::api`](crate::ServerBuilder::api); it is off unless a key is set, and then
//! `/api/` answers 404 like any unknown path.
//!
//! ```no_run
//! use chinwag::api::ApiConfig;
//!
//! # async fn f() -> chinwag::Result<()> {
//! let server = chinwag::Server::builder()
//!     .http("127.0.0.1:8080".parse()?)
//!     .jwt_secret("a long random secret that signs the users' tokens")
//!     .api(ApiConfig::new("a long random API key"))
//!     .start()
//!     .await?;
//! // curl -X POST -H 'Authorization: apikey a long random API key' \
//! //      -d '{"user":"alice","body":"hi"}' http://127.0.0.1:8080/api/send
//! # let _ = server; Ok(()) }
//! ```
//!
//! The same calls without HTTP: [`Api::call`] takes a method's name and its JSON parameters.
//!
//! ```
//! use chinwag::api::{Api, ApiConfig, json};
//! use chinwag::hub::Hub;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let api = Api::new(Hub::builder().build(), ApiConfig::new("key")).unwrap();
//! let room = api.call("create_room", json!({"room": "team"})).await.unwrap();
//! assert_eq!(room["room"], "team");
//! let err = api.call("create_room", json!({"room": "team"})).await.unwrap_err();
//! assert_eq!((err.status, err.code), (409, "exists"));
//! # }
//! ```

mod ops;

/// The JSON the API takes and gives ([`Api::call`]), re-exported so a program needs no
/// `serde_json` of its own.
pub use serde_json::{Value, json};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::hub::{Hub, Rate};
use crate::ws::{HttpHandler, read_body};

/// Where the API is mounted on the HTTP listener: `POST /api/<method>`.
pub const API_PREFIX: &str = "/api/";

/// The server API's key and bounds. Every field has a default (listed with it) except the
/// key; an empty key turns the API off.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiConfig {
    /// The key callers give in `Authorization: apikey KEY`. Empty: the API is off.
    pub key: String,
    /// Largest request body in bytes (default 1 MiB); over it: `413`.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (default 10 s); over it: `408`.
    pub body_timeout: Duration,
    /// Most commands in one `batch` (default 100); over it: `413`.
    pub max_batch: usize,
    /// Longest page of rooms, members, history, conversations and online users (default 100);
    /// a larger `limit` is cut to it, and a `limit` of 0 counts as 1.
    pub max_page: usize,
    /// Calls per second and burst, for all callers together (default 1 000/s, bursts of
    /// 1 000); a batch takes one per command. Over it: `429` with `Retry-After`.
    pub rate: Rate,
}

impl ApiConfig {
    /// The API with `key` and the default bounds.
    pub fn new(key: impl Into<String>) -> Self {
        ApiConfig {
            key: key.into(),
            ..ApiConfig::default()
        }
    }

    /// Whether the API is on (a key is set).
    pub fn is_on(&self) -> bool {
        !self.key.is_empty()
    }

    /// Checks the bounds: none is zero, and a full batch fits in the rate's burst (else it
    /// could never run).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the bound.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("api: {what}")));
        if self.max_body_bytes == 0 || self.max_batch == 0 || self.max_page == 0 {
            return bad("max_body_bytes, max_batch and max_page must be at least 1");
        }
        if self.body_timeout.is_zero() {
            return bad("body_timeout must be longer than 0");
        }
        if self.rate.per_second == 0 || self.rate.burst == 0 {
            return bad("rate.per_second and rate.burst must be at least 1");
        }
        if self.max_batch > self.rate.burst as usize {
            return bad(
                "max_batch must not exceed rate.burst (a batch takes one unit per command)",
            );
        }
        Ok(())
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            key: String::new(),
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(10),
            max_batch: 100,
            max_page: 100,
            rate: Rate::new(1_000, 1_000),
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("key", &if self.is_on() { "<set>" } else { "" })
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .field("max_batch", &self.max_batch)
            .field("max_page", &self.max_page)
            .field("rate", &self.rate)
            .finish()
    }
}

/// A refused call: its HTTP status, a stable code and a message for people
/// (`{"error": {"code": ..., "message": ...}}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status (400, 401, 403, 404, 405, 408, 409, 413, 429, 500, 503).
    pub status: u16,
    /// A stable code (`bad_request`, `not_found`, `exists`, ...: `docs/server-api.md`).
    pub code: &'static str,
    /// What happened.
    pub message: String,
    /// For 429: when to try again.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// Its JSON: `{"code": ..., "message": ...}`.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A token bucket (GCRA) on Tokio's clock: one instant, the theoretical arrival time of the
/// next unit.
#[derive(Debug)]
struct Limiter {
    rate: Rate,
    tat: Mutex<Instant>,
}

impl Limiter {
    fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            tat: Mutex::new(Instant::now()),
        }
    }

    /// Takes `n` units, or says how long until they would be there.
    fn take(&self, n: u32) -> std::result::Result<(), Duration> {
        let interval = Duration::from_micros(1_000_000 / u64::from(self.rate.per_second.max(1)));
        let allowed = interval * self.rate.burst.max(1);
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let next = (*tat).max(now) + interval * n;
        let limit = now + allowed;
        if next > limit {
            return Err(next - limit);
        }
        *tat = next;
        Ok(())
    }

    /// Gives `n` units back (taken for a call that was then refused as a whole).
    fn refund(&self, n: u32) {
        let interval = Duration::from_micros(1_000_000 / u64::from(self.rate.per_second.max(1)));
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        *tat = tat.checked_sub(interval * n).unwrap_or(*tat);
    }
}

/// The server API over a [`Hub`]: [`call`](Self::call) runs one method, [`answer`](Self::answer)
/// is the HTTP door (key, bounds, rate, JSON), [`handler`](Self::handler) mounts it on a
/// listener. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    config: ApiConfig,
    limiter: Limiter,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The methods of the API, in the order `docs/server-api.md` lists them.
pub const METHODS: &[&str] = &[
    "send",
    "publish",
    "broadcast",
    "create_room",
    "change_room",
    "remove_room",
    "kick",
    "online",
    "devices",
    "room_members",
    "rooms",
    "history",
    "conversation",
    "stats",
    "batch",
];

impl Api {
    /// The API over `hub` with `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the key is empty or a bound is invalid ([`ApiConfig::check`]).
    pub fn new(hub: Hub, config: ApiConfig) -> Result<Self> {
        if !config.is_on() {
            return Err(Error::Config("api: the key is empty".into()));
        }
        config.check()?;
        Ok(Api {
            inner: Arc::new(Inner {
                hub,
                limiter: Limiter::new(config.rate),
                config,
            }),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Runs `method` with its JSON `params` (what `POST /api/<method>` carries) and returns its
    /// result: the library's operations, with no key and no rate limit (they are the HTTP
    /// door's). A `batch` runs its commands in order, each answered on its own.
    ///
    /// # Errors
    ///
    /// [`ApiError`]: unknown method (404 `unknown_method`), bad parameters (400), and what the
    /// hub refused (`docs/server-api.md` lists each code).
    pub async fn call(&self, method: &str, params: Value) -> std::result::Result<Value, ApiError> {
        if method == "batch" {
            return self.batch(params).await;
        }
        ops::call(&self.inner.hub, &self.inner.config, method, params).await
    }

    async fn batch(&self, params: Value) -> std::result::Result<Value, ApiError> {
        let commands = match params.get("commands") {
            Some(Value::Array(c)) => c,
            _ => return Err(ApiError::bad("batch: `commands` must be an array")),
        };
        if commands.len() > self.inner.config.max_batch {
            return Err(ApiError::new(
                413,
                "batch_too_large",
                format!(
                    "batch of {} commands over the limit of {}",
                    commands.len(),
                    self.inner.config.max_batch
                ),
            ));
        }
        let mut replies = Vec::with_capacity(commands.len());
        for c in commands {
            let reply = match (c.get("method").and_then(Value::as_str), c.get("params")) {
                (Some("batch"), _) => Err(ApiError::bad("a batch cannot hold a batch")),
                (Some(m), p) => {
                    let p = p.cloned().unwrap_or_else(|| json!({}));
                    ops::call(&self.inner.hub, &self.inner.config, m, p).await
                }
                (None, _) => Err(ApiError::bad("batch: each command needs a `method`")),
            };
            replies.push(match reply {
                Ok(result) => json!({ "result": result }),
                Err(e) => json!({ "error": e.to_json(), "status": e.status }),
            });
        }
        Ok(json!({ "replies": replies }))
    }

    /// The HTTP door for a request whose head is `method`, `path` and `headers` and whose body
    /// is `body` (the caller read it within [`ApiConfig::max_body_bytes`]): checks the key,
    /// the rate, the JSON, and answers `200 {"result": ...}` or the error's status with
    /// `{"error": {"code", "message"}}`. [`handler`](Self::handler) calls it; a test or
    /// another HTTP server may too.
    pub async fn answer(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match self.answer_inner(method, path, headers, body).await {
            Ok(result) => json_response(StatusCode::OK, &json!({ "result": result })),
            Err(e) => error_response(&e),
        }
    }

    async fn answer_inner(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> std::result::Result<Value, ApiError> {
        self.precheck(method, path, headers)?;
        self.after_precheck(path, body).await
    }

    /// What is checked before the body is read: the path names a method, the HTTP method is
    /// POST, the key, and one unit of the rate.
    fn precheck<'p>(
        &self,
        method: &Method,
        path: &'p str,
        headers: &HeaderMap,
    ) -> std::result::Result<&'p str, ApiError> {
        let name = path.strip_prefix(API_PREFIX).unwrap_or("");
        if !self.key_matches(headers) {
            return Err(ApiError::new(
                401,
                "unauthorized",
                "missing or wrong API key (Authorization: apikey KEY)",
            ));
        }
        if !METHODS.contains(&name) {
            return Err(ApiError::new(
                404,
                "unknown_method",
                format!("no API method `{name}`"),
            ));
        }
        if method != Method::POST {
            return Err(ApiError::new(
                405,
                "method_not_allowed",
                "API methods are called with POST",
            ));
        }
        self.rate(1)?;
        Ok(name)
    }

    fn rate(&self, n: u32) -> std::result::Result<(), ApiError> {
        self.inner.limiter.take(n).map_err(|wait| ApiError {
            retry_after: Some(wait),
            ..ApiError::new(429, "rate_limited", "over the API's call rate; retry later")
        })
    }

    /// Whether `Authorization: apikey KEY` carries the key (compared in constant time for a
    /// given length).
    fn key_matches(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let v = v.as_bytes();
        let Some(given) = v
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"apikey "))
            .and(v.get(7..))
        else {
            return false;
        };
        bool::from(given.ct_eq(self.inner.config.key.as_bytes()))
    }

    /// The API as an [`HttpHandler`] for [`API_PREFIX`]: reads the body within the bounds
    /// (after the key and the rate were checked, so a caller without the key gets `401` before
    /// its body is read), then [`answer`](Self::answer)s.
    pub fn handler(&self) -> HttpHandler {
        let api = self.clone();
        Arc::new(move |req| {
            let api = api.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let answer = api.answer_request(&parts, body).await;
                tracing::debug!(
                    path = parts.uri.path(),
                    status = answer.status().as_u16(),
                    "server API call"
                );
                answer
            })
        })
    }

    /// The whole request: checks, the body, the call.
    async fn answer_request(
        &self,
        parts: &http::request::Parts,
        body: hyper::body::Incoming,
    ) -> Response<Full<Bytes>> {
        if let Err(e) = self.precheck(&parts.method, parts.uri.path(), &parts.headers) {
            return error_response(&e);
        }
        let cfg = &self.inner.config;
        let body = match read_body(body, cfg.max_body_bytes, cfg.body_timeout).await {
            Ok(b) => b,
            Err(e) => {
                let status = e.status().as_u16();
                let code = match status {
                    413 => "too_large",
                    408 => "body_timeout",
                    _ => "bad_request",
                };
                return error_response(&ApiError::new(status, code, e.to_string()));
            }
        };
        // The key and a unit of the rate were taken above: go straight on.
        match self.after_precheck(parts.uri.path(), body).await {
            Ok(result) => json_response(StatusCode::OK, &json!({ "result": result })),
            Err(e) => error_response(&e),
        }
    }

    /// [`answer`](Self::answer) once [`precheck`](Self::precheck) passed.
    async fn after_precheck(
        &self,
        path: &str,
        body: Bytes,
    ) -> std::result::Result<Value, ApiError> {
        let name = path.strip_prefix(API_PREFIX).unwrap_or("");
        let params: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?
        };
        if !params.is_object() {
            return Err(ApiError::bad("the body must be a JSON object"));
        }
        if name == "batch"
            && let Some(Value::Array(c)) = params.get("commands")
            && c.len() > 1
            && c.len() <= self.inner.config.max_batch
        {
            // One unit was taken for the request; the rest of its commands take theirs, or
            // the batch is refused as a whole and gives that one back.
            if let Err(e) = self.rate(u32::try_from(c.len() - 1).unwrap_or(u32::MAX)) {
                self.inner.limiter.refund(1);
                return Err(e);
            }
        }
        self.call(name, params).await
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &json!({ "error": e.to_json() }));
    if let Some(wait) = e.retry_after {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if e.status == 405 {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if e.status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("apikey"));
    }
    r
}

#[cfg(test)]
mod tests;
