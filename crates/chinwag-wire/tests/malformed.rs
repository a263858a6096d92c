//! Bad input: every error names what was wrong and which protocol error code the peer gets,
//! and nothing a peer merely *claims* is allocated.

use bytes::{Bytes, BytesMut};
use chinwag_wire::{
    DecodeError, FramedDecoder, Message, ProtocolErrorCode, StreamDecoder, WireLimits,
};

fn stream_err(input: &[u8]) -> DecodeError {
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::from(input);
    loop {
        match dec.decode_eof(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{:?} decoded without error", String::from_utf8_lossy(input)),
            Err(e) => return e,
        }
    }
}

#[test]
fn non_hex_heartbeat_load_is_invalid() {
    let e = stream_err(b"hXXXX5f63ee48");
    assert!(
        matches!(
            e,
            DecodeError::BadHex {
                field: "load",
                byte: b'X',
                msg_type: 'h'
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.protocol_code(), ProtocolErrorCode::INVALID_MSG);
    assert!(e.to_string().contains("load"), "{e}");
}

#[test]
fn bad_hex_in_each_field_is_named() {
    for (input, field) in [
        (&b"ridid0g4echo00000000"[..], "name size"),
        (b"Ridid0000000z", "payload size"),
        (b"eidid0000000x00000000", "wait"),
        (b"h00025f63ee4g", "time"),
        (b"f0000000-", "code"),
        (b"n00-", "name size"),
    ] {
        match stream_err(input) {
            DecodeError::BadHex { field: f, .. } => assert_eq!(f, field, "{input:?}"),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
}

#[test]
fn unknown_type_is_invalid() {
    let e = stream_err(b"x0000");
    assert_eq!(e, DecodeError::UnknownType(b'x'));
    assert_eq!(e.protocol_code(), ProtocolErrorCode::INVALID_MSG);
}

#[test]
fn truncated_header_at_eof_is_an_error() {
    let e = stream_err(b"ridid004ec");
    assert!(
        matches!(
            e,
            DecodeError::Truncated {
                msg_type: 'r',
                have: 10,
                need: 20
            }
        ),
        "{e:?}"
    );
    let e = stream_err(b"Ridid00000005ab");
    assert!(
        matches!(
            e,
            DecodeError::Truncated {
                have: 15,
                need: 18,
                ..
            }
        ),
        "{e:?}"
    );
    let e = stream_err(b"f0000");
    assert!(matches!(e, DecodeError::Truncated { need: 9, .. }), "{e:?}");
}

#[test]
fn eof_on_a_message_boundary_is_clean() {
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::from(&b"f00000000"[..]);
    assert!(dec.decode_eof(&mut buf).unwrap().is_some());
    assert_eq!(dec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn payload_over_limit_is_refused_from_the_header() {
    let limits = WireLimits::default().with_max_payload(10);
    let mut dec = StreamDecoder::without_version(limits);
    // Exactly at the limit: fine.
    let mut buf = BytesMut::from(&b"Ridid0000000a0123456789"[..]);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    // One over: refused before any payload byte arrives.
    let mut buf = BytesMut::from(&b"Ridid0000000b"[..]);
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PayloadTooLarge {
            size: 11,
            limit: 10
        }
    );
    assert_eq!(e.protocol_code(), ProtocolErrorCode::INVALID_MSG);
}

#[test]
fn name_over_limit_is_refused_from_its_size() {
    let limits = WireLimits::default().with_max_name_len(4);
    let mut dec = StreamDecoder::without_version(limits);
    let mut buf = BytesMut::from(&b"ridid004echo00000000"[..]);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    let mut buf = BytesMut::from(&b"n005"[..]);
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(e, DecodeError::NameTooLong { len: 5, limit: 4 });
}

#[test]
fn name_that_is_not_utf8_is_refused() {
    let mut input = b"n002".to_vec();
    input.extend_from_slice(&[0xff, 0xfe]);
    input.extend_from_slice(b"00000000");
    assert_eq!(stream_err(&input), DecodeError::NameNotUtf8);
}

#[test]
fn a_header_claiming_4_gib_allocates_nothing() {
    // The acceptance case: `r0001004echoffffffff` followed by nothing.
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"r0001004echoffffffff");
    let cap_before = buf.capacity();
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PayloadTooLarge {
            size: 0xffff_ffff,
            limit: u64::from(WireLimits::DEFAULT_MAX_PAYLOAD)
        }
    );
    assert_eq!(
        buf.capacity(),
        cap_before,
        "the decoder reserved memory for a refused payload"
    );
}

#[test]
fn an_allowed_large_payload_is_reserved_in_bounded_steps() {
    // A peer that declares 16 MiB (allowed) but sends nothing more gets at most 64 KiB reserved
    // ahead, so memory follows the bytes that actually arrive.
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::from(&b"Ridid01000000"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(
        buf.capacity() <= 13 + 64 * 1024 + 64,
        "reserved {} bytes",
        buf.capacity()
    );
}

#[test]
fn a_large_message_fed_in_chunks_ends_in_a_buffer_of_its_own_size() {
    // 1 MiB arriving in 64 KiB reads, appended as the session does: the buffer that holds the
    // message (and that its payload keeps alive) is the message's size, not up to twice it.
    let total = 13 + (1 << 20);
    let mut wire = b"Ridid00100000".to_vec();
    wire.resize(total, 7);
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::new();
    let mut msg = None;
    for chunk in wire.chunks(64 << 10) {
        buf.extend_from_slice(chunk);
        if let Some(m) = dec.decode(&mut buf).unwrap() {
            msg = Some(m);
        }
        assert!(buf.capacity() <= 2 * buf.len().max(64 << 10) + (64 << 10));
    }
    let Some(Message::SingleResult { payload, .. }) = msg else {
        panic!("no message")
    };
    assert_eq!(payload.len(), 1 << 20);
    // Nothing left over: the whole exact allocation went to the message.
    assert_eq!(buf.capacity(), 0);
}

#[test]
fn framed_header_with_trailing_garbage_is_refused() {
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    let e = dec
        .decode_frame(Bytes::from_static(b"Ridid00000003abcd"))
        .unwrap_err();
    assert!(matches!(e, DecodeError::BadFrame(_)), "{e:?}");
    assert!(e.to_string().contains("4 bytes after"), "{e}");
}

#[test]
fn framed_header_and_payload_in_one_frame_is_tolerated() {
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    let m = dec
        .decode_frame(Bytes::from_static(b"Ridid00000003abc"))
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload().unwrap()[..], b"abc");
}

#[test]
fn framed_payload_of_the_wrong_size_is_refused() {
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    assert_eq!(
        dec.decode_frame(Bytes::from_static(b"Ridid00000003"))
            .unwrap(),
        None
    );
    let e = dec.decode_frame(Bytes::from_static(b"ab")).unwrap_err();
    assert!(e.to_string().contains("payload frame of 2 bytes"), "{e}");
}

#[test]
fn framed_truncated_header_is_refused() {
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    let e = dec
        .decode_frame(Bytes::from_static(b"Ridid000"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Truncated {
                need: 13,
                have: 8,
                ..
            }
        ),
        "{e:?}"
    );
    let e = FramedDecoder::without_version(WireLimits::default())
        .decode_frame(Bytes::new())
        .unwrap_err();
    assert!(
        matches!(e, DecodeError::Truncated { msg_type: '?', .. }),
        "{e:?}"
    );
}

#[test]
fn framed_over_limit_is_refused_from_the_header_frame() {
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    let e = dec
        .decode_frame(Bytes::from_static(b"r0001004echoffffffff"))
        .unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::PayloadTooLarge {
                size: 0xffff_ffff,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn framed_bad_version_frame_is_refused() {
    let mut dec = FramedDecoder::new(WireLimits::default());
    let e = dec.decode_frame(Bytes::from_static(b"010")).unwrap_err();
    assert_eq!(e.protocol_code(), ProtocolErrorCode::UNSUPPORTED);
}
