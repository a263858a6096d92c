//! The driver: [`Hub`], the handle applications and doors hold. It owns the core's state behind
//! sharded locks, carries out what the core decides (queue I/O, writes to connections, timers,
//! password checks) and is the only part of the hub that awaits, spawns or reads a clock.
//!
//! **Sharding.** Users (with their connections and delivery state) live in one of
//! [`SHARDS`] user shards chosen by a hash of the user id; rooms in one of [`SHARDS`] room
//! shards by a hash of the room name. A send locks only its recipient's shard (and the
//! sender's, for its rate), a publish only its room's shard, an ack only its connection's user
//! shard; no lock is held across an await, a queue operation or a write to a socket. The few
//! global tables (per-sender shares, per-address rates, token deadlines) are small and touched
//! once per operation. Locks are never nested except a room shard and its room's fan-out queue
//! (a leaf), so there is no lock order to get wrong.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the handle, the builder, the shards, the clock |
//! | `conn.rs` | [`Conn`], one signed-on connection as doors and applications see it |
//! | `signon.rs` | authentication, connection rate, attach/detach, refresh, closes, shutdown |
//! | `direct.rs` | sends to users: the pipeline runner, acks, app messages |
//! | `replay.rs` | a connection's replay of its queued messages |
//! | `rooms.rs` | rooms: create, join, leave, publish, broadcast |
//! | `passwords.rs` | room passwords: a join's checks, and the check before a sign-on |
//! | `fanout.rs` | handing events to connections: encodings, hooks, ordered per-room fan-out |
//! | `timers.rs` | token expiry and the periodic sweep |
//! | `cluster.rs` | what a cluster directory needs: closing another node's replacements, this node's connections, [`WeakHub`] |

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chinwag_queue::{History, MemoryQueue, Queue, QueueConfig};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::HubConfig;
use crate::core::expiry::Deadlines;
use crate::core::guesses::{AddressChecks, GuessLimits};
use crate::core::message::IdSource;
use crate::core::pipeline::Token;
use crate::core::rate::KeyedRates;
use crate::core::rooms::Rooms;
use crate::core::shares::{ShareLimits, Shares, Ticket};
use crate::core::time::Time;
use crate::core::users::{UserLimits, Users};
use crate::directory::{self, Directory};
use crate::error::SendError;
use crate::hooks::{App, NoApp};
use crate::link::{DoorFormat, Format};
use crate::metrics as m;

mod acks;
mod admin;
mod cluster;
mod conn;
mod conversation;
mod direct;
mod fanout;
mod history;
mod passwords;
mod presence;
mod publish;
mod remote;
mod replay;
mod rooms;
mod signon;
mod store;
mod timers;

pub use cluster::WeakHub;
pub use conn::{Attach, Conn};
pub use conversation::ConversationPage;
pub use direct::{DeliveryReport, SendOptions};
pub use history::{HistoryFrom, HistoryPage, Recovery};
pub use passwords::JoinPass;
pub use presence::{Member, MembersPage, OnlinePage, Presence};
pub use publish::PublishReport;

/// How many user shards and room shards a hub has (a power of two).
pub(crate) const SHARDS: usize = 16;

/// The IM hub. Cheap to clone (a handle); every clone is the same hub.
///
/// Make one with [`Hub::builder`] inside a Tokio runtime (it runs two background tasks: token
/// expiry and the queue sweep), then bring connections in through the doors in
/// [`doors`](crate::doors).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

/// A user shard: the core's users, its id source, and the senders waiting for their sends.
pub(crate) struct UserShard {
    pub(crate) core: Users<Conn>,
    pub(crate) ids: IdSource,
    pub(crate) waiters: HashMap<Token, direct::Waiter>,
}

