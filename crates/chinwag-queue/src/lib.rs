//! Offline message queues for chinwag: the [`Queue`] trait, the in-memory backend
//! ([`MemoryQueue`]) and, behind the `test-suite` feature, the `conformance` suite that every
//! backend (`chinwag-queue-redb`, `chinwag-queue-redis`) runs unchanged.
//!
//! When the hub sends to a user with no device online, the message waits here, per recipient,
//! until the user comes back or its time-to-live runs out.
//!
//! The crate also holds **room history** ([`history`]): the [`History`] trait (a bounded
//! stream of publications per room, with an epoch and consecutive offsets, so a client that
//! reconnects can catch up on what it missed or learn that it cannot), its in-memory backend
//! [`MemoryHistory`] and, behind `test-suite`, the `history_conformance` suite. Its bounds
//! ([`HistoryConfig`]) default to 1 MiB per payload, 100 000 streams and 256 MiB overall.
//!
//! # Semantics (identical in every backend)
//!
//! - [`Queue::push`] stores a payload for a recipient (a non-empty user id string of at most
//!   [`MAX_RECIPIENT_LEN`] bytes) with an optional time-to-live and returns its [`EntryId`].
//!   Ids are strictly increasing per recipient and are **never reused**: not after an ack, not
//!   after [`Queue::remove`], not after a restart of a durable backend. Ids are not dense (a
//!   backend may share one counter between recipients), so compare them, never count them.
//! - An entry becomes visible to readers only once `push` has returned its id, and entries become
//!   visible in id order: a reader that has seen id `n` will never later find an entry `< n`
//!   appear. So a reader can page with a cursor (`after = last id seen`) while producers push.
//! - [`Queue::read`] does **not** remove: it returns up to `max` entries with id `> after`, in
//!   id order, skipping expired ones. [`Queue::ack`] removes every entry with id `<= up_to`.
//!   Delivery is therefore at-least-once: a crash between sending and acknowledging loses
//!   nothing; the entry is sent again. Acknowledging an id that was never assigned, or twice, is
//!   harmless; acknowledging beyond the last id removes everything queued but has no effect on
//!   later pushes (they get larger ids).
//! - An entry with a time-to-live expires when the injected [`Clock`] reaches
//!   `push time + ttl` (so a zero ttl expires at once). Expired entries are never returned and
//!   their space is freed lazily (by `read`, `len` and `push` for that recipient, and by a
//!   whole-store sweep when the overall byte bound is reached) and by [`Queue::sweep`], which a
//!   server calls periodically.
//! - Bounds ([`QueueConfig`]): entries and bytes per recipient, bytes overall, payload size.
//!   Bytes are payload bytes. When a push would exceed a bound, the [`OverflowPolicy`] policy decides:
//!   [`OverflowPolicy::Refuse`] fails the push with [`QueueError::Full`]; [`OverflowPolicy::DropOldest`]
//!   drops the recipient's oldest entries until the new one fits (it never drops another
//!   recipient's entries, so it still refuses when the overall bound is reached and this
//!   recipient has nothing left to drop).
//!
//! Time is injected: [`SystemClock`] in production, [`ManualClock`] in tests, so TTL tests never
//! sleep.
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use chinwag::queue::{ManualClock, MemoryQueue, Queue, QueueConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chinwag::queue::QueueError> {
//! let clock = Arc::new(ManualClock::new(0));
//! let queue = MemoryQueue::with_clock(QueueConfig::default(), clock.clone());
//!
//! let first = queue.push("alice", "hello".into(), None).await?;
//! let second = queue.push("alice", "expires".into(), Some(Duration::from_secs(60))).await?;
//! assert!(second > first);
//!
//! // Reading does not remove: deliver, then acknowledge.
//! let entries = queue.read("alice", 0, 100).await?;
//! assert_eq!(entries.len(), 2);
//! assert_eq!(entries[0].payload, "hello");
//! queue.ack("alice", entries[0].id).await?;
//! assert_eq!(queue.len("alice").await?, 1);
//!
//! // A minute later the second message has expired.
//! clock.advance(Duration::from_secs(60));
//! assert!(queue.read("alice", 0, 100).await?.is_empty());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub mod history;
mod memory;

#[cfg(any(test, feature = "test-suite"))]
pub mod conformance;
#[cfg(any(test, feature = "test-suite"))]
pub mod history_conformance;

pub use history::{
    Direction, History, HistoryConfig, MemoryHistory, Offset, Page, Publication, Retention,
    StreamState, Trim,
};
pub use memory::MemoryQueue;

/// The id of a queued entry: strictly increasing per recipient, never reused, starting above 0
/// (so `0` is the cursor that reads from the beginning).
pub type EntryId = u64;

/// The longest recipient id accepted, in bytes.
pub const MAX_RECIPIENT_LEN: usize = 1024;

/// A boxed, `Send` future: what [`Queue`] methods return, so that `Arc<dyn Queue>` works
/// (`futures_core`'s, the one every chinwag trait uses).
pub use futures_core::future::BoxFuture;

/// One queued message.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Its id (see [`EntryId`]).
    pub id: EntryId,
    /// The payload, as pushed.
    pub payload: Bytes,
    /// When it expires, in unix milliseconds of the queue's [`Clock`]; `None` = never.
    pub expires_at: Option<u64>,
}

impl Entry {
    /// Builds an entry (for backends).
    pub fn new(id: EntryId, payload: Bytes, expires_at: Option<u64>) -> Self {
        Self {
            id,
            payload,
            expires_at,
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("payload_len", &self.payload.len())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An offline message queue, per recipient. See the [crate docs](crate) for the exact
/// semantics every implementation follows (and the `conformance` suite checks).
///
/// Methods return [`BoxFuture`]s so the trait is object safe: the hub holds an
/// `Arc<dyn Queue>`.
pub trait Queue: Send + Sync {
    /// Queues `payload` for `recipient` and returns its id once it is stored (for durable
    /// backends: once it would survive a crash). `ttl`: `None` keeps it until acknowledged.
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>>;

    /// Up to `max` unexpired entries of `recipient` with id `> after`, in id order. Does not
    /// remove them. An unknown recipient has no entries.
    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>>;

    /// Removes every entry of `recipient` with id `<= up_to` and returns how many it removed.
    /// Unknown ids, unknown recipients and repeated acks are harmless.
    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// How many unexpired entries `recipient` has.
    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// Several [`ack`](Self::ack)s, applied in order; how many entries each removed. A backend
    /// applies them in one step where it can (the Redis queue: one script, one round trip; the
    /// redb queue: one transaction); the default implementation acks one after the other.
    /// On an error some of them may have been applied (acks are idempotent: applying one again
    /// is harmless).
    fn ack_many<'a>(
        &'a self,
        acks: &'a [(&'a str, EntryId)],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        Box::pin(async move {
            let mut removed = Vec::with_capacity(acks.len());
            for (recipient, up_to) in acks {
                removed.push(self.ack(recipient, *up_to).await?);
            }
            Ok(removed)
        })
    }

    /// Several [`push`](Self::push)es for one recipient, in order: one result per item, as
    /// pushing them one after the other would give (an item refused, by a bound or its size,
    /// does not stop the ones after it), and the ids of those stored increase in item order. A
    /// durable backend stores them together where it can (the redb queue: in its writer's
    /// batches, one transaction and one fsync for all of them instead of one each); the
    /// default implementation pushes one after the other. The hub stores a run of sends to one
    /// user this way, so a busy recipient is not held to one fsync per message.
    fn push_many<'a>(
        &'a self,
        recipient: &'a str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for (payload, ttl) in items {
                out.push(self.push(recipient, payload, ttl).await);
            }
            out
        })
    }

    /// Removes every entry of `recipient` and returns how many. Later pushes still get larger
    /// ids than any it had.
    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>>;

    /// Removes every expired entry of every recipient and returns how many. Call it
    /// periodically (expired entries are otherwise freed only when their recipient is touched or
    /// the overall byte bound is reached).
    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>>;

    /// Queues `payload` for `recipient` as [`push`](Self::push) does, and, if this queue keeps
    /// a [`History`] of its own, appends `keep` to it in the same step (the Redis queue: in the
    /// push's script, one round trip for both; `RedisQueue::keeping`). The hub keeps a direct
    /// message in its conversation this way.
    ///
    /// [`Pushed::kept`] says what became of `keep`: `None` when this queue keeps no history
    /// (the default implementation: it only pushes) and the caller appends `keep` itself;
    /// `Some(result)` when the queue appended it, where an append refused or failed leaves the
    /// push done. A caller gives a queue that keeps a history only appends meant for that
    /// history.
    fn push_keeping<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
        keep: Keep<'a>,
    ) -> BoxFuture<'a, Result<Pushed, QueueError>> {
        let _ = keep;
        Box::pin(async move {
            let id = self.push(recipient, payload, ttl).await?;
            Ok(Pushed { id, kept: None })
        })
    }

    /// Whether [`push_keeping`](Self::push_keeping) appends to a history of this queue's (a
    /// caller that would otherwise append itself builds the [`Keep`] only then). Default false.
    fn keeps_history(&self) -> bool {
        false
    }
}

