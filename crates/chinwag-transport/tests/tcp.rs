//! TCP adapter over real loopback sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chinwag_transport::tcp::{self, TcpAcceptor, TcpConfig, TcpTransport};
use chinwag_transport::{
    Acceptor, CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, StreamConfig,
    Transport, TransportError,
};
use common::{read_to_end, within};
use tokio::io::AsyncWriteExt;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A connected (client, server) pair.
async fn pair(config: TcpConfig) -> (TcpTransport, TcpTransport) {
    let mut acceptor = TcpAcceptor::bind(loopback(), config.clone()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let (client, server) =
        within(async { tokio::join!(tcp::connect(addr, &config), acceptor.accept()) }).await;
    (client.unwrap(), server.unwrap())
}

#[tokio::test]
async fn small_round_trip() {
    let (c, s) = pair(TcpConfig::default()).await;
    common::small_round_trip(c, s).await;
}

#[tokio::test]
async fn one_mib_round_trip_in_bounded_chunks() {
    let (c, s) = pair(TcpConfig::default()).await;
    common::large_round_trip(c, s, 64 * 1024).await;
}

#[tokio::test]
async fn read_chunk_limit_is_respected_at_the_boundary() {
    let mut config = TcpConfig::default();
    config.stream = StreamConfig::default();
    config.stream.read_chunk_initial = 1000;
    config.stream.read_chunk_max = 5000;
    let (c, s) = pair(config).await;
    common::large_round_trip(c, s, 5000).await;
}

#[tokio::test]
async fn batch_of_small_frames_arrives_in_order() {
    let (c, s) = pair(TcpConfig::default()).await;
    common::batch_in_order(c, s).await;
}

#[tokio::test]
async fn clean_close_reads_as_ok_none() {
    let (c, s) = pair(TcpConfig::default()).await;
    common::clean_close(c, s).await;
}

#[tokio::test]
async fn both_sides_have_nodelay_and_peer_addresses() {
    let (c, s) = pair(TcpConfig::default()).await;
    assert!(c.get_ref().nodelay().unwrap());
    assert!(s.get_ref().nodelay().unwrap());
    assert_eq!(c.framing(), Framing::Stream);
    assert_eq!(s.peer_addr(), PeerAddr::Ip(c.local_addr().unwrap()));
    assert_eq!(c.peer_addr(), PeerAddr::Ip(s.local_addr().unwrap()));
}

#[tokio::test]
async fn acceptor_reports_its_address() {
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    assert_eq!(acceptor.local_addr(), Some(PeerAddr::Ip(addr)));
    assert_ne!(addr.port(), 0);
}

#[tokio::test]
async fn binding_a_used_port_is_a_clear_error() {
    let first = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = first.local_socket_addr().unwrap();
    let mut config = TcpConfig::default();
    config.reuse_address = false;
    match TcpAcceptor::bind(addr, config) {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("expected AddrInUse, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_an_io_error() {
    let addr = {
        let a = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
        a.local_socket_addr().unwrap()
    };
    let mut config = TcpConfig::default();
    config.connect_timeout = Duration::from_secs(5);
    match within(tcp::connect(addr, &config)).await {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn peer_that_vanishes_mid_frame_ends_the_read_without_hanging() {
    let mut acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let mut raw = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let server = within(acceptor.accept()).await.unwrap();
    let (mut r, _w) = server.split();
    // A length-prefixed frame that claims 100 bytes but carries 10, then an abortive close (RST).
    raw.write_all(&100u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[7; 10]).await.unwrap();
    socket2::SockRef::from(&raw)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(raw);
    let (got, end) = read_to_end(&mut r).await;
    assert!(got.len() <= 14);
    match end {
        // Reset before or after the data was read: both are fine, neither hangs nor panics.
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(()) => {}
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn peer_dropped_without_close_is_end_of_stream() {
    let (c, s) = pair(TcpConfig::default()).await;
    let (mut sr, _sw) = s.split();
    let (cr, mut cw) = c.split();
    within(cw.send(Frame::Binary(Bytes::from_static(b"partial"))))
        .await
        .unwrap();
    drop(cr);
    drop(cw);
    let (got, end) = read_to_end(&mut sr).await;
    assert_eq!(got, b"partial");
    end.unwrap();
}

#[tokio::test]
async fn writing_to_a_vanished_peer_fails_without_hanging() {
    let (c, s) = pair(TcpConfig::default()).await;
    drop(s);
    let (_cr, mut cw) = c.split();
    // The first writes may still be accepted by the kernel; the peer's RST makes a later one
    // fail. Bounded: it must fail well before this many attempts.
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let mut failed = None;
    for _ in 0..1000 {
        if let Err(e) = within(cw.send(Frame::Binary(chunk.clone()))).await {
            failed = Some(e);
            break;
        }
        tokio::task::yield_now().await;
    }
    match failed {
        Some(TransportError::Io(_)) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[tokio::test]
async fn close_reason_is_not_sent_on_byte_streams() {
    let (c, s) = pair(TcpConfig::default()).await;
    let (mut sr, _sw) = s.split();
    let (_cr, mut cw) = c.split();
    within(cw.close(CloseReason::new(
        chinwag_transport::CloseCode::GOING_AWAY,
        "bye",
    )))
    .await
    .unwrap();
    assert!(within(sr.read_frame()).await.unwrap().is_none());
    assert_eq!(sr.close_reason(), None);
}

/// The connection budget at its boundary: `max_connections` are held; the next connection is
/// accepted and closed at once (the client sees the end of its stream, no byte); a place freed
/// by a close is reused.
#[tokio::test]
async fn connection_budget_refuses_past_the_cap_and_reuses_freed_places() {
    let mut config = TcpConfig::default();
    config.max_connections = 3;
    let acceptor = TcpAcceptor::bind(loopback(), config.clone()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut acceptor = acceptor;
        while let Ok(t) = acceptor.accept().await {
            if tx.send(t).is_err() {
                break;
            }
        }
    });
    let mut held = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tcp::connect(addr, &config).await.unwrap());
        held.push(within(rx.recv()).await.unwrap());
    }
    assert_eq!(budget.open(), 3);
    // The fourth: accepted by the kernel, closed by the acceptor.
    let refused = tcp::connect(addr, &config).await.unwrap();
    let (mut r, _w) = refused.split();
    let (bytes, _) = within(read_to_end(&mut r)).await;
    assert!(bytes.is_empty());
    assert_eq!(budget.refused(), 1);
    assert!(rx.try_recv().is_err(), "no transport past the cap");
    // Free one place: both halves must go before it counts as closed.
    let (hr, hw) = held.pop().unwrap().split();
    drop(hr);
    assert_eq!(budget.open(), 3, "the writer half still holds the socket");
    drop(hw);
    assert_eq!(budget.open(), 2);
    let _again = tcp::connect(addr, &config).await.unwrap();
    let t = within(rx.recv()).await.unwrap();
    assert_eq!(budget.open(), 3);
    drop((t, held, clients));
}

/// A reader that forgets readiness after short reads must never lose the event of data that
/// arrives right after its `recv` (that would hang it): 20 000 tiny writes racing the reader,
/// every byte read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reads_never_lose_data_that_arrives_meanwhile() {
    let (client, server) = pair(TcpConfig::default()).await;
    let (mut r, _sw) = server.split();
    let (_cr, mut w) = client.split();
    const WRITES: usize = 20_000;
    let writer = tokio::spawn(async move {
        for i in 0..WRITES {
            w.send(Frame::Binary(Bytes::from(vec![(i % 251) as u8; 7])))
                .await
                .unwrap();
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        w
    });
    let mut got = 0;
    within(async {
        while got < WRITES * 7 {
            got += r.read_frame().await.unwrap().unwrap().len();
        }
    })
    .await;
    assert_eq!(got, WRITES * 7);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn connections_leave_from_the_configured_local_address() {
    let second: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let config = TcpConfig::default().with_local_ip(Some(second));
    let (c, s) = pair(config).await;
    assert_eq!(c.local_addr().unwrap().ip(), second);
    match s.peer_addr() {
        PeerAddr::Ip(a) => assert_eq!(a.ip(), second),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_local_address_of_the_other_family_is_a_clear_error() {
    let acceptor = TcpAcceptor::bind(loopback(), TcpConfig::default()).unwrap();
    let addr = acceptor.local_socket_addr().unwrap();
    let e = tcp::dial(addr, Some("::1".parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
    assert!(e.to_string().contains("::1"), "{e}");
}
