//! The API's methods: JSON parameters in, the hub's call, JSON out. Each method is one hub
//! operation; what the hub refuses maps to one [`ApiError`] code.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{ApiConfig, ApiError};
use crate::hub::{
    Body, ConversationError, DEFAULT_DEVICE, Device, DirectoryError, HistoryFrom, Hub, Keep,
    KeepHistory, RoomChanges, RoomError, RoomOptions, SendError, SendOptions,
};

pub(super) async fn call(
    hub: &Hub,
    cfg: &ApiConfig,
    method: &str,
    params: Value,
) -> Result<Value, ApiError> {
    match method {
        "send" => send(hub, parse(params)?).await,
        "publish" => publish(hub, parse(params)?).await,
        "broadcast" => broadcast(hub, parse(params)?),
        "create_room" => create_room(hub, parse(params)?).await,
        "change_room" => change_room(hub, params).await,
        "remove_room" => {
            let p: RoomName = parse(params)?;
            if hub.remove_room(&p.room) {
                Ok(json!({ "removed": true }))
            } else {
                Err(no_room(&p.room))
            }
        }
        "kick" => {
            let p: Kick = parse(params)?;
            let reason = p.reason.as_deref().unwrap_or("kicked");
            if reason.len() > 123 {
                return Err(ApiError::bad("reason: at most 123 bytes (a close reason)"));
            }
            let closed = hub.kick(&p.user, p.device.as_deref(), reason);
            Ok(json!({ "closed": closed }))
        }
        "online" => {
            let p: Online = parse(params)?;
            if let Some(after) = &p.after {
                crate::hub::ids::check_user(after)
                    .map_err(|e| ApiError::bad(format!("after: {e}")))?;
            }
            let users = hub.online_users().await.map_err(directory)?;
            let list = hub
                .online_list(p.after.as_deref(), page(cfg, p.limit))
                .await
                .map_err(directory)?;
            Ok(json!({
                "users": users,
                "connections": hub.connection_count(),
                "list": list.users,
                "next": list.next,
            }))
        }
        "devices" => {
            let p: User = parse(params)?;
            let devices = hub.devices(&p.user).await.map_err(directory)?;
            Ok(json!({ "user": p.user, "devices": devices }))
        }
        "room_members" => {
            let p: Members = parse(params)?;
            let limit = page(cfg, p.limit);
            let page = hub
                .room_members(&p.room, p.after, limit)
                .await
                .map_err(|e| room(e, &p.room))?;
            Ok(serde_json::to_value(page).unwrap_or(Value::Null))
        }
        "rooms" => {
            let p: Rooms = parse(params)?;
            let mut rooms = hub.rooms();
            rooms.truncate(page(cfg, p.limit));
            Ok(json!({ "rooms": rooms }))
        }
        "history" => history(hub, cfg, parse(params)?).await,
        "conversation" => conversation(hub, cfg, parse(params)?).await,
        "stats" => {
            let _: Empty = parse(params)?;
            let users = hub.online_users().await.map_err(directory)?;
            Ok(json!({
                "node": hub.config().node.0,
                "connections": hub.connection_count(),
                "online_users": users,
                "rooms": hub.room_count(),
                "stopping": hub.is_stopping(),
            }))
        }
        other => Err(ApiError::new(
            404,
            "unknown_method",
            format!("no API method `{other}`"),
        )),
    }
}

fn parse<T: DeserializeOwned>(params: Value) -> Result<T, ApiError> {
    serde_json::from_value(params).map_err(|e| ApiError::bad(e.to_string()))
}

