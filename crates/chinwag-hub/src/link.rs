//! How the hub reaches a connection, whatever door it came through: the [`Link`] trait, and
//! [`SessionLink`], a link on a chinwag session with a door's encoding.

use std::time::Duration;

use chinwag_session::codec::{Codec, Encoded};
use chinwag_session::{CloseCause, OverflowPolicy, SendError, Session};

use crate::close::Close;
use crate::message::Event;

use crate::auth::BoxFuture;

/// One connection as the hub sees it. Doors implement it (usually through [`SessionLink`]).
///
/// Sends never wait on the peer except [`send`](Self::send), which the hub uses only on the
/// connection's own replay task.
pub trait Link: Send + Sync + 'static {
    /// The encoding slot: links whose [`encode`](Self::encode) gives identical bytes for every
    /// event share a slot (below [`ENCODING_SLOTS`](crate::ENCODING_SLOTS)), so a fan-out
    /// encodes once per slot.
    fn slot(&self) -> usize;

    /// This door's encoding of `event`; `None` when the door does not carry such events (the
    /// raw room door has no presence events).
    fn encode(&self, event: &Event) -> Option<Encoded>;

    /// Queues `msg` without waiting, under the connection's overflow policy.
    ///
    /// # Errors
    ///
    /// The session's: closed, dropped, overflowed.
    fn try_send(&self, msg: Encoded) -> Result<(), SendError>;

    /// Queues `msg`, waiting up to `timeout` for room in the send queue (replay of queued
    /// messages: they must not be dropped; a client that does not read for that long is
    /// closed).
    fn send(&self, msg: Encoded, timeout: Duration) -> BoxFuture<'_, Result<(), SendError>>;

    /// Ends the connection with `close`: the door's goodbye message (if it has one) goes out
    /// after what is queued, then the close code.
    fn close(&self, close: &Close);

    /// Whether the client acknowledges direct messages (the gotalk chat door's `ack`). For doors
    /// whose clients cannot, a queued message counts as delivered once it was written to the
    /// connection's send queue (at-most-once for those doors).
    fn acknowledges(&self) -> bool;

    /// Messages waiting in the connection's send queue.
    fn queue_len(&self) -> usize;

    /// Whether the connection is closing or closed.
    fn is_closed(&self) -> bool;
}

/// How a door encodes events and goodbyes for its sessions.
pub trait Format<C: Codec>: Send + Sync + 'static {
    /// The encoding of `event` for `session` (`None`: not carried by this door).
    fn encode(&self, session: &Session<C>, event: &Event) -> Option<Encoded>;
    /// The goodbye sent before a hub close (`None`: the close code says it all).
    fn bye(&self, session: &Session<C>, close: &Close) -> Option<Encoded> {
        let _ = (session, close);
        None
    }
}

/// A [`Link`] on a chinwag session, with a door's [`Format`].
pub struct SessionLink<C: Codec, F> {
    session: Session<C>,
    format: F,
    slot: usize,
    acknowledges: bool,
}

impl<C: Codec, F: Format<C>> SessionLink<C, F> {
    /// A link on `session`; `slot` as in [`Link::slot`]; `acknowledges` as in
    /// [`Link::acknowledges`].
    pub fn new(session: Session<C>, format: F, slot: usize, acknowledges: bool) -> Self {
        SessionLink {
            session,
            format,
            slot,
            acknowledges,
        }
    }

    /// The session.
    pub fn session(&self) -> &Session<C> {
        &self.session
    }
}

impl<C: Codec, F: Format<C>> Link for SessionLink<C, F> {
    fn slot(&self) -> usize {
        self.slot
    }

    fn encode(&self, event: &Event) -> Option<Encoded> {
        self.format.encode(&self.session, event)
    }

    fn try_send(&self, msg: Encoded) -> Result<(), SendError> {
        self.session.try_send_encoded(msg)
    }

    fn send(&self, msg: Encoded, timeout: Duration) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(
            self.session
                .send_encoded_with(msg, OverflowPolicy::Block { timeout }),
        )
    }

    fn close(&self, close: &Close) {
        if let Some(bye) = self.format.bye(&self.session, close) {
            // The goodbye must not be lost to a full queue: make room for it.
            let _ = self
                .session
                .try_send_encoded_with(bye, OverflowPolicy::DropOldest);
        }
        self.session
            .close_with(CloseCause::Application(close.to_transport()), None);
    }

    fn acknowledges(&self) -> bool {
        self.acknowledges
    }

    fn queue_len(&self) -> usize {
        self.session.queue_len()
    }

    fn is_closed(&self) -> bool {
        self.session.is_closing()
    }
}
