//! UDP: an unconnected [`UdpEndpoint`] that tells each datagram's peer, a connected client
//! ([`connect`]) that is a [`Transport`] with [`Framing::Message`] (one datagram per frame), and
//! [`UdpAcceptor`], which demultiplexes one socket into one connection per remote address.
//!
//! UDP keeps no order and no delivery promise beyond what the network gives; on loopback both
//! hold. Datagrams larger than [`UdpConfig::max_datagram`] are refused when sending
//! ([`TransportError::TooLarge`], nothing is sent) and dropped when receiving (reported as
//! `TooLarge`).
//!
//! Memory: sockets hold no receive buffer. A datagram is received into one scratch buffer per
//! runtime thread and copied out at its exact size, so an idle socket costs nothing and a small
//! datagram does not pin a 64 KiB allocation.

mod acceptor;

pub use acceptor::{UdpAcceptor, UdpAcceptorConfig, UdpPeer, UdpPeerReader};

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::{
    CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport, TransportError,
};

/// The largest UDP payload over IPv4 (65 535 − 8 − 20).
pub const MAX_IPV4_PAYLOAD: usize = 65_507;

/// Largest receive buffer needed for any UDP datagram.
const SCRATCH_MAX: usize = 65_536;

/// Datagrams a writer queues before `feed` sends them on its own.
const MAX_QUEUED: usize = 64;

/// Settings of UDP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpConfig {
    /// The largest datagram payload sent or accepted, in bytes. Default 65 507 (the IPv4
    /// maximum). Larger outgoing frames are refused with [`TransportError::TooLarge`]; larger
    /// incoming datagrams are dropped and reported as `TooLarge`.
    pub max_datagram: usize,
    /// The local address a connected client binds. Default `None`: the unspecified address of
    /// the peer's family, port 0.
    pub local_addr: Option<SocketAddr>,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: MAX_IPV4_PAYLOAD,
            local_addr: None,
        }
    }
}

impl UdpConfig {
    /// Sets [`max_datagram`](Self::max_datagram).
    pub fn with_max_datagram(mut self, max_datagram: usize) -> Self {
        self.max_datagram = max_datagram;
        self
    }

    /// Sets [`local_addr`](Self::local_addr).
    pub fn with_local_addr(mut self, local_addr: Option<SocketAddr>) -> Self {
        self.local_addr = local_addr;
        self
    }
}

