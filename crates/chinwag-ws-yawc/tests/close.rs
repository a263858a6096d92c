//! A close frame over the 125-byte control-frame limit (Autobahn 7.3.6): yawc does not check the
//! length and queues an echo; the engine refuses the frame with 1002 instead, and the echo never
//! goes out.

use chinwag::transport::{Acceptor, FrameRead, Transport, TransportError};
use chinwag::ws::yawc::{WsAcceptor, WsConfig};
use chinwag_ws::suite::{raw_handshake, read_close_code, status, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn oversized_close_frame_is_refused_with_1002() {
    let mut acc = WsAcceptor::bind("127.0.0.1:0".parse().unwrap(), WsConfig::default())
        .await
        .unwrap();
    let addr = acc.local_addr();
    let ((mut tcp, head), server) = within("handshake", async {
        tokio::join!(raw_handshake(addr, ""), acc.accept())
    })
    .await;
    assert_eq!(status(&head), 101, "{head}");
    let (mut sr, _sw) = server.unwrap().split();
    // FIN + close, masked (key 0), 126-byte payload: code 1000 and 124 bytes of reason.
    let mut frame = vec![0x88, 0x80 | 126, 0, 126, 0, 0, 0, 0, 0x03, 0xe8];
    frame.extend_from_slice(&[b'a'; 124]);
    tcp.write_all(&frame).await.unwrap();
    match within("oversized close", sr.read_frame()).await {
        Err(TransportError::Protocol(_)) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    // The first (and only) frame back is a close with 1002, then the connection ends.
    assert_eq!(within("close frame", read_close_code(&mut tcp)).await, 1002);
    let mut rest = Vec::new();
    within("eof", tcp.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
}
