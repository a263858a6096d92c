//! The chinwag transport seam: **move frames, nothing else**.
//!
//! Every way chinwag talks to a peer — a TCP or TLS byte stream, a Unix socket, UDP datagrams,
//! a WebSocket through either engine — is a [`Transport`]: a duplex of [`Frame`]s that splits
//! into an owned [`FrameRead`] half and an owned [`FrameWrite`] half, so a session can read and
//! write from two tasks (reads never block writes). Transports know nothing of requests, users or
//! rooms; sessions (`chinwag-session`) put codecs on top.
//!
//! # Framing
//!
//! [`Framing::Message`] transports (WebSocket, UDP) deliver one frame per message or datagram and
//! keep boundaries. [`Framing::Stream`] transports (TCP, TLS, Unix) deliver chunks of a byte
//! stream: a frame's boundaries mean nothing, and a codec must reassemble messages.
//!
//! # Writing
//!
//! [`FrameWrite::feed`] buffers without flushing and [`FrameWrite::flush`] pushes everything fed
//! so far to the operating system, so a writer that wakes up with many queued frames can send all
//! of them with one flush (few syscalls per batch rather than one per message).
//!
//! # Adapters
//!
//! | module | connect | accept | framing |
//! |---|---|---|---|
//! | [`tcp`] | [`tcp::connect`] | [`tcp::TcpAcceptor`] | stream, `TCP_NODELAY` |
//! | [`tls`] | [`tls::connect`] (verifies certificates) | [`tls::TlsAcceptor`] | stream |
//! | [`unix`] | [`unix::connect`] | [`unix::UnixAcceptor`] | stream |
//! | [`udp`] | [`udp::connect`] (connected client) | [`udp::UdpEndpoint`] (unconnected) | message |
//! | [`pipe`] | [`pipe::pair`], [`pipe::PipeConnector`] | [`pipe::PipeAcceptor`] | message |
//!
//! The byte-stream adapters share one reader and one writer ([`StreamConfig`]): an idle
//! reader holds no buffer (it waits for readiness, then reserves a chunk that grows from 4 KiB
//! to 64 KiB under load), and the writer flushes fed frames with vectored writes. Every limit
//! lives in a `#[non_exhaustive]` config struct with documented defaults
//! (`docs/transports.md` has the table).
//!
//! # Example
//!
//! A TCP echo round trip on loopback:
//!
//! ```
//! use bytes::Bytes;
//! use chinwag::transport::tcp::{self, TcpAcceptor, TcpConfig};
//! use chinwag::transport::{Acceptor, Frame, FrameRead, FrameWrite, Transport, CloseReason};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chinwag::transport::TransportError> {
//! let mut acceptor = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), TcpConfig::default())?;
//! let addr = acceptor.local_socket_addr()?;
//!
//! // The server echoes every chunk until the client closes.
//! let server = tokio::spawn(async move {
//!     let (mut rd, mut wr) = acceptor.accept().await?.split();
//!     while let Some(frame) = rd.read_frame().await? {
//!         wr.send(frame).await?;
//!     }
//!     wr.close(CloseReason::normal()).await
//! });
//!
//! let (mut rd, mut wr) = tcp::connect(addr, &TcpConfig::default()).await?.split();
//! wr.feed(Frame::Binary(Bytes::from_static(b"hello, "))).await?;
//! wr.feed(Frame::Binary(Bytes::from_static(b"world"))).await?;
//! wr.flush().await?; // both frames in one vectored write
//! wr.close(CloseReason::normal()).await?;
//!
//! // A byte stream keeps no boundaries: collect until the server's end of stream.
//! let mut echoed = Vec::new();
//! while let Some(frame) = rd.read_frame().await? {
//!     echoed.extend_from_slice(frame.payload());
//! }
//! assert_eq!(echoed, b"hello, world");
//! server.await.expect("server task")?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

