//! The seam between the hub and its doors: how the hub reaches a connection ([`Link`]) and how
//! a door writes the hub's events ([`Format`], registered with the hub as a [`DoorFormat`]).
//! [`SessionLink`] is a link on a chinwag session.

use std::sync::Arc;
use std::time::Duration;

use chinwag_session::codec::{Codec, Encoded};
use chinwag_session::{CloseCause, OverflowPolicy, SendError, Session};
use futures_core::future::BoxFuture;

use crate::close::Close;
use crate::core::message::Event;

/// One connection as the hub sees it. Doors implement it (usually through [`SessionLink`]).
///
/// Sends never wait on the peer except [`send`](Self::send), which the hub uses only on the
/// connection's own replay.
pub trait Link: Send + Sync + 'static {
    /// Queues `msg` without waiting, under the connection's overflow policy.
    ///
    /// # Errors
    ///
    /// The session's: closed, dropped, overflowed.
    fn try_send(&self, msg: Encoded) -> Result<(), SendError>;

    /// Queues `msg`, waiting up to `timeout` for room in the send queue (replayed messages must
    /// not be dropped; a client that does not read for that long is closed).
    fn send(&self, msg: Encoded, timeout: Duration) -> BoxFuture<'_, Result<(), SendError>>;

    /// Ends the connection: `bye` (the door's goodbye, if it has one) goes out after what is
    /// queued — making room for itself if the queue is full — then the close code.
    fn close(&self, close: &Close, bye: Option<Encoded>);

    /// Messages waiting in the connection's send queue.
    fn queue_len(&self) -> usize;

    /// Whether the connection is closing or closed.
    fn is_closed(&self) -> bool;

    /// The connection signed on: it no longer counts in the share of the connection budget
    /// kept for connections that have not (see `chinwag_transport::budget`). Default: nothing.
    fn establish(&self) {}
}

/// How a door writes the hub's events and goodbyes. One value per encoding (e.g. the chat
/// door has one per framing), registered with [`Hub::register_format`](crate::Hub::register_format)
/// so that a fan-out encodes each event once per format, not once per member.
pub trait Format: Send + Sync + 'static {
    /// The encoding of `event` (`None`: this door does not carry such events, e.g. presence on
    /// the raw room door).
    fn encode(&self, event: &Event) -> Option<Encoded>;

    /// The goodbye written before the hub closes a connection (`None`: the close code says it
    /// all).
    fn bye(&self, close: &Close) -> Option<Encoded> {
        let _ = close;
        None
    }
}

/// A door's [`Format`], registered with a hub. Cheap to clone.
#[derive(Clone)]
pub struct DoorFormat {
    pub(crate) id: usize,
    pub(crate) format: Arc<dyn Format>,
}

impl DoorFormat {
    /// The format.
    pub fn format(&self) -> &Arc<dyn Format> {
        &self.format
    }
}

impl std::fmt::Debug for DoorFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorFormat").field("id", &self.id).finish()
    }
}

/// A [`Link`] on a chinwag session.
pub struct SessionLink<C: Codec> {
    session: Session<C>,
}

impl<C: Codec> SessionLink<C> {
    /// A link on `session`.
    pub fn new(session: Session<C>) -> Self {
        SessionLink { session }
    }

    /// The session.
    pub fn session(&self) -> &Session<C> {
        &self.session
    }
}

/// Closes `session` with `close`, writing `bye` first (making room for it in a full queue): the
/// one way the hub and its doors say goodbye.
pub(crate) fn close_session<C: Codec>(session: &Session<C>, close: &Close, bye: Option<Encoded>) {
    if let Some(bye) = bye {
        let _ = session.try_send_encoded_with(bye, OverflowPolicy::DropOldest);
    }
    session.close_with(CloseCause::Application(close.to_transport()), None);
}

impl<C: Codec> Link for SessionLink<C> {
    fn try_send(&self, msg: Encoded) -> Result<(), SendError> {
        self.session.try_send_encoded(msg)
    }

    fn send(&self, msg: Encoded, timeout: Duration) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(
            self.session
                .send_encoded_with(msg, OverflowPolicy::Block { timeout }),
        )
    }

    fn close(&self, close: &Close, bye: Option<Encoded>) {
        close_session(&self.session, close, bye);
    }

    fn queue_len(&self) -> usize {
        self.session.queue_len()
    }

    fn is_closed(&self) -> bool {
        self.session.is_closing()
    }

    fn establish(&self) {
        self.session.establish();
    }
}
