//! [`RedbHistory`]: room history in its own redb file, durable like [`RedbQueue`](crate::RedbQueue).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_queue::{
    BoxFuture, Clock, Direction, History, HistoryConfig, Offset, Page, Publication, QueueError,
    Retention, StreamState, SystemClock, history::check_stream,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::RedbOptions;
use crate::writer::{Batch, Done, Reply, Writer, backend, blocking, open_database};

/// A stream's row: (epoch, first, last, bytes, max_len, max_age in ms, last at_ms). `first` is
/// the oldest offset held, not yet trimmed by age (reads skip aged publications).
type MetaValue = (u64, u64, u64, u64, u64, Option<u64>, u64);

/// stream -> its row, while the stream exists.
const STREAMS: TableDefinition<'_, &str, MetaValue> = TableDefinition::new("history_streams");
/// (stream, offset) -> (at_ms, payload): the held publications.
const PUBLICATIONS: TableDefinition<'_, (&str, u64), (u64, &[u8])> =
    TableDefinition::new("history_publications");
/// [`STREAM_COUNT`] and [`TOTAL_BYTES`], for the bounds.
const TOTALS: TableDefinition<'_, &str, u64> = TableDefinition::new("history_totals");

const STREAM_COUNT: &str = "streams";
const TOTAL_BYTES: &str = "total_bytes";

/// A durable [`History`] on redb: every append returns its state only once it is committed
/// with an fsync, so **every offset an append returned survives kill -9 and power loss**
/// (`tests/kill9.rs` checks it by killing a child process mid-append). Streams, epochs,
/// offsets, retentions and the bounds' totals survive a restart; appends continue after the
/// last offset under the same epoch.
///
/// Writes (appends, removes, sweeps) go through one writer thread that applies the operations
/// that arrived during a commit together, in one transaction and one fsync (group commit,
/// like [`RedbQueue`](crate::RedbQueue)); appends are ordered by that thread, so offsets are
/// handed out in one order. Reads and states are read transactions on tokio's blocking pool:
/// they never wait for the writer, and skip aged publications without writing (the next
/// append to the stream or [`History::sweep`] frees them). A sweep visits every stream.
///
/// Keep it in a file of its own, apart from the queue's.
///
/// # Example
///
/// ```
/// use chinwag::queue::{Direction, History, HistoryConfig, Retention};
/// use chinwag::queue::redb::RedbHistory;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), chinwag::queue::QueueError> {
/// # let dir = std::env::temp_dir().join(format!("chinwag-redb-history-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir); // a recycled pid's leftovers
/// # std::fs::create_dir_all(&dir).unwrap();
/// let history = RedbHistory::open(dir.join("history.redb"), HistoryConfig::default())?;
/// let state = history.append("lobby", &["hi".into()], Retention::new(100, None), 7).await?;
/// assert_eq!((state.epoch, state.last), (7, 1));
/// drop(history);
///
/// // After a restart the stream goes on under the same epoch.
/// let history = RedbHistory::open(dir.join("history.redb"), HistoryConfig::default())?;
/// let state = history.append("lobby", &["again".into()], Retention::new(100, None), 8).await?;
/// assert_eq!((state.epoch, state.first, state.last), (7, 1, 2));
/// let page = history.read("lobby", 0, Direction::Forward, 10).await?.expect("stream");
/// assert_eq!(page.publications[1].payload, "again");
/// # drop(history);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub struct RedbHistory {
    db: Arc<redb::Database>,
    clock: Arc<dyn Clock>,
    config: HistoryConfig,
    options: RedbOptions,
    writer: Writer<Op>,
}

impl std::fmt::Debug for RedbHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbHistory")
            .field("config", &self.config)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

enum Op {
    Append {
        stream: String,
        payloads: Vec<Bytes>,
        retention: Retention,
        new_epoch: u64,
        now: u64,
        reply: Reply<StreamState>,
    },
    Remove {
        stream: String,
        reply: Reply<bool>,
    },
    Sweep {
        now: u64,
        reply: Reply<u64>,
    },
}

/// A stream's row, decoded.
#[derive(Debug, Clone, Copy)]
struct Meta {
    epoch: u64,
    first: Offset,
    last: Offset,
    bytes: u64,
    retention: Retention,
    last_at: u64,
}

impl Meta {
    fn decode((epoch, first, last, bytes, max_len, max_age, last_at): MetaValue) -> Self {
        Meta {
            epoch,
            first,
            last,
            bytes,
            retention: Retention::new(max_len, max_age.map(Duration::from_millis)),
            last_at,
        }
    }

