//! [`RedisDirectory`]: the hub's [`Directory`] over Redis, with close delivery across nodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::{
    ClusterMembers, ConnId, ConnRef, Device, Directory, DirectoryError, Hub, NodeId, RoomRecord,
    SignOn, SignOnOutcome, SignedOn, WeakHub,
};
use chinwag_queue_redis::Counted;
use futures_core::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::interest::{
    Interest, Kind, parse_notice, parse_presence, parse_publication, presence_notice,
};
use crate::lease::{Keys, LeaseState, LeaseTask, SweepOutcome};
use crate::{ClusterError, RedisSignOns, lease};

/// The most connection ids one close instruction carries (a sign-on replacing more on one node
/// sends several): with a user id of at most 1024 bytes, an instruction stays under 24 KiB.
const CONNS_PER_INSTRUCTION: usize = 1000;

/// How many users a reconciliation asks Redis about at once.
const RECONCILE_CONCURRENCY: usize = 16;

/// The settings of a [`RedisDirectory`]'s listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DirectoryConfig {
    /// The first delay before subscribing again after the pub/sub connection failed; it
    /// doubles with each failure in a row, up to [`reconnect_max`](Self::reconnect_max), and
    /// each delay is drawn at random between half of it and all of it (jitter, so that nodes
    /// cut off together do not come back together). Default 50 ms.
    pub reconnect_min: Duration,
    /// The longest delay between attempts. Default 5 s.
    pub reconnect_max: Duration,
    /// How often the listener pings Redis on its pub/sub connection, to find a connection that
    /// died without closing (a partition). Default 10 s.
    pub ping_interval: Duration,
    /// How long connecting and subscribing, and each ping's answer, may take before the
    /// listener counts the connection as dropped. Default 5 s.
    pub timeout: Duration,
    /// Instructions longer than this are ignored (and counted in
    /// [`ListenerStatus::ignored`]): nothing this crate sends is longer than 24 KiB.
    /// Default 64 KiB.
    pub max_instruction_bytes: usize,
    /// The node's lease: how long after its last renewal the cluster declares it dead and
    /// sweeps its sign-ons. Renewed every third of it; the node fences itself (closes its
    /// connections, refuses sign-ons) when it could not renew within nine tenths of it.
    /// Default 10 s.
    pub lease_ttl: Duration,
    /// How long a sweeper's lock on a dead node lasts (at least the lease TTL): a sweeper
    /// that dies mid-sweep holds the node up for that long. Default 30 s.
    pub sweep_lock: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            max_instruction_bytes: 64 * 1024,
            lease_ttl: Duration::from_secs(10),
            sweep_lock: Duration::from_secs(30),
        }
    }
}

impl DirectoryConfig {
    /// Sets [`reconnect_min`](Self::reconnect_min) and [`reconnect_max`](Self::reconnect_max).
    pub fn with_reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// Sets [`ping_interval`](Self::ping_interval).
    pub fn with_ping_interval(mut self, every: Duration) -> Self {
        self.ping_interval = every;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`lease_ttl`](Self::lease_ttl) (at least 30 ms).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Sets [`sweep_lock`](Self::sweep_lock).
    pub fn with_sweep_lock(mut self, ttl: Duration) -> Self {
        self.sweep_lock = ttl;
        self
    }

    /// Sets [`max_instruction_bytes`](Self::max_instruction_bytes).
    pub fn with_max_instruction_bytes(mut self, n: usize) -> Self {
        self.max_instruction_bytes = n;
        self
    }
}

/// The hub's [`Directory`] for a cluster of nodes sharing one Redis: sign-on policies hold
/// across nodes **on the wire**, not only in Redis.
///
/// - [`sign_on`](Directory::sign_on) runs [`RedisSignOns::sign_on`]; every replaced connection
///   on another node gets a close instruction on that node's channel (`PUBLISH
///   P{node:<id>}:ctl`); the hub closes this node's replaced connections itself.
/// - Each node runs a listener ([`serve`](Self::serve)) subscribed to its channel, which
///   closes the named connections with [`Hub::close_replaced`] (`bye`, close code 4003).
///   Pub/sub delivers at most once: when the listener's connection drops, it subscribes again
///   (with backoff and jitter) and then **reconciles**: every connection of this node whose
///   sign-on was decided but that Redis no longer lists was replaced while the listener was
///   away, and is closed.
/// - [`online_page`](Directory::online_page) pages through a sorted set of the users online
///   ([`online_list_key`](Self::online_list_key)) and [`online_users`](Directory::online_users)
///   reads a counter moved with it, in one script, after each script that took a user from no
///   connection to one or from one to none (sign-on, sign-off, sweep). It is not the same
///   script (on Redis Cluster the list is in another slot than the user's key): each
///   transition carries a version from the user's sign-on seq, so transitions arriving in
///   the other order from two nodes are applied in the user's order; a node that dies (or a
///   Redis failing) between the two leaves that user listed, or unlisted, until the user's next
///   transition (`docs/cluster.md`). A dead node's users are taken off when the node is swept.
/// - Each node holds a **lease** ([`serve`](Self::serve) registers and renews it); a node
///   whose lease expired is swept by the others ([`sweep`](Self::sweep)), and a node that
///   finds its own lease gone is fenced: it closes its connections and refuses sign-ons
///   ([`DirectoryError::Fenced`]).
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use chinwag::cluster::redis::RedisDirectory;
/// use chinwag::hub::{Hub, HubConfig, NodeId};
///
/// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
/// let directory = Arc::new(RedisDirectory::connect("redis://127.0.0.1:6379/").await?);
/// let hub = Hub::builder()
///     .config(HubConfig::default().with_node(NodeId(1)))
///     .directory(directory.clone())
///     .build();
/// // Closes this node's connections that other nodes' sign-ons replace, until the hub stops.
/// let listener = directory.serve(&hub);
/// # let _ = listener;
/// # Ok(())
/// # }
/// ```
pub struct RedisDirectory {
    signons: RedisSignOns<Counted>,
    client: redis::Client,
    config: DirectoryConfig,
    keys: Keys,
    lease: Arc<LeaseState>,
    interest: Arc<Interest>,
}

