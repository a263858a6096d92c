//! Limits and timeouts of one RPC connection, with documented defaults.

use std::time::Duration;

use chinwag_session::{OverflowPolicy, SessionConfig};
use chinwag_wire::WireLimits;

/// The range of waits a peer is told to observe when it goes over our request limits (sent in
/// a gotalk RetryResult). Validated: `min <= max`; `min == max` is a fixed wait (gotalk's Go
/// server panics on that; this one does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryWait {
    min: Duration,
    max: Duration,
}

impl RetryWait {
    /// A wait drawn uniformly from `min..=max`.
    ///
    /// # Errors
    ///
    /// `min > max`, or `max` does not fit the wire's 32-bit millisecond field.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chinwag::rpc::RetryWait;
    /// let fixed = RetryWait::new(Duration::from_millis(50), Duration::from_millis(50)).unwrap();
    /// assert_eq!(fixed.pick(12345), Duration::from_millis(50));
    /// assert!(RetryWait::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    /// ```
    pub fn new(min: Duration, max: Duration) -> Result<Self, String> {
        if min > max {
            return Err(format!(
                "retry wait: min {min:?} is greater than max {max:?}"
            ));
        }
        if max.as_millis() > u128::from(u32::MAX) {
            return Err(format!(
                "retry wait: max {max:?} exceeds the wire's 2^32-1 ms"
            ));
        }
        Ok(RetryWait { min, max })
    }

    /// The shortest wait.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The wait for a random value `r` (any u64): `min + r mod (max - min + 1 ms)`.
    pub fn pick(&self, r: u64) -> Duration {
        let span = (self.max - self.min).as_millis() as u64 + 1;
        self.min + Duration::from_millis(r % span)
    }
}

impl Default for RetryWait {
    fn default() -> Self {
        RetryWait {
            min: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }
}

/// Settings of every RPC connection of a server or client.
///
/// | field | default | why |
/// |---|---|---|
/// | [`max_requests`](Self::max_requests) | 256 | single requests served at once per connection; over it the peer gets a RetryResult |
/// | [`max_streams`](Self::max_streams) | 32 | stream requests served at once per connection; likewise |
/// | [`retry_wait`](Self::retry_wait) | 100 ms ..= 1 s | the wait we ask a peer over our limits to observe |
/// | [`max_retries`](Self::max_retries) | 5 | how often our requests retry after a RetryResult |
/// | [`max_retry_wait`](Self::max_retry_wait) | 30 s | a longer wait asked by a peer fails the request instead |
/// | [`request_timeout`](Self::request_timeout) | 30 s | whole request, retries included; `None` = no timeout |
/// | [`stream_buffer`](Self::stream_buffer) | 32 chunks | per stream, inbound; when full the connection stops reading |
/// | [`notification_buffer`](Self::notification_buffer) | 256 | notifications waiting for their handler; when full the connection stops reading |
/// | [`reply_timeout`](Self::reply_timeout) | 10 s | how long an answer (result, error, retry) waits for room in the send queue; past it the connection is closed, never the answer dropped |
/// | [`max_in_flight_bytes`](Self::max_in_flight_bytes) | 32 MiB | per connection: request bytes being handled plus answers not yet written; past it new requests get a RetryResult and parts/notifications wait |
/// | [`max_server_in_flight_bytes`](Self::max_server_in_flight_bytes) | 512 MiB | the same, summed over every connection of a server (or of one `connect`ed peer) |
/// | [`wire`](Self::wire) | [`WireLimits::default()`] (16 MiB payloads, 1 024-byte names) | also bounds a streamed result collected into one value; the session's decode buffer is derived from it ([`session_config`](Self::session_config)) |
/// | [`session`](Self::session) | see below | |
///
/// The session defaults differ from [`SessionConfig::default`] so that two default peers never
/// time each other out (gotalk's Go client and server do, after 30 s idle):
/// send-queue overflow **blocks** the sender for up to 10 s (instead of closing), heartbeats
/// after **20 s** without output (the Go client's interval; they carry our load) and an idle
/// timeout of **65 s** —
/// longer than three of our or a Go client's heartbeat intervals. A Go *server* sends no
/// heartbeats unless configured, so clients dialing one should set
/// `session.idle_timeout = None` (see `docs/rpc.md`); [`RpcConfig::client`] does that.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RpcConfig {
    /// Single requests served at once per connection. Default 256. Values below 1 act as 1.
    pub max_requests: usize,
    /// Stream requests served at once per connection. Default 32. Values below 1 act as 1.
    pub max_streams: usize,
    /// The wait range sent in RetryResults. Default 100 ms ..= 1 s.
    pub retry_wait: RetryWait,
    /// How many times a request is retried after RetryResults before it fails. Default 5.
    pub max_retries: u32,
    /// The longest retry wait honoured; a peer asking for more fails the request. Default 30 s.
    pub max_retry_wait: Duration,
    /// Timeout of a whole request including retries. Default 30 s.
    pub request_timeout: Option<Duration>,
    /// Inbound chunks buffered per stream. Default 32. Values below 1 act as 1.
    pub stream_buffer: usize,
    /// Inbound notifications buffered for their handler. Default 256.
    pub notification_buffer: usize,
    /// How long an answer we owe the peer (a result, an error, a RetryResult, a result part)
    /// may wait for room in the send queue. Answers never go through the session's overflow
    /// policy: they wait (the connection stops reading meanwhile, so a pipelining peer is
    /// slowed down, not refused) and, when the queue stays full this long — the peer stopped
    /// reading — the connection is closed with [`CloseCause::Overflow`], so the peer knows
    /// every outstanding request failed. Default 10 s.
    ///
    /// [`CloseCause::Overflow`]: chinwag_session::CloseCause::Overflow
    pub reply_timeout: Duration,
    /// Per connection: the bytes of requests being handled (payloads and stream parts) plus
    /// answers not yet written. A request that does not fit gets a RetryResult; a stream part
    /// or a notification that does not fit waits (the connection stops reading) up to
    /// [`reply_timeout`](Self::reply_timeout), then the connection is closed. A connection
    /// with nothing in flight accepts one request of any size (up to the wire's payload
    /// limit). Default 32 MiB.
    pub max_in_flight_bytes: usize,
    /// The same bound summed over all connections of one server, so however many peers stop
    /// reading, their work in flight stays within it. Default 512 MiB.
    pub max_server_in_flight_bytes: usize,
    /// Limits on what the peer may send (and on results collected from streams).
    pub wire: WireLimits,
    /// The session (queue, heartbeat, idle timeout) settings.
    pub session: SessionConfig,
}

