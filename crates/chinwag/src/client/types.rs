//! What the chat client's calls return and what its event stream carries.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ChatError;
use crate::hub::Body;

/// Who this connection is: the `auth` / `whoami` result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Me {
    /// The user id.
    pub user: String,
    /// The device id (`default` when the token names none).
    pub device: String,
    /// The connection's id on the server (as in [`Member::conn`]).
    pub conn: u64,
    /// Its place in sign-on order (larger = newer among the user's connections).
    pub seq: u64,
}

/// A sender: a user and one of its devices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Sender {
    /// The user id.
    pub user: String,
    /// The device id.
    pub device: String,
}

/// A direct message to this user ([`Event::Message`]). With automatic acknowledgements (the
/// default) it is acknowledged once [`Events::next`](super::Events::next) has handed it to
/// the application.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectMessage {
    /// Its id: increasing per user; the client drops one at or below the last id it emitted.
    pub id: u64,
    /// The sender; `None`: the server.
    pub from: Option<Sender>,
    /// When it was sent (UNIX ms).
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

impl DirectMessage {
    /// The body as text (`None` for a binary body).
    pub fn text(&self) -> Option<&str> {
        self.body.as_text()
    }
}

/// A publish to a room this connection is in ([`Event::Room`]), or a page entry of
/// [`HistoryPage::publications`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoomMessage {
    /// The room (`*` for the server's broadcasts).
    pub room: String,
    /// The room's epoch; `(epoch, seq)` identifies the publish.
    pub epoch: u64,
    /// 1, 2, 3, ... within the epoch.
    pub seq: u64,
    /// The publisher; `None`: the server.
    pub from: Option<Sender>,
    /// When it was published (UNIX ms).
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

impl RoomMessage {
    /// The body as text (`None` for a binary body).
    pub fn text(&self) -> Option<&str> {
        self.body.as_text()
    }
}

/// A member joined or left a room with presence events ([`Event::Presence`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Presence {
    /// The room.
    pub room: String,
    /// Who joined or left.
    pub user: String,
    /// Their device.
    pub device: String,
    /// `join` or `leave`.
    pub event: String,
}

/// The server's goodbye ([`Event::Bye`]): the close that follows and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Bye {
    /// The close code (`docs/chat-protocol.md` §6).
    pub code: u16,
    /// Its name in the table.
    #[serde(default)]
    pub name: String,
    /// Why, for people.
    #[serde(default)]
    pub reason: String,
    /// `at_once`, `backoff`, `after_refresh` or `never`.
    #[serde(default)]
    pub reconnect: String,
}

/// How a connection ended ([`Event::Disconnected`], [`Event::Closed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// The close code: the `bye`'s, else the WebSocket close frame's, else 1006 (the
    /// connection broke; on TCP: it ended without a `bye`). 1000 when the client closed.
    pub code: u16,
    /// The code's name in the table (`other` for codes outside it).
    pub name: &'static str,
    /// Why, for people.
    pub reason: String,
    /// The advice followed: `at_once`, `backoff`, `after_refresh` or `never`.
    pub reconnect: &'static str,
}

/// A connection was lost ([`Event::Disconnected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnected {
    /// How it ended.
    pub close: CloseInfo,
    /// Whether the client reconnects (else [`Event::Closed`] follows).
    pub will_reconnect: bool,
    /// The wait before the first attempt.
    pub delay: std::time::Duration,
}

/// The client is signed in again after a reconnect ([`Event::Reconnected`]); calls made
/// meanwhile go out now.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reconnected {
    /// Who the new connection is.
    pub me: Me,
    /// Each room joined again, with how its recovery went.
    pub rooms: Vec<JoinResult>,
    /// Connection attempts it took.
    pub attempts: u32,
}

/// Publishes of a room the client did not get ([`Event::Gap`]): the server could not recover
/// them at a rejoin (`reason` as the `join` result gives it: `no_history`, `epoch_changed`,
/// `ahead`, `too_many`, `trimmed`, `unavailable`), or a live `seq` jumped (`missed`: the
/// server's send queue for this connection dropped them). [`Client::history`](super::Client::history)
/// reads what the server still keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// The room.
    pub room: String,
    /// The position the client had: the epoch and seq of the last publish it emitted.
    pub since: (u64, u64),
    /// The epoch and seq the stream goes on after (publishes after it follow).
    pub now: (u64, u64),
    /// Why.
    pub reason: String,
}

