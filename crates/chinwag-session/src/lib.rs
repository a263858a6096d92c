//! **One connection's life** for chinwag: a [`Session`] owns one transport connection (any
//! [`chinwag_transport::Transport`]: TCP, TLS, Unix, UDP, WebSocket through either engine,
//! pipes) and does everything between the socket and the application:
//!
//! * decodes frames with a [`Codec`] ([`WireCodec`] for gotalk, [`LengthDelimited`],
//!   [`FrameCodec`], or your own) and delivers messages **in order** to a [`Handler`] (open —
//!   which may refuse —, message, error, close with a [`CloseCause`], periodic cron);
//! * sends through a **bounded outbound queue** (messages and bytes) with a per-session
//!   [`OverflowPolicy`] (block with a timeout, drop newest, drop oldest, close); frames are
//!   shared [`Bytes`](bytes::Bytes), so a broadcast encodes once ([`Session::send_encoded`]);
//!   the writer takes **everything queued per wake-up** and writes it with one flush;
//! * keeps time with **one timer per session** (idle timeout, heartbeat, write deadline, cron,
//!   close deadline) inside the session's single task;
//! * stops reading while the handler is busy (inbound backpressure, per session);
//! * carries typed attributes, counters ([`Stats`]), activity times and keyed close callbacks.
//!
//! Endpoints: [`Server`] accepts on any [`Acceptor`](chinwag_transport::Acceptor) with a
//! connection limit, accept backoff and graceful shutdown; [`Client`] keeps a pool of sessions
//! dialled by your connector closure and reconnects with exponential backoff and full jitter.
//! `chinwag_transport::udp::UdpAcceptor` makes an unconnected UDP socket an acceptor (one
//! session per peer).
//!
//! The design, defaults and measurements are in `docs/session.md` of the repository.
//!
//! # Example
//!
//! An echo server and a client over TCP, with u32 length-delimited messages:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use chinwag::session::{
//!     Client, ClientConfig, Handler, LengthDelimited, Server, ServerConfig, Session,
//! };
//! use chinwag::transport::tcp::{self, TcpAcceptor, TcpConfig};
//! use tokio::sync::mpsc;
//!
//! /// The server echoes every message back.
//! struct Echo;
//! impl Handler<LengthDelimited> for Echo {
//!     async fn on_message(&self, session: &Session<LengthDelimited>, msg: Bytes) {
//!         let _ = session.send(&msg).await;
//!     }
//! }
//!
//! /// The client forwards what it receives to the test.
//! struct Forward(mpsc::UnboundedSender<Bytes>);
//! impl Handler<LengthDelimited> for Forward {
//!     async fn on_message(&self, _: &Session<LengthDelimited>, msg: Bytes) {
//!         let _ = self.0.send(msg);
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let acceptor = TcpAcceptor::bind("127.0.0.1:0".parse()?, TcpConfig::default())?;
//! let addr = acceptor.local_socket_addr()?;
//! let server = Server::spawn(acceptor, LengthDelimited::default(), Echo, ServerConfig::default());
//!
//! let (tx, mut rx) = mpsc::unbounded_channel();
//! let client = Client::spawn(
//!     move || async move { tcp::connect(addr, &TcpConfig::default()).await },
//!     LengthDelimited::default(),
//!     Forward(tx),
//!     ClientConfig::default(),
//! );
//! assert!(client.wait_open(1).await);
//! let session = client.session().expect("one open session");
//! session.send(&Bytes::from_static(b"hello")).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(session.stats().messages_in, 1);
//!
//! client.shutdown(Duration::from_secs(1)).await;
//! server.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

mod budget;
mod client;
pub mod codec;
mod config;
mod driver;
mod error;
mod handle;
mod handler;
mod server;

pub use budget::{ByteBudget, Charge};
pub use chinwag_transport::{ConnectInfo, Refusal};
pub use client::{Client, ClientConfig, ReconnectPolicy};
pub use codec::{
    Codec, CodecError, Decoder, Encoded, Farewell, FrameCodec, LengthDelimited, WireCodec,
};
pub use config::{OverflowPolicy, SessionConfig};
pub use driver::spawn_session;
pub use error::{CloseCause, SendError, SessionError};
pub use handle::{Session, Stats};
pub use handler::{Admission, Handler, Service};
pub use server::{
    BroadcastReport, Server, ServerConfig, ServerHandle, ShutdownReport, broadcast, broadcast_with,
};
