//! One error type for code that uses several layers: [`Error`].

use std::io;
use std::net::{AddrParseError, SocketAddr};

use crate::hub::{self, DirectoryError, RoomError, SignOnError, auth::AuthError};
use crate::queue::QueueError;
use crate::rpc::RpcError;
use crate::session::{self, SessionError};
use crate::transport::{TransportError, tls::TlsConfigError};
use crate::wire::WireError;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error of chinwag's layers, and of the [`ServerBuilder`](crate::ServerBuilder).
///
/// Several layers have an error of the same name (`chinwag::session::SendError` — a session's
/// send queue did not take a message — and `chinwag::hub::SendError` — a send to a *user*
/// failed). Their modules keep the names; this enum wraps each under a variant of its own and
/// converts from all of them, so `?` works across layers. The `is_*` helpers answer the
/// questions callers ask without matching on the layer: [`is_closed`](Error::is_closed),
/// [`is_timeout`](Error::is_timeout), [`is_busy`](Error::is_busy) (try again later),
/// [`is_peer_fault`](Error::is_peer_fault); [`code`](Error::code) gives the hub's stable error
/// code (the chat protocol's).
///
/// ```
/// use chinwag::Error;
/// use chinwag::hub::SendError;
///
/// let e = Error::from(SendError::RateLimited);
/// assert!(e.is_send() && e.is_busy());
/// assert_eq!(e.code(), Some("rate_limited"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound (address in use, not local, no permission). Pick another
    /// address or stop what holds it.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener: `http`, `chat-tcp` or `tok`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The builder's parts do not fit together (no listener, nobody could sign in, no
    /// WebSocket engine compiled in, ...). A programming or configuration error: fix the
    /// setup; the message says what is missing.
    #[error("chinwag setup: {0}")]
    Config(String),
    /// An address did not parse.
    #[error("bad address: {0}")]
    Addr(#[from] AddrParseError),
    /// Another I/O error (not from a listener's bind).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The gotalk codec failed; see [`WireError`].
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A transport failed; see [`TransportError`].
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A TLS configuration could not be built (bad PEM, mismatched key).
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// A session failed; see [`SessionError`].
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A session's send queue did not take a message; see [`session::SendError`].
    #[error(transparent)]
    SessionSend(#[from] session::SendError),
    /// An RPC request failed; see [`RpcError`].
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// An offline queue operation failed; see [`QueueError`].
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A send to a user failed; see [`hub::SendError`].
    #[error(transparent)]
    Send(#[from] hub::SendError),
    /// A room operation failed; see [`RoomError`].
    #[error(transparent)]
    Room(#[from] RoomError),
    /// A connection could not sign on; see [`SignOnError`].
    #[error(transparent)]
    SignOn(#[from] SignOnError),
    /// A token was refused; see [`AuthError`].
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A JWT key could not be read; see [`JwtConfigError`](hub::auth::JwtConfigError).
    #[error(transparent)]
    Jwt(#[from] hub::auth::JwtConfigError),
    /// The directory (a cluster's store) could not answer.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

macro_rules! is_variant {
    ($($(#[$m:meta])* $name:ident => $pat:pat),* $(,)?) => {
        $(
            $(#[$m])*
            pub fn $name(&self) -> bool {
                matches!(self, $pat)
            }
        )*
    };
}

impl Error {
    is_variant! {
        /// A listener could not be bound ([`Error::Bind`]).
        is_bind => Error::Bind { .. },
        /// The builder's parts do not fit ([`Error::Config`]).
        is_config => Error::Config(_),
        /// From the codec ([`Error::Wire`]).
        is_wire => Error::Wire(_),
        /// From a transport ([`Error::Transport`]).
        is_transport => Error::Transport(_),
        /// From a TLS configuration ([`Error::Tls`]).
        is_tls => Error::Tls(_),
        /// From a session or its send queue ([`Error::Session`], [`Error::SessionSend`]).
        is_session => Error::Session(_) | Error::SessionSend(_),
        /// From an RPC request ([`Error::Rpc`]).
        is_rpc => Error::Rpc(_),
        /// From an offline queue ([`Error::Queue`]).
        is_queue => Error::Queue(_),
        /// A send to a user failed ([`Error::Send`]).
        is_send => Error::Send(_),
        /// A room operation failed ([`Error::Room`]).
        is_room => Error::Room(_),
        /// A sign-on failed ([`Error::SignOn`]).
        is_sign_on => Error::SignOn(_),
        /// A token or key was refused ([`Error::Auth`], [`Error::Jwt`]).
        is_auth => Error::Auth(_) | Error::Jwt(_),
    }

    /// The connection (or session) is gone: retrying on it is pointless; reconnect instead.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Transport(TransportError::Closed) => true,
            Error::SessionSend(session::SendError::Closed | session::SendError::Overflow) => true,
            Error::Rpc(e) => e.is_closed(),
            Error::SignOn(SignOnError::Closed) => true,
            _ => false,
        }
    }

    /// A deadline passed (request, handshake, pong, send queue wait).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Transport(TransportError::Timeout(_))
                | Error::SessionSend(session::SendError::Timeout)
                | Error::Rpc(RpcError::Timeout(_))
        )
    }

    /// The other side (or a shared resource) is busy or over a limit: the same call may
    /// succeed later (back off first).
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Rpc(RpcError::Overloaded { .. }) => true,
            Error::SessionSend(session::SendError::Dropped | session::SendError::Timeout) => true,
            Error::Queue(QueueError::Full { .. } | QueueError::Backend(_)) => true,
            Error::Send(e) => matches!(
                e,
                hub::SendError::RateLimited
                    | hub::SendError::Queue(_)
                    | hub::SendError::Undelivered
            ),
            Error::Room(e) => matches!(
                e,
                RoomError::Busy | RoomError::RateLimited | RoomError::Full
            ),
            Error::SignOn(e) => matches!(e, SignOnError::Full | SignOnError::Directory(_)),
            Error::Auth(AuthError::Unavailable(_)) | Error::Directory(_) => true,
            _ => false,
        }
    }

    /// The peer broke a protocol (bad frames, bad gotalk, an over-limit message it sent): the
    /// connection was closed for it; nothing to fix locally.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            Error::Wire(WireError::Decode(_))
                | Error::Transport(TransportError::Protocol(_) | TransportError::TooLarge { .. })
                | Error::Session(
                    SessionError::Codec(_)
                        | SessionError::Transport(
                            TransportError::Protocol(_) | TransportError::TooLarge { .. }
                        )
                )
        )
    }

    /// The hub's stable error code for hub errors (`offline`, `room_full`, `expired`, ...: the
    /// `code` of the chat protocol's error results), `None` for the other layers.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Error::Send(e) => Some(e.code()),
            Error::Room(e) => Some(e.code()),
            Error::SignOn(e) => Some(e.code()),
            Error::Auth(e) => Some(e.reason()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_classify_across_layers() {
        assert!(Error::from(TransportError::Closed).is_closed());
        assert!(Error::from(session::SendError::Closed).is_closed());
        assert!(Error::from(RpcError::Timeout(std::time::Duration::from_secs(1))).is_timeout());
        assert!(Error::from(RoomError::Busy).is_busy());
        assert!(!Error::from(RoomError::WrongPassword).is_busy());
        assert_eq!(Error::from(RoomError::Full).code(), Some("room_full"));
        assert_eq!(Error::from(AuthError::Expired).code(), Some("expired"));
        assert!(Error::from(TransportError::Protocol("bad".into())).is_peer_fault());
        assert!(Error::Config("x".into()).is_config());
        let e: Error = "nope".parse::<SocketAddr>().unwrap_err().into();
        assert!(e.to_string().starts_with("bad address"));
    }
}
