//! TLS over TCP with tokio-rustls (ring provider): [`connect`] and [`TlsAcceptor`].
//!
//! # Verification policy
//!
//! Clients **verify** the server's certificate chain and name by default, against the roots you
//! give [`TlsClientConfig::new`] (for a private CA) — there is no constructor that skips it.
//! A deployment that really needs something else (pinning, client certificates, a custom
//! verifier) builds its own `rustls::ClientConfig` and passes it to
//! [`TlsClientConfig::from_rustls`]; rustls keeps its dangerous options behind its own
//! `dangerous()` door, where they are easy to spot in review.
//!
//! The server name checked (and sent as SNI) is the host part of the address given to
//! [`connect`], unless [`TlsClientConfig::with_server_name`] sets another one.
//!
//! # Handshakes
//!
//! Both sides bound the handshake with [`TlsConfig::handshake_timeout`] (default 10 s). The
//! acceptor runs handshakes concurrently in tasks (at most
//! [`TlsConfig::max_pending_handshakes`]), so one slow or silent client cannot hold up the
//! others; a failed handshake is reported by [`TlsAcceptor::accept`] as a per-accept error and the
//! acceptor stays usable.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsStream;

use crate::budget::{ConnectionBudget, ConnectionPermit};
use crate::stream::{PollSource, StreamConfig, StreamReader, StreamWriter, stream_halves};
use crate::tcp::{self, TcpConfig};
use crate::{Acceptor, ConnectInfo, Framing, PeerAddr, Ready, TlsInfo, Transport, TransportError};

/// Limits of TLS connections and listeners (the certificates are in [`TlsServerConfig`] and
/// [`TlsClientConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The TCP settings underneath (backlog, `TCP_NODELAY`, connect timeout, buffer sizes).
    pub tcp: TcpConfig,
    /// How long a TLS handshake may take, on either side. Default 10 s.
    pub handshake_timeout: Duration,
    /// Handshakes the acceptor runs at once; past this it stops accepting (the kernel's backlog
    /// holds the rest) until one finishes. Default 256.
    pub max_pending_handshakes: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            tcp: TcpConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 256,
        }
    }
}

impl TlsConfig {
    /// Sets [`tcp`](Self::tcp).
    pub fn with_tcp(mut self, tcp: TcpConfig) -> Self {
        self.tcp = tcp;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Sets [`max_pending_handshakes`](Self::max_pending_handshakes).
    pub fn with_max_pending_handshakes(mut self, max_pending_handshakes: usize) -> Self {
        self.max_pending_handshakes = max_pending_handshakes;
        self
    }
}

/// A TLS configuration could not be built (bad PEM, no key, a key that does not match).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The PEM text could not be read; fix the file.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// The PEM text held no certificate.
    #[error("no certificate found in the PEM input")]
    NoCertificate,
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider chinwag's TLS configurations use: rustls' *ring* provider, chosen
/// because it builds with a C compiler alone (aws-lc-rs, rustls' default, builds a larger C
/// library).
///
/// rustls 0.23.48 deprecates `crypto::ring::default_provider` because *ring* has no
/// post-quantum key exchange; there is no other way to get the *ring* provider, so the
/// deprecation is allowed here, in this one place. A deployment that wants post-quantum key
/// exchange builds its own `rustls::ServerConfig` (or `ClientConfig`) on aws-lc-rs and passes
/// it in ([`TlsServerConfig::from_rustls`], [`TlsClientConfig::from_rustls`], the facade's
/// `ServerBuilder::tls`).
pub fn ring_provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

fn provider() -> Arc<CryptoProvider> {
    ring_provider()
}

/// Reads every certificate from PEM text (a chain: leaf first).
///
/// # Errors
///
/// [`TlsConfigError::Pem`] for malformed PEM, [`TlsConfigError::NoCertificate`] when none.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from PEM text.
///
/// # Errors
///
/// [`TlsConfigError::Pem`] for malformed PEM or when there is no key.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsConfigError::Pem(e.to_string()))
}

