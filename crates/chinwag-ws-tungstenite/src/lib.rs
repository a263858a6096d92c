//! WebSocket transport for chinwag on **tungstenite** (async-tungstenite with its tokio
//! runtime), behind the [`chinwag_transport`] seam.
//!
//! * Server: [`upgrade`] a hyper 1 request (one port serves pages, scripts, `/metrics` and the
//!   WebSocket endpoint), or bind a [`WsAcceptor`] that does the HTTP part for you.
//! * Client: [`connect`] to `ws://` or `wss://` URLs (certificates verified by default).
//! * Both give a [`WsConnection`]: a [`Transport`](chinwag_transport::Transport) with
//!   [`Framing::Message`](chinwag_transport::Framing::Message) that splits into an owned
//!   [`WsReader`] and [`WsWriter`].
//!
//! Limits, keepalive, the close handshake and the Origin policy are set by [`WsConfig`] and are
//! identical in `chinwag-ws-fastwebsockets`: both engines are built on the engine-neutral
//! [`chinwag_ws`] crate and implement only its [`Engine`] trait (the RFC 6455
//! framing, done by tungstenite).
//!
//! ```
//! use chinwag::transport::{Acceptor, Frame, FrameRead, FrameWrite, Transport};
//! use chinwag::ws::tungstenite::{WsAcceptor, WsConfig, connect};
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
//! w.close(chinwag::transport::CloseReason::normal()).await?;
//! server.await??;
//! # Ok(())
//! # }
//! ```

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use chinwag_transport::{CloseReason, Frame, TransportError};
use futures_util::{Sink, Stream};
use tungstenite::Message;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame as WireFrame;
use tungstenite::protocol::frame::coding::{CloseCode as WireCloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, WebSocketConfig};

use chinwag_ws as common;
pub use chinwag_ws::{
    ConnectOptions, HostPolicy, HttpFallback, OriginPolicy, UpgradeError, WsConfig,
    is_upgrade_request, tls_config_with_roots,
};
use chinwag_ws::{
    Engine, Incoming, Outgoing, RawRead, RawWrite, ReadAhead, ReadError, Role, WsStream,
};

/// The tungstenite engine (a marker type for the generic [`chinwag_ws`] types).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tungstenite;

chinwag_ws::engine_api!(Tungstenite, "tungstenite");

type Ws = WebSocketStream<TokioAdapter<ReadAhead<WsStream>>>;

/// The stream is shared by the two halves; each poll takes the lock briefly and never holds
/// it across an await (this is how async-tungstenite's own `split` works).
type SharedWs = Arc<Mutex<Ws>>;

fn lock(ws: &SharedWs) -> MutexGuard<'_, Ws> {
    ws.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ws_config(cfg: &WsConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_size)
        .write_buffer_size(cfg.write_buffer_size)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_frame_size))
}

/// tungstenite's reading side (used through [`WsReader`]).
#[derive(Debug)]
pub struct TungsteniteRead {
    ws: SharedWs,
    max_frame: usize,
    max_message: usize,
}

/// tungstenite's writing side (used through [`WsWriter`]).
#[derive(Debug)]
pub struct TungsteniteWrite {
    ws: SharedWs,
    fragment: usize,
}

impl Engine for Tungstenite {
    type Read = TungsteniteRead;
    type Write = TungsteniteWrite;
    const NAME: &'static str = "tungstenite";

    fn accept_key(key: &[u8]) -> String {
        tungstenite::handshake::derive_accept_key(key)
    }

    async fn wrap(
        stream: WsStream,
        role: Role,
        cfg: &WsConfig,
    ) -> (TungsteniteRead, TungsteniteWrite) {
        let role = match role {
            Role::Server => tungstenite::protocol::Role::Server,
            Role::Client => tungstenite::protocol::Role::Client,
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioAdapter::new(ReadAhead::new(stream)),
            role,
            Some(ws_config(cfg)),
        )
        .await;
        halves(ws, cfg)
    }

    async fn client_handshake(
        stream: WsStream,
        request: http::Request<()>,
        cfg: &WsConfig,
    ) -> Result<(TungsteniteRead, TungsteniteWrite), TransportError> {
        use tungstenite::client::IntoClientRequest;
        let mut req = request
            .uri()
            .clone()
            .into_client_request()
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        for (name, value) in request.headers() {
            req.headers_mut().insert(name, value.clone());
        }
        let (ws, _resp) = async_tungstenite::client_async_with_config(
            req,
            TokioAdapter::new(ReadAhead::new(stream)),
            Some(ws_config(cfg)),
        )
        .await
        .map_err(|e| match e {
            WsError::Io(e) => TransportError::Io(e),
            other => TransportError::Handshake(other.to_string()),
        })?;
        Ok(halves(ws, cfg))
    }
}

fn halves(ws: Ws, cfg: &WsConfig) -> (TungsteniteRead, TungsteniteWrite) {
    let ws = Arc::new(Mutex::new(ws));
    (
        TungsteniteRead {
            ws: ws.clone(),
            max_frame: cfg.max_frame_size,
            max_message: cfg.max_message_size,
        },
        TungsteniteWrite {
            ws,
            fragment: cfg.fragment_size.max(1),
        },
    )
}