/// What the event stream carries ([`Events::next`](super::Events::next)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A direct message (duplicates by id are dropped).
    Message(DirectMessage),
    /// A publish to a room this connection is in.
    Room(RoomMessage),
    /// A member joined or left a room with presence events.
    Presence(Presence),
    /// The server's goodbye; [`Disconnected`](Event::Disconnected) or
    /// [`Closed`](Event::Closed) follows.
    Bye(Bye),
    /// The connection was lost.
    Disconnected(Disconnected),
    /// Signed in again, rooms joined again.
    Reconnected(Reconnected),
    /// Publishes of a room that were not recovered.
    Gap(Gap),
    /// A room could not be joined again after a reconnect; the client forgot it.
    RoomLost {
        /// The room.
        room: String,
        /// Why.
        error: ChatError,
    },
    /// Closed for good: the last event.
    Closed(CloseInfo),
}

/// The result of [`Client::send`](super::Client::send).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SendReport {
    /// The message's id (the recipient's [`DirectMessage::id`]).
    pub id: u64,
    /// Connections of the user that took it (or will get it from the offline queue).
    pub delivered: u64,
    /// Connections of the user that could not take it.
    pub failed: u64,
    /// Whether it is in the offline queue.
    pub queued: bool,
    /// Its place in the conversation's history, when it was kept.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// The result of [`Client::join`](super::Client::join): the room as it is now and, with
/// `since`, how the recovery went.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct JoinResult {
    /// The room.
    pub room: String,
    /// Its epoch.
    pub epoch: u64,
    /// The seq of its last publish (0: none).
    pub seq: u64,
    /// Connections in it.
    pub members: u64,
    /// Whether it has a password.
    pub protected: bool,
    /// With `since`: whether exactly the publishes after it were written before this result.
    #[serde(default)]
    pub recovered: Option<bool>,
    /// When not recovered: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// With `since`: publishes written from the history.
    #[serde(default)]
    pub missed: Option<u64>,
}

/// The result of [`Client::publish`](super::Client::publish).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PublishReport {
    /// The publish's seq in the room.
    pub seq: u64,
    /// Members it was queued on.
    pub delivered: u64,
    /// Members whose send queue could not take it.
    pub dropped: u64,
    /// Members the server application filtered it out for.
    pub filtered: u64,
}

/// The result of [`Client::online`](super::Client::online).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Online {
    /// Per user asked about: its connections' devices, oldest first (`[]`: offline).
    pub users: HashMap<String, Vec<String>>,
    /// How many users have at least one connection.
    pub online: u64,
}

/// A member of a room ([`MembersPage`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The connection's id on its server.
    pub conn: u64,
    /// Its server's cluster node id (0 on a server on its own).
    pub node: u64,
    /// The user.
    pub user: String,
    /// The device.
    pub device: String,
}

/// A page of [`Client::members`](super::Client::members).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct MembersPage {
    /// The members, in connection order.
    pub members: Vec<Member>,
    /// Pass it as `after` for the next page; `None`: the last page.
    pub next: Option<u64>,
}

/// A room as [`Client::rooms`](super::Client::rooms) lists it.
pub type RoomInfo = JoinResult;

/// A direct message in a conversation's history ([`HistoryPage::messages`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryMessage {
    /// Its place in the conversation.
    pub seq: u64,
    /// Its id (as the recipient got it).
    pub id: u64,
    /// The sender.
    pub from: Option<Sender>,
    /// The recipient user.
    pub to: String,
    /// When it was sent (UNIX ms).
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

/// A page of [`Client::history`](super::Client::history).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryPage {
    /// With a room: the room.
    pub room: Option<String>,
    /// With a conversation: the other user.
    pub with: Option<String>,
    /// The epoch (a conversation with nothing kept: 0).
    pub epoch: u64,
    /// The oldest seq the history holds (`last + 1`: none).
    pub first: u64,
    /// The seq of the last entry (0: none).
    pub last: u64,
    /// With a room: the publishes.
    pub publications: Vec<RoomMessage>,
    /// With a conversation: the messages.
    pub messages: Vec<HistoryMessage>,
}

/// Which history [`Client::history`](super::Client::history) reads, and which page.
///
/// ```
/// use chinwag::client::History;
/// let q = History::room("lobby").after(10).limit(20);
/// let d = History::with("bob").before(5);
/// # let _ = (q, d);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    pub(crate) room: Option<String>,
    pub(crate) with: Option<String>,
    pub(crate) before: Option<u64>,
    pub(crate) after: Option<u64>,
    pub(crate) limit: Option<u64>,
}

impl History {
    /// A room's history: the newest publishes first, unless [`after`](Self::after).
    pub fn room(room: impl Into<String>) -> Self {
        History {
            room: Some(room.into()),
            with: None,
            before: None,
            after: None,
            limit: None,
        }
    }

    /// The conversation with `user` (both directions).
    pub fn with(user: impl Into<String>) -> Self {
        History {
            room: None,
            with: Some(user.into()),
            before: None,
            after: None,
            limit: None,
        }
    }

