//! The hub's settings: [`HubConfig`] and its [`HubLimits`]. Every limit has a default, listed
//! here and in `docs/limits.md`.
//!
//! With the `serde` feature every settings type reads from (and writes to) a table of its
//! fields: a missing field keeps its default and an unknown one is an error naming it;
//! durations are written as [`chinwag_transport::duration`] writes them (`"10s"`, `"7d"`),
//! enums as lowercase strings (`sign_on = "per_device"`, `{ multi = 3 }`), an optional rate as
//! `{ per_second = 50, burst = 200 }` or `"off"`. A server reading `HubConfig` from a file
//! thereby gets every hub setting, present and future, without code of its own.

use std::time::Duration;

use crate::auth::TokenSources;
pub use crate::core::PartialDelivery;
pub use crate::core::rate::Rate;
use crate::core::signon::{NodeId, SignOn};

/// What senders may hold in the offline queue ("fair shares"; see `docs/limits.md`). Every
/// direct message with a TTL is charged to its sender until it leaves the queue (acknowledged
/// or expired), so one account cannot fill the store by writing to made-up recipients.
///
/// | field | default | past it |
/// |---|---|---|
/// | `per_sender_bytes` | 16 MiB | send refused (`quota`) |
/// | `per_sender_messages` | 10 000 | send refused (`quota`) |
/// | `total_bytes` | 1 GiB (the queue's default overall bound) | — (the queue's own bound refuses) |
/// | `reserve_bytes` | 128 MiB | once the store holds `total_bytes - reserve_bytes`, only light senders may add |
/// | `light_sender_bytes` | 1 MiB | who counts as light |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct OfflineShares {
    /// Payload bytes one sender may hold in other users' queues. Default 16 MiB.
    pub per_sender_bytes: u64,
    /// Messages one sender may hold in other users' queues. Default 10 000.
    pub per_sender_messages: u64,
    /// The offline store's overall bound (set it to the queue's `max_total_bytes`). Default
    /// 1 GiB, `chinwag_queue::QueueConfig`'s default.
    pub total_bytes: u64,
    /// The last part of the store, kept for light senders. Default 128 MiB.
    pub reserve_bytes: u64,
    /// A sender holding at most this much is light. Default 1 MiB.
    pub light_sender_bytes: u64,
}

