//! WebSocket transport for chinwag on **yawc**, behind the [`chinwag_transport`] seam.
//!
//! Same API and behaviour as `chinwag-ws-tungstenite` and `chinwag-ws-fastwebsockets`: all three
//! are built on the engine-neutral [`chinwag_ws`] crate ([`WsConfig`], [`OriginPolicy`], the
//! hyper upgrade, [`WsAcceptor`], dialing, keepalive and the close handshake); only the RFC 6455
//! framing is yawc's (yawc also implements permessage-deflate, RFC 7692). This crate uses
//! yawc's per-frame layer (`Streaming`: control frames, pongs, close echoes) and adds the
//! reassembly of fragmented messages with the message-size limit and incremental UTF-8 checks,
//! outbound fragmentation by [`WsConfig::fragment_size`], and on the client the check that the
//! server's frames are not masked (yawc's client does not make it).
//!
//! yawc is MPL-2.0 (a file-level copyleft). This crate depends on `chinwag-yawc`, yawc 0.5.0 with
//! a small patch of ours (`vendor/yawc/CHINWAG.md` in the repository: sending a frame compressed
//! once for many connections, and an inflate ratio limit), under the same license.
//!
//! With [`DeflateConfig::compress_once`](chinwag_ws::DeflateConfig::compress_once) (the
//! default), a server compresses a message handed to many connections once and shares the
//! compressed frame ([`deflate_stats`] counts it); see [`compress_once`].
//!
//! ```
//! use chinwag::transport::{Acceptor, CloseReason, Frame, FrameRead, FrameWrite, Transport};
//! use chinwag::ws::yawc::{WsAcceptor, WsConfig, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut acceptor = WsAcceptor::bind("127.0.0.1:0".parse()?, WsConfig::default()).await?;
//! let url = format!("ws://{}/", acceptor.local_addr());
//! let server = tokio::spawn(async move {
//!     let (mut r, mut w) = acceptor.accept().await?.split();
//!     while let Some(frame) = r.read_frame().await? {
//!         w.send(frame).await?; // echo
//!     }
//!     Ok::<_, chinwag::transport::TransportError>(())
//! });
//! let (mut r, mut w) = connect(&url, &WsConfig::default()).await?.split();
//! w.send(Frame::Text("hello".into())).await?;
//! assert_eq!(r.read_frame().await?, Some(Frame::Text("hello".into())));
//! w.close(CloseReason::normal()).await?;
//! server.await??;
//! # Ok(())
//! # }
//! ```

pub mod compress_once;
mod deflate;
mod masking;
mod read;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use chinwag_transport::TransportError;
use chinwag_ws::{self as common, Engine, Outgoing, RawWrite, Role, WsStream};
pub use chinwag_ws::{
    ConnectOptions, HostPolicy, HttpFallback, OriginPolicy, UpgradeError, WsConfig,
    is_upgrade_request, tls_config_with_roots,
};
use futures_util::Sink;
use yawc::streaming::Streaming;
use yawc::{OpCode, Options, WebSocket, WebSocketError};

pub use compress_once::{DeflateStats, deflate_stats};
pub use deflate::DEFLATE_POOL_CAPACITY;
use masking::{Io, MaskCheck};
pub use read::YawcRead;

/// The yawc engine (a marker type for the generic [`chinwag_ws`] types).
#[derive(Debug, Clone, Copy, Default)]
pub struct Yawc;

chinwag_ws::engine_api!(Yawc, "yawc");

/// The yawc connection both halves share. Each poll takes the lock briefly and never holds it
/// across an await; yawc keeps separate wakers for its read and write sides.
struct Conn {
    ws: Streaming<Io>,
    /// yawc queued a close frame of its own: the echo of the peer's close, or the close it
    /// sends when it fails a read. It goes out with the next flush, instead of ours; messages
    /// fed before that flush are written ahead of it (past yawc's queue), as they were fed
    /// before the close.
    yawc_close: bool,
    /// A close frame (ours or yawc's) was handed to yawc: nothing of yawc's queue is pushed
    /// out by us after it.
    close_sent: bool,
    /// What yawc queued must never go out (the echo of a close frame whose payload is over the
    /// 125-byte control-frame limit, or its 1003 for an unknown opcode: we close with 1002
    /// instead): our frames are written past its queue.
    bypass_queue: bool,
}

type Shared = Arc<Mutex<Conn>>;

fn lock(conn: &Shared) -> MutexGuard<'_, Conn> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// yawc's options for `cfg`. yawc refuses a frame whose payload is `>=` its limit, and applies
/// that limit to a frame's payload after inflating it too; +1 lets a frame of exactly
/// [`WsConfig::max_frame_size`] pass. The message limit is checked here, while reassembling.
pub(crate) fn options(cfg: &WsConfig) -> Options {
    Options::default()
        .with_max_payload_read(cfg.max_frame_size.saturating_add(1))
        .with_max_read_buffer(cfg.max_message_size.saturating_add(1))
        .with_read_buffer_capacity(cfg.read_buffer_size.max(1))
        .with_backpressure_boundary(cfg.write_buffer_size.max(1))
}

