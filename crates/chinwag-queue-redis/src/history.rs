//! [`RedisHistory`]: room history ([`History`]) on Redis, for several hub processes sharing one
//! Redis.
//!
//! Every mutation is one Lua script, so it is atomic and every process sees one order: an
//! append reads the stream's meta, checks the bounds, starts the stream under `new_epoch` if it
//! does not exist, gives the batch the offsets `last + 1 ..`, stores it, trims the stream to
//! the retention (count and age) and updates the stream's and the store's accounting, all in
//! one step. A read is one script too (it changes nothing: aged publications are skipped, not
//! removed), so the state and the publications it returns belong together.
//!
//! Ages are measured with the injected [`Clock`] (whose time every
//! script receives as an argument; Redis's `TIME` and key expiry are not used), so tests drive
//! time with a [`ManualClock`](chinwag_queue::ManualClock). A publication's `at_ms` is the
//! clock's time at the append, raised to the stream's previous `at_ms` if the appending
//! process's clock is behind (nodes' clocks differ slightly): times never decrease along a
//! stream, so aged publications are always a prefix of it. A publication is aged when
//! `at_ms + max_age <= now` (the queue's rule for time-to-live).
//!
//! # Layout
//!
//! Keys start with [`RedisOptions::prefix`] (`P`); per stream `S`:
//!
//! - `P{h:S}:m`, a hash, the stream's meta: epoch, last offset, first offset held, bytes held,
//!   bytes ever appended in the epoch, the last retention given, the last append's time;
//! - `P{h:S}:p`, a Redis **stream** holding the publications: entry id `<offset>-0`, fields
//!   `t` (`at_ms`), `c` (bytes appended before it in the epoch) and `d` (the payload, binary
//!   safe).
//!
//! A Redis stream is the structure made for an append-only log: entries sit in compact
//! listpacks, `XRANGE`/`XREVRANGE` read a range of offsets from its id in O(log n + count), and
//! `XTRIM MINID` drops a prefix without copying it out. Offsets are consecutive, so the held
//! ones are exactly `first..=last`; the cumulative byte count `c` gives the bytes of any suffix
//! from one lookup, and the aged prefix is found by binary search on `t`.
//!
//! Global keys: `P h:streams` (stream count), `P h:bytes` (payload bytes held) and `P h:due`
//! (sorted set of the streams with an age bound, scored by when their oldest publication ages
//! out, so [`History::sweep`] visits only streams with something to do, in batches of
//! [`SWEEP_BATCH`] streams per script, never scanning the keyspace).
//!
//! The two keys of a stream share the hash tag `{h:S}` (so they would sit in one slot of a
//! Redis Cluster; keep braces out of the prefix), but every append also updates the global
//! keys, and the scripts build key names from the prefix: like [`RedisQueue`](crate::RedisQueue)
//! this needs a single Redis (or a primary with replicas), not Redis Cluster. No history key
//! collides with a queue key, so a history and a queue may share a prefix.
//!
//! # Bounds
//!
//! [`HistoryConfig`], applied as `chinwag_queue::history` says: a payload over
//! `max_payload_bytes` (or over `max_total_bytes`, so it could never fit) is refused before
//! Redis is asked ([`QueueError::TooLarge`]); a batch that would start a stream beyond
//! `max_streams`, or leave more than `max_total_bytes` payload bytes held once the stream is
//! trimmed to the new retention, is refused with [`QueueError::Full`] and changes nothing.
//! Aged publications and aged-out streams count until [`History::sweep`] (or a remove, or an
//! append to their own stream) takes them away: reads never change the store.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use chinwag::queue::{Direction, History, HistoryConfig, Retention};
//! use chinwag::queue::redis::{RedisHistory, RedisOptions};
//!
//! # async fn run() -> Result<(), chinwag::queue::QueueError> {
//! let options = RedisOptions::default().prefix("myapp:");
//! let history =
//!     RedisHistory::connect_with("redis://127.0.0.1:6379/", HistoryConfig::default(), options)
//!         .await?;
//! let retention = Retention::new(100, Some(Duration::from_secs(3600)));
//! let epoch = 1_700_000_000_000_000; // the hub's fresh epoch, used only if the stream starts
//! let state = history
//!     .append("room:lobby", &["hello".into(), "world".into()], retention, epoch)
//!     .await?;
//! assert_eq!(state.last - state.first, 1);
//! // A client that saw up to offset 1 of this epoch catches up:
//! if let Some(page) = history.read("room:lobby", 1, Direction::Forward, 100).await? {
//!     if page.state.holds_after(state.epoch, 1) {
//!         for p in page.publications {
//!             // ... send p.offset and p.payload
//!             # let _ = p;
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::sync::LazyLock;