/// An append to a [`History`] that goes with a push: [`Queue::push_keeping`].
#[derive(Debug, Clone)]
pub struct Keep<'a> {
    /// The stream appended to.
    pub stream: &'a str,
    /// The publication's payload.
    pub payload: Bytes,
    /// The stream's retention (as [`History::append`]'s).
    pub retention: Retention,
    /// The epoch the stream starts with if it does not exist (as [`History::append`]'s).
    pub new_epoch: u64,
}

/// What [`Queue::push_keeping`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Pushed {
    /// The pushed entry's id.
    pub id: EntryId,
    /// The append's result when the queue made it (the stream's state after it); `None` when
    /// the queue keeps no history and the caller appends itself.
    pub kept: Option<Result<StreamState, QueueError>>,
}

impl Pushed {
    /// A push whose append was made (`kept`: its result) or left to the caller (`None`).
    pub fn new(id: EntryId, kept: Option<Result<StreamState, QueueError>>) -> Self {
        Self { id, kept }
    }
}

/// What a push does when it would exceed a bound. With the `serde` feature: `"refuse"` or
/// `"drop_oldest"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Fail the push with [`QueueError::Full`]; nothing queued is lost. The default.
    #[default]
    Refuse,
    /// Drop the recipient's oldest entries until the new one fits. Never touches other
    /// recipients, so a push that exceeds the overall bound is still refused when the
    /// recipient has nothing (left) to drop.
    DropOldest,
}

