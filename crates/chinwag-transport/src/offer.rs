//! Offers: what a connection arrives with, and its admission (documented on [`Offer`], which is public).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::{ConnectionPermit, Framing, PeerAddr, Transport, TransportError};

/// What a connection arrived with. Handed to admission by reference; sessions keep only what
/// admission makes of it (so an idle connection does not hold its request headers).
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    peer: PeerAddr,
    tls: Option<Box<TlsInfo>>,
    http: Option<Box<HttpInfo>>,
}

/// The TLS side of a [`ConnectInfo`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
    /// The ALPN protocol negotiated, if any.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate chain (leaf first) when it presented one.
    pub client_certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// The HTTP request of a WebSocket upgrade.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpInfo {
    /// The request method (`GET` for a valid upgrade).
    pub method: http::Method,
    /// The request target: path and query.
    pub uri: http::Uri,
    /// Every request header.
    pub headers: http::HeaderMap,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order.
    pub subprotocols: Vec<String>,
}

impl HttpInfo {
    /// A request with `method` and `uri`, no headers and no subprotocols yet.
    pub fn new(method: http::Method, uri: http::Uri) -> Self {
        HttpInfo {
            method,
            uri,
            headers: http::HeaderMap::new(),
            subprotocols: Vec::new(),
        }
    }
}

impl ConnectInfo {
    /// A connection known by its peer address only (TCP, Unix, UDP, pipes).
    pub fn new(peer: PeerAddr) -> Self {
        ConnectInfo {
            peer,
            tls: None,
            http: None,
        }
    }

    /// Adds what the TLS handshake told.
    pub fn with_tls(mut self, tls: TlsInfo) -> Self {
        self.tls = Some(Box::new(tls));
        self
    }

    /// Adds the HTTP request of a WebSocket upgrade.
    pub fn with_http(mut self, http: HttpInfo) -> Self {
        self.http = Some(Box::new(http));
        self
    }

    /// The peer's address.
    pub fn peer(&self) -> &PeerAddr {
        &self.peer
    }

    /// The TLS details, for connections that came over TLS.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// The HTTP request, for WebSocket connections.
    pub fn http(&self) -> Option<&HttpInfo> {
        self.http.as_deref()
    }

    /// The request path (WebSocket), e.g. `/ws`.
    pub fn path(&self) -> Option<&str> {
        self.http().map(|h| h.uri.path())
    }

    /// The raw query string (WebSocket), without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.http().and_then(|h| h.uri.query())
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The value of request header `name` (WebSocket), when it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.http()?.headers.get(name)?.to_str().ok()
    }

    /// The subprotocols the client offered (WebSocket); empty otherwise.
    pub fn subprotocols(&self) -> &[String] {
        self.http().map(|h| &h.subprotocols[..]).unwrap_or(&[])
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a connection was turned away at admission. For WebSocket it is the HTTP answer to the
/// upgrade request (status, the reason as a `text/plain` body, `Retry-After` when set); byte
/// streams are closed (they have no place for a reason).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The HTTP status (401, 403, 429, 503, ...).
    pub status: u16,
    /// A short reason for the peer (and the logs).
    pub reason: String,
    /// When the peer may try again (`Retry-After`), for overload refusals.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// A refusal with `status` and `reason`.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal::new(401, reason)
    }

    /// 403: known, but not allowed.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Refusal::new(403, reason)
    }

    /// 503 with `Retry-After`: the server is busy (admissions at their limit, a timeout).
    pub fn unavailable(reason: impl Into<String>, retry_after: Duration) -> Self {
        Refusal {
            retry_after: Some(retry_after),
            ..Refusal::new(503, reason)
        }
    }

    /// Sets [`retry_after`](Self::retry_after).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// A connection that has arrived and waits to be admitted or refused.
