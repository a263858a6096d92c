//! [`UdpAcceptor`]: per-peer connections from one UDP socket (documented on the type).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;

use super::{UdpConfig, UdpEndpoint, UdpWriter};
use crate::{Acceptor, Frame, FrameRead, Framing, PeerAddr, Ready, Transport, TransportError};

use tokio::sync::{Notify, mpsc};

/// Settings of a [`UdpAcceptor`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpAcceptorConfig {
    /// The socket's settings (datagram size limit). Default [`UdpConfig::default()`].
    pub udp: UdpConfig,
    /// Most peers tracked at once. Default 10 000.
    pub max_peers: usize,
    /// Datagrams queued per peer before further ones are dropped. Default 64.
    pub peer_queue: usize,
    /// New peers waiting for `accept`. Default 128.
    pub pending: usize,
}

impl Default for UdpAcceptorConfig {
    fn default() -> Self {
        UdpAcceptorConfig {
            udp: UdpConfig::default(),
            max_peers: 10_000,
            peer_queue: 64,
            pending: 128,
        }
    }
}

impl UdpAcceptorConfig {
    /// Sets [`udp`](Self::udp).
    pub fn with_udp(mut self, udp: UdpConfig) -> Self {
        self.udp = udp;
        self
    }

    /// Sets [`max_peers`](Self::max_peers).
    pub fn with_max_peers(mut self, max_peers: usize) -> Self {
        self.max_peers = max_peers;
        self
    }

    /// Sets [`peer_queue`](Self::peer_queue).
    pub fn with_peer_queue(mut self, peer_queue: usize) -> Self {
        self.peer_queue = peer_queue;
        self
    }

    /// Sets [`pending`](Self::pending).
    pub fn with_pending(mut self, pending: usize) -> Self {
        self.pending = pending;
        self
    }
}

/// Accepts UDP "connections": turns one unconnected UDP socket into an acceptor of per-peer
/// connections, one per remote address, so a session server runs one session per peer.
///
/// Next to the connected UDP client ([`connect`](super::connect)) and the unconnected
/// [`UdpEndpoint`], this is the demultiplexer. One background task receives every datagram and routes it by source address to that peer's
/// bounded queue; a datagram from a new address opens a new connection. UDP has no close: a
/// peer's connection ends when its session ends (idle timeout, or a local close).
///
/// Bounds: at most [`UdpAcceptorConfig::max_peers`] peers are tracked (datagrams from further
/// new addresses are dropped), each peer queues at most
/// [`UdpAcceptorConfig::peer_queue`] datagrams (further ones are dropped, as a full socket
/// buffer would), and at most [`UdpAcceptorConfig::pending`] new peers wait for `accept`.
pub struct UdpAcceptor {
    new_peers: mpsc::Receiver<UdpPeer>,
    local: SocketAddr,
    gone: Arc<Notify>,
}

impl fmt::Debug for UdpAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpAcceptor")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for UdpAcceptor {
    fn drop(&mut self) {
        // No new peers from now on; the routing task keeps serving the peers whose sessions
        // are still open (a server's graceful shutdown drains them after it stopped
        // accepting), and ends once they are all gone.
        self.gone.notify_one();
    }
}

impl UdpAcceptor {
    /// Binds `addr` and starts routing datagrams.
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] when the address cannot be bound.
    pub async fn bind(addr: SocketAddr, config: UdpAcceptorConfig) -> Result<Self, TransportError> {
        let endpoint = Arc::new(UdpEndpoint::bind(addr, config.udp.clone()).await?);
        let local = endpoint.local_addr()?;
        let (tx, rx) = mpsc::channel(config.pending.max(1));
        let gone = Arc::new(Notify::new());
        tokio::spawn(route(endpoint, config, tx, gone.clone()));
        Ok(UdpAcceptor {
            new_peers: rx,
            local,
            gone,
        })
    }

    /// The bound address.
    pub fn local_socket_addr(&self) -> SocketAddr {
        self.local
    }
}

