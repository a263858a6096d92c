//! Node leases, the sweep of dead nodes' entries, and fencing (see `docs/cluster.md`).
//!
//! Keys (`P` the prefix; every key of one node shares the hash tag `{node:<id>}`):
//!
//! ```text
//! P{node:<id>}:lease   string  the node's lease: a random token of the process, PX ttl
//! P{node:<id>}:users   set     users this node signed connections on for (a superset)
//! P{node:<id>}:sweep   string  a sweeper's lock on this node (SET NX PX), its token
//! P{cluster}:nodes     set     node ids registered and not swept yet
//! ```

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chinwag_hub::{Close, CloseCode, DirectoryError, NodeId, WeakHub};
use chinwag_queue_redis::Counted;
use futures_util::StreamExt;
use redis::Script;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::directory::{DirectoryConfig, ListenerStatus};
use crate::{ClusterError, RedisSignOns};

static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sweep.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("renew.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("unlock.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("finish_sweep.lua")));
pub(crate) static ROOM_JOIN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("room_join.lua")));
pub(crate) static ROOM_LEAVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("room_leave.lua")));

/// How many users of a dead node a sweep handles at once.
const SWEEP_CONCURRENCY: usize = 16;

/// The reason sent with close code 1001 (`going_away`) to the connections of a node that
/// fenced itself: its lease expired, or may have, so the cluster may have swept its sign-ons.
pub const FENCED_REASON: &str = "node fenced";

/// Metric names (the `metrics` crate, as the hub's are).
pub mod metric_names {
    /// Gauge: nodes whose lease existed at this node's last look, itself included.
    pub const NODES_ALIVE: &str = "chinwag_cluster_nodes_alive";
    /// Counter: dead nodes this node swept.
    pub const SWEEPS: &str = "chinwag_cluster_sweeps_total";
    /// Counter: sign-on entries this node's sweeps removed.
    pub const SWEPT_ENTRIES: &str = "chinwag_cluster_swept_entries_total";
    /// Counter: lease renewals that failed (Redis failed or did not answer in time).
    pub const LEASE_RENEWALS_FAILED: &str = "chinwag_cluster_lease_renewals_failed_total";
    /// Counter: times this node fenced itself (0 or 1 per process).
    pub const FENCED: &str = "chinwag_cluster_fenced_total";
    /// Gauge: 1 while the listener is subscribed on Redis (close instructions, push notices,
    /// room publications reach this node), 0 while it reconnects.
    pub const SUBSCRIBED: &str = "chinwag_cluster_subscribed";
    /// Counter: times the listener had to subscribe again (its pub/sub connection dropped, or
    /// a ping went unanswered).
    pub const RESUBSCRIPTIONS: &str = "chinwag_cluster_resubscriptions_total";
    /// Counter, by `kind` (`user`, `room`): notices of other nodes' pushes and publications
    /// handed to the hub.
    pub const NOTICES: &str = "chinwag_cluster_notices_total";
    /// Counter: users and rooms made to read the queue or history after a resubscription.
    pub const CATCH_UPS: &str = "chinwag_cluster_catch_ups_total";
}
use metric_names as m;

/// What [`RedisDirectory::sweep`](crate::RedisDirectory::sweep) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SweepOutcome {
    /// The node holds a lease: nothing to sweep.
    Alive,
    /// Another sweeper holds the node's lock: it sweeps (or its lock expires and the next
    /// sweep does).
    Locked,
    /// The node's entries are gone from the user hashes, its index and its registration.
    Swept {
        /// Users in the node's index (some may have had no entry left).
        users: u64,
        /// Entries (connections) removed.
        removed: u64,
        /// Users who had no connection left on any node (taken off the online list and count).
        offline: u64,
    },
}

/// This process's lease, as the sign-on path sees it, and the token the lease key holds.
#[derive(Debug)]
pub(crate) struct LeaseState {
    phase: Mutex<Phase>,
    /// The random token of this directory's lease (a lease key holding it was set by this
    /// process and never expired: a renewal only extends a key holding it, and a fenced
    /// process never registers again).
    token: String,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// `serve` has not registered the node yet.
    Unregistered,
    /// The lease is held at least until then (by this process's clock; a margin below Redis's
    /// expiry).
    Valid(Instant),
    /// Declared dead, or could not prove otherwise in time: refuses for good.
    Fenced,
}

