//! [`RedisSignOns`]: the sign-on decision in Redis.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chinwag_hub::{ConnId, ConnRef, Device, NodeId, SignOn, SignOnOutcome, SignedOn, ids};
use chinwag_queue_redis::Counted;
use redis::Script;
use redis::aio::{ConnectionLike, ConnectionManager};

use crate::ClusterError;

/// The key prefix [`RedisSignOns::new`] uses.
pub const DEFAULT_PREFIX: &str = "chinwag:cluster:";

static SIGN_ON: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sign_on.lua")));
static SIGN_OFF: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sign_off.lua")));

/// The hub's sign-on policies decided cluster-wide, in Redis. Cloning is cheap and shares the
/// connection.
///
/// Generic over the connection: a [`ConnectionManager`] counted for `/metrics`
/// ([`Counted`], `conn = "directory"`: what [`connect`](Self::connect) makes: multiplexed,
/// reconnects by itself), a plain
/// [`MultiplexedConnection`](redis::aio::MultiplexedConnection), or any other
/// [`ConnectionLike`] that can be cloned cheaply. Scripts run with `EVALSHA`, falling back to
/// loading the script when Redis does not know it (after a restart, on a new shard).
///
/// # What it guarantees
///
/// Every [`sign_on`](Self::sign_on) and [`sign_off`](Self::sign_off) of one user is one Lua
/// script on one key, so Redis runs them one at a time, in one order, whichever node sent them:
/// the outcomes are exactly those of a one-node [`SignOnTable`](chinwag_hub::SignOnTable) fed
/// the same calls in that order. In particular, under `Single` any number of concurrent
/// sign-ons of one user leave exactly one connection (the last Redis ran), and every other is
/// reported replaced exactly once, by the sign-on that came right after it; none is refused
/// (newest wins).
///
/// Sign-on order ([`SignOnOutcome::seq`]) is per user: 1, 2, 3, ... for each user, never
/// repeated (the counter stays when the user goes offline). Among one user's connections the
/// larger is the newer, which is what the hub promises
/// ([`Conn::sign_on_seq`](chinwag_hub::Conn::sign_on_seq)); unlike the one-node table, seqs of
/// different users are not comparable.
///
/// # Layout
///
/// One hash per user, `P{user}:s` (`P` the prefix; the braces make the user id the key's hash
/// tag, so a user's keys share a Redis Cluster slot):
///
/// | field | value |
/// |---|---|
/// | `n` | the user's last sign-on seq |
/// | `<node>:<conn>` (decimal [`NodeId`], [`ConnId`]), one per signed-on connection | `<seq>:<device>` |
///
/// The hash stays when its user goes offline (only `n` left: about 100 bytes per user ever
/// signed on). The node id in each field is where a later node-liveness sweep will find a dead
/// node's connections (see `docs/cluster.md`); nothing expires yet.
///
/// # Example
///
/// Two nodes, each with its own connection to the same Redis:
///
/// ```no_run
/// use chinwag::cluster::redis::RedisSignOns;
/// use chinwag::hub::{ConnId, ConnRef, Device, NodeId, SignOn};
///
/// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
/// let a = RedisSignOns::connect("redis://127.0.0.1:6379/").await?;
/// let b = RedisSignOns::connect("redis://127.0.0.1:6379/").await?;
/// let on_a = ConnRef { node: NodeId(1), conn: ConnId(10) };
/// let on_b = ConnRef { node: NodeId(2), conn: ConnId(20) };
/// a.sign_on(&Device::new("bob", "phone"), on_a, SignOn::Single).await?;
/// let out = b.sign_on(&Device::new("bob", "laptop"), on_b, SignOn::Single).await?;
/// assert_eq!(out.replaced[0].conn, on_a); // node 1 must close its connection 10
/// assert_eq!(a.connections("bob").await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSignOns<C = Counted> {
    pub(crate) conn: C,
    prefix: Arc<str>,
}

