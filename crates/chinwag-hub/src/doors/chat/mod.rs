//! The gotalk RPC chat door: the chat protocol of `docs/chat-protocol.md` on chinwag RPC, over
//! any transport (WebSocket on either engine, TCP, TLS, Unix).
//!
//! Operations ([`OPERATIONS`], JSON requests and results; errors are gotalk error results whose
//! text is a JSON object `{"code": "...", "message": "..."}`): `auth`, `refresh`, `whoami`,
//! `send`, `ack`, `join`, `leave`, `publish`, `rooms`, `members`, `online`, `app`.
//! Notifications from the server ([`NOTIFICATIONS`]): `message` (direct), `room` (a publish),
//! `presence`, `bye` (then the close).
//!
//! Liveness: the server sends a gotalk heartbeat after 20 s of silence and closes a connection
//! from which nothing arrived for 65 s — any message counts, heartbeats and (over WebSocket)
//! pongs to the server's pings included.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use chinwag::hub::{Hub, doors::chat::ChatDoor};
//! use chinwag::transport::tcp::TcpAcceptor;
//!
//! let hub = Hub::builder().build();
//! let tcp = TcpAcceptor::bind("127.0.0.1:4100".parse().unwrap(), Default::default())?;
//! let door = ChatDoor::new(hub.clone()).serve(tcp);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chinwag_rpc::{Admit, Handlers, Peer, RpcConfig, RpcServer};
use chinwag_session::ServerConfig;
use chinwag_session::codec::WireCodec;
use chinwag_transport::{Acceptor, ConnectInfo, Refusal};

use super::DoorHandle;
use super::skeleton::{Admitted, AuthTimer, Skeleton, ip_of, pick_subprotocol, sign_on_refusal};
use crate::auth::{Authenticated, TokenSource};
use crate::driver::{Conn, Hub};
use crate::error::SignOnError;
use crate::link::DoorFormat;

mod format;
mod ops;

pub use format::{FROM_FIELDS, NOTIFICATIONS, Notification};
pub use ops::{
    ChatError, DEFAULT_HISTORY_PAGE, DEFAULT_MEMBERS_PAGE, MAX_ONLINE_QUERY, OPERATIONS, Operation,
};

/// First-message logins allowed to fail before the connection is closed (4001).
pub const MAX_AUTH_FAILURES: u32 = 3;

/// The chat door: serves the chat protocol for a [`Hub`].
#[derive(Clone)]
pub struct ChatDoor {
    door: Skeleton,
    format: DoorFormat,
    rpc: RpcConfig,
    server: ServerConfig,
}

impl ChatDoor {
    /// The door of `hub`, with default RPC and server settings (registers its format with the
    /// hub).
    pub fn new(hub: Hub) -> Self {
        let rpc = RpcConfig::default();
        let format = hub.register_format(Arc::new(format::ChatFormat {
            codec: WireCodec::new(rpc.wire),
        }));
        ChatDoor {
            door: Skeleton {
                hub,
                name: "chat",
                acknowledges: true,
            },
            format,
            rpc,
            server: ServerConfig::default(),
        }
    }

    /// The RPC settings (default [`RpcConfig::default`]).
    pub fn rpc_config(&self) -> &RpcConfig {
        &self.rpc
    }

    /// RPC settings (limits, heartbeats, the session's send queue).
    pub fn with_rpc_config(mut self, rpc: RpcConfig) -> Self {
        self.rpc = rpc;
        self
    }

    /// Server settings (admission timeout and limit).
    pub fn with_server_config(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Serves the chat protocol on every connection `acceptor` brings.
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let server = RpcServer::spawn_admitting(
            acceptor,
            Arc::new(self.handlers()),
            self.rpc.clone(),
            self.server.clone(),
            self.admitter(),
        );
        let addr = server.local_addr().cloned();
        DoorHandle::new(
            "chat",
            addr,
            Box::new(move |deadline| {
                let s = server.clone();
                Box::pin(async move { s.shutdown(deadline).await })
            }),
        )
    }

