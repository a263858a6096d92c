//! Server side: upgrading a hyper request, and [`WsAcceptor`], a small hyper server that
//! turns WebSocket upgrades on one path (or on several, one acceptor each) into accepted
//! connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};

use chinwag_transport::{
    Acceptor, ConnectInfo, ConnectionBudget, ConnectionPermit, Framing, HttpInfo, Offer, PeerAddr,
    Refusal, TlsInfo, TransportError,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::engine::{Engine, Role};
use crate::http::HttpRoutes;
use crate::{WsConfig, WsConnection, WsStream};

/// Why a request was not upgraded. Each variant maps to the HTTP status the client gets
/// ([`UpgradeError::status`]); the response is sent *instead of* the upgrade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Not a valid WebSocket opening handshake (wrong method, missing or bad headers):
    /// `400 Bad Request`.
    #[error("not a WebSocket upgrade: {0}")]
    BadRequest(&'static str),
    /// A plain HTTP request (no `Upgrade: websocket`) on the WebSocket path: `426 Upgrade
    /// Required` with `Upgrade: websocket` and a short explanation.
    #[error("this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)")]
    NotWebSocket,
    /// `Sec-WebSocket-Version` is not 13: `426 Upgrade Required` with
    /// `Sec-WebSocket-Version: 13`.
    #[error("unsupported WebSocket version (only 13 is supported)")]
    Version,
    /// The Origin policy refused the request: `403 Forbidden`.
    #[error("origin refused: {0}")]
    Origin(String),
    /// The Host policy ([`WsConfig::host`]) refused the request: `403 Forbidden`.
    #[error("host refused: {0}")]
    Host(String),
}

impl UpgradeError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            UpgradeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UpgradeError::Version | UpgradeError::NotWebSocket => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::Origin(_) | UpgradeError::Host(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The response to send for this refusal (status, and the reason as a text body).
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(format!("{self}\n"))));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self {
            UpgradeError::Version => {
                resp.headers_mut()
                    .insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            UpgradeError::NotWebSocket => {
                let h = resp.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            _ => {}
        }
        resp
    }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Whether `req` asks for a WebSocket upgrade (`Connection: upgrade` and `Upgrade: websocket`),
/// for routers that serve pages and WebSockets on the same path.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), header::CONNECTION, "upgrade")
        && has_token(req.headers(), header::UPGRADE, "websocket")
}

/// Checks the Host policy, the opening handshake (RFC 6455 §4.2.1) and the Origin policy;
/// returns the `Sec-WebSocket-Accept` value.
fn check_request<E: Engine, B>(req: &Request<B>, cfg: &WsConfig) -> Result<String, UpgradeError> {
    cfg.host.check_request(req).map_err(UpgradeError::Host)?;
    if req.method() != Method::GET {
        return Err(UpgradeError::BadRequest("the method must be GET"));
    }
    if !is_upgrade_request(req) && !req.headers().contains_key(header::SEC_WEBSOCKET_KEY) {
        // A browser or curl opening the endpoint as a page.
        return Err(UpgradeError::NotWebSocket);
    }
    if req.version() < http::Version::HTTP_11 {
        return Err(UpgradeError::BadRequest("HTTP/1.1 or later is required"));
    }
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(UpgradeError::BadRequest("missing `Upgrade: websocket`"));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(UpgradeError::BadRequest("missing `Connection: upgrade`"));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(UpgradeError::Version);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::BadRequest("missing Sec-WebSocket-Key"))?;
    // The key is 16 random bytes in base64: 24 characters (RFC 6455 §4.1).
    if key.len() != 24 {
        return Err(UpgradeError::BadRequest("malformed Sec-WebSocket-Key"));
    }
    cfg.origin
        .check_headers(h.get(header::ORIGIN), h.get(header::HOST))
        .map_err(UpgradeError::Origin)?;
    Ok(E::accept_key(key.as_bytes()))
}