/// Reads a PEM file whole (certificate chain or key), for [`certs_from_pem`] and
/// [`private_key_from_pem`].
///
/// # Errors
///
/// [`TlsConfigError::Pem`] when the file cannot be read.
pub fn read_pem_file(path: impl AsRef<Path>) -> Result<Vec<u8>, TlsConfigError> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|e| TlsConfigError::Pem(format!("{}: {e}", path.display())))
}

/// A server's certificate and key (a `rustls::ServerConfig` with the ring provider).
#[derive(Clone)]
pub struct TlsServerConfig {
    rustls: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// A server presenting `cert_chain` (leaf first) with `key`, TLS 1.2 and 1.3, no client
    /// certificates.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Rustls`] when the key does not fit the certificate.
    pub fn new(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsConfigError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(cert_chain, key)?;
        Ok(TlsServerConfig {
            rustls: Arc::new(config),
        })
    }

    /// Like [`TlsServerConfig::new`], from PEM text of the chain and of the key.
    ///
    /// # Errors
    ///
    /// See [`certs_from_pem`], [`private_key_from_pem`] and [`TlsServerConfig::new`].
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        TlsServerConfig::new(
            certs_from_pem(cert_chain_pem)?,
            private_key_from_pem(key_pem)?,
        )
    }

    /// Uses a rustls configuration built by hand (client certificates, ALPN, resumption, ...).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        TlsServerConfig { rustls: config }
    }

    /// The rustls configuration (for a `wss://` acceptor on the same certificate).
    pub fn to_rustls(&self) -> Arc<rustls::ServerConfig> {
        self.rustls.clone()
    }
}

