//! Session codecs: bytes and frames to application messages, and back.
//!
//! The contract follows `tokio_util::codec::{Decoder, Encoder}` — `Ok(None)` means "need more
//! bytes", `Err` means "the input is corrupt, close the connection" — with two changes that the
//! transport seam asks for:
//!
//! * **Decoding is frame-aware.** On a [`Framing::Stream`] transport (TCP, TLS, Unix) the session
//!   keeps a byte buffer and calls [`Decoder::decode`] until it returns `Ok(None)`, exactly like
//!   tokio-util. On a [`Framing::Message`] transport (WebSocket, UDP, pipe) it calls
//!   [`Decoder::decode_frame`] once per frame, so codecs can use the frame boundaries (the gotalk
//!   wire protocol sends header and payload as separate WebSocket messages).
//! * **Encoding takes `&self` and returns shared frames** ([`Encoded`]). Encoding runs in the
//!   sender's task, not in the session's writer, so a broadcast encodes once and hands the same
//!   [`Bytes`] to every session ([`Session::send_encoded`](crate::Session::send_encoded)).
//!   Encoders that need scratch state use interior mutability.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chinwag_transport::{Frame, Framing};
use chinwag_wire::{FramedDecoder, Message, ProtocolErrorCode, StreamDecoder, WireLimits};

/// Why a codec refused its input or an outgoing message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer sent something the codec cannot decode. The session closes with
    /// [`CloseCause::ProtocolError`](crate::CloseCause::ProtocolError); the peer
    /// is at fault.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A message (inbound or outbound) is larger than the codec's limit. Inbound: the session
    /// closes as a protocol error. Outbound: the message was not queued; send smaller messages
    /// or raise the limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size declared or attempted.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The gotalk wire codec refused the input (with the protocol error code the peer should
    /// get, see [`chinwag_wire::DecodeError::protocol_code`]).
    #[error(transparent)]
    Wire(#[from] chinwag_wire::DecodeError),
    /// The gotalk wire codec could not encode a message (e.g. its payload is too large for the
    /// wire's 32-bit size). The message was not queued.
    #[error(transparent)]
    WireEncode(#[from] chinwag_wire::EncodeError),
}

/// One encoded message: the frames it is written as, shared and cheap to clone.
///
/// Most codecs produce one frame per message; the gotalk wire codec produces a header frame and
/// a payload frame (separate WebSocket messages on message transports; on byte streams the two
/// go out in one vectored write without copying the payload). The outbound queue counts an
/// `Encoded` as **one message** of [`len`](Self::len) bytes, and never splits it.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    frames: Frames,
}

#[derive(Clone, PartialEq, Eq)]
enum Frames {
    One(Frame),
    Two(Frame, Frame),
    Many(Box<[Frame]>),
}

impl Encoded {
    /// A message that is one frame.
    pub fn frame(frame: Frame) -> Self {
        Encoded {
            frames: Frames::One(frame),
        }
    }