impl LeaseState {
    pub(crate) fn new() -> Self {
        LeaseState {
            phase: Mutex::new(Phase::Unregistered),
            token: token(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node's lease has held without a break since it was registered, asked
    /// after a write: then no sweep of the node can have missed the write (a sweep removes
    /// only what it finds once the lease is gone, and a lease never comes back). Held by this
    /// process's clock ([`check`](Self::check)), or else if the lease key still holds this
    /// process's token (a renewal may just be late).
    pub(crate) async fn never_lapsed(
        &self,
        conn: &mut Counted,
        keys: &Keys,
        node: NodeId,
    ) -> Result<bool, ClusterError> {
        if self.check().is_ok() {
            return Ok(true);
        }
        let now: Option<String> = redis::cmd("GET")
            .arg(keys.lease(node))
            .query_async(conn)
            .await?;
        Ok(now.as_deref() == Some(self.token.as_str()))
    }

    /// Whether this node may act on sign-on decisions now.
    pub(crate) fn check(&self) -> Result<(), DirectoryError> {
        match *self.phase() {
            Phase::Unregistered => Err(DirectoryError::unavailable(
                "this node has not registered its cluster lease yet (RedisDirectory::serve)",
            )),
            Phase::Valid(until) if Instant::now() < until => Ok(()),
            Phase::Valid(_) | Phase::Fenced => Err(DirectoryError::Fenced),
        }
    }

    pub(crate) fn is_fenced(&self) -> bool {
        matches!(*self.phase(), Phase::Fenced)
    }

    /// A renewal sent at `sent` succeeded: valid until `until` (never moves back, never
    /// un-fences).
    fn valid_until(&self, until: Instant) {
        let mut p = self.phase();
        match *p {
            Phase::Fenced => {}
            Phase::Valid(old) if old >= until => {}
            _ => *p = Phase::Valid(until),
        }
    }

    fn fence(&self) -> bool {
        let mut p = self.phase();
        let first = !matches!(*p, Phase::Fenced);
        *p = Phase::Fenced;
        first
    }
}

/// The keys of the lease slice under a prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys(pub(crate) Arc<str>);

impl Keys {
    pub(crate) fn lease(&self, node: NodeId) -> String {
        format!("{}{{node:{}}}:lease", self.0, node.0)
    }
    pub(crate) fn users(&self, node: NodeId) -> String {
        format!("{}{{node:{}}}:users", self.0, node.0)
    }
    /// The rooms `node` had members in (a superset, like the user index).
    pub(crate) fn rooms(&self, node: NodeId) -> String {
        format!("{}{{node:{}}}:rooms", self.0, node.0)
    }
    /// `room`'s members on every node, and its users' connection counts.
    pub(crate) fn room_members(&self, room: &str) -> (String, String) {
        (
            format!("{}{{room:{room}}}:m", self.0),
            format!("{}{{room:{room}}}:u", self.0),
        )
    }
    fn lock(&self, node: NodeId) -> String {
        format!("{}{{node:{}}}:sweep", self.0, node.0)
    }
    pub(crate) fn nodes(&self) -> String {
        format!("{}{{cluster}}:nodes", self.0)
    }
    pub(crate) fn online(&self) -> String {
        format!("{}{{cluster}}:online", self.0)
    }
    /// The users online, a sorted set (every score 0) beside the counter.
    pub(crate) fn online_list(&self) -> String {
        format!("{}{{cluster}}:online:list", self.0)
    }
    /// The last transition applied to the list, per user (a hash).
    pub(crate) fn online_versions(&self) -> String {
        format!("{}{{cluster}}:online:versions", self.0)
    }
}

fn token() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

fn millis(d: Duration) -> u64 {
    d.as_millis().clamp(1, u64::MAX as u128) as u64
}

/// Takes `node`'s sweep lock for `ttl`; `None` when another sweeper holds it.
async fn lock(
    conn: &mut Counted,
    keys: &Keys,
    node: NodeId,
    ttl: Duration,
) -> Result<Option<String>, ClusterError> {
    let t = token();
    let ok: Option<String> = redis::cmd("SET")
        .arg(keys.lock(node))
        .arg(&t)
        .arg("NX")
        .arg("PX")
        .arg(millis(ttl))
        .query_async(conn)
        .await?;
    Ok(ok.map(|_| t))
}

async fn unlock(conn: &mut Counted, keys: &Keys, node: NodeId, token: &str) {
    let r: Result<u8, _> = UNLOCK
        .key(keys.lock(node))
        .arg(token)
        .invoke_async(conn)
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, node = node.0, "sweep lock not released (it expires)");
    }
}

/// Sweeps `node` if its lease is gone, under its lock (taken for `lock_ttl`).
pub(crate) async fn sweep(
    signons: &RedisSignOns<Counted>,
    keys: &Keys,
    node: NodeId,
    lock_ttl: Duration,
) -> Result<SweepOutcome, ClusterError> {
    let mut conn = signons.conn.clone();
    let Some(t) = lock(&mut conn, keys, node, lock_ttl).await? else {
        return Ok(SweepOutcome::Locked);
    };
    let r = sweep_locked(signons, keys, node).await;
    unlock(&mut conn, keys, node, &t).await;
    if let Ok(SweepOutcome::Swept { .. }) = r {
        metrics::counter!(m::SWEEPS).increment(1);
    }
    r
}

/// The sweep itself, the lock held. Checks the lease first: a node holding one is alive.
async fn sweep_locked(
    signons: &RedisSignOns<Counted>,
    keys: &Keys,
    node: NodeId,
) -> Result<SweepOutcome, ClusterError> {
    let mut conn = signons.conn.clone();
    let alive: bool = redis::cmd("EXISTS")
        .arg(keys.lease(node))
        .query_async(&mut conn)
        .await?;
    if alive {
        return Ok(SweepOutcome::Alive);
    }
    let prefix = format!("{}:", node.0);
    let (mut users, mut removed, mut offline) = (0u64, 0u64, 0u64);
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(keys.users(node))
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut conn)
            .await?;
        users += batch.len() as u64;
        let prefix = &prefix;
        let mut each = futures_util::stream::iter(batch)
            .map(|user| async move {
                if chinwag_hub::ids::check_user(&user).is_err() {
                    return Ok((0, 0));
                }
                let mut c = signons.conn.clone();
                let (n, gone, seq): (u64, u64, u64) = SWEEP
                    .key(signons.key(&user))
                    .arg(prefix.as_str())
                    .invoke_async(&mut c)
                    .await?;
                if gone == 1 {
                    // Right after the script: a sweeper dying in between leaves the user
                    // listed (and counted) until its next sign-on and sign-off (at most
                    // SWEEP_CONCURRENCY users in flight).
                    crate::online::moved(&c, keys, &user, crate::online::went_offline(seq)).await?;
                }
                Ok::<_, ClusterError>((n, gone))
            })
            .buffer_unordered(SWEEP_CONCURRENCY);
        while let Some(r) = each.next().await {
            let (n, gone) = r?;
            removed += n;
            offline += gone;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    // Its room memberships.
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(keys.rooms(node))
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut conn)
            .await?;
        for room in batch {
            let (m, u) = keys.room_members(&room);
            let _: u64 = ROOM_LEAVE
                .key(m)
                .key(u)
                .arg("p")
                .arg(prefix.as_str())
                .invoke_async(&mut conn)
                .await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let done: u8 = FINISH
        .key(keys.lease(node))
        .key(keys.users(node))
        .key(keys.rooms(node))
        .invoke_async(&mut conn)
        .await?;
    if done == 0 {
        // Re-registered with the same id while we swept: its index is the new process's.
        return Ok(SweepOutcome::Alive);
    }
    let _: u64 = redis::cmd("SREM")
        .arg(keys.nodes())
        .arg(node.0)
        .query_async(&mut conn)
        .await?;
    metrics::counter!(m::SWEPT_ENTRIES).increment(removed);
    if removed > 0 {
        tracing::info!(
            node = node.0,
            users,
            removed,
            offline,
            "cluster: swept a dead node's sign-ons"
        );
    }
    Ok(SweepOutcome::Swept {
        users,
        removed,
        offline,
    })
}

/// The lease task of one node ([`RedisDirectory::serve`](crate::RedisDirectory::serve)).
pub(crate) struct LeaseTask {
    pub(crate) signons: RedisSignOns<Counted>,
    pub(crate) keys: Keys,
    pub(crate) node: NodeId,
    pub(crate) config: DirectoryConfig,
    pub(crate) state: Arc<LeaseState>,
    pub(crate) hub: WeakHub,
    pub(crate) status: Arc<watch::Sender<ListenerStatus>>,
}

impl LeaseTask {
    fn ttl(&self) -> Duration {
        self.config.lease_ttl.max(Duration::from_millis(30))
    }

