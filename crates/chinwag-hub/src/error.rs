//! The hub's errors. Each has a stable [`code`](SendError::code) string: the `code` of the
//! gotalk chat door's error results (`docs/chat-protocol.md`).

use std::borrow::Cow;
use std::fmt;

use chinwag_queue::QueueError;

use crate::core::ids::IdError;
use crate::core::shares::ShareRefusal;

/// A hook's refusal of a message: the client gets a `refused` error carrying the reason.
///
/// ```
/// use chinwag::hub::Rejection;
/// let r = Rejection::new("no links from new accounts");
/// assert_eq!(r.reason(), "no links from new accounts");
/// let r: Rejection = "too long".into();
/// assert_eq!(r.to_string(), "too long");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Cow<'static, str>,
}

impl Rejection {
    /// A refusal with `reason` (shown to the client: keep it short, no secrets).
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<&'static str> for Rejection {
    fn from(s: &'static str) -> Self {
        Rejection::new(s)
    }
}

impl From<String> for Rejection {
    fn from(s: String) -> Self {
        Rejection::new(s)
    }
}

/// Which part of a sender's share of the offline queue is used up ([`SendError::Quota`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareLimit {
    /// The sender holds [`OfflineShares::per_sender_bytes`](crate::OfflineShares::per_sender_bytes).
    #[error("the sender holds its most bytes in offline queues")]
    SenderBytes,
    /// The sender holds [`OfflineShares::per_sender_messages`](crate::OfflineShares::per_sender_messages).
    #[error("the sender holds its most messages in offline queues")]
    SenderMessages,
    /// The offline store is in the reserve kept for light senders
    /// ([`OfflineShares::reserve_bytes`](crate::OfflineShares::reserve_bytes)).
    #[error("the offline store is nearly full and kept for senders who hold little")]
    Reserve,
}

impl From<ShareRefusal> for ShareLimit {
    fn from(r: ShareRefusal) -> Self {
        match r {
            ShareRefusal::SenderBytes => ShareLimit::SenderBytes,
            ShareRefusal::SenderMessages => ShareLimit::SenderMessages,
            ShareRefusal::Reserve => ShareLimit::Reserve,
        }
    }
}

/// Why a send to a user did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The user has no connection and the message had TTL 0 (live only).
    #[error("{0} is offline")]
    Offline(String),
    /// The body is larger than the limit.
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a valid user id (see the id grammar in `docs/chat-protocol.md`).
    #[error("bad recipient: {0}")]
    BadRecipient(#[source] IdError),
    /// The offline queue refused it (full, or its backend failed); nothing was delivered.
    #[error("offline queue: {0}")]
    Queue(#[from] QueueError),
    /// The sender's share of the offline queue is used up; nothing was delivered. Retry once
    /// recipients have read (or messages expired).
    #[error("over the sender's offline share: {0}")]
    Quota(ShareLimit),
    /// Some connections took it, others not, under
    /// [`PartialDelivery::AllOrError`](crate::PartialDelivery::AllOrError).
    #[error("delivered to {delivered} of {total} connections")]
    Partial {
        /// Connections that took it.
        delivered: usize,
        /// Connections of the user.
        total: usize,
    },
    /// A live-only message reached none of the user's connections (their queues were full or
    /// they were closing).
    #[error("no connection of the user could take it")]
    Undelivered,
    /// A before-receive hook refused it (its reason).
    #[error("refused: {0}")]
    Refused(Rejection),
    /// The sender is over its message rate.
    #[error("rate limited")]
    RateLimited,
    /// Too many sends to this user wait already
    /// ([`HubLimits::max_pending_per_user`](crate::HubLimits::max_pending_per_user)); retry.
    #[error("busy; try again")]
    Busy,
    /// The hub is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl SendError {
    /// The stable error code: `offline`, `too_large`, `bad_recipient`, `queue`, `quota`,
    /// `partial`, `undelivered`, `refused`, `rate_limited`, `busy`, `shutting_down`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::Offline(_) => "offline",
            SendError::TooLarge { .. } => "too_large",
            SendError::BadRecipient(_) => "bad_recipient",
            SendError::Queue(_) => "queue",
            SendError::Quota(_) => "quota",
            SendError::Partial { .. } => "partial",
            SendError::Undelivered => "undelivered",
            SendError::Refused(_) => "refused",
            SendError::RateLimited => "rate_limited",
            SendError::Busy => "busy",
            SendError::ShuttingDown => "shutting_down",
        }
    }
}

