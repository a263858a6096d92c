//! Unix domain sockets (stream): [`connect`] and [`UnixAcceptor`].
//!
//! Same reader and writer as TCP (see [`StreamConfig`]). The listener is built with `socket2`
//! so its backlog is configurable like TCP's (`UnixListener::bind` uses 128).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{UnixListener, UnixStream};

use crate::budget::{ConnectionBudget, ConnectionPermit};
use crate::stream::{StreamConfig, StreamReader, StreamWriter, stream_halves};
use crate::{Acceptor, Framing, PeerAddr, Ready, Transport, TransportError};

/// Settings of Unix socket connections and listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnixConfig {
    /// Listen backlog. Default 1024 (the kernel caps it at `net.core.somaxconn`).
    pub backlog: u32,
    /// How long [`connect`] waits. Default 10 s.
    pub connect_timeout: Duration,
    /// Connections a [`UnixAcceptor`] holds open at once; past it, new connections are
    /// accepted and closed at once. Default [`ConnectionBudget::default_cap`].
    pub max_connections: usize,
    /// Read buffer and write batching sizes.
    pub stream: StreamConfig,
}

impl Default for UnixConfig {
    fn default() -> Self {
        UnixConfig {
            max_connections: ConnectionBudget::default_cap(),
            backlog: 1024,
            connect_timeout: Duration::from_secs(10),
            stream: StreamConfig::default(),
        }
    }
}

impl UnixConfig {
    /// Sets [`backlog`](Self::backlog).
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
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

/// Connects to the Unix socket at `path`.
///
/// # Errors
///
/// [`TransportError::Io`] when nothing listens there, [`TransportError::Timeout`] after
/// [`UnixConfig::connect_timeout`].
pub async fn connect(
    path: impl AsRef<Path>,
    config: &UnixConfig,
) -> Result<UnixTransport, TransportError> {
    let path = path.as_ref();
    let stream = tokio::time::timeout(config.connect_timeout, UnixStream::connect(path))
        .await
        .map_err(|_| TransportError::Timeout("unix connect"))??;
    Ok(UnixTransport {
        stream,
        peer: Some(path.to_path_buf()),
        stream_config: config.stream.clone(),
        permit: None,
    })
}

/// A connected Unix stream, before it is split.
pub struct UnixTransport {
    stream: UnixStream,
    peer: Option<PathBuf>,
    stream_config: StreamConfig,
    permit: Option<ConnectionPermit>,
}

impl fmt::Debug for UnixTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixTransport")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl UnixTransport {
    /// Wraps an already connected stream (e.g. one half of `UnixStream::pair`).
    pub fn from_stream(stream: UnixStream, config: &UnixConfig) -> Self {
        let peer = stream
            .peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        UnixTransport {
            stream,
            peer,
            stream_config: config.stream.clone(),
            permit: None,
        }
    }

    /// The underlying stream, for options this crate does not cover (peer credentials, ...).
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }
}

impl Transport for UnixTransport {
    type Reader = UnixReader;
    type Writer = UnixWriter;

    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Unix(self.peer.clone())
    }

    fn split(self) -> (UnixReader, UnixWriter) {
        let (r, w) = self.stream.into_split();
        (
            UnixReader(StreamReader::new(r, &self.stream_config).holding(self.permit.clone())),
            UnixWriter(StreamWriter::new(w, &self.stream_config).holding(self.permit)),
        )
    }

    fn permit(&self) -> Option<&ConnectionPermit> {
        self.permit.as_ref()
    }
}

stream_halves!(
    /// The reading half of a Unix connection: chunks of the byte stream as
    /// [`Frame::Binary`](crate::Frame::Binary), `Ok(None)` at the peer's orderly end of stream.
    UnixReader(tokio::net::unix::OwnedReadHalf),
    /// The writing half of a Unix connection: vectored writes of fed frames; `close` flushes
    /// and shuts down the write side.
    UnixWriter(tokio::net::unix::OwnedWriteHalf)
);

/// Accepts connections on a Unix socket path.
///
/// The socket file is not removed on drop (another process may have bound the path since);
/// remove it yourself, or bind inside a temporary directory.
pub struct UnixAcceptor {
    listener: UnixListener,
    path: PathBuf,
    config: UnixConfig,
    budget: ConnectionBudget,
}

impl fmt::Debug for UnixAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixAcceptor")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UnixAcceptor {
    /// Binds `path` with [`UnixConfig::backlog`].
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the path exists already (`AddrInUse`: remove a stale socket
    /// file first) or its directory is missing.
    pub fn bind(path: impl AsRef<Path>, config: UnixConfig) -> Result<Self, TransportError> {
        let path = path.as_ref();
        let listener = bind_listener(path, config.backlog)?;
        Ok(UnixAcceptor {
            listener,
            path: path.to_path_buf(),
            budget: ConnectionBudget::new(config.max_connections),
            config,
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

    /// The bound path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn bind_listener(path: &Path, backlog: u32) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(i32::try_from(backlog.max(1)).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(socket.into())
}

impl Acceptor for UnixAcceptor {
    type Conn = UnixTransport;
    type Offer = Ready<UnixTransport>;

    async fn offer(&mut self) -> Result<Ready<UnixTransport>, TransportError> {
        self.next().await.map(Ready::new)
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        Some(PeerAddr::Unix(Some(self.path.clone())))
    }
}

impl UnixAcceptor {
    async fn next(&mut self) -> Result<UnixTransport, TransportError> {
        loop {
            let (stream, addr) = self.listener.accept().await?;
            // Over the budget: close at once and take the next one.
            let Some(permit) = self.budget.try_acquire() else {
                continue;
            };
            return Ok(UnixTransport {
                stream,
                peer: addr.as_pathname().map(Path::to_path_buf),
                stream_config: self.config.stream.clone(),
                permit: Some(permit),
            });
        }
    }
}
