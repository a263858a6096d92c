//! WebSocket transport for chinwag on **fastwebsockets** (hyper upgrades), behind the
//! [`chinwag_transport`] seam.
//!
//! Same API and behaviour as `chinwag-ws-tungstenite`: both are built on the engine-neutral
//! [`chinwag_ws`] crate ([`WsConfig`], [`OriginPolicy`], the hyper upgrade, [`WsAcceptor`],
//! dialing, keepalive and the close handshake); only the RFC 6455 framing is fastwebsockets'. This crate adds what
//! fastwebsockets leaves to its users: reassembly of fragmented messages with a
//! message-size limit and incremental UTF-8 checks (feeding [`chinwag_ws::Reassembler`]),
//! outbound fragmentation, and a coalescing write buffer so a batch of fed frames leaves in
//! one syscall.
//!
//! ```
//! use chinwag::transport::{Acceptor, CloseReason, Frame, FrameRead, FrameWrite, Transport};
//! use chinwag::ws::fastwebsockets::{WsAcceptor, WsConfig, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut acceptor = WsAcceptor::bind("127.0.0.1:0".parse()?, WsConfig::default()).await?;
//! let url = format!("ws://{}/", acceptor.local_addr());
//! let server = tokio::spawn(async move {
//!     let (mut r, mut w) = acceptor.accept().await?.split();
//!     while let Some(frame) = r.read_frame().await? {
//!         w.feed(frame).await?;
//!         w.flush().await?;
//!     }
//!     Ok::<_, chinwag::transport::TransportError>(())
//! });
//! let (mut r, mut w) = connect(&url, &WsConfig::default()).await?.split();
//! w.send(Frame::Binary(vec![1, 2, 3].into())).await?;
//! assert_eq!(r.read_frame().await?, Some(Frame::Binary(vec![1, 2, 3].into())));
//! w.close(CloseReason::normal()).await?;
//! server.await??;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use chinwag_transport::{CloseCode, CloseReason, Frame, TransportError};
use chinwag_ws::{
    self as common, CoalescingWriter, Engine, Incoming, Outgoing, RawRead, RawWrite, ReadError,
    Reassembler, Role, WsStream,
};
pub use chinwag_ws::{
    ConnectOptions, HostPolicy, HttpFallback, OriginPolicy, UpgradeError, WsConfig,
    is_upgrade_request, tls_config_with_roots,
};
use fastwebsockets::{OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};

/// The fastwebsockets engine (a marker type for the generic `common` types).
#[derive(Debug, Clone, Copy, Default)]
pub struct FastWebSockets;

chinwag_ws::engine_api!(FastWebSockets, "fastwebsockets");

type Writer = CoalescingWriter<WriteHalf<WsStream>>;

/// fastwebsockets' reading side with message reassembly (used through [`WsReader`]).
pub struct FastRead {
    ws: WebSocketRead<ReadHalf<WsStream>>,
    role: Role,
    messages: Reassembler,
    max_frame: usize,
}

impl std::fmt::Debug for FastRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastRead").finish_non_exhaustive()
    }
}

/// fastwebsockets' writing side (used through [`WsWriter`]).
pub struct FastWrite {
    ws: WebSocketWrite<Writer>,
    fragment: usize,
    shutdown: Arc<AtomicBool>,
}

impl std::fmt::Debug for FastWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastWrite").finish_non_exhaustive()
    }
}

fn payload_bytes(p: Payload<'_>) -> BytesMut {
    match p {
        Payload::Bytes(b) => b,
        Payload::Owned(v) => BytesMut::from(&v[..]),
        Payload::Borrowed(s) => BytesMut::from(s),
        Payload::BorrowedMut(s) => BytesMut::from(&s[..]),
    }
}

fn fw_role(role: Role) -> fastwebsockets::Role {
    match role {
        Role::Server => fastwebsockets::Role::Server,
        Role::Client => fastwebsockets::Role::Client,
    }
}

