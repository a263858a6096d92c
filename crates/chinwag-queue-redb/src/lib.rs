//! A durable, embedded [`Queue`] for chinwag on [redb](https://docs.rs/redb): one file, no
//! server, the chinwag server's default offline queue.
//!
//! # Durability
//!
//! Every write is a redb transaction committed with [`redb::Durability::Immediate`]: the commit
//! returns only after the data is fsynced. [`Queue::push`] returns an id only after its commit,
//! so **every id a push returned survives a process crash (kill -9) or a power loss**, provided
//! the disk honours fsync. The test suite checks this for real: a child process is SIGKILLed
//! while it pushes as fast as it can, and every id it printed is found after reopening.
//!
//! # Group commit
//!
//! One writer thread owns all write transactions. Concurrent pushes (and acks, removes, sweeps)
//! that arrive while a commit is in progress are applied together in the next transaction and
//! share its single fsync (up to [`MAX_BATCH`] operations). A lone push still costs one fsync;
//! many concurrent producers cost one fsync per batch, which is where the throughput comes
//! from. [`Queue::push_many`] (the hub's way to store a run of sends to one user) is one
//! operation: its pushes share one transaction whatever else is pending, so one busy recipient
//! is not held to one fsync per message. [`RedbQueue::commits`] counts the commits. Reads use
//! read transactions on the process's [`MAX_CONCURRENT_READS`] reader threads (the rest wait
//! their turn on the runtime without a thread, so a reconnect storm's replays do not make
//! hundreds of threads, as reads on tokio's blocking pool did), and never wait for the writer,
//! except to free expired entries they find (lazy expiry).
//!
//! Semantics are those of [`chinwag_queue`]; the crate's tests run its conformance suite.
//!
//! # Room history
//!
//! [`RedbHistory`] is a durable [`chinwag_queue::History`] (room history) in a redb file of its
//! own, with the same durability (every offset an append returned survives kill -9) and the
//! same group-commit writer; the tests run the history conformance suite, with restarts, and
//! a kill -9 test of their own.
//!
//! # Memory
//!
//! redb keeps pages it has read or written in a cache of its own, on the heap. redb's default
//! cache is 1 GiB, which a server filling its queue reaches and keeps for as long as the
//! entries stay queued; this crate opens the file with [`DEFAULT_CACHE_SIZE`] (16 MiB)
//! instead, set by [`RedbOptions::cache_size`]. The rest of the file is read through the
//! operating system's page cache, which the kernel takes back under memory pressure.
//! `tests/cache_memory.rs` fills a queue with eight times the cache, reads it back and acks
//! it, and checks the process grows by less than the cache plus a fixed slack.
//!
//! # Example
//!
//! ```
//! use chinwag::queue::{Queue, QueueConfig};
//! use chinwag::queue::redb::RedbQueue;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chinwag::queue::QueueError> {
//! # let dir = std::env::temp_dir().join(format!("chinwag-redb-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir); // a recycled pid's leftovers
//! # std::fs::create_dir_all(&dir).unwrap();
//! let queue = RedbQueue::open(dir.join("offline.redb"), QueueConfig::default())?;
//! let id = queue.push("alice", "hello".into(), None).await?;
//! assert_eq!(queue.read("alice", 0, 10).await?[0].id, id);
//! # drop(queue);
//!
//! // A smaller page cache than the default 16 MiB.
//! use std::sync::Arc;
//! use chinwag::queue::SystemClock;
//! use chinwag::queue::redb::RedbOptions;
//! let options = RedbOptions::default().with_cache_size(16 << 20);
//! let queue = RedbQueue::open_with(
//!     dir.join("small-cache.redb"),
//!     QueueConfig::default(),
//!     options,
//!     Arc::new(SystemClock),
//! )?;
//! assert_eq!(queue.options().cache_size, 16 << 20);
//! # drop(queue);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_queue::{
    BoxFuture, Clock, Entry, EntryId, Queue, QueueConfig, QueueError, SystemClock, Usage,
    check_recipient, expiry,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

