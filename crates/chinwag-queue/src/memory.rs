//! The in-memory backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use crate::{
    BoxFuture, Clock, Entry, EntryId, Queue, QueueConfig, QueueError, SystemClock, Usage,
    check_recipient, expiry,
};

/// A [`Queue`] in process memory: for tests and small deployments. Everything is lost when the
/// process exits.
///
/// One counter hands out ids to every recipient, so removing a recipient leaves nothing behind.
/// Operations take a short lock and never block on I/O.
#[derive(Debug)]
pub struct MemoryQueue {
    config: QueueConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    last_id: u64,
    total_bytes: u64,
    queues: HashMap<String, Recipient>,
}

#[derive(Debug, Default)]
struct Recipient {
    entries: BTreeMap<EntryId, (Bytes, Option<u64>)>,
    bytes: u64,
    /// (expires_at, id) of the entries with a ttl, soonest first.
    expiring: BTreeSet<(u64, EntryId)>,
}

impl Recipient {
    /// Removes the expired entries; returns (count, bytes).
    fn purge(&mut self, now: u64) -> (u64, u64) {
        let (mut n, mut b) = (0, 0);
        while let Some(&(at, id)) = self.expiring.first() {
            if at > now {
                break;
            }
            self.expiring.pop_first();
            if let Some((p, _)) = self.entries.remove(&id) {
                n += 1;
                b += p.len() as u64;
            }
        }
        self.bytes = self.bytes.saturating_sub(b);
        (n, b)
    }

    fn remove_entry(&mut self, id: EntryId) -> Option<u64> {
        let (p, exp) = self.entries.remove(&id)?;
        if let Some(at) = exp {
            self.expiring.remove(&(at, id));
        }
        let size = p.len() as u64;
        self.bytes = self.bytes.saturating_sub(size);
        Some(size)
    }
}

impl Inner {
    /// Purges one recipient's expired entries and forgets the recipient if it is empty.
    fn purge_recipient(&mut self, recipient: &str, now: u64) -> u64 {
        let Some(q) = self.queues.get_mut(recipient) else {
            return 0;
        };
        let (n, b) = q.purge(now);
        self.total_bytes = self.total_bytes.saturating_sub(b);
        if q.entries.is_empty() {
            self.queues.remove(recipient);
        }
        n
    }

    fn sweep(&mut self, now: u64) -> u64 {
        let mut removed = 0;
        let mut freed = 0;
        self.queues.retain(|_, q| {
            let (n, b) = q.purge(now);
            removed += n;
            freed += b;
            !q.entries.is_empty()
        });
        self.total_bytes = self.total_bytes.saturating_sub(freed);
        removed
    }
}