/// Upgrades a hyper request to a WebSocket with engine `E`.
///
/// On success, returns the `101 Switching Protocols` response to send and a future that
/// resolves to the connection once hyper has handed the socket over (the future must be
/// polled after the response is returned to hyper, typically in a spawned task). On refusal,
/// answer with [`UpgradeError::to_response`] (400, 403 or 426). The Host policy
/// ([`WsConfig::host`]) is checked first, then the handshake, then the Origin policy.
///
/// The peer address reported by the connection comes from a [`PeerAddr`] or [`SocketAddr`]
/// in the request's extensions (insert one in your service); without it, [`PeerAddr::Local`].
#[allow(clippy::type_complexity)]
pub fn upgrade<E: Engine, B>(
    req: &mut Request<B>,
    cfg: &WsConfig,
) -> Result<
    (
        Response<Empty<Bytes>>,
        impl Future<Output = Result<WsConnection<E>, TransportError>> + Send + 'static,
    ),
    UpgradeError,
> {
    upgrade_with::<E, B>(req, cfg, None)
}

/// As [`upgrade`], answering with `subprotocol` in `Sec-WebSocket-Protocol` (one the client
/// offered: browsers fail a connection whose answer names another, or names one when they
/// offered some and the answer names none).
///
/// # Errors
///
/// As [`upgrade`].
#[allow(clippy::type_complexity)]
pub fn upgrade_with<E: Engine, B>(
    req: &mut Request<B>,
    cfg: &WsConfig,
    subprotocol: Option<&str>,
) -> Result<
    (
        Response<Empty<Bytes>>,
        impl Future<Output = Result<WsConnection<E>, TransportError>> + Send + 'static,
    ),
    UpgradeError,
> {
    let accept = check_request::<E, _>(req, cfg)?;
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .cloned()
        .or_else(|| {
            req.extensions()
                .get::<SocketAddr>()
                .map(|a| PeerAddr::Ip(*a))
        })
        .unwrap_or(PeerAddr::Local);
    // Extensions (permessage-deflate) are the engine's to agree to.
    let agreed = {
        let offers: Vec<&str> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if offers.is_empty() {
            None
        } else {
            E::negotiate(&offers, cfg)
        }
    };
    let on_upgrade = hyper::upgrade::on(req);
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if let Some(p) = subprotocol {
        let v = HeaderValue::from_str(p)
            .map_err(|_| UpgradeError::BadRequest("the chosen subprotocol is not a token"))?;
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(a) = &agreed {
        let v = HeaderValue::from_str(a)
            .map_err(|_| UpgradeError::BadRequest("the agreed extension is not a header value"))?;
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    let cfg = cfg.clone();
    let fut = async move {
        let upgraded = tokio::time::timeout(cfg.handshake_timeout, on_upgrade)
            .await
            .map_err(|_| TransportError::Timeout("WebSocket upgrade"))?
            .map_err(|e| TransportError::Handshake(format!("upgrade failed: {e}")))?;
        let stream = WsStream::Upgraded(TokioIo::new(upgraded));
        let (r, w) = E::wrap_agreed(stream, Role::Server, &cfg, agreed).await;
        Ok(WsConnection::<E>::from_raw(r, w, peer, &cfg))
    };
    Ok((resp, fut))
}

/// Answers the plain HTTP requests (not WebSocket upgrades) of a [`WsAcceptor`] built with
/// [`WsAcceptor::bind_with_fallback`]: `None` means 404. It runs on the connection's task:
/// keep it quick (serve prepared bytes).
pub type HttpFallback =
    Arc<dyn Fn(&Request<hyper::body::Incoming>) -> Option<Response<Full<Bytes>>> + Send + Sync>;

/// Accepts WebSocket connections like any other transport: binds a TCP listener, serves HTTP/1.1
/// with hyper on each connection (with [`WsConfig::handshake_timeout`] to read the request head
/// and [`WsConfig::max_header_size`] for its size), upgrades requests on its path, answers
/// other paths with 404 and refused upgrades with 400/403/426. Every request, pages included,
/// must pass the Host policy ([`WsConfig::host`]; `403` otherwise).
///
/// For a server that also serves pages and `/metrics` on the same port, use [`upgrade`] in
/// your own hyper service instead.
pub struct WsAcceptor<E: Engine> {
    rx: mpsc::Receiver<WsOffer<E>>,
    local: SocketAddr,
    path: Option<Arc<str>>,
    /// The accept loop, shared by the acceptors of one listener ([`WsAcceptor::bind_routes`]):
    /// it stops when the last of them is dropped.
    _task: Arc<AbortOnDrop>,
    budget: ConnectionBudget,
    _engine: PhantomData<fn() -> E>,
}

/// Aborts the accept loop when the last acceptor of its listener is gone.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The upgrade paths of one listener, each with the channel of its acceptor. `None` matches
/// every path.
type Routes<E> = Arc<[(Option<Arc<str>>, mpsc::Sender<WsOffer<E>>)]>;

impl<E: Engine> std::fmt::Debug for WsAcceptor<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAcceptor")
            .field("engine", &E::NAME)
            .field("local", &self.local)
            .field("path", &self.path)
            .finish()
    }
}

