//! The gotalk RPC chat door: the chat protocol of `docs/chat-protocol.md` on chinwag RPC, over
//! any transport (WebSocket on either engine, TCP, TLS, Unix).
//!
//! Operations (JSON requests and results; errors are gotalk error results whose text is a JSON
//! object `{"code": "...", "message": "..."}`): `auth`, `refresh`, `whoami`, `send`, `ack`,
//! `join`, `leave`, `publish`, `rooms`, `members`, `online`, `app`. Notifications from the
//! server: `message` (direct), `room` (a publish), `presence`, `bye` (then the close).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use chinwag_hub::{Hub, doors::chat::ChatDoor};
//! use chinwag_transport::tcp::TcpAcceptor;
//!
//! let hub = Hub::builder().build();
//! let tcp = TcpAcceptor::bind("127.0.0.1:4100".parse().unwrap(), Default::default())?;
//! let door = ChatDoor::new(hub.clone()).serve(tcp);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use chinwag_rpc::{Admit, Handlers, Peer, RpcConfig, RpcServer};
use chinwag_session::codec::{Encoded, WireCodec};
use chinwag_session::{ServerConfig, Session};
use chinwag_transport::{Acceptor, ConnectInfo, Framing, Refusal};
use chinwag_wire::{Message, Name};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{DoorHandle, auth_refusal, ip_of, pick_subprotocol, sign_on_refusal, slot};
use crate::auth::{AuthError, Authenticated, TokenSource};
use crate::close::{Close, CloseCode};
use crate::conn::Conn;
use crate::error::{RoomError, SendError, SignOnError};
use crate::hub::{Hub, SendOptions};
use crate::link::{Format, SessionLink};
use crate::message::{Body, Event, MessageId};
use crate::policy::ConnId;

/// First-message logins allowed to fail before the connection is closed (4001).
const MAX_AUTH_FAILURES: u32 = 3;
/// Users one `online` request may ask about.
const MAX_ONLINE_QUERY: usize = 100;

/// The chat door: serves the chat protocol for a [`Hub`].
#[derive(Clone)]
pub struct ChatDoor {
    hub: Hub,
    rpc: RpcConfig,
    server: ServerConfig,
}

