//! Unix domain socket adapter over real sockets in a temporary directory.
#![cfg(unix)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chinwag_transport::unix::{self, UnixAcceptor, UnixConfig, UnixTransport};
use chinwag_transport::{
    Acceptor, Frame, FrameWrite, Framing, PeerAddr, Transport, TransportError,
};
use common::{read_to_end, within};
use tokio::io::AsyncWriteExt;

/// A connected (client, server) pair; the directory must outlive them.
async fn pair() -> (tempfile::TempDir, UnixTransport, UnixTransport) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chinwag.sock");
    let mut acceptor = UnixAcceptor::bind(&path, UnixConfig::default()).unwrap();
    let config = UnixConfig::default();
    let (client, server) =
        within(async { tokio::join!(unix::connect(&path, &config), acceptor.accept()) }).await;
    (dir, client.unwrap(), server.unwrap())
}

#[tokio::test]
async fn small_round_trip() {
    let (_dir, c, s) = pair().await;
    common::small_round_trip(c, s).await;
}

#[tokio::test]
async fn one_mib_round_trip_in_bounded_chunks() {
    let (_dir, c, s) = pair().await;
    common::large_round_trip(c, s, 64 * 1024).await;
}

#[tokio::test]
async fn batch_of_small_frames_arrives_in_order() {
    let (_dir, c, s) = pair().await;
    common::batch_in_order(c, s).await;
}

#[tokio::test]
async fn clean_close_reads_as_ok_none() {
    let (_dir, c, s) = pair().await;
    common::clean_close(c, s).await;
}

#[tokio::test]
async fn peer_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("addr.sock");
    let mut acceptor = UnixAcceptor::bind(&path, UnixConfig::default()).unwrap();
    assert_eq!(
        acceptor.local_addr(),
        Some(PeerAddr::Unix(Some(path.clone())))
    );
    assert_eq!(acceptor.path(), path);
    let config = UnixConfig::default();
    let (c, s) =
        within(async { tokio::join!(unix::connect(&path, &config), acceptor.accept()) }).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.framing(), Framing::Stream);
    assert_eq!(c.peer_addr(), PeerAddr::Unix(Some(path)));
    // Clients are unnamed.
    assert_eq!(s.peer_addr(), PeerAddr::Unix(None));
}

#[tokio::test]
async fn binding_an_existing_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.sock");
    let _first = UnixAcceptor::bind(&path, UnixConfig::default()).unwrap();
    match UnixAcceptor::bind(&path, UnixConfig::default()) {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("expected AddrInUse, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_a_missing_path_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = UnixConfig::default();
    config.connect_timeout = Duration::from_secs(5);
    match within(unix::connect(dir.path().join("nobody.sock"), &config)).await {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn peer_that_vanishes_mid_frame_ends_the_read_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vanish.sock");
    let mut acceptor = UnixAcceptor::bind(&path, UnixConfig::default()).unwrap();
    let mut raw = within(tokio::net::UnixStream::connect(&path))
        .await
        .unwrap();
    let server = within(acceptor.accept()).await.unwrap();
    let (mut r, _w) = server.split();
    raw.write_all(&100u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[7; 10]).await.unwrap();
    drop(raw);
    let (got, end) = read_to_end(&mut r).await;
    assert_eq!(got.len(), 14);
    end.unwrap();
}

#[tokio::test]
async fn writes_after_close_are_refused() {
    let (_dir, c, _s) = pair().await;
    let (_r, mut w) = c.split();
    within(w.close(chinwag_transport::CloseReason::normal()))
        .await
        .unwrap();
    assert!(matches!(
        w.send(Frame::Binary(Bytes::from_static(b"late"))).await,
        Err(TransportError::Closed)
    ));
}