/// Upgrade requests waiting for `offer` to take them; past this they get `503` at once.
const ACCEPT_QUEUE: usize = 128;

/// Connections past the budget that a [`WsAcceptor`] answers with `503 Service Unavailable` at
/// once (each bounded by the handshake timeout, at most 5 s); past these it closes new
/// connections without an answer. They count against the process's descriptor reserve
/// ([`process_limit`](chinwag_transport::budget::process_limit)), not the budget.
pub const REFUSALS_IN_FLIGHT: usize = 64;

/// The `Retry-After` sent with a `503` refusal, in seconds.
const RETRY_AFTER_SECS: u32 = 5;
/// The listen backlog (tokio's default of 128 overflows under connection bursts).
const BACKLOG: u32 = 1024;

impl<E: Engine> WsAcceptor<E> {
    /// Binds `addr` and upgrades requests on every path.
    pub async fn bind(addr: SocketAddr, cfg: WsConfig) -> io::Result<Self> {
        Self::bind_one(addr, None, cfg, None, None).await
    }

    /// Binds `addr` and upgrades requests on `path` only (others get 404).
    pub async fn bind_path(
        addr: SocketAddr,
        path: impl Into<String>,
        cfg: WsConfig,
    ) -> io::Result<Self> {
        Self::bind_one(addr, Some(path.into()), cfg, None, None).await
    }

    /// Binds `addr`, upgrades WebSocket requests on `path` (every path when `None`), and
    /// answers every other HTTP request with `fallback` — so one port can serve the page, the
    /// JavaScript client and the WebSocket endpoint. `fallback` returning `None` means 404.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use chinwag::ws::{Engine, HttpFallback, WsAcceptor, WsConfig};
    /// # async fn f<E: Engine>() -> std::io::Result<()> {
    /// let pages: HttpFallback = Arc::new(|req| {
    ///     (req.uri().path() == "/").then(|| {
    ///         http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hi\n")))
    ///     })
    /// });
    /// let acc = WsAcceptor::<E>::bind_with_fallback(
    ///     "127.0.0.1:0".parse().unwrap(), Some("/ws"), WsConfig::default(), pages).await?;
    /// # Ok(()) }
    /// ```
    pub async fn bind_with_fallback(
        addr: SocketAddr,
        path: Option<&str>,
        cfg: WsConfig,
        fallback: HttpFallback,
    ) -> io::Result<Self> {
        Self::bind_one(addr, path.map(str::to_owned), cfg, None, Some(fallback)).await
    }

