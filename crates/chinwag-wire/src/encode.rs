//! Encoding: lowercase hex, byte-exact with the gotalk v1 conformance vectors.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{EncodeError, Message, Name, VERSION};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `v` as `digits` zero-padded lowercase hex digits.
#[inline]
fn put_hex(dst: &mut impl BufMut, v: u32, digits: usize) {
    let mut tmp = [0u8; 8];
    for (i, slot) in tmp[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[((v >> shift) & 0xf) as usize];
    }
    dst.put_slice(&tmp[..digits]);
}

fn payload_len(p: &Bytes) -> Result<u32, EncodeError> {
    u32::try_from(p.len()).map_err(|_| EncodeError::PayloadTooLarge(p.len()))
}

fn put_name(dst: &mut impl BufMut, name: &Name) {
    // Name guarantees len <= 0xfff.
    put_hex(dst, name.len() as u32, 3);
    dst.put_slice(name.as_bytes());
}

/// Writes the protocol version (`01`) that each side sends first.
pub fn write_version(dst: &mut BytesMut) {
    dst.put_slice(VERSION);
}

impl Message {
    /// Length of this message's header on the wire.
    pub fn header_len(&self) -> usize {
        match self {
            Message::SingleRequest { op, .. } | Message::StreamRequest { op, .. } => 16 + op.len(),
            Message::StreamReqPart { .. }
            | Message::SingleResult { .. }
            | Message::StreamResult { .. }
            | Message::ErrorResult { .. } => 13,
            Message::RetryResult { .. } => 21,
            Message::Notification { name, .. } => 12 + name.len(),
            Message::Heartbeat { .. } => 13,
            Message::ProtocolError { .. } => 9,
        }
    }

    /// Length of the whole message on a byte stream (header plus payload).
    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.payload().map_or(0, Bytes::len)
    }

    /// Appends just the header to `dst` (a `BytesMut`, a `Vec<u8>` sized with
    /// [`header_len`](Self::header_len), ...). The payload (see [`Message::payload`]) follows
    /// it directly on a byte stream, or as its own frame on a message transport.
    pub fn encode_header(&self, dst: &mut impl BufMut) -> Result<(), EncodeError> {
        let len = match self.payload() {
            Some(p) => payload_len(p)?,
            None => 0,
        };
        dst.put_u8(self.type_byte());
        match self {
            Message::SingleRequest { id, op, .. } | Message::StreamRequest { id, op, .. } => {
                dst.put_slice(id.as_bytes());
                put_name(dst, op);
                put_hex(dst, len, 8);
            }
            Message::StreamReqPart { id, .. }
            | Message::SingleResult { id, .. }
            | Message::StreamResult { id, .. }
            | Message::ErrorResult { id, .. } => {
                dst.put_slice(id.as_bytes());
                put_hex(dst, len, 8);
            }
            Message::RetryResult { id, wait_ms, .. } => {
                dst.put_slice(id.as_bytes());
                put_hex(dst, *wait_ms, 8);
                put_hex(dst, len, 8);
            }
            Message::Notification { name, .. } => {
                put_name(dst, name);
                put_hex(dst, len, 8);
            }
            Message::Heartbeat { load, time } => {
                put_hex(dst, u32::from(*load), 4);
                put_hex(dst, *time, 8);
            }
            Message::ProtocolError { code } => put_hex(dst, code.0, 8),
        }
        Ok(())
    }

    /// Appends the message in the streamed layout (header then payload, contiguous) to `dst`.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use chinwag::wire::{Message, Name, RequestId};
    ///
    /// let mut out = BytesMut::new();
    /// Message::SingleRequest {
    ///     id: RequestId(*b"idid"),
    ///     op: Name::from_static("echo"),
    ///     payload: Bytes::from_static(b"abc"),
    /// }
    /// .encode(&mut out)
    /// .unwrap();
    /// assert_eq!(&out[..], b"ridid004echo00000003abc");
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.reserve(self.encoded_len());
        self.encode_header(dst)?;
        if let Some(p) = self.payload() {
            dst.put_slice(p);
        }
        Ok(())
    }

    /// Encodes in the framed layout for message transports: the header frame, and the payload
    /// frame when the payload is non-empty (the payload is shared, not copied). `scratch` is a
    /// reusable buffer the header is written into and split from.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use chinwag::wire::{Message, RequestId};
    ///
    /// let msg = Message::SingleResult { id: RequestId(*b"idid"), payload: Bytes::from_static(b"abc") };
    /// let (header, payload) = msg.encode_framed(&mut BytesMut::new()).unwrap();
    /// assert_eq!(&header[..], b"Ridid00000003");
    /// assert_eq!(payload.as_deref(), Some(&b"abc"[..]));
    /// ```
    pub fn encode_framed(
        &self,
        scratch: &mut BytesMut,
    ) -> Result<(Bytes, Option<Bytes>), EncodeError> {
        scratch.reserve(self.header_len());
        self.encode_header(scratch)?;
        let header = scratch.split().freeze();
        let payload = self.payload().filter(|p| !p.is_empty()).cloned();
        Ok((header, payload))
    }
}