    /// Entries with a seq below `seq`, newest first.
    pub fn before(mut self, seq: u64) -> Self {
        self.before = Some(seq);
        self
    }

    /// Entries with a seq above `seq`, oldest first.
    pub fn after(mut self, seq: u64) -> Self {
        self.after = Some(seq);
        self
    }

    /// The page size (the server's default 50, at most 100).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("room", self.room.clone().map(Value::from));
        put("with", self.with.clone().map(Value::from));
        put("before", self.before.map(Value::from));
        put("after", self.after.map(Value::from));
        put("limit", self.limit.map(Value::from));
        Value::Object(m)
    }
}

// --- the wire ---------------------------------------------------------------------------------

/// A body as the protocol carries it: `body` (text) or `body_base64` (binary).
pub(crate) fn put_body(m: &mut Map<String, Value>, body: &Body) {
    match body.as_text() {
        Some(t) => m.insert("body".into(), Value::from(t)),
        None => m.insert(
            "body_base64".into(),
            Value::from(STANDARD.encode(body.bytes())),
        ),
    };
}

#[derive(Deserialize)]
pub(crate) struct WireBody {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

impl WireBody {
    fn into_body(self) -> Result<Body, String> {
        match (self.body, self.body_base64) {
            (Some(t), None) => Ok(Body::text(t)),
            (None, Some(b)) => STANDARD
                .decode(b)
                .map(Body::binary)
                .map_err(|e| format!("bad body_base64: {e}")),
            _ => Err("not exactly one of body and body_base64".into()),
        }
    }
}

/// The `app` result: `{}`, or the application's answer as `body` / `body_base64`.
#[derive(Deserialize)]
pub(crate) struct WireAnswer {
    #[serde(flatten)]
    body: WireBody,
}

impl WireAnswer {
    pub(crate) fn into_answer(self) -> Result<Option<Body>, String> {
        if self.body.body.is_none() && self.body.body_base64.is_none() {
            return Ok(None);
        }
        self.body.into_body().map(Some)
    }
}

#[derive(Deserialize)]
pub(crate) struct WireMessage {
    id: u64,
    #[serde(default)]
    from: Option<Sender>,
    #[serde(default)]
    sent_at: u64,
    #[serde(flatten)]
    body: WireBody,
}

impl WireMessage {
    pub(crate) fn into_message(self) -> Result<DirectMessage, String> {
        Ok(DirectMessage {
            id: self.id,
            from: self.from,
            sent_at: self.sent_at,
            body: self.body.into_body()?,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct WireRoom {
    room: String,
    #[serde(default)]
    epoch: u64,
    seq: u64,
    #[serde(default)]
    from: Option<Sender>,
    #[serde(default)]
    sent_at: u64,
    #[serde(flatten)]
    body: WireBody,
}

impl WireRoom {
    pub(crate) fn into_room(self) -> Result<RoomMessage, String> {
        Ok(RoomMessage {
            room: self.room,
            epoch: self.epoch,
            seq: self.seq,
            from: self.from,
            sent_at: self.sent_at,
            body: self.body.into_body()?,
        })
    }
}

#[derive(Deserialize)]
struct WireHistoryMessage {
    seq: u64,
    id: u64,
    #[serde(default)]
    from: Option<Sender>,
    #[serde(default)]
    to: String,
    #[serde(default)]
    sent_at: u64,
    #[serde(flatten)]
    body: WireBody,
}

#[derive(Deserialize)]
pub(crate) struct WireHistory {
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    with: Option<String>,
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    first: u64,
    #[serde(default)]
    last: u64,
    #[serde(default)]
    publications: Vec<WireRoom>,
    #[serde(default)]
    messages: Vec<WireHistoryMessage>,
}

impl WireHistory {
    pub(crate) fn into_page(self) -> Result<HistoryPage, String> {
        Ok(HistoryPage {
            room: self.room,
            with: self.with,
            epoch: self.epoch,
            first: self.first,
            last: self.last,
            publications: self
                .publications
                .into_iter()
                .map(WireRoom::into_room)
                .collect::<Result<_, _>>()?,
            messages: self
                .messages
                .into_iter()
                .map(|m| {
                    Ok(HistoryMessage {
                        seq: m.seq,
                        id: m.id,
                        from: m.from,
                        to: m.to,
                        sent_at: m.sent_at,
                        body: m.body.into_body()?,
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct WireRooms {
    pub(crate) rooms: Vec<JoinResult>,
}

#[derive(Deserialize)]
pub(crate) struct WireLeft {
    pub(crate) left: bool,
}

#[derive(Deserialize)]
pub(crate) struct WireRemoved {
    pub(crate) removed: u64,
}

#[derive(Deserialize)]
pub(crate) struct WireRefresh {
    #[serde(default)]
    pub(crate) expires_at: Option<u64>,
}
