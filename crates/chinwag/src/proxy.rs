//! The event proxy: the hub asks the application's backend over HTTP (a POST of JSON per
//! event, one URL per event, each optional) who a connection is (`connect`), what to answer an
//! `app` message or a tok-door frame (`app`), whether a join or a publish goes through, maybe
//! changed (`join`, `publish`), and tells it when a connection ended (`disconnect`).
//!
//! [`EventProxy`] is both an [`App`] (give it to
//! [`ServerBuilder::app`](crate::ServerBuilder::app)) and, when a `connect` URL is set, an
//! [`Authenticator`] (give it to [`ServerBuilder::authenticator`](crate::ServerBuilder::authenticator)):
//! [`ServerBuilder::event_proxy`](crate::ServerBuilder::event_proxy) does both. The exact JSON of
//! every request and answer, and the failure policy of each event, are in `docs/server.md`
//! ("Event proxy").
//!
//! Bounded: every call is bounded by [`ProxyConfig::timeout`] (connecting, sending, reading the
//! answer, at most [`ProxyConfig::max_answer_bytes`]); at most [`ProxyConfig::max_in_flight`]
//! calls run at once — past it an event does not wait: it fails as `busy` and its failure
//! policy applies (a `disconnect` waits in its queue, at most
//! [`ProxyConfig::disconnect_queue`] of them). Only `disconnect` is retried (it carries an
//! `id` the backend can deduplicate on); the others are answered once or fail.
//!
//! Plain `http://` backends only (the backend is usually beside the server).
//!
//! ```no_run
//! use chinwag::proxy::{EventProxy, ProxyConfig};
//! # async fn run() -> chinwag::Result<()> {
//! let proxy = EventProxy::new(
//!     ProxyConfig::default()
//!         .with_connect("http://127.0.0.1:9000/chinwag/connect".parse().unwrap())
//!         .with_app("http://127.0.0.1:9000/chinwag/app".parse().unwrap()),
//! )
//! .expect("http:// URLs");
//! let server = chinwag::Server::builder()
//!     .http("127.0.0.1:8080".parse().unwrap())
//!     .event_proxy(proxy)
//!     .start()
//!     .await?;
//! # let _ = server;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::http::Uri;
use crate::hub::auth::{AuthContext, AuthError, Authenticated, Authenticator, BoxFuture};
use crate::hub::{
    App, Body, Close, Conn, DEFAULT_DEVICE, Device, Hub, Incoming, JoinDecision, Meta, Rejection,
};

/// Metric: calls to the backend, by `event` and `outcome` (`ok`, `refused`, `failed`, `busy`).
pub const REQUESTS: &str = "chinwag_proxy_requests_total";
/// Metric: seconds per call to the backend (answered or not), by `event`.
pub const LATENCY: &str = "chinwag_proxy_request_seconds";
/// Metric: `disconnect` notifications given up on, by `reason` (`retries`, `queue_full`).
pub const DROPPED: &str = "chinwag_proxy_disconnects_dropped_total";

/// What an event does when the backend cannot answer (down, too slow, a status other than
/// 2xx, an answer that is not the expected JSON, or `busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse the join, publish or app message (the client gets `refused`, reason
    /// `backend unavailable: …`).
    #[default]
    Refuse,
    /// Let it through as the client sent it (an app message: answered with nothing).
    Allow,
}

