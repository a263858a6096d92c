//! A [`Queue`] for chinwag on Redis: for deployments that outgrow one machine (several chinwag
//! nodes share the queues). Room history ([`History`](chinwag_queue::History)) on the same
//! Redis is [`RedisHistory`], built the same way (its layout is in the [`history`] module docs).
//!
//! Every operation is one Lua script, so it is atomic: a push reads the bounds, drops the oldest
//! entries if the policy says so, takes the next id (`INCR` on the recipient's counter) and
//! stores the entry in one step, and no reader ever sees half of it. The connection is a
//! [`redis::aio::ConnectionManager`], which reconnects by itself after Redis restarts or the
//! network drops; operations attempted while Redis is unreachable fail with
//! [`QueueError::Backend`] and may be retried.
//!
//! Time-to-live is evaluated with the queue's injected [`Clock`], whose time every script
//! receives as an argument (Redis's own key expiry is not used), so semantics and tests are
//! the same as the other backends'.
//!
//! # Durability
//!
//! A push returns once Redis executed the script. What survives a crash of **Redis** is what its
//! persistence keeps: with `appendonly yes` and `appendfsync always`, every acknowledged push;
//! with `appendfsync everysec` (Redis's default when AOF is on), up to about a second; with
//! RDB snapshots only, everything since the last snapshot may be lost. A crash of the chinwag
//! process loses nothing that Redis acknowledged. A push whose reply is lost (timeout, dropped
//! connection) may or may not have been stored: retrying can store it twice, which
//! at-least-once delivery allows.
//!
//! # Keys
//!
//! All keys start with [`RedisOptions::prefix`] (default `"chinwag:queue:"`). Per recipient `R`:
//! `q:R` (sorted set of entries by id), `x:R` (its expiring entries), `b:R` (its byte count),
//! `s:R` (its id counter, kept after the queue empties so ids are never reused); overall:
//! `g:total` (bytes) and `g:exp` (the sweep's index). The scripts build keys from the prefix,
//! so they need a single Redis (or a primary with replicas), not Redis Cluster.
//!
//! # Example
//!
//! ```no_run
//! use chinwag::queue::{Queue, QueueConfig};
//! use chinwag::queue::redis::{RedisOptions, RedisQueue};
//!
//! # async fn run() -> Result<(), chinwag::queue::QueueError> {
//! let options = RedisOptions::default().prefix("myapp:offline:");
//! let queue =
//!     RedisQueue::connect_with("redis://127.0.0.1:6379/", QueueConfig::default(), options)
//!         .await?;
//! let id = queue.push("alice", "hello".into(), None).await?;
//! for entry in queue.read("alice", 0, 100).await? {
//!     // ... deliver entry.payload, then:
//!     queue.ack("alice", entry.id).await?;
//! }
//! # let _ = id;
//! # Ok(())
//! # }
//! ```

pub mod counted;
pub mod history;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use counted::Counted;
pub use history::RedisHistory;

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use chinwag_queue::{
    BoxFuture, Clock, Entry, EntryId, HistoryConfig, Keep, Limit, OverflowPolicy, Pushed, Queue,
    QueueConfig, QueueError, SystemClock, check_recipient, expiry,
};
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

/// The `redis` crate this backend is built on, so callers configure connections with the same
/// version.
pub use redis;
/// Reconnection and timeout settings of the connection ([`RedisOptions::connection`]).
pub use redis::aio::ConnectionManagerConfig;

const PRELUDE: &str = include_str!("prelude.lua");

fn script(body: &str) -> Script {
    script_with(PRELUDE, body)
}

/// A Lua script: `prelude` (helpers shared by a family of scripts), then `body`.
pub(crate) fn script_with(prelude: &str, body: &str) -> Script {
    Script::new(&format!("{prelude}\n{body}"))
}

const PUSH_FN: &str = include_str!("push_fn.lua");
static PUSH: LazyLock<Script> =
    LazyLock::new(|| script(&format!("{PUSH_FN}\n{}", include_str!("push.lua"))));
/// Several pushes for one recipient in one script ([`Queue::push_many`]).
static PUSH_MANY: LazyLock<Script> =
    LazyLock::new(|| script(&format!("{PUSH_FN}\n{}", include_str!("push_many.lua"))));
