//! The client's masking check (yawc's client does not make it; this crate does, with a second
//! instance of yawc's decoder): frames are counted from the first one after the `101`, also
//! when the response and the first frames arrive in one segment, and the frames before a
//! masked one are delivered.

use chinwag::transport::{Frame, FrameRead, Transport, TransportError};
use chinwag::ws::yawc::{WsConfig, WsReader, WsWriter, Yawc, connect};
use chinwag_ws::suite::{read_head, read_raw_frame, switching_protocols, within};
use tokio::io::AsyncWriteExt;

/// Dials a raw server that answers the handshake and, in the same write, sends `frames`; the
/// server's task returns the close code of the client's close frame (0 when it sent none).
/// The client's first message must be the text "ok".
async fn dial_raw_server(
    frames: &'static [u8],
) -> (WsReader, WsWriter, tokio::task::JoinHandle<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let mut out = switching_protocols::<Yawc>(&head);
        out.extend_from_slice(frames);
        tcp.write_all(&out).await.unwrap();
        // The client's frames (a pong for a ping, say) until its close frame.
        while let Some((b0, payload)) = read_raw_frame(&mut tcp).await {
            if b0 & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
        0
    });
    let (mut cr, cw) = within("connect", connect(&url, &WsConfig::default()))
        .await
        .unwrap()
        .split();
    assert_eq!(
        within("ok", cr.read_frame()).await.unwrap(),
        Some(Frame::Text("ok".into()))
    );
    (cr, cw, server)
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
    let (mut cr, _cw, server) = dial_raw_server(FRAMES).await;
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
    let (mut cr, _cw, server) = dial_raw_server(FRAMES).await;
    assert_eq!(within("close", cr.read_frame()).await.unwrap(), None);
    assert_eq!(cr.close_reason().unwrap().code.0, 1000);
    // The answer is the echo of the server's close.
    assert_eq!(within("client close", server).await.unwrap(), 1000);
}
