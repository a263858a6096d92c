//! Deadlines on byte streams under paused time (exact): a message that has started must arrive
//! within `message_timeout`, extended by `message_min_rate`; the gotalk codec says goodbye with
//! `f00000003` on a timeout and with `f00000002` on bad input; a steady large message is not cut.
//!
//! The transport is an in-process pipe that reports `Framing::Stream` (so frames are chunks of a
//! byte stream, as on TCP) and paused time is exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    CloseCause, Codec, LengthDelimited, SessionConfig, WireCodec, spawn_session,
};
use chinwag_transport::pipe::{self, PipeConfig, PipeReader, PipeTransport, PipeWriter};
use chinwag_transport::{Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport};
use common::{Recorder, next_close, next_message, within};

/// A pipe end that calls itself a byte stream.
struct StreamPipe(PipeTransport);

impl Transport for StreamPipe {
    type Reader = PipeReader;
    type Writer = PipeWriter;
    fn framing(&self) -> Framing {
        Framing::Stream
    }
    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Local
    }
    fn split(self) -> (PipeReader, PipeWriter) {
        self.0.split()
    }
}

fn config(timeout: u64, rate: u32) -> SessionConfig {
    let mut cfg = SessionConfig::default();
    cfg.idle_timeout = Some(Duration::from_secs(300));
    cfg.heartbeat_interval = None;
    cfg.message_timeout = Some(Duration::from_secs(timeout));
    cfg.message_min_rate = rate;
    cfg
}

/// Reads everything the session writes until it closes; returns the bytes.
async fn drain(mut rd: PipeReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(f)) = rd.read_frame().await {
        out.extend_from_slice(f.payload());
    }
    out
}

fn spawn<C: Codec>(
    codec: C,
    cfg: SessionConfig,
) -> (
    chinwag_session::Session<C>,
    PipeReader,
    PipeWriter,
    tokio::sync::mpsc::UnboundedReceiver<common::Event<C::In>>,
) {
    let (ours, theirs) = pipe::pair(&PipeConfig::default());
    let (rec, rx) = Recorder::new();
    let s = spawn_session(
        StreamPipe(ours),
        Arc::new(codec),
        Arc::new(rec),
        Arc::new(cfg),
    );
    let (rd, wr) = theirs.split();
    (s, rd, wr, rx)
}

#[tokio::test(start_paused = true)]
async fn a_trickling_peer_is_cut_at_the_message_timeout_with_f3() {
    let (s, rd, mut wr, mut rx) = spawn(WireCodec::default(), config(10, 64 * 1024));
    let reader = tokio::spawn(drain(rd));
    let started = tokio::time::Instant::now();
    // The version, then a request header claiming 100 bytes of payload, one byte a second.
    wr.send(Frame::Binary(Bytes::from_static(b"01r0001004echo00000064")))
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr
                .send(Frame::Binary(Bytes::from_static(b"x")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    assert_eq!(next_close(&mut rx).await, CloseCause::MessageTimeout);
    // Cut at the deadline: 10 s plus a few bytes' worth at 64 KiB/s (well under a second).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "{took:?}"
    );
    let written = within(reader).await.unwrap();
    assert_eq!(
        written, b"01f00000003",
        "the version, then the timeout code"
    );
    assert!(s.is_closed());
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn the_deadline_grows_with_the_bytes_received() {
    // 1 000 B/s minimum: a 30 000-byte message sent at 2 000 B/s takes 15 s (past the 10 s
    // timeout) and arrives; at 500 B/s it is cut (10 s + received / 1 000 B/s).
    for (pace, cut) in [(2_000usize, false), (500, true)] {
        let (_s, _rd, mut wr, mut rx) = spawn(LengthDelimited::default(), config(10, 1_000));
        let len = 30_000u32;
        wr.send(Frame::Binary(Bytes::copy_from_slice(&len.to_be_bytes())))
            .await
            .unwrap();
        let sender = tokio::spawn(async move {
            let mut sent = 0usize;
            while sent < len as usize {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = pace.min(len as usize - sent);
                if wr
                    .send(Frame::Binary(Bytes::from(vec![7u8; n])))
                    .await
                    .is_err()
                {
                    return;
                }
                sent += n;
            }
            // Keep the stream open.
            std::future::pending::<()>().await;
        });
        if cut {
            assert_eq!(next_close(&mut rx).await, CloseCause::MessageTimeout);
        } else {
            assert_eq!(next_message(&mut rx).await.len(), len as usize);
        }
        sender.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn whole_messages_never_start_the_deadline() {
    // A message every 9 s for a minute: each arrives whole, nothing is under way between them.
    let (s, _rd, mut wr, mut rx) = spawn(LengthDelimited::default(), config(5, 64 * 1024));
    for i in 0..7u8 {
        tokio::time::sleep(Duration::from_secs(9)).await;
        let mut m = 1u32.to_be_bytes().to_vec();
        m.push(i);
        wr.send(Frame::Binary(Bytes::from(m))).await.unwrap();
        assert_eq!(next_message(&mut rx).await, Bytes::from(vec![i]));
    }
    assert!(!s.is_closing());
}

#[tokio::test(start_paused = true)]
async fn idle_close_says_f3_and_bad_input_f2() {
    let mut cfg = config(10, 64 * 1024);
    cfg.idle_timeout = Some(Duration::from_secs(30));
    let (_s, rd, _wr, mut rx) = spawn(WireCodec::default(), cfg.clone());
    let reader = tokio::spawn(drain(rd));
    assert_eq!(next_close(&mut rx).await, CloseCause::IdleTimeout);
    assert_eq!(within(reader).await.unwrap(), b"01f00000003");

    let (_s, rd, mut wr, mut rx) = spawn(WireCodec::default(), cfg);
    let reader = tokio::spawn(drain(rd));
    wr.send(Frame::Binary(Bytes::from_static(b"01x")))
        .await
        .unwrap();
    assert!(matches!(
        next_close(&mut rx).await,
        CloseCause::ProtocolError(_)
    ));
    assert_eq!(within(reader).await.unwrap(), b"01f00000002");
}