    /// The chat operations, for serving them from your own [`RpcServer`] (next to your own
    /// operations, through [`Handlers::with_parent`]). Connections must then be admitted with
    /// [`ChatDoor::admitter`].
    pub fn handlers(&self) -> Handlers {
        ops::handlers(&self.door.hub)
    }

    /// The admission of this door, for an [`RpcServer`] you spawn yourself with
    /// [`RpcServer::spawn_admitting`].
    pub fn admitter(&self) -> Arc<dyn Admit> {
        Arc::new(ChatAdmit {
            door: self.door.clone(),
            format: self.format.clone(),
        })
    }
}

impl std::fmt::Debug for ChatDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatDoor").finish_non_exhaustive()
    }
}

/// Per connection: the hub connection once signed in.
pub(crate) struct ChatInner {
    pub(crate) door: Skeleton,
    pub(crate) format: DoorFormat,
    conn: Mutex<Option<Conn>>,
    /// The connection is signed in anonymously (an `auth` may still sign it in as a user).
    pub(crate) anonymous: AtomicBool,
    /// Held through an `auth`, so two of them do not both sign in.
    pub(crate) auth_lock: tokio::sync::Mutex<()>,
    pub(crate) failures: AtomicU32,
    auth_timer: Mutex<Option<AuthTimer>>,
    pub(crate) ip: Option<std::net::IpAddr>,
}

impl ChatInner {
    pub(crate) fn current(&self) -> Option<Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
pub(crate) struct ChatState(Arc<ChatInner>);

impl std::ops::Deref for ChatState {
    type Target = ChatInner;
    fn deref(&self) -> &ChatInner {
        &self.0
    }
}

struct ChatAdmit {
    door: Skeleton,
    format: DoorFormat,
}

impl Admit for ChatAdmit {
    /// A connection counts as not signed in until it is signed on (at admission with a token, or
    /// by `auth`).
    fn establish_on_admit(&self) -> bool {
        false
    }

    fn admit<'a>(
        &'a self,
        peer: &'a Peer,
        info: &'a ConnectInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            let admitted = self.door.admit(info, true).await?;
            let state = ChatState(Arc::new(ChatInner {
                door: self.door.clone(),
                format: self.format.clone(),
                conn: Mutex::new(None),
                anonymous: AtomicBool::new(false),
                auth_lock: tokio::sync::Mutex::new(()),
                failures: AtomicU32::new(0),
                auth_timer: Mutex::new(None),
                ip: ip_of(info),
            }));
            let session = peer.session();
            session.set_attr(state.clone());
            // Forget the state (and its timer) when the connection ends.
            let s = session.clone();
            session.add_close_callback("chinwag-hub-chat-state", move |_| {
                s.remove_attr::<ChatState>();
            });
            match admitted {
                Admitted::SignedIn(auth, source) => {
                    sign_on(
                        &self.door.hub,
                        peer,
                        &state,
                        auth,
                        source == TokenSource::Anonymous,
                    )
                    .await
                    .map_err(|e| {
                        session.remove_attr::<ChatState>();
                        sign_on_refusal(&e)
                    })?;
                }
                Admitted::AwaitLogin => {
                    let timer = self.door.auth_timer(session, &self.format);
                    *state.auth_timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
                }
            }
            Ok(pick_subprotocol(info))
        })
    }
}

/// Signs the connection of `peer` on as `auth`. An anonymous connection that signs in as a
/// user leaves as the anonymous one (after the new one is attached: a refused sign-in keeps it
/// anonymous).
pub(crate) async fn sign_on(
    hub: &Hub,
    peer: &Peer,
    state: &ChatState,
    auth: Authenticated,
    anonymous: bool,
) -> Result<Conn, SignOnError> {
    let _ = hub;
    let session = peer.session();
    let conn = state
        .door
        .sign_on(session, &state.format, auth, state.ip)
        .await?;
    let before = state
        .conn
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(conn.clone());
    state.anonymous.store(anonymous, Ordering::Release);
    if let Some(old) = before {
        state.door.hub.detach(&old);
    }
    drop(
        state
            .auth_timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
    Ok(conn)
}
