//! What the chat door writes: the notifications `message`, `room`, `presence` and `bye` (gotalk
//! `n` messages with JSON payloads), encoded once per event and shared by every connection.

use base64::Engine as _;
use bytes::Bytes;
use chinwag_session::codec::{Codec, Encoded, WireCodec};
use chinwag_transport::Framing;
use chinwag_wire::{Message, Name};
use serde::Serialize;

use crate::close::Close;
use crate::core::conversation::ConversationEntry;
use crate::core::identity::Device;
use crate::core::message::{Body, Event, RoomMessage};
use crate::link::Format;

/// One notification the server sends (`docs/chat-protocol.md` §4).
#[derive(Debug)]
#[non_exhaustive]
pub struct Notification {
    /// Its name on the wire.
    pub name: &'static str,
    /// The fields of its JSON object (`body` and `body_base64`: exactly one is present).
    pub fields: &'static [&'static str],
}

/// Every notification the chat door sends.
pub static NOTIFICATIONS: [Notification; 4] = [
    Notification {
        name: "message",
        fields: &["id", "from", "sent_at", "body", "body_base64"],
    },
    Notification {
        name: "room",
        fields: &[
            "room",
            "epoch",
            "seq",
            "from",
            "sent_at",
            "body",
            "body_base64",
        ],
    },
    Notification {
        name: "presence",
        fields: &["room", "user", "device", "event"],
    },
    Notification {
        name: "bye",
        fields: &["code", "name", "reason", "reconnect"],
    },
];

/// The fields of `from` in `message` and `room`.
pub const FROM_FIELDS: [&str; 2] = ["user", "device"];

const MESSAGE: Name = Name::from_static("message");
const ROOM: Name = Name::from_static("room");
const PRESENCE: Name = Name::from_static("presence");
const BYE: Name = Name::from_static("bye");

/// The sender of a message.
#[derive(Serialize)]
pub(crate) struct FromJson<'a> {
    pub(crate) user: &'a str,
    pub(crate) device: &'a str,
}

/// `message`: a direct message.
#[derive(Serialize)]
pub(crate) struct MessageJson<'a> {
    pub(crate) id: u64,
    pub(crate) from: Option<FromJson<'a>>,
    pub(crate) sent_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
}

/// `room`: a publish.
#[derive(Serialize)]
pub(crate) struct RoomJson<'a> {
    pub(crate) room: &'a str,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    pub(crate) from: Option<FromJson<'a>>,
    pub(crate) sent_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
}

impl<'a> RoomJson<'a> {
    /// A room message as the `room` notification (and a `history` page) shows it.
    pub(crate) fn of(m: &'a RoomMessage) -> Self {
        let (body, body_base64) = split_body(&m.body);
        RoomJson {
            room: &m.room,
            epoch: m.epoch,
            seq: m.seq,
            from: from_json(&m.from),
            sent_at: m.sent_at,
            body,
            body_base64,
        }
    }
}

/// A direct message of a conversation's history (`history {with}`).
#[derive(Serialize)]
pub(crate) struct EntryJson<'a> {
    pub(crate) seq: u64,
    pub(crate) id: u64,
    pub(crate) from: FromJson<'a>,
    pub(crate) to: &'a str,
    pub(crate) sent_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
}

impl<'a> EntryJson<'a> {
    pub(crate) fn of(e: &'a ConversationEntry) -> Self {
        let (body, body_base64) = split_body(&e.body);
        EntryJson {
            seq: e.seq,
            id: e.id.0,
            from: FromJson {
                user: &e.from.user,
                device: &e.from.device,
            },
            to: &e.to,
            sent_at: e.sent_at,
            body,
            body_base64,
        }
    }
}

/// `presence`: someone joined or left a room that asked for presence events.
#[derive(Serialize)]
pub(crate) struct PresenceJson<'a> {
    pub(crate) room: &'a str,
    pub(crate) user: &'a str,
    pub(crate) device: &'a str,
    pub(crate) event: &'static str,
}

/// `bye`: the server closes the connection, and why.
#[derive(Serialize)]
pub(crate) struct ByeJson<'a> {
    pub(crate) code: u16,
    pub(crate) name: &'static str,
    pub(crate) reason: &'a str,
    pub(crate) reconnect: &'static str,
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

