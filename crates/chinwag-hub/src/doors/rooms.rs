//! The raw WebSocket room door, plumego style: a client connects to `GET /ws?room=NAME` (the
//! path is the acceptor's), signs in with its token at connect (`Authorization: Bearer`, the
//! `bearer.<token>` subprotocol, or the query when enabled), gives the room's password (if it
//! has one) in the `X-Room-Password` header — or, only when enabled, the `room_password` query
//! parameter (plumego's name; `password` is read too) — and from then on every text or binary message it sends is published to the room
//! as it is (the sender gets its own messages back, as every member does), and it receives
//! every publish of the room as a message of the same kind.
//!
//! Refusals happen before the upgrade: 401/403 for the token, 400 for a missing or bad room
//! name, 403 for a wrong password, 404 for an unknown room (when rooms are not made by
//! joining), 429 for the connection rate or password guesses, 503 for a full room or server.
//! A publish the hub refuses is never dropped in silence: the connection is closed with the
//! code of its reason (1009 over the body limit, 4008 over the message rate, 1008 refused by
//! the application, 1013 busy). Direct messages to a user connected here arrive as their body
//! (it cannot acknowledge them: they count as delivered once queued on the connection).
//!
//! Liveness: the WebSocket layer pings a quiet member and any frame back (a pong is enough)
//! keeps it; a member that answers nothing is closed at the session's idle timeout.

use std::sync::Arc;

use chinwag_session::codec::{Encoded, FrameCodec};
use chinwag_session::{Server, ServerConfig, Service, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Frame, Refusal};

use super::DoorHandle;
use super::skeleton::{Admitted, Skeleton, auth_refusal, ip_of, pick_subprotocol, sign_on_refusal};
use crate::auth::AuthError;
use crate::close::{Close, CloseCode};
use crate::core::message::{Body, Event};
use crate::driver::{Conn, Hub};
use crate::error::RoomError;
use crate::link::{DoorFormat, Format};

/// The header carrying a room's password.
pub const PASSWORD_HEADER: &str = "x-room-password";

/// The query parameters read for a room's password when the door takes it from the query
/// ([`RoomsDoor::with_password_in_query`]), the first present wins: plumego's `room_password`,
/// then `password`.
pub const PASSWORD_QUERY_PARAMS: [&str; 2] = ["room_password", "password"];

/// The raw room door.
#[derive(Clone)]
pub struct RoomsDoor {
    door: Skeleton,
    format: DoorFormat,
    server: ServerConfig,
    password_in_query: bool,
}

impl RoomsDoor {
    /// The door of `hub` (registers its format with the hub).
    pub fn new(hub: Hub) -> Self {
        let format = hub.register_format(Arc::new(RawFormat));
        RoomsDoor {
            door: Skeleton {
                hub,
                name: "rooms",
                acknowledges: false,
            },
            format,
            server: ServerConfig::default(),
            password_in_query: false,
        }
    }

    /// Server and session settings (send queue size and overflow policy, admission bounds).
    pub fn with_server_config(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Accepts the room password from the query too: `room_password` (plumego's name, what a
    /// browser client of plumego sends), else `password`; the `X-Room-Password` header still
    /// wins. Off by default: URLs end up in logs (proxies, access logs, browser history).
    pub fn with_password_in_query(mut self, on: bool) -> Self {
        self.password_in_query = on;
        self
    }

    /// Serves the door on `acceptor` (a WebSocket acceptor of either engine).
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let service = RoomsService {
            door: self.door.clone(),
            format: self.format.clone(),
            password_in_query: self.password_in_query,
        };
        let mut server = self.server.clone();
        // Frames carry no heartbeat of their own: WebSocket pings keep the connection alive.
        server.session = server.session.clone().with_heartbeat_interval(None);
        let handle = Server::spawn(acceptor, FrameCodec, service, server);
        let addr = handle.local_addr().cloned();
        DoorHandle::new(
            "rooms",
            addr,
            Box::new(move |deadline| {
                let h = handle.clone();
                Box::pin(async move { h.shutdown(deadline).await })
            }),
        )
    }
}

impl std::fmt::Debug for RoomsDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomsDoor").finish_non_exhaustive()
    }
}

struct RoomsService {
    door: Skeleton,
    format: DoorFormat,
    password_in_query: bool,
}

