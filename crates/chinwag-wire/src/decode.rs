//! Incremental decoders: [`StreamDecoder`] for byte streams and [`FramedDecoder`] for message
//! transports (WebSocket).
//!
//! Both parse by message type: each type has its own header layout (`f` is 9 bytes, `n` with an
//! empty name 12), so neither ever waits for bytes a short message does not have.

use bytes::{Bytes, BytesMut};

use crate::{DecodeError, Message, Name, ProtocolErrorCode, RequestId, VERSION, WireLimits};

/// Reserves room in `buf`, which holds the start of a message of `total` bytes (its size
/// already checked against the limits), the way chinwag's stream decoders do: at most 64 KiB
/// ahead while less than half has arrived (memory follows what the peer actually sent), and the
/// exact rest once half is there, so the message ends in one allocation of its own size (a
/// plain append would double the buffer and leave up to twice the message pinned by its
/// payload).
pub fn reserve_for_message(buf: &mut BytesMut, total: usize) {
    let Some(missing) = total.checked_sub(buf.len()).filter(|&m| m > 0) else {
        return;
    };
    if missing <= MAX_RESERVE_AHEAD {
        buf.reserve(missing);
    } else if buf.len() >= missing && buf.capacity() < total {
        let mut exact = BytesMut::with_capacity(total);
        exact.extend_from_slice(buf);
        *buf = exact;
    } else {
        buf.reserve(MAX_RESERVE_AHEAD);
    }
}

/// How far ahead the stream decoder reserves room for a payload whose header has arrived.
/// Reserving the whole declared size (up to `max_payload`) would let a peer that only *claims*
/// a large payload pin that much memory; growing in steps ties memory to bytes received.
const MAX_RESERVE_AHEAD: usize = 64 * 1024;

/// A parsed header: everything but the payload bytes.
#[derive(Debug, Clone)]
struct Header {
    kind: u8,
    id: RequestId,
    /// Byte range of the name inside the header (empty for types without a name).
    name: (usize, usize),
    wait: u32,
    load: u16,
    time: u32,
    code: u32,
    payload_len: usize,
    header_len: usize,
}

/// The outcome of looking at the start of a buffer.
enum Parsed {
    /// At least this many bytes are needed to parse the header.
    Need(usize),
    Header(Header),
}

#[inline]
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses `digits` (at most 8) as a big-endian hex number.
#[inline]
fn hex(kind: u8, field: &'static str, digits: &[u8]) -> Result<u32, DecodeError> {
    let mut v: u32 = 0;
    for &c in digits {
        let d = hex_digit(c).ok_or(DecodeError::BadHex {
            msg_type: kind as char,
            field,
            byte: c,
        })?;
        v = (v << 4) | u32::from(d);
    }
    Ok(v)
}