async fn route(
    endpoint: Arc<UdpEndpoint>,
    config: UdpAcceptorConfig,
    new_peers: mpsc::Sender<UdpPeer>,
    gone: Arc<Notify>,
) {
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut accepting = true;
    loop {
        let received = if accepting {
            tokio::select! {
                r = endpoint.recv_from() => r,
                _ = gone.notified() => {
                    accepting = false;
                    continue;
                }
            }
        } else {
            peers.retain(|_, tx| !tx.is_closed());
            if peers.is_empty() {
                return;
            }
            // Re-check the peers once a second while draining.
            match tokio::time::timeout(Duration::from_secs(1), endpoint.recv_from()).await {
                Ok(r) => r,
                Err(_) => continue,
            }
        };
        let (bytes, from) = match received {
            Ok(d) => d,
            Err(TransportError::TooLarge { .. }) => continue,
            Err(e) => {
                // ICMP errors for earlier sends show up here on unconnected sockets; they
                // concern one peer, and the socket goes on.
                tracing::debug!(error = %e, "udp acceptor receive error");
                continue;
            }
        };
        if !accepting && !peers.contains_key(&from) {
            continue;
        }
        if let Some(tx) = peers.get(&from) {
            match tx.try_send(bytes) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => continue, // dropped, like a full buffer
                Err(mpsc::error::TrySendError::Closed(b)) => {
                    peers.remove(&from);
                    // The old session ended; this datagram opens a new one.
                    open(&endpoint, &config, &new_peers, &mut peers, from, b);
                }
            }
        } else {
            open(&endpoint, &config, &new_peers, &mut peers, from, bytes);
        }
    }
}

fn open(
    endpoint: &Arc<UdpEndpoint>,
    config: &UdpAcceptorConfig,
    new_peers: &mpsc::Sender<UdpPeer>,
    peers: &mut HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    from: SocketAddr,
    first: Bytes,
) {
    if peers.len() >= config.max_peers {
        peers.retain(|_, tx| !tx.is_closed());
        if peers.len() >= config.max_peers {
            tracing::debug!(%from, "udp acceptor at max_peers; datagram dropped");
            return;
        }
    }
    let (tx, rx) = mpsc::channel(config.peer_queue.max(1));
    let _ = tx.try_send(first);
    let peer = UdpPeer {
        rx,
        endpoint: endpoint.clone(),
        peer: from,
    };
    if new_peers.try_send(peer).is_ok() {
        peers.insert(from, tx);
    }
}

/// One remote address of a [`UdpAcceptor`], as a [`Transport`] (message framing: one frame
/// per datagram).
pub struct UdpPeer {
    rx: mpsc::Receiver<Bytes>,
    endpoint: Arc<UdpEndpoint>,
    peer: SocketAddr,
}

impl fmt::Debug for UdpPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpPeer")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Transport for UdpPeer {
    type Reader = UdpPeerReader;
    type Writer = UdpWriter;

    fn framing(&self) -> Framing {
        Framing::Message
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Ip(self.peer)
    }

    /// The writer is `chinwag-transport`'s datagram writer aimed at this peer through the
    /// shared endpoint (batching, `max_datagram` refused at `feed`).
    fn split(self) -> (UdpPeerReader, UdpWriter) {
        (
            UdpPeerReader { rx: self.rx },
            self.endpoint.writer_to(self.peer),
        )
    }
}

/// The reading half of a [`UdpPeer`]. Never returns `Ok(None)` while the acceptor runs (UDP
/// has no end); after the acceptor is dropped it returns [`TransportError::Closed`].
pub struct UdpPeerReader {
    rx: mpsc::Receiver<Bytes>,
}

impl fmt::Debug for UdpPeerReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpPeerReader").finish_non_exhaustive()
    }
}

impl FrameRead for UdpPeerReader {
    async fn read_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.rx.recv().await {
            Some(b) => Ok(Some(Frame::Binary(b))),
            None => Err(TransportError::Closed),
        }
    }
}

impl Acceptor for UdpAcceptor {
    type Conn = UdpPeer;
    type Offer = Ready<UdpPeer>;

    /// The next new peer. [`TransportError::Closed`] if the routing task has ended.
    async fn offer(&mut self) -> Result<Ready<UdpPeer>, TransportError> {
        self.new_peers
            .recv()
            .await
            .map(Ready::new)
            .ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        Some(PeerAddr::Ip(self.local))
    }
}
