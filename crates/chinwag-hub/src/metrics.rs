//! The hub's metrics, through the [`metrics`] facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`; with none installed they cost a relaxed atomic load each).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `chinwag_hub_connections` | gauge | |
//! | `chinwag_hub_users_online` | gauge | |
//! | `chinwag_hub_rooms` | gauge | |
//! | `chinwag_hub_connects_total` | counter | `door` |
//! | `chinwag_hub_disconnects_total` | counter | `reason` |
//! | `chinwag_hub_messages_in_total` | counter | `kind` (`direct`, `publish`, `app`) |
//! | `chinwag_hub_messages_out_total` | counter | `kind` (`direct`, `room`, `presence`) |
//! | `chinwag_hub_fanout_deliveries_total` | counter | |
//! | `chinwag_hub_fanout_seconds` | histogram | (time to queue one publish on every member) |
//! | `chinwag_hub_queued_total` | counter | |
//! | `chinwag_hub_replayed_total` | counter | |
//! | `chinwag_hub_acked_total` | counter | |
//! | `chinwag_hub_ack_batch_size` | histogram | (acks applied by one queue call) |
//! | `chinwag_hub_expired_total` | counter | |
//! | `chinwag_hub_dropped_total` | counter | `reason` (`overflow`, `closed`, `filtered`) |
//! | `chinwag_hub_refusals_total` | counter | `reason` (`auth_<AuthError::reason>`, `connections`, `connection_rate`, `message_rate`, `room_full`, ...) |
//! | `chinwag_hub_send_queue_depth` | histogram | (a member's send queue length, sampled at each publish) |
//! | `chinwag_hub_offline_bytes` | gauge | (payload bytes senders hold in offline queues, as the hub counts them for fair shares) |

/// Connections signed on.
pub const CONNECTIONS: &str = "chinwag_hub_connections";
/// Users with at least one connection.
pub const USERS_ONLINE: &str = "chinwag_hub_users_online";
/// Rooms.
pub const ROOMS: &str = "chinwag_hub_rooms";
/// Sign-ons, by door.
pub const CONNECTS: &str = "chinwag_hub_connects_total";
/// Connections ended, by reason.
pub const DISCONNECTS: &str = "chinwag_hub_disconnects_total";
/// Messages from clients, by kind.
pub const MESSAGES_IN: &str = "chinwag_hub_messages_in_total";
/// Messages to clients, by kind.
pub const MESSAGES_OUT: &str = "chinwag_hub_messages_out_total";
/// Room deliveries.
pub const FANOUT_DELIVERIES: &str = "chinwag_hub_fanout_deliveries_total";
/// Time to queue one publish on every member.
pub const FANOUT_SECONDS: &str = "chinwag_hub_fanout_seconds";
/// Direct messages put into the offline queue.
pub const QUEUED: &str = "chinwag_hub_queued_total";
/// Queued messages sent by a replay.
pub const REPLAYED: &str = "chinwag_hub_replayed_total";
/// Queue entries removed by acknowledgements.
pub const ACKED: &str = "chinwag_hub_acked_total";
/// Acks applied by one queue call (the hub applies acks in batches).
pub const ACK_BATCH: &str = "chinwag_hub_ack_batch_size";
/// Queue entries removed because their TTL passed.
pub const EXPIRED: &str = "chinwag_hub_expired_total";
/// Deliveries that did not happen, by reason.
pub const DROPPED: &str = "chinwag_hub_dropped_total";
/// Refusals, by reason.
pub const REFUSALS: &str = "chinwag_hub_refusals_total";
/// Send queue depth of room members, sampled at publishes.
pub const SEND_QUEUE_DEPTH: &str = "chinwag_hub_send_queue_depth";
/// Payload bytes senders hold in offline queues (the fair shares' count).
pub const OFFLINE_BYTES: &str = "chinwag_hub_offline_bytes";
/// Publications appended to histories, by kind (`room`, `conversation`).
pub const HISTORY_APPENDS: &str = "chinwag_hub_history_appends_total";
/// Publications trimmed from histories (by count or age): seen by rooms' appends, and by the
/// periodic sweep (conversations' count trims are not counted).
pub const HISTORY_TRIMMED: &str = "chinwag_hub_history_trimmed_total";
/// Direct messages delivered but not kept in their conversation's history (the store failed).
pub const HISTORY_UNKEPT: &str = "chinwag_hub_history_unkept_total";
/// Joins with `since`, by outcome (`recovered`, or why not: `no_history`, `epoch_changed`,
/// `ahead`, `too_many`, `trimmed`, `unavailable`).
pub const RECOVERIES: &str = "chinwag_hub_recoveries_total";
/// Seconds from another hub's room publication (its `sent_at`, that hub's clock) to this hub
/// taking it for its members (shared history: the pub/sub lag and the room's queue, plus clock
/// skew between the hubs).
pub const REMOTE_LAG: &str = "chinwag_hub_remote_publication_lag_seconds";