/// Bounds of a queue. Bytes are payload bytes (per-entry bookkeeping is not counted).
///
/// | field | default |
/// |---|---|
/// | `max_entries_per_recipient` | 10 000 |
/// | `max_bytes_per_recipient` | 16 MiB |
/// | `max_total_bytes` | 1 GiB |
/// | `max_payload_bytes` | 1 MiB |
/// | `overflow` | [`OverflowPolicy::Refuse`] |
///
/// With the `serde` feature it reads from (and writes to) a table of these fields; a missing
/// field keeps its default and an unknown one is an error:
///
/// ```toml
/// max_total_bytes = 268435456
/// overflow = "drop_oldest"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Most entries queued for one recipient. Default 10 000.
    pub max_entries_per_recipient: u64,
    /// Most payload bytes queued for one recipient. Default 16 MiB.
    pub max_bytes_per_recipient: u64,
    /// Most payload bytes queued overall. Default 1 GiB.
    pub max_total_bytes: u64,
    /// Largest payload accepted; larger ones fail with [`QueueError::TooLarge`] whatever the
    /// overflow policy. Default 1 MiB.
    pub max_payload_bytes: u64,
    /// What a push that would exceed a bound does. Default [`OverflowPolicy::Refuse`].
    pub overflow: OverflowPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_entries_per_recipient: 10_000,
            max_bytes_per_recipient: 16 << 20,
            max_total_bytes: 1 << 30,
            max_payload_bytes: 1 << 20,
            overflow: OverflowPolicy::Refuse,
        }
    }
}

