//! The small interface an engine implements; everything else (keepalive, the close handshake,
//! error-to-close-code mapping, the split into halves) is written once in `conn`.

use std::future::Future;

use bytes::Bytes;
use chinwag_transport::{CloseCode, CloseReason, Frame, TransportError};

use crate::{WsConfig, WsStream};

/// Which end of the connection we are (clients mask their frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection.
    Server,
    /// We dialed the connection.
    Client,
}

/// What an engine read from the wire.
#[derive(Debug)]
pub enum Incoming {
    /// A whole data message (fragments already reassembled and, for text, UTF-8 checked).
    Message(Frame),
    /// A ping the engine did not answer itself; the connection sends the pong.
    Ping(Bytes),
    /// A ping the engine answered itself (its pong is queued or sent): reported so the
    /// connection counts it as a sign of life.
    PingAnswered,
    /// A pong arrived.
    Pong,
    /// The peer sent a close frame. `reply` says whether the connection must still send the
    /// answering close frame (engines that queue it themselves say `false`).
    Close {
        /// The peer's code and reason, if its close frame had any.
        reason: Option<CloseReason>,
        /// Whether the answering close frame still has to be sent.
        reply: bool,
    },
}

/// What the connection asks an engine to write.
#[derive(Debug)]
pub enum Outgoing {
    /// A data message; the engine fragments it by [`WsConfig::fragment_size`].
    Message(Frame),
    /// A ping with this payload.
    Ping(Bytes),
    /// A pong with this payload.
    Pong(Bytes),
    /// A close frame (with no payload when `None`).
    Close(Option<CloseReason>),
}

/// An engine's read error: the error for the caller, and the close code to send to the peer
/// (`None` when the connection is already unusable, e.g. reset).
#[derive(Debug)]
pub struct ReadError {
    /// What the reader half reports.
    pub error: TransportError,
    /// The close code to send before dropping the connection.
    pub close: Option<CloseCode>,
}

impl ReadError {
    /// The connection is dead (I/O error, EOF); nothing can be sent.
    pub fn dead(error: TransportError) -> Self {
        ReadError { error, close: None }
    }

    /// A too-large message or frame: close with 1009.
    pub fn too_large(what: &'static str, size: u64, limit: u64) -> Self {
        ReadError {
            error: TransportError::TooLarge { what, size, limit },
            close: Some(CloseCode::TOO_BIG),
        }
    }

    /// A protocol violation: close with 1002.
    pub fn protocol(msg: impl Into<String>) -> Self {
        ReadError {
            error: TransportError::Protocol(msg.into()),
            close: Some(CloseCode::PROTOCOL),
        }
    }

    /// Invalid UTF-8 in a text message or close reason: close with 1007.
    pub fn invalid_utf8() -> Self {
        ReadError {
            error: TransportError::Protocol("invalid UTF-8 in a text message".into()),
            close: Some(CloseCode::INVALID_PAYLOAD),
        }
    }
}

/// The reading side of an engine. Its future need not be cancel-safe: the connection keeps
/// an unfinished read alive across cancellations of [`FrameRead::read_frame`].
///
/// [`FrameRead::read_frame`]: chinwag_transport::FrameRead::read_frame
pub trait RawRead: Send + 'static {
    /// Reads until something worth reporting arrives.
    fn read(&mut self) -> impl Future<Output = Result<Incoming, ReadError>> + Send;

    /// [`read`](Self::read), for an engine whose read is **cancel safe**: dropping an
    /// unfinished one loses nothing (the engine keeps its partial state in `self`). Then the
    /// connection awaits it in place. The default, `None`, says it is not: the connection then
    /// keeps the unfinished read in a box across cancellations (an allocation per read).
    ///
    /// A method rather than a flag so that the in-place read's future is part of the
    /// connection's future only for the engines that use it (a future's layout reserves room
    /// for every await it contains, taken or not).
    fn read_in_place(
        &mut self,
    ) -> Option<impl Future<Output = Result<Incoming, ReadError>> + Send + '_> {
        None::<std::future::Pending<Result<Incoming, ReadError>>>
    }
}

/// The writing side of an engine.
pub trait RawWrite: Send + 'static {
    /// Queues `out` without necessarily writing it to the socket.
    fn feed(&mut self, out: Outgoing) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes everything queued to the socket.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Flushes and shuts the socket's write side down (TCP FIN).
    fn shutdown(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// A WebSocket engine: turns an upgraded byte stream into [`RawRead`] and [`RawWrite`] halves.
/// Implemented by the engine crates; applications use their type aliases instead.
pub trait Engine: Send + Sync + 'static {
    /// The reading side.
    type Read: RawRead;
    /// The writing side.
    type Write: RawWrite;

    /// A short name for logs ("tungstenite", "fastwebsockets", "yawc").
    const NAME: &'static str;

    /// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2),
    /// computed by the engine's own library.
    fn accept_key(key: &[u8]) -> String;

    /// Wraps a stream whose opening handshake is done.
    fn wrap(
        stream: WsStream,
        role: Role,
        cfg: &WsConfig,
    ) -> impl Future<Output = (Self::Read, Self::Write)> + Send;

    /// Server handshake: given the client's `Sec-WebSocket-Extensions` values (every header
    /// line, in order) and the config, the value to answer in `Sec-WebSocket-Extensions`, or
    /// `None` to agree to no extension. The answer is handed to [`Engine::wrap_agreed`].
    /// Default: no extensions (engines that implement none).
    fn negotiate(offers: &[&str], cfg: &WsConfig) -> Option<String> {
        let _ = (offers, cfg);
        None
    }

    /// Wraps a server stream whose handshake agreed `agreed` (what [`Engine::negotiate`]
    /// answered). Default: [`Engine::wrap`].
    fn wrap_agreed(
        stream: WsStream,
        role: Role,
        cfg: &WsConfig,
        agreed: Option<String>,
    ) -> impl Future<Output = (Self::Read, Self::Write)> + Send {
        let _ = agreed;
        Self::wrap(stream, role, cfg)
    }

    /// Performs the client's opening handshake on `stream` for `request` (method GET, with
    /// `Host`, and `Origin` when set; the engine adds the WebSocket headers).
    fn client_handshake(
        stream: WsStream,
        request: http::Request<()>,
        cfg: &WsConfig,
    ) -> impl Future<Output = Result<(Self::Read, Self::Write), TransportError>> + Send;
}

/// Truncates a close reason to the 123 bytes a close frame can carry, at a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}
