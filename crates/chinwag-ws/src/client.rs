//! Client side: dialing `ws://` and `wss://` URLs.

use std::sync::{Arc, OnceLock};

use chinwag_transport::{PeerAddr, TransportError};
use http::{HeaderValue, Request, Uri, header};
use rustls_pki_types::ServerName;

use crate::engine::Engine;
use crate::{WsConfig, WsConnection, WsStream};

/// Which `Origin` header a client presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientOrigin {
    /// Derived from the URL as a browser on that site would send it: `ws://h:p/x` gives
    /// `http://h:p`, `wss://` gives `https://`. The default: servers with an Origin policy
    /// (gotalk's Go server refuses requests without `Origin` by default) let such a client in.
    #[default]
    FromUrl,
    /// This exact value.
    Value(String),
    /// No `Origin` header at all.
    Omit,
}

/// Client-only options for [`connect_with`]: TLS roots, the `Origin` to present, extra
/// request headers (e.g. `Authorization`) and the subprotocols to offer.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The TLS configuration for `wss://`. `None` (the default) verifies server certificates
    /// against the Mozilla roots of `webpki-roots`. Supply your own to trust a private CA
    /// (tests do this with a CA made by rcgen).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The `Origin` header to send. Default [`ClientOrigin::FromUrl`].
    pub origin: ClientOrigin,
    /// More request headers, sent as given (e.g. `Authorization: Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer (`Sec-WebSocket-Protocol`), in order of preference.
    pub subprotocols: Vec<String>,
    /// The local address to connect from (bound with port 0 before connecting; see
    /// [`chinwag_transport::tcp::dial`]). Default `None`: the kernel picks.
    pub local_ip: Option<std::net::IpAddr>,
}

impl ConnectOptions {
    /// Uses `tls` for `wss://` connections.
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends `Origin: origin`.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = ClientOrigin::Value(origin.into());
        self
    }

    /// Sends no `Origin` header.
    pub fn without_origin(mut self) -> Self {
        self.origin = ClientOrigin::Omit;
        self
    }

    /// Adds the request header `name: value`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Connects from `ip` (e.g. one of several loopback addresses, for a load generator).
    pub fn with_local_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.local_ip = Some(ip);
        self
    }

    /// Offers `protocol` (after those already offered).
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }
}

/// A rustls client configuration (ring provider) that trusts exactly `roots`; ALPN `http/1.1`.
pub fn tls_config_with_roots(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = chinwag_transport::tls::ring_provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn default_tls() -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        tls_config_with_roots(roots)
    })
    .clone()
}

/// Dials `url` (`ws://host[:port][/path]` or `wss://...`) with engine `E` and default options
/// (certificates verified against the webpki roots, an `Origin` derived from the URL).
pub async fn connect<E: Engine>(
    url: &str,
    cfg: &WsConfig,
) -> Result<WsConnection<E>, TransportError> {
    connect_with::<E>(url, cfg, &ConnectOptions::default()).await
}

/// Dials `url` with engine `E` and `opts`. The whole opening handshake (TCP connect, TLS,
/// upgrade) is bounded by [`WsConfig::handshake_timeout`].
pub async fn connect_with<E: Engine>(
    url: &str,
    cfg: &WsConfig,
    opts: &ConnectOptions,
) -> Result<WsConnection<E>, TransportError> {
    tokio::time::timeout(cfg.handshake_timeout, dial::<E>(url, cfg, opts))
        .await
        .map_err(|_| TransportError::Timeout("WebSocket opening handshake"))?
}

async fn dial<E: Engine>(
    url: &str,
    cfg: &WsConfig,
    opts: &ConnectOptions,
) -> Result<WsConnection<E>, TransportError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| TransportError::Handshake(format!("bad URL {url:?}: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => {
            return Err(TransportError::Handshake(format!(
                "URL {url:?} must start with ws:// or wss://"
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| TransportError::Handshake(format!("URL {url:?} has no host")))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // `[::1]` in a URL is `::1` for the resolver and for TLS.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = chinwag_transport::tcp::dial((bare_host, port), opts.local_ip).await?;
    let _ = tcp.set_nodelay(true);
    let peer = PeerAddr::Ip(tcp.peer_addr()?);
    let stream = if tls {
        let config = opts.tls.clone().unwrap_or_else(default_tls);
        let name = ServerName::try_from(bare_host.to_owned())
            .map_err(|e| TransportError::Handshake(format!("bad TLS server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::Handshake(format!("TLS: {e}")))?;
        WsStream::Tls(Box::new(tls))
    } else {
        WsStream::Tcp(tcp)
    };
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.to_owned());
    let mut req = Request::builder()
        .method("GET")
        .uri(url)
        .header(header::HOST, authority);
    let origin = match &opts.origin {
        // What a page on that site would send: scheme and host, the port when given.
        ClientOrigin::FromUrl => Some(format!(
            "{}://{host}{}",
            if tls { "https" } else { "http" },
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        )),
        ClientOrigin::Value(v) => Some(v.clone()),
        ClientOrigin::Omit => None,
    };
    if let Some(origin) = origin {
        let v = HeaderValue::from_str(&origin)
            .map_err(|_| TransportError::Handshake("bad Origin value".into()))?;
        req = req.header(header::ORIGIN, v);
    }
    for (name, value) in &opts.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TransportError::Handshake(format!("bad header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| TransportError::Handshake(format!("bad value for header {name}")))?;
        req = req.header(name, value);
    }
    if !opts.subprotocols.is_empty() {
        let v = HeaderValue::from_str(&opts.subprotocols.join(", "))
            .map_err(|_| TransportError::Handshake("bad subprotocol".into()))?;
        req = req.header(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    let req = req
        .body(())
        .map_err(|e| TransportError::Handshake(format!("bad request: {e}")))?;
    let (r, w) = E::client_handshake(stream, req, cfg).await?;
    Ok(WsConnection::<E>::from_raw(r, w, peer, cfg))
}
