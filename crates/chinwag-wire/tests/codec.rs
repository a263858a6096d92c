//! The tokio-util codec over an in-memory duplex: Framed<_, StreamCodec> speaks gotalk both ways.

use bytes::Bytes;
use chinwag_wire::{Message, Name, RequestId, StreamCodec, Version, WireError};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

#[tokio::test]
async fn framed_codec_round_trip_and_version_check() {
    let (a, b) = tokio::io::duplex(64);
    let mut a = Framed::new(a, StreamCodec::default());
    let mut b = Framed::new(b, StreamCodec::default());
    a.send(Version).await.unwrap();
    let req = Message::SingleRequest {
        id: RequestId(*b"0001"),
        op: Name::from_static("echo"),
        // Larger than the duplex buffer, so the decoder must resume across reads.
        payload: Bytes::from(vec![b'x'; 1000]),
    };
    // Send and receive concurrently: the payload does not fit the duplex buffer.
    let (sent, got) = tokio::join!(a.send(req.clone()), b.next());
    sent.unwrap();
    assert_eq!(got.unwrap().unwrap(), req);

    b.send(Version).await.unwrap();
    b.send(Message::Heartbeat { load: 1, time: 2 })
        .await
        .unwrap();
    assert_eq!(
        a.next().await.unwrap().unwrap(),
        Message::Heartbeat { load: 1, time: 2 }
    );
}

#[tokio::test]
async fn truncated_stream_end_is_an_error_not_a_hang() {
    let (a, b) = tokio::io::duplex(64);
    let mut b = Framed::new(b, StreamCodec::default());
    let mut a = a;
    tokio::io::AsyncWriteExt::write_all(&mut a, b"01Ridid00000009abc")
        .await
        .unwrap();
    drop(a);
    match b.next().await {
        Some(Err(WireError::Decode(e))) => assert!(e.to_string().contains("truncated"), "{e}"),
        other => panic!("expected a truncation error, got {other:?}"),
    }
}
