//! Property tests: encode→decode is the identity, and any split of a valid byte stream into
//! chunks decodes to the same messages.

use bytes::{Bytes, BytesMut};
use chinwag_wire::{
    FramedDecoder, Message, Name, ProtocolErrorCode, RequestId, StreamDecoder, WireLimits,
};
use proptest::prelude::*;

fn arb_payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
    ]
    .prop_map(Bytes::from)
}

fn arb_name() -> impl Strategy<Value = Name> {
    "\\PC{0,40}".prop_map(|s| Name::new(s).expect("short names fit"))
}

fn arb_id() -> impl Strategy<Value = RequestId> {
    any::<[u8; 4]>().prop_map(RequestId)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (arb_id(), arb_name(), arb_payload())
            .prop_map(|(id, op, payload)| Message::SingleRequest { id, op, payload }),
        (arb_id(), arb_name(), arb_payload())
            .prop_map(|(id, op, payload)| Message::StreamRequest { id, op, payload }),
        (arb_id(), arb_payload()).prop_map(|(id, payload)| Message::StreamReqPart { id, payload }),
        (arb_id(), arb_payload()).prop_map(|(id, payload)| Message::SingleResult { id, payload }),
        (arb_id(), arb_payload()).prop_map(|(id, payload)| Message::StreamResult { id, payload }),
        (arb_id(), arb_payload()).prop_map(|(id, payload)| Message::ErrorResult { id, payload }),
        (arb_id(), any::<u32>(), arb_payload()).prop_map(|(id, wait_ms, payload)| {
            Message::RetryResult {
                id,
                wait_ms,
                payload,
            }
        }),
        (arb_name(), arb_payload())
            .prop_map(|(name, payload)| Message::Notification { name, payload }),
        (any::<u16>(), any::<u32>()).prop_map(|(load, time)| Message::Heartbeat { load, time }),
        any::<u32>().prop_map(|c| Message::ProtocolError {
            code: ProtocolErrorCode(c)
        }),
    ]
}

fn encode_all(msgs: &[Message]) -> Vec<u8> {
    let mut out = BytesMut::new();
    chinwag_wire::write_version(&mut out);
    for m in msgs {
        m.encode(&mut out).unwrap();
    }
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(msg in arb_message()) {
        let mut out = BytesMut::new();
        msg.encode(&mut out).unwrap();
        prop_assert_eq!(out.len(), msg.encoded_len());
        let mut dec = StreamDecoder::without_version(WireLimits::default());
        let got = dec.decode_eof(&mut out).unwrap();
        prop_assert_eq!(got, Some(msg));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn framed_encode_then_decode_is_identity(msg in arb_message()) {
        let (h, p) = msg.encode_framed(&mut BytesMut::new()).unwrap();
        let mut dec = FramedDecoder::without_version(WireLimits::default());
        let mut got = dec.decode_frame(h).unwrap();
        if let Some(p) = p {
            prop_assert_eq!(got, None);
            got = dec.decode_frame(p).unwrap();
        }
        prop_assert_eq!(got, Some(msg));
    }

    #[test]
    fn any_split_decodes_to_the_same_messages(
        msgs in proptest::collection::vec(arb_message(), 1..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let wire = encode_all(&msgs);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        points.dedup();

        let mut dec = StreamDecoder::new(WireLimits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            buf.extend_from_slice(&wire[w[0]..w[1]]);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(dec.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut dec = StreamDecoder::new(WireLimits::default().with_max_payload(1024));
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
        let mut framed = FramedDecoder::new(WireLimits::default());
        for chunk in input.chunks(7) {
            if framed.decode_frame(Bytes::copy_from_slice(chunk)).is_err() {
                break;
            }
        }
    }
}
