//! Fuzzes `FramedDecoder`, the decoder for message transports (WebSocket), where the version,
//! each header and each payload arrive as separate frames.
//!
//! Input layout: a sequence of frames, each a one-byte length (0..=255) followed by that many
//! bytes (a short tail is the last frame). Checked: no panic, errors end the connection, and
//! every decoded message survives an encode → decode round trip in the framed layout.
#![no_main]

use bytes::{Bytes, BytesMut};
use chinwag_wire::{FramedDecoder, WireLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits::default().with_max_payload(4096);
    let mut dec = FramedDecoder::new(limits);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(n);
        rest = tail;
        match dec.decode_frame(Bytes::copy_from_slice(frame)) {
            Ok(Some(msg)) => round_trip(limits, &msg),
            Ok(None) => {}
            Err(_) => return,
        }
    }
});

fn round_trip(limits: WireLimits, msg: &chinwag_wire::Message) {
    let (header, payload) = msg
        .encode_framed(&mut BytesMut::new())
        .expect("a decoded message encodes");
    let mut again = FramedDecoder::without_version(limits);
    let mut got = again.decode_frame(header).expect("header decodes");
    if got.is_none() {
        got = again
            .decode_frame(payload.unwrap_or_default())
            .expect("payload decodes");
    }
    assert_eq!(got.as_ref(), Some(msg));
}
