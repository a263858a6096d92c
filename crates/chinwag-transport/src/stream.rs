//! The reader and writer shared by the byte-stream adapters (TCP, TLS, Unix).
//!
//! Written once, generically: the reader over a [`ReadSource`] (a socket half that can wait for
//! readiness without a buffer, or any `AsyncRead` through [`PollSource`]), the writer over any
//! `AsyncWrite`.
//!
//! Memory: an idle reader holds **no** read buffer. It waits for readiness first, then reserves a
//! chunk (4 KiB to start), and hands the bytes out as `Bytes` without copying. The chunk doubles
//! when a read fills it (up to the configured maximum) and halves again when reads come back small.
//!
//! Syscalls: the writer keeps fed frames as `Bytes` (no copying) and flushes them with vectored
//! writes, up to [`MAX_IOV`] frames per syscall, resuming correctly after partial writes.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::ConnectionPermit;
use crate::{Frame, TransportError};

/// Buffer sizes and write batching shared by the byte-stream adapters (TCP, TLS, Unix).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Bytes reserved for a read once the socket is readable. Default 4 KiB. Values below 64
    /// are raised to 64.
    pub read_chunk_initial: usize,
    /// The largest read chunk: reads that fill their chunk double it up to this cap, so one
    /// [`Frame`] from a byte stream never exceeds it. Default 64 KiB. Values below
    /// `read_chunk_initial` are raised to it.
    pub read_chunk_max: usize,
    /// Bytes fed but not yet flushed at which [`FrameWrite::feed`](crate::FrameWrite::feed)
    /// starts writing on its own, so a writer that never flushes cannot pile up frames without
    /// bound. Default 256 KiB.
    pub write_batch_max: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            read_chunk_initial: 4 * 1024,
            read_chunk_max: 64 * 1024,
            write_batch_max: 256 * 1024,
        }
    }
}

impl StreamConfig {
    /// Sets [`read_chunk_initial`](Self::read_chunk_initial).
    pub fn with_read_chunk_initial(mut self, read_chunk_initial: usize) -> Self {
        self.read_chunk_initial = read_chunk_initial;
        self
    }

    /// Sets [`read_chunk_max`](Self::read_chunk_max).
    pub fn with_read_chunk_max(mut self, read_chunk_max: usize) -> Self {
        self.read_chunk_max = read_chunk_max;
        self
    }

    /// Sets [`write_batch_max`](Self::write_batch_max).
    pub fn with_write_batch_max(mut self, write_batch_max: usize) -> Self {
        self.write_batch_max = write_batch_max;
        self
    }
}

/// The smallest read chunk, whatever the configuration says.
const MIN_CHUNK: usize = 64;

/// Frames per vectored write. Linux accepts up to 1024 (`IOV_MAX`); 64 already amortises the
/// syscall well and keeps the slice array small on the stack.
pub(crate) const MAX_IOV: usize = 64;

/// A readable byte source that the reader drives.
pub(crate) trait ReadSource: Send + 'static {
    /// Waits until a read is likely to make progress, without needing a buffer.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Reads what is available into the spare capacity of `buf` without waiting. `Ok(0)` means
    /// end of stream; `WouldBlock` means nothing is ready (wait with `readable` again).
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

/// A read for tokio sockets that also forgets the readiness when it got less than it had room
/// for (the kernel's queue was empty then), so the next read waits for the next event instead
/// of making a `recv` that returns `EAGAIN` — that was every other syscall of a busy
/// connection. The read runs inside an outer `try_io`, which captured the readiness *before*
/// the `recv`: tokio clears only that readiness, so an event for data that arrived after the
/// `recv` is kept (clearing after the `recv` could lose it, and the connection would hang).
macro_rules! read_and_forget_when_short {
    ($half:expr, $stream_ty:ty, $buf:expr) => {{
        let half = $half;
        let buf: &mut BytesMut = $buf;
        let stream: &$stream_ty = half.as_ref();
        let mut short = None;
        let res = stream.try_io(tokio::io::Interest::READABLE, || {
            let spare = buf.capacity() - buf.len();
            match half.try_read_buf(buf) {
                Ok(n) if n > 0 && n < spare => {
                    short = Some(n);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            }
        });
        match short {
            Some(n) => Ok(n),
            None => res,
        }
    }};
}

impl ReadSource for tokio::net::tcp::OwnedReadHalf {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::tcp::OwnedReadHalf::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        read_and_forget_when_short!(&*self, tokio::net::TcpStream, buf)
    }
}

