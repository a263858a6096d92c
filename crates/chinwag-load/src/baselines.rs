//! Minimal echo servers on the raw engines: the yardsticks chinwag's servers are divided by.
//!
//! Each is written the way the engine's own examples do it, without chinwag's layers:
//!
//! * [`tcp`]: tokio TCP, u32 big-endian length-prefixed frames through a `BufReader` and a
//!   `BufWriter`, flushed when no more input is buffered (so bursts go back in one write).
//! * [`tungstenite`]: async-tungstenite's `accept_async` and `receiver.forward(sender)`, as in
//!   tokio-tungstenite's `echo-server` example (forward feeds and flushes when input runs dry),
//!   with chinwag's engine's read and write buffer sizes ([`tungstenite::config`]).
//! * [`fastwebsockets`]: a hyper 1 HTTP/1 server that upgrades with `fastwebsockets::upgrade`
//!   and echoes through a `FragmentCollector`, as in fastwebsockets' `echo_server` example.
//!
//! * [`gotalk`]: a gotalk v1 echo directly on tokio and `chinwag-wire` (no sessions, no RPC).
//! * [`fanout`]: not an echo: a raw room server (`GET /ws?room=R`) on hyper 1 and
//!   fastwebsockets that writes every message a member sends to every member of its room, the
//!   yardstick of the hub's fan-out.
//!
//! The binaries `baseline-tcp`, `baseline-tungstenite`, `baseline-fastwebsockets`,
//! `baseline-gotalk` and `baseline-fanout` run them
//! (`--listen ADDR`, default `127.0.0.1:0`) and print `listening on ADDR` on stdout.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Parses `--listen ADDR` from the command line (default `127.0.0.1:0`).
pub fn listen_arg() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs an address")?;
                listen = v.parse().map_err(|e| format!("bad --listen {v:?}: {e}"))?;
            }
            "--help" | "-h" => return Err("usage: [--listen ADDR]".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(listen)
}

/// Binds `addr` and prints `listening on ADDR` (the actual address) on stdout.
pub async fn bind_and_announce(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    println!("listening on {}", l.local_addr()?);
    io::Write::flush(&mut io::stdout())?;
    Ok(l)
}

/// Raw tokio TCP echo of u32 big-endian length-prefixed frames.
pub mod tcp {
    use std::io;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
    use tokio::net::{TcpListener, TcpStream};

    /// Largest frame accepted.
    pub const MAX_FRAME: usize = 16 << 20;

    /// Serves `listener` forever.
    pub async fn serve(listener: TcpListener) -> io::Result<()> {
        loop {
            let (s, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = echo(s).await;
            });
        }
    }

    async fn echo(s: TcpStream) -> io::Result<()> {
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut r = BufReader::with_capacity(8 * 1024, r);
        let mut w = BufWriter::with_capacity(8 * 1024, w);
        let mut buf = Vec::new();
        loop {
            let len = match r.read_u32().await {
                Ok(len) => len as usize,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return w.flush().await,
                Err(e) => return Err(e),
            };
            if len > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "frame too large",
                ));
            }
            buf.resize(len, 0);
            r.read_exact(&mut buf).await?;
            w.write_u32(len as u32).await?;
            w.write_all(&buf).await?;
            if r.buffer().is_empty() {
                w.flush().await?;
            }
        }
    }
}

/// Raw async-tungstenite echo (tokio runtime).
pub mod tungstenite {
    use std::io;

    use async_tungstenite::tungstenite::protocol::WebSocketConfig;
    use futures_util::{StreamExt, TryStreamExt, future};
    use tokio::net::TcpListener;

    /// tungstenite's defaults with chinwag's tungstenite engine's buffer sizes
    /// ([`WsConfig::default`](chinwag_ws::WsConfig)'s): with tungstenite's own 128 KiB read
    /// buffer, every read zeroes the part of it not yet filled (`BytesMut::resize`), and that
    /// was 97% of this server's instructions (`cargo xtask bench --instructions`, 2026-12-07):
    /// a baseline that measures a default, not the engine.
    pub fn config() -> WebSocketConfig {
        let c = chinwag_ws::WsConfig::default();
        WebSocketConfig::default()
            .read_buffer_size(c.read_buffer_size)
            .write_buffer_size(c.write_buffer_size)
    }

    /// Serves `listener` forever.
    pub async fn serve(listener: TcpListener) -> io::Result<()> {
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(ws) =
                    async_tungstenite::tokio::accept_async_with_config(s, Some(config())).await
                else {
                    return;
                };
                let (sender, receiver) = ws.split();
                let _ = receiver
                    .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
                    .forward(sender)
                    .await;
            });
        }
    }
}

/// Raw fastwebsockets echo behind a hyper 1 upgrade.
pub mod fastwebsockets {
    use std::io;

    use bytes::Bytes;
    use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn server_upgrade(
        mut req: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            let _ = handle_client(fut).await;
        });
        Ok(response)
    }

    /// Serves `listener` forever.
    pub async fn serve(listener: TcpListener) -> io::Result<()> {
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let io = TokioIo::new(s);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    }
}

/// Raw gotalk v1 echo over TCP: tokio and `chinwag-wire`'s stream decoder, no sessions, no RPC
/// layer — the smallest correct gotalk server that answers every request (`r`) with its payload
/// (`R`). Each side sends its version first; one read's worth of requests is answered with one
/// write. Heartbeats and notifications are read and ignored; a stream request gets an error
/// result; input the decoder refuses gets the gotalk `f` code and a close.
pub mod gotalk {
    use std::io;