    /// Binds `addr` and serves `wss://`: each connection first completes a TLS handshake with
    /// `tls` (bounded by [`WsConfig::handshake_timeout`]), then HTTP as in [`WsAcceptor::bind`].
    /// Upgrades happen on `path` only, or on every path when `None`. Set
    /// `tls.alpn_protocols = vec![b"http/1.1".to_vec()]` if clients negotiate ALPN.
    pub async fn bind_tls(
        addr: SocketAddr,
        path: Option<&str>,
        cfg: WsConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        Self::bind_one(addr, path.map(str::to_owned), cfg, Some(tls), None).await
    }

    /// Binds `addr` once and upgrades WebSocket requests on each of `paths` (exact matches),
    /// returning one acceptor per path, in order — so one port can carry several services
    /// (the chat door at `/gotalk/` and the room door at `/ws`, say), each served by its own
    /// server loop. The acceptors share the listener, its [`WsConfig`] and its connection
    /// budget. Plain HTTP requests (not upgrades) go to `fallback` (404 without one, or when
    /// it returns `None`); upgrades on other paths get 404. With `tls`, the port serves
    /// `wss://` and `https://` as in [`WsAcceptor::bind_tls`]. The listener closes when the
    /// last acceptor is dropped.
    ///
    /// ```no_run
    /// use chinwag::ws::{Engine, WsAcceptor, WsConfig};
    /// # async fn f<E: Engine>() -> std::io::Result<()> {
    /// let mut acceptors = WsAcceptor::<E>::bind_routes(
    ///     "127.0.0.1:8080".parse().unwrap(),
    ///     &["/gotalk/", "/ws"],
    ///     WsConfig::default(),
    ///     None,
    ///     None,
    /// )
    /// .await?;
    /// let rooms = acceptors.pop().unwrap(); // "/ws"
    /// let chat = acceptors.pop().unwrap(); // "/gotalk/"
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The address cannot be bound; `paths` is empty or names a path twice
    /// ([`io::ErrorKind::InvalidInput`]).
    pub async fn bind_routes(
        addr: SocketAddr,
        paths: &[&str],
        cfg: WsConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        fallback: Option<HttpFallback>,
    ) -> io::Result<Vec<Self>> {
        Self::bind_routes_with(addr, paths, cfg, tls, HttpRoutes::from_fallback(fallback)).await
    }