fn from_json(d: &Option<Device>) -> Option<FromJson<'_>> {
    d.as_ref().map(|d| FromJson {
        user: &d.user,
        device: &d.device,
    })
}

/// The chat door's encoding: gotalk notifications with JSON bodies (the same bytes on every
/// framing: a header and its payload).
pub(crate) struct ChatFormat {
    pub(crate) codec: WireCodec,
}

impl ChatFormat {
    fn notification(&self, name: Name, json: Vec<u8>) -> Option<Encoded> {
        let m = Message::Notification {
            name,
            payload: Bytes::from(json),
        };
        self.codec.encode(&m, Framing::Stream).ok()
    }
}

impl Format for ChatFormat {
    fn encode(&self, event: &Event) -> Option<Encoded> {
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
            Event::Room(m) => (ROOM, serde_json::to_vec(&RoomJson::of(m))),
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
        self.notification(name, json.ok()?)
    }

    fn bye(&self, close: &Close) -> Option<Encoded> {
        let json = serde_json::to_vec(&ByeJson {
            code: close.code.0,
            name: close.code.name(),
            reason: &close.reason,
            reconnect: close.code.reconnect().as_str(),
        })
        .ok()?;
        self.notification(BYE, json)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::close::CloseCode;
    use crate::core::message::{DirectMessage, MessageId, PresenceEvent, RoomMessage};

    /// What a notification carries, decoded from the bytes the format writes.
    fn written(e: Option<Encoded>) -> (String, serde_json::Value) {
        let bytes: Vec<u8> = e
            .unwrap()
            .iter()
            .flat_map(|f| f.payload().to_vec())
            .collect();
        let mut d = chinwag_wire::StreamDecoder::new(chinwag_wire::WireLimits::default());
        let mut buf = bytes::BytesMut::from(&b"01"[..]);
        buf.extend_from_slice(&bytes);
        match d.decode(&mut buf).unwrap().unwrap() {
            Message::Notification { name, payload } => {
                (name.to_string(), serde_json::from_slice(&payload).unwrap())
            }
            m => panic!("{m:?}"),
        }
    }

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn table(name: &str) -> BTreeSet<String> {
        let n = NOTIFICATIONS.iter().find(|n| n.name == name).unwrap();
        n.fields.iter().map(|f| (*f).to_owned()).collect()
    }

    #[test]
    fn the_table_is_what_the_format_writes() {
        let f = ChatFormat {
            codec: WireCodec::new(chinwag_wire::WireLimits::default()),
        };
        let from = Some(Device::new("a", "b"));
        let text = Body::text("t");
        let bin = Body::binary(vec![1u8]);
        for body in [text, bin] {
            let (name, v) = written(f.encode(&Event::Direct(Arc::new(DirectMessage {
                id: MessageId(1),
                to: "u".into(),
                from: from.clone(),
                sent_at: 0,
                body: body.clone(),
            }))));
            assert_eq!(name, "message");
            assert!(keys(&v).is_subset(&table("message")));
            assert_eq!(keys(&v).len(), table("message").len() - 1, "one body field");
            let from_keys = keys(&v["from"]);
            assert_eq!(
                from_keys,
                FROM_FIELDS.iter().map(|s| s.to_string()).collect()
            );
            let (name, v) = written(f.encode(&Event::Room(Arc::new(RoomMessage {
                room: "r".into(),
                epoch: 1,
                seq: 1,
                from: None,
                sent_at: 0,
                body,
            }))));
            assert_eq!(name, "room");
            assert!(keys(&v).is_subset(&table("room")));
            assert_eq!(keys(&v).len(), table("room").len() - 1);
        }
        let (name, v) = written(f.encode(&Event::Presence(Arc::new(PresenceEvent {
            room: "r".into(),
            device: Device::new("a", "b"),
            joined: true,
        }))));
        assert_eq!((name.as_str(), keys(&v)), ("presence", table("presence")));
        let (name, v) = written(f.bye(&Close::new(CloseCode::KICKED, "x")));
        assert_eq!((name.as_str(), keys(&v)), ("bye", table("bye")));
    }
}
