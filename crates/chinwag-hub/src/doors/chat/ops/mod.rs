//! The chat operations as a typed table ([`OPERATIONS`]), one file per family: `session`
//! (`auth`, `whoami`, `refresh`), `direct` (`send`, `ack`, `app`), `rooms` (`join`, `leave`,
//! `publish`, `rooms`, `members`), `presence` (`online`). The door serves exactly this table,
//! and `tests/protocol_doc.rs` holds `docs/chat-protocol.md` to it.
//!
//! Every request is a JSON object (an array, a string or `null` is `bad_request`, for every
//! operation); an optional field given as `null` is the same as an absent one; a field the
//! operation does not know is `bad_request`.

use std::future::Future;

use bytes::Bytes;
use chinwag_rpc::{Handlers, Peer};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Serialize};

use super::ChatState;
use crate::auth::AuthError;
use crate::driver::{Conn, Hub};
use crate::error::{RoomError, SendError};

mod direct;
mod presence;
mod rooms;
mod session;

pub use presence::MAX_ONLINE_QUERY;
pub use rooms::{DEFAULT_HISTORY_PAGE, DEFAULT_MEMBERS_PAGE};

/// One operation of the chat protocol.
#[non_exhaustive]
pub struct Operation {
    /// Its name on the wire.
    pub name: &'static str,
    /// The fields of its request object (read from the request type itself).
    pub request: fn() -> &'static [&'static str],
    /// The fields of its result object.
    pub result: &'static [&'static str],
    register: fn(&mut Handlers, &Hub, &'static str),
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("name", &self.name)
            .field("request", &(self.request)())
            .field("result", &self.result)
            .finish()
    }
}

const WHOAMI: &[&str] = &["user", "device", "conn", "seq"];

/// Every operation of the chat protocol.
pub static OPERATIONS: [Operation; 13] = [
    Operation {
        name: "auth",
        request: fields_of::<session::AuthReq>,
        result: WHOAMI,
        register: session::auth,
    },
    Operation {
        name: "whoami",
        request: fields_of::<Empty>,
        result: WHOAMI,
        register: session::whoami,
    },
    Operation {
        name: "refresh",
        request: fields_of::<session::AuthReq>,
        result: &["expires_at"],
        register: session::refresh,
    },
    Operation {
        name: "send",
        request: fields_of::<direct::SendReq>,
        result: &["id", "delivered", "failed", "queued", "seq"],
        register: direct::send,
    },
    Operation {
        name: "ack",
        request: fields_of::<direct::AckReq>,
        result: &["removed"],
        register: direct::ack,
    },
    Operation {
        name: "join",
        request: fields_of::<rooms::JoinReq>,
        result: &[
            "room",
            "epoch",
            "seq",
            "members",
            "protected",
            "recovered",
            "reason",
            "missed",
        ],
        register: rooms::join,
    },
    Operation {
        name: "leave",
        request: fields_of::<rooms::RoomReq>,
        result: &["left"],
        register: rooms::leave,
    },
    Operation {
        name: "publish",
        request: fields_of::<rooms::PublishReq>,
        result: &["seq", "delivered", "dropped", "filtered"],
        register: rooms::publish,
    },
    Operation {
        name: "rooms",
        request: fields_of::<Empty>,
        result: &["rooms"],
        register: rooms::rooms,
    },
    Operation {
        name: "members",
        request: fields_of::<rooms::MembersReq>,
        result: &["members", "next"],
        register: rooms::members,
    },
    Operation {
        name: "history",
        request: fields_of::<rooms::HistoryReq>,
        // `room` and `publications` for a room, `with` and `messages` for a conversation.
        result: &[
            "room",
            "with",
            "epoch",
            "first",
            "last",
            "publications",
            "messages",
        ],
        register: rooms::history,
    },
    Operation {
        name: "online",
        request: fields_of::<presence::OnlineReq>,
        result: &["users", "online"],
        register: presence::online,
    },
    Operation {
        name: "app",
        request: fields_of::<direct::AppReq>,
        result: &["body", "body_base64"],
        register: direct::app,
    },
];

/// The handlers of every operation.
pub(crate) fn handlers(hub: &Hub) -> Handlers {
    let mut h = Handlers::new();
    for op in &OPERATIONS {
        (op.register)(&mut h, hub, op.name);
    }
    h
}

/// An empty request or result.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

/// An error result of the chat protocol.
#[derive(Debug, Clone, Serialize)]
pub struct ChatError {
    /// The stable code (see `docs/chat-protocol.md`).
    pub code: String,
    /// A human-readable message.
    pub message: String,
}

impl ChatError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        ChatError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The error text on the wire: a JSON object.
    pub(crate) fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.code.clone())
    }
}

// A refusal's message is its reason alone: the code already says `refused` (`auth_refused`),
// and clients that show both would read "refused refused: ...".

pub(crate) fn auth_error(e: &AuthError) -> ChatError {
    let message = match e {
        AuthError::Refused(why) => why.clone(),
        e => e.to_string(),
    };
    ChatError::new(&format!("auth_{}", e.reason()), message)
}