impl ChatDoor {
    /// The door of `hub`, with default RPC and server settings.
    pub fn new(hub: Hub) -> Self {
        ChatDoor {
            hub,
            rpc: RpcConfig::default(),
            server: ServerConfig::default(),
        }
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
        let handlers = Arc::new(self.handlers());
        let admit = Arc::new(ChatAdmit {
            hub: self.hub.clone(),
        });
        let server = RpcServer::spawn_admitting(
            acceptor,
            handlers,
            self.rpc.clone(),
            self.server.clone(),
            admit,
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
        let mut h = Handlers::new();
        let hub = &self.hub;
        op(&mut h, hub, "auth", |hub, peer, r: AuthReq| async move {
            let state = state_of(&peer)?;
            // One `auth` at a time per connection; an anonymous connection may sign in once.
            let _one = state.auth_lock.lock().await;
            if state.current().is_some() && !state.anonymous.load(Ordering::Acquire) {
                return Err(ChatError::new("already_signed_in", "already signed in"));
            }
            match hub.authenticate_token(&r.token).await {
                Ok(auth) => {
                    let conn = sign_on(&hub, &peer, &state, auth, false)
                        .await
                        .map_err(|e| ChatError::new(e.code(), e.to_string()))?;
                    Ok(whoami(&conn))
                }
                Err(e) => {
                    let n = state.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= MAX_AUTH_FAILURES {
                        close_session(
                            peer.session(),
                            &Close::new(CloseCode::AUTH_FAILED, e.to_string()),
                        );
                    }
                    Err(auth_error(&e))
                }
            }
        });
        op(&mut h, hub, "whoami", |_hub, peer, _: Empty| async move {
            let conn = signed_in(&peer)?;
            Ok(whoami(&conn))
        });
        op(&mut h, hub, "refresh", |hub, peer, r: AuthReq| async move {
            let conn = signed_in(&peer)?;
            let exp = hub
                .refresh(&conn, &r.token)
                .await
                .map_err(|e| auth_error(&e))?;
            Ok(ExpiresJson {
                expires_at: exp.map(unix_secs),
            })
        });
        op(&mut h, hub, "send", |hub, peer, r: SendReq| async move {
            let conn = signed_in(&peer)?;
            let body = r.body.into_body()?;
            let mut opts = SendOptions::default();
            if let Some(ms) = r.ttl_ms {
                opts = opts.with_ttl(Duration::from_millis(ms));
            }
            hub.send_from(&conn, &r.to, body, opts)
                .await
                .map_err(|e| send_error(&e))
        });
        op(&mut h, hub, "ack", |hub, peer, r: AckReq| async move {
            let conn = signed_in(&peer)?;
            let removed = hub
                .ack(&conn, MessageId(r.id))
                .await
                .map_err(|e| send_error(&e))?;
            Ok(AckJson { removed })
        });
        op(&mut h, hub, "join", |hub, peer, r: JoinReq| async move {
            let conn = signed_in(&peer)?;
            hub.join(&conn, &r.room, r.password.as_deref())
                .await
                .map_err(|e| room_error(&e))
        });
        op(&mut h, hub, "leave", |hub, peer, r: RoomReq| async move {
            let conn = signed_in(&peer)?;
            Ok(LeftJson {
                left: hub.leave(&conn, &r.room),
            })
        });
        op(
            &mut h,
            hub,
            "publish",
            |hub, peer, r: PublishReq| async move {
                let conn = signed_in(&peer)?;
                let body = r.body.into_body()?;
                hub.publish_from(&conn, &r.room, body)
                    .map_err(|e| room_error(&e))
            },
        );
        op(&mut h, hub, "rooms", |hub, peer, _: Empty| async move {
            signed_in(&peer)?;
            Ok(RoomsJson { rooms: hub.rooms() })
        });
        op(
            &mut h,
            hub,
            "members",
            |hub, peer, r: MembersReq| async move {
                signed_in(&peer)?;
                hub.members(&r.room, r.after.map(ConnId), r.limit.unwrap_or(100))
                    .map_err(|e| room_error(&e))
            },
        );
        op(
            &mut h,
            hub,
            "online",
            |hub, peer, r: OnlineReq| async move {
                signed_in(&peer)?;
                if r.users.len() > MAX_ONLINE_QUERY {
                    return Err(ChatError::new(
                        "too_many",
                        format!("at most {MAX_ONLINE_QUERY} users per request"),
                    ));
                }
                let unavailable =
                    |e: crate::DirectoryError| ChatError::new("unavailable", e.to_string());
                let mut users = std::collections::BTreeMap::new();
                for u in r.users {
                    let devices = hub.devices(&u).await.map_err(unavailable)?;
                    users.insert(u, devices.into_iter().map(|p| p.device).collect::<Vec<_>>());
                }
                let online = hub.online_users().await.map_err(unavailable)?;
                Ok(OnlineJson { users, online })
            },
        );
        op(&mut h, hub, "app", |hub, peer, r: AppReq| async move {
            let conn = signed_in(&peer)?;
            let body = r.body.into_body()?;
            hub.receive_app(&conn, body)
                .await
                .map_err(|e| send_error(&e))?;
            Ok(Empty {})
        });
        h
    }

    /// The admission of this door, for an [`RpcServer`] you spawn yourself with
    /// [`RpcServer::spawn_admitting`].
    pub fn admitter(&self) -> Arc<dyn Admit> {
        Arc::new(ChatAdmit {
            hub: self.hub.clone(),
        })
    }
}

impl std::fmt::Debug for ChatDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatDoor").finish_non_exhaustive()
    }
}

