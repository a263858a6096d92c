//! The ten gotalk v1 message types and their small value types.

use std::fmt;

use bytes::Bytes;

/// A request identifier: 4 opaque bytes chosen by the requestor and echoed verbatim by the
/// responder.
///
/// The Go library writes a little-endian `u32` counter as 4 raw bytes; `gotalk.js` writes 4
/// base-36 ASCII characters (and `!` plus 3 characters for stream requests). See
/// [`crate::GoIdGen`] and [`crate::JsIdGen`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RequestId(pub [u8; 4]);

impl RequestId {
    /// The 4 bytes as written on the wire.
    pub const fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl From<[u8; 4]> for RequestId {
    fn from(b: [u8; 4]) -> Self {
        RequestId(b)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic()) {
            // Printable ids (gotalk.js style) read best as text.
            write!(
                f,
                "RequestId({:?})",
                std::str::from_utf8(&self.0).unwrap_or("")
            )
        } else {
            write!(
                f,
                "RequestId({:02x}{:02x}{:02x}{:02x})",
                self.0[0], self.0[1], self.0[2], self.0[3]
            )
        }
    }
}

/// An operation or notification name: UTF-8 text of at most [`Name::MAX_LEN`] bytes (the wire
/// field is three hex digits), shared zero-copy with the buffer it was decoded from.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Name(Bytes);

/// A name given to [`Name::new`] was longer than the wire allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "name of {len} bytes is longer than the wire limit of {} bytes",
    Name::MAX_LEN
)]
pub struct NameTooLong {
    /// The length of the rejected name.
    pub len: usize,
}

impl Name {
    /// The longest name the wire can carry (`text3`: three hex digits).
    pub const MAX_LEN: usize = 0xfff;

    /// A name from a string; fails if it is longer than [`Name::MAX_LEN`] bytes.
    pub fn new(s: impl Into<String>) -> Result<Self, NameTooLong> {
        let s: String = s.into();
        if s.len() > Self::MAX_LEN {
            return Err(NameTooLong { len: s.len() });
        }
        Ok(Name(Bytes::from(s)))
    }

    /// A name from a `'static` string, without copying.
    ///
    /// # Panics
    ///
    /// If `s` is longer than [`Name::MAX_LEN`] bytes (a programming error in a constant).
    pub const fn from_static(s: &'static str) -> Self {
        assert!(s.len() <= Self::MAX_LEN, "name longer than 4095 bytes");
        Name(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes already known to be valid UTF-8 of at most `MAX_LEN` bytes.
    pub(crate) fn from_utf8_unchecked_len(b: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&b).is_ok() && b.len() <= Self::MAX_LEN);
        Name(b)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Every constructor guarantees UTF-8 (decoding validates it), so this cannot fail;
        // fall back to "" rather than panic should that invariant ever break.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the name is empty (allowed on the wire).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The code carried by a [`Message::ProtocolError`] (`f` message).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolErrorCode(pub u32);

impl ProtocolErrorCode {
    /// 0: abnormal (unspecified) error.
    pub const ABNORMAL: Self = ProtocolErrorCode(0);
    /// 1: unsupported protocol version.
    pub const UNSUPPORTED: Self = ProtocolErrorCode(1);
    /// 2: invalid message (malformed, unknown type, over a limit).
    pub const INVALID_MSG: Self = ProtocolErrorCode(2);
    /// 3: timeout (the peer was silent for longer than the read timeout).
    pub const TIMEOUT: Self = ProtocolErrorCode(3);

    /// A short description of a known code.
    pub fn description(self) -> &'static str {
        match self.0 {
            0 => "abnormal error",
            1 => "unsupported protocol",
            2 => "invalid message",
            3 => "timeout",
            _ => "unknown protocol error code",
        }
    }
}

impl fmt::Debug for ProtocolErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolErrorCode({} {})", self.0, self.description())
    }
}

impl fmt::Display for ProtocolErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.description())
    }
}