use bytes::Bytes;
use chinwag_queue::history::check_stream;
use chinwag_queue::{
    BoxFuture, Clock, Direction, History, HistoryConfig, Limit, Offset, Page, Publication,
    QueueError, Retention, StreamState,
};
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

use crate::{Counted, RedisOptions, SWEEP_BATCH, backend};

const PRELUDE: &str = include_str!("history_prelude.lua");

fn script(body: &str) -> Script {
    crate::script_with(PRELUDE, body)
}

/// The history prelude and the append as a function (also in `push_keep.lua`'s script).
pub(crate) const APPEND_FN: &str = concat!(
    include_str!("history_prelude.lua"),
    "\n",
    include_str!("history_append_fn.lua")
);
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{APPEND_FN}\n{}",
        include_str!("history_append.lua")
    ))
});
static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("history_read.lua")));
static REMOVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("history_remove.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| script(include_str!("history_sweep.lua")));

/// Room history on Redis (see the [module docs](self)). Cloning is cheap and shares the
/// connection.
#[derive(Clone)]
pub struct RedisHistory {
    conn: Counted,
    config: HistoryConfig,
    prefix: String,
    clock: Arc<dyn Clock>,
    notices: Option<String>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .field("notices", &self.notices)
            .finish_non_exhaustive()
    }
}

fn corrupt(what: &str) -> QueueError {
    QueueError::backend(format!("corrupt history reply from Redis: {what}"))
}

fn num(b: &[u8]) -> Result<u64, QueueError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("not a number"))
}