/// Most pushes one `push_many` script carries; a longer run takes several, one after the other.
const PUSH_MANY_CHUNK: usize = 256;
/// A push and a history append in one script ([`RedisQueue::keeping`]).
static PUSH_KEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}\n{PUSH_FN}\n{}\n{}",
        history::APPEND_FN,
        include_str!("push_keep.lua")
    ))
});
static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("read.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("ack.lua")));
static ACK_MANY: LazyLock<Script> = LazyLock::new(|| script(include_str!("ack_many.lua")));
static LEN: LazyLock<Script> = LazyLock::new(|| script(include_str!("len.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| script(include_str!("sweep.lua")));

/// Most expired entries one sweep script removes, so a sweep never blocks Redis for long;
/// [`Queue::sweep`] runs the script until it finds fewer.
pub const SWEEP_BATCH: u64 = 1000;

/// Connection options beside the queue's bounds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key. Default `"chinwag:queue:"`. Queues with different prefixes on one
    /// Redis are independent.
    pub prefix: String,
    /// Where time comes from. Default [`SystemClock`]. Every node sharing a Redis should use
    /// the same (synchronised) time source.
    pub clock: Arc<dyn Clock>,
    /// Reconnection and timeout behaviour of the connection. Default
    /// [`ConnectionManagerConfig::default`].
    pub connection: ConnectionManagerConfig,
    /// Push notices: when set, every push also `PUBLISH`es, in the same script (so in the
    /// queue's order, right after the entry is stored), to the channel `<this><recipient>`
    /// the message `"<entry id>\n<payload>"`. Default `None`. A cluster of hubs sets it so
    /// that the nodes holding the recipient's connections hear of the entry at once
    /// (`chinwag-cluster-redis`); pub/sub is at most once, so a listener that missed a notice
    /// reads the queue. A [`RedisHistory`] connected with this option publishes each appended
    /// publication of a room stream on `<this><stream>` as `"<epoch> <offset>\n<payload>"`
    /// ([`RedisHistory::with_notices`]).
    pub notices: Option<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "chinwag:queue:".to_owned(),
            clock: Arc::new(SystemClock),
            connection: ConnectionManagerConfig::default(),
            notices: None,
        }
    }
}

impl RedisOptions {
    /// Sets `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Sets `connection`.
    pub fn connection(mut self, connection: ConnectionManagerConfig) -> Self {
        self.connection = connection;
        self
    }
    /// Publishes a notice of each push on `<channel_prefix><recipient>` (see
    /// [`notices`](Self::notices)).
    pub fn notices(mut self, channel_prefix: impl Into<String>) -> Self {
        self.notices = Some(channel_prefix.into());
        self
    }
}

/// The Redis queue. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisQueue {
    conn: Counted,
    config: QueueConfig,
    prefix: String,
    clock: Arc<dyn Clock>,
    notices: Option<String>,
    /// The history [`Queue::push_keeping`] appends to in the push's script.
    keeps: Option<RedisHistory>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .field("notices", &self.notices)
            .field("keeps", &self.keeps)
            .finish_non_exhaustive()
    }
}

fn backend(e: redis::RedisError) -> QueueError {
    QueueError::backend(e)
}