pub mod budget;
mod close;
#[cfg(feature = "serde")]
pub mod duration;
mod offer;
pub mod pipe;
mod stream;
pub mod tcp;
pub mod tls;
pub mod udp;
#[cfg(unix)]
pub mod unix;

pub use budget::{ConnectionBudget, ConnectionPermit};
pub use close::{CloseCode, CloseReason, Reconnect};
pub use offer::{ConnectInfo, HttpInfo, Offer, Ready, Refusal, TlsInfo};
pub use stream::StreamConfig;

/// One unit moved by a transport.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// A WebSocket text message. The engine has checked it is valid UTF-8.
    Text(Bytes),
    /// A WebSocket binary message, one UDP datagram, or a chunk of a byte stream.
    Binary(Bytes),
}

impl Frame {
    /// The frame's bytes, whatever its kind.
    pub fn payload(&self) -> &Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }

    /// Consumes the frame, returning its bytes.
    pub fn into_payload(self) -> Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }

    /// Length of the payload in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, b) = match self {
            Frame::Text(b) => ("Text", b),
            Frame::Binary(b) => ("Binary", b),
        };
        write!(f, "{kind}({} bytes)", b.len())
    }
}

/// Whether a transport keeps message boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Byte stream (TCP, TLS, Unix): frames are arbitrary chunks; codecs reassemble messages.
    Stream,
    /// Message transport (WebSocket, UDP): one frame per message; boundaries are kept.
    Message,
}

/// Who is on the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerAddr {
    /// An IP peer (TCP, TLS, UDP, WebSocket).
    Ip(SocketAddr),
    /// A Unix domain socket peer; `None` when the peer's socket is unnamed (the usual case for
    /// clients).
    Unix(Option<PathBuf>),
    /// An in-process peer (pipes used in tests).
    Local,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
            PeerAddr::Local => f.write_str("local"),
        }
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The operating system reported an I/O error (connection reset, broken pipe, ...). The
    /// connection is unusable: drop it.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame or message larger than the configured limit. The transport has
    /// closed (WebSocket: with code 1009). Raise the limit if the peer is legitimate.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large ("message", "frame", "handshake headers", "datagram").
        what: &'static str,
        /// The size the peer sent or declared.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The peer violated the framing protocol (bad WebSocket frame, bad UTF-8 in a text message,
    /// TLS alert, ...). The connection is closed; the peer is at fault.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A deadline passed: no pong within the pong wait, a close handshake that did not finish,
    /// a handshake that took too long. The connection is closed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The connection was already closed (by us or by the peer) when this operation was tried.
    /// Not an error of the peer: stop using this half.
    #[error("connection closed")]
    Closed,
    /// The handshake (TLS, WebSocket upgrade) was refused or failed; the message says why.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// The reading half of a transport.
pub trait FrameRead: Send + 'static {
    /// Waits for the next frame.
    ///
    /// Returns `Ok(None)` once the peer has closed in an orderly way (end of stream, WebSocket
    /// close frame); [`FrameRead::close_reason`] then tells the peer's code and reason. An error
    /// means the connection is broken; do not read again.
    ///
    /// Cancel safety: dropping the future loses no data that was already received.
    fn read_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, TransportError>> + Send;

    /// The close code and reason the peer sent, once [`FrameRead::read_frame`] returned
    /// `Ok(None)`; `None` before that or when the transport has no such notion.
    fn close_reason(&self) -> Option<&CloseReason> {
        None
    }

    /// What this reader sees of its peer beyond the frames it hands out: the control frames it
    /// consumes itself (WebSocket pings and pongs), as a shared [`PeerActivity`] that can be
    /// consulted while a [`read_frame`](Self::read_frame) is pending (a session's idle timer
    /// does, so a peer that only answers keepalive pings is not idle). `None` (the default)
    /// for transports without control frames (byte streams, datagrams, pipes): every frame
    /// they receive is handed out.
    fn activity(&self) -> Option<Arc<dyn PeerActivity>> {
        None
    }
}