    /// As [`bind_routes`](Self::bind_routes), with plain HTTP requests answered by `http`:
    /// its asynchronous [`HttpHandler`](crate::HttpHandler)s (which may read the request
    /// body) under their path prefixes first, then its synchronous fallback, then 404.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use chinwag::ws::{Engine, HttpHandler, HttpRoutes, WsAcceptor, WsConfig};
    /// # async fn f<E: Engine>(api: HttpHandler) -> std::io::Result<()> {
    /// let routes = HttpRoutes::new().handler("/api/", api);
    /// let acceptors = WsAcceptor::<E>::bind_routes_with(
    ///     "127.0.0.1:8080".parse().unwrap(), &["/ws"], WsConfig::default(), None, routes,
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`bind_routes`](Self::bind_routes).
    pub async fn bind_routes_with(
        addr: SocketAddr,
        paths: &[&str],
        cfg: WsConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        http: HttpRoutes,
    ) -> io::Result<Vec<Self>> {
        let mut seen = std::collections::HashSet::new();
        if paths.is_empty() || !paths.iter().all(|p| seen.insert(*p)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bind_routes needs distinct paths, at least one",
            ));
        }
        let paths: Vec<Option<String>> = paths.iter().map(|p| Some((*p).to_owned())).collect();
        Self::bind_inner(addr, &paths, cfg, tls, http).await
    }

    async fn bind_one(
        addr: SocketAddr,
        path: Option<String>,
        cfg: WsConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        fallback: Option<HttpFallback>,
    ) -> io::Result<Self> {
        let http = HttpRoutes::from_fallback(fallback);
        let mut v = Self::bind_inner(addr, &[path], cfg, tls, http).await?;
        Ok(v.pop().expect("one route, one acceptor"))
    }

    async fn bind_inner(
        addr: SocketAddr,
        paths: &[Option<String>],
        cfg: WsConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        http: HttpRoutes,
    ) -> io::Result<Vec<Self>> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let local = listener.local_addr()?;
        let budget = ConnectionBudget::new(cfg.max_connections);
        tracing::debug!(%local, engine = E::NAME, max_connections = budget.cap(), ?paths, "WebSocket acceptor");
        let mut routes = Vec::with_capacity(paths.len());
        let mut receivers = Vec::with_capacity(paths.len());
        for p in paths {
            let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
            let p: Option<Arc<str>> = p.as_deref().map(Arc::from);
            routes.push((p.clone(), tx));
            receivers.push((p, rx));
        }
        let task = Arc::new(AbortOnDrop(tokio::spawn(accept_loop::<E>(
            listener,
            Arc::new(cfg),
            routes.into(),
            tls.map(tokio_rustls::TlsAcceptor::from),
            Arc::new(http),
            budget.clone(),
        ))));
        Ok(receivers
            .into_iter()
            .map(|(path, rx)| WsAcceptor {
                rx,
                local,
                path,
                _task: task.clone(),
                budget: budget.clone(),
                _engine: PhantomData,
            })
            .collect())
    }

    /// The budget this acceptor's sockets are counted in (open, refused).
    pub fn budget(&self) -> &ConnectionBudget {
        &self.budget
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The path this acceptor upgrades on (`None`: every path).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

impl<E: Engine> Acceptor for WsAcceptor<E> {
    type Conn = WsConnection<E>;
    type Offer = WsOffer<E>;

    /// The next upgrade request that passed the handshake checks and the Origin policy; the
    /// client waits for the answer ([`Offer::admit`] or [`Offer::refuse`]) up to the handshake
    /// timeout, then gets `503`.
    async fn offer(&mut self) -> Result<WsOffer<E>, TransportError> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        Some(PeerAddr::Ip(self.local))
    }
}

/// An upgrade request waiting to be admitted or refused (see [`Offer`]): admitting answers
/// `101 Switching Protocols` and hands over the connection; refusing answers with the
/// refusal's status and reason. Dropped undecided, the client gets `503`.
pub struct WsOffer<E: Engine> {
    info: ConnectInfo,
    /// The socket's place in the budget (the connection it becomes holds it too).
    permit: ConnectionPermit,
    decision: oneshot::Sender<Decision>,
    conn: oneshot::Receiver<Result<WsConnection<E>, TransportError>>,
    timeout: Duration,
}

impl<E: Engine> std::fmt::Debug for WsOffer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsOffer")
            .field("engine", &E::NAME)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

enum Decision {
    Admit(Option<String>),
    Refuse(Refusal),
}

impl<E: Engine> Offer for WsOffer<E> {
    type Conn = WsConnection<E>;

    fn info(&self) -> &ConnectInfo {
        &self.info
    }

    fn framing(&self) -> Framing {
        Framing::Message
    }

    async fn admit(self, subprotocol: Option<String>) -> Result<WsConnection<E>, TransportError> {
        self.decision
            .send(Decision::Admit(subprotocol))
            .map_err(|_| TransportError::Closed)?;
        match tokio::time::timeout(self.timeout, self.conn).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Timeout("WebSocket upgrade")),
        }
    }

    async fn refuse(self, refusal: Refusal) {
        let _ = self.decision.send(Decision::Refuse(refusal));
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        Some(&self.permit)
    }
}

/// The HTTP answer for a refusal: its status, `Retry-After` when set, the reason as the body.
pub fn refusal_response(refusal: &Refusal) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{}\n", refusal.reason))));
    *r.status_mut() =
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(after) = refusal.retry_after {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    r
}

