//! The hub's settings: [`HubConfig`] and its [`HubLimits`]. Every limit has a default, listed
//! here and in `docs/limits.md`.

use std::time::Duration;

use crate::auth::TokenSources;
use crate::policy::{NodeId, SignOn};

/// A token bucket: `per_second` on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate (at least 1).
    pub per_second: u32,
    /// Largest burst (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, bursts of `burst`.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Rate { per_second, burst }
    }
}

/// What a send to a user with several connections reports when some were reached and others
/// not (tok's three behaviours). It matters only for live-only messages (TTL 0): a message with
/// a TTL is in the offline queue until acknowledged, so a connection that could not take it
/// gets it from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PartialDelivery {
    /// Success if at least one connection took it; the report counts the failures. The
    /// default.
    #[default]
    AnyDelivered,
    /// Any connection that could not take it makes the send fail with
    /// [`SendError::Partial`](crate::SendError::Partial) (the others did get it).
    AllOrError,
    /// Any connection that could not take it puts the message (same id) into the offline
    /// queue with this TTL, so the user gets it again on the next connect (clients drop the
    /// duplicate by id).
    QueueForUser {
        /// The TTL it is queued with.
        ttl: Duration,
    },
}

/// The hub's bounds. Each is enforced and tested at its boundary.
///
/// | field | default | past it |
/// |---|---|---|
/// | `max_connections` | 10 000 | sign-on refused (503) |
/// | `max_rooms` | 10 000 | join of a new room refused |
/// | `max_members_per_room` | 10 000 | join refused (`room_full`) |
/// | `max_rooms_per_connection` | 64 | join refused (`too_many_rooms`) |
/// | `connection_rate` (per source IP) | 50/s, bursts of 200 | connection refused (429) |
/// | `message_rate` (per connection) | 100/s, bursts of 200 | message refused (`rate_limited`); 4008 after `rate_limit_strikes` in a row |
/// | `rate_limit_strikes` | 50 | closed with 4008 |
/// | `max_body_bytes` | 64 KiB | message refused (`too_large`) |
/// | `max_room_name_bytes` | 128 | join refused (`bad_room`) |
/// | `max_password_bytes` | 128 | join refused (`bad_password`) |
/// | `max_held_live` | 256 | live-only messages held during a replay beyond it fail |
/// | `max_unacked` | 10 000 | older unacknowledged ids forgotten (acks are cumulative) |
/// | `max_page` | 1 000 | pages of members and rooms are cut there (0 counts as 1) |
/// | `password_checks` | 2 | room password checks at once (each ~19 MiB, tens of ms) |
/// | `password_wait` | 5 s | a join waiting longer for a check slot is refused (`busy`) |
/// | `max_tracked_ips` | 100 000 | connections from new IPs refused (429) until old ones age out |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubLimits {
    /// Connections signed on at once. Default 10 000.
    pub max_connections: usize,
    /// Rooms at once. Default 10 000.
    pub max_rooms: usize,
    /// Members of one room. Default 10 000.
    pub max_members_per_room: usize,
    /// Rooms one connection is in. Default 64.
    pub max_rooms_per_connection: usize,
    /// New connections per source IP (`None`: unlimited). Default 50/s, bursts of 200.
    pub connection_rate: Option<Rate>,
    /// Messages per connection (`None`: unlimited). Default 100/s, bursts of 200.
    pub message_rate: Option<Rate>,
    /// Refused messages in a row after which a connection is closed (4008). Default 50.
    pub rate_limit_strikes: u32,
    /// Largest message body. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Longest room name. Default 128.
    pub max_room_name_bytes: usize,
    /// Longest room password. Default 128.
    pub max_password_bytes: usize,
    /// Live-only messages held for a connection while it replays its queue. Default 256.
    pub max_held_live: usize,
    /// Unacknowledged message ids remembered per connection. Default 10 000.
    pub max_unacked: usize,
    /// Largest page of room members. Default 1 000.
    pub max_page: usize,
    /// Room password verifications running at once. Default 2.
    pub password_checks: usize,
    /// How long a join waits for a verification slot. Default 5 s.
    pub password_wait: Duration,
    /// Source IPs whose connection rate is tracked at once. Default 100 000.
    pub max_tracked_ips: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_connections: 10_000,
            max_rooms: 10_000,
            max_members_per_room: 10_000,
            max_rooms_per_connection: 64,
            connection_rate: Some(Rate::new(50, 200)),
            message_rate: Some(Rate::new(100, 200)),
            rate_limit_strikes: 50,
            max_body_bytes: 64 * 1024,
            max_room_name_bytes: 128,
            max_password_bytes: 128,
            max_held_live: 256,
            max_unacked: 10_000,
            max_page: 1_000,
            password_checks: 2,
            password_wait: Duration::from_secs(5),
            max_tracked_ips: 100_000,
        }
    }
}

