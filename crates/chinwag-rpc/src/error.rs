//! Errors of requests and the reasons connections end.

use std::fmt;
use std::time::Duration;

/// Why a request (or a stream) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer answered with an error result (gotalk `E`): its text. For unknown operations
    /// the text names the operation. Not retried: fix the request.
    #[error("remote error: {0}")]
    Remote(String),
    /// The peer kept answering "retry later" (gotalk `e`) and the retries ran out, or it asked
    /// for a wait longer than [`RpcConfig::max_retry_wait`](crate::RpcConfig::max_retry_wait).
    /// The peer is overloaded: back off.
    #[error("peer overloaded after {attempts} attempt(s): {text} (last wait {wait:?})")]
    Overloaded {
        /// Attempts made.
        attempts: u32,
        /// The last wait the peer asked for.
        wait: Duration,
        /// The peer's text.
        text: String,
    },
    /// No answer within the request timeout. The request's slot was freed; a late answer is
    /// ignored.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The connection closed before the answer came; the reason says why.
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// The value could not be turned into JSON, or the answer was not the JSON expected.
    #[error("JSON: {0}")]
    Json(String),
    /// An answer (a streamed result collected into one value) is larger than the payload limit.
    #[error("result of more than {limit} bytes")]
    TooLarge {
        /// The limit ([`WireLimits::max_payload`](chinwag_wire::WireLimits::max_payload)).
        limit: u64,
    },
    /// The request could not be queued for sending (queue full under the session's overflow
    /// policy, or the message cannot be encoded, e.g. a name over 4 095 bytes).
    #[error("send failed: {0}")]
    Send(String),
}

/// Why an RPC connection ended, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
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
    /// The connection broke, or another session-level cause (overflow, write timeout,
    /// shutdown): the text says which.
    Transport(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Clean => f.write_str("closed"),
            CloseReason::ProtocolError { code, detail } => {
                write!(f, "protocol error (code {code} sent to the peer): {detail}")
            }
            CloseReason::PeerProtocolError { code } => {
                write!(f, "the peer reported protocol error code {code}")
            }
            CloseReason::Timeout => f.write_str("idle timeout"),
            CloseReason::Transport(t) => f.write_str(t),
        }
    }
}

/// The error a handler returns: its text goes to the requestor in an `E` result.
///
/// Handlers return `Result<T, E>` with any `E: Display`; this is what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError(pub String);

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandlerError {}

impl HandlerError {
    /// An error with this text.
    pub fn new(text: impl fmt::Display) -> Self {
        HandlerError(text.to_string())
    }
}