/// The proxy's settings: a URL per event (`None`: the event is not proxied), a timeout, a
/// concurrency bound, the failure policies.
///
/// ```
/// use std::time::Duration;
/// use chinwag::proxy::{FailurePolicy, ProxyConfig};
/// let c = ProxyConfig::default()
///     .with_join("http://127.0.0.1:9000/join".parse().unwrap())
///     .with_timeout(Duration::from_secs(2))
///     .with_join_failure(FailurePolicy::Allow);
/// assert_eq!(c.max_in_flight, 256);
/// assert!(c.publish.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// `connect`: who a token's connection is. Failure policy: always refuse.
    pub connect: Option<Uri>,
    /// `app`: messages for the application (chat `app`, tok frames) and their answers.
    pub app: Option<Uri>,
    /// `join`: allow, refuse or redirect a join.
    pub join: Option<Uri>,
    /// `publish`: allow, refuse or change a publish.
    pub publish: Option<Uri>,
    /// `disconnect`: told when a connection ended.
    pub disconnect: Option<Uri>,
    /// Bound of one call (connect, send, answer). Default 5 s.
    pub timeout: Duration,
    /// Calls at once, all events together. Default 256.
    pub max_in_flight: usize,
    /// Largest answer read. Default 1 MiB.
    pub max_answer_bytes: usize,
    /// `app` when the backend cannot answer. Default refuse.
    pub app_failure: FailurePolicy,
    /// `join` when the backend cannot answer. Default refuse.
    pub join_failure: FailurePolicy,
    /// `publish` when the backend cannot answer. Default refuse.
    pub publish_failure: FailurePolicy,
    /// Attempts after the first of a `disconnect` that failed. Default 3.
    pub disconnect_retries: u32,
    /// `disconnect` notifications waiting for a call slot. Default 10 000.
    pub disconnect_queue: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect: None,
            app: None,
            join: None,
            publish: None,
            disconnect: None,
            timeout: Duration::from_secs(5),
            max_in_flight: 256,
            max_answer_bytes: 1 << 20,
            app_failure: FailurePolicy::Refuse,
            join_failure: FailurePolicy::Refuse,
            publish_failure: FailurePolicy::Refuse,
            disconnect_retries: 3,
            disconnect_queue: 10_000,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta] $name:ident $field:ident: $t:ty;)*) => {
        impl ProxyConfig {
            $(#[$doc] pub fn $name(mut self, v: $t) -> Self { self.$field = v.into(); self })*
        }
    };
}

setter! {
    /// Sets [`connect`](Self::connect).
    with_connect connect: Uri;
    /// Sets [`app`](Self::app).
    with_app app: Uri;
    /// Sets [`join`](Self::join).
    with_join join: Uri;
    /// Sets [`publish`](Self::publish).
    with_publish publish: Uri;
    /// Sets [`disconnect`](Self::disconnect).
    with_disconnect disconnect: Uri;
    /// Sets [`timeout`](Self::timeout).
    with_timeout timeout: Duration;
    /// Sets [`max_in_flight`](Self::max_in_flight).
    with_max_in_flight max_in_flight: usize;
    /// Sets [`max_answer_bytes`](Self::max_answer_bytes).
    with_max_answer_bytes max_answer_bytes: usize;
    /// Sets [`app_failure`](Self::app_failure).
    with_app_failure app_failure: FailurePolicy;
    /// Sets [`join_failure`](Self::join_failure).
    with_join_failure join_failure: FailurePolicy;
    /// Sets [`publish_failure`](Self::publish_failure).
    with_publish_failure publish_failure: FailurePolicy;
    /// Sets [`disconnect_retries`](Self::disconnect_retries).
    with_disconnect_retries disconnect_retries: u32;
    /// Sets [`disconnect_queue`](Self::disconnect_queue).
    with_disconnect_queue disconnect_queue: usize;
}

/// A URL the proxy cannot call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event proxy: the {event} URL {url}: {why}")]
pub struct ProxyConfigError {
    /// The event.
    pub event: &'static str,
    /// The URL.
    pub url: String,
    /// What is wrong.
    pub why: &'static str,
}

/// The event proxy (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct EventProxy(Arc<Inner>);

struct Inner {
    config: ProxyConfig,
    slots: Arc<Semaphore>,
    pool: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    disconnects: Mutex<Option<mpsc::Sender<Value>>>,
    next_id: AtomicU64,
    started: u64,
}

impl std::fmt::Debug for EventProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProxy")
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// Why a call got no usable answer.
#[derive(Debug)]
enum CallError {
    Busy,
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Busy => f.write_str("busy: too many calls to the backend in flight"),
            CallError::Failed(why) => f.write_str(why),
        }
    }
}

/// A refusal or a decision from the backend's JSON answer.
#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    refuse: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    meta: Option<Meta>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    answer_base64: Option<String>,
}

