//! The settings of a session: [`SessionConfig`] and the [`OverflowPolicy`] of its send queue.

use std::time::Duration;

/// What a session does when its outbound queue is full (in messages or in bytes).
///
/// With the `serde` feature: `"drop_newest"`, `"drop_oldest"`, `"close"`, or
/// `{ block = "10s" }` (the timeout as a [duration](chinwag_transport::duration)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "OverflowRepr", into = "OverflowRepr")
)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// The sender waits up to `timeout` for room; then the message is not queued and the send
    /// fails with [`SendError::Timeout`](crate::SendError::Timeout). Use for peers that must not lose messages and may be
    /// briefly slow. A broadcast to such a session waits too.
    Block {
        /// How long a send may wait for room.
        timeout: Duration,
    },
    /// The new message is discarded ([`SendError::Dropped`](crate::SendError::Dropped)); what is queued stays.
    DropNewest,
    /// The oldest queued messages are discarded until the new one fits; the send succeeds.
    /// Right for "latest state wins" feeds (prices, presence, cursors).
    DropOldest,
    /// The session is closed with [`CloseCause::Overflow`](crate::CloseCause::Overflow) and its queue discarded; the send
    /// fails with [`SendError::Overflow`](crate::SendError::Overflow). The default: a peer that cannot keep up is cut off
    /// rather than allowed to hold memory or slow anyone else.
    #[default]
    Close,
}

/// Settings of one session. Servers and clients share one value between all their sessions.
///
/// | field | default |
/// |---|---|
/// | [`queue_max_messages`](Self::queue_max_messages) | 1 024 |
/// | [`queue_max_bytes`](Self::queue_max_bytes) | 4 MiB |
/// | [`overflow`](Self::overflow) | [`OverflowPolicy::Close`] |
/// | [`idle_timeout`](Self::idle_timeout) | 300 s |
/// | [`heartbeat_interval`](Self::heartbeat_interval) | 60 s (codecs with a heartbeat only) |
/// | [`write_timeout`](Self::write_timeout) | 10 s |
/// | [`close_timeout`](Self::close_timeout) | 5 s |
/// | [`cron_interval`](Self::cron_interval) | `None` |
/// | [`max_decode_buffer`](Self::max_decode_buffer) | 32 MiB |
/// | [`message_timeout`](Self::message_timeout) | 10 s (byte streams) |
/// | [`message_min_rate`](Self::message_min_rate) | 64 KiB/s (byte streams) |
///
/// With the `serde` feature it reads from (and writes to) a table of these fields, durations
/// as [`chinwag_transport::duration`] writes them (`"300s"`, `"5m"`) and `"off"` for `None`;
/// a missing field keeps its default and an unknown one is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Most messages waiting in the outbound queue. Default 1 024. Values below 1 act as 1.
    pub queue_max_messages: usize,
    /// Most bytes waiting in the outbound queue. Default 4 MiB. A single message larger than
    /// this is accepted only into an empty queue (otherwise it could never be sent).
    pub queue_max_bytes: usize,
    /// What happens when the queue is full. Default [`OverflowPolicy::Close`].
    pub overflow: OverflowPolicy,
    /// Close with [`CloseCause::IdleTimeout`](crate::CloseCause::IdleTimeout) when no frame arrived from the peer for this long.
    /// Default 300 s. Every frame from the peer counts — data, and over WebSocket the pings and
    /// pongs the transport consumes itself ([`FrameRead::activity`]), so a peer that only
    /// listens but answers keepalive pings stays open. Our own frames (heartbeats, pings) do
    /// not count: they must not keep a dead peer's session alive.
    ///
    /// [`FrameRead::activity`]: chinwag_transport::FrameRead::activity
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub idle_timeout: Option<Duration>,
    /// Send a heartbeat ([`Service::heartbeat`](crate::Service::heartbeat); by default the
    /// codec's, [`Codec::heartbeat`](crate::Codec::heartbeat)) when nothing was written for this long. Default 60 s;
    /// nothing is sent when there is no heartbeat (codecs without one).
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub heartbeat_interval: Option<Duration>,
    /// Close with [`CloseCause::WriteTimeout`](crate::CloseCause::WriteTimeout) (dropping the connection) when one batch of
    /// writes does not finish within this time — a peer that stopped reading. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub write_timeout: Duration,
    /// After a close starts, how long the session may take to drain its queue and finish the
    /// close handshake before the connection is dropped. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration"))]
    pub close_timeout: Duration,
    /// Call [`Handler::on_cron`](crate::Handler::on_cron) this often. Default `None` (idle sessions then need no timer).
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub cron_interval: Option<Duration>,
    /// Byte streams: the most bytes the decode buffer may hold while the codec waits for the
    /// rest of a message. A safety net under the codec's own limits (which should refuse a
    /// too-large message from its header): over it, the session closes as a protocol error.
    /// Default 32 MiB (above the 16 MiB gotalk and 8 MiB length-delimited defaults).
    pub max_decode_buffer: usize,
    /// Byte streams: a message that has started must arrive within this time, extended by one
    /// second per [`message_min_rate`](Self::message_min_rate) bytes of it received — so a
    /// large message sent at a steady pace arrives, and a peer trickling bytes (each byte
    /// resets the idle timer) is cut: closed with [`CloseCause::MessageTimeout`] after the
    /// codec's farewell (gotalk: `f00000003`). Default 10 s. `None` disables it (WebSocket and
    /// UDP never need it: their engines deliver whole messages, and WebSocket keepalive cuts a
    /// peer trickling one frame).
    ///
    /// [`CloseCause::MessageTimeout`]: crate::CloseCause::MessageTimeout
    #[cfg_attr(feature = "serde", serde(with = "chinwag_transport::duration::option"))]
    pub message_timeout: Option<Duration>,
    /// The slowest pace, in bytes per second, that extends [`message_timeout`](Self::message_timeout)
    /// for a message under way. Default 64 KiB/s (a 16 MiB message may take 4 min 26 s).
    pub message_min_rate: u32,
}

