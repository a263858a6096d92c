//! History settings (issue 17): what rooms keep of their publications, how much a member that
//! comes back recovers, and what conversations (direct messages between two users) keep. The store is the hub's [`History`](chinwag_queue::History)
//! backend ([`HubBuilder::history`](crate::HubBuilder::history)); without one, rooms keep
//! nothing and a `join` with `since` is answered "not recovered" (`no_history`).

use std::time::Duration;

use crate::core::recovery::{Keep, KeepHistory};

/// Room and conversation history settings.
///
/// | setting | default | past it |
/// |---|---|---|
/// | `max_len` | 1 000 publications per room (0: rooms keep none unless made with their own) | the oldest are dropped |
/// | `max_age` | 24 h | older publications are dropped |
/// | `max_recover` | 1 000 publications a join recovers | not recovered (`too_many`) |
/// | `max_held` | 1 024 live publications held while a member catches up | the member is closed (1008), and recovers on its next connection |
/// | `max_page` | 100 publications per `history` page | the page is cut to it |
/// | `public` | false: only members read a room's history | — |
/// | `conversation_max_len` | 1 000 direct messages per pair of users (0: none kept) | the oldest are dropped |
/// | `conversation_max_age` | 7 days | older messages are dropped |
///
/// ```
/// use std::time::Duration;
/// use chinwag::hub::{HubConfig, RoomHistory};
///
/// let config = HubConfig::default().with_history(
///     RoomHistory::default().with_max_len(500).with_max_age(Some(Duration::from_secs(3600))),
/// );
/// assert_eq!(config.history.max_len, 500);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RoomHistory {
    /// Publications a room keeps by default (0: none). Default 1 000.
    pub max_len: u64,
    /// Age after which a kept publication is dropped (`None`: no age bound). Default 24 h.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub max_age: Option<Duration>,
    /// Publications a join with `since` recovers at most. Default 1 000.
    pub max_recover: u64,
    /// Live publications held for a member while it catches up. Default 1 024.
    pub max_held: usize,
    /// Largest page of the `history` operation. Default 100.
    pub max_page: usize,
    /// Whether users that are not members may read the history of rooms made with the hub's
    /// default (rooms made with their own [`Keep`] say it themselves). Default false.
    pub public: bool,
    /// Direct messages a conversation (two users, both directions) keeps (0: none). Only
    /// messages sent by a user with a TTL are kept (live-only ones are not). Default 1 000.
    pub conversation_max_len: u64,
    /// Age after which a kept direct message is dropped (`None`: no age bound). Default 7 days.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub conversation_max_age: Option<Duration>,
}

impl Default for RoomHistory {
    fn default() -> Self {
        RoomHistory {
            max_len: 1_000,
            max_age: Some(Duration::from_secs(24 * 3600)),
            max_recover: 1_000,
            max_held: 1_024,
            max_page: 100,
            public: false,
            conversation_max_len: 1_000,
            conversation_max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl RoomHistory {
    /// Sets [`max_len`](Self::max_len).
    pub fn with_max_len(mut self, v: u64) -> Self {
        self.max_len = v;
        self
    }

    /// Sets [`max_age`](Self::max_age).
    pub fn with_max_age(mut self, v: Option<Duration>) -> Self {
        self.max_age = v;
        self
    }

    /// Sets [`max_recover`](Self::max_recover).
    pub fn with_max_recover(mut self, v: u64) -> Self {
        self.max_recover = v;
        self
    }

    /// Sets [`max_held`](Self::max_held).
    pub fn with_max_held(mut self, v: usize) -> Self {
        self.max_held = v;
        self
    }

    /// Sets [`max_page`](Self::max_page).
    pub fn with_max_page(mut self, v: usize) -> Self {
        self.max_page = v;
        self
    }

    /// Sets [`public`](Self::public).
    pub fn with_public(mut self, v: bool) -> Self {
        self.public = v;
        self
    }

    /// Sets [`conversation_max_len`](Self::conversation_max_len).
    pub fn with_conversation_max_len(mut self, v: u64) -> Self {
        self.conversation_max_len = v;
        self
    }

    /// Sets [`conversation_max_age`](Self::conversation_max_age).
    pub fn with_conversation_max_age(mut self, v: Option<Duration>) -> Self {
        self.conversation_max_age = v;
        self
    }

    /// What a conversation keeps (`None`: nothing).
    pub(crate) fn conversation(&self) -> Option<Keep> {
        (self.conversation_max_len > 0)
            .then(|| Keep::new(self.conversation_max_len, self.conversation_max_age))
    }

    /// What a room made with `asked` keeps (`None`: nothing).
    pub(crate) fn keep(&self, asked: KeepHistory) -> Option<Keep> {
        match asked {
            KeepHistory::Off => None,
            KeepHistory::Keep(k) => Some(k),
            KeepHistory::HubDefault if self.max_len == 0 => None,
            KeepHistory::HubDefault => {
                let keep = Keep::new(self.max_len, self.max_age);
                Some(if self.public {
                    keep.readable_by_all()
                } else {
                    keep
                })
            }
        }
    }
}
