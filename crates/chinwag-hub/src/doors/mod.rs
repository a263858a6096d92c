//! The front doors: how connections reach a [`Hub`](crate::Hub).
//!
//! - [`chat`]: the gotalk RPC chat protocol (`docs/chat-protocol.md`) — over WebSocket (either
//!   engine), TCP, TLS or Unix sockets; what `chinwag.js` speaks.
//! - [`rooms`]: raw WebSocket messages, plumego style — `GET /ws?room=NAME`; every message of a
//!   member is published to the room as it is.
//! - [`tok`]: tok-style TCP — `u32` big-endian length-delimited frames; the first frame is the
//!   token; later frames go to the application ([`App::on_receive`](crate::App::on_receive)).
//!
//! Each door takes any [`Acceptor`](chinwag_transport::Acceptor) of a fitting transport and
//! returns a [`DoorHandle`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use chinwag_session::ShutdownReport;
use chinwag_transport::{ConnectInfo, PeerAddr, Refusal};

use crate::auth::AuthError;
use crate::error::SignOnError;

pub mod chat;
pub mod rooms;
pub mod tok;

/// Encoding slots of the doors' formats (see [`Link::slot`](crate::Link::slot)).
pub(crate) mod slot {
    pub(crate) const CHAT_STREAM: usize = 0;
    pub(crate) const CHAT_MESSAGE: usize = 1;
    pub(crate) const ROOMS: usize = 2;
    pub(crate) const TOK: usize = 3;
}

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

/// The peer's IP, when it has one.
pub(crate) fn ip_of(info: &ConnectInfo) -> Option<IpAddr> {
    match info.peer() {
        PeerAddr::Ip(a) => Some(a.ip()),
        _ => None,
    }
}

/// The HTTP refusal for a token that was refused.
pub(crate) fn auth_refusal(e: &AuthError) -> Refusal {
    let r = Refusal::new(e.status(), e.to_string());
    if e.status() == 503 {
        r.with_retry_after(Duration::from_secs(5))
    } else {
        r
    }
}

/// The HTTP refusal for a sign-on that failed.
pub(crate) fn sign_on_refusal(e: &SignOnError) -> Refusal {
    Refusal::unavailable(e.to_string(), Duration::from_secs(5))
}

/// The subprotocol to confirm: the first the client offered that does not carry a token
/// (browsers fail a connection whose answer names none of those they offered, and the token
/// one must never be echoed).
pub(crate) fn pick_subprotocol(info: &ConnectInfo) -> Option<String> {
    info.subprotocols()
        .iter()
        .find(|p| !p.starts_with(crate::auth::SUBPROTOCOL_TOKEN_PREFIX))
        .cloned()
}