/// When a reader last received a frame from its peer that it did not hand out (see
/// [`FrameRead::activity`]). Recording it costs a clock read per control frame only; data
/// frames are timed by whoever reads them.
pub trait PeerActivity: Send + Sync + 'static {
    /// When the last control frame (WebSocket ping or pong) arrived from the peer, or `None`
    /// when none has yet. Our own pings do not count.
    fn last_control_frame(&self) -> Option<tokio::time::Instant>;
}

/// The writing half of a transport.
pub trait FrameWrite: Send + 'static {
    /// Queues `frame` for sending without necessarily flushing it. Byte-stream transports send
    /// [`Frame::Text`] and [`Frame::Binary`] alike as raw bytes.
    fn feed(&mut self, frame: Frame) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Sends everything fed so far to the operating system.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Feeds `frame` and flushes.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), TransportError>> + Send {
        async move {
            self.feed(frame).await?;
            self.flush().await
        }
    }

    /// Closes the connection in an orderly way: flushes what was fed, then sends a WebSocket
    /// close frame with `reason` (byte streams shut down their write side). Engines bound the
    /// wait for the peer's answer with their close timeout; this never hangs forever.
    fn close(
        &mut self,
        reason: CloseReason,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// A connected transport: a duplex of frames that splits into owned halves.
pub trait Transport: Send + 'static {
    /// The reading half.
    type Reader: FrameRead;
    /// The writing half.
    type Writer: FrameWrite;

    /// Whether frames keep message boundaries.
    fn framing(&self) -> Framing;

    /// The peer's address.
    fn peer_addr(&self) -> PeerAddr;

    /// Splits into independently owned halves, so one task can read while another writes.
    fn split(self) -> (Self::Reader, Self::Writer);

    /// The connection's place in its acceptor's [`ConnectionBudget`] (accepted connections;
    /// `None` for dialled ones and transports without a budget), so whoever runs it can
    /// [establish](ConnectionPermit::establish) it or close it when it is
    /// [evicted](ConnectionPermit::on_evict).
    fn permit(&self) -> Option<&ConnectionPermit> {
        None
    }
}

/// A source of accepted connections (a listener, or the WebSocket upgrades of an HTTP server).
///
/// It hands out [`Offer`]s, connections that have arrived but are not admitted yet, so the
/// caller can decide from their [`ConnectInfo`] (for WebSocket: before the upgrade is answered);
/// [`accept`](Self::accept) admits every offer as it comes.
pub trait Acceptor: Send + 'static {
    /// The connections it yields.
    type Conn: Transport;
    /// What it offers before admission.
    type Offer: Offer<Conn = Self::Conn>;

    /// Waits for the next connection that arrives. Errors are per-accept (e.g. `EMFILE`) and
    /// the acceptor stays usable; callers back off and retry.
    fn offer(&mut self) -> impl Future<Output = Result<Self::Offer, TransportError>> + Send;

    /// Waits for the next connection, admits it (no subprotocol) and
    /// [establishes](ConnectionPermit::establish) it: a caller without a sign-in step takes
    /// connections out of the pending share at once, so they are never evicted. Use
    /// [`offer`](Self::offer) and [`Offer::admit`] to keep a connection pending until it signs
    /// in.
    ///
    /// # Errors
    ///
    /// As [`offer`](Self::offer), or the admission failed for this one connection (the
    /// acceptor stays usable).
    fn accept(&mut self) -> impl Future<Output = Result<Self::Conn, TransportError>> + Send {
        async move {
            let conn = self.offer().await?.admit(None).await?;
            if let Some(p) = conn.permit() {
                p.establish();
            }
            Ok(conn)
        }
    }

    /// The local address it accepts on, for logs and for tests that bind port 0.
    fn local_addr(&self) -> Option<PeerAddr>;
}