impl std::fmt::Debug for RedisDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDirectory")
            .field("prefix", &self.signons.prefix())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisDirectory {
    /// Connects to the Redis at `url` with the [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX) and
    /// default settings. Fails if Redis cannot be reached now; afterwards its connections
    /// reconnect by themselves.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// let d = chinwag::cluster::redis::RedisDirectory::connect("redis://127.0.0.1/").await?;
    /// # let _ = d;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, ClusterError> {
        Self::connect_with(url, crate::DEFAULT_PREFIX, DirectoryConfig::default()).await
    }

    /// Connects to the Redis at `url`, with keys and channels under `prefix` (directories with
    /// different prefixes on one Redis are independent clusters) and the listener's `config`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
    /// use chinwag::cluster::redis::{DirectoryConfig, RedisDirectory};
    /// let config = DirectoryConfig::default().with_ping_interval(std::time::Duration::from_secs(5));
    /// let d = RedisDirectory::connect_with("redis://127.0.0.1/", "myapp:", config).await?;
    /// assert_eq!(d.channel(chinwag::hub::NodeId(3)), "myapp:{node:3}:ctl");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        config: DirectoryConfig,
    ) -> Result<Self, ClusterError> {
        let client = redis::Client::open(url)?;
        let conn = Counted::new(ConnectionManager::new(client.clone()).await?, "directory");
        let signons = RedisSignOns::with_prefix(conn, prefix)?;
        let interest = Interest::new(signons.prefix().to_owned(), config.timeout);
        Ok(Self {
            keys: Keys(signons.prefix().into()),
            signons,
            client,
            config,
            lease: Arc::new(LeaseState::new()),
            interest: Arc::new(interest),
        })
    }

    /// The channel prefix of push notices, `<prefix>w:`: the offline queue of every node must
    /// publish a notice of each push on `<this><recipient>` (`chinwag-queue-redis`'s
    /// `RedisOptions::notices` with this value) so that a send on one node reaches the
    /// recipient's connections on the others at once; the node holding a user's connections
    /// subscribes to that user's channel (and to no one else's).
    pub fn notices_prefix(&self) -> String {
        self.interest.channel_prefix(Kind::User)
    }

    /// The channel prefix of room publications, `<prefix>r:`: the room history of every node
    /// must publish each appended publication on `<this><room>` (`chinwag-queue-redis`'s
    /// `RedisHistory::with_notices` with this value) so that a publish on one node reaches the
    /// room's members on the others; a node with members in a room subscribes to its channel
    /// while it has them.
    pub fn rooms_prefix(&self) -> String {
        self.interest.channel_prefix(Kind::Room)
    }

    /// `conn` joins or leaves `room`'s member list (the node's room index first, as for users).
    async fn list_member(
        &self,
        room: &str,
        conn: ConnRef,
        device: &Device,
        joined: bool,
    ) -> Result<(), ClusterError> {
        let mut c = self.signons.conn.clone();
        let (m, u) = self.keys.room_members(room);
        let field = format!("{}:{}", conn.node.0, conn.conn.0);
        if joined {
            let _: u64 = redis::cmd("SADD")
                .arg(self.keys.rooms(conn.node))
                .arg(room)
                .query_async(&mut c)
                .await?;
            let _: u64 = crate::lease::ROOM_JOIN
                .key(&m)
                .key(&u)
                .arg(&field)
                .arg(&*device.user)
                .arg(&*device.device)
                .invoke_async(&mut c)
                .await?;
            // A lease that lapsed meanwhile may have been swept before the member was written:
            // no later sweep would remove it (the node is no longer registered), so take it
            // back. (The lease task fences the node; its leaves are not written.)
            if self
                .lease
                .never_lapsed(&mut c, &self.keys, conn.node)
                .await?
            {
                return Ok(());
            }
            tracing::warn!(
                room,
                "a room join written as the node's lease lapsed; taken back"
            );
        }
        let _: u64 = crate::lease::ROOM_LEAVE
            .key(m)
            .key(u)
            .arg("f")
            .arg(field)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// `room`'s counts and a page of its members from `cursor` (`limit` 0: counts only).
    async fn members_page(
        &self,
        room: &str,
        cursor: u64,
        limit: usize,
    ) -> Result<ClusterMembers, ClusterError> {
        let mut c = self.signons.conn.clone();
        let (m, u) = self.keys.room_members(room);
        let mut pipe = redis::pipe();
        pipe.cmd("HLEN").arg(&m).cmd("HLEN").arg(&u);
        let (connections, users): (u64, u64) = pipe.query_async(&mut c).await?;
        if limit == 0 {
            return Ok(ClusterMembers::new(connections, users, Vec::new(), 0));
        }
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(&m)
            .arg(cursor)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut c)
            .await?;
        let page = flat
            .chunks(2)
            .filter_map(|kv| {
                let (node, conn) = kv.first()?.split_once(':')?;
                let (user, device) = kv.get(1)?.split_once('\n')?;
                let conn = ConnRef {
                    node: NodeId(node.parse().ok()?),
                    conn: ConnId(conn.parse().ok()?),
                };
                Some((conn, Device::new(user, device)))
            })
            .collect();
        Ok(ClusterMembers::new(connections, users, page, next))
    }

    /// The key of `room`'s record in the cluster's room registry (rooms made with options).
    pub fn room_key(&self, room: &str) -> String {
        format!("{}{{room:{room}}}:opts", self.signons.prefix())
    }

    /// Users this node holds connections of (and so subscribes to the push notices of).
    pub async fn interested_users(&self) -> usize {
        self.interest.count(Kind::User).await
    }

    /// Rooms this node has members in (and so subscribes to the publications of).
    pub async fn interested_rooms(&self) -> usize {
        self.interest.count(Kind::Room).await
    }

    /// The sign-on store underneath.
    pub fn signons(&self) -> &RedisSignOns<Counted> {
        &self.signons
    }

    /// The pub/sub channel of `node`'s close instructions, `P{node:<id>}:ctl` (hash-tagged so
    /// that sharded pub/sub can carry it on Redis Cluster; see `docs/cluster.md`).
    pub fn channel(&self, node: NodeId) -> String {
        channel(self.signons.prefix(), node)
    }

    /// The key of the online-users counter, `P{cluster}:online` (the length of the list).
    pub fn online_key(&self) -> String {
        self.keys.online()
    }

    /// The key of the list of online users, `P{cluster}:online:list`: a sorted set of user ids,
    /// every score 0 (so in byte order of the id), which
    /// [`online_page`](Directory::online_page) pages through with `ZRANGE ... BYLEX`.
    pub fn online_list_key(&self) -> String {
        self.keys.online_list()
    }

    /// The key of the last transition applied to the list per user,
    /// `P{cluster}:online:versions` (a hash: user id to version; see `docs/cluster.md`).
    pub fn online_versions_key(&self) -> String {
        self.keys.online_versions()
    }

    /// The key of `node`'s lease, `P{node:<id>}:lease`: the node is alive while it exists.
    pub fn lease_key(&self, node: NodeId) -> String {
        self.keys.lease(node)
    }

    /// The key of `node`'s user index, `P{node:<id>}:users`: every user it signed a
    /// connection on for (a superset of those it has connections for), which a sweep walks.
    pub fn users_key(&self, node: NodeId) -> String {
        self.keys.users(node)
    }

    /// The key of the registry of nodes not swept yet, `P{cluster}:nodes` (a set of ids).
    pub fn nodes_key(&self) -> String {
        self.keys.nodes()
    }

    /// Sweeps `node` if its lease is gone: under the node's lock (`SET NX PX`, for
    /// [`DirectoryConfig::sweep_lock`]), removes its connections from the hash of every user
    /// in its index (one script per user, which also tells whether the user went offline;
    /// each such user is taken off the online list and count), then deletes the index and the
    /// node's registration. Each node's lease task does this for every registered node whose
    /// lease expired; call it yourself to sweep a node now.
    ///
    /// Safe to run concurrently: a second sweeper finds the lock taken
    /// ([`SweepOutcome::Locked`]); and should a lock expire mid-sweep, the per-user script is
    /// idempotent (an entry is removed, and a user reported offline, once).
    ///
    /// # Errors
    ///
    /// Redis failed (part of the node may be swept: sweeping again finishes it).
    pub async fn sweep(&self, node: NodeId) -> Result<SweepOutcome, ClusterError> {
        lease::sweep(
            &self.signons,
            &self.keys,
            node,
            self.config.sweep_lock.max(self.config.lease_ttl),
        )
        .await
    }

    /// Whether this node fenced itself (its lease expired, or could not be renewed in time):
    /// it then refuses every sign-on with [`DirectoryError::Fenced`] for good.
    pub fn is_fenced(&self) -> bool {
        self.lease.is_fenced()
    }

    /// Starts this node's listener: subscribes to the channel of `hub`'s node
    /// ([`HubConfig::node`](chinwag_hub::HubConfig::node)), reconciles, then closes the
    /// connections other nodes' sign-ons replace, until the hub stops (its
    /// [`shutdown`](Hub::shutdown) ends, or every handle to it is dropped). Reconnects with
    /// backoff and jitter, and reconciles after each reconnect.
    ///
    /// It also starts the node's **lease** task: registers the node (a lease key with
    /// [`DirectoryConfig::lease_ttl`]; sign-ons are refused as unavailable until then),
    /// renews it every third of the TTL, and after each renewal sweeps every registered node
    /// whose lease expired ([`sweep`](Self::sweep)). If the lease is found gone, or cannot be
    /// renewed within nine tenths of the TTL, the node **fences** itself: every local
    /// connection is closed with 1001 (`going_away`, reason [`FENCED_REASON`](crate::FENCED_REASON)), every later
    /// sign-on is refused with [`DirectoryError::Fenced`], and it does not register again (the
    /// hub's node id cannot change while it runs: restart the process, with a new node id).
    ///
    /// Must be called inside a Tokio runtime, once per hub and directory. Dropping the returned
    /// handle leaves both tasks running.
    pub fn serve(&self, hub: &Hub) -> Listener {
        // The counters show from the start, at 0, so that dashboards and alerts have their
        // series before anything happens (the gauge of live nodes follows the first look).
        for name in [
            crate::metric_names::SWEEPS,
            crate::metric_names::SWEPT_ENTRIES,
            crate::metric_names::LEASE_RENEWALS_FAILED,
            crate::metric_names::FENCED,
            crate::metric_names::RESUBSCRIPTIONS,
            crate::metric_names::CATCH_UPS,
        ] {
            metrics::counter!(name).increment(0);
        }
        for kind in ["user", "room"] {
            metrics::counter!(crate::metric_names::NOTICES, "kind" => kind).increment(0);
        }
        metrics::gauge!(crate::metric_names::SUBSCRIBED).set(0.0);
        let (tx, rx) = watch::channel(ListenerStatus::default());
        let tx = Arc::new(tx);
        let lease = LeaseTask {
            signons: self.signons.clone(),
            keys: self.keys.clone(),
            node: hub.config().node,
            config: self.config.clone(),
            state: self.lease.clone(),
            hub: hub.downgrade(),
            status: tx.clone(),
        };
        let stopped = hub.stopped();
        let lease = tokio::spawn(async move {
            tokio::select! {
                _ = stopped => {}
                _ = lease.run() => {}
            }
        });
        let task = Task {
            interest: self.interest.clone(),
            client: self.client.clone(),
            signons: self.signons.clone(),
            node: hub.config().node,
            channel: self.channel(hub.config().node),
            config: self.config.clone(),
            hub: hub.downgrade(),
            status: tx,
        };
        let stopped = hub.stopped();
        let handle = tokio::spawn(async move {
            tokio::select! {
                _ = stopped => {}
                _ = task.run() => {}
            }
        });
        Listener {
            status: rx,
            handle,
            lease,
        }
    }

    /// Closes the connections of `hub`'s node whose sign-on was decided but that Redis no
    /// longer lists (replaced on another node while no instruction could reach this one).
    /// The listener does it after each (re)subscription; returns how many it closed.
    ///
    /// # Errors
    ///
    /// Redis failed (some users may have been reconciled already).
    pub async fn reconcile(&self, hub: &Hub) -> Result<usize, ClusterError> {
        reconcile(&hub.downgrade(), &self.signons, hub.config().node).await
    }

    /// Moves the online list and counter for `user`'s transition `version`; a failure only logs
    /// (the user stays listed or unlisted until its next transition, see the type's docs).
    async fn online_moved(&self, user: &str, version: u64) {
        let r = crate::online::moved(&self.signons.conn, &self.keys, user, version).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, user, "cluster online list not updated");
        }
    }

    /// Tells `node` to close `conns` of `user`. A failure only logs: that node reconciles when
    /// its listener comes back, and if its listener never left, the connection stays open
    /// until the user signs on again (see `docs/cluster.md`).
    async fn send_close(&self, node: NodeId, user: &str, conns: &[ConnId]) {
        for chunk in conns.chunks(CONNS_PER_INSTRUCTION) {
            let payload = instruction(user, chunk);
            let mut tries = 0;
            loop {
                tries += 1;
                let r: Result<u64, _> = redis::cmd("PUBLISH")
                    .arg(self.channel(node))
                    .arg(&payload)
                    .query_async(&mut self.signons.conn.clone())
                    .await;
                match r {
                    Ok(0) => {
                        tracing::debug!(
                            node = node.0,
                            user,
                            "close instruction: node not listening (it reconciles when back)"
                        );
                        break;
                    }
                    Ok(_) => break,
                    // The connection manager reconnects by itself: one more try.
                    Err(e) if tries < 2 => {
                        tracing::debug!(error = %e, "close instruction failed; trying again");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, node = node.0, user, "close instruction not sent");
                        break;
                    }
                }
            }
        }
    }
}