fn halves(
    ws: Streaming<Io>,
    role: Role,
    cfg: &WsConfig,
    first_masked: Option<masking::FirstMasked>,
    share: Option<Arc<str>>,
) -> (YawcRead, YawcWrite) {
    let conn = Arc::new(Mutex::new(Conn {
        ws,
        yawc_close: false,
        close_sent: false,
        bypass_queue: false,
    }));
    (
        YawcRead::new(conn.clone(), role, cfg, first_masked),
        YawcWrite {
            conn,
            fragment: cfg.fragment_size.max(1),
            threshold: cfg.deflate.as_ref().map_or(usize::MAX, |d| d.threshold),
            share,
        },
    )
}

fn yawc_role(role: Role) -> yawc::Role {
    match role {
        Role::Server => yawc::Role::Server,
        Role::Client => yawc::Role::Client,
    }
}

fn handshake_error(e: WebSocketError) -> TransportError {
    match e {
        WebSocketError::IoError(e) => TransportError::Io(e),
        other => TransportError::Handshake(other.to_string()),
    }
}

impl Engine for Yawc {
    type Read = YawcRead;
    type Write = YawcWrite;
    const NAME: &'static str = "yawc";

    fn accept_key(key: &[u8]) -> String {
        // yawc computes the accept value only inside its `upgrade`: run that on a request
        // carrying just the key and read the header back (no RFC 6455 code of ours).
        let mut req = http::Request::new(());
        let h = req.headers_mut();
        if let Ok(v) = http::HeaderValue::from_bytes(key) {
            h.insert(http::header::SEC_WEBSOCKET_KEY, v);
        }
        h.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            http::HeaderValue::from_static("13"),
        );
        WebSocket::<yawc::HttpStream>::upgrade(&mut req)
            .ok()
            .and_then(|(resp, _)| {
                resp.headers()
                    .get(http::header::SEC_WEBSOCKET_ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    async fn wrap(stream: WsStream, role: Role, cfg: &WsConfig) -> (YawcRead, YawcWrite) {
        Self::wrap_agreed(stream, role, cfg, None).await
    }

    fn negotiate(offers: &[&str], cfg: &WsConfig) -> Option<String> {
        deflate::negotiate(offers, cfg)
    }

    async fn wrap_agreed(
        stream: WsStream,
        role: Role,
        cfg: &WsConfig,
        agreed: Option<String>,
    ) -> (YawcRead, YawcWrite) {
        let io = Io {
            inner: stream,
            check: None,
        };
        // yawc's only error here is an agreed deflate that `options` did not enable, which
        // `deflate::options` always does when an extension was agreed.
        let ws = match &agreed {
            Some(ext) => WebSocket::from_stream_with_extensions(
                io,
                yawc_role(role),
                Some(ext),
                deflate::options(cfg),
            ),
            None => WebSocket::from_stream(io, yawc_role(role), options(cfg)),
        }
        .expect("deflate is enabled whenever an extension was agreed");
        // Compress once: connections that agreed the same parameters share compressed frames.
        let share = agreed
            .filter(|_| {
                role == Role::Server && cfg.deflate.as_ref().is_some_and(|d| d.compress_once)
            })
            .map(Arc::from);
        halves(ws.into_streaming(), role, cfg, None, share)
    }

    async fn client_handshake(
        stream: WsStream,
        request: http::Request<()>,
        cfg: &WsConfig,
    ) -> Result<(YawcRead, YawcWrite), TransportError> {
        let url = url::Url::parse(&request.uri().to_string())
            .map_err(|e| TransportError::Handshake(format!("bad URL: {e}")))?;
        let mut builder = yawc::HttpRequest::builder();
        for (name, value) in request.headers() {
            builder = builder.header(name, value.clone());
        }
        let first_masked = Arc::new(AtomicU64::new(masking::NONE));
        let io = Io {
            inner: stream,
            check: Some(Box::new(MaskCheck::new(first_masked.clone()))),
        };
        // With `WsConfig::deflate`, yawc offers permessage-deflate and applies the answer.
        let ws = WebSocket::handshake_with_request(url, io, deflate::options(cfg), builder)
            .await
            .map_err(handshake_error)?;
        Ok(halves(
            ws.into_streaming(),
            Role::Client,
            cfg,
            Some(first_masked),
            None,
        ))
    }
}

fn map_write_err(e: WebSocketError) -> TransportError {
    match e {
        WebSocketError::ConnectionClosed => TransportError::Closed,
        WebSocketError::IoError(e) => TransportError::Io(e),
        other => TransportError::Protocol(other.to_string()),
    }
}

/// yawc's `poll_ready`, which also pushes out the frames yawc queued itself (pongs, close
/// echoes); skipped when that queue must not go out, or (for a message, `data`) must not go out
/// yet: the frame then goes straight into yawc's write buffer, which its sink accepts.
fn poll_ready(
    conn: &mut Conn,
    cx: &mut Context<'_>,
    data: bool,
) -> Poll<Result<(), TransportError>> {
    if conn.bypass_queue || (data && conn.yawc_close) {
        return Poll::Ready(Ok(()));
    }
    Pin::new(&mut conn.ws).poll_ready(cx).map_err(map_write_err)
}

/// yawc's writing side (used through [`WsWriter`]).
pub struct YawcWrite {
    conn: Shared,
    fragment: usize,
    /// Messages shorter than this are sent uncompressed ([`chinwag_ws::DeflateConfig::threshold`]).
    threshold: usize,
    /// The agreed permessage-deflate parameters when this connection shares compressed frames
    /// (compress once); `None` when it does not, or once yawc said it cannot.
    share: Option<Arc<str>>,
}

impl std::fmt::Debug for YawcWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YawcWrite").finish_non_exhaustive()
    }
}

impl YawcWrite {
    /// The frame to send for the whole message `frame` (its payload `payload`): with compress
    /// once, the compressed frame another connection prepared, or one prepared here and kept for
    /// the others; otherwise `frame` itself (yawc then compresses it, or not, as usual).
    fn shared(
        &mut self,
        frame: yawc::Frame,
        payload: &Bytes,
    ) -> Result<yawc::Frame, TransportError> {
        let Some(params) = &self.share else {
            return Ok(frame);
        };
        if payload.len() < self.threshold {
            return Ok(frame);
        }
        if let Some(prepared) = compress_once::lookup(params, frame.opcode(), payload) {
            return Ok(prepared);
        }
        let prepared = lock(&self.conn).ws.prepare(&frame).map_err(map_write_err)?;
        match prepared {
            Some(p) => {
                compress_once::insert(params, payload.clone(), &p);
                Ok(p)
            }
            None => {
                // yawc keeps its window between messages here: nothing to share, ever.
                self.share = None;
                Ok(frame)
            }
        }
    }

