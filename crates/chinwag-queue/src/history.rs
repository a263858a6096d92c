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
//!   calls it periodically.
//! - Bounds ([`HistoryConfig`]): payload size, number of streams, bytes overall (payload
//!   bytes). An append that would exceed one is refused ([`QueueError::TooLarge`],
//!   [`QueueError::Full`]) and nothing of it is stored; a backend never drops another stream's
//!   publications to make room.
//!
//! The **epoch** tells a client whether its `(epoch, offset)` still means anything: the hub
//! passes a fresh one (unix microseconds, increasing in the process, below 2^53 so JavaScript
//! reads it exactly) whenever a stream may start, so a memory backend's restart, a room removed
//! and made again, or a stream swept away all give a new epoch.

use std::time::Duration;

use bytes::Bytes;

use crate::{BoxFuture, QueueError};

/// A publication's place in its stream's epoch: 1, 2, 3, ... (`0`: before the first).
pub type Offset = u64;

/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_LEN: usize = 1024;

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