    fn encode(&self) -> MetaValue {
        let age = self
            .retention
            .max_age
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let r = self.retention.max_len;
        let (e, f, l, b, t) = (self.epoch, self.first, self.last, self.bytes, self.last_at);
        (e, f, l, b, r, age, t)
    }

    fn held(&self) -> u64 {
        (self.last + 1).saturating_sub(self.first)
    }
}

/// `(at_ms, size)` of the held publications of a stream, oldest first, for
/// [`Retention::plan_trim`]; a storage error ends the iteration and lands in `failed`.
fn held<'a>(
    table: &'a impl ReadableTable<(&'static str, u64), (u64, &'static [u8])>,
    stream: &'a str,
    m: &Meta,
    failed: &'a mut Option<redb::StorageError>,
) -> Result<impl Iterator<Item = (u64, u64)> + 'a, QueueError> {
    Ok(table
        .range((stream, m.first)..=(stream, m.last))
        .map_err(backend)?
        .map_while(|item| match item {
            Ok((_, v)) => {
                let (at, p) = v.value();
                Some((at, p.len() as u64))
            }
            Err(e) => {
                *failed = Some(e);
                None
            }
        }))
}

/// A publication row.
fn decode(
    item: Result<(PubKey<'_>, PubValue<'_>), redb::StorageError>,
) -> Result<Publication, QueueError> {
    let (k, v) = item.map_err(backend)?;
    let (at, p) = v.value();
    Ok(Publication::new(k.value().1, Bytes::copy_from_slice(p), at))
}

