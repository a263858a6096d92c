//! In-process pipes.

mod common;

use bytes::Bytes;
use chinwag_transport::pipe::{self, PipeConfig};
use chinwag_transport::{
    Acceptor, CloseCode, CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport,
    TransportError,
};
use common::{pattern, within};

#[tokio::test]
async fn frames_cross_both_ways_with_boundaries_and_kinds_kept() {
    let (a, b) = pipe::pair(&PipeConfig::default());
    assert_eq!(a.framing(), Framing::Message);
    assert_eq!(a.peer_addr(), PeerAddr::Local);
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    within(aw.send(Frame::Text(Bytes::from_static(b"hi"))))
        .await
        .unwrap();
    within(aw.send(Frame::Binary(Bytes::from_static(b"there"))))
        .await
        .unwrap();
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Text(Bytes::from_static(b"hi")))
    );
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"there")))
    );
    within(bw.send(Frame::Binary(Bytes::from_static(b"back"))))
        .await
        .unwrap();
    assert_eq!(
        within(ar.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"back")))
    );
}

#[tokio::test]
async fn one_mib_message_and_a_batch_in_order() {
    let (a, b) = pipe::pair(&PipeConfig::default());
    let (_ar, mut aw) = a.split();
    let (mut br, _bw) = b.split();
    let big = Bytes::from(pattern(1 << 20));
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        aw.send(Frame::Binary(sent)).await?;
        for i in 0..1000u32 {
            aw.feed(Frame::Binary(Bytes::copy_from_slice(&i.to_be_bytes())))
                .await?;
        }
        aw.flush().await?;
        aw.close(CloseReason::normal()).await
    });
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(big))
    );
    for i in 0..1000u32 {
        let f = within(br.read_frame()).await.unwrap().unwrap();
        assert_eq!(f.payload(), &i.to_be_bytes()[..]);
    }
    assert_eq!(within(br.read_frame()).await.unwrap(), None);
    within(writer).await.unwrap().unwrap();
}

#[tokio::test]
async fn close_carries_the_reason_and_reads_stay_none() {
    let (a, b) = pipe::pair(&PipeConfig::default());
    let (_ar, mut aw) = a.split();
    let (mut br, _bw) = b.split();
    let reason = CloseReason::new(CloseCode::GOING_AWAY, "shutting down");
    within(aw.close(reason.clone())).await.unwrap();
    assert!(within(br.read_frame()).await.unwrap().is_none());
    assert_eq!(br.close_reason(), Some(&reason));
    assert!(within(br.read_frame()).await.unwrap().is_none());
    assert!(matches!(
        aw.feed(Frame::Binary(Bytes::new())).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(aw.flush().await, Err(TransportError::Closed)));
    within(aw.close(CloseReason::normal())).await.unwrap();
}

#[tokio::test]
async fn vanished_peer_is_a_reset_and_writes_to_it_fail() {
    let (a, b) = pipe::pair(&PipeConfig::default());
    let (mut ar, mut aw) = a.split();
    drop(b);
    match within(ar.read_frame()).await {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        other => panic!("expected ConnectionReset, got {other:?}"),
    }
    assert!(matches!(
        aw.send(Frame::Binary(Bytes::from_static(b"x"))).await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn pipe_is_bounded() {
    let mut config = PipeConfig::default();
    config.capacity = 2;
    let (a, b) = pipe::pair(&config);
    let (_ar, mut aw) = a.split();
    let (mut br, _bw) = b.split();
    aw.feed(Frame::Binary(Bytes::from_static(b"1")))
        .await
        .unwrap();
    aw.feed(Frame::Binary(Bytes::from_static(b"2")))
        .await
        .unwrap();
    // The third frame must wait for the reader: its first poll is pending.
    {
        let third = aw.feed(Frame::Binary(Bytes::from_static(b"3")));
        tokio::pin!(third);
        tokio::select! {
            biased;
            _ = &mut third => panic!("a full pipe accepted a third frame"),
            _ = std::future::ready(()) => {}
        }
    }
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"1")))
    );
    within(aw.feed(Frame::Binary(Bytes::from_static(b"3"))))
        .await
        .unwrap();
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"2")))
    );
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"3")))
    );
}

#[tokio::test]
async fn connector_and_acceptor() {
    let (connector, mut acceptor) = pipe::listener(&PipeConfig::default());
    assert_eq!(acceptor.local_addr(), Some(PeerAddr::Local));
    let client = within(connector.connect()).await.unwrap();
    let server = within(acceptor.accept()).await.unwrap();
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    within(cw.send(Frame::Binary(Bytes::from_static(b"ping"))))
        .await
        .unwrap();
    let f = within(sr.read_frame()).await.unwrap().unwrap();
    within(sw.send(f)).await.unwrap();
    assert_eq!(
        within(cr.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"ping")))
    );
    drop(connector);
    assert!(matches!(
        within(acceptor.accept()).await,
        Err(TransportError::Closed)
    ));

    let (connector, acceptor) = pipe::listener(&PipeConfig::default());
    drop(acceptor);
    match within(connector.connect()).await {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}
