//! The tok-style TCP door: frames are a `u32` big-endian length and that many bytes. The first
//! frame a client sends is its token, any bytes (within the auth timeout; see
//! [`Authenticator::authenticate_bytes`](crate::auth::Authenticator::authenticate_bytes));
//! every later frame goes to the application ([`App::on_receive`](crate::App::on_receive)), in
//! order, and the application's answer, when it gives one, comes back as a frame. The server
//! sends direct messages and room publishes as frames of their body.
//!
//! TCP has no close codes: a connection the hub closes (replaced, kicked, expired) gets the
//! door's goodbye frame first when one is configured ([`TokDoor::with_bye`]), then the socket
//! is closed. A token that is refused closes the connection (with the goodbye). Clients of
//! this door cannot acknowledge: a queued message counts as delivered once it is queued on the
//! connection (at-most-once, as in tok).
//!
//! Liveness: tok clients need not send anything after their token; the door never closes a
//! connection for being quiet. A peer that is gone is found when a write to it fails.
//!
//! The first frame is the token whatever the hub's token sources say (first-message logins
//! off, anonymous connections on): it is this door's only way to sign in.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chinwag_session::codec::{Encoded, LengthDelimited};
use chinwag_session::{Admission, CloseCause, Server, ServerConfig, Service, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Framing, Refusal};

use super::DoorHandle;
use super::skeleton::{AuthTimer, Formats, Skeleton, ip_of};
use crate::auth::AuthContext;
use crate::close::{Close, CloseCode};
use crate::core::message::{Body, Event};
use crate::driver::{Conn, Hub};
use crate::link::Format;

/// Makes the goodbye frame for a close (e.g. a JSON object with the code), or none.
pub type ByeFn = Arc<dyn Fn(&Close) -> Option<Bytes> + Send + Sync>;

/// The tok-style door.
#[derive(Clone)]
pub struct TokDoor {
    door: Skeleton,
    server: ServerConfig,
    max_frame: usize,
    bye: Option<ByeFn>,
}

impl TokDoor {
    /// The door of `hub`; frames up to the hub's body limit (the token frame: the token
    /// limit).
    pub fn new(hub: Hub) -> Self {
        let max_frame = hub
            .config()
            .limits
            .max_body_bytes
            .max(hub.config().tokens.max_token_len);
        TokDoor {
            door: Skeleton {
                hub,
                name: "tok",
                acknowledges: false,
            },
            server: ServerConfig::default(),
            max_frame,
            bye: None,
        }
    }

    /// Server and session settings.
    pub fn with_server_config(mut self, server: ServerConfig) -> Self {
        self.server = server;
        self
    }

    /// The goodbye frame sent before the hub closes a connection.
    pub fn with_bye(mut self, bye: ByeFn) -> Self {
        self.bye = Some(bye);
        self
    }

    /// Serves the door on `acceptor` (TCP, TLS or Unix); registers its format with the hub.
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let codec = LengthDelimited::new(self.max_frame);
        let formats = Formats::register(&self.door.hub, |framing| {
            Arc::new(TokFormat {
                codec: codec.clone(),
                framing,
                bye: self.bye.clone(),
            })
        });
        let service = TokService {
            door: self.door.clone(),
            formats,
        };
        let mut server = self.server.clone();
        // No heartbeat of tok's own, and a quiet client is not idle (see the module docs).
        server.session = server
            .session
            .clone()
            .with_heartbeat_interval(None)
            .with_idle_timeout(None);
        let handle = Server::spawn(acceptor, codec, service, server);
        let addr = handle.local_addr().cloned();
        DoorHandle::new(
            "tok",
            addr,
            Box::new(move |deadline| {
                let h = handle.clone();
                Box::pin(async move { h.shutdown(deadline).await })
            }),
        )
    }
}

impl std::fmt::Debug for TokDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokDoor")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

struct TokService {
    door: Skeleton,
    formats: Formats,
}

/// Per connection: the hub connection once the token frame was accepted.
struct TokState {
    conn: Mutex<Option<Conn>>,
    ip: Option<std::net::IpAddr>,
    timer: Mutex<Option<AuthTimer>>,
}

impl Service<LengthDelimited> for TokService {
    type State = TokState;

    /// A connection counts as not signed in until its token frame signs it on.
    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn admit(
        &self,
        _session: &Session<LengthDelimited>,
        info: &ConnectInfo,
    ) -> Result<Admission<TokState>, Refusal> {
        // The token is the first frame, always (whatever the hub's token sources say about
        // tokens at connect, anonymous connections or first-message logins elsewhere).
        self.door.admit_first_message(info)?;
        Ok(Admission::new(TokState {
            conn: Mutex::new(None),
            ip: ip_of(info),
            timer: Mutex::new(None),
        }))
    }

    fn on_open(
        &self,
        session: &Session<LengthDelimited>,
        state: &TokState,
    ) -> Result<(), chinwag_transport::CloseReason> {
        let timer = self.door.auth_timer(session, self.formats.of(session));
        *state.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer);
        Ok(())
    }

    async fn on_message(&self, session: &Session<LengthDelimited>, state: &TokState, frame: Bytes) {
        let hub = &self.door.hub;
        let conn = state.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(conn) = conn {
            match hub.receive_app(&conn, Body::binary(frame)).await {
                // The application's answer: a frame back to this client.
                Ok(Some(answer)) => {
                    if let Err(e) = session.send(answer.bytes()).await {
                        tracing::debug!(conn = conn.id().0, error = %e, "app answer not sent");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(conn = conn.id().0, error = %e, "app message refused"),
            }
            return;
        }
        // The first frame: the token, any bytes (a UTF-8 one without surrounding
        // whitespace); the authenticator decides what it accepts.
        drop(state.timer.lock().unwrap_or_else(|p| p.into_inner()).take());
        let token: &[u8] = match std::str::from_utf8(&frame) {
            Ok(t) => t.trim().as_bytes(),
            Err(_) => &frame,
        };
        let ctx = AuthContext::new().with_door("tok").with_ip(state.ip);
        let auth = match hub.authenticate_bytes(token, ctx).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "tok door: token refused");
                let close = Close::new(CloseCode::AUTH_FAILED, e.to_string());
                self.door.close(session, self.formats.of(session), &close);
                return;
            }
        };
        match self
            .door
            .sign_on(session, self.formats.of(session), auth, state.ip)
            .await
        {
            Ok(conn) => {
                *state.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
            }
            Err(e) => {
                let close = Close::new(CloseCode::TRY_AGAIN_LATER, e.to_string());
                self.door.close(session, self.formats.of(session), &close);
            }
        }
    }

    fn on_close(&self, _session: &Session<LengthDelimited>, state: &TokState, _: &CloseCause) {
        drop(state.timer.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// Frames of the body; the configured goodbye.
struct TokFormat {
    codec: LengthDelimited,
    framing: Framing,
    bye: Option<ByeFn>,
}

impl Format for TokFormat {
    fn encode(&self, event: &Event) -> Option<Encoded> {
        use chinwag_session::codec::Codec;
        self.codec.encode(event.body()?.bytes(), self.framing).ok()
    }

    fn bye(&self, close: &Close) -> Option<Encoded> {
        use chinwag_session::codec::Codec;
        let b = self.bye.as_ref()?(close)?;
        self.codec.encode(&b, self.framing).ok()
    }
}
