//! What travels through the hub: message [`Body`]s, [`MessageId`]s, the [`Event`]s delivered to
//! connections, and the envelope direct messages are stored in while queued. Plain data: the
//! clock is passed in.

use std::fmt;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::identity::Device;

/// A message body: text (UTF-8, checked) or binary. Cheap to clone (shared bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Body {
    bytes: Bytes,
    binary: bool,
}

impl Body {
    /// A text body.
    pub fn text(s: impl Into<String>) -> Self {
        Body {
            bytes: Bytes::from(s.into()),
            binary: false,
        }
    }

    /// A text body from bytes, if they are UTF-8.
    ///
    /// # Errors
    ///
    /// The bytes are not UTF-8 (they are handed back).
    pub fn text_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        if std::str::from_utf8(&bytes).is_ok() {
            Ok(Body {
                bytes,
                binary: false,
            })
        } else {
            Err(bytes)
        }
    }

    /// A binary body.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Body {
            bytes: bytes.into(),
            binary: true,
        }
    }

    /// Whether it is binary.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The text, when it is a text body.
    pub fn as_text(&self) -> Option<&str> {
        if self.binary {
            None
        } else {
            // Checked at construction.
            std::str::from_utf8(&self.bytes).ok()
        }
    }

    /// The bytes (UTF-8 for a text body).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.binary { "binary" } else { "text" };
        write!(f, "Body({kind}, {} bytes)", self.bytes.len())
    }
}

/// The id of a direct message: increasing per user (in fact across the whole hub: unix
/// microseconds when it was sent, or one more than the last id if that is larger), so a client
/// can drop a message it has seen (at-least-once delivery sends a message again after a
/// reconnect if it was not acknowledged). Fits a JavaScript number until the year 2255.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Hands out [`MessageId`]s: `max(now in µs, last + 1)`, strictly increasing for the hub's
/// life and, as long as the wall clock does not go back across a restart, across restarts.
#[derive(Debug, Default)]
pub(crate) struct IdSource {
    last: u64,
}

impl IdSource {
    /// The next id, `unix_us` being the wall clock now (unix microseconds).
    pub(crate) fn next(&mut self, unix_us: u64) -> MessageId {
        self.last = unix_us.max(self.last.saturating_add(1));
        MessageId(self.last)
    }
}

/// A message to one user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectMessage {
    /// Its id (increasing per user).
    pub id: MessageId,
    /// The recipient.
    pub to: Arc<str>,
    /// The sender; `None`: the server.
    pub from: Option<Device>,
    /// When it was sent, unix milliseconds.
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

impl DirectMessage {
    /// The same message under another id (a cluster numbers messages by their queue entry).
    pub(crate) fn with_id(&self, id: MessageId) -> Self {
        DirectMessage { id, ..self.clone() }
    }
}

/// A message published to a room.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoomMessage {
    /// The room.
    pub room: Arc<str>,
    /// The room's epoch: a new value each time a room of this name is created, so that
    /// `(epoch, seq)` identifies a publish for good (room history will use it).
    pub epoch: u64,
    /// The publish's sequence number in the room: 1, 2, 3, ... within an epoch.
    pub seq: u64,
    /// The publisher; `None`: the server.
    pub from: Option<Device>,
    /// When it was published, unix milliseconds.
    pub sent_at: u64,
    /// The body.
    pub body: Body,
}

/// A member joined or left a room that asked for presence events.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PresenceEvent {
    /// The room.
    pub room: Arc<str>,
    /// The device that joined or left.
    pub device: Device,
    /// `true`: joined; `false`: left.
    pub joined: bool,
}

/// The outcome of handing one event to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivered {
    /// Queued on the connection.
    Sent,
    /// Dropped by the connection's overflow policy (or the connection was closed by it).
    Dropped,
    /// The connection was closing.
    Closed,
    /// The before-send hook dropped it (or the door does not carry such events).
    Filtered,
}

/// Something the hub delivers to a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A direct message.
    Direct(Arc<DirectMessage>),
    /// A room publish.
    Room(Arc<RoomMessage>),
    /// A presence change in a room.
    Presence(Arc<PresenceEvent>),
}

impl Event {
    /// The body, for messages.
    pub fn body(&self) -> Option<&Body> {
        match self {
            Event::Direct(m) => Some(&m.body),
            Event::Room(m) => Some(&m.body),
            Event::Presence(_) => None,
        }
    }

    /// The same event with another body (for a before-send hook that transforms).
    pub(crate) fn with_body(&self, body: Body) -> Event {
        match self {
            Event::Direct(m) => Event::Direct(Arc::new(DirectMessage {
                body,
                ..(**m).clone()
            })),
            Event::Room(m) => Event::Room(Arc::new(RoomMessage {
                body,
                ..(**m).clone()
            })),
            Event::Presence(p) => Event::Presence(p.clone()),
        }
    }

    /// The metric label of the event's kind.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::Direct(_) => "direct",
            Event::Room(_) => "room",
            Event::Presence(_) => "presence",
        }
    }
}

// ---- the queue envelope ------------------------------------------------------------------

/// Version byte of the stored envelope of a direct message.
const ENVELOPE_V1: u8 = 1;
/// Version byte of a room publication kept in the room's history.
const PUBLICATION_V1: u8 = 2;
const FLAG_BINARY: u8 = 1;
const FLAG_FROM: u8 = 2;

/// Encodes a direct message for the offline queue: version, flags, id, sent-at, sender, body.
/// Compact and self-describing enough to be read back by a later version of the hub.
pub(crate) fn encode_envelope(m: &DirectMessage) -> Bytes {
    encode_parts(ENVELOPE_V1, m.id.0, m.sent_at, m.from.as_ref(), &m.body)
}