/// The subprotocols a client offered in `Sec-WebSocket-Protocol` (comma-separated, possibly
/// over several header lines), in order.
fn offered_subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn accept_loop<E: Engine>(
    listener: TcpListener,
    cfg: Arc<WsConfig>,
    routes: Routes<E>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    plain: Arc<HttpRoutes>,
    budget: ConnectionBudget,
) {
    let refusing = Arc::new(AtomicUsize::new(0));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if routes.iter().all(|(_, tx)| tx.is_closed()) {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let Some(permit) = budget.try_acquire() else {
            refuse(tcp, peer, &cfg, tls.as_ref(), &refusing);
            continue;
        };
        // Evicted while pending (TLS handshake, HTTP requests, upgrade): the connection's task
        // is aborted, which closes the socket. After the upgrade, the session takes over.
        let evict = permit.clone();
        let mut http = Http {
            peer,
            tls: None,
            cfg: cfg.clone(),
            routes: routes.clone(),
            plain: plain.clone(),
            permit,
        };
        let task = match &tls {
            None => tokio::spawn(serve_http::<E, _>(tcp, http)),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let timeout = http.cfg.handshake_timeout;
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            http.tls = Some(tls_info(stream.get_ref().1));
                            serve_http::<E, _>(stream, http).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                })
            }
        };
        let abort = task.abort_handle();
        evict.on_evict(move || abort.abort());
    }
}

/// What a TLS handshake told, for the [`ConnectInfo`] of the connections on it.
fn tls_info(conn: &rustls::ServerConnection) -> TlsInfo {
    let mut info = TlsInfo::default();
    info.sni = conn.server_name().map(str::to_owned);
    info.alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    info.client_certificates = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    info
}

/// Answers a connection past the budget with `503` (or closes it at once when
/// [`REFUSALS_IN_FLIGHT`] answers are already under way).
fn refuse(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    cfg: &WsConfig,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    refusing: &Arc<AtomicUsize>,
) {
    if refusing
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < REFUSALS_IN_FLIGHT).then_some(n + 1)
        })
        .is_err()
    {
        return; // dropped: closed at once
    }
    let refusing = refusing.clone();
    let limit = cfg.handshake_timeout.min(Duration::from_secs(5));
    let max_buf = cfg.hyper_max_buf();
    let tls = tls.cloned();
    tokio::spawn(async move {
        let answer = async move {
            match tls {
                None => answer_503(tcp, limit, max_buf).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        answer_503(stream, limit, max_buf).await;
                    }
                }
            }
        };
        if tokio::time::timeout(limit, answer).await.is_err() {
            tracing::debug!(%peer, "503 refusal timed out");
        }
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Reads one request head and answers `503` with `Retry-After`, then closes.
async fn answer_503<I>(io: I, limit: Duration, max_buf: usize)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"server at its connection limit; retry later\n",
        )));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok::<_, Infallible>(r)
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limit)
        .max_buf_size(max_buf)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// What one HTTP connection of a [`WsAcceptor`] needs.
struct Http<E: Engine> {
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    cfg: Arc<WsConfig>,
    routes: Routes<E>,
    /// Plain HTTP requests: asynchronous handlers by prefix, then the fallback.
    plain: Arc<HttpRoutes>,
    /// The socket's place in the budget; an upgraded connection takes a clone along, so the
    /// place is free only when both are gone.
    permit: ConnectionPermit,
}

async fn serve_http<E, I>(io: I, http: Http<E>)
where
    E: Engine,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = http.cfg.handshake_timeout;
    let max_buf = http.cfg.hyper_max_buf();
    let peer = http.peer;
    let http = Arc::new(http);
    let shared = http.clone();
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let http = shared.clone();
        async move { Ok::<_, Infallible>(answer::<E>(req, &http).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_buf)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, %peer, "http connection ended with an error");
    }
    drop(http);
}

