//! Why a session ended ([`CloseCause`]), why a send failed ([`SendError`]), and the errors a
//! handler is told about ([`SessionError`]).

use std::fmt;

use chinwag_transport::{CloseCode, CloseReason, Refusal, TransportError};

use crate::codec::CodecError;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// We closed it ([`Session::close`](crate::Session::close)): clean.
    Local,
    /// We closed it with this code and reason (e.g. a hub's "replaced by a newer sign-on"),
    /// after writing what was queued, as for [`Local`](Self::Local). Clean when the code is
    /// 1000.
    Application(CloseReason),
    /// The peer closed in an orderly way: a close frame (with its code and reason) or the end
    /// of a byte stream (`None`: byte streams carry no code). Clean when the code is 1000 or
    /// absent.
    Peer(Option<CloseReason>),
    /// The connection broke (reset, I/O error, a transport deadline such as a missing pong).
    PeerGone(String),
    /// Nothing arrived from the peer for [`SessionConfig::idle_timeout`](crate::SessionConfig::idle_timeout).
    IdleTimeout,
    /// Byte streams: a message that had started did not arrive in time
    /// ([`SessionConfig::message_timeout`](crate::SessionConfig::message_timeout), [`SessionConfig::message_min_rate`](crate::SessionConfig::message_min_rate)) — a peer
    /// trickling bytes.
    MessageTimeout,
    /// A batch of writes took longer than [`SessionConfig::write_timeout`](crate::SessionConfig::write_timeout).
    WriteTimeout,
    /// The peer sent something the codec or the transport refused.
    ProtocolError(String),
    /// The outbound queue overflowed under [`OverflowPolicy::Close`](crate::OverflowPolicy::Close).
    Overflow,
    /// The server or client that owns the session is shutting down.
    Shutdown,
    /// [`Handler::on_open`](crate::Handler::on_open) refused the session.
    Refused(CloseReason),
    /// [`Service::admit`](crate::Service::admit) refused the connection (or did not decide in
    /// time): the session never started. A WebSocket peer got the refusal's HTTP status.
    NotAdmitted(Refusal),
    /// [`Handler::on_message`](crate::Handler::on_message) panicked (the panic was caught and logged; the peer gets 1011).
    HandlerPanic(String),
    /// The connection had not signed in ([`Session::establish`](crate::Session::establish))
    /// and was the oldest pending one when its acceptor's pending share was full: it was
    /// evicted to make room. Closed as for an idle timeout (the codec's farewell, gotalk
    /// `f00000003`), with WebSocket code 1013 (try again later).
    Evicted,
}

impl CloseCause {
    /// Whether this is an orderly close that a client should not reconnect after (unless
    /// configured to): our own [`Local`](Self::Local) close, or the peer's close with code 1000
    /// or, on a byte stream, its end of stream.
    pub fn is_clean(&self) -> bool {
        match self {
            CloseCause::Local => true,
            CloseCause::Peer(None) => true,
            CloseCause::Peer(Some(r)) | CloseCause::Application(r) => r.code == CloseCode::NORMAL,
            _ => false,
        }
    }

    /// The close code and reason sent to the peer for this cause.
    pub fn to_transport_reason(&self) -> CloseReason {
        match self {
            CloseCause::Local | CloseCause::Peer(_) => CloseReason::normal(),
            CloseCause::Application(r) => r.clone(),
            CloseCause::PeerGone(_) => CloseReason::new(CloseCode::INTERNAL, "connection broken"),
            CloseCause::IdleTimeout => CloseReason::new(CloseCode::GOING_AWAY, "idle timeout"),
            CloseCause::MessageTimeout => CloseReason::new(CloseCode::POLICY, "message too slow"),
            CloseCause::WriteTimeout => CloseReason::new(CloseCode::POLICY, "write timeout"),
            CloseCause::ProtocolError(m) => CloseReason::new(CloseCode::PROTOCOL, m.clone()),
            CloseCause::Overflow => CloseReason::new(CloseCode::POLICY, "send queue overflow"),
            CloseCause::Shutdown => CloseReason::new(CloseCode::GOING_AWAY, "shutting down"),
            CloseCause::Refused(r) => r.clone(),
            CloseCause::NotAdmitted(r) => CloseReason::new(CloseCode::POLICY, r.reason.clone()),
            CloseCause::HandlerPanic(_) => CloseReason::new(CloseCode::INTERNAL, "internal error"),
            CloseCause::Evicted => CloseReason::new(
                CloseCode::TRY_AGAIN_LATER,
                "server busy: evicted before signing in",
            ),
        }
    }

    /// How the writer ends the connection.
    pub(crate) fn mode(&self) -> CloseMode {
        match self {
            CloseCause::Local
            | CloseCause::Application(_)
            | CloseCause::Shutdown
            | CloseCause::Peer(_) => CloseMode::Drain,
            CloseCause::IdleTimeout
            | CloseCause::MessageTimeout
            | CloseCause::Overflow
            | CloseCause::ProtocolError(_)
            | CloseCause::Refused(_)
            | CloseCause::HandlerPanic(_)
            | CloseCause::Evicted => CloseMode::CloseNow,
            CloseCause::NotAdmitted(_) => CloseMode::Abort,
            CloseCause::PeerGone(_) | CloseCause::WriteTimeout => CloseMode::Abort,
        }
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Local => f.write_str("closed locally"),
            CloseCause::Application(r) => write!(f, "closed locally: {r}"),
            CloseCause::Peer(None) => f.write_str("peer closed"),
            CloseCause::Peer(Some(r)) => write!(f, "peer closed: {r}"),
            CloseCause::PeerGone(e) => write!(f, "peer gone: {e}"),
            CloseCause::IdleTimeout => f.write_str("idle timeout"),
            CloseCause::MessageTimeout => f.write_str("a message did not arrive in time"),
            CloseCause::WriteTimeout => f.write_str("write timeout"),
            CloseCause::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseCause::Overflow => f.write_str("send queue overflow"),
            CloseCause::Shutdown => f.write_str("shutdown"),
            CloseCause::Refused(r) => write!(f, "refused: {r}"),
            CloseCause::NotAdmitted(r) => write!(f, "not admitted: {r}"),
            CloseCause::HandlerPanic(m) => write!(f, "handler panicked: {m}"),
            CloseCause::Evicted => f.write_str("evicted before signing in"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// Write what is queued, then close (bounded by the close deadline).
    Drain,
    /// Discard the queue, send the close frame (bounded), drop.
    CloseNow,
    /// Discard the queue and drop the connection without writing.
    Abort,
}

/// Why a send did not queue the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closing or closed; the message was not queued. Stop sending to it.
    #[error("session closed")]
    Closed,
    /// The queue was full and the policy is [`OverflowPolicy::DropNewest`](crate::OverflowPolicy::DropNewest): this message was
    /// discarded. The session stays open.
    #[error("send queue full: message dropped")]
    Dropped,
    /// The queue stayed full for the [`OverflowPolicy::Block`](crate::OverflowPolicy::Block) timeout; the message was not
    /// queued. The session stays open.
    #[error("send queue full: timed out waiting for room")]
    Timeout,
    /// The queue was full and the policy is [`OverflowPolicy::Close`](crate::OverflowPolicy::Close): the session is closing.
    #[error("send queue overflow: session closed")]
    Overflow,
    /// The codec could not encode the message; nothing was queued.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// An error a session reports to [`Handler::on_error`](crate::Handler::on_error) before it closes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The transport failed (see [`TransportError`] for what each variant means).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The codec refused the peer's input.
    #[error(transparent)]
    Codec(#[from] CodecError),
}