    use bytes::{Bytes, BytesMut};
    use chinwag_wire::{Message, StreamDecoder, WireLimits};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Serves `listener` forever.
    pub async fn serve(listener: TcpListener) -> io::Result<()> {
        loop {
            let (s, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = echo(s).await;
            });
        }
    }

    async fn echo(s: TcpStream) -> io::Result<()> {
        s.set_nodelay(true)?;
        let (mut r, mut w) = s.into_split();
        w.write_all(chinwag_wire::VERSION).await?;
        let mut dec = StreamDecoder::new(WireLimits::default());
        let mut input = BytesMut::with_capacity(8 * 1024);
        let mut out = BytesMut::with_capacity(8 * 1024);
        loop {
            if input.capacity() - input.len() < 1024 {
                input.reserve(8 * 1024);
            }
            if r.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
            loop {
                let msg = match dec.decode(&mut input) {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        let f = Message::ProtocolError {
                            code: e.protocol_code(),
                        };
                        f.encode(&mut out).map_err(io::Error::other)?;
                        w.write_all(&out).await?;
                        return Ok(());
                    }
                };
                let answer = match msg {
                    Message::SingleRequest { id, payload, .. } => {
                        Message::SingleResult { id, payload }
                    }
                    Message::StreamRequest { id, .. } => Message::ErrorResult {
                        id,
                        payload: Bytes::from_static(b"streams are not served here"),
                    },
                    _ => continue,
                };
                answer.encode(&mut out).map_err(io::Error::other)?;
            }
            if !out.is_empty() {
                w.write_all(&out).await?;
                out.clear();
            }
        }
    }
}

/// Raw WebSocket fan-out (no hub): the smallest tokio + fastwebsockets room server.
///
/// `GET /ws?room=NAME` (any path; the `room` query parameter names the room, default `lobby`)
/// upgrades with hyper 1 and `fastwebsockets::upgrade`; every text or binary message a member
/// sends goes, as the same frame, to every member of that room, the sender included (as the
/// hub's room door does). Each room is a `tokio::sync::broadcast` channel of 1 024 messages
/// (the hub's send queue is 1 024 too): a publish is one `send`, each member's writer task
/// takes it from the channel and writes the frame (one write per frame, as fastwebsockets
/// does); a member that falls more than 1 024 messages behind skips what it missed. Tokens and
/// other headers are ignored.
pub mod fanout {
    use std::collections::HashMap;
    use std::io;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use fastwebsockets::{
        FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite, upgrade,
    };
    use http_body_util::Empty;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::upgrade::Upgraded;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::io::WriteHalf;
    use tokio::net::TcpListener;
    use tokio::sync::{broadcast, mpsc};

    /// Messages a room's channel holds for its slowest member.
    pub const ROOM_CAPACITY: usize = 1024;

    /// A message as it goes out: its opcode and payload.
    type Msg = (OpCode, Bytes);
    type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Msg>>>>;

    fn room_of(req: &Request<Incoming>) -> String {
        req.uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("room="))
            .filter(|r| !r.is_empty())
            .unwrap_or("lobby")
            .to_owned()
    }

    async fn write_all(
        mut w: WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>,
        mut room: broadcast::Receiver<Msg>,
        mut control: mpsc::UnboundedReceiver<Msg>,
    ) -> Result<(), WebSocketError> {
        loop {
            let (op, payload) = tokio::select! {
                m = room.recv() => match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                c = control.recv() => match c {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            let close = op == OpCode::Close;
            w.write_frame(Frame::new(true, op, None, Payload::Borrowed(&payload)))
                .await?;
            if close {
                return Ok(());
            }
        }
    }

    async fn member(
        fut: upgrade::UpgradeFut,
        tx: broadcast::Sender<Msg>,
    ) -> Result<(), WebSocketError> {
        let ws = fut.await?;
        let (r, w) = ws.split(tokio::io::split);
        let mut r = FragmentCollectorRead::new(r);
        // Pongs and the close reply the reader owes go through the writer task.
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_all(w, tx.subscribe(), control_rx));
        let mut send = |f: Frame<'_>| {
            let _ = control_tx.send((f.opcode, Bytes::copy_from_slice(&f.payload)));
            std::future::ready(Ok::<(), io::Error>(()))
        };
        loop {
            let frame = match r.read_frame(&mut send).await {
                Ok(f) => f,
                Err(_) => break,
            };
            match frame.opcode {
                OpCode::Close => break,
                op @ (OpCode::Text | OpCode::Binary) => {
                    let _ = tx.send((op, Bytes::copy_from_slice(&frame.payload)));
                }
                _ => {}
            }
        }
        drop(control_tx);
        writer.abort();
        Ok(())
    }

    /// Serves `listener` forever.
    pub async fn serve(listener: TcpListener) -> io::Result<()> {
        let rooms: Rooms = Arc::default();
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let io = TokioIo::new(s);
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let rooms = rooms.clone();
                    async move {
                        let name = room_of(&req);
                        let (response, fut) = upgrade::upgrade(&mut req)?;
                        let tx = rooms
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(name)
                            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
                            .clone();
                        tokio::spawn(async move {
                            let _ = member(fut, tx).await;
                        });
                        Ok::<Response<Empty<Bytes>>, WebSocketError>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    }
}