impl Directory for RedisDirectory {
    fn sign_on<'a>(
        &'a self,
        device: &'a Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> BoxFuture<'a, Result<SignOnOutcome, DirectoryError>> {
        Box::pin(async move {
            // Acting on sign-on decisions needs a lease this node holds (fencing).
            self.lease.check()?;
            // Subscribed to the user's push notices before the sign-on is decided, so before
            // the connection first reads the queue: no push falls between the two.
            self.interest.add(Kind::User, &device.user, conn.conn).await;
            let mut undo = Undo {
                interest: Some(self.interest.clone()),
                user: device.user.clone(),
                conn: conn.conn,
            };
            let out = self.decide(device, conn, policy).await?;
            undo.interest = None;
            Ok(out)
        })
    }

    fn sign_off<'a>(&'a self, user: &'a str, conn: ConnRef) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.interest.remove(Kind::User, user, conn.conn).await;
            self.signed_off(user, conn).await
        })
    }

    fn connections<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SignedOn>, DirectoryError>> {
        Box::pin(async move { Ok(self.signons.connections(user).await?) })
    }

    fn room_member<'a>(
        &'a self,
        room: &'a str,
        conn: ConnRef,
        device: &'a Device,
        joined: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if joined {
                self.interest.add(Kind::Room, room, conn.conn).await;
            } else {
                self.interest.remove(Kind::Room, room, conn.conn).await;
            }
            if self.lease.is_fenced() {
                // A fenced node writes nothing more: the sweep of its id removes its members.
                return;
            }
            if let Err(e) = self.list_member(room, conn, device, joined).await {
                tracing::warn!(room, error = %e, "the cluster's room member list was not updated (the count drifts until the node is swept)");
            }
        })
    }

    fn room_members<'a>(
        &'a self,
        room: &'a str,
        cursor: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<ClusterMembers>, DirectoryError>> {
        Box::pin(async move { Ok(Some(self.members_page(room, cursor, limit).await?)) })
    }

    fn room_presence<'a>(
        &'a self,
        room: &'a str,
        node: NodeId,
        device: &'a Device,
        joined: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let payload = presence_notice(node.0, &device.user, &device.device, joined);
            let r: Result<u64, _> = redis::cmd("PUBLISH")
                .arg(self.interest.channel(Kind::Room, room))
                .arg(payload)
                .query_async(&mut self.signons.conn.clone())
                .await;
            if let Err(e) = r {
                tracing::warn!(room, error = %e, "a presence event was not sent to the other nodes");
            }
        })
    }

    fn register_room<'a>(
        &'a self,
        room: &'a str,
        record: &'a RoomRecord,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(self.room_key(room))
                .arg(crate::registry::encode(record))
                .arg("NX")
                .query_async(&mut self.signons.conn.clone())
                .await
                .map_err(ClusterError::from)?;
            Ok(set.is_some())
        })
    }

    fn room_record<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoomRecord>, DirectoryError>> {
        Box::pin(async move {
            let text: Option<String> = redis::cmd("GET")
                .arg(self.room_key(room))
                .query_async(&mut self.signons.conn.clone())
                .await
                .map_err(ClusterError::from)?;
            match text {
                None => Ok(None),
                Some(t) => crate::registry::decode(&t).map(Some).ok_or_else(|| {
                    DirectoryError::unavailable(format!(
                        "the cluster's record of room {room} is not one this crate wrote"
                    ))
                }),
            }
        })
    }

    fn unregister_room<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let r: Result<u64, _> = redis::cmd("DEL")
                .arg(self.room_key(room))
                .query_async(&mut self.signons.conn.clone())
                .await;
            if let Err(e) = r {
                tracing::warn!(room, error = %e, "the cluster's room record was not removed");
            }
        })
    }

    fn online_users(&self) -> BoxFuture<'_, Result<u64, DirectoryError>> {
        Box::pin(async move {
            let n: Option<i64> = redis::cmd("GET")
                .arg(self.online_key())
                .query_async(&mut self.signons.conn.clone())
                .await
                .map_err(ClusterError::from)?;
            // Moved with the list, so never below 0 unless written by hand.
            Ok(n.unwrap_or(0).max(0) as u64)
        })
    }

    fn online_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, DirectoryError>> {
        Box::pin(async move {
            Ok(crate::online::page(&self.signons.conn, &self.keys, after, limit).await?)
        })
    }
}

