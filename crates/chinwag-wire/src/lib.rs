//! Sans-IO codec for the **gotalk v1** wire protocol, as the Go library and `gotalk.js` speak it.
//!
//! No sockets, no clock, no runtime: bytes in, [`Message`]s out, and back. Every size read from
//! the wire (name lengths, payload sizes) is checked against [`WireLimits`] *before* any memory
//! is reserved for it — a gotalk header can claim a 4 GiB payload, and the Go reader allocates
//! it; this one refuses it from the header alone.
//!
//! * [`StreamDecoder`]: incremental, resumable decoding of byte streams (TCP, TLS, Unix).
//! * [`FramedDecoder`]: message transports (WebSocket), where the version, each header and each
//!   payload are separate frames.
//! * [`Message::encode`] (streamed layout) and [`Message::encode_framed`] (framed layout), in
//!   lowercase hex, byte-exact with the protocol's conformance vectors.
//! * [`check_version`] / [`write_version`]: the `01` handshake.
//! * [`GoIdGen`] / [`JsIdGen`]: request ids in the style of each reference implementation.
//! * [`StreamCodec`] (feature `codec`, default): `tokio_util::codec::{Decoder, Encoder}`.
//!
//! The grammar, limits and error codes are described in `docs/wire.md` of the repository.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use chinwag::wire::{Message, Name, RequestId, StreamDecoder, WireLimits, write_version};
//!
//! // One side writes its version and a request...
//! let mut wire = BytesMut::new();
//! write_version(&mut wire);
//! Message::SingleRequest {
//!     id: RequestId(*b"0001"),
//!     op: Name::from_static("echo"),
//!     payload: Bytes::from_static(br#"{"message":"Hello World"}"#),
//! }
//! .encode(&mut wire)
//! .unwrap();
//! assert_eq!(&wire[..], &br#"01r0001004echo00000019{"message":"Hello World"}"#[..]);
//!
//! // ...the other decodes it, however the bytes were split by the network.
//! let mut dec = StreamDecoder::new(WireLimits::default());
//! let mut buf = BytesMut::new();
//! let mut got = None;
//! for chunk in wire.chunks(5) {
//!     buf.extend_from_slice(chunk);
//!     if let Some(m) = dec.decode(&mut buf).unwrap() {
//!         got = Some(m);
//!     }
//! }
//! assert!(matches!(got, Some(Message::SingleRequest { ref op, .. }) if op == "echo"));
//!
//! // A header claiming 4 GiB is refused at once, with the code the peer should get.
//! let mut evil = BytesMut::from(&b"r0001004echoffffffff"[..]);
//! let err = StreamDecoder::without_version(WireLimits::default()).decode(&mut evil).unwrap_err();
//! assert_eq!(err.protocol_code(), chinwag::wire::ProtocolErrorCode::INVALID_MSG);
//! ```

#[cfg(feature = "codec")]
mod codec;
mod decode;
mod encode;
mod error;
mod id;
mod limits;
mod message;

#[cfg(feature = "codec")]
pub use codec::{StreamCodec, Version};
pub use decode::{FramedDecoder, StreamDecoder, check_version, reserve_for_message};
pub use encode::write_version;
pub use error::{DecodeError, EncodeError, WireError};
pub use id::{GoIdGen, JsIdGen};
pub use limits::WireLimits;
pub use message::{Message, Name, NameTooLong, ProtocolErrorCode, RequestId};

/// The protocol version this crate speaks, as written on the wire.
pub const VERSION: &[u8; 2] = b"01";
