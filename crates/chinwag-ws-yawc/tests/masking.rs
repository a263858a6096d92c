//! The client's masking check (yawc's client does not make it; this crate does, with a second
//! instance of yawc's decoder): frames are counted from the first one after the `101`, also
//! when the response and the first frames arrive in one segment, and the frames before a
//! masked one are delivered.

use std::time::Duration;

use chinwag::transport::{Frame, FrameRead, Transport, TransportError};
use chinwag::ws::Engine;
use chinwag::ws::yawc::{WsConfig, Yawc, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A raw server that answers the handshake and, in the same write, sends `frames`; returns the
/// close code of the client's close frame (0 when it sent none).
async fn raw_server(frames: &'static [u8]) -> (String, tokio::task::JoinHandle<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let key = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            Yawc::accept_key(key.as_bytes())
        )
        .into_bytes();
        out.extend_from_slice(frames);
        tcp.write_all(&out).await.unwrap();
        // The client's frames (a pong for a ping, say) until its close frame.
        loop {
            let mut hdr = [0u8; 2];
            if tcp.read_exact(&mut hdr).await.is_err() {
                return 0;
            }
            let len = (hdr[1] & 0x7f) as usize;
            let mut mask = [0u8; 4];
            tcp.read_exact(&mut mask).await.unwrap();
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.unwrap();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            if hdr[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    });
    (url, task)
}

#[tokio::test]
async fn frames_before_a_masked_one_arrive_then_1002() {
    // Unmasked text "ok", an unmasked ping, unmasked binary [1, 2], then a masked text "hi".
    const FRAMES: &[u8] = &[
        0x81, 0x02, b'o', b'k', //
        0x89, 0x00, //
        0x82, 0x02, 1, 2, //
        0x81, 0x82, 0, 0, 0, 0, b'h', b'i',
    ];
    let (url, server) = raw_server(FRAMES).await;
    let (mut cr, _cw) = within("connect", connect(&url, &WsConfig::default()))
        .await
        .unwrap()
        .split();
    assert_eq!(
        within("ok", cr.read_frame()).await.unwrap(),
        Some(Frame::Text("ok".into()))
    );
    assert_eq!(
        within("binary", cr.read_frame()).await.unwrap(),
        Some(Frame::Binary(vec![1, 2].into()))
    );
    match within("masked frame", cr.read_frame()).await {
        Err(TransportError::Protocol(_)) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(within("client close", server).await.unwrap(), 1002);
}

#[tokio::test]
async fn unmasked_frames_in_the_handshake_segment_pass() {
    const FRAMES: &[u8] = &[0x81, 0x02, b'o', b'k', 0x88, 0x02, 0x03, 0xe8];
    let (url, server) = raw_server(FRAMES).await;
    let (mut cr, _cw) = within("connect", connect(&url, &WsConfig::default()))
        .await
        .unwrap()
        .split();
    assert_eq!(
        within("ok", cr.read_frame()).await.unwrap(),
        Some(Frame::Text("ok".into()))
    );
    assert_eq!(within("close", cr.read_frame()).await.unwrap(), None);
    assert_eq!(cr.close_reason().unwrap().code.0, 1000);
    // The answer is the echo of the server's close.
    assert_eq!(within("client close", server).await.unwrap(), 1000);
}