mod history;
mod writer;

pub use history::RedbHistory;
use writer::{Batch, Done, Reply, Writer, backend, blocking, open_database};

/// Most operations applied in one write transaction (one fsync).
pub const MAX_BATCH: usize = 256;

/// Reads (of every redb queue and history in the process) that run at once, each on one of as
/// many reader threads (started on the first read); the others wait, without a thread, until
/// one finishes. Reads are short read transactions served mostly from the page cache, so a few
/// threads keep up with many callers.
pub const MAX_CONCURRENT_READS: usize = 4;

/// The default of [`RedbOptions::cache_size`]: 16 MiB (redb's own default is 1 GiB). Chosen by
/// measurement: 64 and 256 MiB pushed no faster (fsync decides) and read no faster (slower for
/// 16 KiB entries), for 4 to 16 times the memory (`docs/queues.md`, "Page cache").
pub const DEFAULT_CACHE_SIZE: usize = 16 << 20;

/// How the redb file is opened: what is not the queue's semantics ([`QueueConfig`] holds those).
///
/// | field | default |
/// |---|---|
/// | `cache_size` | [`DEFAULT_CACHE_SIZE`], 16 MiB |
///
/// ```
/// use chinwag::queue::redb::{DEFAULT_CACHE_SIZE, RedbOptions};
/// assert_eq!(RedbOptions::default().cache_size, DEFAULT_CACHE_SIZE);
/// assert_eq!(RedbOptions::default().with_cache_size(0).cache_size, 0);
/// ```
///
/// With the `serde` feature it reads from a table of these fields (`cache_size = 67108864`);
/// a missing field keeps its default and an unknown one is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RedbOptions {
    /// The most heap memory redb's page cache holds, in bytes: pages read and pages written
    /// but not yet flushed share it (redb's `Builder::set_cache_size`). It is a soft bound
    /// (redb may go over it by a page for a moment) and is not given back when the queue
    /// drains: pages stay cached until others replace them. `0` caches nothing: every read
    /// goes to the file, through the operating system's page cache. Default
    /// [`DEFAULT_CACHE_SIZE`] (16 MiB).
    pub cache_size: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl RedbOptions {
    /// Sets [`cache_size`](Self::cache_size), in bytes.
    pub fn with_cache_size(mut self, cache_size: usize) -> Self {
        self.cache_size = cache_size;
        self
    }
}