impl EventProxy {
    /// A proxy with `config`; a `disconnect` URL starts its notification task (call it
    /// inside a tokio runtime then).
    ///
    /// # Errors
    ///
    /// A URL that is not `http://host[:port]/…`.
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyConfigError> {
        for (event, url) in [
            ("connect", &config.connect),
            ("app", &config.app),
            ("join", &config.join),
            ("publish", &config.publish),
            ("disconnect", &config.disconnect),
        ] {
            if let Some(u) = url {
                let bad = |why| ProxyConfigError {
                    event,
                    url: u.to_string(),
                    why,
                };
                if u.scheme_str() != Some("http") {
                    return Err(bad("only http:// URLs are supported"));
                }
                if u.host().is_none_or(str::is_empty) {
                    return Err(bad("has no host"));
                }
            }
        }
        describe();
        let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let inner = Arc::new(Inner {
            slots,
            pool: Mutex::new(HashMap::new()),
            disconnects: Mutex::new(None),
            next_id: AtomicU64::new(0),
            started,
            config,
        });
        if inner.config.disconnect.is_some() {
            let (tx, rx) = mpsc::channel(inner.config.disconnect_queue.max(1));
            *inner.disconnects.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
            tokio::spawn(notify_disconnects(Arc::downgrade(&inner), rx));
        }
        Ok(EventProxy(inner))
    }

    /// Its settings.
    pub fn config(&self) -> &ProxyConfig {
        &self.0.config
    }

    /// Whether it decides who connections are (a `connect` URL is set).
    pub fn authenticates(&self) -> bool {
        self.0.config.connect.is_some()
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Calls of the event proxy to the backend, by event and outcome."
    );
    describe_histogram!(
        LATENCY,
        Unit::Seconds,
        "Time of each call of the event proxy, by event."
    );
    describe_counter!(
        DROPPED,
        "Disconnect notifications the event proxy gave up on, by reason."
    );
}

fn count(event: &'static str, outcome: &'static str) {
    metrics::counter!(REQUESTS, "event" => event, "outcome" => outcome).increment(1);
}

/// The JSON of a connection in every request but `connect`.
fn conn_json(conn: &Conn) -> Value {
    let d = conn.device();
    json!({
        "id": conn.id().0,
        "user": &*d.user,
        "device": &*d.device,
        "door": conn.door(),
        "ip": conn.ip().map(|ip| ip.to_string()),
    })
}

/// `body` (text) or `body_base64` (binary) of `b`, under the names `text` / `b64`.
fn put_body(v: &mut Value, text: &str, b64: &str, b: &Body) {
    match b.as_text() {
        Some(t) => v[text] = Value::String(t.to_owned()),
        None => v[b64] = Value::String(base64::engine::general_purpose::STANDARD.encode(b.bytes())),
    }
}

fn body_from(
    text: Option<String>,
    b64: Option<String>,
    what: &str,
) -> Result<Option<Body>, String> {
    match (text, b64) {
        (None, None) => Ok(None),
        (Some(t), None) => Ok(Some(Body::text(t))),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(|v| Some(Body::binary(v)))
            .map_err(|e| format!("{what}_base64 is not base64: {e}")),
        (Some(_), Some(_)) => Err(format!("both {what} and {what}_base64")),
    }
}