thread_local! {
    /// One receive buffer per thread, used only between readiness and copying the datagram out.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one receive attempt got.
enum Received<T> {
    /// A datagram within the limit.
    Datagram(Bytes, T),
    /// A datagram over the limit (dropped); the size is at least this.
    TooLarge(usize, T),
}

/// Receives one datagram with `recv` into the thread's scratch buffer and copies it out.
fn recv_datagram<T>(
    max: usize,
    recv: impl FnOnce(&mut [u8]) -> io::Result<(usize, T)>,
) -> io::Result<Received<T>> {
    // One byte more than the limit tells an over-limit datagram from one exactly at it.
    let want = max.saturating_add(1).min(SCRATCH_MAX);
    SCRATCH.with(|scratch| {
        let mut owned;
        let mut borrowed = scratch.try_borrow_mut();
        let buf: &mut Vec<u8> = match borrowed {
            Ok(ref mut b) => b,
            // Not reachable (nothing re-enters here), but never panic for it.
            Err(_) => {
                owned = Vec::new();
                &mut owned
            }
        };
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let (n, extra) = recv(&mut buf[..want])?;
        if n > max {
            return Ok(Received::TooLarge(n, extra));
        }
        Ok(Received::Datagram(Bytes::copy_from_slice(&buf[..n]), extra))
    })
}

fn too_large(size: usize, limit: usize) -> TransportError {
    TransportError::TooLarge {
        what: "datagram",
        size: size as u64,
        limit: limit as u64,
    }
}

/// An unconnected UDP socket: receives datagrams from anyone, with their address, and sends to
/// any address. Methods take `&self`, so one endpoint can be shared (e.g. in an `Arc`) by a
/// receiving task and sending tasks.
pub struct UdpEndpoint {
    socket: UdpSocket,
    config: UdpConfig,
}

impl fmt::Debug for UdpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpEndpoint")
            .field("local_addr", &self.socket.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl UdpEndpoint {
    /// Binds `addr` (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the address is in use or not local.
    pub async fn bind(addr: SocketAddr, config: UdpConfig) -> Result<Self, TransportError> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(UdpEndpoint { socket, config })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The operating system's error, if any.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits for the next datagram and returns it with its sender's address.
    ///
    /// # Errors
    ///
    /// [`TransportError::TooLarge`] for a datagram over [`UdpConfig::max_datagram`]: it was
    /// dropped, and the endpoint stays usable (call again). [`TransportError::Io`] for socket
    /// errors. Cancel safe.
    pub async fn recv_from(&self) -> Result<(Bytes, SocketAddr), TransportError> {
        let max = self.config.max_datagram;
        loop {
            self.socket.readable().await?;
            match recv_datagram(max, |buf| self.socket.try_recv_from(buf)) {
                Ok(Received::Datagram(bytes, from)) => return Ok((bytes, from)),
                Ok(Received::TooLarge(n, from)) => {
                    tracing::debug!(%from, size = n, max, "dropped an over-limit datagram");
                    return Err(too_large(n, max));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `data` as one datagram to `to`.
    ///
    /// # Errors
    ///
    /// [`TransportError::TooLarge`] (nothing sent) when `data` is over
    /// [`UdpConfig::max_datagram`]; [`TransportError::Io`] for socket errors.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), TransportError> {
        let max = self.config.max_datagram;
        if data.len() > max {
            return Err(too_large(data.len(), max));
        }
        self.socket.send_to(data, to).await?;
        Ok(())
    }

    /// The underlying socket, for options this crate does not cover (buffer sizes, multicast).
    pub fn get_ref(&self) -> &UdpSocket {
        &self.socket
    }

    /// A [`FrameWrite`] sending every frame as one datagram to `peer` from this endpoint: the
    /// writing half of a per-peer transport built on a shared endpoint (as
    /// [`UdpAcceptor`] does). Same batching and limits as a connected
    /// socket's [`UdpWriter`].
    pub fn writer_to(self: &Arc<Self>, peer: SocketAddr) -> UdpWriter {
        UdpWriter {
            target: Target::Endpoint(self.clone(), peer),
            max: self.config.max_datagram,
            queue: VecDeque::new(),
            closed: false,
        }
    }
}

/// Binds a local socket and connects it to `remote`: a [`Transport`] of datagrams to and from
/// that one peer (datagrams from others are filtered by the kernel).
///
/// # Errors
///
/// [`TransportError::Io`] when binding or connecting fails.
pub async fn connect(
    remote: SocketAddr,
    config: &UdpConfig,
) -> Result<UdpTransport, TransportError> {
    let local = config.local_addr.unwrap_or(match remote {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    });
    let socket = UdpSocket::bind(local).await?;
    socket.connect(remote).await?;
    Ok(UdpTransport {
        socket,
        peer: remote,
        config: config.clone(),
    })
}

/// A connected UDP socket, before it is split.
pub struct UdpTransport {
    socket: UdpSocket,
    peer: SocketAddr,
    config: UdpConfig,
}

impl fmt::Debug for UdpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpTransport")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl UdpTransport {
    /// The local address of the socket.
    ///
    /// # Errors
    ///
    /// The operating system's error, if any.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Transport for UdpTransport {
    type Reader = UdpReader;
    type Writer = UdpWriter;

    fn framing(&self) -> Framing {
        Framing::Message
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Ip(self.peer)
    }

    fn split(self) -> (UdpReader, UdpWriter) {
        let socket = Arc::new(self.socket);
        let max = self.config.max_datagram;
        (
            UdpReader {
                socket: socket.clone(),
                max,
            },
            UdpWriter {
                target: Target::Connected(socket),
                max,
                queue: VecDeque::new(),
                closed: false,
            },
        )
    }
}

/// The reading half of a connected UDP socket: one [`Frame::Binary`] per datagram.
///
/// UDP has no end of stream, so this never returns `Ok(None)`; a peer that is gone shows up as
/// an I/O error (`ConnectionRefused`, from the ICMP answer to something we sent) or as silence,
/// which the session's idle timeout handles.
pub struct UdpReader {
    socket: Arc<UdpSocket>,
    max: usize,
}

impl fmt::Debug for UdpReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpReader").finish_non_exhaustive()
    }
}

impl FrameRead for UdpReader {
    /// The next datagram. An over-limit datagram is dropped and reported as
    /// [`TransportError::TooLarge`].
    async fn read_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        // Error readiness too: the kernel reports a vanished peer (ICMP port unreachable) as a
        // socket error without making the socket readable, and `readable()` alone would sleep
        // through it. The receive is a plain `recv` (through socket2) so the pending error is
        // returned. `try_io` is given the one interest that woke us (tokio's `try_io` sees no
        // readiness for a combined interest), so its `WouldBlock` clears exactly that one.
        loop {
            let ready = self
                .socket
                .ready(Interest::READABLE | Interest::ERROR)
                .await?;
            let woke = if ready.is_readable() || ready.is_read_closed() {
                Interest::READABLE
            } else {
                Interest::ERROR
            };
            let socket = &self.socket;
            let received = socket.try_io(woke, || {
                recv_datagram(self.max, |buf| {
                    let sock = SockRef::from(&**socket);
                    io::Read::read(&mut &*sock, buf).map(|n| (n, ()))
                })
            });
            match received {
                Ok(Received::Datagram(bytes, ())) => return Ok(Some(Frame::Binary(bytes))),
                Ok(Received::TooLarge(n, ())) => return Err(too_large(n, self.max)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The writing half of a connected UDP socket (or of one peer of a shared endpoint, see
/// [`UdpEndpoint::writer_to`]): one datagram per fed frame.
pub struct UdpWriter {
    target: Target,
    max: usize,
    queue: VecDeque<Bytes>,
    closed: bool,
}

impl fmt::Debug for UdpWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpWriter")
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// Where a [`UdpWriter`] sends.
enum Target {
    /// A connected socket.
    Connected(Arc<UdpSocket>),
    /// One peer of a shared, unconnected endpoint.
    Endpoint(Arc<UdpEndpoint>, SocketAddr),
}

impl UdpWriter {
    async fn send_queued(&mut self) -> Result<(), TransportError> {
        while let Some(front) = self.queue.front() {
            match &self.target {
                Target::Connected(socket) => {
                    socket.send(front).await?;
                }
                Target::Endpoint(endpoint, peer) => endpoint.send_to(front, *peer).await?,
            }
            self.queue.pop_front();
        }
        Ok(())
    }
}

impl FrameWrite for UdpWriter {
    /// Queues one datagram. A frame over [`UdpConfig::max_datagram`] is refused with
    /// [`TransportError::TooLarge`] (nothing is queued; the writer stays usable).
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let bytes = frame.into_payload();
        if bytes.len() > self.max {
            return Err(too_large(bytes.len(), self.max));
        }
        self.queue.push_back(bytes);
        if self.queue.len() >= MAX_QUEUED {
            self.send_queued().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.send_queued().await
    }

    /// Sends what was fed and stops writing (UDP has nothing to tell the peer).
    async fn close(&mut self, _reason: CloseReason) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let sent = self.send_queued().await;
        self.closed = true;
        self.queue.clear();
        sent
    }
}
