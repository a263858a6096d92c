//! The client's check that server frames are not masked (RFC 6455 §5.1).
//!
//! yawc's client neither refuses a masked frame from the server nor unmasks it, and it drops
//! the mask before a frame leaves its read path, so the check runs beside it: every byte the
//! client reads after the `101` response also goes through a second instance of yawc's own
//! frame decoder, and each decoded frame's head is formatted back by yawc's encoder (with the
//! payload left out) to read its MASK bit. No framing of ours; the cost (one copy of what the
//! client reads) is on the client side only: servers get yawc's own check, which refuses
//! unmasked client frames.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use chinwag_ws::WsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder as _, Encoder as _};
use yawc::codec::{Decoder, Encoder};

/// No masked frame seen (the value of [`FirstMasked`] until one is).
pub(crate) const NONE: u64 = u64::MAX;

/// The index (counted from 0 over every frame the server sent) of its first masked frame, or
/// [`NONE`]: written by the [`Io`] that sees the bytes, read by the reader that gets the frames.
pub(crate) type FirstMasked = Arc<AtomicU64>;

enum Phase {
    /// Skipping the HTTP response head (up to and including its blank line).
    Head,
    /// Decoding frames.
    Frames,
    /// Done: a masked frame was found, or the decoder failed (yawc's own decoder fails on the
    /// same bytes and ends the connection).
    Off,
}

/// The second decoder and what it has seen.
pub(crate) struct MaskCheck {
    phase: Phase,
    buf: BytesMut,
    decoder: Decoder,
    seen: u64,
    first_masked: FirstMasked,
}

impl MaskCheck {
    pub(crate) fn new(first_masked: FirstMasked) -> Self {
        MaskCheck {
            phase: Phase::Head,
            buf: BytesMut::new(),
            decoder: Decoder::new(yawc::Role::Client, usize::MAX),
            seen: 0,
            first_masked,
        }
    }

    fn observe(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Off) {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if matches!(self.phase, Phase::Head) {
            // The server's first bytes are its response head; frames start after it.
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let _ = self.buf.split_to(end + 4);
            self.phase = Phase::Frames;
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(mut frame)) => {
                    *frame.payload_mut() = Bytes::new();
                    let mut head = BytesMut::with_capacity(16);
                    // A server-role encoder adds no mask of its own: the MASK bit it writes
                    // is the frame's.
                    let masked = Encoder::new(yawc::Role::Server)
                        .encode(frame, &mut head)
                        .is_ok()
                        && head.get(1).is_some_and(|b| b & 0x80 != 0);
                    if masked {
                        self.first_masked.store(self.seen, Ordering::Relaxed);
                        self.off();
                        return;
                    }
                    self.seen += 1;
                }
                Ok(None) => return,
                Err(_) => {
                    self.off();
                    return;
                }
            }
        }
    }

    fn off(&mut self) {
        self.phase = Phase::Off;
        self.buf = BytesMut::new();
    }
}

/// The stream under yawc: the connection's stream, with the client's [`MaskCheck`].
pub(crate) struct Io {
    pub(crate) inner: WsStream,
    pub(crate) check: Option<Box<MaskCheck>>,
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(check) = this.check.as_mut() {
            check.observe(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