impl Inner {
    /// One call: a slot (or `busy`), the POST, a 2xx answer parsed as [`Answer`].
    async fn call(&self, event: &'static str, url: &Uri, req: &Value) -> Result<Answer, CallError> {
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            count(event, "busy");
            return Err(CallError::Busy);
        };
        let start = Instant::now();
        let r = tokio::time::timeout(self.config.timeout, self.post(url, req)).await;
        metrics::histogram!(LATENCY, "event" => event).record(start.elapsed().as_secs_f64());
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
        };
        let r = r.and_then(|bytes| {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Answer::default());
            }
            serde_json::from_slice::<Answer>(&bytes)
                .map_err(|e| format!("answer is not the expected JSON: {e}"))
        });
        match r {
            Ok(a) => {
                count(event, if a.refuse.is_some() { "refused" } else { "ok" });
                Ok(a)
            }
            Err(why) => {
                count(event, "failed");
                tracing::warn!(event, url = %url, error = %why, "event proxy: the backend did not answer");
                Err(CallError::Failed(why))
            }
        }
    }

    /// The POST on a pooled HTTP/1 connection; the answer's body when the status is 2xx.
    async fn post(&self, url: &Uri, req: &Value) -> Result<Bytes, String> {
        let authority = url
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut sender = self.connection(&authority, url).await?;
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, &authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), self.config.max_answer_bytes)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        self.put_back(authority, sender);
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        Ok(bytes)
    }

    /// An idle pooled connection to `authority`, or a new one.
    async fn connection(
        &self,
        authority: &str,
        url: &Uri,
    ) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(authority)
                .and_then(Vec::pop);
            let Some(mut s) = idle else { break };
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let host = url
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Keeps a connection for the next call (at most `max_in_flight` idle per backend).
    fn put_back(&self, authority: String, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool.entry(authority).or_default();
        if idle.len() < self.config.max_in_flight {
            idle.push(sender);
        }
    }

    /// An event's failure: refused (`refuse`) or let through (`Ok(None)`).
    fn failed(
        &self,
        event: &'static str,
        policy: FailurePolicy,
        e: &CallError,
    ) -> Result<(), Rejection> {
        match policy {
            FailurePolicy::Refuse => Err(Rejection::new(format!("backend unavailable: {e}"))),
            FailurePolicy::Allow => {
                tracing::debug!(event, error = %e, "event proxy: let through as the backend failed");
                Ok(())
            }
        }
    }
}

/// Sends the queued `disconnect` notifications, each when a call slot is free, retried with
/// backoff; ends when the proxy is dropped.
async fn notify_disconnects(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<Value>) {
    while let Some(req) = rx.recv().await {
        let Some(me) = inner.upgrade() else { return };
        let Ok(slot) = me.slots.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let Some(url) = me.config.disconnect.clone() else {
                return;
            };
            let mut backoff = Duration::from_millis(100);
            for attempt in 0..=me.config.disconnect_retries {
                let start = Instant::now();
                let r = tokio::time::timeout(me.config.timeout, me.post(&url, &req)).await;
                metrics::histogram!(LATENCY, "event" => "disconnect")
                    .record(start.elapsed().as_secs_f64());
                match r {
                    Ok(Ok(_)) => {
                        count("disconnect", "ok");
                        return;
                    }
                    Ok(Err(why)) => {
                        count("disconnect", "failed");
                        tracing::debug!(attempt, error = %why, "event proxy: disconnect not delivered");
                    }
                    Err(_) => {
                        count("disconnect", "failed");
                        tracing::debug!(attempt, "event proxy: disconnect timed out");
                    }
                }
                if attempt < me.config.disconnect_retries {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            metrics::counter!(DROPPED, "reason" => "retries").increment(1);
            tracing::warn!(
                conn = req["conn"]["id"].as_u64(),
                user = req["conn"]["user"].as_str(),
                attempts = me.config.disconnect_retries + 1,
                "event proxy: a disconnect notification was dropped (the backend did not take it)"
            );
        });
    }
}

impl Authenticator for EventProxy {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        self.authenticate_bytes(token.as_bytes(), AuthContext::new())
    }

    fn authenticate_bytes<'a>(
        &'a self,
        token: &'a [u8],
        ctx: AuthContext,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        Box::pin(async move {
            let inner = &self.0;
            let Some(url) = &inner.config.connect else {
                return Err(AuthError::Refused("no connect URL configured".into()));
            };
            let mut req = json!({
                "event": "connect",
                "door": ctx.door,
                "ip": ctx.ip.map(|ip: IpAddr| ip.to_string()),
            });
            match std::str::from_utf8(token) {
                Ok(t) => req["token"] = Value::String(t.to_owned()),
                Err(_) => {
                    req["token_base64"] =
                        Value::String(base64::engine::general_purpose::STANDARD.encode(token));
                }
            }
            let a = inner
                .call("connect", url, &req)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
            if let Some(why) = a.refuse {
                return Err(AuthError::Refused(why));
            }
            let Some(user) = a.user else {
                count("connect", "failed");
                return Err(AuthError::Unavailable(
                    "the backend's answer has neither `user` nor `refuse`".into(),
                ));
            };
            let mut device = Device::new(user, a.device.unwrap_or_else(|| DEFAULT_DEVICE.into()));
            if let Some(meta) = a.meta {
                device.meta = Arc::new(meta);
            }
            let mut auth = Authenticated::new(device);
            if let Some(exp) = a.expires_at {
                auth = auth.with_expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
            }
            Ok(auth)
        })
    }
}

