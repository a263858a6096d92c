//! The tok-style door, over TCP (or TLS, or Unix sockets) and over WebSocket.
//!
//! **TCP**: frames are a `u32` big-endian length and that many bytes. The first frame a client
//! sends is its token, any bytes (within the auth timeout; see
//! [`Authenticator::authenticate_bytes`](crate::auth::Authenticator::authenticate_bytes));
//! every later frame goes to the application ([`App::on_receive`](crate::App::on_receive)), in
//! order, and the application's answer, when it gives one, comes back as a frame. The server
//! sends direct messages and room publishes as frames of their body.
//!
//! **WebSocket** ([`TokDoor::serve_ws`]), as tok's WebSocket adapters: the token comes with the
//! HTTP request — the `Authorization` header (the token itself, as tok's example client sends
//! it, or `Bearer <token>`), or the query parameter the door names
//! ([`TokDoor::with_ws_token_query`], off by default: URLs end up in logs) — and is checked
//! before the upgrade is answered (`401`/`403`/`503` as on the other doors). Then every
//! WebSocket message (text or binary) is one frame to the application, and every frame the
//! server sends is one binary message, with no length prefix.
//!
//! **Frame limit** ([`TokDoor::with_max_frame`]): by default the hub's body limit. A frame from
//! the client over it ends the connection: over TCP the length prefix is refused before any
//! memory is reserved and the socket is closed (tok does the same), over WebSocket the
//! connection is closed with 1009. A frame within it but over the hub's body limit (a door
//! configured larger than the hub) is refused by the hub: the connection is closed with 1009
//! too (after the goodbye frame over TCP). Raise the hub's body limit with the door's.
//!
//! **Closes**: TCP has no close codes: a connection the hub closes (replaced, kicked, expired)
//! gets the door's goodbye frame first when one is configured ([`TokDoor::with_bye`]), then the
//! socket is closed. A token that is refused closes the connection (with the goodbye). Clients
//! of this door cannot acknowledge: a queued message counts as delivered once it is queued on
//! the connection (at-most-once, as in tok).
//!
//! **Liveness**: tok clients need not send anything after their token; over TCP the door never
//! closes a connection for being quiet. With a ping ([`TokDoor::with_ping`], tok's
//! `PingGenerator`) the server writes the ping frame whenever it wrote nothing else for the
//! period, so a peer that is gone is found when writing to it fails (at once for a peer whose
//! host answers with a reset; after the write timeout for one that stopped reading; when the
//! kernel gives up retransmitting for a vanished host). Over WebSocket the engine's keepalive
//! pings also find a silent peer (its pong wait).
//!
//! The first TCP frame is the token whatever the hub's token sources say (first-message logins
//! off, anonymous connections on): it is this door's only way to sign in. A UTF-8 token has its
//! surrounding white space removed; a token of other bytes goes to the authenticator as it is
//! (the default [`Authenticator::authenticate_bytes`](crate::auth::Authenticator::authenticate_bytes)
//! refuses it as malformed; the event proxy's and [`StaticTokens`](crate::auth::StaticTokens)
//! take any bytes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::codec::{Encoded, FrameCodec, LengthDelimited};
use chinwag_session::{Admission, CloseCause, Server, ServerConfig, Service, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Frame, Framing, Refusal};

use super::DoorHandle;
use super::skeleton::{AuthTimer, Formats, Skeleton, auth_refusal, ip_of, sign_on_refusal};
use crate::auth::{AuthContext, AuthError};
use crate::close::{Close, CloseCode};
use crate::core::message::{Body, Event};
use crate::driver::{Conn, Hub};
use crate::error::SendError;
use crate::link::{DoorFormat, Format};

/// Makes the goodbye frame for a close (e.g. a JSON object with the code), or none.
pub type ByeFn = Arc<dyn Fn(&Close) -> Option<Bytes> + Send + Sync>;

/// tok's server ping: `payload` written as a frame whenever the server wrote nothing else to
/// a connection for `every` (tok's default period: [`TokPing::TOK_PERIOD`], 30 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokPing {
    /// The ping frame's bytes (tok's `PingGenerator.Ping()`; may be empty).
    pub payload: Bytes,
    /// How long the server may write nothing before it writes the ping.
    pub every: Duration,
}

impl TokPing {
    /// tok's default ping period.
    pub const TOK_PERIOD: Duration = Duration::from_secs(30);

    /// `payload` every `every` (at least 1 ms).
    pub fn new(payload: impl Into<Bytes>, every: Duration) -> Self {
        TokPing {
            payload: payload.into(),
            every: every.max(Duration::from_millis(1)),
        }
    }
}