impl<C> std::fmt::Debug for RedisSignOns<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSignOns")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSignOns<Counted> {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/0`) with a
    /// [`ConnectionManager`] and the [`DEFAULT_PREFIX`]. Fails if Redis cannot be reached now;
    /// afterwards the connection reconnects by itself.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// let signons = chinwag::cluster::redis::RedisSignOns::connect("redis://127.0.0.1/").await?;
    /// # let _ = signons;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url)?;
        let conn = Counted::new(ConnectionManager::new(client).await?, "directory");
        Ok(Self::new(conn))
    }
}

impl<C> RedisSignOns<C>
where
    C: ConnectionLike + Clone + Send + Sync,
{
    /// Sign-ons on `conn`, under the [`DEFAULT_PREFIX`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// use chinwag::cluster::redis::{RedisSignOns, redis};
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let conn = client.get_multiplexed_async_connection().await?;
    /// let signons = RedisSignOns::new(conn);
    /// # let _ = signons;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.into(),
        }
    }

    /// Sign-ons on `conn` under `prefix`: stores with different prefixes on one Redis are
    /// independent. Fails with [`ClusterError::BadPrefix`] if `prefix` contains `{` or `}`
    /// (the user id must be the keys' hash tag).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// use chinwag::cluster::redis::{RedisSignOns, redis};
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let conn = client.get_multiplexed_async_connection().await?;
    /// let signons = RedisSignOns::with_prefix(conn, "myapp:cluster:")?;
    /// assert_eq!(signons.prefix(), "myapp:cluster:");
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_prefix(conn: C, prefix: &str) -> Result<Self, ClusterError> {
        if prefix.contains(['{', '}']) {
            return Err(ClusterError::BadPrefix(prefix.to_owned()));
        }
        Ok(Self {
            conn,
            prefix: prefix.into(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of `user`'s sign-ons, `P{user}:s` (for operators and tests; the layout is
    /// in the type's docs).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// let signons = chinwag::cluster::redis::RedisSignOns::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(signons.key("alice"), "chinwag:cluster:{alice}:s");
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(&self, user: &str) -> String {
        format!("{}{{{user}}}:s", self.prefix)
    }

    /// Signs `conn` of `device` on under `policy`, as
    /// [`SignOnTable::sign_on`](chinwag_hub::SignOnTable::sign_on) does but for the whole
    /// cluster: returns its sign-on order and the connections it replaces (oldest first, on
    /// any node, already removed from Redis; the caller has them closed).
    ///
    /// Fails on a bad user or device id, a `conn` signed on already (nothing changes then), or
    /// when Redis fails. A reply lost to a failing connection leaves it unknown whether the
    /// sign-on happened; the caller treats the connection as refused and signs it off.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// use chinwag::hub::{ConnId, ConnRef, Device, NodeId, SignOn};
    /// let signons = chinwag::cluster::redis::RedisSignOns::connect("redis://127.0.0.1/").await?;
    /// let phone = ConnRef { node: NodeId(1), conn: ConnId(1) };
    /// let out = signons
    ///     .sign_on(&Device::new("carol", "phone"), phone, SignOn::PerDevice)
    ///     .await?;
    /// assert!(out.replaced.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sign_on(
        &self,
        device: &Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> Result<SignOnOutcome, ClusterError> {
        Ok(self.sign_on_online(device, conn, policy).await?.0)
    }

    /// [`sign_on`](Self::sign_on), plus whether the user had no connection on any node before
    /// it (it came online), decided in the same script.
    pub(crate) async fn sign_on_online(
        &self,
        device: &Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> Result<(SignOnOutcome, bool), ClusterError> {
        ids::check_user(&device.user).map_err(ClusterError::BadUser)?;
        ids::check_device(&device.device).map_err(ClusterError::BadDevice)?;
        let (name, max) = match policy {
            SignOn::Single => ("single", 0),
            SignOn::PerDevice => ("per_device", 0),
            SignOn::Multi { max } => ("multi", max),
            other => return Err(ClusterError::UnsupportedPolicy(other)),
        };
        let r: Vec<Vec<u8>> = SIGN_ON
            .key(self.key(&device.user))
            .arg(field(conn))
            .arg(device.device.as_bytes())
            .arg(name)
            .arg(max.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        match r.as_slice() {
            [dup] if dup == b"dup" => Err(ClusterError::AlreadySignedOn(conn)),
            [ok, seq, online, rest @ ..] if ok == b"ok" && rest.len() % 3 == 0 => Ok((
                SignOnOutcome {
                    seq: number(seq)?,
                    replaced: rest
                        .chunks_exact(3)
                        .map(|e| entry(&e[0], &e[1], &e[2]))
                        .collect::<Result<_, _>>()?,
                },
                online == b"1",
            )),
            _ => Err(ClusterError::Corrupt(
                "unexpected reply of the sign-on script".into(),
            )),
        }
    }

    /// `conn` of `user` closed: removes it, as
    /// [`SignOnTable::sign_off`](chinwag_hub::SignOnTable::sign_off) does. Returns whether
    /// `user` now has no connection on any node (false when `conn` was not signed on, e.g.
    /// it was replaced). Idempotent.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// use chinwag::hub::{ConnId, ConnRef, NodeId};
    /// let signons = chinwag::cluster::redis::RedisSignOns::connect("redis://127.0.0.1/").await?;
    /// let gone = ConnRef { node: NodeId(1), conn: ConnId(1) };
    /// if signons.sign_off("carol", gone).await? {
    ///     // carol is offline everywhere
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sign_off(&self, user: &str, conn: ConnRef) -> Result<bool, ClusterError> {
        Ok(self.sign_off_online(user, conn).await?.is_some())
    }

    /// [`sign_off`](Self::sign_off), and when the user went offline, the user's last sign-on
    /// seq then (what versions the transition for the online list), decided in the same
    /// script.
    pub(crate) async fn sign_off_online(
        &self,
        user: &str,
        conn: ConnRef,
    ) -> Result<Option<u64>, ClusterError> {
        ids::check_user(user).map_err(ClusterError::BadUser)?;
        let (gone, n): (u8, u64) = SIGN_OFF
            .key(self.key(user))
            .arg(field(conn))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((gone == 1).then_some(n))
    }

    /// The signed-on connections of `user` on every node, oldest first (one `HGETALL`).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// let signons = chinwag::cluster::redis::RedisSignOns::connect("redis://127.0.0.1/").await?;
    /// for s in signons.connections("carol").await? {
    ///     println!("node {} conn {} device {}", s.conn.node.0, s.conn.conn, s.device);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connections(&self, user: &str) -> Result<Vec<SignedOn>, ClusterError> {
        ids::check_user(user).map_err(ClusterError::BadUser)?;
        let all: HashMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key(user))
            .query_async(&mut self.conn.clone())
            .await?;
        let mut list = Vec::with_capacity(all.len().saturating_sub(1));
        for (f, v) in all {
            if f == b"n" {
                continue;
            }
            let (seq, device) = split(&v).ok_or_else(|| corrupt("an entry"))?;
            list.push(entry(&f, seq, device)?);
        }
        list.sort_by_key(|s| s.seq);
        Ok(list)
    }
}

/// A connection's field in its user's hash.
fn field(c: ConnRef) -> String {
    format!("{}:{}", c.node.0, c.conn.0)
}

fn corrupt(what: &str) -> ClusterError {
    ClusterError::Corrupt(format!("{what} is not what chinwag-cluster-redis writes"))
}

/// Splits `a:b` at the first `:`.
fn split(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = b.iter().position(|&c| c == b':')?;
    Some((&b[..at], &b[at + 1..]))
}

fn number(b: &[u8]) -> Result<u64, ClusterError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("a number"))
}

/// A connection from its field, seq and device as Redis holds them.
fn entry(field: &[u8], seq: &[u8], device: &[u8]) -> Result<SignedOn, ClusterError> {
    let (node, conn) = split(field).ok_or_else(|| corrupt("a connection field"))?;
    let device = std::str::from_utf8(device).map_err(|_| corrupt("a device id"))?;
    Ok(SignedOn {
        conn: ConnRef {
            node: NodeId(number(node)?),
            conn: ConnId(number(conn)?),
        },
        device: device.into(),
        seq: number(seq)?,
    })
}
