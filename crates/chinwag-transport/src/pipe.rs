//! In-process transports for tests of higher layers: [`pair`] gives two connected ends, and
//! [`listener`] gives a connector and an [`Acceptor`] that hands out such pairs.
//!
//! Pipes keep message boundaries ([`Framing::Message`]), carry close reasons like a WebSocket,
//! and are bounded: a writer waits when [`PipeConfig::capacity`] frames are in flight.

use std::fmt;
use std::io;

use tokio::sync::mpsc;

use crate::{
    Acceptor, CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Ready, Transport,
    TransportError,
};

/// Settings of in-process pipes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeConfig {
    /// Frames in flight per direction before `feed` waits for the reader. Default 64 (values
    /// below 1 are raised to 1).
    pub capacity: usize,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig { capacity: 64 }
    }
}

impl PipeConfig {
    /// Sets [`capacity`](Self::capacity).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
}

#[derive(Debug)]
enum Msg {
    Frame(Frame),
    Close(CloseReason),
}

/// Two connected in-process transports: what one writes, the other reads.
pub fn pair(config: &PipeConfig) -> (PipeTransport, PipeTransport) {
    let capacity = config.capacity.max(1);
    let (a_tx, b_rx) = mpsc::channel(capacity);
    let (b_tx, a_rx) = mpsc::channel(capacity);
    (
        PipeTransport { tx: a_tx, rx: a_rx },
        PipeTransport { tx: b_tx, rx: b_rx },
    )
}

/// One end of an in-process pipe.
pub struct PipeTransport {
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
}

impl fmt::Debug for PipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeTransport").finish_non_exhaustive()
    }
}

impl Transport for PipeTransport {
    type Reader = PipeReader;
    type Writer = PipeWriter;

    fn framing(&self) -> Framing {
        Framing::Message
    }

    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Local
    }

    fn split(self) -> (PipeReader, PipeWriter) {
        (
            PipeReader {
                rx: self.rx,
                close: None,
                done: false,
            },
            PipeWriter { tx: Some(self.tx) },
        )
    }
}

/// The reading half of a pipe.
pub struct PipeReader {
    rx: mpsc::Receiver<Msg>,
    close: Option<CloseReason>,
    done: bool,
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReader")
            .field("close", &self.close)
            .finish_non_exhaustive()
    }
}

impl FrameRead for PipeReader {
    /// The next frame; `Ok(None)` after the peer's [`FrameWrite::close`]; an I/O error
    /// (`ConnectionReset`) when the peer's writer was dropped without closing (a vanished
    /// peer).
    async fn read_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Msg::Frame(frame)) => Ok(Some(frame)),
            Some(Msg::Close(reason)) => {
                self.close = Some(reason);
                self.done = true;
                self.rx.close();
                Ok(None)
            }
            None => Err(TransportError::Io(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "pipe peer went away without closing",
            ))),
        }
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }
}

/// The writing half of a pipe.
pub struct PipeWriter {
    tx: Option<mpsc::Sender<Msg>>,
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeWriter")
            .field("closed", &self.tx.is_none())
            .finish()
    }
}

impl FrameWrite for PipeWriter {
    /// Hands `frame` to the peer, waiting while the pipe is full. [`TransportError::Closed`]
    /// once this half was closed or the peer's reader is gone.
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        tx.send(Msg::Frame(frame))
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Nothing to do: fed frames are already with the peer.
    async fn flush(&mut self) -> Result<(), TransportError> {
        match self.tx {
            Some(_) => Ok(()),
            None => Err(TransportError::Closed),
        }
    }

    /// Sends `reason` after everything fed; the peer reads `Ok(None)` and sees the reason.
    async fn close(&mut self, reason: CloseReason) -> Result<(), TransportError> {
        if let Some(tx) = self.tx.take() {
            // A peer that is gone already needs no goodbye.
            let _ = tx.send(Msg::Close(reason)).await;
        }
        Ok(())
    }
}

/// Creates an in-process "listener": connections made with the [`PipeConnector`] come out of
/// the [`PipeAcceptor`]. At most `config.capacity` connections wait to be accepted.
pub fn listener(config: &PipeConfig) -> (PipeConnector, PipeAcceptor) {
    let (tx, rx) = mpsc::channel(config.capacity.max(1));
    (
        PipeConnector {
            tx,
            config: config.clone(),
        },
        PipeAcceptor { rx },
    )
}

/// Makes connections to a [`PipeAcceptor`]. Cheap to clone.
#[derive(Clone)]
pub struct PipeConnector {
    tx: mpsc::Sender<PipeTransport>,
    config: PipeConfig,
}

impl fmt::Debug for PipeConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeConnector").finish_non_exhaustive()
    }
}

impl PipeConnector {
    /// Connects: returns our end once the acceptor's queue took the other.
    ///
    /// # Errors
    ///
    /// [`TransportError::Io`] (`ConnectionRefused`) when the acceptor was dropped.
    pub async fn connect(&self) -> Result<PipeTransport, TransportError> {
        let (ours, theirs) = pair(&self.config);
        self.tx.send(theirs).await.map_err(|_| {
            TransportError::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "pipe acceptor is gone",
            ))
        })?;
        Ok(ours)
    }
}

/// Accepts connections made with a [`PipeConnector`].
pub struct PipeAcceptor {
    rx: mpsc::Receiver<PipeTransport>,
}

impl fmt::Debug for PipeAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeAcceptor").finish_non_exhaustive()
    }
}

impl Acceptor for PipeAcceptor {
    type Conn = PipeTransport;
    type Offer = Ready<PipeTransport>;

    /// The next connection. Once every connector is dropped, returns
    /// [`TransportError::Closed`] (no more connections can come).
    async fn offer(&mut self) -> Result<Ready<PipeTransport>, TransportError> {
        self.rx
            .recv()
            .await
            .map(Ready::new)
            .ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> Option<PeerAddr> {
        Some(PeerAddr::Local)
    }
}