    async fn send(&self, frame: yawc::Frame) -> Result<(), TransportError> {
        let mut frame = Some(frame);
        poll_fn(|cx| {
            let mut conn = lock(&self.conn);
            ready!(poll_ready(&mut conn, cx, true))?;
            let f = frame.take().expect("polled after completion");
            Poll::Ready(Pin::new(&mut conn.ws).start_send(f).map_err(map_write_err))
        })
        .await
    }

    /// Sends our close frame, unless yawc queued its own (then that one goes out instead:
    /// one close frame per connection).
    async fn close(
        &self,
        reason: Option<chinwag_transport::CloseReason>,
    ) -> Result<(), TransportError> {
        let mut frame = Some(match reason {
            Some(r) => yawc::Frame::close(
                yawc::close::CloseCode::from(r.code.0),
                common::truncate_reason(&r.reason),
            ),
            None => yawc::Frame::from((OpCode::Close, Bytes::new())),
        });
        poll_fn(|cx| {
            let mut conn = lock(&self.conn);
            if conn.close_sent {
                return Poll::Ready(Ok(()));
            }
            ready!(poll_ready(&mut conn, cx, false))?;
            conn.close_sent = true;
            match frame.take() {
                Some(f) if !conn.yawc_close => {
                    Poll::Ready(Pin::new(&mut conn.ws).start_send(f).map_err(map_write_err))
                }
                _ => Poll::Ready(Ok(())),
            }
        })
        .await
    }
}

impl RawWrite for YawcWrite {
    async fn feed(&mut self, out: Outgoing) -> Result<(), TransportError> {
        match out {
            Outgoing::Message(frame) => {
                let (text, data) = match frame {
                    chinwag_transport::Frame::Text(b) => (true, b),
                    chinwag_transport::Frame::Binary(b) => (false, b),
                };
                let first = |data: Bytes| {
                    if text {
                        yawc::Frame::text(data)
                    } else {
                        yawc::Frame::binary(data)
                    }
                };
                if data.len() <= self.fragment {
                    let frame = self.shared(first(data.clone()), &data)?;
                    return self.send(frame).await;
                }
                let mut offset = 0;
                while offset < data.len() {
                    let end = (offset + self.fragment).min(data.len());
                    let chunk = data.slice(offset..end);
                    let f = if offset == 0 {
                        first(chunk)
                    } else {
                        yawc::Frame::continuation(chunk)
                    };
                    self.send(f.with_fin(end == data.len())).await?;
                    offset = end;
                }
                Ok(())
            }
            Outgoing::Ping(p) => self.send(yawc::Frame::ping(p)).await,
            Outgoing::Pong(p) => self.send(yawc::Frame::pong(p)).await,
            Outgoing::Close(reason) => self.close(reason).await,
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        poll_fn(|cx| {
            let mut conn = lock(&self.conn);
            if !conn.close_sent {
                // Push out what yawc queued (pongs, the echo of the peer's close).
                ready!(poll_ready(&mut conn, cx, false))?;
                if conn.yawc_close {
                    conn.close_sent = true;
                }
            }
            Pin::new(&mut conn.ws).poll_flush(cx).map_err(map_write_err)
        })
        .await
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        let _ = self.flush().await;
        // yawc's close: flushes and shuts the socket's write side down (it sends a close frame
        // of its own only if none went out).
        poll_fn(|cx| Pin::new(&mut lock(&self.conn).ws).poll_close(cx))
            .await
            .map_err(map_write_err)
    }
}
