//! yawc's reading side: whole messages out of yawc's frames.

use std::future::poll_fn;
use std::sync::atomic::Ordering;

use chinwag_transport::{CloseCode, CloseReason, TransportError};
use chinwag_ws::{Incoming, RawRead, ReadError, Reassembler, Role, WsConfig};
use yawc::{OpCode, WebSocketError};

use crate::masking::FirstMasked;
use crate::{Shared, lock};

/// yawc's reading side with message reassembly (used through [`WsReader`](crate::WsReader)).
pub struct YawcRead {
    conn: Shared,
    role: Role,
    messages: Reassembler,
    max_frame: usize,
    /// Frames yawc returned so far (the client's masking check counts the same frames).
    frames: u64,
    first_masked: Option<FirstMasked>,
}

impl std::fmt::Debug for YawcRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YawcRead")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl YawcRead {
    pub(crate) fn new(
        conn: Shared,
        role: Role,
        cfg: &WsConfig,
        first_masked: Option<FirstMasked>,
    ) -> Self {
        YawcRead {
            conn,
            role,
            messages: Reassembler::new(cfg.max_message_size),
            max_frame: cfg.max_frame_size,
            frames: 0,
            first_masked,
        }
    }

    /// Maps yawc's read error. yawc has queued a close frame of its own for every error but
    /// a closed connection (with the code given here too); it goes out instead of ours, except
    /// for an unknown opcode (yawc says 1003, RFC 6455 a protocol error: ours, 1002, goes out).
    fn map_err(&self, e: WebSocketError) -> ReadError {
        match e {
            WebSocketError::ConnectionClosed => {}
            WebSocketError::InvalidOpCode(_) => lock(&self.conn).bypass_queue = true,
            _ => lock(&self.conn).yawc_close = true,
        }
        match e {
            WebSocketError::FrameTooLarge => ReadError::too_large(
                "frame",
                // yawc does not report the declared length; it is at least this.
                self.max_frame as u64 + 1,
                self.max_frame as u64,
            ),
            WebSocketError::InvalidUTF8 => ReadError::invalid_utf8(),
            WebSocketError::ConnectionClosed => {
                ReadError::dead(TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without a close frame",
                )))
            }
            WebSocketError::IoError(e) => ReadError::dead(TransportError::Io(e)),
            e @ (WebSocketError::InvalidOpCode(_)
            | WebSocketError::ReservedBitsNotZero
            | WebSocketError::ControlFrameFragmented
            | WebSocketError::PingFrameTooLarge
            | WebSocketError::InvalidFragment
            | WebSocketError::InvalidCloseFrame
            | WebSocketError::InvalidCloseCode
            | WebSocketError::InvalidContinuationFrame
            | WebSocketError::CompressionNotSupported) => ReadError::protocol(e.to_string()),
            other => ReadError {
                error: TransportError::Protocol(other.to_string()),
                close: Some(CloseCode(1011)),
            },
        }
    }

    /// Whether the frame yawc just returned came masked from the server (client side).
    fn masked(&self) -> bool {
        self.first_masked
            .as_ref()
            .is_some_and(|m| m.load(Ordering::Relaxed) <= self.frames)
    }
}

impl RawRead for YawcRead {
    /// yawc keeps a partial frame in its own buffers and the reassembly is in `self`; each
    /// poll either completes a frame or leaves everything in place.
    fn read_in_place(
        &mut self,
    ) -> Option<impl Future<Output = Result<Incoming, ReadError>> + Send + '_> {
        Some(self.read())
    }

    async fn read(&mut self) -> Result<Incoming, ReadError> {
        loop {
            let res = poll_fn(|cx| lock(&self.conn).ws.poll_next_frame(cx)).await;
            let frame = match res {
                Ok(f) => f,
                Err(e) => return Err(self.map_err(e)),
            };
            // RFC 6455 §5.1: a client closes on a masked frame from the server (yawc checks
            // the server side: unmasked client frames are refused).
            if self.role == Role::Client && self.masked() {
                return Err(ReadError::protocol("a masked frame from the server"));
            }
            self.frames += 1;
            let opcode = frame.opcode();
            match opcode {
                OpCode::Text | OpCode::Binary => {
                    let fin = frame.is_fin();
                    let text = opcode == OpCode::Text;
                    if let Some(m) = self.messages.data(text, fin, frame.into_payload())? {
                        return Ok(Incoming::Message(m));
                    }
                }
                OpCode::Continuation => {
                    let fin = frame.is_fin();
                    if let Some(m) = self.messages.continuation(fin, frame.payload())? {
                        return Ok(Incoming::Message(m));
                    }
                }
                // yawc queued the pong; it goes out with the next read that waits, or the
                // next write.
                OpCode::Ping => return Ok(Incoming::PingAnswered),
                // RFC 6455 §5.5: control frames carry at most 125 bytes. yawc checks pings
                // only.
                OpCode::Pong if frame.payload().len() > 125 => {
                    return Err(ReadError::protocol(
                        "a control frame with more than 125 payload bytes",
                    ));
                }
                OpCode::Pong => return Ok(Incoming::Pong),
                // yawc does not check a close frame's length, and has queued its echo: that
                // echo must not go out (our 1002 does).
                OpCode::Close if frame.payload().len() > 125 => {
                    lock(&self.conn).bypass_queue = true;
                    return Err(ReadError::protocol(
                        "a control frame with more than 125 payload bytes",
                    ));
                }
                OpCode::Close => {
                    // yawc checked the length, the code and the UTF-8 of the reason, and
                    // queued the echo.
                    lock(&self.conn).yawc_close = true;
                    let reason = frame.close_code().map(|code| {
                        CloseReason::new(
                            CloseCode(u16::from(code)),
                            frame.close_reason().ok().flatten().unwrap_or_default(),
                        )
                    });
                    return Ok(Incoming::Close {
                        reason,
                        reply: false,
                    });
                }
            }
        }
    }
}