    /// How long after sending a successful renewal this process counts its lease as held: a
    /// tenth below the TTL, for the time the command took to reach Redis and clock rates.
    fn validity(&self) -> Duration {
        self.ttl() - self.ttl() / 10
    }

    pub(crate) async fn run(self) {
        let token = self.state.token.clone();
        loop {
            if self.hub.upgrade().is_none() {
                return;
            }
            match self.register(&token).await {
                Ok(true) => break,
                Ok(false) => tracing::warn!(
                    node = self.node.0,
                    "cluster: node id held by a live lease (another process?); waiting"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, node = self.node.0, "cluster: lease not registered; retrying")
                }
            }
            let step = (self.ttl() / 4).min(self.config.reconnect_max);
            tokio::time::sleep(step.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
        }
        let every = self.ttl() / 3;
        let mut next = Instant::now() + every;
        loop {
            let until = match *self.state.phase() {
                Phase::Valid(u) => u,
                _ => break,
            };
            tokio::time::sleep_until(next.min(until)).await;
            if self.hub.upgrade().is_none() {
                return;
            }
            let now = Instant::now();
            if now >= until {
                self.fence("the lease could not be renewed before it expired");
                break;
            }
            let renew = async {
                RENEW
                    .key(self.keys.lease(self.node))
                    .arg(&token)
                    .arg(millis(self.ttl()))
                    .invoke_async::<u8>(&mut self.signons.conn.clone())
                    .await
            };
            let limit = (until - now).min(self.config.timeout);
            match tokio::time::timeout(limit, renew).await {
                Ok(Ok(1)) => {
                    self.state.valid_until(now + self.validity());
                    self.status.send_modify(|s| s.renewals += 1);
                    next = now + every;
                    self.sweep_dead().await;
                }
                Ok(Ok(_)) => {
                    self.fence("its lease expired: the cluster declared it dead");
                    break;
                }
                Ok(Err(e)) => self.renewal_failed(&e.to_string(), &mut next, every),
                Err(_) => self.renewal_failed("timed out", &mut next, every),
            }
        }
        // Fenced: sign-ons are refused for good; close whatever is still attached now and then
        // (a sign-on decided just before the fence), until the hub stops.
        loop {
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            close_all(&hub);
            drop(hub);
            tokio::time::sleep(every).await;
        }
    }