/// Describes every metric to the installed recorder (help text and unit) and registers the
/// unlabelled ones at zero, so a scrape shows them from the start. [`Hub`](crate::Hub) calls
/// it when it is built; calling it again is harmless.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Connections signed on.");
    describe_gauge!(USERS_ONLINE, "Users with at least one connection.");
    describe_gauge!(ROOMS, "Rooms.");
    describe_counter!(CONNECTS, "Sign-ons, by door.");
    describe_counter!(DISCONNECTS, "Connections ended, by reason.");
    describe_counter!(MESSAGES_IN, "Messages from clients, by kind.");
    describe_counter!(MESSAGES_OUT, "Messages to clients, by kind.");
    describe_counter!(FANOUT_DELIVERIES, "Room deliveries.");
    describe_histogram!(
        FANOUT_SECONDS,
        Unit::Seconds,
        "Time to queue one publish on every member."
    );
    describe_counter!(QUEUED, "Direct messages put into the offline queue.");
    describe_counter!(REPLAYED, "Queued messages sent by a replay.");
    describe_counter!(ACKED, "Queue entries removed by acknowledgements.");
    describe_histogram!(ACK_BATCH, "Acks applied by one queue call.");
    describe_counter!(EXPIRED, "Queue entries removed because their TTL passed.");
    describe_counter!(DROPPED, "Deliveries that did not happen, by reason.");
    describe_counter!(REFUSALS, "Refusals, by reason.");
    describe_histogram!(
        SEND_QUEUE_DEPTH,
        "Send queue depth of room members, sampled at publishes."
    );
    describe_gauge!(
        OFFLINE_BYTES,
        Unit::Bytes,
        "Payload bytes senders hold in offline queues (the fair shares' count)."
    );
    describe_counter!(
        HISTORY_APPENDS,
        "Publications appended to histories, by kind (room, conversation)."
    );
    describe_counter!(
        HISTORY_TRIMMED,
        "Publications trimmed from histories, by count or age."
    );
    describe_counter!(
        HISTORY_UNKEPT,
        "Direct messages delivered but not kept in their conversation's history."
    );
    describe_counter!(RECOVERIES, "Joins with since, by outcome.");
    describe_histogram!(
        REMOTE_LAG,
        Unit::Seconds,
        "Time from another node's room publication to this node handing it out."
    );
    for g in [CONNECTIONS, USERS_ONLINE, ROOMS, OFFLINE_BYTES] {
        metrics::gauge!(g).increment(0.0);
    }
    for c in [
        FANOUT_DELIVERIES,
        QUEUED,
        REPLAYED,
        ACKED,
        EXPIRED,
        HISTORY_TRIMMED,
        HISTORY_UNKEPT,
    ] {
        metrics::counter!(c).increment(0);
    }
}

pub(crate) fn refusal(reason: &'static str) {
    metrics::counter!(REFUSALS, "reason" => reason).increment(1);
}

pub(crate) fn auth_refusal(reason: &'static str) {
    let label = match reason {
        "missing" => "auth_missing",
        "too_large" => "auth_too_large",
        "malformed" => "auth_malformed",
        "algorithm" => "auth_algorithm",
        "bad_signature" => "auth_bad_signature",
        "expired" => "auth_expired",
        "not_yet_valid" => "auth_not_yet_valid",
        "audience" => "auth_audience",
        "issuer" => "auth_issuer",
        "claims" => "auth_claims",
        "other_user" => "auth_other_user",
        "refused" => "auth_refused",
        "unavailable" => "auth_unavailable",
        "timeout" => "auth_timeout",
        _ => "auth_other",
    };
    refusal(label);
}

pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!(DROPPED, "reason" => reason).increment(1);
}
