//! The hub's errors. Each has a stable [`code`](SendError::code) string: the `code` of the
//! gotalk chat door's error results (`docs/chat-protocol.md`).

use chinwag_queue::QueueError;

/// Why a send to a user did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Not a valid user id (empty or longer than 1 024 bytes).
    #[error("bad recipient")]
    BadRecipient,
    /// The offline queue refused it (full, or its backend failed); nothing was delivered.
    #[error("offline queue: {0}")]
    Queue(String),
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
    Refused(String),
    /// The sender is over its message rate.
    #[error("rate limited")]
    RateLimited,
    /// The hub is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl SendError {
    /// The stable error code: `offline`, `too_large`, `bad_recipient`, `queue`, `partial`,
    /// `undelivered`, `refused`, `rate_limited`, `shutting_down`.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::Offline(_) => "offline",
            SendError::TooLarge { .. } => "too_large",
            SendError::BadRecipient => "bad_recipient",
            SendError::Queue(_) => "queue",
            SendError::Partial { .. } => "partial",
            SendError::Undelivered => "undelivered",
            SendError::Refused(_) => "refused",
            SendError::RateLimited => "rate_limited",
            SendError::ShuttingDown => "shutting_down",
        }
    }
}

impl From<QueueError> for SendError {
    fn from(e: QueueError) -> Self {
        SendError::Queue(e.to_string())
    }
}

/// Why a room operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// No room of that name (and rooms are not created on join, or it was a publish).
    #[error("no such room")]
    NoSuchRoom,
    /// Not a valid room name (empty, too long, control characters, or the reserved `*`).
    #[error("bad room name")]
    BadName,
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
    /// Too many password checks wait already; try again.
    #[error("busy; try again")]
    Busy,
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
    Refused(String),
    /// The sender is over its message rate.
    #[error("rate limited")]
    RateLimited,
}

impl RoomError {
    /// The stable error code: `no_such_room`, `bad_room`, `room_full`, `too_many_rooms`,
    /// `too_many_rooms_on_server`, `wrong_password`, `bad_password`, `room_exists`,
    /// `not_member`, `busy`, `too_large`, `refused`, `rate_limited`.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::NoSuchRoom => "no_such_room",
            RoomError::BadName => "bad_room",
            RoomError::Full => "room_full",
            RoomError::TooManyRooms => "too_many_rooms",
            RoomError::TooManyRoomsOnServer => "too_many_rooms_on_server",
            RoomError::WrongPassword => "wrong_password",
            RoomError::BadPassword => "bad_password",
            RoomError::Exists => "room_exists",
            RoomError::NotMember => "not_member",
            RoomError::Busy => "busy",
            RoomError::TooLarge { .. } => "too_large",
            RoomError::Refused(_) => "refused",
            RoomError::RateLimited => "rate_limited",
        }
    }
}

/// Why a connection could not sign on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SignOnError {
    /// The hub has as many connections as allowed.
    #[error("server full")]
    Full,
    /// The hub is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The directory could not decide.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// The connection closed before it was signed on.
    #[error("connection closed")]
    Closed,
}

impl SignOnError {
    /// The metric label / error code: `connections`, `shutting_down`, `directory`, `closed`.
    pub fn code(&self) -> &'static str {
        match self {
            SignOnError::Full => "connections",
            SignOnError::ShuttingDown => "shutting_down",
            SignOnError::Directory(_) => "directory",
            SignOnError::Closed => "closed",
        }
    }
}
