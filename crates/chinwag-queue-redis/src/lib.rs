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
//! use chinwag_queue::{Queue, QueueConfig};
//! use chinwag_queue_redis::{RedisOptions, RedisQueue};
//!
//! # async fn run() -> Result<(), chinwag_queue::QueueError> {
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

pub mod history;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use history::RedisHistory;

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use chinwag_queue::{
    BoxFuture, Clock, Entry, EntryId, Limit, OverflowPolicy, Queue, QueueConfig, QueueError,
    SystemClock, check_recipient, expiry,
};
use redis::Script;
use redis::aio::ConnectionManager;

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

static PUSH: LazyLock<Script> = LazyLock::new(|| script(include_str!("push.lua")));
static READ: LazyLock<Script> = LazyLock::new(|| script(include_str!("read.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| script(include_str!("ack.lua")));
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
    conn: ConnectionManager,
    config: QueueConfig,
    prefix: String,
    clock: Arc<dyn Clock>,
    notices: Option<String>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .field("notices", &self.notices)
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
            conn,
            config,
            prefix: options.prefix,
            clock: options.clock,
            notices: options.notices,
        })
    }

    fn now(&self) -> String {
        self.clock.now_ms().to_string()
    }

    async fn push_inner(
        &self,
        recipient: &str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> Result<EntryId, QueueError> {
        self.config.check_push(recipient, payload.len())?;
        let now = self.clock.now_ms();
        let exp = expiry(now, ttl).map_or_else(String::new, |e| e.to_string());
        let c = &self.config;
        let channel = self
            .notices
            .as_ref()
            .map_or_else(Vec::new, |p| [p.as_bytes(), recipient.as_bytes()].concat());
        let r: i64 = PUSH
            .arg(&self.prefix)
            .arg(recipient)
            .arg(payload.as_ref())
            .arg(now.to_string())
            .arg(exp)
            .arg(c.max_entries_per_recipient.to_string())
            .arg(c.max_bytes_per_recipient.to_string())
            .arg(c.max_total_bytes.to_string())
            .arg(if c.overflow == OverflowPolicy::DropOldest {
                "1"
            } else {
                "0"
            })
            .arg(channel)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
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