/// Answers one request: the fallback for plain HTTP, 404 off the path, the handshake checks,
/// then the offer and its decision (101, the refusal, or 503 when nobody decided in time).
async fn answer<E: Engine>(
    mut req: Request<hyper::body::Incoming>,
    http: &Http<E>,
) -> Response<Full<Bytes>> {
    let peer = http.peer;
    // The Host policy covers every request of this port (pages too: DNS rebinding targets
    // them as much as the upgrades).
    if let Err(e) = http.cfg.host.check_request(&req) {
        tracing::debug!(error = %e, %peer, "request refused by the Host policy");
        return UpgradeError::Host(e).to_response();
    }
    let route = http
        .routes
        .iter()
        .find(|(p, _)| p.as_deref().is_none_or(|p| req.uri().path() == p));
    let on_path = route.is_some();
    if !is_upgrade_request(&req)
        && let Some(handler) = http.plain.handler_for(req.uri().path())
    {
        req.extensions_mut().insert(PeerAddr::Ip(peer));
        return handler(req).await;
    }
    if let Some(f) = http.plain.fallback_ref()
        && !is_upgrade_request(&req)
    {
        return f(&req).unwrap_or_else(|| {
            if on_path {
                UpgradeError::NotWebSocket.to_response()
            } else {
                not_found()
            }
        });
    }
    let Some((_, tx)) = route else {
        return not_found();
    };
    if let Err(e) = check_request::<E, _>(&req, &http.cfg) {
        tracing::debug!(error = %e, %peer, "upgrade refused");
        return e.to_response();
    }
    let mut info = ConnectInfo::new(PeerAddr::Ip(peer)).with_http({
        let mut h = HttpInfo::new(req.method().clone(), req.uri().clone());
        h.headers = req.headers().clone();
        h.subprotocols = offered_subprotocols(req.headers());
        h
    });
    if let Some(t) = &http.tls {
        info = info.with_tls(t.clone());
    }
    let (decision_tx, decision_rx) = oneshot::channel();
    let (conn_tx, conn_rx) = oneshot::channel();
    let offer = WsOffer {
        info,
        permit: http.permit.clone(),
        decision: decision_tx,
        conn: conn_rx,
        timeout: http.cfg.handshake_timeout,
    };
    if tx.try_send(offer).is_err() {
        return refusal_response(&Refusal::unavailable(
            "server busy: too many connections waiting for admission; retry later",
            Duration::from_secs(RETRY_AFTER_SECS.into()),
        ));
    }
    let decision = tokio::time::timeout(http.cfg.handshake_timeout, decision_rx).await;
    let subprotocol = match decision {
        Ok(Ok(Decision::Admit(p))) => p,
        Ok(Ok(Decision::Refuse(r))) => {
            tracing::debug!(%peer, refusal = %r, "upgrade refused at admission");
            return refusal_response(&r);
        }
        Ok(Err(_)) | Err(_) => {
            return refusal_response(&Refusal::unavailable(
                "the server did not admit the connection in time; retry later",
                Duration::from_secs(RETRY_AFTER_SECS.into()),
            ));
        }
    };
    req.extensions_mut().insert(PeerAddr::Ip(peer));
    match upgrade_with::<E, _>(&mut req, &http.cfg, subprotocol.as_deref()) {
        Ok((resp, fut)) => {
            let permit = http.permit.clone();
            tokio::spawn(async move {
                let conn = fut.await.map(|c| c.with_permit(permit));
                if let Err(e) = &conn {
                    tracing::debug!(error = %e, %peer, "upgrade failed");
                }
                // The offer's `admit` waits for this (bounded by the handshake timeout).
                let _ = conn_tx.send(conn);
            });
            resp.map(|_| Full::new(Bytes::new()))
        }
        Err(e) => {
            tracing::debug!(error = %e, %peer, "upgrade refused");
            e.to_response()
        }
    }
}

fn not_found() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}
