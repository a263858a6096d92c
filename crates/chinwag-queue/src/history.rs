//! Room history: a bounded stream of publications per room (issue 17), the [`History`] trait
//! every backend implements (memory here, redb in `chinwag-queue-redb`, Redis in
//! `chinwag-queue-redis`) with one conformance suite (`history_conformance`, behind the
//! `test-suite` feature).
//!
//! # Semantics (identical in every backend)
//!
//! - A **stream** (one per room; its name is the room's, a non-empty string of at most
//!   [`MAX_STREAM_LEN`] bytes) holds publications, each with an **offset**: 1 for the first
//!   publication of the stream's **epoch**, then consecutive (no gaps, no reuse within an epoch).
//! - [`History::append`] appends a batch of payloads **atomically** (all or nothing): they get
//!   consecutive offsets after the stream's last, in the order given, and the stream is trimmed to
//!   the [`Retention`] given in the same step. The first append of a stream (or the first after
//!   [`History::remove`], or after the stream was swept away) starts the stream under the epoch
//!   the caller passes (`new_epoch`); an append to an existing stream ignores `new_epoch`.
//!   Several appenders, in one process or (Redis) in several processes sharing the store, see
//!   **one order**: no two publications get the same offset, and offsets are visible to readers
//!   in order (a reader that saw offset `n` never later finds `n - 1` appear).
//! - The append returns the stream's [`StreamState`] after it: the epoch, the last offset (that
//!   of the batch's last payload), and the first offset still held.
//! - **Retention** is per stream, given on every append (the room's settings): at most
//!   `max_len` publications, none older than `max_age`. The backend remembers the last retention
//!   given, so that reads and [`History::sweep`] apply the age bound between appends. A
//!   publication older than `max_age` (by the injected [`Clock`]) is never returned and counts
//!   as trimmed: `first` moves past it.
//! - [`History::read`] does not change the stream: it returns up to `limit` publications
//!   strictly after (forward, oldest first) or strictly before (backward, newest first) an
//!   offset, together with the state, so a caller can tell whether what it asked for is still
//!   all there (`from + 1 >= first` for a forward read). A stream whose publications all aged
//!   out keeps its epoch and last offset (`first = last + 1`) until swept.
//! - [`History::remove`] forgets a stream (a room removed); the next append starts a new epoch.
//! - [`History::sweep`] trims aged publications of every stream and forgets streams whose
//!   publications all aged out and whose last append is older than their `max_age`; a server
//!   calls it periodically. It returns how many publications it removed (ones a read or an
//!   append already trimmed are not counted again).
//! - **Age**: a publication appended at `t` (its `at_ms`) is aged once the clock reaches
//!   `t + max_age` (the queue's time-to-live rule: a zero `max_age` ages it at once). `at_ms`
//!   never decreases along a stream (a clock stepped back stamps the stream's last `at_ms`), so
//!   aged publications are always the oldest and trimming only moves `first`.
//! - Bounds ([`HistoryConfig`]): payload size, number of streams, bytes overall (payload
//!   bytes). An append that would exceed one is refused ([`QueueError::TooLarge`],
//!   [`QueueError::Full`]) and nothing of it is stored (the stream, its retention and its
//!   state are unchanged); a backend never drops another stream's publications to make room.
//!   The bounds apply to the store as it would be **after** the append: its own stream
//!   trimmed to the new retention (so a stream at its `max_len` keeps appending at the byte
//!   bound when the trimmed publications free enough). A stream counts towards
//!   `max_streams`, and an aged publication of another stream towards `max_total_bytes`,
//!   until it is removed or swept. A payload larger than the byte bound is `TooLarge` (it could
//!   never fit).
//!
//! The **epoch** tells a client whether its `(epoch, offset)` still means anything: the hub
//! passes a fresh one (unix microseconds, increasing in the process, below 2^53 so JavaScript
//! reads it exactly) whenever a stream may start, so a memory backend's restart, a room removed
//! and made again, or a stream swept away all give a new epoch.

use std::time::Duration;

use bytes::Bytes;

use crate::{BoxFuture, Limit, QueueError, expiry};

mod memory;

pub use memory::MemoryHistory;

/// A publication's place in its stream's epoch: 1, 2, 3, ... (`0`: before the first).
pub type Offset = u64;

/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_LEN: usize = 4096;

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StreamState {
    /// The stream's epoch (the `new_epoch` of the append that started it).
    pub epoch: u64,
    /// The smallest offset a read could return now (`last + 1` when nothing is held).
    pub first: Offset,
    /// The offset of the last publication appended (it may since have been trimmed).
    pub last: Offset,
}

impl StreamState {
    /// A state.
    pub fn new(epoch: u64, first: Offset, last: Offset) -> Self {
        StreamState { epoch, first, last }
    }