#[inline]
fn id_at(buf: &[u8], at: usize) -> RequestId {
    RequestId([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Parses the header at the start of `buf`, checking every size against `limits` as soon as it
/// is readable (so an over-limit size is refused before the rest of the header, let alone the
/// payload, has arrived).
fn parse_header(buf: &[u8], limits: &WireLimits) -> Result<Parsed, DecodeError> {
    let Some(&kind) = buf.first() else {
        return Ok(Parsed::Need(1));
    };
    let mut h = Header {
        kind,
        id: RequestId::default(),
        name: (0, 0),
        wait: 0,
        load: 0,
        time: 0,
        code: 0,
        payload_len: 0,
        header_len: 0,
    };
    // Offset of the 8-digit payload size, once known.
    let size_at;
    match kind {
        // "r"/"s" requestID text3 payload: 1 + 4 + 3 + name + 8
        b'r' | b's' => {
            if buf.len() < 8 {
                return Ok(Parsed::Need(8));
            }
            let n = name_len(kind, &buf[5..8], limits)?;
            h.id = id_at(buf, 1);
            h.name = (8, 8 + n);
            size_at = 8 + n;
        }
        // "n" text3 payload: 1 + 3 + name + 8
        b'n' => {
            if buf.len() < 4 {
                return Ok(Parsed::Need(4));
            }
            let n = name_len(kind, &buf[1..4], limits)?;
            h.name = (4, 4 + n);
            size_at = 4 + n;
        }
        // requestID payload: 1 + 4 + 8
        b'p' | b'R' | b'S' | b'E' => {
            if buf.len() < 5 {
                return Ok(Parsed::Need(5));
            }
            h.id = id_at(buf, 1);
            size_at = 5;
        }
        // "e" requestID wait payload: 1 + 4 + 8 + 8
        b'e' => {
            if buf.len() < 13 {
                return Ok(Parsed::Need(13));
            }
            h.id = id_at(buf, 1);
            h.wait = hex(kind, "wait", &buf[5..13])?;
            size_at = 13;
        }
        // "h" load time: exactly 13 bytes
        b'h' => {
            if buf.len() < 13 {
                return Ok(Parsed::Need(13));
            }
            h.load = hex(kind, "load", &buf[1..5])? as u16;
            h.time = hex(kind, "time", &buf[5..13])?;
            h.header_len = 13;
            return Ok(Parsed::Header(h));
        }
        // "f" code: exactly 9 bytes
        b'f' => {
            if buf.len() < 9 {
                return Ok(Parsed::Need(9));
            }
            h.code = hex(kind, "code", &buf[1..9])?;
            h.header_len = 9;
            return Ok(Parsed::Header(h));
        }
        other => return Err(DecodeError::UnknownType(other)),
    }
    let header_len = size_at + 8;
    if buf.len() < header_len {
        return Ok(Parsed::Need(header_len));
    }
    let size = hex(kind, "payload size", &buf[size_at..header_len])?;
    if size > limits.max_payload {
        return Err(DecodeError::PayloadTooLarge {
            size: u64::from(size),
            limit: u64::from(limits.max_payload),
        });
    }
    h.payload_len = size as usize;
    h.header_len = header_len;
    Ok(Parsed::Header(h))
}

fn name_len(kind: u8, digits: &[u8], limits: &WireLimits) -> Result<usize, DecodeError> {
    let n = hex(kind, "name size", digits)? as usize;
    if n > usize::from(limits.max_name_len) {
        return Err(DecodeError::NameTooLong {
            len: n,
            limit: usize::from(limits.max_name_len),
        });
    }
    Ok(n)
}

impl Header {
    /// Builds the message; `header` holds exactly the header bytes, `payload` the payload.
    fn into_message(self, header: &Bytes, payload: Bytes) -> Result<Message, DecodeError> {
        let id = self.id;
        let name = || -> Result<Name, DecodeError> {
            let b = header.slice(self.name.0..self.name.1);
            std::str::from_utf8(&b).map_err(|_| DecodeError::NameNotUtf8)?;
            Ok(Name::from_utf8_unchecked_len(b))
        };
        Ok(match self.kind {
            b'r' => Message::SingleRequest {
                id,
                op: name()?,
                payload,
            },
            b's' => Message::StreamRequest {
                id,
                op: name()?,
                payload,
            },
            b'p' => Message::StreamReqPart { id, payload },
            b'R' => Message::SingleResult { id, payload },
            b'S' => Message::StreamResult { id, payload },
            b'E' => Message::ErrorResult { id, payload },
            b'e' => Message::RetryResult {
                id,
                wait_ms: self.wait,
                payload,
            },
            b'n' => Message::Notification {
                name: name()?,
                payload,
            },
            b'h' => Message::Heartbeat {
                load: self.load,
                time: self.time,
            },
            b'f' => Message::ProtocolError {
                code: ProtocolErrorCode(self.code),
            },
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// Checks a protocol version as read from the peer (`01`, either case of hex is irrelevant for
/// digits). Anything else is [`DecodeError::UnsupportedVersion`], whose
/// [`protocol_code`](DecodeError::protocol_code) is 1 (`f00000001`).
///
/// ```
/// assert!(chinwag::wire::check_version(b"01").is_ok());
/// let err = chinwag::wire::check_version(b"09").unwrap_err();
/// assert_eq!(err.protocol_code(), chinwag::wire::ProtocolErrorCode::UNSUPPORTED);
/// ```
pub fn check_version(got: &[u8]) -> Result<(), DecodeError> {
    if got == VERSION {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedVersion {
            got: String::from_utf8_lossy(got).into_owned(),
        })
    }
}

/// Incremental, resumable decoder for byte streams (TCP, TLS, Unix sockets).
///
/// Feed it the connection's read buffer; it removes each complete message from the front and
/// leaves partial input in place, so calling it again after more bytes arrive resumes exactly
/// where it stopped. Payloads are split off the buffer without copying.
///
/// ```
/// use bytes::BytesMut;
/// use chinwag::wire::{Message, StreamDecoder};
///
/// let mut dec = StreamDecoder::new(Default::default());
/// let mut buf = BytesMut::from(&b"01ridid004echo0000"[..]);
/// assert_eq!(dec.decode(&mut buf).unwrap(), None); // version read; request incomplete
/// buf.extend_from_slice(b"0003abc");
/// match dec.decode(&mut buf).unwrap() {
///     Some(Message::SingleRequest { op, payload, .. }) => {
///         assert_eq!(op, "echo");
///         assert_eq!(&payload[..], b"abc");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    limits: WireLimits,
    expect_version: bool,
}

impl StreamDecoder {
    /// A decoder that first expects the peer's 2-byte protocol version, then messages.
    pub fn new(limits: WireLimits) -> Self {
        StreamDecoder {
            limits,
            expect_version: true,
        }
    }

    /// A decoder for a stream whose version was already read (or that carries none).
    pub fn without_version(limits: WireLimits) -> Self {
        StreamDecoder {
            limits,
            expect_version: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &WireLimits {
        &self.limits
    }

    /// Whether the peer's version is still to be read.
    pub fn awaiting_version(&self) -> bool {
        self.expect_version
    }

    /// Decodes the next message from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (and, when a payload is under way, room for part
    /// of it has been reserved — never before its size was checked against the limit, and never
    /// more than 64 KiB or the bytes already buffered ahead, whichever is more: memory follows
    /// what the peer actually sent). Once half of a message has arrived the rest is reserved
    /// exactly, so a large message never sits in a buffer much larger than itself (the
    /// doubling growth of a plain append would leave up to twice its size). `Err` means the stream is corrupt: send
    /// [`DecodeError::protocol_code`] to the peer and close; do not call again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if self.expect_version {
            if buf.len() < 2 {
                return Ok(None);
            }
            check_version(&buf[..2])?;
            let _ = buf.split_to(2);
            self.expect_version = false;
        }
        let h = match parse_header(buf, &self.limits)? {
            Parsed::Need(_) => return Ok(None),
            Parsed::Header(h) => h,
        };
        let total = h.header_len + h.payload_len;
        if buf.len() < total {
            reserve_for_message(buf, total);
            return Ok(None);
        }
        let mut msg = buf.split_to(total);
        let payload = msg.split_off(h.header_len).freeze();
        let header = msg.freeze();
        h.into_message(&header, payload).map(Some)
    }

    /// Like [`decode`](Self::decode), for when the stream has ended: leftover bytes that do not
    /// form a whole message are [`DecodeError::Truncated`].
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if let Some(m) = self.decode(buf)? {
            return Ok(Some(m));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let need = if self.expect_version {
            2
        } else {
            match parse_header(buf, &self.limits)? {
                Parsed::Need(n) => n,
                Parsed::Header(h) => h.header_len + h.payload_len,
            }
        };
        Err(DecodeError::Truncated {
            msg_type: buf.first().map_or('?', |&b| b as char),
            have: buf.len(),
            need,
        })
    }
}

/// Decoder for message transports (WebSocket), where the version, every header and every
/// payload arrive as separate frames — as `gotalk.js` and the Go library send them.
///
/// Feed it each frame's bytes in order, whether the frame was text or binary (`gotalk.js` sends
/// string payloads as text frames). A header frame whose payload size is non-zero is followed by
/// exactly one payload frame of that size; the payload is the frame itself (no copy). As a
/// tolerance, a header frame that also carries exactly its payload is accepted too.
///
/// ```
/// use bytes::Bytes;
/// use chinwag::wire::{FramedDecoder, Message};
///
/// let mut dec = FramedDecoder::new(Default::default());
/// assert_eq!(dec.decode_frame(Bytes::from_static(b"01")).unwrap(), None);
/// assert_eq!(dec.decode_frame(Bytes::from_static(b"n001a00000002")).unwrap(), None);
/// let msg = dec.decode_frame(Bytes::from_static(b"hi")).unwrap().unwrap();
/// assert!(matches!(msg, Message::Notification { ref name, .. } if name == "a"));
/// ```
#[derive(Debug, Clone)]
pub struct FramedDecoder {
    limits: WireLimits,
    state: FramedState,
}

#[derive(Debug, Clone)]
enum FramedState {
    Version,
    Header,
    Payload { header: Header, bytes: Bytes },
}

impl FramedDecoder {
    /// A decoder that first expects the version frame (`01`).
    pub fn new(limits: WireLimits) -> Self {
        FramedDecoder {
            limits,
            state: FramedState::Version,
        }
    }

    /// A decoder whose peer's version was already read.
    pub fn without_version(limits: WireLimits) -> Self {
        FramedDecoder {
            limits,
            state: FramedState::Header,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &WireLimits {
        &self.limits
    }

    /// Whether a payload frame is expected next.
    pub fn awaiting_payload(&self) -> bool {
        matches!(self.state, FramedState::Payload { .. })
    }

    /// Decodes one frame. `Ok(None)` means the frame was the version or a header whose payload
    /// frame comes next. `Err` means the peer broke the protocol: send
    /// [`DecodeError::protocol_code`] and close.
    pub fn decode_frame(&mut self, frame: Bytes) -> Result<Option<Message>, DecodeError> {
        match std::mem::replace(&mut self.state, FramedState::Header) {
            FramedState::Version => {
                if let Err(e) = check_version(&frame) {
                    self.state = FramedState::Version;
                    return Err(e);
                }
                Ok(None)
            }
            FramedState::Header => {
                let h = match parse_header(&frame, &self.limits)? {
                    Parsed::Need(need) => {
                        return Err(DecodeError::Truncated {
                            msg_type: frame.first().map_or('?', |&b| b as char),
                            have: frame.len(),
                            need,
                        });
                    }
                    Parsed::Header(h) => h,
                };
                let extra = frame.len() - h.header_len;
                if extra == 0 {
                    if h.payload_len == 0 {
                        return h.into_message(&frame, Bytes::new()).map(Some);
                    }
                    self.state = FramedState::Payload {
                        header: h,
                        bytes: frame,
                    };
                    return Ok(None);
                }
                if extra == h.payload_len {
                    let payload = frame.slice(h.header_len..);
                    return h.into_message(&frame, payload).map(Some);
                }
                Err(DecodeError::BadFrame(format!(
                    "'{}' header frame carries {extra} bytes after its {}-byte header, \
                     but declares a {}-byte payload",
                    h.kind as char, h.header_len, h.payload_len
                )))
            }
            FramedState::Payload { header, bytes } => {
                if frame.len() != header.payload_len {
                    return Err(DecodeError::BadFrame(format!(
                        "payload frame of {} bytes after a '{}' header declaring {} bytes",
                        frame.len(),
                        header.kind as char,
                        header.payload_len
                    )));
                }
                header.into_message(&bytes, frame).map(Some)
            }
        }
    }
}
