//! The plain-HTTP side of the server's port: the embedded web demo, the JavaScript client,
//! `/healthz`, `/readyz`, `/metrics` and, for development only, `/dev/token`.
//!
//! Everything here answers from memory on the connection's task (no I/O): the demo's files are
//! compiled in and prepared once (ETag, gzip), the metrics are rendered from the recorder.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chinwag::cluster::redis::ListenerStatus;

use chinwag::http::{
    Bytes, Full, HeaderValue, HttpFallback, Request, Response, StaticAsset, StatusCode, header,
};
use chinwag::hub::auth::JwtIssuer;
use metrics_exporter_prometheus::PrometheusHandle;

/// The demo's files, embedded: path, content, content type.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        include_str!("../web/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/index.html",
        include_str!("../web/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/app.js",
        include_str!("../web/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/style.css",
        include_str!("../web/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/favicon.svg",
        include_str!("../web/favicon.svg"),
        "image/svg+xml",
    ),
    (
        "/chinwag.js",
        chinwag::rpc::CHINWAG_JS,
        "text/javascript; charset=utf-8",
    ),
    (
        "/gotalk/chinwag.js",
        chinwag::rpc::CHINWAG_JS,
        "text/javascript; charset=utf-8",
    ),
];

/// Longest user or device name `/dev/token` issues a token for, in bytes.
pub const MAX_DEV_NAME: usize = 64;

/// Dev sign-in: tokens for any name, signed with a secret made at start.
pub struct DevTokens {
    /// Signs the tokens (HS256, with the secret the hub checks them against).
    pub issuer: JwtIssuer,
    /// How long a token is valid.
    pub ttl: Duration,
}

/// A cluster node's status, for `/readyz` (set once the server started; see
/// [`Web::cluster_slot`]).
pub type ClusterSlot = Arc<OnceLock<chinwag::tokio::sync::watch::Receiver<ListenerStatus>>>;

/// What the pages need from the running server.
pub struct Web {
    files: Vec<(&'static str, StaticAsset)>,
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
    cluster: ClusterSlot,
    dev: Option<DevTokens>,
}

impl Web {
    /// The pages, with `ready` telling `/readyz` whether the server takes connections.
    pub fn new(metrics: PrometheusHandle, ready: Arc<AtomicBool>, dev: Option<DevTokens>) -> Self {
        let files = FILES
            .iter()
            .map(|(path, content, ty)| (*path, StaticAsset::new(content, ty)))
            .collect();
        Web {
            files,
            metrics,
            ready,
            cluster: ClusterSlot::default(),
            dev,
        }
    }

    /// Where the server puts its cluster node's status watch
    /// ([`Server::cluster_status`](chinwag::Server::cluster_status)) once it started: then
    /// `/readyz` also requires the node's lease registered and the node not fenced.
    pub fn cluster_slot(&self) -> ClusterSlot {
        self.cluster.clone()
    }

    /// `/readyz`: ready once started and until stopping; in a cluster, also only while the
    /// node's lease is registered, it has not fenced itself, and its listener is subscribed on
    /// Redis.
    fn readiness(&self) -> Result<(), &'static str> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("not ready\n");
        }
        if let Some(status) = self.cluster.get() {
            let s = status.borrow();
            if s.fenced {
                return Err("not ready: node fenced\n");
            }
            if !s.registered {
                return Err("not ready: cluster lease not registered\n");
            }
            if !s.subscribed {
                // Redis restarting, or unreachable: nothing from other nodes reaches this one.
                return Err("not ready: cluster Redis unreachable, subscribing again\n");
            }
        }
        Ok(())
    }

    /// The fallback of the WebSocket port: every plain HTTP request comes here.
    pub fn into_fallback(self) -> HttpFallback {
        let web = Arc::new(self);
        Arc::new(move |req| Some(web.answer(req)))
    }

    fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if let Some((_, asset)) = self.files.iter().find(|(p, _)| *p == path) {
            return asset.respond(req);
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
            },
            "/metrics" => {
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            "/dev/token" => match &self.dev {
                Some(dev) => dev_token(dev, req.uri().query().unwrap_or("")),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/dev/token?user=NAME[&device=ID]`: a token for that user (device `web` by default).
fn dev_token(dev: &DevTokens, query: &str) -> Response<Full<Bytes>> {
    let mut user = None;
    let mut device = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "user" if user.is_none() => user = Some(v.trim().to_owned()),
            "device" if device.is_none() => device = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    let device = device.unwrap_or_else(|| "web".to_owned());
    let bad = |msg: &str| {
        json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "code": "bad_request", "message": msg }),
        )
    };
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return bad("give a name: /dev/token?user=NAME");
    };
    if user.len() > MAX_DEV_NAME || device.is_empty() || device.len() > MAX_DEV_NAME {
        return bad("user and device are 1 to 64 bytes");
    }
    if user.starts_with("anon-") {
        return bad("names starting with anon- are for anonymous connections");
    }
    if let Err(e) = chinwag::hub::ids::check_user(&user) {
        return bad(&format!("user: {e}"));
    }
    if let Err(e) = chinwag::hub::ids::check_device(&device) {
        return bad(&format!("device: {e}"));
    }
    let token = dev.issuer.issue(&user, Some(&device), dev.ttl);
    let expires_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + dev.ttl.as_secs();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "token": token,
            "user": user,
            "device": device,
            "expires_at": expires_at,
        }),
    )
}