/// A member of the door: its hub connection and its room.
struct Member {
    conn: Conn,
    room: String,
}

impl Service<FrameCodec> for RoomsService {
    type State = Member;

    /// A connection counts as not signed in until the hub signs it on (in `admit`).
    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn admit(
        &self,
        session: &Session<FrameCodec>,
        info: &ConnectInfo,
    ) -> Result<chinwag_session::Admission<Member>, Refusal> {
        let hub = &self.door.hub;
        let Some(room) = info.query_param("room") else {
            return Err(Refusal::new(400, "missing room: connect to ?room=NAME"));
        };
        let password = info.header(PASSWORD_HEADER).map(str::to_owned).or_else(|| {
            self.password_in_query
                .then(|| {
                    PASSWORD_QUERY_PARAMS
                        .iter()
                        .find_map(|p| info.query_param(p))
                })
                .flatten()
        });
        let auth = match self.door.admit(info, false).await? {
            Admitted::SignedIn(auth, _) => auth,
            // (Not asked for: this door takes no first-message logins.)
            Admitted::AwaitLogin => return Err(auth_refusal(&AuthError::Missing)),
        };
        // Everything a join can refuse is checked before the sign-on, which (under the sign-on
        // policy) may replace the user's other connections: a refused join leaves them alone.
        let ip = ip_of(info);
        let pass = hub
            .check_join(&room, password.as_deref(), ip)
            .await
            .map_err(|e| join_refusal(&e))?;
        let conn = self
            .door
            .sign_on(session, &self.format, auth, ip)
            .await
            .map_err(|e| sign_on_refusal(&e))?;
        if let Err(e) = hub.join_with(&conn, pass).await {
            hub.detach(&conn);
            return Err(join_refusal(&e));
        }
        let mut a = chinwag_session::Admission::new(Member { conn, room });
        a.subprotocol = pick_subprotocol(info);
        Ok(a)
    }

    async fn on_message(&self, _session: &Session<FrameCodec>, m: &Member, frame: Frame) {
        let body = match frame {
            Frame::Text(b) => match Body::text_from_bytes(b) {
                Ok(b) => b,
                Err(b) => Body::binary(b),
            },
            Frame::Binary(b) => Body::binary(b),
        };
        let hub = &self.door.hub;
        let later = {
            let (hub, conn) = (hub.clone(), m.conn.clone());
            move |e: RoomError| {
                tracing::debug!(conn = conn.id().0, error = %e, "room publish not kept; closing");
                hub.close(&conn, refusal_close(&e));
            }
        };
        let published = hub
            .publish_from_detached(&m.conn, &m.room, body, later)
            .await;
        if let Err(e) = published {
            tracing::debug!(conn = m.conn.id().0, error = %e, "room publish refused; closing");
            hub.close(&m.conn, refusal_close(&e));
        }
    }
}

/// The HTTP refusal of a join that failed.
fn join_refusal(e: &RoomError) -> Refusal {
    match e {
        RoomError::BadName(_) | RoomError::BadPassword => Refusal::new(400, e.to_string()),
        RoomError::WrongPassword => Refusal::forbidden(e.to_string()),
        RoomError::NoSuchRoom => Refusal::new(404, e.to_string()),
        RoomError::GuessingTooFast => {
            Refusal::new(429, e.to_string()).with_retry_after(std::time::Duration::from_secs(1))
        }
        _ => Refusal::unavailable(e.to_string(), std::time::Duration::from_secs(5)),
    }
}

/// The close that answers a refused publish on this door.
fn refusal_close(e: &RoomError) -> Close {
    let code = match e {
        RoomError::TooLarge { .. } => CloseCode::TOO_BIG,
        RoomError::RateLimited => CloseCode::RATE_LIMITED,
        RoomError::Busy => CloseCode::TRY_AGAIN_LATER,
        RoomError::History(_) => CloseCode::TRY_AGAIN_LATER,
        _ => CloseCode::POLICY,
    };
    Close::new(code, e.to_string())
}

/// Raw frames: a publish or a direct message is its body, as a text or binary message.
struct RawFormat;

impl Format for RawFormat {
    fn encode(&self, event: &Event) -> Option<Encoded> {
        let body = event.body()?;
        Some(Encoded::frame(if body.is_binary() {
            Frame::Binary(body.bytes().clone())
        } else {
            Frame::Text(body.bytes().clone())
        }))
    }
}