impl Default for RpcConfig {
    fn default() -> Self {
        let mut session = SessionConfig::default();
        // Heartbeats carry our load (see `Peer::load`): the service makes them (`Service::heartbeat`).
        session.heartbeat_interval = Some(Duration::from_secs(20));
        session.idle_timeout = Some(Duration::from_secs(65));
        // Requests and results wait for room in the send queue rather than closing the
        // connection: many concurrent calls are normal here, not a sign of a stuck peer (a
        // peer that stopped reading is still cut off by the session's write timeout).
        session.overflow = OverflowPolicy::Block {
            timeout: Duration::from_secs(10),
        };
        RpcConfig {
            max_requests: 256,
            max_streams: 32,
            retry_wait: RetryWait::default(),
            max_retries: 5,
            max_retry_wait: Duration::from_secs(30),
            request_timeout: Some(Duration::from_secs(30)),
            stream_buffer: 32,
            notification_buffer: 256,
            reply_timeout: Duration::from_secs(10),
            max_in_flight_bytes: 32 << 20,
            max_server_in_flight_bytes: 512 << 20,
            wire: WireLimits::default(),
            session,
        }
    }
}

impl RpcConfig {
    /// Defaults for a client: as [`Default`], but no idle timeout (servers, gotalk's Go server
    /// among them, need not send heartbeats); a dead server is still noticed when a write or
    /// a request times out.
    pub fn client() -> Self {
        let mut c = RpcConfig::default();
        c.session.idle_timeout = None;
        c
    }

    /// Sets [`max_requests`](Self::max_requests).
    pub fn with_max_requests(mut self, n: usize) -> Self {
        self.max_requests = n;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }

    /// Sets [`retry_wait`](Self::retry_wait).
    pub fn with_retry_wait(mut self, w: RetryWait) -> Self {
        self.retry_wait = w;
        self
    }

    /// Sets [`max_retries`](Self::max_retries).
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets [`max_retry_wait`](Self::max_retry_wait).
    pub fn with_max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// Sets [`stream_buffer`](Self::stream_buffer).
    pub fn with_stream_buffer(mut self, chunks: usize) -> Self {
        self.stream_buffer = chunks;
        self
    }

    /// Sets [`notification_buffer`](Self::notification_buffer).
    pub fn with_notification_buffer(mut self, n: usize) -> Self {
        self.notification_buffer = n;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn with_request_timeout(mut self, t: Option<Duration>) -> Self {
        self.request_timeout = t;
        self
    }

    /// Sets [`reply_timeout`](Self::reply_timeout).
    pub fn with_reply_timeout(mut self, t: Duration) -> Self {
        self.reply_timeout = t;
        self
    }

    /// Sets [`max_in_flight_bytes`](Self::max_in_flight_bytes).
    pub fn with_max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.max_in_flight_bytes = bytes;
        self
    }

    /// Sets [`max_server_in_flight_bytes`](Self::max_server_in_flight_bytes).
    pub fn with_max_server_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.max_server_in_flight_bytes = bytes;
        self
    }

    /// Sets [`wire`](Self::wire).
    pub fn with_wire(mut self, w: WireLimits) -> Self {
        self.wire = w;
        self
    }

    /// The session settings RPC connections run with: [`session`](Self::session), with its
    /// decode buffer derived from [`wire`](Self::wire) so the two limits cannot disagree (the
    /// buffer always holds one whole message of the largest size the wire limits allow).
    ///
    /// ```
    /// use chinwag::rpc::RpcConfig;
    /// let big = RpcConfig::default()
    ///     .with_wire(chinwag::wire::WireLimits::default().with_max_payload(64 << 20));
    /// assert!(big.session_config().max_decode_buffer >= big.wire.max_message_len());
    /// ```
    pub fn session_config(&self) -> SessionConfig {
        let mut s = self.session.clone();
        s.max_decode_buffer = s.max_decode_buffer.max(self.wire.max_message_len());
        s
    }

    /// Sets [`session`](Self::session).
    pub fn with_session(mut self, s: SessionConfig) -> Self {
        self.session = s;
        self
    }
}
