//! [`WsStream`]: the byte stream under a WebSocket, whichever way it was obtained.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The byte stream a WebSocket runs on: an HTTP connection upgraded by hyper (server side, and
/// fastwebsockets' client), a plain TCP stream, or TLS over TCP (`wss://` clients).
#[derive(Debug)]
#[non_exhaustive]
pub enum WsStream {
    /// A connection handed over by hyper after `101 Switching Protocols`.
    Upgraded(TokioIo<Upgraded>),
    /// Plain TCP (`ws://`).
    Tcp(TcpStream),
    /// TLS over TCP (`wss://`).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Upgraded(s) => Pin::new(s).poll_read(cx, buf),
            WsStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsStream::Upgraded(s) => Pin::new(s).poll_write(cx, buf),
            WsStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsStream::Upgraded(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WsStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WsStream::Upgraded(s) => s.is_write_vectored(),
            WsStream::Tcp(s) => s.is_write_vectored(),
            WsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Upgraded(s) => Pin::new(s).poll_flush(cx),
            WsStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsStream::Upgraded(s) => Pin::new(s).poll_shutdown(cx),
            WsStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the first write into an empty [`CoalescingWriter`] reserves.
const FIRST_RESERVE: usize = 2048;

/// A write buffer that lets many small writes go out in one syscall: writes are appended until
/// `limit` bytes are pending (large writes then go straight through), and `flush` writes
/// everything. The buffer is allocated on demand and released after each flush, so an idle
/// connection holds no write buffer at all.
#[derive(Debug)]
pub struct CoalescingWriter<W> {
    inner: W,
    buf: Vec<u8>,
    pos: usize,
    limit: usize,
    shutdown: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> CoalescingWriter<W> {
    /// Wraps `inner`, buffering up to `limit` bytes.
    pub fn new(inner: W, limit: usize) -> Self {
        CoalescingWriter {
            inner,
            buf: Vec::new(),
            pos: 0,
            limit: limit.max(1),
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A switch that turns the next `flush` into flush-then-shutdown, for engines that own
    /// the writer and expose only `flush`.
    pub fn shutdown_switch(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// The first write into the (released) buffer reserves room for a batch of small frames at
    /// once, instead of growing it a frame (or a frame's header) at a time.
    fn reserve_first(&mut self, len: usize) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(len.max(FIRST_RESERVE).min(self.limit));
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.buf.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.pos..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        // Release the memory: an idle connection should not keep a batch-sized buffer.
        self.buf = Vec::new();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CoalescingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.buf.len() + data.len() > me.limit {
            match me.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if data.len() >= me.limit {
                return Pin::new(&mut me.inner).poll_write(cx, data);
            }
        }
        me.reserve_first(data.len());
        me.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if me.buf.len() + total > me.limit {
            match me.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            if total >= me.limit {
                return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
            }
        }
        me.reserve_first(total);
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_drain(cx) {
            Poll::Ready(Ok(())) if me.shutdown.load(Ordering::Relaxed) => {
                Pin::new(&mut me.inner).poll_shutdown(cx)
            }
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match me.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// Bytes read per syscall by [`ReadAhead`] when the caller offers a smaller buffer.
const READ_AHEAD: usize = 32 << 10;

/// Lets an engine keep a small read buffer without paying one syscall per small read: when the
/// caller asks for less than 32 KiB, up to 32 KiB are read into a stack buffer, the caller gets
/// what fits, and the rest is kept in a heap buffer of exactly that size until it has been
/// consumed (then freed). Idle connections therefore hold no read-ahead memory.
///
/// tungstenite reads at most `read_buffer_size` bytes per call, even into a buffer it has
/// already grown for a large frame; this wrapper is what makes a 1 KiB `read_buffer_size` cheap.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    // A boxed slice, not a `Vec`: 8 bytes less in every connection's engine state, which
    // takes tungstenite's shared halves from 392 to 384 bytes, a jemalloc size class lower.
    pending: Box<[u8]>,
    pos: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            pending: Box::default(),
            pos: 0,
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.pending.len() {
            let n = buf.remaining().min(me.pending.len() - me.pos);
            buf.put_slice(&me.pending[me.pos..me.pos + n]);
            me.pos += n;
            if me.pos == me.pending.len() {
                me.pending = Box::default();
                me.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= READ_AHEAD {
            return Pin::new(&mut me.inner).poll_read(cx, buf);
        }
        let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); READ_AHEAD];
        let mut ahead = ReadBuf::uninit(&mut storage);
        match Pin::new(&mut me.inner).poll_read(cx, &mut ahead) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let filled = ahead.filled();
        let n = buf.remaining().min(filled.len());
        buf.put_slice(&filled[..n]);
        if n < filled.len() {
            me.pending = filled[n..].into();
            me.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