/// One gotalk v1 message. Payloads are [`Bytes`]: decoding shares the input buffer rather than
/// copying, and a message encoded for many peers shares its payload.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// `r`: a request expecting one result.
    SingleRequest {
        /// Chosen by the requestor, echoed by the responder.
        id: RequestId,
        /// The operation to run.
        op: Name,
        /// Request body.
        payload: Bytes,
    },
    /// `s`: the first chunk of a streaming request; [`Message::StreamReqPart`]s follow.
    StreamRequest {
        /// Chosen by the requestor, echoed by the responder.
        id: RequestId,
        /// The operation to run.
        op: Name,
        /// The first chunk.
        payload: Bytes,
    },
    /// `p`: a further chunk of a streaming request; an empty payload ends the request stream.
    StreamReqPart {
        /// The stream request's id.
        id: RequestId,
        /// The chunk; empty = end of stream.
        payload: Bytes,
    },
    /// `R`: the single result of a request.
    SingleResult {
        /// The request's id.
        id: RequestId,
        /// Result body.
        payload: Bytes,
    },
    /// `S`: one chunk of a streamed result; an empty payload ends the result stream.
    StreamResult {
        /// The request's id.
        id: RequestId,
        /// The chunk; empty = end of stream.
        payload: Bytes,
    },
    /// `E`: the request failed; the payload is UTF-8 error text (not JSON).
    ErrorResult {
        /// The request's id.
        id: RequestId,
        /// UTF-8 error text.
        payload: Bytes,
    },
    /// `e`: the responder is busy; the requestor may retry after `wait_ms` milliseconds.
    RetryResult {
        /// The request's id.
        id: RequestId,
        /// Milliseconds to wait before retrying.
        wait_ms: u32,
        /// UTF-8 text explaining why.
        payload: Bytes,
    },
    /// `n`: a one-way message; never answered.
    Notification {
        /// The notification's name.
        name: Name,
        /// Its body.
        payload: Bytes,
    },
    /// `h`: a heartbeat with the sender's load and clock.
    Heartbeat {
        /// 0 = idle .. 0xffff = fully loaded.
        load: u16,
        /// The sender's UTC UNIX time in seconds.
        time: u32,
    },
    /// `f`: a protocol error; the sender closes the connection after sending it.
    ProtocolError {
        /// What went wrong.
        code: ProtocolErrorCode,
    },
}

impl Message {
    /// The type byte that starts this message on the wire (`r`, `s`, `p`, `R`, `S`, `E`, `e`,
    /// `n`, `h` or `f`).
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::SingleRequest { .. } => b'r',
            Message::StreamRequest { .. } => b's',
            Message::StreamReqPart { .. } => b'p',
            Message::SingleResult { .. } => b'R',
            Message::StreamResult { .. } => b'S',
            Message::ErrorResult { .. } => b'E',
            Message::RetryResult { .. } => b'e',
            Message::Notification { .. } => b'n',
            Message::Heartbeat { .. } => b'h',
            Message::ProtocolError { .. } => b'f',
        }
    }

    /// The request id, for the message types that carry one.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Message::SingleRequest { id, .. }
            | Message::StreamRequest { id, .. }
            | Message::StreamReqPart { id, .. }
            | Message::SingleResult { id, .. }
            | Message::StreamResult { id, .. }
            | Message::ErrorResult { id, .. }
            | Message::RetryResult { id, .. } => Some(*id),
            Message::Notification { .. }
            | Message::Heartbeat { .. }
            | Message::ProtocolError { .. } => None,
        }
    }

    /// The payload, for the message types that carry one (`h` and `f` do not).
    pub fn payload(&self) -> Option<&Bytes> {
        match self {
            Message::SingleRequest { payload, .. }
            | Message::StreamRequest { payload, .. }
            | Message::StreamReqPart { payload, .. }
            | Message::SingleResult { payload, .. }
            | Message::StreamResult { payload, .. }
            | Message::ErrorResult { payload, .. }
            | Message::RetryResult { payload, .. }
            | Message::Notification { payload, .. } => Some(payload),
            Message::Heartbeat { .. } | Message::ProtocolError { .. } => None,
        }
    }

    /// The operation or notification name, for `r`, `s` and `n`.
    pub fn name(&self) -> Option<&Name> {
        match self {
            Message::SingleRequest { op, .. } | Message::StreamRequest { op, .. } => Some(op),
            Message::Notification { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(match self {
            Message::SingleRequest { .. } => "SingleRequest",
            Message::StreamRequest { .. } => "StreamRequest",
            Message::StreamReqPart { .. } => "StreamReqPart",
            Message::SingleResult { .. } => "SingleResult",
            Message::StreamResult { .. } => "StreamResult",
            Message::ErrorResult { .. } => "ErrorResult",
            Message::RetryResult { .. } => "RetryResult",
            Message::Notification { .. } => "Notification",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::ProtocolError { .. } => "ProtocolError",
        });
        if let Some(id) = self.request_id() {
            d.field("id", &id);
        }
        if let Some(n) = self.name() {
            d.field("name", n);
        }
        match self {
            Message::RetryResult { wait_ms, .. } => {
                d.field("wait_ms", wait_ms);
            }
            Message::Heartbeat { load, time } => {
                d.field("load", load).field("time", time);
            }
            Message::ProtocolError { code } => {
                d.field("code", code);
            }
            _ => {}
        }
        if let Some(p) = self.payload() {
            if p.len() <= 64 {
                d.field("payload", &String::from_utf8_lossy(p));
            } else {
                d.field("payload_len", &p.len());
            }
        }
        d.finish()
    }
}
