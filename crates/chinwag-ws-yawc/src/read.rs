//! yawc's reading side: whole messages out of yawc's frames.

use std::future::poll_fn;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use chinwag_transport::{CloseCode, CloseReason, Frame, TransportError};
use chinwag_ws::{Incoming, RawRead, ReadError, Role, WsConfig};
use yawc::{OpCode, WebSocketError};

use crate::masking::FirstMasked;
use crate::{Shared, lock};

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    buf: BytesMut,
    /// Bytes of `buf` known to be valid UTF-8 (text only).
    checked: usize,
}

impl Partial {
    /// Validates the UTF-8 received so far, failing fast on an invalid sequence; an incomplete
    /// character at the end is allowed until the final fragment.
    fn check_utf8(&mut self, fin: bool) -> Result<(), ReadError> {
        match std::str::from_utf8(&self.buf[self.checked..]) {
            Ok(_) => {
                self.checked = self.buf.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(ReadError::invalid_utf8()),
        }
    }

    fn finish(self) -> Frame {
        let data = self.buf.freeze();
        if self.text {
            Frame::Text(data)
        } else {
            Frame::Binary(data)
        }
    }
}

/// yawc's reading side with message reassembly (used through [`WsReader`](crate::WsReader)).
pub struct YawcRead {
    conn: Shared,
    role: Role,
    partial: Option<Partial>,
    max_message: usize,
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
            partial: None,
            max_message: cfg.max_message_size,
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

    fn check_message_size(&self, size: usize) -> Result<(), ReadError> {
        if size > self.max_message {
            return Err(ReadError::too_large(
                "message",
                size as u64,
                self.max_message as u64,
            ));
        }
        Ok(())
    }
}

impl RawRead for YawcRead {
    /// yawc keeps a partial frame in its own buffers and the reassembly is in `self`; each
    /// poll either completes a frame or leaves everything in place.
    const CANCEL_SAFE: bool = true;

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
                    if self.partial.is_some() {
                        return Err(ReadError::protocol(
                            "a new message started before the fragmented one finished",
                        ));
                    }
                    let fin = frame.is_fin();
                    let payload = frame.into_payload();
                    self.check_message_size(payload.len())?;
                    let text = opcode == OpCode::Text;
                    if fin {
                        if text {
                            if std::str::from_utf8(&payload).is_err() {
                                return Err(ReadError::invalid_utf8());
                            }
                            return Ok(Incoming::Message(Frame::Text(payload)));
                        }
                        return Ok(Incoming::Message(Frame::Binary(payload)));
                    }
                    let mut p = Partial {
                        text,
                        buf: BytesMut::from(payload),
                        checked: 0,
                    };
                    if text {
                        p.check_utf8(false)?;
                    }
                    self.partial = Some(p);
                }
                OpCode::Continuation => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(ReadError::protocol(
                            "a continuation frame without a message to continue",
                        ));
                    };
                    let fin = frame.is_fin();
                    let payload = frame.payload();
                    let total = p.buf.len() + payload.len();
                    if total > self.max_message {
                        return Err(ReadError::too_large(
                            "message",
                            total as u64,
                            self.max_message as u64,
                        ));
                    }
                    p.buf.extend_from_slice(payload);
                    if p.text {
                        p.check_utf8(fin)?;
                    }
                    if fin {
                        let p = self.partial.take().expect("checked above");
                        return Ok(Incoming::Message(p.finish()));
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
