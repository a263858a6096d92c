//! The tok-style TCP door: frames are a `u32` big-endian length and that many bytes. The first
//! frame a client sends is its token (within the auth timeout); every later frame goes to the
//! application ([`App::on_receive`](crate::App::on_receive)), in order. The server sends direct
//! messages and room publishes as frames of their body.
//!
//! TCP has no close codes: a connection the hub closes (replaced, kicked, expired) gets the
//! door's goodbye frame first when one is configured ([`TokDoor::with_bye`]), then the socket
//! is closed. A token that is refused closes the connection at once. Clients of this door
//! cannot acknowledge: a queued message counts as delivered once it is queued on the
//! connection (at-most-once, as in tok).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chinwag_session::codec::{Encoded, LengthDelimited};
use chinwag_session::{Admission, CloseCause, Server, ServerConfig, Service, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Refusal};

use super::{DoorHandle, ip_of, slot};
use crate::close::{Close, CloseCode};
use crate::conn::Conn;
use crate::hub::Hub;
use crate::link::{Format, SessionLink};
use crate::message::{Body, Event};

/// Makes the goodbye frame for a close (e.g. a JSON object with the code), or none.
pub type ByeFn = Arc<dyn Fn(&Close) -> Option<Bytes> + Send + Sync>;

/// The tok-style door.
#[derive(Clone)]
pub struct TokDoor {
    hub: Hub,
    server: ServerConfig,
    max_frame: usize,
    bye: Option<ByeFn>,
}

impl TokDoor {
    /// The door of `hub`; frames up to the hub's body limit (plus nothing: the token frame
    /// has the token limit).
    pub fn new(hub: Hub) -> Self {
        let max_frame = hub
            .config()
            .limits
            .max_body_bytes
            .max(hub.config().tokens.max_token_len);
        TokDoor {
            hub,
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

    /// Serves the door on `acceptor` (TCP, TLS or Unix).
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let service = TokService {
            hub: self.hub.clone(),
            bye: self.bye.clone(),
        };
        let mut server = self.server.clone();
        server.session = server.session.clone().with_heartbeat_interval(None);
        let handle = Server::spawn(
            acceptor,
            LengthDelimited::new(self.max_frame),
            service,
            server,
        );
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
    hub: Hub,
    bye: Option<ByeFn>,
}

/// Per connection: the hub connection once the token frame was accepted.
struct TokState {
    conn: OnceLock<Arc<Conn>>,
    ip: Option<std::net::IpAddr>,
    timer: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Service<LengthDelimited> for TokService {
    type State = TokState;

    async fn admit(
        &self,
        _session: &Session<LengthDelimited>,
        info: &ConnectInfo,
    ) -> Result<Admission<TokState>, Refusal> {
        let ip = ip_of(info);
        self.hub.check_connection_rate(ip)?;
        Ok(Admission::new(TokState {
            conn: OnceLock::new(),
            ip,
            timer: std::sync::Mutex::new(None),
        }))
    }

    fn on_open(
        &self,
        session: &Session<LengthDelimited>,
        state: &TokState,
    ) -> Result<(), chinwag_transport::CloseReason> {
        let s = session.clone();
        let hub = self.hub.clone();
        let wait = hub.config().auth_timeout;
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            hub.count_auth_timeout();
            s.close_with(
                CloseCause::Application(
                    Close::new(CloseCode::AUTH_TIMEOUT, "no token in time").to_transport(),
                ),
                None,
            );
        });
        *state.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        Ok(())
    }

    async fn on_message(&self, session: &Session<LengthDelimited>, state: &TokState, frame: Bytes) {
        if let Some(conn) = state.conn.get() {
            if let Err(e) = self.hub.receive_app(conn, Body::binary(frame)).await {
                tracing::debug!(conn = conn.id().0, error = %e, "app message refused");
            }
            return;
        }
        // The first frame: the token.
        if let Some(t) = state.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        let token = match std::str::from_utf8(&frame) {
            Ok(t) => t.trim(),
            Err(_) => {
                crate::metrics::auth_refusal("malformed");
                session.close();
                return;
            }
        };
        let auth = match self.hub.authenticate_token(token).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "tok door: token refused");
                let close = Close::new(CloseCode::AUTH_FAILED, e.to_string());
                self.close_with_bye(session, &close);
                return;
            }
        };
        let link = Arc::new(SessionLink::new(
            session.clone(),
            TokFormat {
                bye: self.bye.clone(),
            },
            slot::TOK,
            false,
        ));
        match self.hub.attach(auth, link, "tok", state.ip).await {
            Ok(conn) => {
                let h = self.hub.clone();
                let c = conn.clone();
                session.add_close_callback("chinwag-hub", move |_| h.detach(&c));
                let _ = state.conn.set(conn);
            }
            Err(e) => {
                let close = Close::new(CloseCode::TRY_AGAIN_LATER, e.to_string());
                self.close_with_bye(session, &close);
            }
        }
    }

    fn on_close(&self, _session: &Session<LengthDelimited>, state: &TokState, _: &CloseCause) {
        if let Some(t) = state.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

impl TokService {
    fn close_with_bye(&self, session: &Session<LengthDelimited>, close: &Close) {
        if let Some(bye) = self.bye.as_ref().and_then(|f| f(close))
            && let Ok(enc) = session.encode(&bye)
        {
            let _ = session.try_send_encoded(enc);
        }
        session.close_with(CloseCause::Application(close.to_transport()), None);
    }
}

/// Frames of the body; the configured goodbye.
struct TokFormat {
    bye: Option<ByeFn>,
}

impl Format<LengthDelimited> for TokFormat {
    fn encode(&self, session: &Session<LengthDelimited>, event: &Event) -> Option<Encoded> {
        session.encode(event.body()?.bytes()).ok()
    }

    fn bye(&self, session: &Session<LengthDelimited>, close: &Close) -> Option<Encoded> {
        let b = self.bye.as_ref()?(close)?;
        session.encode(&b).ok()
    }
}