impl MemoryQueue {
    /// An empty queue with `config`, on the system clock.
    pub fn new(config: QueueConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// An empty queue with `config`, on `clock`.
    pub fn with_clock(config: QueueConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Payload bytes queued overall (expired entries not yet freed included).
    pub fn total_bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code path panics while holding the lock, but if one ever did the data is still
        // consistent enough to serve: never propagate the poison as a second panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push_now(
        &self,
        recipient: &str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> Result<EntryId, QueueError> {
        self.config.check_push(recipient, payload.len())?;
        let size = payload.len() as u64;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.purge_recipient(recipient, now);
        if inner.total_bytes.saturating_add(size) > self.config.max_total_bytes {
            inner.sweep(now);
        }
        let inner = &mut *inner;
        let usage = Usage {
            entries: inner
                .queues
                .get(recipient)
                .map_or(0, |q| q.entries.len() as u64),
            bytes: inner.queues.get(recipient).map_or(0, |q| q.bytes),
            total_bytes: inner.total_bytes,
        };
        let sizes = inner
            .queues
            .get(recipient)
            .into_iter()
            .flat_map(|q| q.entries.values().map(|(p, _)| p.len() as u64));
        let drop = self.config.plan_push(recipient, size, usage, sizes)?;
        let q = inner.queues.entry(recipient.to_owned()).or_default();
        for _ in 0..drop {
            let Some((&id, _)) = q.entries.first_key_value() else {
                break;
            };
            if let Some(b) = q.remove_entry(id) {
                inner.total_bytes = inner.total_bytes.saturating_sub(b);
            }
        }
        inner.last_id += 1;
        let id = inner.last_id;
        let exp = expiry(now, ttl);
        if let Some(at) = exp {
            q.expiring.insert((at, id));
        }
        q.entries.insert(id, (payload, exp));
        q.bytes += size;
        inner.total_bytes += size;
        Ok(id)
    }

    fn read_now(
        &self,
        recipient: &str,
        after: EntryId,
        max: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        check_recipient(recipient)?;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.purge_recipient(recipient, now);
        let Some(q) = inner.queues.get(recipient) else {
            return Ok(Vec::new());
        };
        Ok(q.entries
            .range(after.saturating_add(1)..)
            .take(max)
            .map(|(&id, (p, exp))| Entry::new(id, p.clone(), *exp))
            .collect())
    }

    fn ack_now(&self, recipient: &str, up_to: EntryId) -> Result<u64, QueueError> {
        check_recipient(recipient)?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(q) = inner.queues.get_mut(recipient) else {
            return Ok(0);
        };
        let mut n = 0;
        while let Some((&id, _)) = q.entries.first_key_value() {
            if id > up_to {
                break;
            }
            if let Some(b) = q.remove_entry(id) {
                inner.total_bytes = inner.total_bytes.saturating_sub(b);
            }
            n += 1;
        }
        if q.entries.is_empty() {
            inner.queues.remove(recipient);
        }
        Ok(n)
    }
}

impl Queue for MemoryQueue {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        let r = self.push_now(recipient, payload, ttl);
        Box::pin(async move { r })
    }

    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        let r = self.read_now(recipient, after, max);
        Box::pin(async move { r })
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        let r = self.ack_now(recipient, up_to);
        Box::pin(async move { r })
    }

    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        let r = check_recipient(recipient).map(|()| {
            let now = self.clock.now_ms();
            let mut inner = self.lock();
            inner.purge_recipient(recipient, now);
            inner
                .queues
                .get(recipient)
                .map_or(0, |q| q.entries.len() as u64)
        });
        Box::pin(async move { r })
    }

    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        let r = check_recipient(recipient).map(|()| {
            let mut inner = self.lock();
            match inner.queues.remove(recipient) {
                Some(q) => {
                    inner.total_bytes = inner.total_bytes.saturating_sub(q.bytes);
                    q.entries.len() as u64
                }
                None => 0,
            }
        });
        Box::pin(async move { r })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        let now = self.clock.now_ms();
        let r = self.lock().sweep(now);
        Box::pin(async move { Ok(r) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Backend};

    struct Memory;

    impl Backend for Memory {
        fn open(
            &self,
            _store: u32,
            config: QueueConfig,
            clock: Arc<dyn Clock>,
        ) -> BoxFuture<'_, Result<Arc<dyn Queue>, QueueError>> {
            Box::pin(async move {
                Ok(Arc::new(MemoryQueue::with_clock(config, clock)) as Arc<dyn Queue>)
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        conformance::run_all(&Memory).await;
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = QueueConfig::default();
        assert_eq!(
            c.max_entries_per_recipient, 10_000,
            "docs/queues.md limits table"
        );
        assert_eq!(
            c.max_bytes_per_recipient,
            16 << 20,
            "docs/queues.md limits table"
        );
        assert_eq!(c.max_total_bytes, 1 << 30, "docs/queues.md limits table");
        assert_eq!(c.max_payload_bytes, 1 << 20, "docs/queues.md limits table");
        assert_eq!(
            c.overflow,
            crate::OverflowPolicy::Refuse,
            "docs/queues.md limits table"
        );
    }

    /// The default per-recipient bounds hold at the boundary (the conformance suite checks
    /// the bounds with small values, and the default payload bound).
    #[tokio::test]
    async fn default_recipient_bounds_at_the_boundary() {
        let q = MemoryQueue::new(QueueConfig::default());
        for i in 0..10_000 {
            q.push("a", Bytes::from_static(b"x"), None)
                .await
                .unwrap_or_else(|e| panic!("push {i} of 10 000 refused: {e}"));
        }
        let r = q.push("a", Bytes::from_static(b"x"), None).await;
        assert!(
            matches!(
                r,
                Err(QueueError::Full {
                    limit: crate::Limit::EntriesPerRecipient,
                    ..
                })
            ),
            "push 10 001 must be refused by default, got {r:?}"
        );
        let mib = Bytes::from(vec![0u8; 1 << 20]);
        for i in 0..16 {
            q.push("b", mib.clone(), None)
                .await
                .unwrap_or_else(|e| panic!("MiB {i} of 16 refused: {e}"));
        }
        let r = q.push("b", Bytes::from_static(b"x"), None).await;
        assert!(
            matches!(
                r,
                Err(QueueError::Full {
                    limit: crate::Limit::BytesPerRecipient,
                    ..
                })
            ),
            "a byte beyond 16 MiB must be refused by default, got {r:?}"
        );
    }

    #[tokio::test]
    async fn expired_space_is_freed() {
        let clock = Arc::new(crate::ManualClock::new(1_000));
        let q = MemoryQueue::with_clock(QueueConfig::default(), clock.clone());
        q.push(
            "a",
            Bytes::from_static(b"12345"),
            Some(Duration::from_secs(1)),
        )
        .await
        .expect("push");
        assert_eq!(q.total_bytes(), 5, "push must count its bytes");
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.sweep().await.expect("sweep"), 1, "sweep must remove it");
        assert_eq!(q.total_bytes(), 0, "sweep must free the bytes");
    }
}