    /// A binary message of one frame.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::frame(Frame::Binary(bytes.into()))
    }

    /// A text message of one frame. The caller guarantees UTF-8 (WebSocket peers check it).
    pub fn text(s: impl Into<String>) -> Self {
        Self::frame(Frame::Text(Bytes::from(s.into())))
    }

    /// A message of two frames written back to back (e.g. a header and its payload).
    pub fn pair(first: Frame, second: Frame) -> Self {
        Encoded {
            frames: Frames::Two(first, second),
        }
    }

    /// A message of any number of frames, written back to back and never interleaved with other
    /// messages. An empty list is a message of zero bytes that writes nothing.
    pub fn frames(frames: Vec<Frame>) -> Self {
        let mut it = frames.into_iter();
        match (it.next(), it.next(), it.len()) {
            (Some(a), None, _) => Self::frame(a),
            (Some(a), Some(b), 0) => Self::pair(a, b),
            (a, b, _) => {
                let all: Vec<Frame> = a.into_iter().chain(b).chain(it).collect();
                Encoded {
                    frames: Frames::Many(all.into_boxed_slice()),
                }
            }
        }
    }

    /// Iterates over the frames in write order.
    pub fn iter(&self) -> impl Iterator<Item = &Frame> {
        let (a, b, c): (Option<&Frame>, Option<&Frame>, &[Frame]) = match &self.frames {
            Frames::One(f) => (Some(f), None, &[]),
            Frames::Two(x, y) => (Some(x), Some(y), &[]),
            Frames::Many(v) => (None, None, v),
        };
        a.into_iter().chain(b).chain(c.iter())
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        match &self.frames {
            Frames::One(_) => 1,
            Frames::Two(..) => 2,
            Frames::Many(v) => v.len(),
        }
    }

    /// Total payload bytes of all frames (what the outbound queue's byte limit counts).
    pub fn len(&self) -> usize {
        self.iter().map(Frame::len).sum()
    }

    /// Whether the message has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn into_frames(self, mut f: impl FnMut(Frame)) {
        match self.frames {
            Frames::One(a) => f(a),
            Frames::Two(a, b) => {
                f(a);
                f(b);
            }
            Frames::Many(v) => v.into_vec().into_iter().for_each(f),
        }
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Turns what a transport delivers into application messages. One decoder per session; it
/// may keep state between calls.
pub trait Decoder: Send + 'static {
    /// The decoded message.
    type Item: Send + 'static;

    /// Byte streams: decodes the next message from the front of `src`, like
    /// `tokio_util::codec::Decoder::decode`. `Ok(None)` = need more bytes (leave the partial
    /// input in `src`). Check lengths read from the input against a limit *before* reserving
    /// memory for them.
    ///
    /// # Errors
    ///
    /// The input is corrupt; the session closes as a protocol error.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError>;

    /// Byte streams: the peer ended the stream. The default decodes what is left and calls a
    /// non-empty remainder an error (a truncated message).
    ///
    /// # Errors
    ///
    /// A truncated or corrupt message.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Protocol(format!(
                "stream ended inside a message ({} bytes left over)",
                src.len()
            ))),
        }
    }

    /// Message transports: decodes one frame. `Ok(None)` = the frame was part of a message
    /// whose rest comes in later frames (or carried no message at all). The default treats the
    /// frame as a complete byte buffer: it must decode to exactly one message with nothing left.
    ///
    /// # Errors
    ///
    /// The frame is corrupt; the session closes as a protocol error.
    fn decode_frame(&mut self, frame: Frame) -> Result<Option<Self::Item>, CodecError> {
        let mut buf = BytesMut::from(frame.into_payload());
        let item = self.decode(&mut buf)?;
        match item {
            Some(item) if buf.is_empty() => Ok(Some(item)),
            Some(_) => Err(CodecError::Protocol(format!(
                "{} bytes after the message in one frame",
                buf.len()
            ))),
            None => Err(CodecError::Protocol(
                "frame does not hold a whole message".into(),
            )),
        }
    }
}

/// A session codec: makes a [`Decoder`] per session and encodes outgoing messages.
///
/// Implement it for your own formats; [`WireCodec`], [`LengthDelimited`] and [`FrameCodec`]
/// are provided. A codec is shared by every session of a server or client (`Arc`), so it must
/// be `Send + Sync`.
pub trait Codec: Send + Sync + 'static {
    /// Messages the peer sends us.
    type In: Send + 'static;
    /// Messages we send the peer.
    type Out: Send + 'static;
    /// The per-session decoder.
    type Decoder: Decoder<Item = Self::In>;

    /// A fresh decoder for a session on a transport with `framing`.
    fn decoder(&self, framing: Framing) -> Self::Decoder;

    /// Encodes `item` for a transport with `framing`.
    ///
    /// # Errors
    ///
    /// The message cannot be encoded (too large, invalid); it is not sent.
    fn encode(&self, item: &Self::Out, framing: Framing) -> Result<Encoded, CodecError>;

    /// What the session writes first, before any message (gotalk's version `01`). Default:
    /// nothing.
    fn preamble(&self, framing: Framing) -> Option<Encoded> {
        let _ = framing;
        None
    }

    /// The last message the session writes when it closes the connection for `why` (after
    /// discarding its queue, before closing the transport): gotalk's `f` with the code the
    /// peer expects. Default: nothing.
    fn farewell(&self, why: Farewell<'_>, framing: Framing) -> Option<Encoded> {
        let _ = (why, framing);
        None
    }

    /// A codec-level heartbeat the session sends when nothing was written for
    /// [`SessionConfig::heartbeat_interval`](crate::SessionConfig::heartbeat_interval).
    /// Default: none (WebSocket engines ping on their own).
    fn heartbeat(&self, framing: Framing) -> Option<Encoded> {
        let _ = framing;
        None
    }
}

