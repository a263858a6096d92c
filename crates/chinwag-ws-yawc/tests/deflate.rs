//! permessage-deflate on the yawc engine: negotiation (the server's answers, the client's
//! offer), messages under the threshold sent uncompressed, compressed round trips.

use bytes::Bytes;
use chinwag::transport::{Acceptor, Frame, FrameRead, FrameWrite, Transport};
use chinwag::ws::DeflateConfig;
use chinwag::ws::yawc::{WsAcceptor, WsConfig, connect};
use chinwag_ws::suite::{client_frame, header, raw_handshake, read_raw_frame, within};
use tokio::io::AsyncWriteExt;

/// A yawc echo server with `cfg`; returns its address.
async fn echo(cfg: WsConfig) -> std::net::SocketAddr {
    let mut acc = WsAcceptor::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let addr = acc.local_addr();
    tokio::spawn(async move {
        while let Ok(conn) = acc.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                while let Ok(Some(f)) = r.read_frame().await {
                    if w.send(f).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn deflate() -> WsConfig {
    WsConfig::default().with_deflate(Some(DeflateConfig::default()))
}

#[tokio::test]
async fn server_answers() {
    let addr = echo(deflate()).await;
    // A browser's offer: a bare client_max_window_bits is answered with 15 (yawc alone: 9).
    let (_t, head) = raw_handshake(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let ext = header(&head, "sec-websocket-extensions").expect("deflate agreed");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    assert!(ext.contains("client_max_window_bits=15"), "{ext}");
    // No client_max_window_bits in the offer: none in the answer (RFC 7692 §7.1.2.2).
    let (_t, head) = raw_handshake(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let ext = header(&head, "sec-websocket-extensions").expect("deflate agreed");
    assert!(!ext.contains("client_max_window_bits"), "{ext}");
    // A list of offers (and an unknown extension first): the first acceptable one is agreed.
    let (_t, head) = raw_handshake(
        addr,
        "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; server_max_window_bits=10; \
         client_no_context_takeover, permessage-deflate\r\n",
    )
    .await;
    let ext = header(&head, "sec-websocket-extensions").expect("deflate agreed");
    assert!(ext.contains("server_max_window_bits=10"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");
    // Without WsConfig::deflate: no extension.
    let plain = echo(WsConfig::default()).await;
    let (_t, head) = raw_handshake(plain, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(header(&head, "sec-websocket-extensions"), None);
}

#[tokio::test]
async fn configured_takeover_and_window_are_asked() {
    let cfg = WsConfig::default().with_deflate(Some(
        DeflateConfig::default()
            .with_server_no_context_takeover(true)
            .with_client_no_context_takeover(true)
            .with_server_max_window_bits(12),
    ));
    let addr = echo(cfg).await;
    let (_t, head) = raw_handshake(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    let ext = header(&head, "sec-websocket-extensions").expect("deflate agreed");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");
    assert!(ext.contains("server_max_window_bits=12"), "{ext}");
}

/// Below the threshold a message goes out uncompressed (RSV1 clear); at it, compressed.
#[tokio::test]
async fn threshold_at_the_boundary() {
    let addr = echo(deflate()).await;
    let (mut tcp, head) =
        raw_handshake(addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n").await;
    assert!(header(&head, "sec-websocket-extensions").is_some());
    // Uncompressed client frames (RSV1 clear is allowed) of 255 and 256 bytes.
    for (len, compressed) in [(255usize, false), (256, true)] {
        let body = vec![b'a'; len];
        tcp.write_all(&client_frame(0x2, false, &body))
            .await
            .unwrap();
        let (b0, payload) = within("echo", read_raw_frame(&mut tcp)).await.unwrap();
        assert_eq!(b0 & 0x0f, 0x2);
        assert_eq!(b0 & 0x40 != 0, compressed, "RSV1 for {len} bytes");
        if compressed {
            assert!(payload.len() < len, "{} bytes on the wire", payload.len());
        } else {
            assert_eq!(payload, body);
        }
    }
}

/// yawc client and yawc server, both with deflate: messages of every size (fragmented ones
/// too) come back unchanged, text and binary.
#[tokio::test]
async fn compressed_round_trip() {
    let addr = echo(deflate()).await;
    let ccfg = deflate().with_fragment_size(16 << 10);
    let (mut r, mut w) = within("connect", connect(&format!("ws://{addr}/"), &ccfg))
        .await
        .unwrap()
        .split();
    let big: Bytes = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let frames = [
        Frame::Text("hi".into()),
        Frame::Text("chat ".repeat(100).into()),
        Frame::Binary(big),
        Frame::Text("héllo wörld ".repeat(10_000).into()),
        Frame::Binary(Bytes::new()),
    ];
    for f in &frames {
        w.send(f.clone()).await.unwrap();
        assert_eq!(&within("echo", r.read_frame()).await.unwrap().unwrap(), f);
    }
    within("close", w.close(chinwag::transport::CloseReason::normal()))
        .await
        .unwrap();
}

/// `data` compressed as one permessage-deflate message (raw deflate, sync-flushed, without the
/// final `00 00 ff ff`, RFC 7692 §7.2.1).
fn compressed(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.flush().unwrap();
    let mut out = enc.get_ref().clone();
    out.truncate(out.len() - 4);
    out
}

/// Sends `data` as one compressed binary frame to a yawc echo server with `deflate`; returns
/// the close code the server answered with, or `None` when it echoed the message.
async fn inflate_verdict(deflate: DeflateConfig, data: &[u8]) -> Option<u16> {
    let addr = echo(WsConfig::default().with_deflate(Some(deflate))).await;
    let (mut tcp, head) = within(
        "handshake",
        raw_handshake(
            addr,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n",
        ),
    )
    .await;
    assert!(
        header(&head, "sec-websocket-extensions").is_some(),
        "{head}"
    );
    tcp.write_all(&client_frame(0x2, true, &compressed(data)))
        .await
        .unwrap();
    let (b0, payload) = within("answer", read_raw_frame(&mut tcp)).await.unwrap();
    match b0 & 0x0f {
        0x8 => Some(u16::from_be_bytes([payload[0], payload[1]])),
        0x2 => None,
        other => panic!("unexpected opcode {other:#x}"),
    }
}

/// The inflate ratio limit (`DeflateConfig::max_inflate_ratio`, default 256): a ~1 KiB frame
/// that inflates to 1 MiB (about 1 000 times, near deflate's own maximum) is refused with 1009
/// while inflating, though 1 MiB is far under the 16 MiB message limit; with the limit off, or
/// raised past the ratio, it is accepted.
#[tokio::test]
async fn a_small_frame_inflating_past_the_ratio_is_refused() {
    let zeros = vec![0u8; 1 << 20];
    let wire = compressed(&zeros).len();
    assert!(wire < 1100, "{wire} compressed bytes");
    assert!((1 << 20) / wire > 256, "the ratio is over the default");
    assert_eq!(
        inflate_verdict(DeflateConfig::default(), &zeros).await,
        Some(1009)
    );
    let off = DeflateConfig::default().with_max_inflate_ratio(0);
    assert_eq!(inflate_verdict(off, &zeros).await, None);
    let raised = DeflateConfig::default().with_max_inflate_ratio(2000);
    assert_eq!(inflate_verdict(raised, &zeros).await, None);
}

/// The ratio spares frames that inflate to at most 64 KiB, whatever their ratio: 64 KiB of zeros
/// (a few dozen bytes compressed) pass, one byte more is refused.
#[tokio::test]
async fn the_ratio_spares_the_first_64_kib() {
    let at = vec![0u8; 64 << 10];
    assert!(
        compressed(&at).len() * 256 < at.len(),
        "the ratio alone would refuse it"
    );
    assert_eq!(inflate_verdict(DeflateConfig::default(), &at).await, None);
    let over = vec![0u8; (64 << 10) + 1];
    assert_eq!(
        inflate_verdict(DeflateConfig::default(), &over).await,
        Some(1009)
    );
}