/// Per connection: the hub connection once signed in.
#[derive(Default)]
struct ChatInner {
    conn: Mutex<Option<Arc<Conn>>>,
    /// The connection is signed in anonymously (an `auth` may still sign it in as a user).
    anonymous: AtomicBool,
    /// Held through an `auth`, so two of them do not both sign in.
    auth_lock: tokio::sync::Mutex<()>,
    failures: AtomicU32,
    auth_timer: Mutex<Option<tokio::task::AbortHandle>>,
    ip: Option<std::net::IpAddr>,
}

impl ChatInner {
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone, Default)]
struct ChatState(Arc<ChatInner>);

impl std::ops::Deref for ChatState {
    type Target = ChatInner;
    fn deref(&self) -> &ChatInner {
        &self.0
    }
}

struct ChatAdmit {
    hub: Hub,
}

impl Admit for ChatAdmit {
    fn admit<'a>(
        &'a self,
        peer: &'a Peer,
        info: &'a ConnectInfo,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            let hub = &self.hub;
            let ip = ip_of(info);
            let span = tracing::debug_span!("connect", door = "chat", peer = %info.peer());
            let _e = span.enter();
            hub.check_connection_rate(ip)?;
            drop(_e);
            let state = ChatState(Arc::new(ChatInner {
                ip,
                ..ChatInner::default()
            }));
            peer.session().set_attr(state.clone());
            let found = hub.authenticate_connect(info).await;
            let forget = |r: Refusal| {
                peer.session().remove_attr::<ChatState>();
                r
            };
            match found {
                Err(e) => Err(forget(auth_refusal(&e))),
                Ok(Some((auth, source))) => {
                    sign_on(hub, peer, &state, auth, source == TokenSource::Anonymous)
                        .await
                        .map_err(|e| forget(sign_on_refusal(&e)))?;
                    Ok(pick_subprotocol(info))
                }
                Ok(None) if hub.config().tokens.first_message => {
                    start_auth_timer(hub, peer, &state);
                    Ok(pick_subprotocol(info))
                }
                Ok(None) => {
                    crate::metrics::auth_refusal("missing");
                    Err(forget(auth_refusal(&AuthError::Missing)))
                }
            }
        })
    }
}

/// Closes a connection that has not signed in within the auth timeout.
fn start_auth_timer(hub: &Hub, peer: &Peer, state: &ChatState) {
    let session = peer.session().clone();
    let st = state.clone();
    let hub2 = hub.clone();
    let wait = hub.config().auth_timeout;
    let task = tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if st.current().is_none() {
            hub2.count_auth_timeout();
            close_session(
                &session,
                &Close::new(CloseCode::AUTH_TIMEOUT, "no auth within the auth timeout"),
            );
        }
    });
    *state.auth_timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    // Forget the state (and the timer) when the connection ends.
    let st = state.clone();
    let s = peer.session().clone();
    peer.session()
        .add_close_callback("chinwag-hub-chat-state", move |_| {
            if let Some(t) = st
                .auth_timer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                t.abort();
            }
            s.remove_attr::<ChatState>();
        });
}

async fn sign_on(
    hub: &Hub,
    peer: &Peer,
    state: &ChatState,
    auth: Authenticated,
    anonymous: bool,
) -> Result<Arc<Conn>, SignOnError> {
    let session = peer.session().clone();
    let slot = match session.framing() {
        Framing::Stream => slot::CHAT_STREAM,
        Framing::Message => slot::CHAT_MESSAGE,
    };
    let link = Arc::new(SessionLink::new(session.clone(), ChatFormat, slot, true));
    let conn = hub.attach(auth, link, "chat", state.ip).await?;
    // An anonymous connection that signs in as a user leaves as the anonymous one (after the
    // new one is attached: a refused sign-in keeps it anonymous).
    let before = state
        .conn
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(conn.clone());
    state.anonymous.store(anonymous, Ordering::Release);
    if let Some(old) = before {
        hub.detach(&old);
    }
    if let Some(t) = state
        .auth_timer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        t.abort();
    }
    // Replaces the anonymous connection's callback, if there was one.
    let h = hub.clone();
    let c = conn.clone();
    let s = session.clone();
    session.add_close_callback("chinwag-hub", move |_| {
        h.detach(&c);
        s.remove_attr::<ChatState>();
    });
    Ok(conn)
}