    fn renewal_failed(&self, why: &str, next: &mut Instant, every: Duration) {
        tracing::warn!(
            node = self.node.0,
            error = why,
            "cluster: lease renewal failed"
        );
        metrics::counter!(m::LEASE_RENEWALS_FAILED).increment(1);
        self.status.send_modify(|s| s.renewals_failed += 1);
        *next = Instant::now() + every / 4;
    }

    /// Registers the node: sweeps what a former process with this id left (under the sweep
    /// lock, so no sweeper runs meanwhile), takes the lease, joins the registry. `Ok(false)`
    /// when a live lease holds the id, or a sweeper its lock.
    async fn register(&self, token: &str) -> Result<bool, ClusterError> {
        let mut conn = self.signons.conn.clone();
        let lock_ttl = self.config.sweep_lock.max(self.ttl());
        let Some(t) = lock(&mut conn, &self.keys, self.node, lock_ttl).await? else {
            return Ok(false);
        };
        let r = async {
            if sweep_locked(&self.signons, &self.keys, self.node).await? == SweepOutcome::Alive {
                return Ok(None);
            }
            let sent = Instant::now();
            let ok: Option<String> = redis::cmd("SET")
                .arg(self.keys.lease(self.node))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.ttl()))
                .query_async(&mut conn)
                .await?;
            Ok::<_, ClusterError>(ok.map(|_| sent))
        }
        .await;
        unlock(&mut conn, &self.keys, self.node, &t).await;
        let Some(sent) = r? else {
            return Ok(false);
        };
        let _: u64 = redis::cmd("SADD")
            .arg(self.keys.nodes())
            .arg(self.node.0)
            .query_async(&mut conn)
            .await?;
        self.state.valid_until(sent + self.validity());
        self.status.send_modify(|s| s.registered = true);
        tracing::info!(node = self.node.0, ttl = ?self.ttl(), "cluster: node registered");
        Ok(true)
    }

    /// Looks at every registered node's lease; sweeps those gone. Failures only log.
    async fn sweep_dead(&self) {
        let mut conn = self.signons.conn.clone();
        let r = async {
            // Ourselves again, in case a sweep of an expired former process removed us.
            let _: u64 = redis::cmd("SADD")
                .arg(self.keys.nodes())
                .arg(self.node.0)
                .query_async(&mut conn)
                .await?;
            let nodes: Vec<u64> = redis::cmd("SMEMBERS")
                .arg(self.keys.nodes())
                .query_async(&mut conn)
                .await?;
            let mut pipe = redis::pipe();
            for n in &nodes {
                pipe.cmd("EXISTS").arg(self.keys.lease(NodeId(*n)));
            }
            let alive: Vec<bool> = pipe.query_async(&mut conn).await?;
            let live = alive.iter().filter(|a| **a).count();
            metrics::gauge!(m::NODES_ALIVE).set(live as f64);
            self.status.send_modify(|s| s.nodes_alive = live as u64);
            for (n, a) in nodes.into_iter().zip(alive) {
                if a || n == self.node.0 {
                    continue;
                }
                let out = sweep(
                    &self.signons,
                    &self.keys,
                    NodeId(n),
                    self.config.sweep_lock.max(self.ttl()),
                )
                .await?;
                if let SweepOutcome::Swept { removed, .. } = out {
                    self.status.send_modify(|s| {
                        s.sweeps += 1;
                        s.swept += removed;
                    });
                }
            }
            Ok::<_, ClusterError>(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, node = self.node.0, "cluster: looking for dead nodes failed");
        }
    }

    fn fence(&self, why: &str) {
        if !self.state.fence() {
            return;
        }
        tracing::error!(
            node = self.node.0,
            why,
            "cluster: node fenced; closing its connections and refusing sign-ons (restart it with a new node id)"
        );
        metrics::counter!(m::FENCED).increment(1);
        let n = self.hub.upgrade().map_or(0, |h| close_all(&h));
        self.status.send_modify(|s| {
            s.fenced = true;
            s.fenced_closed += n as u64;
        });
    }
}