impl App for EventProxy {
    fn before_receive_async<'a>(
        &'a self,
        conn: &'a Conn,
        msg: Incoming,
    ) -> BoxFuture<'a, Result<Incoming, Rejection>> {
        Box::pin(async move {
            let inner = &self.0;
            let (Some(url), Incoming::Publish { room, body }) = (&inner.config.publish, &msg)
            else {
                return Ok(msg);
            };
            let mut req = json!({ "event": "publish", "conn": conn_json(conn), "room": room });
            put_body(&mut req, "body", "body_base64", body);
            match inner.call("publish", url, &req).await {
                Ok(a) => {
                    if let Some(why) = a.refuse {
                        return Err(Rejection::new(why));
                    }
                    match body_from(a.body, a.body_base64, "body") {
                        Ok(Some(body)) => Ok(Incoming::Publish {
                            room: room.clone(),
                            body,
                        }),
                        Ok(None) => Ok(msg),
                        Err(why) => {
                            count("publish", "failed");
                            inner.failed(
                                "publish",
                                inner.config.publish_failure,
                                &CallError::Failed(why),
                            )?;
                            Ok(msg)
                        }
                    }
                }
                Err(e) => {
                    inner.failed("publish", inner.config.publish_failure, &e)?;
                    Ok(msg)
                }
            }
        })
    }

    fn before_join<'a>(
        &'a self,
        conn: &'a Conn,
        room: &'a str,
    ) -> BoxFuture<'a, Result<JoinDecision, Rejection>> {
        Box::pin(async move {
            let inner = &self.0;
            let Some(url) = &inner.config.join else {
                return Ok(JoinDecision::Allow);
            };
            let req = json!({ "event": "join", "conn": conn_json(conn), "room": room });
            match inner.call("join", url, &req).await {
                Ok(a) => match (a.refuse, a.room) {
                    (Some(why), _) => Err(Rejection::new(why)),
                    (None, Some(other)) if other != room => Ok(JoinDecision::Room(other)),
                    (None, _) => Ok(JoinDecision::Allow),
                },
                Err(e) => inner
                    .failed("join", inner.config.join_failure, &e)
                    .map(|()| JoinDecision::Allow),
            }
        })
    }

    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        conn: &'a Conn,
        body: Body,
    ) -> BoxFuture<'a, Result<Option<Body>, Rejection>> {
        Box::pin(async move {
            let inner = &self.0;
            let Some(url) = &inner.config.app else {
                return Ok(None);
            };
            let mut req = json!({ "event": "app", "conn": conn_json(conn) });
            put_body(&mut req, "body", "body_base64", &body);
            match inner.call("app", url, &req).await {
                Ok(a) => {
                    if let Some(why) = a.refuse {
                        return Err(Rejection::new(why));
                    }
                    match body_from(a.answer, a.answer_base64, "answer") {
                        Ok(answer) => Ok(answer),
                        Err(why) => {
                            count("app", "failed");
                            inner.failed(
                                "app",
                                inner.config.app_failure,
                                &CallError::Failed(why),
                            )?;
                            Ok(None)
                        }
                    }
                }
                Err(e) => inner
                    .failed("app", inner.config.app_failure, &e)
                    .map(|()| None),
            }
        })
    }

    fn on_close(&self, conn: &Conn, close: Option<&Close>) {
        let inner = &self.0;
        let tx = inner
            .disconnects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(tx) = tx else { return };
        let n = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let req = json!({
            "event": "disconnect",
            "id": format!("{:x}-{n}", inner.started),
            "conn": conn_json(conn),
            "reason": close.map(|c| json!({ "code": c.code.0, "name": c.code.name(), "text": &*c.reason })),
        });
        if tx.try_send(req).is_err() {
            metrics::counter!(DROPPED, "reason" => "queue_full").increment(1);
            tracing::warn!(conn = conn.id().0, user = %conn.device().user, "event proxy: a disconnect notification was dropped (its queue is full)");
        }
    }
}