type PubKey<'a> = redb::AccessGuard<'a, (&'static str, u64)>;
type PubValue<'a> = redb::AccessGuard<'a, (u64, &'static [u8])>;

/// How many of `m`'s held publications are aged at `now` (the oldest ones).
fn aged(
    table: &impl ReadableTable<(&'static str, u64), (u64, &'static [u8])>,
    stream: &str,
    m: &Meta,
    now: u64,
) -> Result<chinwag_queue::Trim, QueueError> {
    let mut failed = None;
    let trim = m
        .retention
        .plan_trim(now, m.held(), held(table, stream, m, &mut failed)?, 0, now);
    match failed {
        Some(e) => Err(backend(e)),
        None => Ok(trim),
    }
}

impl RedbHistory {
    /// Opens (creating if needed) the history store at `path`, on the system clock, with the
    /// default [`RedbOptions`]. Blocks on file I/O: call it at startup or from a blocking
    /// thread.
    ///
    /// # Errors
    ///
    /// [`QueueError::Backend`]: the file cannot be created or opened, is not a redb file, or
    /// is held by another process.
    pub fn open(path: impl AsRef<Path>, config: HistoryConfig) -> Result<Self, QueueError> {
        Self::open_with(path, config, RedbOptions::default(), Arc::new(SystemClock))
    }

    /// Like [`open`](Self::open), with `options` and on `clock`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(
        path: impl AsRef<Path>,
        config: HistoryConfig,
        options: RedbOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let db = open_database(path.as_ref(), &options, |txn| {
            txn.open_table(STREAMS)?;
            txn.open_table(PUBLICATIONS)?;
            txn.open_table(TOTALS)?;
            Ok(())
        })?;
        let writer = Writer::spawn(
            "chinwag-history-redb-writer",
            Arc::clone(&db),
            HistoryBatch { config },
        )?;
        Ok(RedbHistory {
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

    /// The stream's row and its state at `now` (aged publications skipped), in a read
    /// transaction, then `then` on the publications table.
    async fn read_at<T: Send + 'static>(
        &self,
        stream: &str,
        then: impl FnOnce(
            &redb::ReadOnlyTable<(&'static str, u64), (u64, &'static [u8])>,
            &str,
            StreamState,
        ) -> Result<T, QueueError>
        + Send
        + 'static,
    ) -> Result<Option<T>, QueueError> {
        check_stream(stream)?;
        let now = self.clock.now_ms();
        let stream = stream.to_owned();
        blocking(&self.db, move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let streams = txn.open_table(STREAMS).map_err(backend)?;
            let Some(m) = streams.get(stream.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let m = Meta::decode(m.value());
            let pubs = txn.open_table(PUBLICATIONS).map_err(backend)?;
            let first = m.first + aged(&pubs, &stream, &m, now)?.held;
            let state = StreamState::new(m.epoch, first, m.last);
            then(&pubs, &stream, state).map(Some)
        })
        .await
    }
}

impl History for RedbHistory {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payloads: &'a [Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> BoxFuture<'a, Result<StreamState, QueueError>> {
        Box::pin(async move {
            self.config.check_append(stream, payloads)?;
            let now = self.clock.now_ms();
            self.writer
                .call(|reply| Op::Append {
                    stream: stream.to_owned(),
                    payloads: payloads.to_vec(),
                    retention,
                    new_epoch,
                    now,
                    reply,
                })
                .await
        })
    }

    fn state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamState>, QueueError>> {
        Box::pin(self.read_at(stream, |_, _, state| Ok(state)))
    }

    fn read<'a>(
        &'a self,
        stream: &'a str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, QueueError>> {
        Box::pin(self.read_at(stream, move |pubs, stream, state| {
            let (lo, hi) = match direction {
                Direction::Forward => (from.saturating_add(1).max(state.first), state.last),
                Direction::Backward => (state.first, from.saturating_sub(1).min(state.last)),
            };
            let mut out = Vec::new();
            if limit == 0 || lo > hi {
                return Ok(Page::new(state, out));
            }
            let range = pubs.range((stream, lo)..=(stream, hi)).map_err(backend)?;
            match direction {
                Direction::Forward => {
                    for item in range.take(limit) {
                        out.push(decode(item)?);
                    }
                }
                Direction::Backward => {
                    for item in range.rev().take(limit) {
                        out.push(decode(item)?);
                    }
                }
            }
            Ok(Page::new(state, out))
        }))
    }

    fn remove<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(async move {
            check_stream(stream)?;
            let stream = stream.to_owned();
            self.writer.call(|reply| Op::Remove { stream, reply }).await
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(async move {
            let now = self.clock.now_ms();
            self.writer.call(|reply| Op::Sweep { now, reply }).await
        })
    }
}

/// The history's write side, run by the [`Writer`] thread.
struct HistoryBatch {
    config: HistoryConfig,
}

impl Batch for HistoryBatch {
    type Op = Op;

    fn failed(op: Op) -> Done {
        match op {
            Op::Append { reply, .. } => Done::failed(reply),
            Op::Remove { reply, .. } => Done::failed(reply),
            Op::Sweep { reply, .. } => Done::failed(reply),
        }
    }

    fn apply(
        &mut self,
        txn: &WriteTransaction,
        ops: &mut std::vec::IntoIter<Op>,
        done: &mut Vec<Done>,
    ) -> Result<(), QueueError> {
        let mut t = Tables::open(txn)?;
        for op in ops.by_ref() {
            let (d, failed) = match op {
                Op::Append {
                    stream,
                    payloads,
                    retention,
                    new_epoch,
                    now,
                    reply,
                } => match t.append(&stream, &payloads, retention, new_epoch, now, &self.config) {
                    Ok(r) => (Done::new(reply, r), None),
                    Err(e) => (Done::failed(reply), Some(e)),
                },
                Op::Remove { stream, reply } => Done::of(reply, t.remove(&stream)),
                Op::Sweep { now, reply } => Done::of(reply, t.sweep(now)),
            };
            done.push(d);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        t.flush_totals()
    }
}

/// The tables of one write transaction, and the totals.
struct Tables<'t> {
    streams: redb::Table<'t, &'static str, MetaValue>,
    pubs: redb::Table<'t, (&'static str, u64), (u64, &'static [u8])>,
    totals: redb::Table<'t, &'static str, u64>,
    count: u64,
    total_bytes: u64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, QueueError> {
        let totals = txn.open_table(TOTALS).map_err(backend)?;
        let get = |k: &str| -> Result<u64, QueueError> {
            Ok(totals.get(k).map_err(backend)?.map_or(0, |v| v.value()))
        };
        let (count, total_bytes) = (get(STREAM_COUNT)?, get(TOTAL_BYTES)?);
        Ok(Tables {
            streams: txn.open_table(STREAMS).map_err(backend)?,
            pubs: txn.open_table(PUBLICATIONS).map_err(backend)?,
            totals,
            count,
            total_bytes,
        })
    }

    fn flush_totals(&mut self) -> Result<(), QueueError> {
        self.totals
            .insert(STREAM_COUNT, self.count)
            .map_err(backend)?;
        self.totals
            .insert(TOTAL_BYTES, self.total_bytes)
            .map_err(backend)?;
        Ok(())
    }

    fn meta(&self, stream: &str) -> Result<Option<Meta>, QueueError> {
        Ok(self
            .streams
            .get(stream)
            .map_err(backend)?
            .map(|v| Meta::decode(v.value())))
    }

    /// Drops the `n` oldest publications of `m` (`freed` bytes).
    fn drop_oldest(
        &mut self,
        stream: &str,
        m: &mut Meta,
        n: u64,
        freed: u64,
    ) -> Result<(), QueueError> {
        if n > 0 {
            let end = m.first + n;
            self.pubs
                .retain_in((stream, m.first)..(stream, end), |_, _| false)
                .map_err(backend)?;
            m.first = end;
            m.bytes = m.bytes.saturating_sub(freed);
            self.total_bytes = self.total_bytes.saturating_sub(freed);
        }
        Ok(())
    }

    /// `Ok(Err(Full))` is a refusal (nothing changed); `Err` is a storage failure.
    fn append(
        &mut self,
        stream: &str,
        payloads: &[Bytes],
        retention: Retention,
        new_epoch: u64,
        now: u64,
        config: &HistoryConfig,
    ) -> Result<Result<StreamState, QueueError>, QueueError> {
        let existing = self.meta(stream)?;
        let mut m = existing.unwrap_or(Meta {
            epoch: new_epoch,
            first: 1,
            last: 0,
            bytes: 0,
            retention,
            last_at: now,
        });
        let at = m.last_at.max(now);
        let batch = payloads.len() as u64;
        let mut failed = None;
        let trim = retention.plan_trim(
            now,
            m.held(),
            held(&self.pubs, stream, &m, &mut failed)?,
            batch,
            at,
        );
        if let Some(e) = failed {
            return Err(backend(e));
        }
        let kept = &payloads[usize::try_from(trim.batch)
            .unwrap_or(usize::MAX)
            .min(payloads.len())..];
        let kept_bytes: u64 = kept.iter().map(|p| p.len() as u64).sum();
        let total_after = (self.total_bytes.saturating_sub(trim.freed)).saturating_add(kept_bytes);
        if let Err(full) = config.admit(stream, existing.is_none(), self.count, total_after) {
            return Ok(Err(full));
        }
        self.drop_oldest(stream, &mut m, trim.held, trim.freed)?;
        let first_kept = m.last + 1 + trim.batch;
        for (i, p) in kept.iter().enumerate() {
            self.pubs
                .insert((stream, first_kept + i as u64), (at, p.as_ref()))
                .map_err(backend)?;
        }
        // What is held now: what the trim left of the stream, and the batch's kept payloads.
        let held_now = m.held() + kept.len() as u64;
        m.last += batch;
        m.first = m.last + 1 - held_now;
        m.bytes += kept_bytes;
        m.retention = retention;
        m.last_at = at;
        self.total_bytes = total_after;
        if existing.is_none() {
            self.count += 1;
        }
        self.streams.insert(stream, m.encode()).map_err(backend)?;
        Ok(Ok(StreamState::new(m.epoch, m.first, m.last)))
    }

    fn remove(&mut self, stream: &str) -> Result<bool, QueueError> {
        let Some(m) = self.meta(stream)? else {
            return Ok(false);
        };
        self.pubs
            .retain_in((stream, m.first)..=(stream, m.last), |_, _| false)
            .map_err(backend)?;
        self.streams.remove(stream).map_err(backend)?;
        self.total_bytes = self.total_bytes.saturating_sub(m.bytes);
        self.count = self.count.saturating_sub(1);
        Ok(true)
    }

    fn sweep(&mut self, now: u64) -> Result<u64, QueueError> {
        let aging: Vec<(String, Meta)> = self
            .streams
            .iter()
            .map_err(backend)?
            .filter_map(|item| match item {
                Ok((k, v)) => {
                    let m = Meta::decode(v.value());
                    m.retention.max_age.map(|_| Ok((k.value().to_owned(), m)))
                }
                Err(e) => Some(Err(backend(e))),
            })
            .collect::<Result<_, _>>()?;
        let mut removed = 0;
        for (stream, mut m) in aging {
            let trim = aged(&self.pubs, &stream, &m, now)?;
            self.drop_oldest(&stream, &mut m, trim.held, trim.freed)?;
            removed += trim.held;
            if m.held() == 0 {
                // Everything aged out (max_len is at least 1): forget the stream.
                self.streams.remove(stream.as_str()).map_err(backend)?;
                self.count = self.count.saturating_sub(1);
            } else if trim.held > 0 {
                self.streams
                    .insert(stream.as_str(), m.encode())
                    .map_err(backend)?;
            }
        }
        Ok(removed)
    }
}