impl RedisQueue {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`) with default
    /// [`RedisOptions`]. Fails if Redis cannot be reached now; afterwards the connection
    /// reconnects by itself.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        Self::connect_with(url, config, RedisOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(
        url: &str,
        config: QueueConfig,
        options: RedisOptions,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new_with_config(client, options.connection)
            .await
            .map_err(backend)?;
        Ok(Self {
            conn: Counted::new(conn, "queue"),
            config,
            prefix: options.prefix,
            clock: options.clock,
            notices: options.notices,
            keeps: None,
        })
    }

    /// A history on this queue's connection, with its key prefix and clock (for
    /// [`keeping`](Self::keeping)).
    pub fn history(&self, config: HistoryConfig) -> RedisHistory {
        RedisHistory::with_counted(
            self.conn.clone(),
            config,
            self.prefix.clone(),
            self.clock.clone(),
        )
    }

    /// Keeps `history` (built by [`history`](Self::history), with notices or not): then
    /// [`Queue::push_keeping`] appends to it in the push's own script, atomically and in one
    /// round trip instead of two. The hub keeps a direct message in its conversation this way;
    /// give the hub this same history (the facade does).
    ///
    /// # Errors
    ///
    /// `history` has another key prefix than this queue (it was not built by
    /// [`history`](Self::history)).
    pub fn keeping(mut self, history: RedisHistory) -> Result<Self, QueueError> {
        if history.prefix() != self.prefix {
            return Err(QueueError::backend(format!(
                "a queue keeps a history with its own key prefix ({:?}), not {:?}",
                self.prefix,
                history.prefix()
            )));
        }
        self.keeps = Some(history);
        Ok(self)
    }

    fn now(&self) -> String {
        self.clock.now_ms().to_string()
    }

    /// The push script's arguments (push_fn.lua's).
    fn push_args(
        &self,
        inv: &mut ScriptInvocation<'_>,
        recipient: &str,
        payload: &Bytes,
        ttl: Option<Duration>,
    ) {
        let now = self.clock.now_ms();
        let exp = expiry(now, ttl).map_or_else(String::new, |e| e.to_string());
        inv.arg(&self.prefix)
            .arg(recipient)
            .arg(payload.as_ref())
            .arg(now.to_string())
            .arg(exp);
        self.bound_args(inv, recipient);
    }

    /// The last arguments of a push (push_fn.lua's, push_many.lua's): the bounds, the overflow
    /// policy and the channel of push notices.
    fn bound_args(&self, inv: &mut ScriptInvocation<'_>, recipient: &str) {
        let c = &self.config;
        let channel = self
            .notices
            .as_ref()
            .map_or_else(Vec::new, |p| [p.as_bytes(), recipient.as_bytes()].concat());
        inv.arg(c.max_entries_per_recipient.to_string())
            .arg(c.max_bytes_per_recipient.to_string())
            .arg(c.max_total_bytes.to_string())
            .arg(if c.overflow == OverflowPolicy::DropOldest {
                "1"
            } else {
                "0"
            })
            .arg(channel);
    }

    async fn push_inner(
        &self,
        recipient: &str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> Result<EntryId, QueueError> {
        self.config.check_push(recipient, payload.len())?;
        let mut inv = PUSH.prepare_invoke();
        self.push_args(&mut inv, recipient, &payload, ttl);
        let r: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        pushed(r, recipient)
    }

    async fn push_keeping_inner(
        &self,
        recipient: &str,
        payload: Bytes,
        ttl: Option<Duration>,
        keep: Keep<'_>,
    ) -> Result<Pushed, QueueError> {
        let Some(h) = &self.keeps else {
            let id = self.push_inner(recipient, payload, ttl).await?;
            return Ok(Pushed::new(id, None));
        };
        self.config.check_push(recipient, payload.len())?;
        let payloads = [keep.payload];
        if let Err(e) = h.config().check_append(keep.stream, &payloads) {
            // The append is refused before it reaches Redis: the push alone.
            let id = self.push_inner(recipient, payload, ttl).await?;
            return Ok(Pushed::new(id, Some(Err(e))));
        }
        let mut inv = PUSH_KEEP.prepare_invoke();
        self.push_args(&mut inv, recipient, &payload, ttl);
        h.append_args(
            &mut inv,
            keep.stream,
            &payloads,
            keep.retention,
            keep.new_epoch,
        );
        let r: Vec<Vec<u8>> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        let Some((id, appended)) = r.split_first() else {
            return Err(QueueError::backend("push_keep script returned nothing"));
        };
        let id: i64 = std::str::from_utf8(id)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| QueueError::backend("push_keep script returned a bad id"))?;
        let id = pushed(id, recipient)?;
        Ok(Pushed::new(
            id,
            Some(history::appended(appended, keep.stream)),
        ))
    }

    async fn read_inner(
        &self,
        recipient: &str,
        after: EntryId,
        max: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        check_recipient(recipient)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let members: Vec<Vec<u8>> = READ
            .arg(&self.prefix)
            .arg(recipient)
            .arg(after.to_string())
            .arg(max.min(i64::MAX as usize).to_string())
            .arg(self.now())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        members.into_iter().map(parse_member).collect()
    }

    async fn count(&self, s: &Script, recipient: &str, arg: String) -> Result<u64, QueueError> {
        check_recipient(recipient)?;
        s.arg(&self.prefix)
            .arg(recipient)
            .arg(arg)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)
    }

    async fn push_many_inner(
        &self,
        recipient: &str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> Vec<Result<EntryId, QueueError>> {
        // Items that fail the checks are answered here; the others go in scripts of
        // PUSH_MANY_CHUNK, in order.
        let mut out: Vec<Option<Result<EntryId, QueueError>>> = Vec::with_capacity(items.len());
        let mut checked = Vec::with_capacity(items.len());
        for (i, (payload, ttl)) in items.into_iter().enumerate() {
            match self.config.check_push(recipient, payload.len()) {
                Ok(()) => {
                    checked.push((i, payload, ttl));
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let now = self.clock.now_ms();
        for chunk in checked.chunks(PUSH_MANY_CHUNK) {
            let mut inv = PUSH_MANY.prepare_invoke();
            inv.arg(&self.prefix).arg(recipient).arg(now.to_string());
            self.bound_args(&mut inv, recipient);
            for (_, payload, ttl) in chunk {
                let exp = expiry(now, *ttl).map_or_else(String::new, |e| e.to_string());
                inv.arg(payload.as_ref()).arg(exp);
            }
            let r: Result<Vec<i64>, QueueError> = inv
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(backend)
                .and_then(|r: Vec<i64>| {
                    if r.len() == chunk.len() {
                        Ok(r)
                    } else {
                        Err(QueueError::backend(
                            "push_many script: one result per push expected",
                        ))
                    }
                });
            match r {
                Ok(results) => {
                    for ((i, _, _), r) in chunk.iter().zip(results) {
                        out[*i] = Some(pushed(r, recipient));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (i, _, _) in chunk {
                        out[*i] = Some(Err(QueueError::backend(msg.clone())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::backend("no answer for a push"))))
            .collect()
    }

    async fn ack_many_inner(&self, acks: &[(&str, EntryId)]) -> Result<Vec<u64>, QueueError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = ACK_MANY.prepare_invoke();
        inv.arg(&self.prefix);
        for (recipient, up_to) in acks {
            check_recipient(recipient)?;
            inv.arg(*recipient).arg(up_to.to_string());
        }
        let removed: Vec<u64> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        if removed.len() != acks.len() {
            return Err(QueueError::backend(
                "ack_many script: one count per ack expected",
            ));
        }
        Ok(removed)
    }

    async fn sweep_inner(&self) -> Result<u64, QueueError> {
        let now = self.now();
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

/// The push script's answer: the new id, or the bound that refused the push.
fn pushed(r: i64, recipient: &str) -> Result<EntryId, QueueError> {
    let limit = match r {
        id if id > 0 => return Ok(id.unsigned_abs()),
        -1 => Limit::EntriesPerRecipient,
        -2 => Limit::BytesPerRecipient,
        -3 => Limit::TotalBytes,
        other => {
            return Err(QueueError::backend(format!("push script returned {other}")));
        }
    };
    Err(QueueError::Full {
        recipient: recipient.to_owned(),
        limit,
    })
}

/// Parses `"<id>:<expires_at or empty>:<payload>"`.
fn parse_member(m: Vec<u8>) -> Result<Entry, QueueError> {
    let corrupt = || QueueError::backend("corrupt queue entry in Redis");
    let a = m.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
    let b = a
        + 1
        + m[a + 1..]
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(corrupt)?;
    let num = |s: &[u8]| -> Result<u64, QueueError> {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(corrupt)
    };
    let id = num(&m[..a])?;
    let exp = if b == a + 1 {
        None
    } else {
        Some(num(&m[a + 1..b])?)
    };
    let payload = Bytes::from(m).slice(b + 1..);
    Ok(Entry::new(id, payload, exp))
}

impl Queue for RedisQueue {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        Box::pin(self.push_inner(recipient, payload, ttl))
    }

    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        Box::pin(self.read_inner(recipient, after, max))
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(self.count(&ACK, recipient, up_to.to_string()))
    }

    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(self.count(&LEN, recipient, self.now()))
    }

    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        Box::pin(self.count(&ACK, recipient, "+inf".to_owned()))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        Box::pin(self.sweep_inner())
    }

    fn push_keeping<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
        keep: Keep<'a>,
    ) -> BoxFuture<'a, Result<Pushed, QueueError>> {
        Box::pin(self.push_keeping_inner(recipient, payload, ttl, keep))
    }

    fn keeps_history(&self) -> bool {
        self.keeps.is_some()
    }

    fn ack_many<'a>(
        &'a self,
        acks: &'a [(&'a str, EntryId)],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        Box::pin(self.ack_many_inner(acks))
    }

    fn push_many<'a>(
        &'a self,
        recipient: &'a str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
        Box::pin(self.push_many_inner(recipient, items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_bad_ones_are_errors() {
        let e = parse_member(b"12:345:a:b".to_vec()).expect("valid member");
        assert_eq!((e.id, e.expires_at), (12, Some(345)), "id and expiry");
        assert_eq!(e.payload, "a:b", "payload may contain ':'");
        let e = parse_member(b"7::".to_vec()).expect("valid member");
        assert_eq!(
            (e.id, e.expires_at, e.payload.len()),
            (7, None, 0),
            "no ttl, empty"
        );
        for bad in [&b""[..], b"12", b"12:3", b"x:1:p", b"1:y:p"] {
            assert!(
                parse_member(bad.to_vec()).is_err(),
                "{bad:?} must be an error"
            );
        }
    }
}
