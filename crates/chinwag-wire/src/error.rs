//! Decode and encode errors.

use crate::ProtocolErrorCode;

/// Why bytes from a peer could not be decoded. The peer is at fault: send it
/// [`DecodeError::protocol_code`] as an `f` message and close the connection (the stream is
/// out of sync and cannot be resumed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The peer's protocol version is not `01`.
    #[error("unsupported protocol version {got:?} (expected \"01\")")]
    UnsupportedVersion {
        /// What the peer sent instead (lossy text).
        got: String,
    },
    /// The first byte of a message is not one of `rspRSEenhf`.
    #[error("unknown message type byte 0x{0:02x}")]
    UnknownType(u8),
    /// A hexadecimal field holds something other than `0-9a-fA-F`.
    #[error("invalid hex digit 0x{byte:02x} in the {field} field of a '{msg_type}' message")]
    BadHex {
        /// The message type byte, as a char.
        msg_type: char,
        /// Which field ("name size", "payload size", "wait", "load", "time", "code").
        field: &'static str,
        /// The offending byte.
        byte: u8,
    },
    /// An operation or notification name is longer than [`crate::WireLimits::max_name_len`].
    #[error("name of {len} bytes exceeds the limit of {limit} bytes")]
    NameTooLong {
        /// The declared length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An operation or notification name is not valid UTF-8.
    #[error("name is not valid UTF-8")]
    NameNotUtf8,
    /// A payload is larger than [`crate::WireLimits::max_payload`]. Detected from the header
    /// alone: nothing was allocated for it.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The declared size.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The input ended in the middle of a message (end of stream, or a WebSocket header frame
    /// shorter than its header).
    #[error("truncated '{msg_type}' message: {have} of at least {need} bytes")]
    Truncated {
        /// The message type byte, as a char (or `?` if not even that arrived).
        msg_type: char,
        /// Bytes present.
        have: usize,
        /// Bytes needed at least.
        need: usize,
    },
    /// Framed mode (WebSocket): a frame did not have the length the protocol requires (a header
    /// frame with trailing bytes, or a payload frame whose length differs from the size its
    /// header declared).
    #[error("framed mode: {0}")]
    BadFrame(String),
}

impl DecodeError {
    /// The protocol error code to send the peer before closing: 1 for an unsupported version,
    /// 2 (invalid message) for everything else.
    pub fn protocol_code(&self) -> ProtocolErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } => ProtocolErrorCode::UNSUPPORTED,
            _ => ProtocolErrorCode::INVALID_MSG,
        }
    }
}

/// Why a message could not be encoded. This is local misuse, not a peer fault: fix the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A payload longer than the wire's 4 GiB - 1 bytes.
    #[error("payload of {0} bytes does not fit the wire's 32-bit size field")]
    PayloadTooLarge(usize),
}

/// Errors of the `tokio_util` codec: a decode error, an encode error, or an I/O error from the
/// underlying stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer sent bytes that are not valid gotalk; see [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message could not be encoded; see [`EncodeError`].
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
