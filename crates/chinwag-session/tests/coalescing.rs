//! The writer takes everything queued per wake-up and flushes once per batch.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use chinwag_session::{FrameCodec, SessionConfig, spawn_session};
use chinwag_transport::pipe::{self, PipeConfig, PipeReader, PipeTransport, PipeWriter};
use chinwag_transport::{
    CloseReason, Frame, FrameRead, FrameWrite, Framing, PeerAddr, Transport, TransportError,
};
use common::{Recorder, wait_until, within};

/// A pipe whose writer counts `feed` and `flush` calls.
struct Counting {
    inner: PipeTransport,
    feeds: Arc<AtomicUsize>,
    flushes: Arc<AtomicUsize>,
}

struct CountingWriter {
    inner: PipeWriter,
    feeds: Arc<AtomicUsize>,
    flushes: Arc<AtomicUsize>,
}

impl Transport for Counting {
    type Reader = PipeReader;
    type Writer = CountingWriter;
    fn framing(&self) -> Framing {
        Framing::Message
    }
    fn peer_addr(&self) -> PeerAddr {
        PeerAddr::Local
    }
    fn split(self) -> (PipeReader, CountingWriter) {
        let (r, w) = self.inner.split();
        (
            r,
            CountingWriter {
                inner: w,
                feeds: self.feeds,
                flushes: self.flushes,
            },
        )
    }
}

impl FrameWrite for CountingWriter {
    async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.feeds.fetch_add(1, Ordering::SeqCst);
        self.inner.feed(frame).await
    }
    async fn flush(&mut self) -> Result<(), TransportError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.inner.flush().await
    }
    async fn close(&mut self, reason: CloseReason) -> Result<(), TransportError> {
        self.inner.close(reason).await
    }
}

#[tokio::test]
async fn one_flush_per_wake_up() {
    let mut pc = PipeConfig::default();
    pc.capacity = 1000;
    let (ours, theirs) = pipe::pair(&pc);
    let feeds = Arc::new(AtomicUsize::new(0));
    let flushes = Arc::new(AtomicUsize::new(0));
    let transport = Counting {
        inner: ours,
        feeds: feeds.clone(),
        flushes: flushes.clone(),
    };
    let (rec, _rx) = Recorder::new();
    let s = spawn_session(
        transport,
        Arc::new(FrameCodec),
        Arc::new(rec),
        Arc::new(SessionConfig::default()),
    );
    // Queued from this task without yielding: the writer (another task) finds all 500 at
    // once — on a single-threaded runtime it cannot run in between.
    for i in 0..500u32 {
        s.try_send_encoded(chinwag_session::Encoded::frame(Frame::Binary(
            Bytes::copy_from_slice(&i.to_be_bytes()),
        )))
        .unwrap();
    }
    assert_eq!(s.queue_len(), 500);
    wait_until(|| s.stats().messages_out == 500).await;
    assert_eq!(feeds.load(Ordering::SeqCst), 500);
    assert_eq!(
        flushes.load(Ordering::SeqCst),
        1,
        "one flush for the whole batch"
    );
    let (mut rd, _wr) = theirs.split();
    for i in 0..500u32 {
        let f = within(rd.read_frame()).await.unwrap().unwrap();
        assert_eq!(f.payload()[..], i.to_be_bytes());
    }
}