/// Takes a connection's interest back when its sign-on fails or is dropped half-way.
struct Undo {
    interest: Option<Arc<Interest>>,
    user: Arc<str>,
    conn: ConnId,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let (Some(interest), Ok(rt)) =
            (self.interest.take(), tokio::runtime::Handle::try_current())
        {
            let (user, conn) = (self.user.clone(), self.conn);
            rt.spawn(async move { interest.remove(Kind::User, &user, conn).await });
        }
    }
}

impl RedisDirectory {
    /// The sign-on decision and what follows it (the lease was checked, the interest taken).
    async fn decide(
        &self,
        device: &Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> Result<SignOnOutcome, DirectoryError> {
        {
            // The node's user index first (another slot than the user's key, so not in the
            // script): it may list a user with no entry (a crash right here, a refused
            // sign-on), never an entry without its user. A sweep skips the former.
            let indexed: Result<u64, _> = redis::cmd("SADD")
                .arg(self.keys.users(conn.node))
                .arg(&*device.user)
                .query_async(&mut self.signons.conn.clone())
                .await;
            indexed.map_err(ClusterError::from)?;
            let (out, came_online) = match self.signons.sign_on_online(device, conn, policy).await {
                Ok(r) => r,
                Err(e) => {
                    if e.is_unavailable() {
                        // The reply may be lost after the script ran: take the sign-on back
                        // (best effort; the hub refuses the connection). If that took the user
                        // offline, the list is told (its version is above that of the lost
                        // sign-on, which was never applied: removing an absent user changes
                        // nothing).
                        if let Ok(Some(n)) = self.signons.sign_off_online(&device.user, conn).await
                        {
                            self.online_moved(&device.user, crate::online::went_offline(n))
                                .await;
                        }
                    }
                    return Err(e.into());
                }
            };
            if came_online {
                self.online_moved(&device.user, crate::online::came_online(out.seq))
                    .await;
            }
            let mut remote: BTreeMap<NodeId, Vec<ConnId>> = BTreeMap::new();
            for r in out.replaced.iter().filter(|r| r.conn.node != conn.node) {
                remote.entry(r.conn.node).or_default().push(r.conn.conn);
            }
            for (node, conns) in remote {
                self.send_close(node, &device.user, &conns).await;
            }
            // Checked again after the script: if the lease still held now, it held without a
            // break since the script ran (renewals only extend a lease that exists), so no
            // sweep can have missed this entry. Otherwise refuse: the entry stays until the
            // sweep of this node removes it.
            self.lease.check()?;
            Ok(out)
        }
    }

    /// A sign-off in Redis (not on a fenced node); whether the user has no connection left.
    async fn signed_off(&self, user: &str, conn: ConnRef) -> bool {
        {
            if self.lease.is_fenced() {
                // A fenced node writes nothing more: the sweep of its id removes its entries
                // (and a process that took its id over may own fields of the same name).
                return false;
            }
            match self.signons.sign_off_online(user, conn).await {
                Ok(Some(n)) => {
                    self.online_moved(user, crate::online::went_offline(n))
                        .await;
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, user, conn = conn.conn.0, "cluster sign-off failed; the entry stays until the node's entries are swept");
                    false
                }
            }
        }
    }
}