fn halves(stream: WsStream, role: Role, cfg: &WsConfig) -> (FastRead, FastWrite) {
    let (r, w) = tokio::io::split(stream);
    let w = CoalescingWriter::new(w, cfg.write_buffer_size);
    let shutdown = w.shutdown_switch();
    let (mut rd, mut wr) = fastwebsockets::after_handshake_split(r, w, fw_role(role));
    // Pongs and close replies are sent by the connection (through the writer lock), so the
    // engine only reports pings; it still validates close frames and answers them via us.
    rd.set_auto_pong(false);
    rd.set_auto_close(true);
    // fastwebsockets refuses `len >= max`; +1 makes a frame of exactly the limit pass.
    rd.set_max_message_size(cfg.max_frame_size.saturating_add(1));
    wr.set_writev(true);
    (
        FastRead {
            ws: rd,
            role,
            // fastwebsockets validated the UTF-8 of unfragmented text.
            messages: Reassembler::new(cfg.max_message_size).whole_text_checked(),
            max_frame: cfg.max_frame_size,
        },
        FastWrite {
            ws: wr,
            fragment: cfg.fragment_size.max(1),
            shutdown,
        },
    )
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

impl Engine for FastWebSockets {
    type Read = FastRead;
    type Write = FastWrite;
    const NAME: &'static str = "fastwebsockets";

    fn accept_key(key: &[u8]) -> String {
        // fastwebsockets computes the accept value only inside its `upgrade`: run that on a
        // request carrying just the key and read the header back (no RFC 6455 code of ours).
        let mut req = http::Request::new(());
        let h = req.headers_mut();
        if let Ok(v) = http::HeaderValue::from_bytes(key) {
            h.insert(http::header::SEC_WEBSOCKET_KEY, v);
        }
        h.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            http::HeaderValue::from_static("13"),
        );
        fastwebsockets::upgrade::upgrade(&mut req)
            .ok()
            .and_then(|(resp, _)| {
                resp.headers()
                    .get(http::header::SEC_WEBSOCKET_ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    }

    async fn wrap(stream: WsStream, role: Role, cfg: &WsConfig) -> (FastRead, FastWrite) {
        halves(stream, role, cfg)
    }

    async fn client_handshake(
        stream: WsStream,
        request: http::Request<()>,
        cfg: &WsConfig,
    ) -> Result<(FastRead, FastWrite), TransportError> {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let mut builder = http::Request::builder()
            .method("GET")
            .uri(path)
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::CONNECTION, "upgrade")
            .header(
                http::header::SEC_WEBSOCKET_KEY,
                fastwebsockets::handshake::generate_key(),
            )
            .header(http::header::SEC_WEBSOCKET_VERSION, "13");
        for (name, value) in request.headers() {
            builder = builder.header(name, value.clone());
        }
        let req = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        let (ws, _resp) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
            .await
            .map_err(|e| match e {
                WebSocketError::IoError(e) => TransportError::Io(e),
                other => TransportError::Handshake(other.to_string()),
            })?;
        let upgraded: TokioIo<hyper::upgrade::Upgraded> = ws.into_inner();
        Ok(halves(WsStream::Upgraded(upgraded), Role::Client, cfg))
    }
}

impl FastRead {
    fn map_err(&self, e: WebSocketError) -> ReadError {
        match e {
            WebSocketError::FrameTooLarge => ReadError::too_large(
                "frame",
                // fastwebsockets does not report the declared length; it is at least this.
                self.max_frame as u64 + 1,
                self.max_frame as u64,
            ),
            WebSocketError::InvalidUTF8 => ReadError::invalid_utf8(),
            WebSocketError::UnexpectedEOF => {
                ReadError::dead(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a close frame",
                )))
            }
            WebSocketError::IoError(e) => ReadError::dead(TransportError::Io(e)),
            WebSocketError::ConnectionClosed => ReadError::dead(TransportError::Closed),
            other => ReadError::protocol(other.to_string()),
        }
    }
}

