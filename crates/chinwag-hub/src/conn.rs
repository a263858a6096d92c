//! One signed-on connection: its device, its link, the rooms it is in, and where it stands in
//! the delivery of its user's direct messages.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chinwag_queue::EntryId;
use governor::DefaultDirectRateLimiter;
use tokio::time::Instant;

use crate::close::Close;
use crate::identity::Device;
use crate::link::Link;
use crate::message::{MessageId, Outgoing};
use crate::policy::ConnId;
use crate::room::Room;

/// A connection signed on to a hub. Doors hold it (as the session's state) and pass it to the
/// hub's per-connection operations ([`Hub::send_from`](crate::Hub::send_from),
/// [`Hub::join`](crate::Hub::join), [`Hub::ack`](crate::Hub::ack), ...).
pub struct Conn {
    pub(crate) id: ConnId,
    pub(crate) device: Device,
    pub(crate) door: &'static str,
    pub(crate) link: Arc<dyn Link>,
    pub(crate) ip: Option<IpAddr>,
    /// Place in sign-on order (set once the directory decided).
    pub(crate) seq: AtomicU64,
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
    pub(crate) strikes: AtomicU32,
    pub(crate) state: Mutex<ConnState>,
}

/// How direct messages reach the connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A replay task sends what is queued (from `cursor` on); live sends leave queued messages
    /// to it and hold live-only ones.
    Replaying,
    /// Sends go straight to the link.
    Live,
}

pub(crate) struct ConnState {
    pub(crate) mode: Mode,
    /// The last queue entry handed to the link.
    pub(crate) cursor: EntryId,
    /// Delivered, not yet acknowledged: (message id, queue entry), oldest first.
    pub(crate) window: VecDeque<(MessageId, EntryId)>,
    /// Live-only messages that arrived during a replay, sent in id order with the replay.
    pub(crate) held: VecDeque<Arc<Outgoing>>,
    pub(crate) rooms: Vec<Arc<Room>>,
    /// When the token expires (plus grace); the hub closes the connection then.
    pub(crate) expires_at: Option<Instant>,
    /// Set once the connection left the hub's tables.
    pub(crate) detached: bool,
    /// The hub's reason, when the hub closed it.
    pub(crate) closed_by: Option<Close>,
}

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        device: Device,
        door: &'static str,
        link: Arc<dyn Link>,
        ip: Option<IpAddr>,
        limiter: Option<DefaultDirectRateLimiter>,
    ) -> Self {
        Conn {
            id,
            device,
            door,
            link,
            ip,
            seq: AtomicU64::new(0),
            limiter,
            strikes: AtomicU32::new(0),
            state: Mutex::new(ConnState {
                mode: Mode::Replaying,
                cursor: 0,
                window: VecDeque::new(),
                held: VecDeque::new(),
                rooms: Vec::new(),
                expires_at: None,
                detached: false,
                closed_by: None,
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection's id on this node.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Its device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The door it came through (`chat`, `rooms`, `tok`, or a custom door's name).
    pub fn door(&self) -> &'static str {
        self.door
    }

    /// Its place in sign-on order: among connections of one user, the larger is the newer.
    pub fn sign_on_seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// The source IP it connected from, when known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The names of the rooms it is in.
    pub fn rooms(&self) -> Vec<String> {
        self.state()
            .rooms
            .iter()
            .map(|r| r.name.to_string())
            .collect()
    }

    /// Whether it is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Ends the connection with `close` (its door's goodbye, then the close code).
    pub fn close(&self, close: Close) {
        {
            let mut st = self.state();
            if st.closed_by.is_none() {
                st.closed_by = Some(close.clone());
            }
        }
        self.link.close(&close);
    }

    /// Whether the client may send one more message now (its message rate); counts strikes.
    /// Returns `Err(true)` when it should be closed (too many refusals in a row).
    pub(crate) fn take_message_permit(&self, strikes: u32) -> Result<(), bool> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        if l.check().is_ok() {
            self.strikes.store(0, Ordering::Relaxed);
            Ok(())
        } else {
            let n = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
            Err(n >= strikes)
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("device", &self.device)
            .field("door", &self.door)
            .finish()
    }
}
