//! Helpers shared by the adapter tests: a safety-net timeout, an echo server loop, and the
//! checks every byte-stream transport must pass.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chinwag_transport::{
    CloseReason, Frame, FrameRead, FrameWrite, Framing, Transport, TransportError,
};

/// Only a safety net so a broken test fails instead of hanging; nothing waits for it.
pub const SAFETY: Duration = Duration::from_secs(30);

/// Awaits `f`, failing the test if it takes longer than [`SAFETY`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(SAFETY, f)
        .await
        .expect("safety-net timeout: the test hung")
}

/// Deterministic test bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Reads chunks until exactly `n` bytes arrived (panics on early end of stream).
pub async fn read_exactly<R: FrameRead>(r: &mut R, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match within(r.read_frame()).await {
            Ok(Some(f)) => out.extend_from_slice(f.payload()),
            Ok(None) => panic!("end of stream after {} of {n} bytes", out.len()),
            Err(e) => panic!("read error after {} of {n} bytes: {e}", out.len()),
        }
    }
    assert_eq!(out.len(), n, "more bytes than expected");
    out
}

/// Reads until end of stream or error; returns the bytes and how it ended.
pub async fn read_to_end<R: FrameRead>(r: &mut R) -> (Vec<u8>, Result<(), TransportError>) {
    let mut out = Vec::new();
    loop {
        match within(r.read_frame()).await {
            Ok(Some(f)) => out.extend_from_slice(f.payload()),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Echoes every frame back, then closes when the peer closes.
pub async fn echo<T: Transport>(t: T) -> Result<(), TransportError> {
    let (mut r, mut w) = t.split();
    while let Some(frame) = r.read_frame().await? {
        w.send(frame).await?;
    }
    w.close(CloseReason::normal()).await
}

/// A small message and its echo.
pub async fn small_round_trip<C: Transport, S: Transport>(client: C, server: S) {
    assert_eq!(client.framing(), Framing::Stream);
    let echo = tokio::spawn(echo(server));
    let (mut r, mut w) = client.split();
    within(w.send(Frame::Binary(Bytes::from_static(b"hello"))))
        .await
        .unwrap();
    assert_eq!(read_exactly(&mut r, 5).await, b"hello");
    within(w.close(CloseReason::normal())).await.unwrap();
    let (rest, end) = read_to_end(&mut r).await;
    assert!(rest.is_empty());
    end.unwrap();
    within(echo).await.unwrap().unwrap();
}

/// 1 MiB in one frame, echoed while it is still being written; no chunk over `max_chunk`.
pub async fn large_round_trip<C: Transport, S: Transport>(client: C, server: S, max_chunk: usize) {
    let echo = tokio::spawn(echo(server));
    let (mut r, mut w) = client.split();
    let data = pattern(1 << 20);
    let payload = Bytes::from(data.clone());
    let writer = tokio::spawn(async move {
        w.send(Frame::Binary(payload)).await?;
        w.close(CloseReason::normal()).await
    });
    let mut got = Vec::new();
    while let Some(f) = within(r.read_frame()).await.unwrap() {
        assert!(f.len() <= max_chunk, "chunk of {} bytes", f.len());
        got.extend_from_slice(f.payload());
    }
    assert!(
        got == data,
        "1 MiB came back different ({} bytes)",
        got.len()
    );
    within(writer).await.unwrap().unwrap();
    within(echo).await.unwrap().unwrap();
}

/// Many small frames fed, then flushed once: all arrive, intact and in order.
pub async fn batch_in_order<C: Transport, S: Transport>(client: C, server: S) {
    const N: usize = 10_000;
    let (mut sr, _sw) = server.split();
    let (_cr, mut cw) = client.split();
    let mut expected = Vec::new();
    let writer = async {
        for i in 0..N {
            let line = format!("{i:08}\n").into_bytes();
            expected.extend_from_slice(&line);
            cw.feed(Frame::Binary(Bytes::from(line))).await?;
        }
        cw.flush().await?;
        cw.close(CloseReason::normal()).await
    };
    let (written, (got, end)) = within(async { tokio::join!(writer, read_to_end(&mut sr)) }).await;
    written.unwrap();
    end.unwrap();
    assert_eq!(got.len(), N * 9);
    assert!(got == expected, "frames arrived out of order or damaged");
}

/// A clean close is `Ok(None)` (and stays so); the other direction still works (half close).
pub async fn clean_close<C: Transport, S: Transport>(client: C, server: S) {
    let (mut sr, mut sw) = server.split();
    let (mut cr, mut cw) = client.split();
    within(cw.send(Frame::Binary(Bytes::from_static(b"last words"))))
        .await
        .unwrap();
    within(cw.close(CloseReason::normal())).await.unwrap();
    assert!(matches!(
        cw.feed(Frame::Binary(Bytes::from_static(b"x"))).await,
        Err(TransportError::Closed)
    ));
    let (got, end) = read_to_end(&mut sr).await;
    assert_eq!(got, b"last words");
    end.unwrap();
    assert!(within(sr.read_frame()).await.unwrap().is_none());
    assert!(sr.close_reason().is_none());
    // The server can still answer on its own half.
    within(sw.send(Frame::Binary(Bytes::from_static(b"bye"))))
        .await
        .unwrap();
    within(sw.close(CloseReason::normal())).await.unwrap();
    let (got, end) = read_to_end(&mut cr).await;
    assert_eq!(got, b"bye");
    end.unwrap();
}
