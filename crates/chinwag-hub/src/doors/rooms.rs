//! The raw WebSocket room door, plumego style: a client connects to `GET /ws?room=NAME` (the
//! path is the acceptor's), signs in with its token at connect (`Authorization: Bearer`, the
//! `bearer.<token>` subprotocol, or the query when enabled), gives the room's password (if it
//! has one) in the `X-Room-Password` header — or, only when enabled, the `password` query
//! parameter — and from then on every text or binary message it sends is published to the room
//! as it is, and it receives every publish of the room as a message of the same kind.
//!
//! Refusals happen before the upgrade: 401/403 for the token, 400 for a missing or bad room
//! name, 403 for a wrong password, 503 for a full room or server, 429 for the connection rate.
//! Direct messages to a user connected here arrive as their body (it cannot acknowledge them:
//! they count as delivered once queued on the connection).

use std::sync::Arc;

use chinwag_session::codec::{Encoded, FrameCodec};
use chinwag_session::{Server, ServerConfig, Service, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Frame, Refusal};

use super::{DoorHandle, auth_refusal, ip_of, pick_subprotocol, sign_on_refusal, slot};
use crate::auth::AuthError;
use crate::conn::Conn;
use crate::error::RoomError;
use crate::hub::Hub;
use crate::link::{Format, SessionLink};
use crate::message::{Body, Event};

/// The header carrying a room's password.
pub const PASSWORD_HEADER: &str = "x-room-password";

/// The raw room door.
#[derive(Clone)]
pub struct RoomsDoor {
    hub: Hub,
    server: ServerConfig,
    password_in_query: bool,
}

impl RoomsDoor {
    /// The door of `hub`.
    pub fn new(hub: Hub) -> Self {
        RoomsDoor {
            hub,
            server: ServerConfig::default(),
            password_in_query: false,
        }
    }

    /// Server and session settings (send queue size and overflow policy, admission bounds).
    pub fn with_server_config(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// Accepts the room password from the `password` query parameter too (off by default: URLs
    /// end up in logs).
    pub fn with_password_in_query(mut self, on: bool) -> Self {
        self.password_in_query = on;
        self
    }

    /// Serves the door on `acceptor` (a WebSocket acceptor of either engine).
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let service = RoomsService {
            hub: self.hub.clone(),
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
    hub: Hub,
    password_in_query: bool,
}

/// A member of the door: its hub connection and its room.
struct Member {
    conn: Arc<Conn>,
    room: String,
}

impl Service<FrameCodec> for RoomsService {
    type State = Member;

    async fn admit(
        &self,
        session: &Session<FrameCodec>,
        info: &ConnectInfo,
    ) -> Result<chinwag_session::Admission<Member>, Refusal> {
        let hub = &self.hub;
        let ip = ip_of(info);
        hub.check_connection_rate(ip)?;
        let Some(room) = info.query_param("room") else {
            return Err(Refusal::new(400, "missing room: connect to ?room=NAME"));
        };
        let password = info.header(PASSWORD_HEADER).map(str::to_owned).or_else(|| {
            self.password_in_query
                .then(|| info.query_param("password"))
                .flatten()
        });
        let auth = match hub.authenticate_connect(info).await {
            Ok(Some((auth, _))) => auth,
            Ok(None) => {
                crate::metrics::auth_refusal("missing");
                return Err(auth_refusal(&AuthError::Missing));
            }
            Err(e) => return Err(auth_refusal(&e)),
        };
        let link = Arc::new(SessionLink::new(
            session.clone(),
            RawFormat,
            slot::ROOMS,
            false,
        ));
        let conn = hub
            .attach(auth, link, "rooms", ip)
            .await
            .map_err(|e| sign_on_refusal(&e))?;
        let h = hub.clone();
        let c = conn.clone();
        session.add_close_callback("chinwag-hub", move |_| h.detach(&c));
        if let Err(e) = hub.join(&conn, &room, password.as_deref()).await {
            hub.detach(&conn);
            return Err(match e {
                RoomError::BadName | RoomError::BadPassword => Refusal::new(400, e.to_string()),
                RoomError::WrongPassword => Refusal::forbidden(e.to_string()),
                RoomError::NoSuchRoom => Refusal::new(404, e.to_string()),
                _ => Refusal::unavailable(e.to_string(), std::time::Duration::from_secs(5)),
            });
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
        if let Err(e) = self.hub.publish_from(&m.conn, &m.room, body) {
            tracing::debug!(conn = m.conn.id().0, error = %e, "room publish refused");
        }
    }
}

/// Raw frames: a publish or a direct message is its body, as a text or binary message.
struct RawFormat;

impl Format<FrameCodec> for RawFormat {
    fn encode(&self, _session: &Session<FrameCodec>, event: &Event) -> Option<Encoded> {
        let body = event.body()?;
        Some(Encoded::frame(if body.is_binary() {
            Frame::Binary(body.bytes().clone())
        } else {
            Frame::Text(body.bytes().clone())
        }))
    }
}