/// Reads an envelope back; `None` when it is not one this hub wrote.
pub(crate) fn decode_envelope(to: &Arc<str>, b: Bytes) -> Option<DirectMessage> {
    let (id, sent_at, from, body) = decode_parts(ENVELOPE_V1, b)?;
    Some(DirectMessage {
        id: MessageId(id),
        to: to.clone(),
        from,
        sent_at,
        body,
    })
}

/// Encodes a room publication for the room's history (its epoch and sequence are the stream's,
/// not stored): the envelope's layout with its own version byte.
pub(crate) fn encode_publication(from: Option<&Device>, sent_at: u64, body: &Body) -> Bytes {
    encode_parts(PUBLICATION_V1, 0, sent_at, from, body)
}

/// Reads a kept publication back as the room message of `room`, `epoch` and `seq`; `None` when
/// it is not one this hub wrote.
pub(crate) fn decode_publication(
    room: &Arc<str>,
    epoch: u64,
    seq: u64,
    b: Bytes,
) -> Option<RoomMessage> {
    let (_, sent_at, from, body) = decode_parts(PUBLICATION_V1, b)?;
    Some(RoomMessage {
        room: room.clone(),
        epoch,
        seq,
        from,
        sent_at,
        body,
    })
}

pub(super) fn encode_parts(
    version: u8,
    id: u64,
    sent_at: u64,
    from: Option<&Device>,
    body: &Body,
) -> Bytes {
    let from_len = from.map_or(0, |d| 4 + d.user.len() + d.device.len());
    let mut b = BytesMut::with_capacity(18 + from_len + body.len());
    b.put_u8(version);
    let mut flags = 0;
    if body.is_binary() {
        flags |= FLAG_BINARY;
    }
    if from.is_some() {
        flags |= FLAG_FROM;
    }
    b.put_u8(flags);
    b.put_u64(id);
    b.put_u64(sent_at);
    if let Some(d) = from {
        // Users and devices are bounded far below u16::MAX by the authenticators.
        b.put_u16(d.user.len() as u16);
        b.put_slice(d.user.as_bytes());
        b.put_u16(d.device.len() as u16);
        b.put_slice(d.device.as_bytes());
    }
    b.put_slice(body.bytes());
    b.freeze()
}

pub(super) type Parts = (u64, u64, Option<Device>, Body);

pub(super) fn decode_parts(version: u8, mut b: Bytes) -> Option<Parts> {
    if b.remaining() < 18 || b.get_u8() != version {
        return None;
    }
    let flags = b.get_u8();
    let id = b.get_u64();
    let sent_at = b.get_u64();
    let from = if flags & FLAG_FROM != 0 {
        let user = take_str(&mut b)?;
        let device = take_str(&mut b)?;
        Some(Device::new(user, device))
    } else {
        None
    };
    let body = if flags & FLAG_BINARY != 0 {
        Body::binary(b)
    } else {
        Body::text_from_bytes(b).ok()?
    };
    Some((id, sent_at, from, body))
}

fn take_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_increase_even_when_the_clock_goes_back() {
        let mut ids = IdSource::default();
        let mut last = ids.next(1_000);
        for now in [1_000, 999, 5, 2_000, 2_000, 0] {
            let n = ids.next(now);
            assert!(n > last);
            assert!(n.0 >= now);
            last = n;
        }
    }

    #[test]
    fn envelopes_round_trip() {
        let to: Arc<str> = "bob".into();
        for (from, body) in [
            (Some(Device::new("alice", "phone")), Body::text("hé")),
            (None, Body::binary(vec![0u8, 255, 1])),
            (Some(Device::new("a", "")), Body::text("")),
        ] {
            let m = DirectMessage {
                id: MessageId(42),
                to: to.clone(),
                from,
                sent_at: 7,
                body,
            };
            let back = decode_envelope(&to, encode_envelope(&m)).unwrap();
            assert_eq!(back.id, m.id);
            assert_eq!(back.sent_at, 7);
            assert_eq!(back.from, m.from);
            assert_eq!(back.body, m.body);
        }
    }

    #[test]
    fn foreign_or_truncated_envelopes_are_refused() {
        let to: Arc<str> = "bob".into();
        assert!(decode_envelope(&to, Bytes::from_static(b"hello")).is_none());
        let m = DirectMessage {
            id: MessageId(1),
            to: to.clone(),
            from: Some(Device::new("alice", "phone")),
            sent_at: 0,
            body: Body::text("x"),
        };
        let full = encode_envelope(&m);
        for cut in 0..full.len() - 1 {
            // Any prefix that cuts into the header or the sender is refused, never a panic.
            let _ = decode_envelope(&to, full.slice(..cut));
        }
        let mut bad = full.to_vec();
        bad[0] = 9;
        assert!(decode_envelope(&to, Bytes::from(bad)).is_none());
    }

    #[test]
    fn publications_round_trip_and_are_not_envelopes() {
        let room: Arc<str> = "lobby".into();
        let from = Device::new("alice", "phone");
        let b = encode_publication(Some(&from), 9, &Body::text("hi"));
        let m = decode_publication(&room, 5, 3, b.clone()).unwrap();
        assert_eq!((m.epoch, m.seq, m.sent_at), (5, 3, 9));
        assert_eq!(m.from.as_ref(), Some(&from));
        assert_eq!(m.body, Body::text("hi"));
        assert!(decode_envelope(&room, b).is_none(), "another version byte");
        let bin = encode_publication(None, 1, &Body::binary(vec![0u8, 200]));
        assert!(
            decode_publication(&room, 1, 1, bin)
                .unwrap()
                .body
                .is_binary()
        );
    }
}