fn close_session(session: &Session<WireCodec>, close: &Close) {
    if let Some(bye) = bye_message(session, close) {
        let _ = session.try_send_encoded_with(bye, chinwag_session::OverflowPolicy::DropOldest);
    }
    session.close_with(
        chinwag_session::CloseCause::Application(close.to_transport()),
        None,
    );
}

fn state_of(peer: &Peer) -> Result<ChatState, ChatError> {
    peer.session()
        .attr::<ChatState>()
        .ok_or_else(|| ChatError::new("closed", "connection closing"))
}

fn signed_in(peer: &Peer) -> Result<Arc<Conn>, ChatError> {
    state_of(peer)?
        .current()
        .ok_or_else(|| ChatError::new("not_signed_in", "sign in first (auth)"))
}

fn whoami(conn: &Conn) -> WhoAmI {
    WhoAmI {
        user: conn.device().user.to_string(),
        device: conn.device().device.to_string(),
        conn: conn.id().0,
        seq: conn.sign_on_seq(),
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Registers a JSON operation: the payload is parsed as `Req` (a bad one is a `bad_request`
/// error), the handler's `Ok` is the JSON result, its `Err` a JSON error text.
fn op<Req, Res, F, Fut>(h: &mut Handlers, hub: &Hub, name: &'static str, f: F)
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    F: Fn(Hub, Peer, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Res, ChatError>> + Send + 'static,
{
    let hub = hub.clone();
    h.handle_bytes(name, move |peer, payload: Bytes| {
        // The handler's future is made (not run) here; the RPC layer polls it first on the
        // connection's task, so requests of one connection reach the hub in order.
        let fut = serde_json::from_slice::<Req>(&payload)
            .map(|req| f(hub.clone(), peer, req))
            .map_err(|e| ChatError::new("bad_request", format!("{name}: {e}")));
        async move {
            let res = fut.map_err(|e| e.text())?.await.map_err(|e| e.text())?;
            serde_json::to_vec(&res)
                .map(Bytes::from)
                .map_err(|e| ChatError::new("internal", e.to_string()).text())
        }
    });
}

/// An error result of the chat protocol.
#[derive(Debug, Clone, Serialize)]
pub struct ChatError {
    /// The stable code (see `docs/chat-protocol.md`).
    pub code: String,
    /// A human-readable message.
    pub message: String,
}

impl ChatError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        ChatError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The error text on the wire: a JSON object.
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.code.clone())
    }
}

fn auth_error(e: &AuthError) -> ChatError {
    ChatError::new(&format!("auth_{}", e.reason()), e.to_string())
}

fn send_error(e: &SendError) -> ChatError {
    ChatError::new(e.code(), e.to_string())
}

fn room_error(e: &RoomError) -> ChatError {
    ChatError::new(e.code(), e.to_string())
}

// ---- requests and results -----------------------------------------------------------------

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthReq {
    token: String,
}

#[derive(Serialize)]
struct WhoAmI {
    user: String,
    device: String,
    conn: u64,
    seq: u64,
}

#[derive(Serialize)]
struct ExpiresJson {
    expires_at: Option<u64>,
}

/// A body in a request: `body` (text) or `body_base64` (binary), exactly one.
#[derive(Deserialize)]
struct BodyIn {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

impl BodyIn {
    fn into_body(self) -> Result<Body, ChatError> {
        match (self.body, self.body_base64) {
            (Some(t), None) => Ok(Body::text(t)),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map(Body::binary)
                .map_err(|e| ChatError::new("bad_request", format!("body_base64: {e}"))),
            _ => Err(ChatError::new(
                "bad_request",
                "exactly one of body and body_base64",
            )),
        }
    }
}

#[derive(Deserialize)]
struct SendReq {
    to: String,
    #[serde(flatten)]
    body: BodyIn,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckReq {
    id: u64,
}

#[derive(Serialize)]
struct AckJson {
    removed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinReq {
    room: String,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomReq {
    room: String,
}

#[derive(Serialize)]
struct LeftJson {
    left: bool,
}

#[derive(Deserialize)]
struct PublishReq {
    room: String,
    #[serde(flatten)]
    body: BodyIn,
}

#[derive(Serialize)]
struct RoomsJson {
    rooms: Vec<crate::room::RoomInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersReq {
    room: String,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnlineReq {
    #[serde(default)]
    users: Vec<String>,
}

#[derive(Serialize)]
struct OnlineJson {
    users: std::collections::BTreeMap<String, Vec<String>>,
    online: u64,
}

#[derive(Deserialize)]
struct AppReq {
    #[serde(flatten)]
    body: BodyIn,
}

// ---- notifications ------------------------------------------------------------------------

#[derive(Serialize)]
struct FromJson<'a> {
    user: &'a str,
    device: &'a str,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    id: u64,
    from: Option<FromJson<'a>>,
    sent_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

#[derive(Serialize)]
struct RoomJson<'a> {
    room: &'a str,
    epoch: u64,
    seq: u64,
    from: Option<FromJson<'a>>,
    sent_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

#[derive(Serialize)]
struct PresenceJson<'a> {
    room: &'a str,
    user: &'a str,
    device: &'a str,
    event: &'static str,
}

#[derive(Serialize)]
struct ByeJson<'a> {
    code: u16,
    name: &'static str,
    reason: &'a str,
    reconnect: &'static str,
}

fn split_body(b: &Body) -> (Option<&str>, Option<String>) {
    match b.as_text() {
        Some(t) => (Some(t), None),
        None => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(b.bytes())),
        ),
    }
}

fn from_json(d: &Option<crate::Device>) -> Option<FromJson<'_>> {
    d.as_ref().map(|d| FromJson {
        user: &d.user,
        device: &d.device,
    })
}

const MESSAGE: Name = Name::from_static("message");
const ROOM: Name = Name::from_static("room");
const PRESENCE: Name = Name::from_static("presence");
const BYE: Name = Name::from_static("bye");

fn notification(session: &Session<WireCodec>, name: Name, json: Vec<u8>) -> Option<Encoded> {
    session
        .encode(&Message::Notification {
            name,
            payload: Bytes::from(json),
        })
        .ok()
}

fn bye_message(session: &Session<WireCodec>, close: &Close) -> Option<Encoded> {
    let json = serde_json::to_vec(&ByeJson {
        code: close.code.0,
        name: close.code.name(),
        reason: &close.reason,
        reconnect: close.code.reconnect().as_str(),
    })
    .ok()?;
    notification(session, BYE, json)
}

/// The chat door's encoding: gotalk notifications with JSON bodies.
struct ChatFormat;

impl Format<WireCodec> for ChatFormat {
    fn encode(&self, session: &Session<WireCodec>, event: &Event) -> Option<Encoded> {
        let (name, json) = match event {
            Event::Direct(m) => {
                let (body, body_base64) = split_body(&m.body);
                (
                    MESSAGE,
                    serde_json::to_vec(&MessageJson {
                        id: m.id.0,
                        from: from_json(&m.from),
                        sent_at: m.sent_at,
                        body,
                        body_base64,
                    }),
                )
            }
            Event::Room(m) => {
                let (body, body_base64) = split_body(&m.body);
                (
                    ROOM,
                    serde_json::to_vec(&RoomJson {
                        room: &m.room,
                        epoch: m.epoch,
                        seq: m.seq,
                        from: from_json(&m.from),
                        sent_at: m.sent_at,
                        body,
                        body_base64,
                    }),
                )
            }
            Event::Presence(p) => (
                PRESENCE,
                serde_json::to_vec(&PresenceJson {
                    room: &p.room,
                    user: &p.device.user,
                    device: &p.device.device,
                    event: if p.joined { "join" } else { "leave" },
                }),
            ),
        };
        notification(session, name, json.ok()?)
    }

    fn bye(&self, session: &Session<WireCodec>, close: &Close) -> Option<Encoded> {
        bye_message(session, close)
    }
}