/// Why a session closes the connection itself, for [`Codec::farewell`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Farewell<'a> {
    /// The peer's input was refused by the decoder (or was over the decode buffer's limit).
    Invalid(&'a CodecError),
    /// The peer was silent for the idle timeout, or a message it started did not arrive in
    /// time.
    Timeout,
}

// ---------------------------------------------------------------------------------------------
// gotalk wire codec
// ---------------------------------------------------------------------------------------------

/// The gotalk v1 wire protocol ([`chinwag_wire`]): streamed layout on byte streams, framed
/// layout (version, each header and each payload as separate frames) on message transports.
///
/// Both sides send the version `01` first ([`Codec::preamble`]) and expect the peer's. The
/// heartbeat is a gotalk `h` message with load 0 and the current UNIX time.
#[derive(Debug, Clone, Default)]
pub struct WireCodec {
    limits: WireLimits,
}

impl WireCodec {
    /// A codec enforcing `limits` on what peers send.
    pub fn new(limits: WireLimits) -> Self {
        WireCodec { limits }
    }
}

/// The decoder of [`WireCodec`].
#[derive(Debug)]
pub enum WireDecoder {
    /// Byte streams.
    Stream(StreamDecoder),
    /// Message transports.
    Framed(FramedDecoder),
}

impl Decoder for WireDecoder {
    type Item = Message;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match self {
            WireDecoder::Stream(d) => Ok(d.decode(src)?),
            // A message transport fed as bytes (not used by sessions): one frame per call.
            WireDecoder::Framed(d) => {
                if src.is_empty() {
                    return Ok(None);
                }
                Ok(d.decode_frame(src.split().freeze())?)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match self {
            WireDecoder::Stream(d) => Ok(d.decode_eof(src)?),
            WireDecoder::Framed(_) => self.decode(src),
        }
    }

    fn decode_frame(&mut self, frame: Frame) -> Result<Option<Message>, CodecError> {
        match self {
            WireDecoder::Framed(d) => Ok(d.decode_frame(frame.into_payload())?),
            WireDecoder::Stream(_) => {
                // Not used by sessions (byte streams go through `decode`); decode a whole frame.
                let mut buf = BytesMut::from(frame.into_payload());
                self.decode(&mut buf)
            }
        }
    }
}

fn unix_time() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Codec for WireCodec {
    type In = Message;
    type Out = Message;
    type Decoder = WireDecoder;

    fn decoder(&self, framing: Framing) -> WireDecoder {
        match framing {
            Framing::Stream => WireDecoder::Stream(StreamDecoder::new(self.limits)),
            Framing::Message => WireDecoder::Framed(FramedDecoder::new(self.limits)),
        }
    }

    /// Header and payload as two frames on both framings: on a byte stream they leave in one
    /// vectored write, and the payload is never copied.
    fn encode(&self, item: &Message, _framing: Framing) -> Result<Encoded, CodecError> {
        // One exact allocation for the header; the payload is shared, never copied.
        let mut header = Vec::with_capacity(item.header_len());
        item.encode_header(&mut header)?;
        let header = Bytes::from(header);
        let payload = item.payload().filter(|p| !p.is_empty()).cloned();
        Ok(match payload {
            Some(p) => Encoded::pair(Frame::Binary(header), Frame::Binary(p)),
            None => Encoded::frame(Frame::Binary(header)),
        })
    }

    fn preamble(&self, _framing: Framing) -> Option<Encoded> {
        Some(Encoded::binary(Bytes::from_static(chinwag_wire::VERSION)))
    }

    /// `f` with the code gotalk peers expect: 1 for an unsupported version, 2 for any other
    /// invalid input, 3 for a timeout.
    fn farewell(&self, why: Farewell<'_>, framing: Framing) -> Option<Encoded> {
        let code = match why {
            Farewell::Invalid(CodecError::Wire(d)) => d.protocol_code(),
            Farewell::Invalid(_) => ProtocolErrorCode::INVALID_MSG,
            Farewell::Timeout => ProtocolErrorCode::TIMEOUT,
        };
        self.encode(&Message::ProtocolError { code }, framing).ok()
    }

    fn heartbeat(&self, framing: Framing) -> Option<Encoded> {
        self.encode(
            &Message::Heartbeat {
                load: 0,
                time: unix_time(),
            },
            framing,
        )
        .ok()
    }
}

// ---------------------------------------------------------------------------------------------
// u32 big-endian length-delimited
// ---------------------------------------------------------------------------------------------

/// Messages prefixed by their length as a big-endian `u32` (tok's TCP framing).
///
/// On byte streams the prefix delimits messages; on message transports every frame must be
/// exactly one prefixed message (so the same bytes work on both). Items are [`Bytes`] (the
/// payload without the prefix). The length is checked against
/// [`max_frame_len`](Self::max_frame_len) **before** any memory is reserved; a larger claim is
/// a protocol error.
#[derive(Debug, Clone)]
pub struct LengthDelimited {
    max_frame_len: usize,
}

impl LengthDelimited {
    /// Default largest payload: 8 MiB (tokio-util's `LengthDelimitedCodec` default).
    pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