/// A page size: the asked `limit` (default and cut: [`ApiConfig::max_page`]; 0 counts as 1).
fn page(cfg: &ApiConfig, limit: Option<usize>) -> usize {
    limit.unwrap_or(cfg.max_page).clamp(1, cfg.max_page)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomName {
    room: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kick {
    user: String,
    device: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    room: String,
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rooms {
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Online {
    after: Option<String>,
    limit: Option<usize>,
}

/// A message body: `body` (text) or `body_base64` (binary), exactly one (as in the chat
/// protocol).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    body: Option<String>,
    body_base64: Option<String>,
}

impl Data {
    fn body(self) -> Result<Body, ApiError> {
        match (self.body, self.body_base64) {
            (Some(t), None) => Ok(Body::text(t)),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Body::binary)
                .map_err(|e| ApiError::bad(format!("body_base64: {e}"))),
            _ => Err(ApiError::bad(
                "give the body as `body` (text) or `body_base64` (binary), exactly one",
            )),
        }
    }
}

/// A body as the API writes it: `body` for text, `body_base64` for binary.
fn body_json(body: &Body, out: &mut Map<String, Value>) {
    if body.is_binary() {
        out.insert(
            "body_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(body.bytes())
                .into(),
        );
    } else {
        out.insert(
            "body".into(),
            String::from_utf8_lossy(body.bytes()).into_owned().into(),
        );
    }
}

fn device_json(d: &Device) -> Value {
    json!({ "user": &*d.user, "device": &*d.device })
}

fn sender(from: Option<String>, device: Option<String>) -> Result<Option<Device>, ApiError> {
    match (from, device) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::bad("from_device needs from")),
        (Some(u), d) => {
            crate::hub::ids::check_user(&u).map_err(|e| ApiError::bad(format!("from: {e}")))?;
            let d = d.unwrap_or_else(|| DEFAULT_DEVICE.to_owned());
            Ok(Some(Device::new(u, d)))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    user: String,
    body: Option<String>,
    body_base64: Option<String>,
    ttl_ms: Option<u64>,
    from: Option<String>,
    from_device: Option<String>,
}

async fn send(hub: &Hub, p: Send) -> Result<Value, ApiError> {
    let from = sender(p.from, p.from_device)?;
    let mut opts = SendOptions::default();
    if let Some(ms) = p.ttl_ms {
        opts = opts.with_ttl(Duration::from_millis(ms));
    }
    let report = hub
        .send_as(
            from.as_ref(),
            &p.user,
            Data {
                body: p.body,
                body_base64: p.body_base64,
            }
            .body()?,
            opts,
        )
        .await
        .map_err(send_error)?;
    Ok(serde_json::to_value(report).unwrap_or(Value::Null))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    room: String,
    body: Option<String>,
    body_base64: Option<String>,
    from: Option<String>,
    from_device: Option<String>,
}

async fn publish(hub: &Hub, p: Publish) -> Result<Value, ApiError> {
    let from = sender(p.from, p.from_device)?;
    let report = hub
        .publish_as(
            from.as_ref(),
            &p.room,
            Data {
                body: p.body,
                body_base64: p.body_base64,
            }
            .body()?,
        )
        .await
        .map_err(|e| room(e, &p.room))?;
    Ok(serde_json::to_value(report).unwrap_or(Value::Null))
}

fn broadcast(hub: &Hub, p: Data) -> Result<Value, ApiError> {
    let report = hub.broadcast(p.body()?).map_err(|e| room(e, "*"))?;
    Ok(serde_json::to_value(report).unwrap_or(Value::Null))
}

/// What a room keeps: `"default"`, `"off"`, or `{"max_len", "max_age_ms", "public"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum HistoryParam {
    Word(String),
    Keep {
        max_len: u64,
        max_age_ms: Option<u64>,
        #[serde(default)]
        public: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    room: String,
    password: Option<String>,
    #[serde(default)]
    presence_events: bool,
    max_members: Option<usize>,
    history: Option<HistoryParam>,
}

async fn create_room(hub: &Hub, p: CreateRoom) -> Result<Value, ApiError> {
    let mut opts = RoomOptions::new().with_presence_events(p.presence_events);
    if let Some(pw) = p.password {
        opts = opts.with_password(pw);
    }
    if let Some(m) = p.max_members {
        opts = opts.with_max_members(m);
    }
    opts = opts.with_history(match p.history {
        None => KeepHistory::HubDefault,
        Some(HistoryParam::Word(w)) if w == "default" => KeepHistory::HubDefault,
        Some(HistoryParam::Word(w)) if w == "off" => KeepHistory::Off,
        Some(HistoryParam::Word(w)) => {
            return Err(ApiError::bad(format!(
                "history: `{w}` is not \"default\", \"off\" or {{\"max_len\": ...}}"
            )));
        }
        Some(HistoryParam::Keep {
            max_len,
            max_age_ms,
            public,
        }) => {
            let mut keep = Keep::new(max_len, max_age_ms.map(Duration::from_millis));
            keep.public = public;
            KeepHistory::Keep(keep)
        }
    });
    let info = hub
        .create_room(&p.room, opts)
        .await
        .map_err(|e| room(e, &p.room))?;
    Ok(serde_json::to_value(info).unwrap_or(Value::Null))
}

/// `change_room`: `password` absent keeps it, `null` removes it, a string sets it.
async fn change_room(hub: &Hub, params: Value) -> Result<Value, ApiError> {
    let Value::Object(mut m) = params else {
        return Err(ApiError::bad("the parameters must be an object"));
    };
    let mut changes = RoomChanges::new();
    match m.remove("password") {
        None => {}
        Some(Value::Null) => changes = changes.with_password(None::<String>),
        Some(Value::String(p)) => changes = changes.with_password(Some(p)),
        Some(_) => return Err(ApiError::bad("password: a string, or null to remove it")),
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rest {
        room: String,
        presence_events: Option<bool>,
        max_members: Option<usize>,
    }
    let rest: Rest = parse(Value::Object(m))?;
    if let Some(on) = rest.presence_events {
        changes = changes.with_presence_events(on);
    }
    if let Some(max) = rest.max_members {
        changes = changes.with_max_members(max);
    }
    let info = hub
        .change_room(&rest.room, changes)
        .await
        .map_err(|e| room(e, &rest.room))?;
    Ok(serde_json::to_value(info).unwrap_or(Value::Null))
}

/// Where a page starts: `before` a seq (newest first), `after` a seq (oldest first), or
/// neither (the newest, newest first).
fn from(before: Option<u64>, after: Option<u64>) -> Result<HistoryFrom, ApiError> {
    match (before, after) {
        (None, None) => Ok(HistoryFrom::Newest),
        (Some(b), None) => Ok(HistoryFrom::Before(b)),
        (None, Some(a)) => Ok(HistoryFrom::After(a)),
        (Some(_), Some(_)) => Err(ApiError::bad("give `before` or `after`, not both")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    room: String,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn history(hub: &Hub, cfg: &ApiConfig, p: History) -> Result<Value, ApiError> {
    let page = hub
        .room_history(&p.room, from(p.before, p.after)?, page(cfg, p.limit))
        .await
        .map_err(|e| room(e, &p.room))?;
    let publications: Vec<Value> = page
        .publications
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("room".into(), (*m.room).into());
            o.insert("epoch".into(), m.epoch.into());
            o.insert("seq".into(), m.seq.into());
            o.insert(
                "from".into(),
                m.from.as_ref().map_or(Value::Null, device_json),
            );
            o.insert("sent_at".into(), m.sent_at.into());
            body_json(&m.body, &mut o);
            Value::Object(o)
        })
        .collect();
    Ok(json!({
        "room": p.room,
        "epoch": page.epoch,
        "first": page.first,
        "last": page.last,
        "publications": publications,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conversation {
    user: String,
    with: String,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn conversation(hub: &Hub, cfg: &ApiConfig, p: Conversation) -> Result<Value, ApiError> {
    let page = hub
        .conversation_between(
            &p.user,
            &p.with,
            from(p.before, p.after)?,
            page(cfg, p.limit),
        )
        .await
        .map_err(|e| match e {
            ConversationError::NotKept => {
                ApiError::new(404, "not_kept", "this server keeps no conversation history")
            }
            ConversationError::BadUser(e) => ApiError::bad(e.to_string()),
            other => unavailable(other.to_string()),
        })?;
    let messages: Vec<Value> = page
        .messages
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("seq".into(), m.seq.into());
            o.insert("id".into(), m.id.0.into());
            o.insert("from".into(), device_json(&m.from));
            o.insert("to".into(), (*m.to).into());
            o.insert("sent_at".into(), m.sent_at.into());
            body_json(&m.body, &mut o);
            Value::Object(o)
        })
        .collect();
    Ok(json!({
        "epoch": page.epoch,
        "first": page.first,
        "last": page.last,
        "messages": messages,
    }))
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(503, "unavailable", message)
}

fn directory(e: DirectoryError) -> ApiError {
    unavailable(format!("the directory failed: {e}"))
}

fn no_room(name: &str) -> ApiError {
    ApiError::new(404, "not_found", format!("no room `{name}`"))
}

fn room(e: RoomError, name: &str) -> ApiError {
    let m = e.to_string();
    match e {
        RoomError::NoSuchRoom => no_room(name),
        RoomError::BadName(_) | RoomError::BadPassword => ApiError::bad(m),
        RoomError::Exists => ApiError::new(409, "exists", format!("room `{name}` exists")),
        RoomError::Full => ApiError::new(409, "full", m),
        RoomError::TooManyRooms | RoomError::TooManyRoomsOnServer => {
            ApiError::new(409, "too_many_rooms", m)
        }
        RoomError::TooLarge { .. } => ApiError::new(413, "too_large", m),
        RoomError::Refused(_) => ApiError::new(403, "refused", m),
        RoomError::RateLimited | RoomError::GuessingTooFast => {
            ApiError::new(429, "rate_limited", m)
        }
        _ => unavailable(m),
    }
}

fn send_error(e: SendError) -> ApiError {
    let m = e.to_string();
    match e {
        SendError::Offline(_) => ApiError::new(404, "offline", m),
        SendError::TooLarge { .. } => ApiError::new(413, "too_large", m),
        SendError::BadRecipient(_) => ApiError::bad(m),
        SendError::Quota(_) => ApiError::new(429, "over_share", m),
        SendError::Refused(_) => ApiError::new(403, "refused", m),
        SendError::RateLimited => ApiError::new(429, "rate_limited", m),
        _ => unavailable(m),
    }
}