/// Why a room operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// No room of that name (and rooms are not created on join, or it was a publish).
    #[error("no such room")]
    NoSuchRoom,
    /// Not a valid room name (see the name grammar in `docs/chat-protocol.md`).
    #[error("bad room name: {0}")]
    BadName(#[source] IdError),
    /// The room has as many members as allowed.
    #[error("room is full")]
    Full,
    /// The connection is in as many rooms as allowed.
    #[error("in too many rooms")]
    TooManyRooms,
    /// The hub has as many rooms as allowed.
    #[error("too many rooms on this server")]
    TooManyRoomsOnServer,
    /// The room has a password and this was not it (or none was given).
    #[error("wrong room password")]
    WrongPassword,
    /// The password is longer than allowed.
    #[error("password too long")]
    BadPassword,
    /// The room exists already (creation).
    #[error("room exists")]
    Exists,
    /// Publishing to a room the connection is not in.
    #[error("not a member of the room")]
    NotMember,
    /// A password check of this connection is already running, no check slot came in time,
    /// or the room's fan-out queue is full; try again.
    #[error("busy; try again")]
    Busy,
    /// Room passwords are being guessed faster than allowed (per connection or per address).
    #[error("guessing room passwords too fast")]
    GuessingTooFast,
    /// The body is larger than the limit.
    #[error("message of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A before-receive hook refused it (its reason).
    #[error("refused: {0}")]
    Refused(Rejection),
    /// The sender is over its message rate.
    #[error("rate limited")]
    RateLimited,
    /// The room's history store failed or is full: the publish was not kept (nor sent), or
    /// the history could not be read.
    #[error("room history unavailable: {0}")]
    History(#[source] HistoryFailure),
}

/// Why a conversation's history could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConversationError {
    /// The hub keeps no conversation history (no history store, or
    /// [`conversation_max_len`](crate::RoomHistory::conversation_max_len) 0).
    #[error("this server keeps no conversation history")]
    NotKept,
    /// Not a valid user id.
    #[error("bad user: {0}")]
    BadUser(#[source] IdError),
    /// The history store failed.
    #[error("history unavailable: {0}")]
    History(HistoryFailure),
}

impl ConversationError {
    /// The stable error code: `no_history`, `bad_recipient`, `history_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            ConversationError::NotKept => "no_history",
            ConversationError::BadUser(_) => "bad_recipient",
            ConversationError::History(_) => "history_unavailable",
        }
    }
}

/// A room history store's error, shared so that [`RoomError`] stays `Clone` (several
/// publishers of one failed batch get it): equal only to itself.
#[derive(Debug, Clone)]
pub struct HistoryFailure(pub std::sync::Arc<chinwag_queue::QueueError>);

impl HistoryFailure {
    /// Wraps a store's error.
    pub fn new(e: chinwag_queue::QueueError) -> Self {
        HistoryFailure(std::sync::Arc::new(e))
    }
}

impl PartialEq for HistoryFailure {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for HistoryFailure {}

impl std::fmt::Display for HistoryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HistoryFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl RoomError {
    /// The stable error code: `no_such_room`, `bad_room`, `room_full`, `too_many_rooms`,
    /// `too_many_rooms_on_server`, `wrong_password`, `bad_password`, `room_exists`,
    /// `not_member`, `busy`, `guessing_too_fast`, `too_large`, `refused`, `rate_limited`,
    /// `history_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::NoSuchRoom => "no_such_room",
            RoomError::BadName(_) => "bad_room",
            RoomError::Full => "room_full",
            RoomError::TooManyRooms => "too_many_rooms",
            RoomError::TooManyRoomsOnServer => "too_many_rooms_on_server",
            RoomError::WrongPassword => "wrong_password",
            RoomError::BadPassword => "bad_password",
            RoomError::Exists => "room_exists",
            RoomError::NotMember => "not_member",
            RoomError::Busy => "busy",
            RoomError::GuessingTooFast => "guessing_too_fast",
            RoomError::TooLarge { .. } => "too_large",
            RoomError::Refused(_) => "refused",
            RoomError::RateLimited => "rate_limited",
            RoomError::History(_) => "history_unavailable",
        }
    }
}

/// Why a connection could not sign on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignOnError {
    /// The hub has as many connections as allowed.
    #[error("server full")]
    Full,
    /// The hub is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The authenticator named a user or device that breaks the id grammar.
    #[error("bad identity: {0}")]
    BadIdentity(#[source] IdError),
    /// The directory could not decide.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// The connection closed before it was signed on.
    #[error("connection closed")]
    Closed,
}

impl SignOnError {
    /// The metric label / error code: `connections`, `shutting_down`, `bad_identity`,
    /// `directory`, `closed`.
    pub fn code(&self) -> &'static str {
        match self {
            SignOnError::Full => "connections",
            SignOnError::BadIdentity(_) => "bad_identity",
            SignOnError::ShuttingDown => "shutting_down",
            SignOnError::Directory(_) => "directory",
            SignOnError::Closed => "closed",
        }
    }
}
