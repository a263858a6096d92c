//! `join`, `leave`, `publish`, `rooms`, `members`, `history`.

use chinwag_rpc::Handlers;
use serde::{Deserialize, Serialize};

use super::direct::body_of;
use super::{ChatError, Empty, op, room_error, signed_in};
use crate::core::rooms::RoomInfo;
use crate::doors::chat::format::{EntryJson, RoomJson};
use crate::driver::{Conn, HistoryFrom, Hub, Recovery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinReq {
    room: String,
    #[serde(default)]
    pub(crate) password: Option<String>,
    #[serde(default)]
    since: Option<SinceReq>,
}

/// Where a member was: the `epoch` and `seq` of the last publication it got.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinceReq {
    epoch: u64,
    seq: u64,
}

/// A join's result: the room, and with `since` how the recovery went.
#[derive(Serialize)]
pub(crate) struct JoinJson {
    #[serde(flatten)]
    info: RoomInfo,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    recovery: Option<Recovery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryReq {
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    with: Option<String>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Serialize)]
pub(crate) struct HistoryJson<'a> {
    room: &'a str,
    epoch: u64,
    first: u64,
    last: u64,
    publications: Vec<RoomJson<'a>>,
}

/// A page of a conversation.
#[derive(Serialize)]
pub(crate) struct ConversationJson<'a> {
    with: &'a str,
    epoch: u64,
    first: u64,
    last: u64,
    messages: Vec<EntryJson<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomReq {
    room: String,
}

#[derive(Serialize)]
pub(crate) struct LeftJson {
    pub(crate) left: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishReq {
    room: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct RoomsJson {
    pub(crate) rooms: Vec<RoomInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersReq {
    room: String,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// A join's result with a recovery that did not happen: every field `join` can answer.
#[cfg(test)]
pub(crate) fn sample_info() -> serde_json::Value {
    let info = RoomInfo {
        room: "r".into(),
        epoch: 1,
        seq: 0,
        members: 0,
        protected: false,
    };
    let recovery = Some(Recovery::not(crate::core::recovery::NotRecovered::Trimmed));
    serde_json::to_value(JoinJson { info, recovery }).unwrap()
}

#[cfg(test)]
pub(crate) fn sample_history() -> serde_json::Value {
    serde_json::to_value(HistoryJson {
        room: "r",
        epoch: 1,
        first: 1,
        last: 0,
        publications: vec![],
    })
    .unwrap()
}

#[cfg(test)]
pub(crate) fn sample_conversation() -> serde_json::Value {
    serde_json::to_value(ConversationJson {
        with: "bob",
        epoch: 0,
        first: 1,
        last: 0,
        messages: vec![],
    })
    .unwrap()
}

#[cfg(test)]
pub(crate) fn sample_publish() -> serde_json::Value {
    serde_json::json!({"seq": 1, "delivered": 0, "dropped": 0, "filtered": 0})
}

#[cfg(test)]
pub(crate) fn sample_members() -> serde_json::Value {
    serde_json::json!({"members": [], "next": null})
}

pub(super) fn join(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: JoinReq| async move {
        let conn = signed_in(&peer)?;
        let password = r.password.as_deref();
        let (info, recovery) = match r.since {
            None => (hub.join(&conn, &r.room, password).await, None),
            Some(s) => match hub
                .join_since(&conn, &r.room, password, s.epoch, s.seq)
                .await
            {
                Ok((info, rec)) => (Ok(info), Some(rec)),
                Err(e) => (Err(e), None),
            },
        };
        let info = info.map_err(|e| room_error(&e))?;
        Ok(JoinJson { info, recovery })
    });
}

/// The page size of `history` when the request names none.
pub const DEFAULT_HISTORY_PAGE: usize = 50;

pub(super) fn history(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: HistoryReq| async move {
        let conn = signed_in(&peer)?;
        let from = match (r.before, r.after) {
            (None, None) => HistoryFrom::Newest,
            (Some(b), None) => HistoryFrom::Before(b),
            (None, Some(a)) => HistoryFrom::After(a),
            (Some(_), Some(_)) => {
                return Err(ChatError::new(
                    "bad_request",
                    "history takes `before` or `after`, not both",
                ));
            }
        };
        let limit = r.limit.unwrap_or(DEFAULT_HISTORY_PAGE);
        let room = match (r.room, r.with) {
            (Some(room), None) => room,
            (None, Some(with)) => return conversation(&hub, &conn, &with, from, limit).await,
            _ => {
                return Err(ChatError::new(
                    "bad_request",
                    "history takes exactly one of `room` and `with`",
                ));
            }
        };
        let page = hub
            .history(&conn, &room, from, limit)
            .await
            .map_err(|e| room_error(&e))?;
        let json = serde_json::to_value(HistoryJson {
            room: &room,
            epoch: page.epoch,
            first: page.first,
            last: page.last,
            publications: page.publications.iter().map(|m| RoomJson::of(m)).collect(),
        })
        .map_err(|e| ChatError::new("internal", e.to_string()))?;
        Ok(json)
    });
}

/// `history {with}`: a page of the conversation with another user.
async fn conversation(
    hub: &Hub,
    conn: &Conn,
    with: &str,
    from: HistoryFrom,
    limit: usize,
) -> Result<serde_json::Value, ChatError> {
    let page = hub
        .conversation(conn, with, from, limit)
        .await
        .map_err(|e| ChatError::new(e.code(), e.to_string()))?;
    serde_json::to_value(ConversationJson {
        with,
        epoch: page.epoch,
        first: page.first,
        last: page.last,
        messages: page.messages.iter().map(EntryJson::of).collect(),
    })
    .map_err(|e| ChatError::new("internal", e.to_string()))
}

pub(super) fn leave(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: RoomReq| async move {
        let conn = signed_in(&peer)?;
        Ok(LeftJson {
            left: hub.leave(&conn, &r.room),
        })
    });
}

pub(super) fn publish(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: PublishReq| async move {
        let conn = signed_in(&peer)?;
        let body = body_of(r.body, r.body_base64)?;
        hub.publish_from(&conn, &r.room, body)
            .await
            .map_err(|e| room_error(&e))
    });
}

pub(super) fn rooms(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, _: Empty| async move {
        signed_in(&peer)?;
        Ok(RoomsJson { rooms: hub.rooms() })
    });
}

/// The page size of `members` when the request names none.
pub const DEFAULT_MEMBERS_PAGE: usize = 100;

pub(super) fn members(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: MembersReq| async move {
        signed_in(&peer)?;
        hub.room_members(&r.room, r.after, r.limit.unwrap_or(DEFAULT_MEMBERS_PAGE))
            .await
            .map_err(|e| room_error(&e))
    });
}