#[cfg(unix)]
impl ReadSource for tokio::net::unix::OwnedReadHalf {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        tokio::net::unix::OwnedReadHalf::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        read_and_forget_when_short!(&*self, tokio::net::UnixStream, buf)
    }
}

/// Size of the on-stack buffer [`PollSource`] waits with.
const STASH_READ: usize = 4 * 1024;

/// Adapts any `AsyncRead` (a TLS stream half) to [`ReadSource`].
///
/// An `AsyncRead` cannot wait for readiness without a buffer to read into, so `readable` reads
/// into a buffer on the *stack* of the poll (not inside the future, so nothing is held while
/// idle) and keeps only the bytes that arrived. `try_read_buf` hands those over first, then
/// polls the inner reader once with a no-op waker (a `Pending` there just means "not ready").
pub(crate) struct PollSource<R> {
    inner: R,
    stash: BytesMut,
    /// How much `readable` reads at most (never more than the reader's first chunk).
    stash_max: usize,
    eof: bool,
}

impl<R> PollSource<R> {
    pub(crate) fn new(inner: R, config: &StreamConfig) -> Self {
        PollSource {
            inner,
            stash: BytesMut::new(),
            stash_max: config.read_chunk_initial.clamp(MIN_CHUNK, STASH_READ),
            eof: false,
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> ReadSource for PollSource<R> {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        poll_fn(move |cx| {
            if self.eof || !self.stash.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [MaybeUninit::<u8>::uninit(); STASH_READ];
            let mut rb = ReadBuf::uninit(&mut tmp[..self.stash_max]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                self.eof = true;
            } else {
                self.stash.extend_from_slice(rb.filled());
            }
            Poll::Ready(Ok(()))
        })
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut n = 0;
        if !self.stash.is_empty() {
            n = self.stash.len();
            buf.extend_from_slice(&self.stash);
            self.stash = BytesMut::new();
            if buf.capacity() == buf.len() {
                return Ok(n);
            }
        }
        if self.eof {
            return Ok(n);
        }
        let mut cx = Context::from_waker(Waker::noop());
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), &mut cx, buf) {
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                Ok(n)
            }
            Poll::Ready(Ok(more)) => Ok(n + more),
            // Hand over what we have; the error comes again on the next read.
            Poll::Ready(Err(_)) if n > 0 => Ok(n),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending if n > 0 => Ok(n),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Reads chunks of a byte stream as [`Frame::Binary`].
pub(crate) struct StreamReader<S> {
    src: S,
    /// The connection's place in its acceptor's budget (both halves hold one).
    _permit: Option<ConnectionPermit>,
    buf: BytesMut,
    chunk: usize,
    initial: usize,
    max: usize,
    eof: bool,
}

impl<S: ReadSource> StreamReader<S> {
    pub(crate) fn new(src: S, config: &StreamConfig) -> Self {
        let initial = config.read_chunk_initial.max(MIN_CHUNK);
        let max = config.read_chunk_max.max(initial);
        StreamReader {
            src,
            _permit: None,
            buf: BytesMut::new(),
            chunk: initial,
            initial,
            max,
            eof: false,
        }
    }

    /// Holds `permit` for as long as this half lives.
    pub(crate) fn holding(mut self, permit: Option<ConnectionPermit>) -> Self {
        self._permit = permit;
        self
    }

    /// Bytes of read buffer currently held (for tests of idle memory).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub(crate) async fn read_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.eof {
            return Ok(None);
        }
        loop {
            // Left-over room in the last chunk's allocation: use it if data is already there
            // (tokio answers WouldBlock without a syscall when it knows the socket is drained).
            if self.buf.capacity() - self.buf.len() >= MIN_CHUNK
                && let Some(r) = self.try_read()
            {
                return r;
            }
            // Nothing ready: hold no buffer while waiting, so an idle connection costs no read
            // memory at all.
            self.buf = BytesMut::new();
            self.src.readable().await?;
            self.buf.reserve(self.chunk);
            if let Some(r) = self.try_read() {
                return r;
            }
        }
    }