impl QueueConfig {
    /// Sets [`max_entries_per_recipient`](Self::max_entries_per_recipient).
    pub fn with_max_entries_per_recipient(mut self, max_entries_per_recipient: u64) -> Self {
        self.max_entries_per_recipient = max_entries_per_recipient;
        self
    }

    /// Sets [`max_bytes_per_recipient`](Self::max_bytes_per_recipient).
    pub fn with_max_bytes_per_recipient(mut self, max_bytes_per_recipient: u64) -> Self {
        self.max_bytes_per_recipient = max_bytes_per_recipient;
        self
    }

    /// Sets [`max_total_bytes`](Self::max_total_bytes).
    pub fn with_max_total_bytes(mut self, max_total_bytes: u64) -> Self {
        self.max_total_bytes = max_total_bytes;
        self
    }

    /// Sets [`max_payload_bytes`](Self::max_payload_bytes).
    pub fn with_max_payload_bytes(mut self, max_payload_bytes: u64) -> Self {
        self.max_payload_bytes = max_payload_bytes;
        self
    }

    /// Sets [`overflow`](Self::overflow).
    pub fn with_overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// The checks every push starts with, shared by the backends: a valid recipient and a
    /// payload that could ever fit (`TooLarge` otherwise, whatever the policy).
    pub fn check_push(&self, recipient: &str, payload_len: usize) -> Result<(), QueueError> {
        check_recipient(recipient)?;
        let size = payload_len as u64;
        let max = self
            .max_payload_bytes
            .min(self.max_bytes_per_recipient)
            .min(self.max_total_bytes);
        if size > max {
            return Err(QueueError::TooLarge { size, max });
        }
        if self.max_entries_per_recipient == 0 {
            return Err(QueueError::Full {
                recipient: recipient.to_owned(),
                limit: Limit::EntriesPerRecipient,
            });
        }
        Ok(())
    }
}

/// How much a recipient and the whole queue hold, for [`QueueConfig::plan_push`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries queued for the recipient (expired ones already removed).
    pub entries: u64,
    /// Payload bytes queued for the recipient.
    pub bytes: u64,
    /// Payload bytes queued overall.
    pub total_bytes: u64,
}

impl QueueConfig {
    /// Decides a push of `size` bytes given the current `usage`, so that backends apply the
    /// bounds identically: `Ok(n)` = drop the recipient's `n` oldest entries, then store;
    /// `Err(Full)` = store nothing and drop nothing. `oldest` yields the sizes of the
    /// recipient's entries, oldest first (consumed only under [`OverflowPolicy::DropOldest`]).
    pub fn plan_push(
        &self,
        recipient: &str,
        size: u64,
        usage: Usage,
        mut oldest: impl Iterator<Item = u64>,
    ) -> Result<u64, QueueError> {
        let Usage {
            mut entries,
            mut bytes,
            mut total_bytes,
        } = usage;
        let mut dropped = 0;
        loop {
            let limit = if entries.saturating_add(1) > self.max_entries_per_recipient {
                Limit::EntriesPerRecipient
            } else if bytes.saturating_add(size) > self.max_bytes_per_recipient {
                Limit::BytesPerRecipient
            } else if total_bytes.saturating_add(size) > self.max_total_bytes {
                Limit::TotalBytes
            } else {
                return Ok(dropped);
            };
            let full = || QueueError::Full {
                recipient: recipient.to_owned(),
                limit,
            };
            if self.overflow != OverflowPolicy::DropOldest {
                return Err(full());
            }
            let Some(s) = oldest.next() else {
                return Err(full());
            };
            entries = entries.saturating_sub(1);
            bytes = bytes.saturating_sub(s);
            total_bytes = total_bytes.saturating_sub(s);
            dropped += 1;
        }
    }
}