impl Default for OfflineShares {
    fn default() -> Self {
        OfflineShares {
            per_sender_bytes: 16 << 20,
            per_sender_messages: 10_000,
            total_bytes: 1 << 30,
            reserve_bytes: 128 << 20,
            light_sender_bytes: 1 << 20,
        }
    }
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
/// | `rate_limit_strikes` | 50 | closed with 4008 (refused messages in a row; refused room-password joins in a row, counted apart) |
/// | `max_body_bytes` | 64 KiB | message refused (`too_large`) |
/// | `max_room_name_bytes` | 128 | join refused (`bad_room`) |
/// | `max_password_bytes` | 128 | join refused (`bad_password`) |
/// | `max_held_live` | 256 | live-only messages held during a replay beyond it fail |
/// | `max_unacked` | 10 000 | older unacknowledged ids forgotten (acks are cumulative) |
/// | `max_page` | 1 000 | pages of members, rooms and online users are cut there (0 counts as 1) |
/// | `password_checks` | 2 | room password checks at once (each ~19 MiB, tens of ms); one address holds half (at least 1), more are `busy` |
/// | `password_wait` | 5 s | a join waiting longer for a check slot is refused (`busy`) |
/// | `password_guess_rate` (per connection) | 1/s, bursts of 5 | join refused (`guessing_too_fast`); one check at a time per connection (`busy`) |
/// | `password_guess_rate_per_ip` | 5/s, bursts of 20 | join refused (`guessing_too_fast`) |
/// | `password_strikes` | 5 | the 5th wrong password closes the connection (4010) |
/// | `max_tracked_ips` | 100 000 | connections from new IPs refused (429) until old ones age out |
/// | `max_pending_per_user` | 1 024 | a send refused (`busy`) while so many wait for one user's earlier sends |
/// | `max_pending_publishes` | 1 024 | a publish refused (`busy`) while so many wait for one room's fan-out |
/// | `offline` | [`OfflineShares::default`] | send refused (`quota`) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
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
    #[cfg_attr(feature = "serde", serde(with = "rate_or_off"))]
    pub connection_rate: Option<Rate>,
    /// Messages per connection (`None`: unlimited). Default 100/s, bursts of 200.
    #[cfg_attr(feature = "serde", serde(with = "rate_or_off"))]
    pub message_rate: Option<Rate>,
    /// Refused messages in a row after which a connection is closed (4008); the same for
    /// joins with a room password refused in a row (`guessing_too_fast`, `busy`), counted apart.
    /// Default 50.
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
    /// Largest page of room members, rooms and online users. Default 1 000.
    pub max_page: usize,
    /// Room password verifications running at once. Default 2.
    pub password_checks: usize,
    /// How long a join waits for a verification slot. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub password_wait: Duration,
    /// Room password guesses per connection. Default 1/s, bursts of 5.
    pub password_guess_rate: Rate,
    /// Room password guesses per source IP. Default 5/s, bursts of 20.
    pub password_guess_rate_per_ip: Rate,
    /// Wrong room passwords after which a connection is closed (4010). Default 5.
    pub password_strikes: u32,
    /// Source IPs whose connection rate (and guess rate) is tracked at once. Default 100 000.
    pub max_tracked_ips: usize,
    /// Sends waiting for one user's earlier sends to be stored. Default 1 024.
    pub max_pending_per_user: usize,
    /// Publishes and presence events waiting for one room's fan-out. Default 1 024.
    pub max_pending_publishes: usize,
    /// What senders may hold in the offline queue.
    pub offline: OfflineShares,
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
            password_guess_rate: Rate::new(1, 5),
            password_guess_rate_per_ip: Rate::new(5, 20),
            password_strikes: 5,
            max_tracked_ips: 100_000,
            max_pending_per_user: 1_024,
            max_pending_publishes: 1_024,
            offline: OfflineShares::default(),
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
    /// Sets [`password_guess_rate`](Self::password_guess_rate).
    with_password_guess_rate: password_guess_rate: Rate,
    /// Sets [`password_guess_rate_per_ip`](Self::password_guess_rate_per_ip).
    with_password_guess_rate_per_ip: password_guess_rate_per_ip: Rate,
    /// Sets [`password_strikes`](Self::password_strikes).
    with_password_strikes: password_strikes: u32,
    /// Sets [`max_tracked_ips`](Self::max_tracked_ips).
    with_max_tracked_ips: max_tracked_ips: usize,
    /// Sets [`max_pending_per_user`](Self::max_pending_per_user).
    with_max_pending_per_user: max_pending_per_user: usize,
    /// Sets [`max_pending_publishes`](Self::max_pending_publishes).
    with_max_pending_publishes: max_pending_publishes: usize,
    /// Sets [`offline`](Self::offline).
    with_offline: offline: OfflineShares,
});