impl TungsteniteRead {
    fn map_err(&self, e: WsError) -> ReadError {
        match e {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                let what = if max_size == self.max_frame && self.max_frame != self.max_message {
                    "frame"
                } else {
                    "message"
                };
                ReadError::too_large(what, size as u64, max_size as u64)
            }
            WsError::Capacity(c) => ReadError {
                error: TransportError::Protocol(c.to_string()),
                close: Some(chinwag_transport::CloseCode::TOO_BIG),
            },
            WsError::Utf8(_) => ReadError::invalid_utf8(),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                ReadError::dead(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a close frame",
                )))
            }
            WsError::Protocol(p) => ReadError::protocol(p.to_string()),
            WsError::Io(e) => ReadError::dead(TransportError::Io(e)),
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                ReadError::dead(TransportError::Closed)
            }
            other => ReadError::protocol(other.to_string()),
        }
    }
}

impl RawRead for TungsteniteRead {
    /// tungstenite keeps a partial frame in its own buffers and `poll_next` may be dropped
    /// between polls; the flushes after pings and closes are retried by the next read or flush.
    fn read_in_place(
        &mut self,
    ) -> Option<impl Future<Output = Result<Incoming, ReadError>> + Send + '_> {
        Some(self.read())
    }

    async fn read(&mut self) -> Result<Incoming, ReadError> {
        loop {
            let item = poll_fn(|cx| Pin::new(&mut *lock(&self.ws)).poll_next(cx)).await;
            match item {
                // The stream ends after the close handshake.
                None => {
                    return Ok(Incoming::Close {
                        reason: None,
                        reply: false,
                    });
                }
                Some(Ok(Message::Text(t))) => return Ok(Incoming::Message(Frame::Text(t.into()))),
                Some(Ok(Message::Binary(b))) => return Ok(Incoming::Message(Frame::Binary(b))),
                // tungstenite queued the pong; it goes out with the next read or flush.
                Some(Ok(Message::Ping(_))) => {
                    let _ = poll_fn(|cx| Pin::new(&mut *lock(&self.ws)).poll_flush(cx)).await;
                    return Ok(Incoming::PingAnswered);
                }
                Some(Ok(Message::Pong(_))) => return Ok(Incoming::Pong),
                Some(Ok(Message::Close(cf))) => {
                    // tungstenite queued the answering close frame; push it out.
                    let _ = poll_fn(|cx| Pin::new(&mut *lock(&self.ws)).poll_flush(cx)).await;
                    let reason = cf.map(|cf| {
                        CloseReason::new(
                            chinwag_transport::CloseCode(u16::from(cf.code)),
                            cf.reason.as_str(),
                        )
                    });
                    return Ok(Incoming::Close {
                        reason,
                        reply: false,
                    });
                }
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(e)) => return Err(self.map_err(e)),
            }
        }
    }
}

fn map_write_err(e: WsError) -> TransportError {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::SendAfterClosing) => TransportError::Closed,
        WsError::Io(e) => TransportError::Io(e),
        other => TransportError::Protocol(other.to_string()),
    }
}

impl TungsteniteWrite {
    async fn send(&self, msg: Message) -> Result<(), TransportError> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let mut ws = lock(&self.ws);
            match Pin::new(&mut *ws).poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(map_write_err(e))),
                Poll::Ready(Ok(())) => {}
            }
            let m = msg.take().expect("polled after completion");
            Poll::Ready(Pin::new(&mut *ws).start_send(m).map_err(map_write_err))
        })
        .await
    }
}

impl RawWrite for TungsteniteWrite {
    async fn feed(&mut self, out: Outgoing) -> Result<(), TransportError> {
        match out {
            Outgoing::Message(frame) => {
                let (kind, data) = match frame {
                    Frame::Text(b) => (Data::Text, b),
                    Frame::Binary(b) => (Data::Binary, b),
                };
                if data.len() <= self.fragment {
                    // Sent as a raw frame so text is not validated again (the seam's contract
                    // is that Frame::Text holds UTF-8).
                    let f = WireFrame::message(data, OpCode::Data(kind), true);
                    return self.send(Message::Frame(f)).await;
                }
                let mut offset = 0;
                while offset < data.len() {
                    let end = (offset + self.fragment).min(data.len());
                    let opcode = if offset == 0 { kind } else { Data::Continue };
                    let f = WireFrame::message(
                        data.slice(offset..end),
                        OpCode::Data(opcode),
                        end == data.len(),
                    );
                    self.send(Message::Frame(f)).await?;
                    offset = end;
                }
                Ok(())
            }
            Outgoing::Ping(p) => self.send(Message::Ping(p)).await,
            Outgoing::Pong(p) => self.send(Message::Pong(p)).await,
            Outgoing::Close(reason) => {
                let cf = reason.map(|r| CloseFrame {
                    code: WireCloseCode::from(r.code.0),
                    reason: common::truncate_reason(&r.reason).to_owned().into(),
                });
                self.send(Message::Close(cf)).await
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        poll_fn(|cx| Pin::new(&mut *lock(&self.ws)).poll_flush(cx))
            .await
            .map_err(map_write_err)
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        let _ = self.flush().await;
        poll_fn(|cx| {
            let mut ws = lock(&self.ws);
            let io: &mut WsStream = ws.get_mut().get_mut().get_mut();
            tokio::io::AsyncWrite::poll_shutdown(Pin::new(io), cx)
        })
        .await
        .map_err(TransportError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two halves share one `Arc<Mutex<Ws>>` per connection: with the `Arc`'s two counts
    /// it fits jemalloc's 384-byte size class (the next is 448), which is why
    /// `chinwag_ws::ReadAhead` keeps its read-ahead in a boxed slice (`docs/session.md`,
    /// "Measured").
    #[test]
    fn the_shared_halves_fit_in_384_bytes() {
        let arc = std::mem::size_of::<Mutex<Ws>>() + 2 * std::mem::size_of::<usize>();
        assert!(arc <= 384, "Arc<Mutex<Ws>> is {arc} bytes");
    }
}