macro_rules! setters {
    ($t:ty { $($(#[$m:meta])* $name:ident : $field:ident : $ty:ty),* $(,)? }) => {
        impl $t {
            $(
                $(#[$m])*
                pub fn $name(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*
        }
    };
}

setters!(HubLimits {
    /// Sets [`max_connections`](Self::max_connections).
    with_max_connections: max_connections: usize,
    /// Sets [`max_rooms`](Self::max_rooms).
    with_max_rooms: max_rooms: usize,
    /// Sets [`max_members_per_room`](Self::max_members_per_room).
    with_max_members_per_room: max_members_per_room: usize,
    /// Sets [`max_rooms_per_connection`](Self::max_rooms_per_connection).
    with_max_rooms_per_connection: max_rooms_per_connection: usize,
    /// Sets [`connection_rate`](Self::connection_rate).
    with_connection_rate: connection_rate: Option<Rate>,
    /// Sets [`message_rate`](Self::message_rate).
    with_message_rate: message_rate: Option<Rate>,
    /// Sets [`rate_limit_strikes`](Self::rate_limit_strikes).
    with_rate_limit_strikes: rate_limit_strikes: u32,
    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    with_max_body_bytes: max_body_bytes: usize,
    /// Sets [`max_room_name_bytes`](Self::max_room_name_bytes).
    with_max_room_name_bytes: max_room_name_bytes: usize,
    /// Sets [`max_password_bytes`](Self::max_password_bytes).
    with_max_password_bytes: max_password_bytes: usize,
    /// Sets [`max_held_live`](Self::max_held_live).
    with_max_held_live: max_held_live: usize,
    /// Sets [`max_unacked`](Self::max_unacked).
    with_max_unacked: max_unacked: usize,
    /// Sets [`max_page`](Self::max_page).
    with_max_page: max_page: usize,
    /// Sets [`password_checks`](Self::password_checks).
    with_password_checks: password_checks: usize,
    /// Sets [`password_wait`](Self::password_wait).
    with_password_wait: password_wait: Duration,
    /// Sets [`max_tracked_ips`](Self::max_tracked_ips).
    with_max_tracked_ips: max_tracked_ips: usize,
});

/// Settings of a [`Hub`](crate::Hub).
///
/// | field | default |
/// |---|---|
/// | `sign_on` | [`SignOn::Single`] |
/// | `limits` | [`HubLimits::default`] |
/// | `tokens` | [`TokenSources::default`] (Bearer, subprotocol, first message; no query) |
/// | `anonymous` | false |
/// | `auth_timeout` | 10 s (first-message logins) |
/// | `token_grace` | 30 s after `exp` |
/// | `default_ttl` | 7 days |
/// | `max_ttl` | 30 days |
/// | `partial` | [`PartialDelivery::AnyDelivered`] |
/// | `replay_page` | 64 entries per queue read |
/// | `replay_timeout` | 30 s (a replaying client that does not read for this long is closed) |
/// | `auto_create_rooms` | true (rooms without a password, removed when empty) |
/// | `sweep_interval` | 60 s (expired queue entries, rate-limiter state) |
/// | `node` | `NodeId(0)` |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// The sign-on policy. Default [`SignOn::Single`].
    pub sign_on: SignOn,
    /// Bounds.
    pub limits: HubLimits,
    /// Where tokens are looked for, and their size limit.
    pub tokens: TokenSources,
    /// Whether connections without a token are let in, each as a new user `anon-<random>`.
    /// On the chat door such a connection may still sign in as a user with one `auth`.
    /// Default false.
    pub anonymous: bool,
    /// How long a first-message login may take. Default 10 s.
    pub auth_timeout: Duration,
    /// How long past its token's `exp` a connection lives unless it refreshes. Default 30 s.
    pub token_grace: Duration,
    /// TTL of a direct message that names none. Default 7 days.
    pub default_ttl: Duration,
    /// Largest TTL a sender may ask for (larger ones are cut to it). Default 30 days.
    pub max_ttl: Duration,
    /// What a partially delivered live-only send reports.
    pub partial: PartialDelivery,
    /// Queue entries read at a time during a replay. Default 64.
    pub replay_page: usize,
    /// How long a replay waits for room in a connection's send queue. Default 30 s.
    pub replay_timeout: Duration,
    /// Whether joining an unknown room creates it. Default true.
    pub auto_create_rooms: bool,
    /// How often expired queue entries and idle rate-limiter state are swept. Default 60 s.
    pub sweep_interval: Duration,
    /// This node's id (clusters). Default 0.
    pub node: NodeId,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            sign_on: SignOn::Single,
            limits: HubLimits::default(),
            tokens: TokenSources::default(),
            anonymous: false,
            auth_timeout: Duration::from_secs(10),
            token_grace: Duration::from_secs(30),
            default_ttl: Duration::from_secs(7 * 24 * 3600),
            max_ttl: Duration::from_secs(30 * 24 * 3600),
            partial: PartialDelivery::AnyDelivered,
            replay_page: 64,
            replay_timeout: Duration::from_secs(30),
            auto_create_rooms: true,
            sweep_interval: Duration::from_secs(60),
            node: NodeId(0),
        }
    }
}

setters!(HubConfig {
    /// Sets [`sign_on`](Self::sign_on).
    with_sign_on: sign_on: SignOn,
    /// Sets [`limits`](Self::limits).
    with_limits: limits: HubLimits,
    /// Sets [`tokens`](Self::tokens).
    with_tokens: tokens: TokenSources,
    /// Sets [`anonymous`](Self::anonymous).
    with_anonymous: anonymous: bool,
    /// Sets [`auth_timeout`](Self::auth_timeout).
    with_auth_timeout: auth_timeout: Duration,
    /// Sets [`token_grace`](Self::token_grace).
    with_token_grace: token_grace: Duration,
    /// Sets [`default_ttl`](Self::default_ttl).
    with_default_ttl: default_ttl: Duration,
    /// Sets [`max_ttl`](Self::max_ttl).
    with_max_ttl: max_ttl: Duration,
    /// Sets [`partial`](Self::partial).
    with_partial: partial: PartialDelivery,
    /// Sets [`replay_page`](Self::replay_page).
    with_replay_page: replay_page: usize,
    /// Sets [`replay_timeout`](Self::replay_timeout).
    with_replay_timeout: replay_timeout: Duration,
    /// Sets [`auto_create_rooms`](Self::auto_create_rooms).
    with_auto_create_rooms: auto_create_rooms: bool,
    /// Sets [`sweep_interval`](Self::sweep_interval).
    with_sweep_interval: sweep_interval: Duration,
    /// Sets [`node`](Self::node).
    with_node: node: NodeId,
});
