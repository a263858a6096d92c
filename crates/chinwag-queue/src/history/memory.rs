//! The in-memory history backend.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{
    Direction, History, HistoryConfig, Offset, Page, Publication, Retention, StreamState,
    check_stream,
};
use crate::{BoxFuture, Clock, QueueError, SystemClock};

/// A [`History`] in process memory: for tests, single-process servers and rooms whose
/// history may be lost on restart (a restart starts every stream again under a new epoch,
/// which clients detect). Everything is lost when the process exits.
///
/// Each stream is a queue of its held publications with its epoch, last offset, retention and
/// bytes; the store counts streams and bytes for the bounds. Aged publications are trimmed
/// lazily (by reads, appends and state of their stream) and by [`History::sweep`]. Operations
/// take one short lock and never block on I/O.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use chinwag::queue::{Direction, History, HistoryConfig, ManualClock, MemoryHistory, Retention};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), chinwag::queue::QueueError> {
/// let clock = Arc::new(ManualClock::new(0));
/// let history = MemoryHistory::with_clock(HistoryConfig::default(), clock.clone());
/// let keep = Retention::new(100, Some(Duration::from_secs(3600)));
///
/// // The first append starts the stream under the epoch given; offsets start at 1.
/// let state = history.append("lobby", &["hi".into(), "hello".into()], keep, 42).await?;
/// assert_eq!((state.epoch, state.first, state.last), (42, 1, 2));
///
/// // A client that saw offset 1 of epoch 42 catches up with what it missed.
/// let page = history.read("lobby", 1, Direction::Forward, 10).await?.expect("stream");
/// assert!(page.state.holds_after(42, 1));
/// assert_eq!(page.publications[0].payload, "hello");
///
/// // An hour later both have aged out; the stream keeps its epoch and last offset.
/// clock.advance(Duration::from_secs(3600));
/// let page = history.read("lobby", 0, Direction::Forward, 10).await?.expect("stream");
/// assert!(page.publications.is_empty());
/// assert_eq!((page.state.first, page.state.last), (3, 2));
///
/// // A sweep forgets it: the next append starts a new epoch.
/// history.sweep().await?;
/// let state = history.append("lobby", &["again".into()], keep, 43).await?;
/// assert_eq!((state.epoch, state.first, state.last), (43, 1, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryHistory {
    config: HistoryConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    total_bytes: u64,
    streams: HashMap<String, Stream>,
}

#[derive(Debug)]
struct Stream {
    epoch: u64,
    last: Offset,
    retention: Retention,
    /// The latest `at_ms` stamped (never decreases).
    last_at: u64,
    bytes: u64,
    /// The held publications, oldest first, offsets `last - len + 1 ..= last`.
    held: VecDeque<Publication>,
}

impl Stream {
    fn state(&self) -> StreamState {
        StreamState::new(
            self.epoch,
            self.last + 1 - self.held.len() as u64,
            self.last,
        )
    }

    /// Trims by `retention` for an append of `batch` publications stamped `at` (0: the age
    /// bound only); returns (publications dropped, bytes freed, batch payloads to skip).
    fn plan(&self, retention: &Retention, now: u64, batch: u64, at: u64) -> super::Trim {
        let held = self.held.iter().map(|p| (p.at_ms, p.payload.len() as u64));
        retention.plan_trim(now, self.held.len() as u64, held, batch, at)
    }

    /// Drops the `n` oldest publications; returns their bytes.
    fn drop_oldest(&mut self, n: u64) -> u64 {
        let mut freed = 0;
        for _ in 0..n {
            match self.held.pop_front() {
                Some(p) => freed += p.payload.len() as u64,
                None => break,
            }
        }
        self.bytes = self.bytes.saturating_sub(freed);
        freed
    }

    /// Trims the aged publications (by the stream's own retention); returns how many.
    fn trim_aged(&mut self, now: u64) -> (u64, u64) {
        let trim = self.plan(&self.retention, now, 0, now);
        (trim.held, self.drop_oldest(trim.held))
    }
}

impl Inner {
    /// The stream with its aged publications trimmed.
    fn trimmed(&mut self, stream: &str, now: u64) -> Option<&Stream> {
        let s = self.streams.get_mut(stream)?;
        let (_, freed) = s.trim_aged(now);
        self.total_bytes = self.total_bytes.saturating_sub(freed);
        Some(s)
    }
}