///
/// An [`Acceptor`](crate::Acceptor) hands out [`Offer`]s: a connection that has arrived (TCP
/// accepted, TLS handshake done, WebSocket upgrade *requested*) with its [`ConnectInfo`] — the
/// peer's address, for TLS the SNI name and client certificates, for WebSocket the request's
/// method, path, query, headers and requested subprotocols. Whoever accepts (a session server)
/// decides: [`Offer::admit`] turns it into the transport (for WebSocket: answers
/// `101 Switching Protocols`, with the chosen subprotocol), [`Offer::refuse`] turns it away
/// with a [`Refusal`] (for WebSocket an HTTP status such as 401 or 403 with the reason as the
/// body, *before* any upgrade; byte streams are closed).
///
/// Plain transports that need no answer before they start are offered as [`Ready`].
pub trait Offer: Send + 'static {
    /// The transport it becomes once admitted.
    type Conn: Transport;

    /// What it arrived with.
    fn info(&self) -> &ConnectInfo;

    /// Whether the transport will keep message boundaries.
    fn framing(&self) -> Framing;

    /// Admits the connection and returns its transport. For WebSocket this answers the upgrade
    /// (with `subprotocol` in `Sec-WebSocket-Protocol` when given; it should be one the client
    /// offered) and waits for the handover, bounded by the handshake timeout.
    ///
    /// # Errors
    ///
    /// The connection was lost meanwhile, or the upgrade did not finish in time.
    fn admit(
        self,
        subprotocol: Option<String>,
    ) -> impl Future<Output = Result<Self::Conn, TransportError>> + Send;

    /// Turns the connection away with `refusal` (WebSocket: the HTTP answer; others: a close).
    fn refuse(self, refusal: Refusal) -> impl Future<Output = ()> + Send;

    /// The connection's place in its acceptor's budget (see [`Transport::permit`]), pending
    /// until someone [establishes](ConnectionPermit::establish) it. Default `None`.
    fn permit(&self) -> Option<&ConnectionPermit> {
        None
    }
}

/// An [`Offer`] of a transport that is ready as it is (TCP, TLS, Unix, UDP, pipes): admitting
/// returns it, refusing closes it.
#[derive(Debug)]
pub struct Ready<T> {
    conn: T,
    info: ConnectInfo,
}

impl<T: Transport> Ready<T> {
    /// Offers `conn`, known by its peer address.
    pub fn new(conn: T) -> Self {
        let info = ConnectInfo::new(conn.peer_addr());
        Ready { conn, info }
    }

    /// Offers `conn` with what it arrived with.
    pub fn with_info(conn: T, info: ConnectInfo) -> Self {
        Ready { conn, info }
    }

    /// The transport, admitted without ceremony.
    pub fn into_inner(self) -> T {
        self.conn
    }
}

impl<T: Transport> Offer for Ready<T> {
    type Conn = T;

    fn info(&self) -> &ConnectInfo {
        &self.info
    }

    fn framing(&self) -> Framing {
        self.conn.framing()
    }

    async fn admit(self, _subprotocol: Option<String>) -> Result<T, TransportError> {
        Ok(self.conn)
    }

    async fn refuse(self, refusal: Refusal) {
        tracing::debug!(peer = %self.info.peer, %refusal, "connection refused at admission");
        drop(self.conn);
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        self.conn.permit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let info = ConnectInfo::new(PeerAddr::Local).with_http(HttpInfo {
            method: http::Method::GET,
            uri: "/ws?room=a%20b&token=x+y&flag&bad=%zz&last=%4"
                .parse()
                .unwrap(),
            headers: http::HeaderMap::new(),
            subprotocols: vec![],
        });
        assert_eq!(info.path(), Some("/ws"));
        assert_eq!(info.query_param("room").as_deref(), Some("a b"));
        assert_eq!(info.query_param("token").as_deref(), Some("x y"));
        assert_eq!(info.query_param("flag").as_deref(), Some(""));
        assert_eq!(info.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(info.query_param("last").as_deref(), Some("%4"));
        assert_eq!(info.query_param("missing"), None);
    }
}