/// The append script's answer: the stream's state, or the bound that refused the append.
pub(crate) fn appended(r: &[Vec<u8>], stream: &str) -> Result<StreamState, QueueError> {
    match r {
        [ok, e, f, l] if ok == b"ok" => Ok(StreamState::new(num(e)?, num(f)?, num(l)?)),
        [full, why] if full == b"full" => Err(QueueError::Full {
            recipient: stream.to_owned(),
            limit: match why.as_slice() {
                b"streams" => Limit::Streams,
                b"bytes" => Limit::TotalBytes,
                _ => return Err(corrupt("unknown bound")),
            },
        }),
        _ => Err(corrupt("append")),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisHistory {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`) with default
    /// [`RedisOptions`] (the system clock). Fails if Redis cannot be reached now; afterwards
    /// the connection reconnects by itself.
    pub async fn connect(url: &str, config: HistoryConfig) -> Result<Self, QueueError> {
        Self::connect_with(url, config, RedisOptions::default()).await
    }

    /// Connects with `options` (prefix, clock, connection settings).
    pub async fn connect_with(
        url: &str,
        config: HistoryConfig,
        options: RedisOptions,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new_with_config(client, options.connection)
            .await
            .map_err(backend)?;
        let mut h = Self::with_connection(conn, config, options.prefix, options.clock);
        h.notices = options.notices;
        Ok(h)
    }

    /// A history on an existing connection (for instance the one a
    /// [`RedisQueue`](crate::RedisQueue) uses), with key prefix `prefix` and `clock`.
    pub fn with_connection(
        conn: ConnectionManager,
        config: HistoryConfig,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_counted(Counted::new(conn, "history"), config, prefix, clock)
    }

    /// As [`with_connection`](Self::with_connection), on a connection counted already.
    pub(crate) fn with_counted(
        conn: Counted,
        config: HistoryConfig,
        prefix: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            conn,
            config,
            prefix: prefix.into(),
            clock,
            notices: None,
        }
    }

    /// Publishes a notice of each appended publication (see
    /// [`RedisOptions::notices`](crate::RedisOptions::notices)): on `<channel_prefix><stream>`,
    /// `"<epoch> <offset>\n<payload>"`, in the same script, in offset order. Streams whose
    /// name starts with NUL (the hub's conversations) publish nothing.
    pub fn with_notices(mut self, channel_prefix: impl Into<String>) -> Self {
        self.notices = Some(channel_prefix.into());
        self
    }

    /// The bounds it enforces.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Its key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn append_inner(
        &self,
        stream: &str,
        payloads: &[Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> Result<StreamState, QueueError> {
        self.config.check_append(stream, payloads)?;
        let mut inv = APPEND.prepare_invoke();
        inv.arg(&self.prefix);
        self.append_args(&mut inv, stream, payloads, retention, new_epoch);
        let r: Vec<Vec<u8>> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        appended(&r, stream)
    }

    /// The append's arguments after the prefix (history_append_fn.lua's).
    pub(crate) fn append_args(
        &self,
        inv: &mut ScriptInvocation<'_>,
        stream: &str,
        payloads: &[Bytes],
        retention: Retention,
        new_epoch: u64,
    ) {
        let c = &self.config;
        inv.arg(stream)
            .arg(self.clock.now_ms().to_string())
            .arg(new_epoch.to_string())
            .arg(retention.max_len.max(1).to_string())
            .arg(
                retention
                    .max_age
                    .map_or_else(String::new, |a| millis(a).to_string()),
            )
            .arg(c.max_streams.to_string())
            .arg(c.max_total_bytes.to_string())
            .arg(match &self.notices {
                Some(p) if !stream.starts_with('\0') => [p.as_bytes(), stream.as_bytes()].concat(),
                _ => Vec::new(),
            });
        for p in payloads {
            inv.arg(p.as_ref());
        }
    }

    async fn read_inner(
        &self,
        stream: &str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> Result<Option<Page>, QueueError> {
        check_stream(stream)?;
        let r: Option<Vec<Vec<u8>>> = READ
            .arg(&self.prefix)
            .arg(stream)
            .arg(self.clock.now_ms().to_string())
            .arg(match direction {
                Direction::Forward => "f",
                Direction::Backward => "b",
            })
            .arg(from.to_string())
            .arg(limit.min(i64::MAX as usize).to_string())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let Some(r) = r else {
            return Ok(None);
        };
        if r.len() < 3 || r.len() % 3 != 0 {
            return Err(corrupt("read"));
        }
        let n = r.len() / 3 - 1;
        let mut publications = Vec::with_capacity(n);
        let mut it = r.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let state = StreamState::new(num(&next())?, num(&next())?, num(&next())?);
        for _ in 0..n {
            let offset = num(&next())?;
            let at_ms = num(&next())?;
            publications.push(Publication::new(offset, Bytes::from(next()), at_ms));
        }
        Ok(Some(Page::new(state, publications)))
    }

    async fn remove_inner(&self, stream: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let n: u64 = REMOVE
            .arg(&self.prefix)
            .arg(stream)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn sweep_inner(&self) -> Result<u64, QueueError> {
        let now = self.clock.now_ms().to_string();
        let mut removed = 0;
        loop {
            let (n, examined): (u64, u64) = SWEEP
                .arg(&self.prefix)
                .arg(&now)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)?;
            removed += n;
            if examined < SWEEP_BATCH {
                return Ok(removed);
            }
        }
    }
}

impl History for RedisHistory {
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payloads: &'a [Bytes],
        retention: Retention,
        new_epoch: u64,
    ) -> BoxFuture<'a, Result<StreamState, QueueError>> {
        Box::pin(self.append_inner(stream, payloads, retention, new_epoch))
    }

    fn state<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamState>, QueueError>> {
        Box::pin(async move {
            Ok(self
                .read_inner(stream, 0, Direction::Forward, 0)
                .await?
                .map(|p| p.state))
        })
    }

    fn read<'a>(
        &'a self,
        stream: &'a str,
        from: Offset,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Page>, QueueError>> {
        Box::pin(self.read_inner(stream, from, direction, limit))
    }

    fn remove<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, Result<bool, QueueError>> {
        Box::pin(self.remove_inner(stream))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.sweep_inner())
    }
}
