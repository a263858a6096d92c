//! Compress once for a room: a server sending the same message (the same `Bytes`) to many
//! connections that agreed `server_no_context_takeover` compresses it once, and every connection
//! gets the very same compressed frame on the wire, which inflates to the message. With
//! `compress_once` off, or without `server_no_context_takeover`, every connection compresses its
//! own. Alone in its own test binary: the counters are process-wide.

use bytes::Bytes;
use chinwag::transport::{Acceptor, Frame, FrameWrite, Transport};
use chinwag::ws::DeflateConfig;
use chinwag::ws::yawc::{WsAcceptor, WsConfig, deflate_stats};
use chinwag_ws::suite::{header, raw_handshake, read_raw_frame, within};

/// About 1 KiB of chat-like JSON (compresses a few times, as chat does).
fn chat_message() -> Bytes {
    let words = [
        "hello", "room", "meeting", "tomorrow", "lunch", "deploy", "review", "the", "a", "ok",
        "thanks", "see", "you", "at", "noon", "build", "green", "again", "coffee", "later",
    ];
    let mut text = String::from("{\"room\":\"lobby\",\"from\":\"ada\",\"text\":\"");
    let mut i = 7usize;
    while text.len() < 1000 {
        i = i.wrapping_mul(31).wrapping_add(17) % 1009;
        text.push_str(words[i % words.len()]);
        text.push(' ');
    }
    text.push_str("\"}");
    Bytes::from(text)
}

/// Inflates a permessage-deflate payload (RFC 7692 §7.2.2: append `00 00 ff ff`).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(64 << 10);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    assert_eq!(d.total_in() as usize, input.len(), "all of it inflated");
    out
}

/// `n` raw clients offering `offer`; the server sends `msg` to each (the same `Bytes`); returns
/// what each client read off the wire: (first header byte, payload).
async fn broadcast(
    deflate: DeflateConfig,
    offer: &str,
    n: usize,
    msg: &Bytes,
) -> Vec<(u8, Vec<u8>)> {
    let cfg = WsConfig::default().with_deflate(Some(deflate));
    let mut acc = WsAcceptor::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let addr = acc.local_addr();
    let mut clients = Vec::new();
    let mut writers = Vec::new();
    let extra = format!("Sec-WebSocket-Extensions: {offer}\r\n");
    for _ in 0..n {
        let ((tcp, head), server) = within("handshake", async {
            tokio::join!(raw_handshake(addr, &extra), acc.accept())
        })
        .await;
        assert!(
            header(&head, "sec-websocket-extensions").is_some(),
            "{head}"
        );
        let (r, w) = server.unwrap().split();
        clients.push(tcp);
        writers.push((r, w));
    }
    for (_, w) in &mut writers {
        within("send", w.send(Frame::Text(msg.clone())))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for tcp in &mut clients {
        got.push(within("read", read_raw_frame(tcp)).await.unwrap());
    }
    got
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_and_shared() {
    let msg = chat_message();
    let no_takeover = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    // Compress once (the default): one compression, shared by the other four connections.
    let before = deflate_stats();
    let got = broadcast(DeflateConfig::default(), no_takeover, 5, &msg).await;
    let after = deflate_stats();
    assert_eq!(
        after.prepared - before.prepared,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.shared - before.shared, 4, "{before:?} -> {after:?}");
    let (b0, first) = &got[0];
    assert_eq!(*b0, 0xc1, "FIN, RSV1 (compressed), text");
    assert!(
        first.len() * 2 < msg.len(),
        "{} compressed bytes of {}",
        first.len(),
        msg.len()
    );
    assert_eq!(inflate(first), msg.as_ref());
    for (b, payload) in &got {
        assert_eq!(
            (b, payload),
            (b0, first),
            "every member gets the same frame bytes"
        );
    }

    // A copy of the message (other bytes, same text) is another message: compressed again.
    let copy = Bytes::from(msg.to_vec());
    let before = deflate_stats();
    broadcast(DeflateConfig::default(), no_takeover, 1, &copy).await;
    assert_eq!(deflate_stats().prepared - before.prepared, 1);

    // compress_once off: each connection compresses its own (same result, nothing counted).
    let before = deflate_stats();
    let off = DeflateConfig::default().with_compress_once(false);
    let got = broadcast(off, no_takeover, 3, &msg).await;
    assert_eq!(deflate_stats(), before);
    for (b, payload) in &got {
        assert_eq!(*b, 0xc1);
        assert_eq!(inflate(payload), msg.as_ref());
    }

    // The client did not accept server_no_context_takeover and the server does not ask for it:
    // the server keeps its window between messages, so nothing can be shared.
    let before = deflate_stats();
    let got = broadcast(DeflateConfig::default(), "permessage-deflate", 3, &msg).await;
    assert_eq!(deflate_stats(), before);
    for (b, payload) in &got {
        assert_eq!(*b, 0xc1);
        assert_eq!(inflate(payload), msg.as_ref());
    }

    // Under the threshold nothing is compressed, so nothing is prepared either.
    let short = Bytes::from_static(b"{\"text\":\"hi\"}");
    let before = deflate_stats();
    let got = broadcast(DeflateConfig::default(), no_takeover, 3, &short).await;
    assert_eq!(deflate_stats(), before);
    for (b, payload) in &got {
        assert_eq!(
            (*b, payload.as_slice()),
            (0x81, short.as_ref()),
            "FIN, text, no RSV1"
        );
    }
}