    /// One non-blocking read; `None` when nothing was ready.
    fn try_read(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        let spare = self.buf.capacity() - self.buf.len();
        match self.src.try_read_buf(&mut self.buf) {
            Ok(0) => {
                self.eof = true;
                self.buf = BytesMut::new();
                Some(Ok(None))
            }
            Ok(n) => {
                if n >= spare && spare >= self.chunk {
                    // The read filled a whole chunk: more is probably waiting.
                    self.chunk = (self.chunk * 2).min(self.max);
                } else if n < self.chunk / 4 {
                    self.chunk = (self.chunk / 2).max(self.initial);
                }
                Some(Ok(Some(Frame::Binary(self.buf.split().freeze()))))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) => Some(Err(TransportError::Io(e))),
        }
    }
}

/// Writes fed frames to a byte stream with vectored writes.
pub(crate) struct StreamWriter<W> {
    io: W,
    _permit: Option<ConnectionPermit>,
    queue: VecDeque<Bytes>,
    queued: usize,
    batch_max: usize,
    closed: bool,
}

impl<W: AsyncWrite + Unpin + Send + 'static> StreamWriter<W> {
    pub(crate) fn new(io: W, config: &StreamConfig) -> Self {
        StreamWriter {
            io,
            _permit: None,
            queue: VecDeque::new(),
            queued: 0,
            batch_max: config.write_batch_max.max(1),
            closed: false,
        }
    }

    /// Holds `permit` for as long as this half lives.
    pub(crate) fn holding(mut self, permit: Option<ConnectionPermit>) -> Self {
        self._permit = permit;
        self
    }

    /// The inner writer (for tests that count syscalls).
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &W {
        &self.io
    }

    pub(crate) async fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let bytes = frame.into_payload();
        if bytes.is_empty() {
            return Ok(());
        }
        self.queued += bytes.len();
        self.queue.push_back(bytes);
        if self.queued >= self.batch_max {
            self.write_queued().await?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.write_queued().await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await?;
        Ok(())
    }

    pub(crate) async fn close(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.flush().await;
        self.closed = true;
        self.queue.clear();
        self.queued = 0;
        flushed?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await?;
        Ok(())
    }

    async fn write_queued(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_queued(cx)).await
    }

    /// Writes the queue with as few vectored writes as possible. Cancel safe: progress is
    /// recorded in the queue after every write.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                *slot = IoSlice::new(bytes);
                count += 1;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Implements the seam traits for a newtype over `StreamReader`/`StreamWriter`.
macro_rules! stream_halves {
    ($(#[$rmeta:meta])* $reader:ident($rsrc:ty), $(#[$wmeta:meta])* $writer:ident($wio:ty)) => {
        $(#[$rmeta])*
        pub struct $reader(pub(crate) $crate::stream::StreamReader<$rsrc>);

        impl ::std::fmt::Debug for $reader {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($reader)).finish_non_exhaustive()
            }
        }

        impl $crate::FrameRead for $reader {
            fn read_frame(
                &mut self,
            ) -> impl ::std::future::Future<
                Output = ::std::result::Result<Option<$crate::Frame>, $crate::TransportError>,
            > + Send {
                self.0.read_frame()
            }

            fn close_reason(&self) -> Option<&$crate::CloseReason> {
                None
            }
        }

        $(#[$wmeta])*
        pub struct $writer(pub(crate) $crate::stream::StreamWriter<$wio>);

        impl ::std::fmt::Debug for $writer {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($writer)).finish_non_exhaustive()
            }
        }

        impl $crate::FrameWrite for $writer {
            fn feed(
                &mut self,
                frame: $crate::Frame,
            ) -> impl ::std::future::Future<
                Output = ::std::result::Result<(), $crate::TransportError>,
            > + Send {
                self.0.feed(frame)
            }

            fn flush(
                &mut self,
            ) -> impl ::std::future::Future<
                Output = ::std::result::Result<(), $crate::TransportError>,
            > + Send {
                self.0.flush()
            }

            /// Flushes, then shuts down the write side (a byte stream has no close frame, so
            /// `reason` is not sent; the peer reads end of stream).
            fn close(
                &mut self,
                _reason: $crate::CloseReason,
            ) -> impl ::std::future::Future<
                Output = ::std::result::Result<(), $crate::TransportError>,
            > + Send {
                self.0.close()
            }
        }
    };
}