/// (recipient, id) -> (expires_at, payload).
/// An entry row's value: (expires_at, payload).
type EntryValue = (Option<u64>, &'static [u8]);

const ENTRIES: TableDefinition<'_, (&str, u64), EntryValue> = TableDefinition::new("entries");
/// (expires_at, recipient, id): the sweep's index.
const EXPIRY: TableDefinition<'_, (u64, &str, u64), ()> = TableDefinition::new("expiry");
/// (recipient, expires_at, id): one recipient's expiring entries, soonest first.
const RECIPIENT_EXPIRY: TableDefinition<'_, (&str, u64, u64), ()> =
    TableDefinition::new("recipient_expiry");
/// recipient -> (entries, bytes), present while the recipient has entries.
const RECIPIENTS: TableDefinition<'_, &str, (u64, u64)> = TableDefinition::new("recipients");
/// "last_id" and "total_bytes".
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

const LAST_ID: &str = "last_id";
const TOTAL_BYTES: &str = "total_bytes";

/// The durable queue. Cheap to share behind an `Arc`; dropping it stops the writer thread
/// (after the batch in progress) and closes the file.
pub struct RedbQueue {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
    options: RedbOptions,
    writer: Writer<Op>,
}

impl std::fmt::Debug for RedbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbQueue")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

enum Op {
    Push {
        recipient: String,
        payload: Bytes,
        now: u64,
        expires_at: Option<u64>,
        reply: Reply<EntryId>,
    },
    /// [`Queue::push_many`]'s checked items (payload, expiry), stored in order.
    PushMany {
        recipient: String,
        items: Vec<(Bytes, Option<u64>)>,
        now: u64,
        reply: Reply<Vec<Result<EntryId, QueueError>>>,
    },
    Ack {
        recipient: String,
        up_to: EntryId,
        reply: Reply<u64>,
    },
    Remove {
        recipient: String,
        reply: Reply<u64>,
    },
    Purge {
        recipient: String,
        now: u64,
        reply: Reply<u64>,
    },
    Sweep {
        now: u64,
        reply: Reply<u64>,
    },
}

impl RedbQueue {
    /// Opens (creating if needed) the store at `path`, on the system clock, with the default
    /// [`RedbOptions`]. Blocks on file I/O (and on redb's repair after a crash): call it at
    /// startup or from a blocking thread.
    ///
    /// # Errors
    ///
    /// [`QueueError::Backend`]: the file cannot be created or opened, is not a redb file, or
    /// is held by another process.
    pub fn open(path: impl AsRef<Path>, config: QueueConfig) -> Result<Self, QueueError> {
        Self::open_with(path, config, RedbOptions::default(), Arc::new(SystemClock))
    }

    /// Like [`open`](Self::open), on `clock`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        config: QueueConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        Self::open_with(path, config, RedbOptions::default(), clock)
    }

    /// Like [`open`](Self::open), with `options` (e.g. the page cache's size) and on `clock`
    /// (`Arc::new(SystemClock)` in production).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(
        path: impl AsRef<Path>,
        config: QueueConfig,
        options: RedbOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let db = open_database(path.as_ref(), &options, |txn| {
            txn.open_table(ENTRIES)?;
            txn.open_table(EXPIRY)?;
            txn.open_table(RECIPIENT_EXPIRY)?;
            txn.open_table(RECIPIENTS)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        let writer = Writer::spawn(
            "chinwag-queue-redb-writer",
            Arc::clone(&db),
            QueueBatch {
                config: config.clone(),
            },
        )?;
        Ok(Self {
            db,
            clock,
            config,
            options,
            writer,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &RedbOptions {
        &self.options
    }

    /// How many write transactions this queue has committed since it was opened: one fsync
    /// each. Compared with the operations made, it shows how well group commit batches them
    /// (a run of [`Queue::push_many`] is one commit).
    ///
    /// ```
    /// use chinwag::queue::redb::RedbQueue;
    /// use chinwag::queue::{Queue, QueueConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), chinwag::queue::QueueError> {
    /// # let dir = std::env::temp_dir().join(format!("chinwag-redb-commits-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir); // a recycled pid's leftovers
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let queue = RedbQueue::open(dir.join("queue.redb"), QueueConfig::default())?;
    /// let before = queue.commits();
    /// let items = (0..100).map(|i| (format!("message {i}").into(), None)).collect();
    /// let ids = queue.push_many("alice", items).await;
    /// assert!(ids.iter().all(Result::is_ok));
    /// assert_eq!(queue.commits(), before + 1, "100 pushes, one commit");
    /// # drop(queue);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, QueueError> {
        self.writer.call(make).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        blocking(&self.db, f).await
    }

    /// Frees `recipient`'s expired entries first if it has any, so reads see a purged queue.
    async fn purge_if_expired(&self, recipient: &str, now: u64) -> Result<(), QueueError> {
        let r = recipient.to_owned();
        let expired = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(RECIPIENT_EXPIRY).map_err(backend)?;
                let first = t
                    .range((r.as_str(), 0u64, 0u64)..=(r.as_str(), u64::MAX, u64::MAX))
                    .map_err(backend)?
                    .next()
                    .transpose()
                    .map_err(backend)?
                    .map(|(k, _)| k.value().1);
                Ok(first.is_some_and(|at| at <= now))
            })
            .await?;
        if expired {
            let recipient = recipient.to_owned();
            self.call(|reply| Op::Purge {
                recipient,
                now,
                reply,
            })
            .await?;
        }
        Ok(())
    }
}

impl Queue for RedbQueue {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        Box::pin(async move {
            self.config.check_push(recipient, payload.len())?;
            let now = self.clock.now_ms();
            let recipient = recipient.to_owned();
            self.call(|reply| Op::Push {
                recipient,
                payload,
                now,
                expires_at: expiry(now, ttl),
                reply,
            })
            .await
        })
    }

    fn push_many<'a>(
        &'a self,
        recipient: &'a str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
        Box::pin(async move {
            // The items that pass the checks go to the writer as one operation: one
            // transaction, one fsync, applied in order.
            let now = self.clock.now_ms();
            let mut out: Vec<Result<EntryId, QueueError>> = Vec::with_capacity(items.len());
            let mut stored = Vec::with_capacity(items.len());
            for (payload, ttl) in items {
                match self.config.check_push(recipient, payload.len()) {
                    Ok(()) => {
                        stored.push((payload, expiry(now, ttl)));
                        // Replaced by the writer's answer below.
                        out.push(Ok(0));
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            if stored.is_empty() {
                return out;
            }
            let n = stored.len();
            let answers = self
                .call(|reply| Op::PushMany {
                    recipient: recipient.to_owned(),
                    items: stored,
                    now,
                    reply,
                })
                .await;
            let mut answers = match answers {
                Ok(a) => a.into_iter(),
                Err(e) => {
                    let msg = e.to_string();
                    (0..n)
                        .map(|_| Err(QueueError::backend(msg.clone())))
                        .collect::<Vec<_>>()
                        .into_iter()
                }
            };
            for slot in out.iter_mut().filter(|r| r.is_ok()) {
                *slot = answers
                    .next()
                    .unwrap_or_else(|| Err(QueueError::backend("no answer for a push")));
            }
            out
        })
    }

    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        Box::pin(async move {
            check_recipient(recipient)?;
            let now = self.clock.now_ms();
            self.purge_if_expired(recipient, now).await?;
            let r = recipient.to_owned();
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(ENTRIES).map_err(backend)?;
                let mut out = Vec::new();
                if max == 0 || after == u64::MAX {
                    return Ok(out);
                }
                for item in t
                    .range((r.as_str(), after + 1)..=(r.as_str(), u64::MAX))
                    .map_err(backend)?
                {
                    let (k, v) = item.map_err(backend)?;
                    let (exp, payload) = v.value();
                    // Entries that expired since the purge are skipped, never returned.
                    if exp.is_some_and(|at| at <= now) {
                        continue;
                    }
                    out.push(Entry::new(
                        k.value().1,
                        Bytes::copy_from_slice(payload),
                        exp,
                    ));
                    if out.len() >= max {
                        break;
                    }
                }
                Ok(out)
            })
            .await
        })
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            check_recipient(recipient)?;
            let recipient = recipient.to_owned();
            self.call(|reply| Op::Ack {
                recipient,
                up_to,
                reply,
            })
            .await
        })
    }

    fn ack_many<'a>(
        &'a self,
        acks: &'a [(&'a str, EntryId)],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        Box::pin(async move {
            // Every ack handed to the writer before any is awaited: they share its batches.
            let mut pending = Vec::with_capacity(acks.len());
            for (recipient, up_to) in acks {
                check_recipient(recipient)?;
                let recipient = (*recipient).to_owned();
                let up_to = *up_to;
                pending.push(self.writer.submit(|reply| Op::Ack {
                    recipient,
                    up_to,
                    reply,
                })?);
            }
            let mut removed = Vec::with_capacity(pending.len());
            for rx in pending {
                removed.push(rx.await.map_err(|_| writer::stopped())??);
            }
            Ok(removed)
        })
    }

    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            check_recipient(recipient)?;
            let now = self.clock.now_ms();
            self.purge_if_expired(recipient, now).await?;
            let r = recipient.to_owned();
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(RECIPIENTS).map_err(backend)?;
                Ok(t.get(r.as_str())
                    .map_err(backend)?
                    .map_or(0, |v| v.value().0))
            })
            .await
        })
    }

    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(async move {
            check_recipient(recipient)?;
            let recipient = recipient.to_owned();
            self.call(|reply| Op::Remove { recipient, reply }).await
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            self.call(|reply| Op::Sweep { now, reply }).await
        })
    }
}

