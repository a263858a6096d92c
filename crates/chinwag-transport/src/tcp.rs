//! TCP: [`connect`] and [`TcpAcceptor`], byte-stream transports with `TCP_NODELAY`.
//!
//! The listener is built with [`tokio::net::TcpSocket`] so the listen backlog is configurable
//! ([`TcpConfig::backlog`], default 1024): `TcpListener::bind` uses 128, which drops connection
//! bursts. Reads and writes use the shared stream machinery (see [`StreamConfig`]): an idle
//! reader holds no buffer, and a flush writes a batch of frames with vectored writes.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};

use crate::budget::{ConnectionBudget, ConnectionPermit};
use crate::stream::{StreamConfig, StreamReader, StreamWriter, stream_halves};
use crate::{Acceptor, Framing, PeerAddr, Ready, Transport, TransportError};

/// Settings of TCP connections and listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpConfig {
    /// Listen backlog: connections the kernel queues before [`TcpAcceptor::accept`] takes them.
    /// Default 1024 (the kernel caps it at `net.core.somaxconn`).
    pub backlog: u32,
    /// `SO_REUSEADDR` on listeners, so a restarted server can bind while old connections sit
    /// in `TIME_WAIT`. Default `true`.
    pub reuse_address: bool,
    /// `TCP_NODELAY` on both sides. Default `true`: the writer already batches, so Nagle's
    /// algorithm would only add latency.
    pub nodelay: bool,
    /// How long [`connect`] waits for the connection. Default 10 s.
    pub connect_timeout: Duration,
    /// The local address [`connect`] binds its connections to before connecting (the port is
    /// picked by the kernel), e.g. one of several loopback or interface addresses. Default
    /// `None`: the kernel picks the address too.
    pub local_ip: Option<IpAddr>,
    /// Connections a [`TcpAcceptor`] holds open at once (its [`ConnectionBudget`]); past it,
    /// new connections are accepted and closed at once. Default
    /// [`ConnectionBudget::default_cap`]: half the process-wide limit derived from
    /// `RLIMIT_NOFILE`, at most 10 000.
    pub max_connections: usize,
    /// Read buffer and write batching sizes.
    pub stream: StreamConfig,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: ConnectionBudget::default_cap(),
            backlog: 1024,
            reuse_address: true,
            nodelay: true,
            connect_timeout: Duration::from_secs(10),
            local_ip: None,
            stream: StreamConfig::default(),
        }
    }
}

impl TcpConfig {
    /// Sets [`backlog`](Self::backlog).
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets [`reuse_address`](Self::reuse_address).
    pub fn with_reuse_address(mut self, reuse_address: bool) -> Self {
        self.reuse_address = reuse_address;
        self
    }

    /// Sets [`nodelay`](Self::nodelay).
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`local_ip`](Self::local_ip).
    pub fn with_local_ip(mut self, local_ip: Option<IpAddr>) -> Self {
        self.local_ip = local_ip;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`stream`](Self::stream).
    pub fn with_stream(mut self, stream: StreamConfig) -> Self {
        self.stream = stream;
        self
    }
}

/// Opens a TCP connection to `addr` (tried in the order the name resolves), bounded by
/// [`TcpConfig::connect_timeout`].
///
/// # Errors
///
/// [`TransportError::Timeout`] when the timeout passes, [`TransportError::Io`] when the
/// connection is refused or the name does not resolve.
pub async fn connect(
    addr: impl ToSocketAddrs,
    config: &TcpConfig,
) -> Result<TcpTransport, TransportError> {
    let stream = connect_stream(addr, config).await?;
    TcpTransport::from_stream(stream, config)
}

/// Opens the raw TCP stream (with the timeout and `TCP_NODELAY`); shared with TLS.
pub(crate) async fn connect_stream(
    addr: impl ToSocketAddrs,
    config: &TcpConfig,
) -> Result<TcpStream, TransportError> {
    let stream = tokio::time::timeout(config.connect_timeout, dial(addr, config.local_ip))
        .await
        .map_err(|_| TransportError::Timeout("tcp connect"))??;
    stream.set_nodelay(config.nodelay)?;
    Ok(stream)
}

/// Opens a TCP stream to `addr` (the addresses it resolves to, in order), from `local_ip` when
/// given (bound with port 0 before connecting; addresses of the other IP family are skipped).
/// No timeout and no socket options: [`connect`] adds those; the WebSocket client uses this
/// for its own dialing.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use std::net::{IpAddr, Ipv4Addr};
/// // from 127.0.0.2: servers that count connections per address see a second client
/// let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// let stream = chinwag::transport::tcp::dial("127.0.0.1:9000", Some(from)).await?;
/// assert_eq!(stream.local_addr()?.ip(), Ipv4Addr::new(127, 0, 0, 2));
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The name does not resolve, no address of `local_ip`'s family, `local_ip` cannot be bound,
/// or every address refused (the last error).
pub async fn dial(addr: impl ToSocketAddrs, local_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = local_ip else {
        return TcpStream::connect(addr).await;
    };
    let mut last = None;
    for to in tokio::net::lookup_host(addr).await? {
        if to.is_ipv4() != ip.is_ipv4() {
            continue;
        }
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(ip, 0))?;
        match socket.connect(to).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no address of the local address {ip}'s family to connect to"),
        )
    }))
}

/// Binds a listener with `SO_REUSEADDR` and the configured backlog; shared with TLS.
pub(crate) fn bind_listener(addr: SocketAddr, config: &TcpConfig) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(config.reuse_address)?;
    socket.bind(addr)?;
    socket.listen(config.backlog.max(1))
}

