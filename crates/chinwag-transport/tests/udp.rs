//! UDP adapter over real loopback sockets.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use chinwag_transport::udp::{self, MAX_IPV4_PAYLOAD, UdpConfig, UdpEndpoint};
use chinwag_transport::{
    CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport, TransportError,
};
use common::{pattern, within};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Clients bind loopback too, so the addresses the endpoint sees are the clients' own.
fn client_config(max: usize) -> UdpConfig {
    let mut c = UdpConfig::default();
    c.max_datagram = max;
    c.local_addr = Some(loopback());
    c
}

fn endpoint_config(max: usize) -> UdpConfig {
    let mut c = UdpConfig::default();
    c.max_datagram = max;
    c
}

fn assert_too_large(r: Result<impl std::fmt::Debug, TransportError>, size: u64, limit: u64) {
    match r {
        Err(TransportError::TooLarge {
            what,
            size: s,
            limit: l,
        }) => {
            assert_eq!((what, s, l), ("datagram", size, limit));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn datagrams_from_two_peers_carry_their_addresses() {
    let endpoint = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let a = udp::connect(addr, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap();
    let b = udp::connect(addr, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    assert_ne!(a_addr, b_addr);
    assert_eq!(a.framing(), Framing::Message);
    assert_eq!(a.peer_addr(), PeerAddr::Ip(addr));
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();

    within(aw.send(Frame::Binary(Bytes::from_static(b"from a"))))
        .await
        .unwrap();
    let (got, from) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!((&got[..], from), (&b"from a"[..], a_addr));
    within(bw.send(Frame::Binary(Bytes::from_static(b"from b"))))
        .await
        .unwrap();
    let (got, from) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!((&got[..], from), (&b"from b"[..], b_addr));

    // Answers go back to the right peer.
    within(endpoint.send_to(b"to b", b_addr)).await.unwrap();
    within(endpoint.send_to(b"to a", a_addr)).await.unwrap();
    assert_eq!(
        within(ar.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"to a")))
    );
    assert_eq!(
        within(br.read_frame()).await.unwrap(),
        Some(Frame::Binary(Bytes::from_static(b"to b")))
    );
}

#[tokio::test]
async fn send_limit_exactly_at_and_one_over() {
    let endpoint = UdpEndpoint::bind(loopback(), endpoint_config(1200))
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (_r, mut w) = udp::connect(addr, &client_config(1200))
        .await
        .unwrap()
        .split();
    within(w.send(Frame::Binary(Bytes::from(pattern(1200)))))
        .await
        .unwrap();
    let (got, _) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!(&got[..], &pattern(1200)[..]);
    // One byte over is refused before anything is sent, and the writer stays usable.
    assert_too_large(
        w.feed(Frame::Binary(Bytes::from(pattern(1201)))).await,
        1201,
        1200,
    );
    assert_too_large(endpoint.send_to(&pattern(1201), addr).await, 1201, 1200);
    within(w.send(Frame::Binary(Bytes::from_static(b"still fine"))))
        .await
        .unwrap();
    let (got, _) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!(&got[..], b"still fine");
}

#[tokio::test]
async fn receive_limit_exactly_at_and_one_over() {
    let endpoint = UdpEndpoint::bind(loopback(), endpoint_config(1200))
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    // A peer that does not respect our limit.
    let rude = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    within(rude.send_to(&pattern(1201), addr)).await.unwrap();
    within(rude.send_to(&pattern(1200), addr)).await.unwrap();
    assert_too_large(within(endpoint.recv_from()).await, 1201, 1200);
    // The over-limit datagram was dropped; the endpoint goes on.
    let (got, from) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!((got.len(), from), (1200, rude.local_addr().unwrap()));

    // The connected reader applies the same limit.
    let client = udp::connect(rude.local_addr().unwrap(), &client_config(1200))
        .await
        .unwrap();
    let client_addr = client.local_addr().unwrap();
    let (mut r, _w) = client.split();
    within(rude.send_to(&pattern(1201), client_addr))
        .await
        .unwrap();
    within(rude.send_to(&pattern(1200), client_addr))
        .await
        .unwrap();
    assert_too_large(within(r.read_frame()).await, 1201, 1200);
    let frame = within(r.read_frame()).await.unwrap().unwrap();
    assert_eq!(frame.payload(), &pattern(1200)[..]);
}

#[tokio::test]
async fn largest_ipv4_datagram_round_trips_and_one_byte_more_is_refused() {
    let endpoint = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let client = udp::connect(addr, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap();
    let (mut r, mut w) = client.split();
    let big = Bytes::from(pattern(MAX_IPV4_PAYLOAD));
    within(w.send(Frame::Binary(big.clone()))).await.unwrap();
    let (got, from) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!(got, big);
    within(endpoint.send_to(&got, from)).await.unwrap();
    assert_eq!(
        within(r.read_frame()).await.unwrap(),
        Some(Frame::Binary(big))
    );
    // A 1 MiB message cannot be one datagram: refused, not truncated.
    assert_too_large(
        w.feed(Frame::Binary(Bytes::from(pattern(1 << 20)))).await,
        1 << 20,
        MAX_IPV4_PAYLOAD as u64,
    );
    assert_too_large(
        w.feed(Frame::Binary(Bytes::from(pattern(MAX_IPV4_PAYLOAD + 1))))
            .await,
        MAX_IPV4_PAYLOAD as u64 + 1,
        MAX_IPV4_PAYLOAD as u64,
    );
}

#[tokio::test]
async fn batch_of_small_datagrams_arrives_intact_and_in_order() {
    // Loopback keeps order; 100 small datagrams stay well inside the default receive buffer.
    const N: usize = 100;
    let endpoint = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (_r, mut w) = udp::connect(addr, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap()
        .split();
    for i in 0..N {
        w.feed(Frame::Binary(Bytes::from(format!("datagram {i}"))))
            .await
            .unwrap();
    }
    within(w.flush()).await.unwrap();
    for i in 0..N {
        let (got, _) = within(endpoint.recv_from()).await.unwrap();
        assert_eq!(got, Bytes::from(format!("datagram {i}")));
    }
}

#[tokio::test]
async fn empty_datagram_is_an_empty_frame() {
    let endpoint = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (_r, mut w) = udp::connect(addr, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap()
        .split();
    within(w.send(Frame::Binary(Bytes::new()))).await.unwrap();
    let (got, _) = within(endpoint.recv_from()).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn vanished_peer_shows_up_as_an_error_not_a_hang() {
    let gone = {
        let e = UdpEndpoint::bind(loopback(), UdpConfig::default())
            .await
            .unwrap();
        e.local_addr().unwrap()
    };
    let (mut r, mut w) = udp::connect(gone, &client_config(MAX_IPV4_PAYLOAD))
        .await
        .unwrap()
        .split();
    within(w.send(Frame::Binary(Bytes::from_static(b"anyone?"))))
        .await
        .unwrap();
    // The kernel's "port unreachable" answer surfaces on the connected socket.
    match within(r.read_frame()).await {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_after_close_are_refused() {
    let endpoint = UdpEndpoint::bind(loopback(), UdpConfig::default())
        .await
        .unwrap();
    let (_r, mut w) = udp::connect(
        endpoint.local_addr().unwrap(),
        &client_config(MAX_IPV4_PAYLOAD),
    )
    .await
    .unwrap()
    .split();
    w.feed(Frame::Binary(Bytes::from_static(b"queued")))
        .await
        .unwrap();
    within(w.close(CloseReason::normal())).await.unwrap();
    let (got, _) = within(endpoint.recv_from()).await.unwrap();
    assert_eq!(&got[..], b"queued");
    assert!(matches!(
        w.feed(Frame::Binary(Bytes::from_static(b"x"))).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(w.flush().await, Err(TransportError::Closed)));
}
