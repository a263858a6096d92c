//! Errors of requests ([`RpcError`]), why connections end ([`Disconnect`]), and what handlers
//! return ([`HandlerError`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chinwag_session::{CloseCause, CodecError, SendError};
use chinwag_wire::NameTooLong;

/// Why a request (or a stream) failed. Cheap to clone (sources are shared).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer answered with an error result (gotalk `E`). For unknown operations the message
    /// names the operation. Not retried: fix the request.
    #[error("remote error: {message}")]
    Remote {
        /// The peer's error text.
        message: String,
    },
    /// The peer kept answering "retry later" (gotalk `e`) and the retries ran out, or it asked
    /// for a wait longer than [`RpcConfig::max_retry_wait`](crate::RpcConfig::max_retry_wait).
    /// The peer is overloaded: back off.
    #[error("peer overloaded after {attempts} attempt(s): {message} (last wait {wait:?})")]
    Overloaded {
        /// Attempts made.
        attempts: u32,
        /// The last wait the peer asked for.
        wait: Duration,
        /// The peer's text.
        message: String,
    },
    /// No answer within the request timeout. The request's slot was freed; a late answer is
    /// ignored.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The connection closed before the answer came; the [`Disconnect`] says why.
    #[error("connection closed: {0}")]
    Closed(Disconnect),
    /// The value could not be turned into JSON, or the answer was not the JSON expected.
    #[error("JSON: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// An answer (a streamed result collected into one value) is larger than the payload limit.
    #[error("result of more than {limit} bytes")]
    TooLarge {
        /// The limit ([`WireLimits::max_payload`](chinwag_wire::WireLimits::max_payload)).
        limit: u64,
    },
    /// An operation or notification name longer than the wire allows.
    #[error(transparent)]
    Name(#[from] NameTooLong),
    /// The message could not be encoded (e.g. a payload over the wire's 32-bit size).
    #[error("cannot encode the message: {0}")]
    Encode(#[source] Arc<CodecError>),
    /// The send queue did not take the message under its overflow policy (full and dropping,
    /// or full for the whole `Block` timeout). The connection stays open.
    #[error("the send queue did not take the message: {0}")]
    Queue(#[source] Arc<SendError>),
    /// The stream request was ended already; nothing more can be written to it.
    #[error("the stream request was already ended")]
    StreamEnded,
}

impl RpcError {
    /// Whether the peer answered with an error result.
    pub fn is_remote(&self) -> bool {
        matches!(self, RpcError::Remote { .. })
    }

    /// Whether the connection is gone (retrying on it is pointless).
    pub fn is_closed(&self) -> bool {
        matches!(self, RpcError::Closed(_))
    }

    pub(crate) fn json(e: serde_json::Error) -> Self {
        RpcError::Json(Arc::new(e))
    }
}

/// Why an RPC connection ended, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// Closed by us ([`Peer::close`](crate::Peer::close)) or, cleanly, by the peer.
    Clean,
    /// The peer broke the protocol; we sent it gotalk `f` with `code` and closed.
    ProtocolError {
        /// The gotalk protocol error code we sent (1 unsupported version, 2 invalid message).
        code: u32,
        /// What was wrong.
        detail: String,
    },
    /// The peer sent us gotalk `f` with this code (0 abnormal, 1 unsupported protocol,
    /// 2 invalid message, 3 timeout) and closed.
    PeerProtocolError {
        /// The code the peer sent.
        code: u32,
    },
    /// Nothing arrived from the peer within the idle timeout (we sent `f00000003`).
    Timeout,
    /// The peer stopped reading: an answer we owed it could not be queued, or its request
    /// bytes stayed over the in-flight budget, for
    /// [`RpcConfig::reply_timeout`](crate::RpcConfig::reply_timeout).
    NotReading,
    /// Another session-level end (the connection broke, a write timed out, shutdown, ...).
    Session(CloseCause),
    /// The connection is closing; why is not known yet.
    Closing,
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Clean => f.write_str("closed"),
            Disconnect::ProtocolError { code, detail } => {
                write!(f, "protocol error (code {code} sent to the peer): {detail}")
            }
            Disconnect::PeerProtocolError { code } => {
                write!(f, "the peer reported protocol error code {code}")
            }
            Disconnect::Timeout => f.write_str("idle timeout"),
            Disconnect::NotReading => f.write_str("the peer stopped reading"),
            Disconnect::Session(cause) => write!(f, "{cause}"),
            Disconnect::Closing => f.write_str("the connection is closing"),
        }
    }
}

/// The error a handler returns: its text goes to the requestor in an `E` result.
///
/// It converts from `&str`, `String` and any `std::error::Error + Send + Sync`, so `?` works in
/// handlers that return `Result<T, HandlerError>`:
///
/// ```
/// use chinwag::rpc::HandlerError;
///
/// fn parse(s: &str) -> Result<u16, HandlerError> {
///     if s.is_empty() {
///         return Err("empty input".into());
///     }
///     Ok(s.parse::<u16>()?) // a ParseIntError becomes its text
/// }
/// assert_eq!(parse("").unwrap_err().message(), "empty input");
/// assert_eq!(parse("70000").unwrap_err().message(), "number too large to fit in target type");
/// ```
///
/// (It deliberately does not implement `std::error::Error` itself: that is what lets it convert
/// from every error type.) Handlers may also return any other `E: Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with this text.
    pub fn new(text: impl fmt::Display) -> Self {
        HandlerError {
            message: text.to_string(),
        }
    }

    /// The text the requestor gets.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandlerError").field(&self.message).finish()
    }
}

impl<E> From<E> for HandlerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn from(e: E) -> Self {
        HandlerError::new(e.into())
    }
}
