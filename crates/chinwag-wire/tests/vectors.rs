//! Every conformance vector of gotalk-v1.md, decoded and re-encoded byte for byte, in both the
//! streamed and the framed layout.

use bytes::{Bytes, BytesMut};
use chinwag_wire::{
    FramedDecoder, Message, Name, ProtocolErrorCode, RequestId, StreamDecoder, WireLimits,
};

fn id(s: &[u8; 4]) -> RequestId {
    RequestId(*s)
}

fn name(s: &'static str) -> Name {
    Name::from_static(s)
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// (wire bytes, message) for every vector that is a single message.
fn vectors() -> Vec<(&'static str, Message)> {
    vec![
        (
            "ridid004echo00000000",
            Message::SingleRequest {
                id: id(b"idid"),
                op: name("echo"),
                payload: Bytes::new(),
            },
        ),
        (
            "ridid004echo00000003abc",
            Message::SingleRequest {
                id: id(b"idid"),
                op: name("echo"),
                payload: b("abc"),
            },
        ),
        (
            "sidid004echo00000003abc",
            Message::StreamRequest {
                id: id(b"idid"),
                op: name("echo"),
                payload: b("abc"),
            },
        ),
        (
            "pidid00000003def",
            Message::StreamReqPart {
                id: id(b"idid"),
                payload: b("def"),
            },
        ),
        (
            "pidid00000000",
            Message::StreamReqPart {
                id: id(b"idid"),
                payload: Bytes::new(),
            },
        ),
        (
            "Ridid00000003abc",
            Message::SingleResult {
                id: id(b"idid"),
                payload: b("abc"),
            },
        ),
        (
            "Sidid00000003abc",
            Message::StreamResult {
                id: id(b"idid"),
                payload: b("abc"),
            },
        ),
        (
            "Eidid00000003abc",
            Message::ErrorResult {
                id: id(b"idid"),
                payload: b("abc"),
            },
        ),
        (
            "eidid0000000600000003abc",
            Message::RetryResult {
                id: id(b"idid"),
                wait_ms: 6,
                payload: b("abc"),
            },
        ),
        (
            "n005hello00000003abc",
            Message::Notification {
                name: name("hello"),
                payload: b("abc"),
            },
        ),
        (
            "n001a00000000",
            Message::Notification {
                name: name("a"),
                payload: Bytes::new(),
            },
        ),
        (
            "h00025f63ee48",
            Message::Heartbeat {
                load: 2,
                time: 0x5f63_ee48,
            },
        ),
        (
            "f00000002",
            Message::ProtocolError {
                code: ProtocolErrorCode::INVALID_MSG,
            },
        ),
        (
            r#"r0001004echo00000019{"message":"Hello World"}"#,
            Message::SingleRequest {
                id: id(b"0001"),
                op: name("echo"),
                payload: b(r#"{"message":"Hello World"}"#),
            },
        ),
        (
            r#"R000100000019{"message":"Hello World"}"#,
            Message::SingleResult {
                id: id(b"0001"),
                payload: b(r#"{"message":"Hello World"}"#),
            },
        ),
        (
            r#"e00010000138800000014"request rate limit""#,
            Message::RetryResult {
                id: id(b"0001"),
                wait_ms: 5000,
                payload: b(r#""request rate limit""#),
            },
        ),
        (
            r#"s0001004echo0000000b{"message":"#,
            Message::StreamRequest {
                id: id(b"0001"),
                op: name("echo"),
                payload: b(r#"{"message":"#),
            },
        ),
        (
            r#"p00010000000e"Hello World"}"#,
            Message::StreamReqPart {
                id: id(b"0001"),
                payload: b(r#""Hello World"}"#),
            },
        ),
        (
            "p000100000000",
            Message::StreamReqPart {
                id: id(b"0001"),
                payload: Bytes::new(),
            },
        ),
        (
            r#"S00010000000b{"message":"#,
            Message::StreamResult {
                id: id(b"0001"),
                payload: b(r#"{"message":"#),
            },
        ),
        (
            r#"S00010000000e"Hello World"}"#,
            Message::StreamResult {
                id: id(b"0001"),
                payload: b(r#""Hello World"}"#),
            },
        ),
        (
            "S000100000000",
            Message::StreamResult {
                id: id(b"0001"),
                payload: Bytes::new(),
            },
        ),
        (
            r#"n00cchat message0000002e{"message":"Hi","from":"nthn","room":"gonuts"}"#,
            Message::Notification {
                name: name("chat message"),
                payload: b(r#"{"message":"Hi","from":"nthn","room":"gonuts"}"#),
            },
        ),
    ]
}

#[test]
fn every_vector_decodes_from_a_stream() {
    for (wire, want) in vectors() {
        let mut dec = StreamDecoder::without_version(WireLimits::default());
        let mut buf = BytesMut::from(wire.as_bytes());
        let got = dec
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("{wire}: {e}"));
        assert_eq!(got.as_ref(), Some(&want), "decoding {wire}");
        assert!(buf.is_empty(), "{wire}: {} bytes left over", buf.len());
    }
}

#[test]
fn every_vector_encodes_byte_exact() {
    for (wire, msg) in vectors() {
        let mut out = BytesMut::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), wire, "encoding {msg:?}");
        assert_eq!(msg.encoded_len(), wire.len(), "encoded_len of {msg:?}");
    }
}

#[test]
fn every_vector_round_trips_in_framed_layout() {
    for (wire, msg) in vectors() {
        let (header, payload) = msg.encode_framed(&mut BytesMut::new()).unwrap();
        assert_eq!(header.len(), msg.header_len(), "{wire}");
        let mut joined = header.to_vec();
        if let Some(p) = &payload {
            assert!(
                !p.is_empty(),
                "{wire}: an empty payload must not get a frame"
            );
            joined.extend_from_slice(p);
        }
        assert_eq!(joined, wire.as_bytes(), "framed layout of {wire}");

        let mut dec = FramedDecoder::without_version(WireLimits::default());
        let first = dec.decode_frame(header).unwrap();
        let got = match payload {
            Some(p) => {
                assert_eq!(
                    first, None,
                    "{wire}: header frame alone must wait for its payload"
                );
                assert!(dec.awaiting_payload());
                dec.decode_frame(p).unwrap()
            }
            None => first,
        };
        assert_eq!(got, Some(msg), "framed decode of {wire}");
    }
}

#[test]
fn the_three_message_stream_vectors_decode_as_one_stream() {
    let wire = concat!(
        "01",
        r#"s0001004echo0000000b{"message":"#,
        r#"p00010000000e"Hello World"}"#,
        "p000100000000",
        r#"S00010000000b{"message":"#,
        r#"S00010000000e"Hello World"}"#,
        "S000100000000",
    );
    let mut dec = StreamDecoder::new(WireLimits::default());
    let mut buf = BytesMut::from(wire.as_bytes());
    let mut out = Vec::new();
    while let Some(m) = dec.decode(&mut buf).unwrap() {
        out.push(m);
    }
    assert_eq!(out.len(), 6, "{out:?}");
    let body: Vec<u8> = out[..2]
        .iter()
        .flat_map(|m| m.payload().unwrap().to_vec())
        .collect();
    assert_eq!(body, br#"{"message":"Hello World"}"#);
}

#[test]
fn version_01_is_accepted_and_09_refused_with_code_1() {
    let mut dec = StreamDecoder::new(WireLimits::default());
    let mut buf = BytesMut::from(&b"01"[..]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert!(!dec.awaiting_version());

    let mut dec = StreamDecoder::new(WireLimits::default());
    let err = dec.decode(&mut BytesMut::from(&b"09"[..])).unwrap_err();
    assert_eq!(err.protocol_code(), ProtocolErrorCode::UNSUPPORTED);

    let mut framed = FramedDecoder::new(WireLimits::default());
    let err = framed.decode_frame(Bytes::from_static(b"09")).unwrap_err();
    assert_eq!(err.protocol_code(), ProtocolErrorCode::UNSUPPORTED);
    let mut framed = FramedDecoder::new(WireLimits::default());
    assert_eq!(
        framed.decode_frame(Bytes::from_static(b"01")).unwrap(),
        None
    );
}

#[test]
fn uppercase_hex_is_accepted() {
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::from(&b"hFFFF5F63EE48n00Cchat message0000000Bhello world"[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Message::Heartbeat {
            load: 0xffff,
            time: 0x5f63_ee48
        })
    );
    let m = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(m.name().unwrap(), "chat message");
    assert_eq!(&m.payload().unwrap()[..], b"hello world");
}

#[test]
fn short_messages_are_not_held_back_waiting_for_13_bytes() {
    // A reader that always waits for 13 bytes (as the Go reader does) would stall on these.
    let mut dec = StreamDecoder::without_version(WireLimits::default());
    let mut buf = BytesMut::from(&b"f00000003"[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(Message::ProtocolError {
            code: ProtocolErrorCode::TIMEOUT
        })
    );
    let mut buf = BytesMut::from(&b"n00000000000"[..]);
    let m = dec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        m,
        Message::Notification {
            name: Name::default(),
            payload: Bytes::new()
        }
    );
}

#[test]
fn payloads_share_the_input_buffer() {
    let wire = Bytes::from_static(b"Ridid00000003abc");
    let mut dec = FramedDecoder::without_version(WireLimits::default());
    let m = dec.decode_frame(wire.clone()).unwrap().unwrap();
    let p = m.payload().unwrap();
    assert_eq!(
        p.as_ptr(),
        wire[13..].as_ptr(),
        "framed payload must not be copied"
    );
}