/// A room shard: the core's rooms and each room's ordered fan-out queue.
pub(crate) struct RoomShard {
    pub(crate) core: Rooms<Conn>,
    pub(crate) fanout: HashMap<Arc<str>, Arc<fanout::Fanout>>,
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) queue: Arc<dyn Queue>,
    /// Room history (`None`: rooms keep nothing).
    pub(crate) history: Option<Arc<dyn History>>,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) app: Arc<dyn App>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    origin: tokio::time::Instant,
    hasher: RandomState,
    pub(crate) users: Box<[Mutex<UserShard>]>,
    pub(crate) rooms: Box<[Mutex<RoomShard>]>,
    pub(crate) shares: Mutex<Shares>,
    /// Token expiry deadlines: (connection, its user shard).
    pub(crate) deadlines: Mutex<Deadlines<(crate::ConnId, usize)>>,
    pub(crate) deadlines_changed: Arc<Notify>,
    pub(crate) conn_rates: Option<Mutex<KeyedRates<IpAddr>>>,
    pub(crate) guess_rates: Mutex<KeyedRates<IpAddr>>,
    pub(crate) guess_limits: GuessLimits,
    pub(crate) password_checks: Arc<Semaphore>,
    /// Each address's checks in flight (its share of `password_checks`).
    pub(crate) address_checks: Arc<Mutex<AddressChecks<IpAddr>>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) next_token: AtomicU64,
    /// Connections attached (closing ones included): the `max_connections` bound.
    pub(crate) attached: AtomicUsize,
    /// Attached connections the hub is closing (no longer recipients).
    pub(crate) closing: AtomicUsize,
    /// Users with at least one attached connection.
    pub(crate) users_online: AtomicUsize,
    pub(crate) room_count: AtomicUsize,
    pub(crate) last_epoch: AtomicU64,
    pub(crate) formats: AtomicUsize,
    pub(crate) broadcast_seq: AtomicU64,
    pub(crate) stopping: AtomicBool,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// To the task that applies acks in batches ([`acks`]).
    pub(crate) acks: tokio::sync::mpsc::Sender<acks::AckRequest>,
    /// Bumped at every sign-on, sign-off, close, join and leave.
    pub(crate) changes: watch::Sender<u64>,
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    config: HubConfig,
    queue: Option<Arc<dyn Queue>>,
    history: Option<Arc<dyn History>>,
    directory: Option<Arc<dyn Directory>>,
    app: Arc<dyn App>,
    authenticator: Option<Arc<dyn Authenticator>>,
}

impl HubBuilder {
    /// The settings (default [`HubConfig::default`]).
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// The offline queue (default: a [`MemoryQueue`] with default bounds).
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The room history store (default: none, rooms keep nothing). What rooms keep and how
    /// much a join recovers: [`HubConfig::history`].
    pub fn history(mut self, history: Arc<dyn History>) -> Self {
        self.history = Some(history);
        self
    }

    /// The directory (default: [`LocalDirectory`](crate::LocalDirectory)).
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The application's hooks (default: [`NoApp`]).
    pub fn app(mut self, app: Arc<dyn App>) -> Self {
        self.app = app;
        self
    }

    /// Who checks tokens. Without one, only anonymous connections (when enabled) get in.
    pub fn authenticator(mut self, a: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(a);
        self
    }

    /// Builds the hub and starts its background tasks.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn build(self) -> Hub {
        m::describe();
        let c = &self.config;
        let l = &c.limits;
        let user_limits = UserLimits {
            max_held_live: l.max_held_live,
            max_unacked: l.max_unacked,
            replay_page: c.replay_page.max(1),
            max_pending_per_user: l.max_pending_per_user.max(1),
            message_rate: l.message_rate,
            rate_limit_strikes: l.rate_limit_strikes,
            partial: c.partial,
            shared_queue: c.shared_queue,
        };
        let queue = self
            .queue
            .unwrap_or_else(|| Arc::new(MemoryQueue::new(QueueConfig::default())));
        let q = &l.offline;
        let share_limits = ShareLimits {
            per_sender_bytes: q.per_sender_bytes,
            per_sender_messages: q.per_sender_messages,
            total_bytes: q.total_bytes,
            reserve_bytes: q.reserve_bytes.min(q.total_bytes),
            light_sender_bytes: q.light_sender_bytes,
        };
        let (acks_tx, acks_rx) = acks::channel();
        let inner = Arc::new(Inner {
            queue,
            history: self.history,
            directory: self.directory.unwrap_or_else(directory::local),
            app: self.app,
            authenticator: self.authenticator,
            origin: tokio::time::Instant::now(),
            hasher: RandomState::new(),
            users: (0..SHARDS)
                .map(|_| {
                    Mutex::new(UserShard {
                        core: Users::new(user_limits.clone()),
                        ids: IdSource::default(),
                        waiters: Default::default(),
                    })
                })
                .collect(),
            rooms: (0..SHARDS)
                .map(|_| {
                    Mutex::new(RoomShard {
                        core: Rooms::default(),
                        fanout: Default::default(),
                    })
                })
                .collect(),
            shares: Mutex::new(Shares::new(share_limits)),
            deadlines: Mutex::new(Deadlines::default()),
            deadlines_changed: Arc::new(Notify::new()),
            conn_rates: l
                .connection_rate
                .map(|r| Mutex::new(KeyedRates::new(r, l.max_tracked_ips))),
            guess_rates: Mutex::new(KeyedRates::new(
                l.password_guess_rate_per_ip,
                l.max_tracked_ips,
            )),
            guess_limits: GuessLimits {
                rate: l.password_guess_rate,
                strikes: l.password_strikes,
                refusals: l.rate_limit_strikes,
            },
            password_checks: Arc::new(Semaphore::new(l.password_checks.max(1))),
            address_checks: Arc::new(Mutex::new(AddressChecks::new(l.password_checks.max(1)))),
            next_conn: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
            attached: AtomicUsize::new(0),
            closing: AtomicUsize::new(0),
            users_online: AtomicUsize::new(0),
            room_count: AtomicUsize::new(0),
            last_epoch: AtomicU64::new(0),
            formats: AtomicUsize::new(0),
            broadcast_seq: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            acks: acks_tx,
            changes: watch::Sender::new(0),
            config: self.config,
        });
        let hub = Hub { inner };
        hub.inner
            .tasks
            .spawn(timers::expiry_loop(Arc::downgrade(&hub.inner)));
        hub.inner
            .tasks
            .spawn(timers::sweep_loop(Arc::downgrade(&hub.inner)));
        hub.inner
            .tasks
            .spawn(acks::ack_loop(Arc::downgrade(&hub.inner), acks_rx));
        hub
    }
}