pub(crate) fn send_error(e: &SendError) -> ChatError {
    let message = match e {
        SendError::Refused(why) => why.to_string(),
        e => e.to_string(),
    };
    ChatError::new(e.code(), message)
}

pub(crate) fn room_error(e: &RoomError) -> ChatError {
    let message = match e {
        RoomError::Refused(why) => why.to_string(),
        e => e.to_string(),
    };
    ChatError::new(e.code(), message)
}

pub(crate) fn state_of(peer: &Peer) -> Result<ChatState, ChatError> {
    peer.session()
        .attr::<ChatState>()
        .ok_or_else(|| ChatError::new("closed", "connection closing"))
}

pub(crate) fn signed_in(peer: &Peer) -> Result<Conn, ChatError> {
    state_of(peer)?
        .current()
        .ok_or_else(|| ChatError::new("not_signed_in", "sign in first (auth)"))
}

/// Registers a JSON operation: the payload must be a JSON object and is parsed as `Req` (else
/// `bad_request`); the handler's `Ok` is the JSON result, its `Err` a JSON error text.
pub(crate) fn op<Req, Res, F, Fut>(h: &mut Handlers, hub: &Hub, name: &'static str, f: F)
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
        let fut = parse::<Req>(name, &payload).map(|req| f(hub.clone(), peer, req));
        async move {
            let res = fut.map_err(|e| e.text())?.await.map_err(|e| e.text())?;
            serde_json::to_vec(&res)
                .map(Bytes::from)
                .map_err(|e| ChatError::new("internal", e.to_string()).text())
        }
    });
}

/// A request payload: a JSON object of `Req`'s fields.
fn parse<Req: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<Req, ChatError> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ChatError::new(
            "bad_request",
            format!("{name}: the request must be a JSON object"),
        ));
    }
    serde_json::from_slice::<Req>(payload)
        .map_err(|e| ChatError::new("bad_request", format!("{name}: {e}")))
}

/// The field names of a request type, as serde sees them.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(fields)) => fields,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_fields_come_from_the_types() {
        let of = |n: &str| (OPERATIONS.iter().find(|o| o.name == n).unwrap().request)();
        assert_eq!(of("auth"), ["token"]);
        assert_eq!(of("send"), ["to", "body", "body_base64", "ttl_ms"]);
        assert!(of("whoami").is_empty());
        assert_eq!(of("members"), ["room", "after", "limit"]);
        assert_eq!(of("history"), ["room", "with", "before", "after", "limit"]);
    }

    /// The table's result fields are those of the types the handlers answer with.
    #[test]
    fn result_fields_are_those_of_the_result_types() {
        fn keys(v: serde_json::Value) -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        }
        let samples = [
            (
                "whoami",
                serde_json::to_value(session::sample_whoami()).unwrap(),
            ),
            (
                "refresh",
                serde_json::to_value(session::ExpiresJson { expires_at: None }).unwrap(),
            ),
            ("send", direct::sample_report()),
            (
                "ack",
                serde_json::to_value(direct::AckJson { removed: 0 }).unwrap(),
            ),
            ("join", rooms::sample_info()),
            (
                "leave",
                serde_json::to_value(rooms::LeftJson { left: true }).unwrap(),
            ),
            ("publish", rooms::sample_publish()),
            (
                "rooms",
                serde_json::to_value(rooms::RoomsJson { rooms: vec![] }).unwrap(),
            ),
            ("members", rooms::sample_members()),
            ("history", {
                // The two shapes together: a room's page and a conversation's.
                let mut both = rooms::sample_history();
                let conv = rooms::sample_conversation();
                both.as_object_mut()
                    .unwrap()
                    .extend(conv.as_object().unwrap().clone());
                both
            }),
            (
                "online",
                serde_json::to_value(presence::sample_online()).unwrap(),
            ),
            // The two shapes together: a text answer's and a binary one's.
            ("app", json!({"body": "x", "body_base64": "eA=="})),
        ];
        for (name, sample) in samples {
            let op = OPERATIONS.iter().find(|o| o.name == name).unwrap();
            let mut want: Vec<String> = op.result.iter().map(|s| (*s).to_owned()).collect();
            want.sort();
            assert_eq!(keys(sample), want, "{name}");
        }
    }

    #[test]
    fn a_request_must_be_an_object() {
        for bad in [&b"[\"room\"]"[..], b"null", b"\"x\"", b"7", b""] {
            let e = parse::<rooms::RoomReq>("leave", bad).err().unwrap();
            assert_eq!(e.code, "bad_request", "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse::<Empty>("whoami", b" {}").is_ok());
        assert!(parse::<Empty>("whoami", b"[]").is_err());
        // An optional field given as null is absent.
        let r = parse::<presence::OnlineReq>("online", br#"{"users": null}"#).unwrap();
        assert!(r.users.is_none());
        let r = parse::<rooms::JoinReq>("join", br#"{"room": "r", "password": null}"#).unwrap();
        assert!(r.password.is_none());
    }
}