impl RawRead for FastRead {
    async fn read(&mut self) -> Result<Incoming, ReadError> {
        loop {
            // With auto-pong off, the only obligated send is the close reply, which the
            // connection sends itself when it sees the close frame.
            let frame = self
                .ws
                .read_frame(&mut |_| std::future::ready(Ok::<(), std::io::Error>(())))
                .await;
            let mut frame = match frame {
                Ok(f) => f,
                Err(e) => return Err(self.map_err(e)),
            };
            // RFC 6455 §5.1: clients mask every frame, servers none. fastwebsockets does not
            // check (it unmasks when a mask is there) and keeps the mask private; its own
            // header formatter shows whether the frame came with one (the MASK bit).
            let mut head = [0u8; 14];
            frame.fmt_head(&mut head);
            let masked = head[1] & 0x80 != 0;
            match (self.role, masked) {
                (Role::Server, false) => {
                    return Err(ReadError::protocol("an unmasked frame from the client"));
                }
                (Role::Client, true) => {
                    return Err(ReadError::protocol("a masked frame from the server"));
                }
                _ => {}
            }
            match frame.opcode {
                OpCode::Text | OpCode::Binary => {
                    let text = frame.opcode == OpCode::Text;
                    let payload = payload_bytes(frame.payload).freeze();
                    if let Some(m) = self.messages.data(text, frame.fin, payload)? {
                        return Ok(Incoming::Message(m));
                    }
                }
                OpCode::Continuation => {
                    if let Some(m) = self.messages.continuation(frame.fin, &frame.payload)? {
                        return Ok(Incoming::Message(m));
                    }
                }
                OpCode::Ping => {
                    return Ok(Incoming::Ping(payload_bytes(frame.payload).freeze()));
                }
                // RFC 6455 §5.5: control frames carry at most 125 bytes. fastwebsockets checks
                // this for pings only.
                OpCode::Pong | OpCode::Close if frame.payload.len() > 125 => {
                    return Err(ReadError::protocol(
                        "a control frame with more than 125 payload bytes",
                    ));
                }
                OpCode::Pong => return Ok(Incoming::Pong),
                OpCode::Close => {
                    // fastwebsockets checked the length, the code and the UTF-8 of the reason.
                    let p = &frame.payload[..];
                    let reason = (p.len() >= 2).then(|| {
                        CloseReason::new(
                            CloseCode(u16::from_be_bytes([p[0], p[1]])),
                            String::from_utf8_lossy(&p[2..]),
                        )
                    });
                    return Ok(Incoming::Close {
                        reason,
                        reply: true,
                    });
                }
            }
        }
    }
}

fn map_write_err(e: WebSocketError) -> TransportError {
    match e {
        WebSocketError::ConnectionClosed => TransportError::Closed,
        WebSocketError::IoError(e) => TransportError::Io(e),
        other => TransportError::Protocol(other.to_string()),
    }
}

impl FastWrite {
    async fn write(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let frame = fastwebsockets::Frame::new(fin, opcode, None, Payload::Borrowed(payload));
        self.ws.write_frame(frame).await.map_err(map_write_err)
    }
}

impl RawWrite for FastWrite {
    async fn feed(&mut self, out: Outgoing) -> Result<(), TransportError> {
        match out {
            Outgoing::Message(frame) => {
                let (opcode, data) = match frame {
                    Frame::Text(b) => (OpCode::Text, b),
                    Frame::Binary(b) => (OpCode::Binary, b),
                };
                if data.len() <= self.fragment {
                    return self.write(true, opcode, &data).await;
                }
                let mut offset = 0;
                while offset < data.len() {
                    let end = (offset + self.fragment).min(data.len());
                    let op = if offset == 0 {
                        opcode
                    } else {
                        OpCode::Continuation
                    };
                    self.write(end == data.len(), op, &data[offset..end])
                        .await?;
                    offset = end;
                }
                Ok(())
            }
            Outgoing::Ping(p) => self.write(true, OpCode::Ping, &p).await,
            Outgoing::Pong(p) => self.write(true, OpCode::Pong, &p).await,
            Outgoing::Close(reason) => {
                let frame = match &reason {
                    Some(r) => fastwebsockets::Frame::close(
                        r.code.0,
                        common::truncate_reason(&r.reason).as_bytes(),
                    ),
                    None => fastwebsockets::Frame::close_raw(Payload::Borrowed(&[])),
                };
                self.ws.write_frame(frame).await.map_err(map_write_err)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.ws.flush().await.map_err(map_write_err)
    }

    async fn shutdown(&mut self) -> Result<(), TransportError> {
        self.shutdown.store(true, Ordering::Relaxed);
        self.ws.flush().await.map_err(map_write_err)
    }
}
