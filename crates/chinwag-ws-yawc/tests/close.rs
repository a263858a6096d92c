//! A close frame over the 125-byte control-frame limit (Autobahn 7.3.6): yawc does not check the
//! length and queues an echo; the engine refuses the frame with 1002 instead, and the echo never
//! goes out.

use std::time::Duration;

use chinwag::transport::{Acceptor, FrameRead, Transport, TransportError};
use chinwag::ws::yawc::{WsAcceptor, WsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test]
async fn oversized_close_frame_is_refused_with_1002() {
    let mut acc = WsAcceptor::bind("127.0.0.1:0".parse().unwrap(), WsConfig::default())
        .await
        .unwrap();
    let addr = acc.local_addr();
    let client = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        tcp
    };
    let (mut tcp, server) = within("handshake", async { tokio::join!(client, acc.accept()) }).await;
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
    let mut hdr = [0u8; 2];
    within("close frame", tcp.read_exact(&mut hdr))
        .await
        .unwrap();
    assert_eq!(hdr[0] & 0x0f, 0x8, "a close frame");
    let len = (hdr[1] & 0x7f) as usize;
    assert!(len < 126);
    let mut payload = vec![0u8; len];
    within("close payload", tcp.read_exact(&mut payload))
        .await
        .unwrap();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    let mut rest = Vec::new();
    within("eof", tcp.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
}