    /// A codec accepting payloads up to `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        LengthDelimited {
            max_frame_len: max_frame_len.min(u32::MAX as usize),
        }
    }

    /// The largest payload accepted or sent, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Default for LengthDelimited {
    fn default() -> Self {
        LengthDelimited::new(Self::DEFAULT_MAX_FRAME_LEN)
    }
}

/// The decoder of [`LengthDelimited`].
#[derive(Debug)]
pub struct LengthDelimitedDecoder {
    max: usize,
}

impl Decoder for LengthDelimitedDecoder {
    type Item = Bytes;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(CodecError::TooLarge {
                size: len as u64,
                limit: self.max as u64,
            });
        }
        if src.len() < 4 + len {
            chinwag_wire::reserve_for_message(src, 4 + len);
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Codec for LengthDelimited {
    type In = Bytes;
    type Out = Bytes;
    type Decoder = LengthDelimitedDecoder;

    fn decoder(&self, _framing: Framing) -> LengthDelimitedDecoder {
        LengthDelimitedDecoder {
            max: self.max_frame_len,
        }
    }

    /// Byte streams: a 4-byte prefix frame and the payload frame (no copy). Message
    /// transports: one frame holding prefix and payload.
    fn encode(&self, item: &Bytes, framing: Framing) -> Result<Encoded, CodecError> {
        if item.len() > self.max_frame_len {
            return Err(CodecError::TooLarge {
                size: item.len() as u64,
                limit: self.max_frame_len as u64,
            });
        }
        let prefix = (item.len() as u32).to_be_bytes();
        Ok(match framing {
            Framing::Stream if item.len() > 64 => Encoded::pair(
                Frame::Binary(Bytes::copy_from_slice(&prefix)),
                Frame::Binary(item.clone()),
            ),
            // Small messages: one copy is cheaper than a second frame.
            _ => {
                let mut b = BytesMut::with_capacity(4 + item.len());
                b.put_slice(&prefix);
                b.put_slice(item);
                Encoded::binary(b.freeze())
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// one message per frame
// ---------------------------------------------------------------------------------------------

/// One message per transport frame, text or binary kept as sent: the natural codec for
/// WebSocket applications. Items are [`Frame`]s.
///
/// On a byte stream there are no message boundaries: each chunk the transport reads is
/// delivered as one `Frame::Binary` (useful for proxies and raw protocols).
#[derive(Debug, Clone, Default)]
pub struct FrameCodec;

/// The decoder of [`FrameCodec`].
#[derive(Debug)]
pub struct FrameDecoder;

impl Decoder for FrameDecoder {
    type Item = Frame;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.is_empty() {
            return Ok(None);
        }
        Ok(Some(Frame::Binary(src.split().freeze())))
    }

    fn decode_frame(&mut self, frame: Frame) -> Result<Option<Frame>, CodecError> {
        Ok(Some(frame))
    }
}

impl Codec for FrameCodec {
    type In = Frame;
    type Out = Frame;
    type Decoder = FrameDecoder;

    fn decoder(&self, _framing: Framing) -> FrameDecoder {
        FrameDecoder
    }

    fn encode(&self, item: &Frame, _framing: Framing) -> Result<Encoded, CodecError> {
        Ok(Encoded::frame(item.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_delimited_checks_length_before_reserving() {
        let mut d = LengthDelimited::new(10).decoder(Framing::Stream);
        let mut at = BytesMut::from(&[0, 0, 0, 10][..]);
        assert!(d.decode(&mut at).unwrap().is_none());
        at.extend_from_slice(&[7; 10]);
        assert_eq!(d.decode(&mut at).unwrap().unwrap().len(), 10);
        let mut over = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            d.decode(&mut over),
            Err(CodecError::TooLarge {
                size: 4_294_967_295,
                limit: 10
            })
        ));
        assert!(over.capacity() < 1024);
        let mut over_by_one = BytesMut::from(&[0, 0, 0, 11][..]);
        assert!(matches!(
            d.decode(&mut over_by_one),
            Err(CodecError::TooLarge { size: 11, .. })
        ));
    }

    #[test]
    fn length_delimited_round_trip_both_framings() {
        let c = LengthDelimited::default();
        for framing in [Framing::Stream, Framing::Message] {
            for len in [0usize, 1, 64, 65, 1000] {
                let item = Bytes::from(vec![3u8; len]);
                let enc = c.encode(&item, framing).unwrap();
                assert_eq!(enc.len(), 4 + len);
                let mut d = c.decoder(framing);
                let got = match framing {
                    Framing::Stream => {
                        let mut buf = BytesMut::new();
                        for f in enc.iter() {
                            buf.extend_from_slice(f.payload());
                        }
                        d.decode(&mut buf).unwrap()
                    }
                    Framing::Message => {
                        assert_eq!(enc.frame_count(), 1);
                        d.decode_frame(enc.iter().next().unwrap().clone()).unwrap()
                    }
                };
                assert_eq!(got.unwrap(), item);
            }
        }
        assert!(matches!(
            LengthDelimited::new(3).encode(&Bytes::from_static(b"four"), Framing::Stream),
            Err(CodecError::TooLarge { size: 4, limit: 3 })
        ));
    }

    #[test]
    fn length_delimited_frame_must_hold_exactly_one_message() {
        let mut d = LengthDelimited::default().decoder(Framing::Message);
        assert!(
            d.decode_frame(Frame::Binary(Bytes::from_static(&[0, 0, 0, 2, 1])))
                .is_err()
        );
        assert!(
            d.decode_frame(Frame::Binary(Bytes::from_static(&[0, 0, 0, 1, 1, 9])))
                .is_err()
        );
    }

    #[test]
    fn encoded_frames_keep_order() {
        let e = Encoded::frames(vec![
            Frame::Binary(Bytes::from_static(b"a")),
            Frame::Binary(Bytes::from_static(b"bb")),
            Frame::Text(Bytes::from_static(b"ccc")),
        ]);
        assert_eq!(e.frame_count(), 3);
        assert_eq!(e.len(), 6);
        let mut out = Vec::new();
        e.into_frames(|f| out.push(f.len()));
        assert_eq!(out, [1, 2, 3]);
        assert!(Encoded::frames(Vec::new()).is_empty());
    }

    #[test]
    fn wire_codec_framed_and_streamed() {
        let c = WireCodec::default();
        let msg = Message::Notification {
            name: chinwag_wire::Name::from_static("hi"),
            payload: Bytes::from_static(b"there"),
        };
        let enc = c.encode(&msg, Framing::Message).unwrap();
        assert_eq!(enc.frame_count(), 2);
        let mut d = c.decoder(Framing::Message);
        assert!(
            d.decode_frame(Frame::Binary(Bytes::from_static(b"01")))
                .unwrap()
                .is_none()
        );
        let mut got = None;
        enc.clone().into_frames(|f| {
            if let Some(m) = d.decode_frame(f).unwrap() {
                got = Some(m);
            }
        });
        assert_eq!(got.unwrap(), msg);

        let mut d = c.decoder(Framing::Stream);
        let mut buf = BytesMut::from(&b"01"[..]);
        enc.into_frames(|f| buf.extend_from_slice(f.payload()));
        assert_eq!(d.decode(&mut buf).unwrap().unwrap(), msg);
        assert!(c.heartbeat(Framing::Stream).is_some());
    }
}