    /// Whether everything after `offset` under `epoch` is still held: a client that saw up to
    /// `offset` can get exactly what it missed.
    pub fn holds_after(&self, epoch: u64, offset: Offset) -> bool {
        epoch == self.epoch && offset <= self.last && offset.saturating_add(1) >= self.first
    }
}

/// One publication kept in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Publication {
    /// Its offset.
    pub offset: Offset,
    /// The payload, as appended.
    pub payload: Bytes,
    /// When it was appended (unix milliseconds, by the backend's [`Clock`](crate::Clock)).
    pub at_ms: u64,
}

impl Publication {
    /// A publication.
    pub fn new(offset: Offset, payload: Bytes, at_ms: u64) -> Self {
        Publication {
            offset,
            payload,
            at_ms,
        }
    }
}

/// How much of a stream is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Retention {
    /// At most this many publications (at least 1).
    pub max_len: u64,
    /// None older than this (`None`: no age bound).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Keeps the last `max_len` publications, none older than `max_age`.
    pub fn new(max_len: u64, max_age: Option<Duration>) -> Self {
        Retention {
            max_len: max_len.max(1),
            max_age,
        }
    }

    /// Whether a publication appended at `at_ms` is aged at `now_ms`: the clock reached
    /// `at_ms + max_age` (saturating; never without a `max_age`).
    pub fn is_aged(&self, at_ms: u64, now_ms: u64) -> bool {
        expiry(at_ms, self.max_age).is_some_and(|at| at <= now_ms)
    }

    /// Plans trimming a stream to this retention at `now_ms` when `batch` publications are
    /// appended to it (0: only the age bound, as reads and sweeps apply it), so that every
    /// backend trims identically. `held` yields the `(at_ms, size)` of the stream's held
    /// publications, oldest first (`held_len` of them); it is consumed only as far as the plan
    /// needs. The batch's publications are stamped `batch_at_ms`.
    pub fn plan_trim(
        &self,
        now_ms: u64,
        held_len: u64,
        held: impl Iterator<Item = (u64, u64)>,
        batch: u64,
        batch_at_ms: u64,
    ) -> Trim {
        let excess = held_len.saturating_add(batch).saturating_sub(self.max_len);
        if batch > 0 && self.is_aged(batch_at_ms, now_ms) {
            // Everything is at least as old as the batch: nothing is kept.
            return Trim {
                held: held_len,
                freed: held
                    .take(usize::try_from(held_len).unwrap_or(usize::MAX))
                    .map(|(_, s)| s)
                    .sum(),
                batch,
            };
        }
        let by_count = excess.min(held_len);
        let mut trim = Trim {
            held: 0,
            freed: 0,
            batch: excess - by_count,
        };
        for (at, size) in held.take(usize::try_from(held_len).unwrap_or(usize::MAX)) {
            if trim.held >= by_count && !self.is_aged(at, now_ms) {
                break;
            }
            trim.held += 1;
            trim.freed += size;
        }
        trim
    }
}

/// What [`Retention::plan_trim`] decided: drop the stream's `held` oldest publications
/// (`freed` payload bytes) and store the batch without its `batch` first payloads (they get
/// their offsets and are trimmed at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Trim {
    /// Held publications to drop, oldest first.
    pub held: u64,
    /// Their payload bytes.
    pub freed: u64,
    /// Payloads at the front of the batch not to store.
    pub batch: u64,
}

/// Which way a read goes from its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Offsets strictly greater than the one given, oldest first.
    Forward,
    /// Offsets strictly smaller than the one given, newest first (`u64::MAX`: from the newest).
    Backward,
}

/// What a read returns: the stream's state and the publications found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The stream's state when it was read.
    pub state: StreamState,
    /// Up to `limit` publications, in the order of the read's direction, offsets consecutive.
    pub publications: Vec<Publication>,
}

impl Page {
    /// A page.
    pub fn new(state: StreamState, publications: Vec<Publication>) -> Self {
        Page {
            state,
            publications,
        }
    }
}

/// Bounds of a history store, the same for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Largest payload. Default 1 MiB.
    pub max_payload_bytes: u64,
    /// Streams held at once. Default 100 000.
    pub max_streams: u64,
    /// Payload bytes held overall. Default 256 MiB.
    pub max_total_bytes: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_payload_bytes: 1 << 20,
            max_streams: 100_000,
            max_total_bytes: 256 << 20,
        }
    }
}

