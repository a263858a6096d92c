//! Fuzzes `StreamDecoder`, the byte-stream (TCP) decoder every untrusted byte passes through.
//!
//! Input layout: the first byte picks a chunk size (1..=256) so that resumption across reads is
//! exercised; the rest is the stream, version included. Checked on every input:
//! - no panic, and after an error the decoder is not used again (as a connection would close);
//! - the buffer never holds more than the limits allow (a peer that only *claims* a size gets no
//!   memory for it);
//! - every decoded message re-encodes to bytes that decode to the same message.
#![no_main]

use bytes::BytesMut;
use chinwag_wire::{StreamDecoder, WireLimits};
use libfuzzer_sys::fuzz_target;

const MAX_PAYLOAD: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first) + 1;
    let limits = WireLimits::default().with_max_payload(MAX_PAYLOAD);
    let mut dec = StreamDecoder::new(limits);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(msg)) => round_trip(limits, &msg),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Whatever is buffered is at most one unfinished message plus the last chunk.
        assert!(
            buf.len() <= MAX_PAYLOAD as usize + 4096 + 256,
            "buffered {}",
            buf.len()
        );
    }
    let _ = dec.decode_eof(&mut buf);
});

fn round_trip(limits: WireLimits, msg: &chinwag_wire::Message) {
    let mut out = BytesMut::new();
    msg.encode(&mut out).expect("a decoded message encodes");
    let mut again = StreamDecoder::without_version(limits);
    let back = again
        .decode(&mut out)
        .expect("re-encoded bytes decode")
        .expect("re-encoded bytes hold a whole message");
    assert_eq!(&back, msg);
    assert!(out.is_empty());
}