setters!(OfflineShares {
    /// Sets [`per_sender_bytes`](Self::per_sender_bytes).
    with_per_sender_bytes: per_sender_bytes: u64,
    /// Sets [`per_sender_messages`](Self::per_sender_messages).
    with_per_sender_messages: per_sender_messages: u64,
    /// Sets [`total_bytes`](Self::total_bytes).
    with_total_bytes: total_bytes: u64,
    /// Sets [`reserve_bytes`](Self::reserve_bytes).
    with_reserve_bytes: reserve_bytes: u64,
    /// Sets [`light_sender_bytes`](Self::light_sender_bytes).
    with_light_sender_bytes: light_sender_bytes: u64,
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
/// | `presence_on_join` | false (rooms made by joining send no presence events) |
/// | `sweep_interval` | 60 s (expired queue entries, rate-limiter state) |
/// | `ack_linger` | 5 ms (acks gathered into one queue call) |
/// | `max_ack_batch` | 256 acks per queue call |
/// | `node` | `NodeId(0)` |
/// | `history` | [`RoomHistory::default`](crate::RoomHistory) |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
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
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub auth_timeout: Duration,
    /// How long past its token's `exp` a connection lives unless it refreshes. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub token_grace: Duration,
    /// TTL of a direct message that names none. Default 7 days.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub default_ttl: Duration,
    /// Largest TTL a sender may ask for (larger ones are cut to it). Default 30 days.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub max_ttl: Duration,
    /// What a partially delivered live-only send reports.
    pub partial: PartialDelivery,
    /// Queue entries read at a time during a replay. Default 64.
    pub replay_page: usize,
    /// How long a replay waits for room in a connection's send queue. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub replay_timeout: Duration,
    /// Whether joining an unknown room creates it. Default true.
    pub auto_create_rooms: bool,
    /// Whether a room made by joining sends its members `presence` events (joins and leaves of
    /// the others), as a room made with
    /// [`RoomOptions::with_presence_events`](crate::RoomOptions::with_presence_events) does.
    /// Default false.
    pub presence_on_join: bool,
    /// How often expired queue entries and idle rate-limiter state are swept. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub sweep_interval: Duration,
    /// How long the hub gathers acknowledgements after the first one before it applies them
    /// with one queue call (on Redis one round trip; on redb one transaction). Default 5 ms:
    /// an ack is answered up to this much later; zero gathers only those already waiting.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub ack_linger: Duration,
    /// Most acknowledgements one queue call applies. Default 256.
    pub max_ack_batch: usize,
    /// This node's id (clusters). Default 0.
    pub node: NodeId,
    /// Room history: what rooms keep, what a join recovers.
    pub history: crate::RoomHistory,
    /// The offline queue is shared with other hubs that act as one (a cluster node; the
    /// facade's `redis_cluster` sets it). Default false. Then every direct message goes through
    /// the queue, whose per-user entry ids are one order for the whole cluster: a message's
    /// [`MessageId`](crate::MessageId) **is** its entry id (increasing per user across nodes,
    /// which the protocol promises clients), a connection takes messages only in an unbroken
    /// run of entries (a gap means another node stored one: it reads the queue), and a
    /// live-only send (TTL 0) to a user online anywhere is queued with
    /// [`shared_live_ttl`](Self::shared_live_ttl) so that it reaches the user's connections on
    /// other nodes in that order. Other hubs' entries reach this one through
    /// [`Hub::stored_elsewhere`](crate::Hub::stored_elsewhere) and
    /// [`Hub::catch_up`](crate::Hub::catch_up). The queue's ids must be dense per user (the
    /// Redis queue's are).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub shared_queue: bool,
    /// The room history is shared with other hubs that act as one (a cluster node; the
    /// facade's `redis_cluster` sets it). Default false. Then a room that keeps history is one
    /// room across the hubs: its epoch and offsets are the shared history's, a publish on any
    /// hub reaches the members on every hub in offset order (other hubs' publications come in
    /// through [`Hub::published_elsewhere`](crate::Hub::published_elsewhere); a hub that finds
    /// offsets missing reads them from the history), and the hub tells its
    /// [`Directory`](crate::Directory) which rooms it has members in
    /// ([`Directory::room_member`](crate::Directory::room_member)). Rooms that keep no
    /// history stay per hub.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub shared_history: bool,
    /// With a [`shared_queue`](Self::shared_queue): the TTL a live-only send is queued with.
    /// Default 30 s.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub shared_live_ttl: Duration,
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
            presence_on_join: false,
            sweep_interval: Duration::from_secs(60),
            ack_linger: Duration::from_millis(5),
            max_ack_batch: 256,
            node: NodeId(0),
            history: crate::RoomHistory::default(),
            shared_queue: false,
            shared_history: false,
            shared_live_ttl: Duration::from_secs(30),
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
    /// Sets [`presence_on_join`](Self::presence_on_join).
    with_presence_on_join: presence_on_join: bool,
    /// Sets [`sweep_interval`](Self::sweep_interval).
    with_sweep_interval: sweep_interval: Duration,
    /// Sets [`ack_linger`](Self::ack_linger).
    with_ack_linger: ack_linger: Duration,
    /// Sets [`max_ack_batch`](Self::max_ack_batch).
    with_max_ack_batch: max_ack_batch: usize,
    /// Sets [`node`](Self::node).
    with_node: node: NodeId,
    /// Sets [`history`](Self::history).
    with_history: history: crate::RoomHistory,
    /// Sets [`shared_queue`](Self::shared_queue).
    with_shared_queue: shared_queue: bool,
    /// Sets [`shared_history`](Self::shared_history).
    with_shared_history: shared_history: bool,
    /// Sets [`shared_live_ttl`](Self::shared_live_ttl).
    with_shared_live_ttl: shared_live_ttl: Duration,
});

