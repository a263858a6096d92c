//! Direct-message history (issue 17): the messages two users sent each other, kept in one
//! stream of the history store per pair of users (both directions), so that any device of
//! either reads the same conversation. The offline queue stays the delivery guarantee; the
//! conversation is what a client shows.
//!
//! A conversation's stream is named `"\0dm\0" + a + "\0" + b`, `a` and `b` the two user ids in
//! byte order (`a == b` for notes to oneself): ids never contain a control character, so no room
//! name and no other pair of users names the same stream.

use std::sync::Arc;

use bytes::Bytes;

use super::identity::Device;
use super::message::{Body, DirectMessage, MessageId, decode_parts, encode_parts};

/// Version byte of a direct message kept in a conversation's history.
const CONVERSATION_V1: u8 = 3;

/// The longest conversation stream name (two user ids of the longest): the driver checks at
/// compile time that the history store takes names this long.
pub(crate) const MAX_STREAM_BYTES: usize = 5 + 2 * super::ids::MAX_USER_BYTES;

/// The history stream of the conversation between users `a` and `b` (either order).
pub(crate) fn stream(a: &str, b: &str) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    let mut s = String::with_capacity(5 + lo.len() + hi.len());
    s.push_str("\0dm\0");
    s.push_str(lo);
    s.push('\0');
    s.push_str(hi);
    s
}

/// One direct message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConversationEntry {
    /// Its place in the conversation (the history's offset): 1, 2, 3, ... per epoch.
    pub seq: u64,
    /// The message's id (as the recipient got it in the `message` notification).
    pub id: MessageId,
    /// The sender.
    pub from: Device,
    /// The recipient.
    pub to: Arc<str>,
    /// When it was sent, unix milliseconds.
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

/// Encodes a direct message sent by a user for its conversation's history (the recipient is
/// the other user of the stream, so it is not stored).
pub(crate) fn encode(m: &DirectMessage, from: &Device) -> Bytes {
    encode_parts(CONVERSATION_V1, m.id.0, m.sent_at, Some(from), &m.body)
}

/// Reads a kept message of the conversation between `user` and `with` back; `None` when it is
/// not one this hub wrote.
pub(crate) fn decode(user: &str, with: &str, seq: u64, b: Bytes) -> Option<ConversationEntry> {
    let (id, sent_at, from, body) = decode_parts(CONVERSATION_V1, b)?;
    let from = from?;
    let to = if &*from.user == user { with } else { user };
    Some(ConversationEntry {
        seq,
        id: MessageId(id),
        to: Arc::from(to),
        from,
        sent_at,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_names_one_stream_whichever_way_round() {
        assert_eq!(stream("alice", "bob"), stream("bob", "alice"));
        assert_eq!(stream("alice", "bob"), "\0dm\0alice\0bob");
        // Ids cannot hold NUL, so "a\0b" + "c" cannot be confused with "a" + "b\0c".
        assert_ne!(stream("ab", "c"), stream("a", "bc"));
        assert_eq!(stream("me", "me"), "\0dm\0me\0me");
        let long = "x".repeat(crate::core::ids::MAX_USER_BYTES);
        assert_eq!(stream(&long, &long).len(), MAX_STREAM_BYTES);
    }

    #[test]
    fn entries_round_trip_with_the_recipient_worked_out() {
        let from = Device::new("alice", "phone");
        let m = DirectMessage {
            id: MessageId(42),
            to: "bob".into(),
            from: Some(from.clone()),
            sent_at: 7,
            body: Body::text("hi"),
        };
        let b = encode(&m, &from);
        for (user, with) in [("alice", "bob"), ("bob", "alice")] {
            let e = decode(user, with, 3, b.clone()).unwrap();
            assert_eq!((e.seq, e.id, e.sent_at), (3, MessageId(42), 7));
            assert_eq!(&*e.to, "bob");
            assert_eq!(e.from, from);
            assert_eq!(e.body, Body::text("hi"));
        }
        // Not an envelope, not a publication.
        assert!(crate::core::message::decode_envelope(&"bob".into(), b.clone()).is_none());
        assert!(decode("a", "b", 1, Bytes::from_static(b"junk")).is_none());
    }
}