impl HistoryConfig {
    /// Sets [`max_payload_bytes`](Self::max_payload_bytes).
    pub fn with_max_payload_bytes(mut self, max: u64) -> Self {
        self.max_payload_bytes = max;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    pub fn with_max_streams(mut self, max: u64) -> Self {
        self.max_streams = max;
        self
    }

    /// Sets [`max_total_bytes`](Self::max_total_bytes).
    pub fn with_max_total_bytes(mut self, max: u64) -> Self {
        self.max_total_bytes = max;
        self
    }

    /// The checks every append starts with, shared by the backends: a valid stream name, a
    /// non-empty batch, and payloads that could ever fit (`TooLarge` otherwise). Returns the
    /// batch's payload bytes.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidRecipient`], [`QueueError::TooLarge`].
    pub fn check_append(&self, stream: &str, payloads: &[Bytes]) -> Result<u64, QueueError> {
        check_stream(stream)?;
        if payloads.is_empty() {
            return Err(QueueError::InvalidRecipient {
                reason: "empty batch",
            });
        }
        let max = self.max_payload_bytes.min(self.max_total_bytes);
        let mut bytes = 0u64;
        for p in payloads {
            let size = p.len() as u64;
            if size > max {
                return Err(QueueError::TooLarge { size, max });
            }
            bytes = bytes.saturating_add(size);
        }
        Ok(bytes)
    }

    /// Decides whether an append may be stored, so that backends apply the bounds
    /// identically: `new_stream` whether it starts a stream, `streams` the streams held now,
    /// `total_after` the payload bytes held overall once the append and its trimming are done.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] with [`Limit::Streams`] or [`Limit::TotalBytes`].
    pub fn admit(
        &self,
        stream: &str,
        new_stream: bool,
        streams: u64,
        total_after: u64,
    ) -> Result<(), QueueError> {
        let limit = if new_stream && streams >= self.max_streams {
            Limit::Streams
        } else if total_after > self.max_total_bytes {
            Limit::TotalBytes
        } else {
            return Ok(());
        };
        Err(QueueError::Full {
            recipient: stream.to_owned(),
            limit,
        })
    }
}

/// A store of room histories. Methods return [`BoxFuture`]s so `Arc<dyn History>` works.
pub trait History: Send + Sync {
    /// Appends `payloads` (at least one) to `stream` atomically, with consecutive offsets after
    /// its last, trimming it to `retention` in the same step; starts the stream under
    /// `new_epoch` if it does not exist. Returns the state after.
    ///
    /// # Errors
    ///
    /// [`QueueError::InvalidRecipient`] for a bad stream name or an empty batch,
    /// [`QueueError::TooLarge`] for a payload over the bound, [`QueueError::Full`] when the
    /// store's stream count or bytes would go over, [`QueueError::Backend`]. Nothing of a
    /// refused batch is stored.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payloads: &'a [Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> BoxFuture<'a, Result<StreamState, QueueError>>;

    /// The stream's state (`None`: no such stream).
    fn state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamState>, QueueError>>;

    /// Up to `limit` publications strictly after (or before) `from`, skipping none (the
    /// publications returned are consecutive), and the state (`None`: no such stream).
    fn read<'a>(
        &'a self,
        stream: &'a str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, QueueError>>;

    /// Forgets `stream`; whether it existed.
    fn remove<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, QueueError>>;

    /// Trims aged publications everywhere and forgets streams left empty past their age
    /// bound; returns the publications removed.
    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>>;
}

impl<H: History + ?Sized> History for std::sync::Arc<H> {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payloads: &'a [Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> BoxFuture<'a, Result<StreamState, QueueError>> {
        (**self).append(stream, payloads, retention, new_epoch)
    }
    fn state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamState>, QueueError>> {
        (**self).state(stream)
    }
    fn read<'a>(
        &'a self,
        stream: &'a str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, QueueError>> {
        (**self).read(stream, from, direction, limit)
    }
    fn remove<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        (**self).remove(stream)
    }
    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        (**self).sweep()
    }
}

/// Checks a stream name: non-empty, at most [`MAX_STREAM_LEN`] bytes.
///
/// # Errors
///
/// [`QueueError::InvalidRecipient`] saying what is wrong.
pub fn check_stream(stream: &str) -> Result<(), QueueError> {
    if stream.is_empty() {
        return Err(QueueError::InvalidRecipient {
            reason: "empty stream name",
        });
    }
    if stream.len() > MAX_STREAM_LEN {
        return Err(QueueError::InvalidRecipient {
            reason: "stream name too long",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_after_is_the_recovery_rule() {
        let s = StreamState::new(7, 5, 9);
        assert!(s.holds_after(7, 9), "nothing missed");
        assert!(s.holds_after(7, 4), "missed 5..=9, all held");
        assert!(!s.holds_after(7, 3), "4 was trimmed");
        assert!(!s.holds_after(8, 9), "another epoch");
        assert!(!s.holds_after(7, 10), "ahead of the stream");
        let empty = StreamState::new(7, 10, 9);
        assert!(empty.holds_after(7, 9));
        assert!(!empty.holds_after(7, 8));
    }
}