/// Checks a recipient id: non-empty, at most [`MAX_RECIPIENT_LEN`] bytes.
pub fn check_recipient(recipient: &str) -> Result<(), QueueError> {
    if recipient.is_empty() {
        return Err(QueueError::InvalidRecipient {
            reason: "empty recipient id",
        });
    }
    if recipient.len() > MAX_RECIPIENT_LEN {
        return Err(QueueError::InvalidRecipient {
            reason: "recipient id longer than MAX_RECIPIENT_LEN bytes",
        });
    }
    Ok(())
}

/// When an entry pushed at `now_ms` with `ttl` expires (saturating: a huge ttl never expires
/// in practice, it does not overflow).
pub fn expiry(now_ms: u64, ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| now_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)))
}

/// Which bound a push would have exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`QueueConfig::max_entries_per_recipient`].
    EntriesPerRecipient,
    /// [`QueueConfig::max_bytes_per_recipient`].
    BytesPerRecipient,
    /// [`QueueConfig::max_total_bytes`] (or [`HistoryConfig::max_total_bytes`]).
    TotalBytes,
    /// [`HistoryConfig::max_streams`].
    Streams,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::EntriesPerRecipient => "entries per recipient",
            Limit::BytesPerRecipient => "bytes per recipient",
            Limit::TotalBytes => "total bytes",
            Limit::Streams => "streams",
        })
    }
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The push would exceed a bound and the policy is [`OverflowPolicy::Refuse`] (or
    /// [`OverflowPolicy::DropOldest`] had nothing of this recipient left to drop). Nothing was
    /// queued. The caller should tell the sender the message was not stored (or retry after the
    /// recipient acknowledges or entries expire).
    #[error("queue of `{recipient}` is full ({limit} bound reached)")]
    Full {
        /// The recipient whose push was refused.
        recipient: String,
        /// The bound that was reached.
        limit: Limit,
    },
    /// The payload is larger than [`QueueConfig::max_payload_bytes`] (or than a byte bound, so
    /// it could never fit). Do not retry; refuse the message.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The largest payload the queue would accept.
        max: u64,
    },
    /// The recipient id is empty or longer than [`MAX_RECIPIENT_LEN`]. A caller bug or bad
    /// input: do not retry.
    #[error("invalid recipient: {reason}")]
    InvalidRecipient {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The storage failed (I/O error, Redis unreachable, corrupt store). The operation may or
    /// may not have taken effect for `ack`/`remove`/`sweep`, but a `push` that fails was not
    /// acknowledged; the caller may retry (pushing again may then store a duplicate, which
    /// at-least-once delivery allows).
    #[error("queue backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl QueueError {
    /// Wraps a backend error.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        QueueError::Backend(e.into())
    }
}