/// A body over the hub's limit (converts into the `TooLarge` of [`SendError`] and
/// [`RoomError`](crate::RoomError)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TooLarge {
    pub(crate) len: usize,
    pub(crate) limit: usize,
}

impl From<TooLarge> for SendError {
    fn from(t: TooLarge) -> Self {
        SendError::TooLarge {
            len: t.len,
            limit: t.limit,
        }
    }
}

impl From<TooLarge> for crate::RoomError {
    fn from(t: TooLarge) -> Self {
        crate::RoomError::TooLarge {
            len: t.len,
            limit: t.limit,
        }
    }
}

/// Locks a shard or table (a panic elsewhere does not stop the hub: the core's state is
/// consistent between calls).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The wall clock, unix microseconds.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Hub {
    /// Starts building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            config: HubConfig::default(),
            queue: None,
            history: None,
            directory: None,
            app: Arc::new(NoApp),
            authenticator: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The offline queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// The room history store, if the hub has one.
    pub fn history_store(&self) -> Option<&Arc<dyn History>> {
        self.inner.history.as_ref()
    }

    /// Whether the hub is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever a connection signs on or off, is closed by the hub,
    /// joins or leaves a room (a counter; the value means nothing). For waiting until the hub
    /// reaches a state without polling:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hub = chinwag::hub::Hub::builder().build();
    /// let mut changes = hub.changes();
    /// while hub.connection_count() != 0 {
    ///     changes.changed().await.unwrap();
    /// }
    /// # }
    /// ```
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Registers a door's event format (doors do it when they are made). Connections attached
    /// with the returned [`DoorFormat`] share each event's encoding: a fan-out encodes once per
    /// registered format, not once per member.
    pub fn register_format(&self, format: Arc<dyn Format>) -> DoorFormat {
        DoorFormat {
            id: self.inner.formats.fetch_add(1, Ordering::Relaxed),
            format,
        }
    }
}

impl Inner {
    /// Now, on the hub's clock (Tokio's: tests can pause it).
    pub(crate) fn now(&self) -> Time {
        Time::from_duration(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }

    /// The Tokio instant of a core time.
    pub(crate) fn instant(&self, t: Time) -> tokio::time::Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }

    fn shard_of(&self, key: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        (std::hash::Hasher::finish(&h) as usize) & (SHARDS - 1)
    }

    /// The user shard of `user`.
    pub(crate) fn user_shard(&self, user: &str) -> usize {
        self.shard_of(user)
    }

    /// The room shard of `room`.
    pub(crate) fn room_shard(&self, room: &str) -> usize {
        self.shard_of(room)
    }

    pub(crate) fn users(&self, shard: usize) -> MutexGuard<'_, UserShard> {
        lock(&self.users[shard])
    }

    pub(crate) fn rooms(&self, shard: usize) -> MutexGuard<'_, RoomShard> {
        lock(&self.rooms[shard])
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// A new room epoch: unix microseconds, or one more than the last (a room made again gets
    /// a larger epoch).
    pub(crate) fn epoch(&self) -> u64 {
        let now = unix_micros();
        let prev = self
            .last_epoch
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                Some(now.max(l + 1))
            })
            .unwrap_or_else(|v| v);
        now.max(prev + 1)
    }

    /// Changes the per-sender shares; the `chinwag_hub_offline_bytes` gauge follows.
    pub(crate) fn shares<R>(&self, f: impl FnOnce(&mut Shares) -> R) -> R {
        let mut s = lock(&self.shares);
        let r = f(&mut s);
        metrics::gauge!(m::OFFLINE_BYTES).set(s.total() as f64);
        r
    }

    /// The body limit: `Err` when `body` is over [`HubLimits::max_body_bytes`](crate::HubLimits).
    pub(crate) fn check_body(&self, body: &crate::Body) -> Result<(), TooLarge> {
        let limit = self.config.limits.max_body_bytes;
        if body.len() > limit {
            return Err(TooLarge {
                len: body.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Gives a send's share back (its push failed or it never started).
    pub(crate) fn cancel_share(&self, t: Option<Ticket>) {
        if let Some(t) = t {
            self.shares(|s| s.cancel(t));
        }
    }

    /// Completes a waiting sender.
    pub(crate) fn complete(&self, tx: oneshot::Sender<direct::Outcome>, r: direct::Outcome) {
        let _ = tx.send(r);
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish()
    }
}