fn channel(prefix: &str, node: NodeId) -> String {
    format!("{prefix}{{node:{}}}:ctl", node.0)
}

/// A close instruction: `close\n<user>\n<conn> <conn> ...` (user ids hold no control
/// characters).
fn instruction(user: &str, conns: &[ConnId]) -> String {
    let ids: Vec<String> = conns.iter().map(|c| c.0.to_string()).collect();
    format!("close\n{user}\n{}", ids.join(" "))
}

/// A close instruction's user and connections; `None` when it is not one.
fn parse_instruction(b: &[u8]) -> Option<(&str, Vec<ConnId>)> {
    let s = std::str::from_utf8(b).ok()?;
    let rest = s.strip_prefix("close\n")?;
    let (user, ids) = rest.split_once('\n')?;
    chinwag_hub::ids::check_user(user).ok()?;
    let conns = ids
        .split(' ')
        .map(|id| id.parse().map(ConnId))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((user, conns))
}

/// What a [`Listener`] has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStatus {
    /// Subscribed now (and the reconciliation after subscribing finished).
    pub subscribed: bool,
    /// Successful subscriptions, each followed by a reconciliation: 1 + the reconnects.
    pub subscriptions: u64,
    /// Failed attempts to subscribe or reconcile.
    pub failed_attempts: u64,
    /// Pings Redis answered on the pub/sub connection.
    pub pings: u64,
    /// Close instructions received.
    pub instructions: u64,
    /// Connections closed by instructions.
    pub closed: u64,
    /// Connections closed by reconciliations.
    pub reconciled: u64,
    /// Messages on the channel that were not instructions, or too long, and malformed push
    /// notices.
    pub ignored: u64,
    /// Push notices of other nodes' sends (and this node's own) handed to the hub
    /// ([`Hub::stored_elsewhere`]).
    pub notices: u64,
    /// Room publications of other nodes (and this node's own) handed to the hub
    /// ([`Hub::published_elsewhere`]).
    pub publications: u64,
    /// Users whose connections were made to read the queue, and rooms made to read their
    /// history, after a (re)subscription ([`Hub::catch_up`], [`Hub::sync_room`]).
    pub catch_ups: u64,
    /// The node's lease is registered (sign-ons are refused until then).
    pub registered: bool,
    /// Lease renewals that succeeded.
    pub renewals: u64,
    /// Lease renewals that failed (Redis failed or was too slow); the node fences itself if
    /// none succeeds within nine tenths of the TTL.
    pub renewals_failed: u64,
    /// The node fenced itself: its lease expired or could not be renewed in time.
    pub fenced: bool,
    /// Connections the fencing closed (1001, [`FENCED_REASON`](crate::FENCED_REASON)).
    pub fenced_closed: u64,
    /// Nodes whose lease existed at the last look, this one included.
    pub nodes_alive: u64,
    /// Dead nodes this node swept.
    pub sweeps: u64,
    /// Sign-on entries this node's sweeps removed.
    pub swept: u64,
}

