//! [`Conn`]: one signed-on connection as doors and applications see it (the core's handle of
//! it), and [`Attach`], what a door gives the hub to sign one on.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::close::Close;
use crate::core::identity::Device;
use crate::core::signon::ConnId;
use crate::link::{DoorFormat, Link};

/// A connection signed on to a hub. Cheap to clone. Doors keep it as the session's state and
/// pass it to the hub's per-connection operations ([`Hub::send_from`](crate::Hub::send_from),
/// [`Hub::join`](crate::Hub::join), [`Hub::ack`](crate::Hub::ack), ...).
#[derive(Clone)]
pub struct Conn(pub(crate) Arc<ConnInner>);

pub(crate) struct ConnInner {
    pub(crate) id: ConnId,
    pub(crate) device: Device,
    pub(crate) door: &'static str,
    pub(crate) link: Arc<dyn Link>,
    pub(crate) format: DoorFormat,
    pub(crate) acknowledges: bool,
    pub(crate) ip: Option<IpAddr>,
    /// Its user's shard.
    pub(crate) shard: usize,
    /// Place in sign-on order (set once the directory decided).
    pub(crate) seq: AtomicU64,
    /// The hub's reason, when the hub closed it (the first one; boxed, as most connections
    /// never have one: see `tests::a_connection_fits_in_256_bytes`).
    pub(crate) closed_by: OnceLock<Box<Close>>,
    /// The connection's lane through the application's async hooks of sends, publishes and
    /// joins: taken (FIFO, in the order its requests reach the hub) around each hook call and
    /// the step it decides, so they pass the application one at a time and in order.
    pub(crate) lane: tokio::sync::Mutex<()>,
    /// The lane of its messages for the application (`App::on_receive`): its own, so an
    /// application that joins or publishes for the connection while answering does not wait
    /// for itself.
    pub(crate) app_lane: tokio::sync::Mutex<()>,
}

/// What a door gives [`Hub::attach`](crate::Hub::attach) to sign a connection on.
#[derive(Clone)]
#[non_exhaustive]
pub struct Attach {
    /// How the hub writes to the connection.
    pub link: Arc<dyn Link>,
    /// The door's event format (from [`Hub::register_format`](crate::Hub::register_format)).
    pub format: DoorFormat,
    /// Whether the client acknowledges direct messages (the chat door's `ack`). For doors
    /// whose clients cannot, a queued message counts as delivered once it was handed to the
    /// connection (at-most-once for those doors).
    pub acknowledges: bool,
    /// The door's name (`chat`, `rooms`, `tok`, ...), for metrics and logs.
    pub door: &'static str,
    /// The client's address, when it has one.
    pub ip: Option<IpAddr>,
}

impl Attach {
    /// A connection of `door` reached through `link`, encoded with `format`.
    pub fn new(link: Arc<dyn Link>, format: DoorFormat, door: &'static str) -> Self {
        Attach {
            link,
            format,
            acknowledges: false,
            door,
            ip: None,
        }
    }

    /// Sets [`acknowledges`](Self::acknowledges).
    pub fn with_acknowledges(mut self, on: bool) -> Self {
        self.acknowledges = on;
        self
    }

    /// Sets [`ip`](Self::ip).
    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }
}

impl Conn {
    pub(crate) fn new(id: ConnId, device: Device, shard: usize, a: Attach) -> Self {
        Conn(Arc::new(ConnInner {
            id,
            device,
            door: a.door,
            link: a.link,
            format: a.format,
            acknowledges: a.acknowledges,
            ip: a.ip,
            shard,
            seq: AtomicU64::new(0),
            closed_by: OnceLock::new(),
            lane: tokio::sync::Mutex::new(()),
            app_lane: tokio::sync::Mutex::new(()),
        }))
    }

    /// The connection's id on this node.
    pub fn id(&self) -> ConnId {
        self.0.id
    }

    /// Its device.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// The door it came through (`chat`, `rooms`, `tok`, or a custom door's name).
    pub fn door(&self) -> &'static str {
        self.0.door
    }

    /// Its place in sign-on order: among connections of one user, the larger is the newer.
    pub fn sign_on_seq(&self) -> u64 {
        self.0.seq.load(Ordering::Acquire)
    }

    /// The source IP it connected from, when known.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.ip
    }

    /// Whether it is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.0.link.is_closed()
    }

    /// Writes the door's goodbye and closes the link, remembering the hub's reason (the hub
    /// has already stopped counting it as a recipient).
    pub(crate) fn end(&self, close: &Close) {
        let _ = self.0.closed_by.set(Box::new(close.clone()));
        let bye = self.0.format.format.bye(close);
        self.0.link.close(close, bye);
    }

    pub(crate) fn closed_by(&self) -> Option<Close> {
        self.0.closed_by.get().map(|c| Close::clone(c))
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.0.id)
            .field("device", &self.0.device)
            .field("door", &self.0.door)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every signed-on connection keeps one `Arc<ConnInner>`: with the `Arc`'s two counts it
    /// fits jemalloc's 256-byte size class (the next is 320), which an idle connection's
    /// memory counts on (`docs/session.md`, "Measured").
    #[test]
    fn a_connection_fits_in_256_bytes() {
        let arc = std::mem::size_of::<ConnInner>() + 2 * std::mem::size_of::<usize>();
        assert!(arc <= 256, "Arc<ConnInner> is {arc} bytes");
    }
}