/// The written form of [`OverflowPolicy`]: `{ block = "10s" }` rather than
/// `{ block = { timeout = "10s" } }`.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum OverflowRepr {
    Block(#[serde(with = "chinwag_transport::duration")] Duration),
    DropNewest,
    DropOldest,
    Close,
}

#[cfg(feature = "serde")]
impl From<OverflowRepr> for OverflowPolicy {
    fn from(r: OverflowRepr) -> Self {
        match r {
            OverflowRepr::Block(timeout) => OverflowPolicy::Block { timeout },
            OverflowRepr::DropNewest => OverflowPolicy::DropNewest,
            OverflowRepr::DropOldest => OverflowPolicy::DropOldest,
            OverflowRepr::Close => OverflowPolicy::Close,
        }
    }
}

#[cfg(feature = "serde")]
impl From<OverflowPolicy> for OverflowRepr {
    fn from(p: OverflowPolicy) -> Self {
        match p {
            OverflowPolicy::Block { timeout } => OverflowRepr::Block(timeout),
            OverflowPolicy::DropNewest => OverflowRepr::DropNewest,
            OverflowPolicy::DropOldest => OverflowRepr::DropOldest,
            OverflowPolicy::Close => OverflowRepr::Close,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            queue_max_messages: 1024,
            queue_max_bytes: 4 * 1024 * 1024,
            overflow: OverflowPolicy::Close,
            idle_timeout: Some(Duration::from_secs(300)),
            heartbeat_interval: Some(Duration::from_secs(60)),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            cron_interval: None,
            max_decode_buffer: 32 * 1024 * 1024,
            message_timeout: Some(Duration::from_secs(10)),
            message_min_rate: 64 * 1024,
        }
    }
}

impl SessionConfig {
    /// Sets [`queue_max_messages`](Self::queue_max_messages).
    pub fn with_queue_max_messages(mut self, queue_max_messages: usize) -> Self {
        self.queue_max_messages = queue_max_messages;
        self
    }

    /// Sets [`queue_max_bytes`](Self::queue_max_bytes).
    pub fn with_queue_max_bytes(mut self, queue_max_bytes: usize) -> Self {
        self.queue_max_bytes = queue_max_bytes;
        self
    }

    /// Sets [`overflow`](Self::overflow).
    pub fn with_overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets [`heartbeat_interval`](Self::heartbeat_interval).
    pub fn with_heartbeat_interval(mut self, heartbeat_interval: Option<Duration>) -> Self {
        self.heartbeat_interval = heartbeat_interval;
        self
    }

    /// Sets [`write_timeout`](Self::write_timeout).
    pub fn with_write_timeout(mut self, write_timeout: Duration) -> Self {
        self.write_timeout = write_timeout;
        self
    }

    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }

    /// Sets [`cron_interval`](Self::cron_interval).
    pub fn with_cron_interval(mut self, cron_interval: Option<Duration>) -> Self {
        self.cron_interval = cron_interval;
        self
    }

    /// Sets [`max_decode_buffer`](Self::max_decode_buffer).
    pub fn with_max_decode_buffer(mut self, max_decode_buffer: usize) -> Self {
        self.max_decode_buffer = max_decode_buffer;
        self
    }

    /// Sets [`message_timeout`](Self::message_timeout).
    pub fn with_message_timeout(mut self, message_timeout: Option<Duration>) -> Self {
        self.message_timeout = message_timeout;
        self
    }

    /// Sets [`message_min_rate`](Self::message_min_rate).
    pub fn with_message_min_rate(mut self, message_min_rate: u32) -> Self {
        self.message_min_rate = message_min_rate;
        self
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;
    use crate::ServerConfig;

    #[test]
    fn configs_round_trip_and_refuse_unknown_keys() {
        let d = ServerConfig::default();
        let text = toml::to_string(&d).unwrap();
        assert_eq!(toml::from_str::<ServerConfig>(&text).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<ServerConfig>(&json).unwrap(), d);
        assert!(text.contains("idle_timeout = \"5m\""), "{text}");
        assert!(text.contains("cron_interval = \"off\""), "{text}");
        assert!(text.contains("overflow = \"close\""), "{text}");

        let c: SessionConfig = toml::from_str(
            "overflow = { block = \"250ms\" }\nidle_timeout = \"off\"\nheartbeat_interval = \"0\"\n",
        )
        .unwrap();
        let want = SessionConfig::default()
            .with_overflow(OverflowPolicy::Block {
                timeout: Duration::from_millis(250),
            })
            .with_idle_timeout(None)
            .with_heartbeat_interval(None);
        assert_eq!(c, want);
        let back = toml::to_string(&c).unwrap();
        assert!(back.contains("block = \"250ms\""), "{back}");
        assert_eq!(toml::from_str::<SessionConfig>(&back).unwrap(), want);

        let e = toml::from_str::<ServerConfig>("[session]\nidle = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("`idle`"), "{e}");
        let e = toml::from_str::<SessionConfig>("write_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