impl MemoryHistory {
    /// An empty store with `config`, on the system clock.
    pub fn new(config: HistoryConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// An empty store with `config`, on `clock`.
    pub fn with_clock(config: HistoryConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Payload bytes held overall (aged publications not yet trimmed included).
    pub fn total_bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    /// Streams held.
    pub fn streams(&self) -> u64 {
        self.lock().streams.len() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code path panics while holding the lock; never turn a poison into a second panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(
        &self,
        stream: &str,
        payloads: &[Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> Result<StreamState, QueueError> {
        let batch_bytes = self.config.check_append(stream, payloads)?;
        let now = self.clock.now_ms();
        let batch = payloads.len() as u64;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let existing = inner.streams.get(stream);
        let at = existing.map_or(now, |s| s.last_at.max(now));
        let trim = existing.map_or_else(
            || retention.plan_trim(now, 0, std::iter::empty(), batch, at),
            |s| s.plan(&retention, now, batch, at),
        );
        let skipped: u64 = payloads
            .iter()
            .take(usize::try_from(trim.batch).unwrap_or(usize::MAX))
            .map(|p| p.len() as u64)
            .sum();
        let total_after = (inner.total_bytes - trim.freed).saturating_add(batch_bytes - skipped);
        self.config.admit(
            stream,
            existing.is_none(),
            inner.streams.len() as u64,
            total_after,
        )?;
        let s = inner
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| Stream {
                epoch: new_epoch,
                last: 0,
                retention,
                last_at: at,
                bytes: 0,
                held: VecDeque::new(),
            });
        s.drop_oldest(trim.held);
        for (i, p) in payloads.iter().enumerate() {
            let offset = s.last + 1 + i as u64;
            if (i as u64) >= trim.batch {
                s.held.push_back(Publication::new(offset, p.clone(), at));
                s.bytes += p.len() as u64;
            }
        }
        s.last += batch;
        s.retention = retention;
        s.last_at = at;
        inner.total_bytes = total_after;
        Ok(s.state())
    }

    fn read_now(
        &self,
        stream: &str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> Result<Option<Page>, QueueError> {
        check_stream(stream)?;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(s) = inner.trimmed(stream, now) else {
            return Ok(None);
        };
        let state = s.state();
        let publications = match direction {
            Direction::Forward => {
                let skip = from.saturating_add(1).saturating_sub(state.first);
                s.held
                    .iter()
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                    .take(limit)
                    .cloned()
                    .collect()
            }
            Direction::Backward => {
                // Offsets below `from`: the first `from - first` held, newest first.
                let below = from.saturating_sub(state.first).min(s.held.len() as u64);
                s.held
                    .iter()
                    .take(usize::try_from(below).unwrap_or(usize::MAX))
                    .rev()
                    .take(limit)
                    .cloned()
                    .collect()
            }
        };
        Ok(Some(Page::new(state, publications)))
    }
}

impl History for MemoryHistory {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payloads: &'a [Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> BoxFuture<'a, Result<StreamState, QueueError>> {
        let r = self.append_now(stream, payloads, retention, new_epoch);
        Box::pin(async move { r })
    }

    fn state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamState>, QueueError>> {
        let r = check_stream(stream).map(|()| {
            let now = self.clock.now_ms();
            self.lock().trimmed(stream, now).map(Stream::state)
        });
        Box::pin(async move { r })
    }

    fn read<'a>(
        &'a self,
        stream: &'a str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, QueueError>> {
        let r = self.read_now(stream, from, direction, limit);
        Box::pin(async move { r })
    }

    fn remove<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        let r = check_stream(stream).map(|()| {
            let mut inner = self.lock();
            let removed = inner.streams.remove(stream);
            if let Some(s) = &removed {
                inner.total_bytes = inner.total_bytes.saturating_sub(s.bytes);
            }
            removed.is_some()
        });
        Box::pin(async move { r })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let (mut removed, mut freed) = (0, 0);
        inner.streams.retain(|_, s| {
            let (n, b) = s.trim_aged(now);
            removed += n;
            freed += b;
            // Empty only when everything aged out (max_len is at least 1).
            !s.held.is_empty()
        });
        inner.total_bytes = inner.total_bytes.saturating_sub(freed);
        drop(inner);
        Box::pin(async move { Ok(removed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::time::Duration;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = HistoryConfig::default();
        assert_eq!(
            c.max_payload_bytes,
            1 << 20,
            "README and HistoryConfig docs"
        );
        assert_eq!(c.max_streams, 100_000, "README and HistoryConfig docs");
        assert_eq!(
            c.max_total_bytes,
            256 << 20,
            "README and HistoryConfig docs"
        );
    }

    #[tokio::test]
    async fn bytes_are_counted_and_freed() {
        let clock = Arc::new(ManualClock::new(1_000));
        let h = MemoryHistory::with_clock(HistoryConfig::default(), clock.clone());
        let keep = Retention::new(2, Some(Duration::from_secs(1)));
        let p = |s: &'static str| Bytes::from_static(s.as_bytes());
        h.append("a", &[p("123"), p("45")], keep, 1)
            .await
            .expect("append");
        assert_eq!(
            (h.total_bytes(), h.streams()),
            (5, 1),
            "append counts its bytes"
        );
        h.append("a", &[p("6789")], keep, 1).await.expect("append");
        assert_eq!(
            h.total_bytes(),
            6,
            "the count trim frees the oldest's bytes"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(h.sweep().await.expect("sweep"), 2, "sweep trims both aged");
        assert_eq!(
            (h.total_bytes(), h.streams()),
            (0, 0),
            "and forgets the stream"
        );
        h.append("b", &[p("xy")], keep, 1).await.expect("append");
        assert!(h.remove("b").await.expect("remove"));
        assert_eq!(
            (h.total_bytes(), h.streams()),
            (0, 0),
            "remove frees everything"
        );
    }
}
