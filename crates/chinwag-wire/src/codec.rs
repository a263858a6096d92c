//! `tokio_util::codec` integration (feature `codec`, on by default).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::{Message, StreamDecoder, WireError, WireLimits, write_version};

/// The protocol version handshake as an item to encode: `framed.send(Version)` writes `01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version;

/// A [`Decoder`]/[`Encoder`] pair for gotalk over byte streams, for use with
/// `tokio_util::codec::Framed`.
///
/// The decoder expects the peer's version first (refusing anything but `01` with an error whose
/// [`protocol_code`](crate::DecodeError::protocol_code) is 1); send yours with
/// `framed.send(Version)`.
///
/// ```
/// use bytes::BytesMut;
/// use chinwag::wire::{StreamCodec, Message};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = StreamCodec::default();
/// let mut buf = BytesMut::from(&b"01h00025f63ee48"[..]);
/// let msg = codec.decode(&mut buf).unwrap();
/// assert_eq!(msg, Some(Message::Heartbeat { load: 2, time: 0x5f63ee48 }));
/// ```
#[derive(Debug, Clone)]
pub struct StreamCodec {
    decoder: StreamDecoder,
}

impl StreamCodec {
    /// A codec with the given limits that expects the peer's version first.
    pub fn new(limits: WireLimits) -> Self {
        StreamCodec {
            decoder: StreamDecoder::new(limits),
        }
    }

    /// A codec for a stream whose version has already been read.
    pub fn without_version(limits: WireLimits) -> Self {
        StreamCodec {
            decoder: StreamDecoder::without_version(limits),
        }
    }
}

impl Default for StreamCodec {
    fn default() -> Self {
        StreamCodec::new(WireLimits::default())
    }
}

impl Decoder for StreamCodec {
    type Item = Message;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        Ok(self.decoder.decode_eof(src)?)
    }
}

impl Encoder<Message> for StreamCodec {
    type Error = WireError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), WireError> {
        Ok(item.encode(dst)?)
    }
}

impl Encoder<&Message> for StreamCodec {
    type Error = WireError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
        Ok(item.encode(dst)?)
    }
}

impl Encoder<Version> for StreamCodec {
    type Error = WireError;

    fn encode(&mut self, _: Version, dst: &mut BytesMut) -> Result<(), WireError> {
        write_version(dst);
        Ok(())
    }
}