/// The queue's write side, run by the [`Writer`] thread.
struct QueueBatch {
    config: QueueConfig,
}

impl Batch for QueueBatch {
    type Op = Op;

    fn failed(op: Op) -> Done {
        match op {
            Op::PushMany { reply, .. } => Done::failed(reply),
            Op::Push { reply, .. }
            | Op::Ack { reply, .. }
            | Op::Remove { reply, .. }
            | Op::Purge { reply, .. }
            | Op::Sweep { reply, .. } => Done::failed(reply),
        }
    }

    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        ops: &mut std::vec::IntoIter<Op>,
        done: &mut Vec<Done>,
    ) -> Result<(), QueueError> {
        let mut s = Store::open(txn)?;
        for op in ops.by_ref() {
            let (d, failed) = s.apply(op, &self.config);
            done.push(d);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        s.flush_meta()
    }
}

/// The tables of one write transaction.
struct Store<'t> {
    entries: redb::Table<'t, (&'static str, u64), EntryValue>,
    expiry: redb::Table<'t, (u64, &'static str, u64), ()>,
    recipient_expiry: redb::Table<'t, (&'static str, u64, u64), ()>,
    recipients: redb::Table<'t, &'static str, (u64, u64)>,
    meta: redb::Table<'t, &'static str, u64>,
    last_id: u64,
    total_bytes: u64,
}

