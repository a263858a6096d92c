//! Several chinwag hub nodes acting as one, through Redis (issue 18). Three slices exist:
//!
//! - [`RedisSignOns`]: the sign-on decision of the hub's policies ([`SignOn::Single`],
//!   `PerDevice`, `Multi`) kept in Redis, so that it holds across every node sharing that
//!   Redis. A sign-on is one Lua script, run atomically by Redis, that applies exactly the rules
//!   of the one-node [`SignOnTable`](chinwag_hub::SignOnTable) (a property test drives both with
//!   the same random sequences and compares them step by step): the newest sign-on wins, and the
//!   outcome names the connections it replaces **on any node**, each with its
//!   [`NodeId`](chinwag_hub::NodeId).
//! - [`RedisDirectory`]: the hub's [`Directory`](chinwag_hub::Directory) over it. It sends a
//!   close instruction to the node of every connection a sign-on replaces elsewhere; each node's
//!   [`Listener`] ([`RedisDirectory::serve`]) closes them (`bye`, close code 4003) and, after
//!   its pub/sub connection comes back, reconciles what it missed. It also counts and lists
//!   online users cluster-wide.
//! - Node leases: each node holds a lease key with a TTL, renewed by a task
//!   [`RedisDirectory::serve`] starts. A node whose lease expired (it died) is **swept** by
//!   any live node ([`RedisDirectory::sweep`]): its connections leave the user hashes and the
//!   online list and count. A node that finds its own lease gone, or cannot renew it in time, is
//!   **fenced**: it closes its connections (1001, [`FENCED_REASON`]) and refuses sign-ons.
//!
//! - Direct messages across nodes: with the hub's
//!   [`HubConfig::shared_queue`](chinwag_hub::HubConfig::shared_queue) and a shared Redis queue
//!   that publishes a notice of each push (`chinwag-queue-redis`, `RedisOptions::notices` with
//!   [`RedisDirectory::notices_prefix`]), a node subscribes to the notices of the users it holds
//!   connections of and hands them to its hub ([`Hub::stored_elsewhere`](chinwag_hub::Hub::stored_elsewhere));
//!   after a reconnect of its pub/sub connection it makes their connections read the queue.
//!
//! - Rooms across nodes: with [`HubConfig::shared_history`](chinwag_hub::HubConfig::shared_history)
//!   and a shared Redis room history that publishes each appended publication
//!   (`RedisHistory::with_notices` with [`RedisDirectory::rooms_prefix`]), a node follows the
//!   rooms it has members in and hands their publications to its hub
//!   ([`Hub::published_elsewhere`](chinwag_hub::Hub::published_elsewhere)), in the history's
//!   offset order.
//! - A room registry: rooms made with options (password hash, member limit, presence events,
//!   history) are recorded (`P{room:<name>}:opts`), so a join on any node makes the room alike;
//!   presence events of such rooms cross nodes on the room's channel; room members are listed
//!   per room across nodes (`P{room:<name>}:m`), counted with `HLEN`.
//!
//! Not built yet (see `docs/cluster.md` in the repository): Redis Cluster. The `chinwag` facade
//! uses this crate with its feature `cluster-redis` (`ServerBuilder::redis_cluster`), and
//! `chinwag-server` with its `[cluster]` configuration.
//!
//! # Keys
//!
//! Every key starts with a prefix (default [`DEFAULT_PREFIX`]) and carries the user id as a
//! hash tag: `P{user}:s`, one hash per user (the layout is in [`RedisSignOns`]'s docs). Each
//! script touches only that key and names it in `KEYS`, so the same code runs on a single
//! Redis and on Redis Cluster. The directory adds the online counter `P{cluster}:online` with
//! the list `P{cluster}:online:list` and its versions `P{cluster}:online:versions`, the node
//! registry `P{cluster}:nodes`, per node a pub/sub channel `P{node:<id>}:ctl`, a lease
//! `P{node:<id>}:lease`, a user index `P{node:<id>}:users` and a sweep lock
//! `P{node:<id>}:sweep`, per user the push-notice channel `Pw:<user>` and per room the
//! publication channel `Pr:<room>`.
//!
//! # Example
//!
//! ```no_run
//! use chinwag::cluster::redis::RedisSignOns;
//! use chinwag::hub::{ConnId, ConnRef, Device, NodeId, SignOn};
//!
//! # async fn run() -> Result<(), chinwag::cluster::redis::ClusterError> {
//! let signons = RedisSignOns::connect("redis://127.0.0.1:6379/").await?;
//! let me = ConnRef { node: NodeId(7), conn: ConnId(1) };
//! let out = signons
//!     .sign_on(&Device::new("alice", "phone"), me, SignOn::Single)
//!     .await?;
//! for old in &out.replaced {
//!     // ... tell node `old.conn.node` to close `old.conn.conn` (replaced)
//!     # let _ = old;
//! }
//! signons.sign_off("alice", me).await?;
//! # Ok(())
//! # }
//! ```

mod directory;
mod interest;
mod lease;
mod online;
mod registry;
mod signons;

pub use directory::{DirectoryConfig, Listener, ListenerStatus, RedisDirectory};
pub use lease::{FENCED_REASON, SweepOutcome, metric_names};
pub use signons::{DEFAULT_PREFIX, RedisSignOns};

/// The `redis` crate this one is built on, so callers build connections with the same version.
pub use redis;

use chinwag_hub::ids::IdError;
use chinwag_hub::{ConnRef, DirectoryError, SignOn};

/// What went wrong in a cluster operation. Bad input (ids, prefix, a connection signed on
/// twice) is kept apart from Redis failing ([`ClusterError::Redis`], worth a retry) and from
/// data in Redis this crate did not write ([`ClusterError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The user id breaks the hub's id grammar ([`chinwag_hub::ids`]).
    #[error("bad user id: {0}")]
    BadUser(#[source] IdError),
    /// The device id breaks the hub's id grammar.
    #[error("bad device id: {0}")]
    BadDevice(#[source] IdError),
    /// The key prefix contains `{` or `}`, which would change the keys' hash tag.
    #[error("bad key prefix {0:?}: it may not contain `{{` or `}}`")]
    BadPrefix(String),
    /// The connection is signed on already (connection ids are unique for a node's life).
    #[error("connection {}:{} is signed on already", .0.node.0, .0.conn.0)]
    AlreadySignedOn(ConnRef),
    /// A sign-on policy this version does not know.
    #[error("sign-on policy {0:?} is not supported by chinwag-cluster-redis")]
    UnsupportedPolicy(SignOn),
    /// Redis could not be reached, or refused or failed the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis holds, or answered, something this crate did not write.
    #[error("corrupt sign-on data in Redis: {0}")]
    Corrupt(String),
}

impl ClusterError {
    /// Whether retrying later may succeed (Redis failed), as opposed to bad input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClusterError::Redis(_))
    }
}

/// For the cluster [`Directory`](chinwag_hub::Directory): every failure is
/// [`DirectoryError::Unavailable`], the hub's one way of refusing a sign-on it could not decide.
impl From<ClusterError> for DirectoryError {
    fn from(e: ClusterError) -> Self {
        DirectoryError::unavailable(e)
    }
}