/// Closes every connection of `hub` with 1001 and [`FENCED_REASON`]. Returns how many.
fn close_all(hub: &chinwag_hub::Hub) -> usize {
    let conns = hub.local_connections();
    for c in &conns {
        hub.close(c, Close::new(CloseCode::GOING_AWAY, FENCED_REASON));
    }
    conns.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chinwag_queue_redis::test_server::RedisServer;
    use redis::aio::ConnectionManager;

    /// With the process's clock no help (not registered yet), `never_lapsed` asks Redis: the
    /// lease key must hold this process's token, not be gone nor hold another's.
    #[tokio::test]
    async fn a_lapsed_lease_is_told_by_its_key() {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = Counted::new(ConnectionManager::new(client).await.unwrap(), "test");
        let keys = Keys("t:".into());
        let node = NodeId(3);
        let state = LeaseState::new();
        assert!(
            state.check().is_err(),
            "unregistered: the clock cannot tell"
        );
        let held = |conn: &mut Counted| {
            let mut conn = conn.clone();
            let (state, keys) = (&state, &keys);
            async move { state.never_lapsed(&mut conn, keys, node).await.unwrap() }
        };
        assert!(!held(&mut conn).await, "no lease key");
        let set = |value: String| redis::cmd("SET").arg(keys.lease(node)).arg(value).clone();
        let () = set(token()).query_async(&mut conn).await.unwrap();
        assert!(!held(&mut conn).await, "another process's token");
        let () = set(state.token.clone())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(held(&mut conn).await, "this process's token");
        state.valid_until(Instant::now() + Duration::from_secs(60));
        let _: u64 = redis::cmd("DEL")
            .arg(keys.lease(node))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            held(&mut conn).await,
            "valid by the clock: Redis is not asked"
        );
    }
}
