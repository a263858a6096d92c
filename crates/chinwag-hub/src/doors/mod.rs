//! The front doors: how connections reach a [`Hub`](crate::Hub).
//!
//! - [`chat`]: the gotalk RPC chat protocol (`docs/chat-protocol.md`) — over WebSocket (either
//!   engine), TCP, TLS or Unix sockets; what `chinwag.js` speaks.
//! - [`rooms`]: raw WebSocket messages, plumego style — `GET /ws?room=NAME`; every message of a
//!   member is published to the room as it is.
//! - [`tok`]: tok-style TCP — `u32` big-endian length-delimited frames; the first frame is the
//!   token; later frames go to the application ([`App::on_receive`](crate::App::on_receive)).
//!
//! Every door is the same skeleton (`doors::skeleton`): admit (connection rate, a token at
//! connect) → sign on with the door's registered format → the auth timeout of first-message
//! logins → sign off when the connection ends → close with the door's goodbye. A door supplies
//! only its codec, its [`Format`](crate::Format) and its operations. Each takes any
//! [`Acceptor`](chinwag_transport::Acceptor) of a fitting transport and returns a
//! [`DoorHandle`].
//!
//! **Liveness**, the same rule on every door: a connection that sends anything — a message, a
//! heartbeat, a WebSocket ping or pong — is alive; only a peer that answers nothing is closed
//! for idleness (per door: `docs/chat-protocol.md`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chinwag_session::ShutdownReport;
use chinwag_transport::PeerAddr;

pub mod chat;
pub mod rooms;
pub(crate) mod skeleton;
pub mod tok;

type ShutdownFn =
    Box<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ShutdownReport> + Send>> + Send + Sync>;

/// A running door: its address, and its shutdown.
pub struct DoorHandle {
    name: &'static str,
    addr: Option<PeerAddr>,
    shutdown: ShutdownFn,
}

impl DoorHandle {
    pub(crate) fn new(name: &'static str, addr: Option<PeerAddr>, shutdown: ShutdownFn) -> Self {
        DoorHandle {
            name,
            addr,
            shutdown,
        }
    }

    /// The door's name: `chat`, `rooms` or `tok`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<&PeerAddr> {
        self.addr.as_ref()
    }

    /// Stops accepting, lets every connection write what it has queued (bounded by
    /// `deadline`), closes them (1001) and waits. Call [`Hub::shutdown`](crate::Hub::shutdown)
    /// first so that clients get the hub's goodbye.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        (self.shutdown)(deadline).await
    }
}

impl std::fmt::Debug for DoorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorHandle")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}