/// The tok-style door.
///
/// ```no_run
/// use std::time::Duration;
/// use chinwag::hub::doors::tok::{TokDoor, TokPing};
///
/// # async fn f(hub: chinwag::hub::Hub) -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = chinwag::transport::tcp::TcpAcceptor::bind(
///     "127.0.0.1:4200".parse()?,
///     Default::default(),
/// )?;
/// let door = TokDoor::new(hub)
///     .with_max_frame(4 << 20) // tok's limit; raise the hub's body limit with it
///     .with_ping(Some(TokPing::new(&b"ping"[..], TokPing::TOK_PERIOD)))
///     .serve(acceptor);
/// # let _ = door; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokDoor {
    door: Skeleton,
    server: ServerConfig,
    max_frame: usize,
    bye: Option<ByeFn>,
    ping: Option<TokPing>,
    ws_token_query: Option<String>,
}

impl TokDoor {
    /// The door of `hub`; frames up to the hub's body limit (the token frame: the token
    /// limit).
    pub fn new(hub: Hub) -> Self {
        let max_frame = hub.config().limits.max_body_bytes;
        TokDoor {
            door: Skeleton {
                hub,
                name: "tok",
                acknowledges: false,
            },
            server: ServerConfig::default(),
            max_frame,
            bye: None,
            ping: None,
            ws_token_query: None,
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

    /// The largest frame, in bytes, either way (tok's is 4 MiB). Default: the hub's body limit
    /// (64 KiB by default), which bounds what reaches the application too: set both. (Below the
    /// body limit, a message to the client over it is not written over TCP — it counts as
    /// filtered — and is sent over WebSocket.)
    pub fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// The largest frame, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// tok's server ping (none by default).
    pub fn with_ping(mut self, ping: Option<TokPing>) -> Self {
        self.ping = ping;
        self
    }

    /// Over WebSocket, also take the token from the query parameter `name` (when there is no
    /// `Authorization` header: what a browser can send). Off by default: URLs end up in logs.
    pub fn with_ws_token_query(mut self, name: Option<&str>) -> Self {
        self.ws_token_query = name.map(str::to_owned);
        self
    }

    /// The session settings of this door: no idle close over TCP (a quiet tok client is not
    /// idle), and the ping as the heartbeat.
    fn session(&self, over_ws: bool) -> ServerConfig {
        let mut server = self.server.clone();
        let mut session = server
            .session
            .clone()
            .with_heartbeat_interval(self.ping.as_ref().map(|p| p.every));
        if !over_ws {
            session = session.with_idle_timeout(None);
        }
        server.session = session;
        server
    }

    /// Serves the door on `acceptor` (TCP, TLS or Unix); registers its format with the hub.
    pub fn serve<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        // The token frame may be as long as the token limit.
        let codec = LengthDelimited::new(
            self.max_frame
                .max(self.door.hub.config().tokens.max_token_len),
        );
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
            max_frame: self.max_frame,
            ping: self.ping.clone(),
        };
        let handle = Server::spawn(acceptor, codec, service, self.session(false));
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

    /// Serves the door over WebSocket on `acceptor` (a WebSocket acceptor of either engine, e.g.
    /// one route of the HTTP port): the token from the HTTP request, one frame per message.
    /// The acceptor's message limit must be at least [`max_frame`](Self::max_frame).
    pub fn serve_ws<A: Acceptor>(&self, acceptor: A) -> DoorHandle {
        let format = self.door.hub.register_format(Arc::new(TokWsFormat {
            bye: self.bye.clone(),
        }));
        let service = TokWsService {
            door: self.door.clone(),
            format,
            max_frame: self.max_frame,
            ping: self.ping.clone(),
            token_query: self.ws_token_query.clone(),
        };
        let handle = Server::spawn(acceptor, FrameCodec, service, self.session(true));
        let addr = handle.local_addr().cloned();
        DoorHandle::new(
            "tok-ws",
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
            .field("ping", &self.ping)
            .field("ws_token_query", &self.ws_token_query)
            .finish_non_exhaustive()
    }
}

/// Hands a frame of a signed-in connection to the application; a frame the hub refuses as too
/// large (the door allows more than the hub's body limit) closes the connection with 1009.
async fn to_app(hub: &Hub, conn: &Conn, frame: Bytes) -> Option<Body> {
    match hub.receive_app(conn, Body::binary(frame)).await {
        Ok(answer) => answer,
        Err(e @ SendError::TooLarge { .. }) => {
            tracing::debug!(conn = conn.id().0, error = %e, "tok frame over the hub's body limit; closing");
            hub.close(conn, Close::new(CloseCode::TOO_BIG, e.to_string()));
            None
        }
        Err(e) => {
            tracing::debug!(conn = conn.id().0, error = %e, "app message refused");
            None
        }
    }
}

struct TokService {
    door: Skeleton,
    formats: Formats,
    max_frame: usize,
    ping: Option<TokPing>,
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
            if frame.len() > self.max_frame {
                // (Only the token frame may be longer: up to the token limit.)
                let why = format!(
                    "frame of {} bytes is over the limit of {}",
                    frame.len(),
                    self.max_frame
                );
                hub.close(&conn, Close::new(CloseCode::TOO_BIG, why));
                return;
            }
            // The application's answer: a frame back to this client.
            if let Some(answer) = to_app(hub, &conn, frame).await
                && let Err(e) = session.send(answer.bytes()).await
            {
                tracing::debug!(conn = conn.id().0, error = %e, "app answer not sent");
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

    /// The ping frame, when the door has one.
    fn heartbeat(&self, session: &Session<LengthDelimited>, _: &TokState) -> Option<Encoded> {
        use chinwag_session::codec::Codec;
        let ping = self.ping.as_ref()?;
        session
            .codec()
            .encode(&ping.payload, session.framing())
            .ok()
    }
}

// ---- over WebSocket ---------------------------------------------------------------------------

struct TokWsService {
    door: Skeleton,
    format: DoorFormat,
    max_frame: usize,
    ping: Option<TokPing>,
    token_query: Option<String>,
}

impl TokWsService {
    /// The token of the HTTP request: the `Authorization` header (the token, or `Bearer
    /// <token>`), else the query parameter when one is named.
    fn token(&self, info: &ConnectInfo) -> Option<String> {
        if let Some(h) = info.header("authorization") {
            let h = h.trim();
            let t = match h.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => h,
            };
            return Some(t.to_owned());
        }
        self.token_query
            .as_deref()
            .and_then(|name| info.query_param(name))
    }
}

impl Service<FrameCodec> for TokWsService {
    type State = Conn;

    /// A connection counts as not signed in until the hub signs it on (in `admit`).
    fn establish_on_admit(&self) -> bool {
        false
    }

    async fn admit(
        &self,
        session: &Session<FrameCodec>,
        info: &ConnectInfo,
    ) -> Result<Admission<Conn>, Refusal> {
        self.door.admit_first_message(info)?;
        let Some(token) = self.token(info).filter(|t| !t.is_empty()) else {
            crate::metrics::auth_refusal("missing");
            return Err(auth_refusal(&AuthError::Missing));
        };
        let ctx = AuthContext::new().with_door("tok").with_ip(ip_of(info));
        let auth = self
            .door
            .hub
            .authenticate_bytes(token.as_bytes(), ctx)
            .await
            .map_err(|e| auth_refusal(&e))?;
        let conn = self
            .door
            .sign_on(session, &self.format, auth, ip_of(info))
            .await
            .map_err(|e| sign_on_refusal(&e))?;
        Ok(Admission::new(conn))
    }

    async fn on_message(&self, session: &Session<FrameCodec>, conn: &Conn, frame: Frame) {
        let bytes = match frame {
            Frame::Text(b) | Frame::Binary(b) => b,
        };
        let hub = &self.door.hub;
        if bytes.len() > self.max_frame {
            let why = format!(
                "frame of {} bytes is over the limit of {}",
                bytes.len(),
                self.max_frame
            );
            hub.close(conn, Close::new(CloseCode::TOO_BIG, why));
            return;
        }
        // The application's answer: one binary message back to this client.
        if let Some(answer) = to_app(hub, conn, bytes).await
            && let Err(e) = session.send(&Frame::Binary(answer.bytes().clone())).await
        {
            tracing::debug!(conn = conn.id().0, error = %e, "app answer not sent");
        }
    }

    /// The ping frame, as a binary message, when the door has one.
    fn heartbeat(&self, _session: &Session<FrameCodec>, _: &Conn) -> Option<Encoded> {
        let ping = self.ping.as_ref()?;
        Some(Encoded::frame(Frame::Binary(ping.payload.clone())))
    }
}

/// One binary message per frame; the configured goodbye as one more message.
struct TokWsFormat {
    bye: Option<ByeFn>,
}

impl Format for TokWsFormat {
    fn encode(&self, event: &Event) -> Option<Encoded> {
        Some(Encoded::frame(Frame::Binary(event.body()?.bytes().clone())))
    }

    fn bye(&self, close: &Close) -> Option<Encoded> {
        let b = self.bye.as_ref()?(close)?;
        Some(Encoded::frame(Frame::Binary(b)))
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