pub(crate) use stream_halves;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// An `AsyncWrite` that takes at most `limit` bytes per call and counts the calls.
    struct Trickle {
        out: Vec<u8>,
        calls: usize,
        limit: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut left = self.limit;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                left -= take;
                n += take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frames(n: usize) -> (Vec<Frame>, Vec<u8>) {
        let mut all = Vec::new();
        let frames = (0..n)
            .map(|i| {
                let b = format!("frame {i};").into_bytes();
                all.extend_from_slice(&b);
                Frame::Binary(Bytes::from(b))
            })
            .collect();
        (frames, all)
    }

    #[tokio::test]
    async fn batch_of_small_frames_is_few_vectored_writes() {
        let (frames, expected) = frames(640);
        let mut w = StreamWriter::new(
            Trickle {
                out: Vec::new(),
                calls: 0,
                limit: usize::MAX,
            },
            &StreamConfig::default(),
        );
        for f in frames {
            w.feed(f).await.unwrap();
        }
        assert_eq!(
            w.get_ref().calls,
            0,
            "feed must not write below the batch limit"
        );
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().out, expected);
        assert_eq!(w.get_ref().calls, 640 / MAX_IOV);
    }

    #[tokio::test]
    async fn partial_writes_resume_in_the_middle_of_a_frame() {
        let (frames, expected) = frames(300);
        let mut w = StreamWriter::new(
            Trickle {
                out: Vec::new(),
                calls: 0,
                limit: 7,
            },
            &StreamConfig::default(),
        );
        for f in frames {
            w.feed(f).await.unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().out, expected);
        assert_eq!(w.queued, 0);
    }

    #[tokio::test]
    async fn feed_writes_by_itself_past_the_batch_limit() {
        let config = StreamConfig {
            write_batch_max: 100,
            ..StreamConfig::default()
        };
        let mut w = StreamWriter::new(
            Trickle {
                out: Vec::new(),
                calls: 0,
                limit: usize::MAX,
            },
            &config,
        );
        w.feed(Frame::Binary(Bytes::from(vec![1; 60])))
            .await
            .unwrap();
        assert_eq!(w.get_ref().calls, 0);
        w.feed(Frame::Binary(Bytes::from(vec![2; 60])))
            .await
            .unwrap();
        assert_eq!(w.get_ref().out.len(), 120);
    }

    #[tokio::test]
    async fn writes_after_close_are_refused() {
        let mut w = StreamWriter::new(
            Trickle {
                out: Vec::new(),
                calls: 0,
                limit: usize::MAX,
            },
            &StreamConfig::default(),
        );
        w.feed(Frame::Binary(Bytes::from_static(b"bye")))
            .await
            .unwrap();
        w.close().await.unwrap();
        assert_eq!(w.get_ref().out, b"bye");
        assert!(matches!(
            w.feed(Frame::Binary(Bytes::from_static(b"x"))).await,
            Err(TransportError::Closed)
        ));
        w.close().await.unwrap();
    }

    #[tokio::test]
    async fn reader_grows_chunks_to_the_cap_and_holds_nothing_when_idle() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let config = StreamConfig {
            read_chunk_initial: 1024,
            read_chunk_max: 8192,
            ..StreamConfig::default()
        };
        let mut r = StreamReader::new(PollSource::new(b, &config), &config);
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        a.write_all(&data).await.unwrap();
        drop(a);
        let mut got = Vec::new();
        let mut largest = 0;
        while let Some(f) = r.read_frame().await.unwrap() {
            largest = largest.max(f.len());
            assert!(f.len() <= 8192, "chunk of {} bytes over the cap", f.len());
            got.extend_from_slice(f.payload());
        }
        assert_eq!(got, data);
        assert_eq!(largest, 8192, "chunks should grow to the cap under load");
        assert_eq!(r.buffer_capacity(), 0);
        assert!(r.read_frame().await.unwrap().is_none());
    }
}