/// Where a queue gets the time from: unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            now: AtomicU64::new(now_ms),
        }
    }
    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
    /// Sets the clock to `now_ms`.
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Every method forwarded, those with a default implementation too: a default left here would
/// silently replace the queue's own (`tests::an_arc_forwards_every_method`).
impl<Q: Queue + ?Sized> Queue for Arc<Q> {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        (**self).push(recipient, payload, ttl)
    }
    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        (**self).read(recipient, after, max)
    }
    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        (**self).ack(recipient, up_to)
    }
    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        (**self).len(recipient)
    }
    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        (**self).remove(recipient)
    }
    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        (**self).sweep()
    }
    fn ack_many<'a>(
        &'a self,
        acks: &'a [(&'a str, EntryId)],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        (**self).ack_many(acks)
    }
    fn push_many<'a>(
        &'a self,
        recipient: &'a str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
        (**self).push_many(recipient, items)
    }
    fn push_keeping<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
        keep: Keep<'a>,
    ) -> BoxFuture<'a, Result<Pushed, QueueError>> {
        (**self).push_keeping(recipient, payload, ttl, keep)
    }
    fn keeps_history(&self) -> bool {
        (**self).keeps_history()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue that answers its defaulted methods itself, saying so.
    struct Own;

    const OWN: u64 = 4242;

    impl Queue for Own {
        fn push<'a>(
            &'a self,
            _: &'a str,
            _: Bytes,
            _: Option<Duration>,
        ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
            Box::pin(async { Ok(1) })
        }
        fn read<'a>(
            &'a self,
            _: &'a str,
            _: EntryId,
            _: usize,
        ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn ack<'a>(&'a self, _: &'a str, _: EntryId) -> BoxFuture<'a, Result<u64, QueueError>> {
            Box::pin(async { Ok(0) })
        }
        fn len<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
            Box::pin(async { Ok(0) })
        }
        fn remove<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
            Box::pin(async { Ok(0) })
        }
        fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
            Box::pin(async { Ok(0) })
        }
        fn ack_many<'a>(
            &'a self,
            _: &'a [(&'a str, EntryId)],
        ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
            Box::pin(async { Ok(vec![OWN]) })
        }
        fn push_many<'a>(
            &'a self,
            _: &'a str,
            _: Vec<(Bytes, Option<Duration>)>,
        ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
            Box::pin(async { vec![Ok(OWN)] })
        }
        fn push_keeping<'a>(
            &'a self,
            _: &'a str,
            _: Bytes,
            _: Option<Duration>,
            _: Keep<'a>,
        ) -> BoxFuture<'a, Result<Pushed, QueueError>> {
            Box::pin(async { Ok(Pushed::new(OWN, None)) })
        }
        fn keeps_history(&self) -> bool {
            true
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_arc_forwards_every_method() {
        // Through `Arc`'s impl (what a caller with the trait in scope gets), not `dyn`'s.
        let q: Arc<dyn Queue> = Arc::new(Own);
        let many = <Arc<dyn Queue> as Queue>::push_many(&q, "a", vec![("x".into(), None)]).await;
        assert_eq!(many[0].as_ref().ok(), Some(&OWN), "push_many forwarded");
        let acks = [("a", 1)];
        let r = <Arc<dyn Queue> as Queue>::ack_many(&q, &acks).await;
        assert_eq!(r.unwrap(), [OWN], "ack_many forwarded");
        let keep = Keep {
            stream: "s",
            payload: Bytes::new(),
            retention: Retention::new(1, None),
            new_epoch: 1,
        };
        let r = <Arc<dyn Queue> as Queue>::push_keeping(&q, "a", Bytes::new(), None, keep).await;
        assert_eq!(r.unwrap().id, OWN, "push_keeping forwarded");
        assert!(
            <Arc<dyn Queue> as Queue>::keeps_history(&q),
            "keeps_history forwarded"
        );
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn config_round_trips_and_refuses_unknown_keys() {
        let d = QueueConfig::default();
        let text = toml::to_string(&d).unwrap();
        assert_eq!(toml::from_str::<QueueConfig>(&text).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<QueueConfig>(&json).unwrap(), d);
        assert!(text.contains("overflow = \"refuse\""), "{text}");

        let c: QueueConfig =
            toml::from_str("max_total_bytes = 5\noverflow = \"drop_oldest\"\n").unwrap();
        assert_eq!(
            c,
            d.clone()
                .with_max_total_bytes(5)
                .with_overflow(OverflowPolicy::DropOldest)
        );
        let e = toml::from_str::<QueueConfig>("max_totl_bytes = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_totl_bytes"), "{e}");
        let e = toml::from_str::<QueueConfig>("overflow = \"panic\"\n").unwrap_err();
        assert!(e.to_string().contains("panic"), "{e}");
    }
}
