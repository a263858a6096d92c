//! The hub's **sans-IO core**: the rules of the hub as plain data and functions. It decides;
//! the driver ([`Hub`](crate::Hub)) acts.
//!
//! Nothing here awaits, spawns, locks, reads a clock or touches a socket: every function takes
//! the instant it happens at ([`Time`](time::Time), and the wall clock where a rule needs it)
//! and returns what must happen — a stage of a user's pipeline to push or deliver
//! ([`delivery::Step`]), connections to close, a replay's next read, an entry to acknowledge.
//! The driver keeps the core's state behind its locks, runs the I/O and reports back. So the
//! rules are proven by plain unit and property tests with a manual clock (`core::tests`), and
//! `cargo xtask tidy` fails if a file here imports Tokio, a chinwag I/O crate, a lock, a clock
//! or the driver and doors.
//!
//! | file | rules |
//! |---|---|
//! | `identity`, `message` | who a connection is; bodies, ids, events, the queue envelope |
//! | `ids` | the grammar of user ids, device ids and room names |
//! | `signon` | sign-on policies and the table that applies them |
//! | `users` | one shard of users and connections: sign-on marks, message rate, rooms joined, expiry |
//! | `pipeline` | the data of direct messages: a user's pipeline, the steps asked of the driver |
//! | `delivery` | direct messages: the rules of the per-user pipeline of sends |
//! | `replay` | a connection's replay of its queued messages; acknowledgements |
//! | `rooms` | one shard of rooms: members, epoch and sequence, snapshots for fan-out, presence |
//! | `recovery` | a room member that comes back with `since`: the decision, the missed range, the held live publications |
//! | `catchup` | the rooms' side of recovery: kept publications sequenced and held, catch-ups taken and ended |
//! | `conversation` | direct-message history: a conversation's stream name, its entries |
//! | `guesses` | room-password guesses per connection |
//! | `shares` | per-sender shares of the offline queue |
//! | `rate` | token buckets on the core's clock |
//! | `expiry` | token expiry deadlines |
//! | `time` | the core's clock type |

pub(crate) mod catchup;
pub(crate) mod conversation;
pub(crate) mod delivery;
pub(crate) mod expiry;
pub(crate) mod guesses;
pub(crate) mod identity;
pub mod ids;
pub(crate) mod message;
pub(crate) mod pipeline;
pub(crate) mod rate;
pub(crate) mod recovery;
pub(crate) mod registry;
pub(crate) mod replay;
pub(crate) mod rooms;
pub(crate) mod shares;
pub(crate) mod signon;
pub(crate) mod time;
pub(crate) mod users;

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

/// The id of an offline queue entry (`chinwag_queue::EntryId`: increasing per recipient, never
/// reused, `0` reads from the start).
pub(crate) type EntryId = u64;

/// Pushes `item`, the first one into exact room: `Vec::push`'s first growth keeps room for
/// four, which on per-user and per-connection lists (most hold one item for an idle
/// connection's whole life) is memory every idle connection pays. Later growth doubles as usual.
pub(crate) fn push_small<T>(list: &mut Vec<T>, item: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(item);
}

/// What a send to a user with several connections reports when some were reached and others
/// not (tok's three behaviours). It matters only for live-only messages (TTL 0): a message with
/// a TTL is in the offline queue until acknowledged, so a connection that could not take it
/// gets it from the queue.
///
/// With the `serde` feature: `"any_delivered"`, `"all_or_error"` or
/// `{ queue_for_user = "7d" }` (the TTL as a duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(
        from = "crate::config::PartialRepr",
        into = "crate::config::PartialRepr"
    )
)]
#[non_exhaustive]
pub enum PartialDelivery {
    /// Success if at least one connection took it; the report counts the failures. The
    /// default.
    #[default]
    AnyDelivered,
    /// Any connection that could not take it makes the send fail with
    /// [`SendError::Partial`](crate::SendError::Partial) (the others did get it).
    AllOrError,
    /// Any connection that could not take it puts the message (same id) into the offline
    /// queue with this TTL, so the user gets it again on the next connect (clients drop the
    /// duplicate by id).
    QueueForUser {
        /// The TTL it is queued with.
        ttl: Duration,
    },
}
