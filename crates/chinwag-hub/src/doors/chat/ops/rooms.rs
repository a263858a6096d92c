//! `join`, `leave`, `publish`, `rooms`, `members`.

use chinwag_rpc::Handlers;
use serde::{Deserialize, Serialize};

use super::direct::body_of;
use super::{Empty, op, room_error, signed_in};
use crate::core::rooms::RoomInfo;
use crate::core::signon::ConnId;
use crate::driver::Hub;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinReq {
    room: String,
    #[serde(default)]
    pub(crate) password: Option<String>,
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

#[cfg(test)]
pub(crate) fn sample_info() -> serde_json::Value {
    serde_json::json!({"room": "r", "epoch": 1, "seq": 0, "members": 0, "protected": false})
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
        hub.join(&conn, &r.room, r.password.as_deref())
            .await
            .map_err(|e| room_error(&e))
    });
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
        hub.members(
            &r.room,
            r.after.map(ConnId),
            r.limit.unwrap_or(DEFAULT_MEMBERS_PAGE),
        )
        .map_err(|e| room_error(&e))
    });
}