/// How a client verifies servers: a root store (always verifying unless you hand in your own
/// rustls configuration) and an optional server name.
#[derive(Clone)]
pub struct TlsClientConfig {
    rustls: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// A client that verifies servers against `roots` (chain, validity and name), TLS 1.2 and
    /// 1.3, without a client certificate.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Rustls`] if the ring provider refuses the protocol versions (it does
    /// not in practice).
    pub fn new(roots: RootCertStore) -> Result<Self, TlsConfigError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClientConfig {
            rustls: Arc::new(config),
            server_name: None,
        })
    }

    /// A verifying client that trusts the CA certificates in `pem` (e.g. a private CA).
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Pem`] / [`TlsConfigError::NoCertificate`] for bad input,
    /// [`TlsConfigError::Rustls`] for a certificate that is not a usable trust anchor.
    pub fn from_pem_roots(pem: &[u8]) -> Result<Self, TlsConfigError> {
        let mut roots = RootCertStore::empty();
        for cert in certs_from_pem(pem)? {
            roots.add(cert)?;
        }
        TlsClientConfig::new(roots)
    }

    /// Uses a rustls configuration built by hand (client certificates, ALPN, a custom
    /// verifier). Whatever verification it does is what you get.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        TlsClientConfig {
            rustls: config,
            server_name: None,
        }
    }

    /// Checks the server's certificate against `name` (and sends it as SNI) instead of the
    /// host part of the dialled address.
    ///
    /// # Errors
    ///
    /// [`TlsConfigError::Rustls`] (`rustls::Error::General`) when `name` is neither a valid
    /// DNS name nor an IP address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsConfigError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|e| {
            TlsConfigError::Rustls(rustls::Error::General(format!("server name {name:?}: {e}")))
        })?;
        self.server_name = Some(name);
        Ok(self)
    }
}

/// The host part of `host:port`, `[v6]:port`, or a bare host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

/// Connects to `addr` (`"host:port"`), then runs the TLS handshake, verifying the server as
/// `config` says (by default against its roots, for the host part of `addr`).
///
/// # Errors
///
/// [`TransportError::Handshake`] when the server's certificate is refused (untrusted issuer,
/// wrong name, expired) or the handshake fails otherwise; [`TransportError::Timeout`] when
/// connecting or the handshake takes too long; [`TransportError::Io`] when the connection is
/// refused.
pub async fn connect(
    addr: &str,
    client: &TlsClientConfig,
    config: &TlsConfig,
) -> Result<TlsTransport, TransportError> {
    let name = match &client.server_name {
        Some(n) => n.clone(),
        None => ServerName::try_from(host_of(addr).to_owned()).map_err(|e| {
            TransportError::Handshake(format!("cannot verify a server named {addr:?}: {e}"))
        })?,
    };
    let tcp = tcp::connect_stream(addr, &config.tcp).await?;
    let peer = tcp.peer_addr()?;
    let connector = tokio_rustls::TlsConnector::from(client.rustls.clone());
    let stream = tokio::time::timeout(config.handshake_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| TransportError::Timeout("TLS handshake"))?
        .map_err(|e| handshake_error(peer, e))?;
    Ok(TlsTransport {
        stream: TlsStream::Client(stream),
        peer,
        stream_config: config.tcp.stream.clone(),
        permit: None,
    })
}

fn handshake_error(peer: SocketAddr, e: io::Error) -> TransportError {
    TransportError::Handshake(format!("TLS with {peer}: {e}"))
}

/// A TLS connection after its handshake, before it is split.
pub struct TlsTransport {
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    stream_config: StreamConfig,
    permit: Option<ConnectionPermit>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// The TLS stream, to inspect the negotiated protocol, ALPN or the peer's certificates.
    pub fn get_ref(&self) -> &TlsStream<TcpStream> {
        &self.stream
    }

    /// What the handshake told: SNI (server side), ALPN, the peer's certificates.
    pub fn tls_info(&self) -> TlsInfo {
        let mut info = TlsInfo::default();
        let (sni, alpn, certs) = match &self.stream {
            TlsStream::Server(s) => {
                let c = s.get_ref().1;
                (
                    c.server_name().map(str::to_owned),
                    c.alpn_protocol().map(<[u8]>::to_vec),
                    c.peer_certificates(),
                )
            }
            TlsStream::Client(s) => {
                let c = s.get_ref().1;
                (
                    None,
                    c.alpn_protocol().map(<[u8]>::to_vec),
                    c.peer_certificates(),
                )
            }
        };
        info.sni = sni;
        info.alpn = alpn;
        info.client_certificates = certs
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .unwrap_or_default();
        info
    }
}

impl Transport for TlsTransport {
    type Reader = TlsReader;
    type Writer = TlsWriter;

    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Ip(self.peer)
    }

    fn split(self) -> (TlsReader, TlsWriter) {
        // rustls keeps one state machine for both directions, so the halves share it behind
        // tokio's split lock (held only while a half is being polled).
        let (r, w) = tokio::io::split(self.stream);
        (
            TlsReader(
                StreamReader::new(PollSource::new(r, &self.stream_config), &self.stream_config)
                    .holding(self.permit.clone()),
            ),
            TlsWriter(StreamWriter::new(w, &self.stream_config).holding(self.permit)),
        )
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        self.permit.as_ref()
    }
}

stream_halves!(
    /// The reading half of a TLS connection: decrypted chunks of the byte stream as
    /// [`Frame::Binary`](crate::Frame::Binary), `Ok(None)` after the peer's `close_notify`.
    /// A peer that drops the TCP connection without `close_notify` gives an I/O error
    /// (`UnexpectedEof`): the stream may have been truncated.
    TlsReader(PollSource<ReadHalf<TlsStream<TcpStream>>>),
    /// The writing half of a TLS connection: fed frames are encrypted with vectored writes;
    /// `close` flushes, sends `close_notify` and shuts down the TCP write side.
    TlsWriter(WriteHalf<TlsStream<TcpStream>>)
);

/// Accepts TCP connections and runs their TLS handshakes concurrently, within a
/// [`ConnectionBudget`] (`config.tcp.max_connections`) that counts connections from `accept`
/// through the handshake to their close; past it, a connection is closed at once. A
/// connection evicted from the budget's pending share during its handshake is dropped there
/// (see [`budget`](crate::budget)).
pub struct TlsAcceptor {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    config: TlsConfig,
    handshakes: JoinSet<Result<TlsTransport, TransportError>>,
    budget: ConnectionBudget,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("pending_handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Binds `addr` like [`tcp::TcpAcceptor::bind`](crate::tcp::TcpAcceptor::bind) and serves
    /// TLS with `server`.
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the address is in use or not local.
    pub fn bind(
        addr: SocketAddr,
        server: TlsServerConfig,
        config: TlsConfig,
    ) -> Result<Self, TransportError> {
        let listener = tcp::bind_listener(addr, &config.tcp)?;
        let budget = ConnectionBudget::new(config.tcp.max_connections);
        Ok(TlsAcceptor {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(server.rustls),
            config,
            handshakes: JoinSet::new(),
            budget,
        })
    }

    /// Counts this acceptor's connections in `budget` instead of its own.
    pub fn with_budget(mut self, budget: ConnectionBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The budget this acceptor's connections are counted in.
    pub fn budget(&self) -> &ConnectionBudget {
        &self.budget
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The operating system's error, if any.
    pub fn local_socket_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr, permit: ConnectionPermit) {
        let acceptor = self.acceptor.clone();
        let timeout = self.config.handshake_timeout;
        let stream_config = self.config.tcp.stream.clone();
        let nodelay = self.config.tcp.nodelay;
        let evict = permit.clone();
        let handshake = self.handshakes.spawn(async move {
            tcp.set_nodelay(nodelay)?;
            let stream = tokio::time::timeout(timeout, acceptor.accept(tcp))
                .await
                .map_err(|_| TransportError::Timeout("TLS handshake"))?
                .map_err(|e| handshake_error(peer, e))?;
            Ok(TlsTransport {
                stream: TlsStream::Server(stream),
                peer,
                stream_config,
                permit: Some(permit),
            })
        });
        // Evicted while pending (still in the handshake, or until someone establishes it):
        // a handshake under way is aborted, which closes the socket.
        evict.on_evict(move || handshake.abort());
    }
}

impl Acceptor for TlsAcceptor {
    type Conn = TlsTransport;
    type Offer = Ready<TlsTransport>;

    /// Returns the next connection whose handshake succeeded (its [`ConnectInfo`] carries the
    /// SNI name, ALPN and client certificates), or the error of one that failed (the acceptor
    /// stays usable: call again). Cancel safe: handshakes in progress go on.
    async fn offer(&mut self) -> Result<Ready<TlsTransport>, TransportError> {
        let max = self.config.max_pending_handshakes.max(1);
        loop {
            let room = self.handshakes.len() < max;
            tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    let conn = match done {
                        Ok(r) => r?,
                        // Evicted during its handshake (see `ConnectionPermit::on_evict`).
                        Err(e) if e.is_cancelled() => continue,
                        Err(e) => {
                            return Err(TransportError::Handshake(format!(
                                "handshake task ended: {e}"
                            )));
                        }
                    };
                    let info = ConnectInfo::new(PeerAddr::Ip(conn.peer)).with_tls(conn.tls_info());
                    return Ok(Ready::with_info(conn, info));
                }
                accepted = self.listener.accept(), if room => {
                    let (tcp, peer) = accepted?;
                    // Over the budget: close at once.
                    if let Some(permit) = self.budget.try_acquire() {
                        self.start_handshake(tcp, peer, permit);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        self.listener.local_addr().ok().map(PeerAddr::Ip)
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(host_of("localhost:443"), "localhost");
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("::1"), "::1");
    }
}