/// `Option<Rate>` fields: `None` is written `"off"`; `"off"`, and a rate of 0 per second,
/// read as `None`.
#[cfg(feature = "serde")]
mod rate_or_off {
    use std::fmt;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Rate;

    const OFF: &str = "off";

    pub(super) fn serialize<S: Serializer>(r: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            None => s.serialize_str(OFF),
            Some(r) => r.serialize(s),
        }
    }

    struct RateVisitor;

    impl<'de> Visitor<'de> for RateVisitor {
        type Value = Option<Rate>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("{ per_second = N, burst = N } or \"off\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Rate>, E> {
            if v.trim().eq_ignore_ascii_case(OFF) {
                Ok(None)
            } else {
                Err(E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Rate>, A::Error> {
            let r = Rate::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok((r.per_second > 0).then_some(r))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
        d.deserialize_any(RateVisitor)
    }
}

/// `Option<String>` fields whose `None` is written `""`.
#[cfg(feature = "serde")]
pub(crate) mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = String::deserialize(d)?;
        Ok((!v.is_empty()).then_some(v))
    }
}

/// The written form of [`SignOn`]: `"single"`, `"per_device"`, `{ multi = 3 }`.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SignOnRepr {
    Single,
    PerDevice,
    Multi(usize),
}

#[cfg(feature = "serde")]
impl TryFrom<SignOnRepr> for SignOn {
    type Error = String;

    fn try_from(r: SignOnRepr) -> Result<Self, String> {
        Ok(match r {
            SignOnRepr::Single => SignOn::Single,
            SignOnRepr::PerDevice => SignOn::PerDevice,
            SignOnRepr::Multi(0) => return Err("`multi` keeps at least 1 connection".into()),
            SignOnRepr::Multi(max) => SignOn::Multi { max },
        })
    }
}

#[cfg(feature = "serde")]
impl From<SignOn> for SignOnRepr {
    fn from(s: SignOn) -> Self {
        match s {
            SignOn::Single => SignOnRepr::Single,
            SignOn::PerDevice => SignOnRepr::PerDevice,
            SignOn::Multi { max } => SignOnRepr::Multi(max),
        }
    }
}

/// The written form of [`PartialDelivery`]: `"any_delivered"`, `"all_or_error"`,
/// `{ queue_for_user = "7d" }`.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PartialRepr {
    AnyDelivered,
    AllOrError,
    QueueForUser(#[serde(with = "chinwag_transport::duration")] Duration),
}

#[cfg(feature = "serde")]
impl From<PartialRepr> for PartialDelivery {
    fn from(r: PartialRepr) -> Self {
        match r {
            PartialRepr::AnyDelivered => PartialDelivery::AnyDelivered,
            PartialRepr::AllOrError => PartialDelivery::AllOrError,
            PartialRepr::QueueForUser(ttl) => PartialDelivery::QueueForUser { ttl },
        }
    }
}

#[cfg(feature = "serde")]
impl From<PartialDelivery> for PartialRepr {
    fn from(p: PartialDelivery) -> Self {
        match p {
            PartialDelivery::AnyDelivered => PartialRepr::AnyDelivered,
            PartialDelivery::AllOrError => PartialRepr::AllOrError,
            PartialDelivery::QueueForUser { ttl } => PartialRepr::QueueForUser(ttl),
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests;