/// A connected TCP stream, before it is split.
pub struct TcpTransport {
    stream: TcpStream,
    peer: SocketAddr,
    stream_config: StreamConfig,
    permit: Option<ConnectionPermit>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Wraps an already connected stream, applying `config` (`TCP_NODELAY`, buffer sizes).
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the socket has no peer (not connected) or refuses the option.
    pub fn from_stream(stream: TcpStream, config: &TcpConfig) -> Result<Self, TransportError> {
        stream.set_nodelay(config.nodelay)?;
        let peer = stream.peer_addr()?;
        Ok(TcpTransport {
            stream,
            peer,
            stream_config: config.stream.clone(),
            permit: None,
        })
    }

    /// Holds `permit` (a place in a [`ConnectionBudget`]) until both halves are dropped.
    pub fn with_permit(mut self, permit: ConnectionPermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// The local address of the connection.
    ///
    /// # Errors
    ///
    /// The operating system's error, if it has none.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// The underlying stream, for socket options this crate does not cover.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Gives back the underlying stream.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl Transport for TcpTransport {
    type Reader = TcpReader;
    type Writer = TcpWriter;

    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Ip(self.peer)
    }

    fn split(self) -> (TcpReader, TcpWriter) {
        let (r, w) = self.stream.into_split();
        (
            TcpReader(StreamReader::new(r, &self.stream_config).holding(self.permit.clone())),
            TcpWriter(StreamWriter::new(w, &self.stream_config).holding(self.permit)),
        )
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        self.permit.as_ref()
    }
}

stream_halves!(
    /// The reading half of a TCP connection: chunks of the byte stream as
    /// [`Frame::Binary`](crate::Frame::Binary), `Ok(None)` at the peer's orderly end of stream.
    TcpReader(tokio::net::tcp::OwnedReadHalf),
    /// The writing half of a TCP connection: fed frames go out as raw bytes with vectored
    /// writes; `close` flushes and shuts down the write side.
    TcpWriter(tokio::net::tcp::OwnedWriteHalf)
);

/// Accepts TCP connections from a listener with a configurable backlog, within a
/// [`ConnectionBudget`] ([`TcpConfig::max_connections`]): past it, a connection is accepted and
/// closed at once (the peer sees its connection end before any byte), so a flood holds no
/// descriptors and waits in no queue.
pub struct TcpAcceptor {
    listener: TcpListener,
    config: TcpConfig,
    budget: ConnectionBudget,
}

impl fmt::Debug for TcpAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpAcceptor")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl TcpAcceptor {
    /// Binds `addr` (port 0 picks a free port) with `SO_REUSEADDR` and
    /// [`TcpConfig::backlog`].
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the address is in use or not local.
    pub fn bind(addr: SocketAddr, config: TcpConfig) -> Result<Self, TransportError> {
        let listener = bind_listener(addr, &config)?;
        Ok(Self::from_listener(listener, config))
    }

    /// Uses a listener bound elsewhere (its backlog is whatever it was created with).
    pub fn from_listener(listener: TcpListener, config: TcpConfig) -> Self {
        let budget = ConnectionBudget::new(config.max_connections);
        tracing::debug!(
            addr = ?listener.local_addr().ok(),
            max_connections = budget.cap(),
            "TCP acceptor"
        );
        TcpAcceptor {
            listener,
            config,
            budget,
        }
    }

    /// Counts this acceptor's connections in `budget` instead of its own (to share one budget
    /// between several acceptors).
    pub fn with_budget(mut self, budget: ConnectionBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The budget this acceptor's connections are counted in (open, refused).
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
}

impl Acceptor for TcpAcceptor {
    type Conn = TcpTransport;
    type Offer = Ready<TcpTransport>;

    async fn offer(&mut self) -> Result<Ready<TcpTransport>, TransportError> {
        self.next().await.map(Ready::new)
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        self.listener.local_addr().ok().map(PeerAddr::Ip)
    }
}

impl TcpAcceptor {
    async fn next(&mut self) -> Result<TcpTransport, TransportError> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            // Over the budget: close at once (dropping the socket) and take the next one.
            let Some(permit) = self.budget.try_acquire() else {
                continue;
            };
            stream.set_nodelay(self.config.nodelay)?;
            return Ok(TcpTransport {
                stream,
                peer,
                stream_config: self.config.stream.clone(),
                permit: Some(permit),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Frame, FrameRead, FrameWrite};
    use bytes::Bytes;

    #[tokio::test]
    async fn a_reader_waiting_for_data_holds_no_buffer() {
        let mut acceptor =
            TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), TcpConfig::default()).unwrap();
        let addr = acceptor.local_socket_addr().unwrap();
        let config = TcpConfig::default();
        let (client, server) = tokio::join!(connect(addr, &config), acceptor.accept());
        let (mut r, _sw) = server.unwrap().split();
        let (_cr, mut w) = client.unwrap().split();
        w.send(Frame::Binary(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        let frame = r.read_frame().await.unwrap().unwrap();
        assert_eq!(frame.payload(), &b"hi"[..]);
        // Poll once more: nothing is there, so the reader parks on readiness...
        {
            let next = r.read_frame();
            tokio::pin!(next);
            tokio::select! {
                biased;
                _ = &mut next => panic!("no data was sent"),
                _ = std::future::ready(()) => {}
            }
        }
        // ...and has let go of its read buffer while waiting.
        assert_eq!(r.0.buffer_capacity(), 0);
    }
}