/// A running listener ([`RedisDirectory::serve`]).
#[derive(Debug)]
pub struct Listener {
    status: watch::Receiver<ListenerStatus>,
    handle: tokio::task::JoinHandle<()>,
    lease: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// What it has done so far, changing as it goes (for tests, health checks and metrics).
    pub fn status(&self) -> watch::Receiver<ListenerStatus> {
        self.status.clone()
    }

    /// Stops it and the lease task now (they also stop by themselves when the hub stops).
    /// The lease is not given back: it expires after its TTL and the node is swept, like a
    /// node that died (its hub's sign-offs usually removed its entries first).
    pub async fn stop(self) {
        self.handle.abort();
        self.lease.abort();
        let _ = self.handle.await;
        let _ = self.lease.await;
    }

    /// Waits until both ended (the hub stopped).
    pub async fn stopped(self) {
        let _ = self.handle.await;
        let _ = self.lease.await;
    }
}

/// The listener's state.
struct Task {
    interest: Arc<Interest>,
    client: redis::Client,
    signons: RedisSignOns<Counted>,
    node: NodeId,
    channel: String,
    config: DirectoryConfig,
    hub: WeakHub,
    status: Arc<watch::Sender<ListenerStatus>>,
}

impl Task {
    async fn run(self) {
        let mut failures: u32 = 0;
        loop {
            if self.hub.upgrade().is_none() {
                return;
            }
            let before = self.status.borrow().subscriptions;
            let ended = self.session().await;
            self.interest.detach().await;
            match ended {
                // The hub is gone.
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, node = self.node.0, "cluster listener: pub/sub connection lost; subscribing again");
                }
            }
            self.status.send_modify(|s| s.subscribed = false);
            metrics::gauge!(crate::metric_names::SUBSCRIBED).set(0.0);
            // The backoff grows with failures in a row: a session that subscribed ends a row.
            if self.status.borrow().subscriptions > before {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            tokio::time::sleep(self.backoff(failures)).await;
        }
    }

    /// The delay before attempt `failures` (1, 2, ...): exponential, with jitter.
    fn backoff(&self, failures: u32) -> Duration {
        let c = &self.config;
        let exp = c
            .reconnect_min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let top = exp.min(c.reconnect_max);
        top.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// One subscription: subscribe, reconcile, then handle instructions until the connection
    /// fails (`Err`) or the hub is gone (`Ok`).
    async fn session(&self) -> Result<(), ClusterError> {
        let limit = self.config.timeout.max(Duration::from_millis(10));
        let every = self.config.ping_interval.max(Duration::from_millis(10));
        let subscribe = async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(ps.split())
        };
        let (mut sink, mut stream) = match tokio::time::timeout(limit, subscribe).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(self.failed(e.into())),
            Err(_) => return Err(self.failed(timed_out("subscribing"))),
        };
        // Every user with connections here and room with members here, on the same
        // connection; then they read the queue and the histories, for the notices missed while
        // not subscribed.
        let names = self
            .interest
            .attach(sink.clone())
            .await
            .map_err(|e| self.failed(e.into()))?;
        // Subscribed first, then reconciled: a replacement is either in what Redis lists now
        // or in an instruction that arrives from here on.
        let closed = reconcile(&self.hub, &self.signons, self.node)
            .await
            .map_err(|e| self.failed(e))?;
        if let Some(hub) = self.hub.upgrade() {
            for (kind, name) in &names {
                match kind {
                    Kind::User => hub.catch_up(name),
                    Kind::Room => hub.sync_room(name),
                }
            }
        }
        self.status.send_modify(|s| {
            s.subscribed = true;
            s.subscriptions += 1;
            s.reconciled += closed as u64;
            s.catch_ups += names.len() as u64;
        });
        metrics::gauge!(crate::metric_names::SUBSCRIBED).set(1.0);
        metrics::counter!(crate::metric_names::CATCH_UPS).increment(names.len() as u64);
        if self.status.borrow().subscriptions > 1 {
            metrics::counter!(crate::metric_names::RESUBSCRIPTIONS).increment(1);
        }
        let mut ping = tokio::time::interval(every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(timed_out("the pub/sub connection closed"));
                    };
                    let handled = match self.interest.name_of(msg.get_channel_name().as_bytes()) {
                        Some((Kind::User, user)) => self.notice(user, msg.get_payload_bytes()),
                        Some((Kind::Room, room)) => self.publication(room, msg.get_payload_bytes()),
                        None => self.handle(msg.get_payload_bytes()),
                    };
                    if !handled {
                        return Ok(());
                    }
                }
                _ = ping.tick() => {
                    // A hub dropped without a shutdown: end with it.
                    if self.hub.upgrade().is_none() {
                        return Ok(());
                    }
                    match tokio::time::timeout(limit, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => self.status.send_modify(|s| s.pings += 1),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => return Err(timed_out("ping")),
                    }
                }
            }
        }
    }

    /// Hands a push notice to the hub. False when the hub is gone.
    fn notice(&self, user: &str, payload: &[u8]) -> bool {
        let Some((entry, body)) = parse_notice(payload) else {
            tracing::warn!(user, "cluster listener: ignoring a malformed push notice");
            self.status.send_modify(|s| s.ignored += 1);
            return true;
        };
        let Some(hub) = self.hub.upgrade() else {
            return false;
        };
        hub.stored_elsewhere(user, entry, bytes::Bytes::copy_from_slice(body));
        self.status.send_modify(|s| s.notices += 1);
        metrics::counter!(crate::metric_names::NOTICES, "kind" => "user").increment(1);
        true
    }

    /// Hands a room publication's notice (or another node's presence event) to the hub. False
    /// when the hub is gone.
    fn publication(&self, room: &str, payload: &[u8]) -> bool {
        if let Some((node, user, device, joined)) = parse_presence(payload) {
            if node == self.node.0 {
                // This node's own: its members had it.
                return true;
            }
            let Some(hub) = self.hub.upgrade() else {
                return false;
            };
            hub.presence_elsewhere(room, Device::new(user, device), joined);
            return true;
        }
        let Some((epoch, offset, body)) = parse_publication(payload) else {
            tracing::warn!(room, "cluster listener: ignoring a malformed room notice");
            self.status.send_modify(|s| s.ignored += 1);
            return true;
        };
        let Some(hub) = self.hub.upgrade() else {
            return false;
        };
        hub.published_elsewhere(room, epoch, offset, bytes::Bytes::copy_from_slice(body));
        self.status.send_modify(|s| s.publications += 1);
        metrics::counter!(crate::metric_names::NOTICES, "kind" => "room").increment(1);
        true
    }

    fn failed(&self, e: ClusterError) -> ClusterError {
        self.status.send_modify(|s| s.failed_attempts += 1);
        e
    }

    /// Carries out one instruction. False when the hub is gone.
    fn handle(&self, payload: &[u8]) -> bool {
        let parsed = (payload.len() <= self.config.max_instruction_bytes)
            .then(|| parse_instruction(payload))
            .flatten();
        let Some((user, conns)) = parsed else {
            tracing::warn!(
                len = payload.len(),
                "cluster listener: ignoring a message that is not a close instruction"
            );
            self.status.send_modify(|s| s.ignored += 1);
            return true;
        };
        let Some(hub) = self.hub.upgrade() else {
            return false;
        };
        let n = hub.close_replaced(user, &conns);
        self.status.send_modify(|s| {
            s.instructions += 1;
            s.closed += n as u64;
        });
        true
    }
}