impl<'t> Store<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, QueueError> {
        let meta = txn.open_table(META).map_err(backend)?;
        let get = |k: &str| -> Result<u64, QueueError> {
            Ok(meta.get(k).map_err(backend)?.map_or(0, |v| v.value()))
        };
        let last_id = get(LAST_ID)?;
        let total_bytes = get(TOTAL_BYTES)?;
        Ok(Self {
            entries: txn.open_table(ENTRIES).map_err(backend)?,
            expiry: txn.open_table(EXPIRY).map_err(backend)?,
            recipient_expiry: txn.open_table(RECIPIENT_EXPIRY).map_err(backend)?,
            recipients: txn.open_table(RECIPIENTS).map_err(backend)?,
            meta,
            last_id,
            total_bytes,
        })
    }

    fn flush_meta(&mut self) -> Result<(), QueueError> {
        self.meta.insert(LAST_ID, self.last_id).map_err(backend)?;
        self.meta
            .insert(TOTAL_BYTES, self.total_bytes)
            .map_err(backend)?;
        Ok(())
    }

    /// Applies one operation. The error, if any, is a storage failure that fails the batch;
    /// the returned [`Done`] then carries a failure too.
    fn apply(&mut self, op: Op, config: &QueueConfig) -> (Done, Option<QueueError>) {
        let count = Done::of::<u64>;
        match op {
            Op::Push {
                recipient,
                payload,
                now,
                expires_at,
                reply,
            } => match self.push(&recipient, &payload, now, expires_at, config) {
                Ok(r) => (Done::new(reply, r), None),
                Err(e) => (Done::failed(reply), Some(e)),
            },
            Op::PushMany {
                recipient,
                items,
                now,
                reply,
            } => {
                let mut results = Vec::with_capacity(items.len());
                for (payload, expires_at) in items {
                    match self.push(&recipient, &payload, now, expires_at, config) {
                        Ok(r) => results.push(r),
                        Err(e) => return (Done::failed(reply), Some(e)),
                    }
                }
                (Done::new(reply, Ok(results)), None)
            }
            Op::Ack {
                recipient,
                up_to,
                reply,
            } => count(reply, self.remove_up_to(&recipient, up_to)),
            Op::Remove { recipient, reply } => {
                count(reply, self.remove_up_to(&recipient, u64::MAX))
            }
            Op::Purge {
                recipient,
                now,
                reply,
            } => count(reply, self.purge(&recipient, now)),
            Op::Sweep { now, reply } => count(reply, self.sweep(now)),
        }
    }

    /// `Ok(Err(Full))` is a refusal; `Err` is a storage failure.
    fn push(
        &mut self,
        recipient: &str,
        payload: &[u8],
        now: u64,
        expires_at: Option<u64>,
        config: &QueueConfig,
    ) -> Result<Result<EntryId, QueueError>, QueueError> {
        let size = payload.len() as u64;
        self.purge(recipient, now)?;
        if self.total_bytes.saturating_add(size) > config.max_total_bytes {
            self.sweep(now)?;
        }
        let (entries, bytes) = self.usage(recipient)?;
        let usage = Usage {
            entries,
            bytes,
            total_bytes: self.total_bytes,
        };
        let mut failed = None;
        let plan = {
            let sizes = self
                .entries
                .range((recipient, 0)..=(recipient, u64::MAX))
                .map_err(backend)?
                .map_while(|item| match item {
                    Ok((_, v)) => Some(v.value().1.len() as u64),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                });
            config.plan_push(recipient, size, usage, sizes)
        };
        if let Some(e) = failed {
            return Err(backend(e));
        }
        let n_drop = match plan {
            Ok(n) => n,
            Err(full) => return Ok(Err(full)),
        };
        if n_drop > 0 {
            let oldest: Vec<u64> = self
                .entries
                .range((recipient, 0)..=(recipient, u64::MAX))
                .map_err(backend)?
                .take(usize::try_from(n_drop).unwrap_or(usize::MAX))
                .map(|item| item.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            for id in oldest {
                self.remove_entry(recipient, id)?;
            }
        }
        self.last_id += 1;
        let id = self.last_id;
        self.entries
            .insert((recipient, id), (expires_at, payload))
            .map_err(backend)?;
        if let Some(at) = expires_at {
            self.expiry
                .insert((at, recipient, id), ())
                .map_err(backend)?;
            self.recipient_expiry
                .insert((recipient, at, id), ())
                .map_err(backend)?;
        }
        let (n, b) = self.usage(recipient)?;
        self.recipients
            .insert(recipient, (n + 1, b + size))
            .map_err(backend)?;
        self.total_bytes += size;
        Ok(Ok(id))
    }

    fn usage(&self, recipient: &str) -> Result<(u64, u64), QueueError> {
        Ok(self
            .recipients
            .get(recipient)
            .map_err(backend)?
            .map_or((0, 0), |v| v.value()))
    }

    /// Removes one entry and its index rows, and updates the counters. Returns whether it
    /// existed.
    fn remove_entry(&mut self, recipient: &str, id: EntryId) -> Result<bool, QueueError> {
        let Some(old) = self.entries.remove((recipient, id)).map_err(backend)? else {
            return Ok(false);
        };
        let (exp, payload) = old.value();
        let size = payload.len() as u64;
        drop(old);
        if let Some(at) = exp {
            self.expiry.remove((at, recipient, id)).map_err(backend)?;
            self.recipient_expiry
                .remove((recipient, at, id))
                .map_err(backend)?;
        }
        let (n, b) = self.usage(recipient)?;
        if n <= 1 {
            self.recipients.remove(recipient).map_err(backend)?;
        } else {
            self.recipients
                .insert(recipient, (n - 1, b.saturating_sub(size)))
                .map_err(backend)?;
        }
        self.total_bytes = self.total_bytes.saturating_sub(size);
        Ok(true)
    }

    fn remove_up_to(&mut self, recipient: &str, up_to: EntryId) -> Result<u64, QueueError> {
        let ids: Vec<u64> = self
            .entries
            .range((recipient, 0)..=(recipient, up_to))
            .map_err(backend)?
            .map(|item| item.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        let mut n = 0;
        for id in ids {
            if self.remove_entry(recipient, id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn purge(&mut self, recipient: &str, now: u64) -> Result<u64, QueueError> {
        let ids: Vec<u64> = self
            .recipient_expiry
            .range((recipient, 0, 0)..=(recipient, now, u64::MAX))
            .map_err(backend)?
            .map(|item| item.map(|(k, _)| k.value().2))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        let mut n = 0;
        for id in ids {
            if self.remove_entry(recipient, id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn sweep(&mut self, now: u64) -> Result<u64, QueueError> {
        // Everything with expires_at <= now, i.e. keys below (now + 1, "", 0).
        let range = match now.checked_add(1) {
            Some(next) => self.expiry.range(..(next, "", 0)),
            None => self.expiry.range::<(u64, &str, u64)>(..),
        };
        let due: Vec<(String, u64)> = range
            .map_err(backend)?
            .map(|item| {
                item.map(|(k, _)| {
                    let (_, r, id) = k.value();
                    (r.to_owned(), id)
                })
            })
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        let mut n = 0;
        for (r, id) in due {
            if self.remove_entry(&r, id)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Instant;

    /// A minimal executor that is not tokio: polls until ready (with a hang guard).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            assert!(Instant::now() < deadline, "future not ready within 60 s");
            std::thread::yield_now();
        }
    }

    #[test]
    fn default_cache_is_16_mib_and_open_uses_it() {
        assert_eq!(DEFAULT_CACHE_SIZE, 16 * 1024 * 1024);
        assert_eq!(RedbOptions::default().cache_size, DEFAULT_CACHE_SIZE);
        let dir = tempfile::tempdir().expect("tempdir");
        let q = RedbQueue::open(dir.path().join("q.redb"), QueueConfig::default()).expect("open");
        assert_eq!(q.options(), &RedbOptions::default());
    }

    /// The boundary: no cache at all still stores, reads (from the file) and acks, also 1 MiB
    /// payloads, and after a reopen.
    #[test]
    fn a_zero_cache_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("q.redb");
        let options = RedbOptions::default().with_cache_size(0);
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let open = || {
            RedbQueue::open_with(
                &path,
                QueueConfig::default(),
                options.clone(),
                Arc::new(SystemClock),
            )
            .expect("open")
        };
        let q = open();
        assert_eq!(q.options().cache_size, 0);
        let ids = block_on(async {
            let a = q.push("a", big.clone(), None).await.expect("push");
            let b = q.push("a", "small".into(), None).await.expect("push");
            vec![a, b]
        });
        drop(q);
        let q = open();
        block_on(async {
            let got = q.read("a", 0, 10).await.expect("read");
            assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
            assert_eq!(got[0].payload, big);
            assert_eq!(q.ack("a", ids[1]).await.expect("ack"), 2);
            assert_eq!(q.len("a").await.expect("len"), 0);
        });
    }

    #[test]
    fn works_outside_a_tokio_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = RedbQueue::open(dir.path().join("q.redb"), QueueConfig::default()).expect("open");
        block_on(async {
            let id = q.push("a", "x".into(), None).await.expect("push");
            let got = q.read("a", 0, 10).await.expect("read without tokio");
            assert_eq!(
                got.iter().map(|e| e.id).collect::<Vec<_>>(),
                vec![id],
                "read"
            );
            assert_eq!(q.len("a").await.expect("len"), 1, "len without tokio");
        });
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn options_round_trip_and_refuse_unknown_keys() {
        let d = RedbOptions::default();
        let text = toml::to_string(&d).unwrap();
        assert_eq!(text.trim(), format!("cache_size = {DEFAULT_CACHE_SIZE}"));
        assert_eq!(toml::from_str::<RedbOptions>(&text).unwrap(), d);
        assert_eq!(toml::from_str::<RedbOptions>("").unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<RedbOptions>(&json).unwrap(), d);
        let e = toml::from_str::<RedbOptions>("cache = 1\n").unwrap_err();
        assert!(e.to_string().contains("`cache`"), "{e}");
    }
}