fn timed_out(what: &str) -> ClusterError {
    ClusterError::Redis(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("cluster listener: {what}"),
    )))
}

/// Closes the connections of `node` (the hub's) whose sign-on was decided but that Redis no
/// longer lists. Listing first, asking Redis after: a connection listed had been signed on in
/// Redis before, so if Redis lacks it now, a newer sign-on replaced it (a sign-off comes only
/// after the hub detached it, and then closing it is a no-op).
async fn reconcile(
    hub: &WeakHub,
    signons: &RedisSignOns<Counted>,
    node: NodeId,
) -> Result<usize, ClusterError> {
    let mut local: HashMap<Arc<str>, Vec<ConnId>> = HashMap::new();
    {
        let Some(hub) = hub.upgrade() else {
            return Ok(0);
        };
        for c in hub.local_connections() {
            if c.sign_on_seq() != 0 {
                local
                    .entry(c.device().user.clone())
                    .or_default()
                    .push(c.id());
            }
        }
    }
    let mut checks = futures_util::stream::iter(local)
        .map(|(user, conns)| async move {
            let listed = signons.connections(&user).await?;
            let stale: Vec<ConnId> = conns
                .into_iter()
                .filter(|id| !listed.iter().any(|s| s.conn == ConnRef { node, conn: *id }))
                .collect();
            Ok::<_, ClusterError>((user, stale))
        })
        .buffer_unordered(RECONCILE_CONCURRENCY);
    let mut closed = 0;
    while let Some(r) = checks.next().await {
        let (user, stale) = r?;
        if stale.is_empty() {
            continue;
        }
        let Some(hub) = hub.upgrade() else {
            return Ok(closed);
        };
        let n = hub.close_replaced(&user, &stale);
        if n > 0 {
            tracing::debug!(user = %user, n, "cluster listener: closed connections replaced while it was away");
        }
        closed += n;
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_round_trip_and_bad_ones_are_refused() {
        let i = instruction("a b:{c}é", &[ConnId(1), ConnId(42)]);
        assert_eq!(
            parse_instruction(i.as_bytes()),
            Some(("a b:{c}é", vec![ConnId(1), ConnId(42)]))
        );
        for bad in [
            &b"close\nu\n"[..],
            b"close\nu\n1 x",
            b"close\n\n1",
            b"open\nu\n1",
            b"close\nu",
            b"\xff",
        ] {
            assert_eq!(parse_instruction(bad), None, "{bad:?}");
        }
        assert_eq!(channel("p:", NodeId(7)), "p:{node:7}:ctl");
    }
}
