//! The data of the direct-message rules ([`delivery`](super::delivery), [`replay`](super::replay)):
//! a user's [`Pipeline`] of sends and its stages, what the driver is asked to do ([`Step`],
//! [`ReplayStep`]) and what it reports back ([`ConnOutcome`]), what becomes of a send
//! ([`Finished`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::EntryId;
use super::message::{Delivered, DirectMessage, MessageId};
use super::signon::ConnId;

/// The driver's name for one send, to give it its result.
pub(crate) type Token = u64;

/// A send waiting in a user's pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) token: Token,
    pub(crate) msg: Arc<DirectMessage>,
    /// How long it may wait in the offline queue; zero: live only.
    pub(crate) ttl: Duration,
    /// A live-only send queued after all ([`PartialDelivery::QueueForUser`]): what its live
    /// delivery reported.
    pub(crate) requeued: Option<Report>,
    /// Already stored, as this entry, by another hub sharing the queue (a cluster node): it is
    /// only handed to this hub's connections, never pushed.
    pub(crate) stored: Option<EntryId>,
}

impl Pending {
    pub(crate) fn new(token: Token, msg: Arc<DirectMessage>, ttl: Duration) -> Self {
        Pending {
            token,
            msg,
            ttl,
            requeued: None,
            stored: None,
        }
    }
}

/// What became of a send that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Report {
    /// Connections it was handed to, or that get it from the queue as they catch up.
    pub(crate) delivered: usize,
    /// Connections that could not take it (closing, or full for a live-only message).
    pub(crate) failed: usize,
    /// It is in the offline queue.
    pub(crate) queued: bool,
}

/// Why a send did not succeed (besides the queue's own errors, which the driver has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Live only, and the user has no connection.
    Offline,
    /// Live only, and no connection could take it.
    Undelivered,
    /// Live only under [`PartialDelivery::AllOrError`], and some connections could not take it.
    Partial { delivered: usize, total: usize },
    /// Too many sends already wait for this user.
    Busy,
}

/// A send that is done.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) token: Token,
    pub(crate) user: Arc<str>,
    pub(crate) id: MessageId,
    pub(crate) result: Result<Report, Refusal>,
}

/// What the driver does next for a user.
#[derive(Debug)]
pub(crate) enum Step<H> {
    /// Store these in the offline queue in this order (send, message, TTL), then call
    /// [`Users::pushed`] with the entry of each (`None` for one that failed; the driver answers
    /// its sender with the queue's error).
    Push {
        user: Arc<str>,
        items: Vec<(Token, Arc<DirectMessage>, Duration)>,
    },
    /// Hand each connection its messages, in order and without waiting, stopping at the first
    /// that is not sent or filtered; then call [`Users::delivered`].
    Deliver {
        user: Arc<str>,
        plan: Vec<ConnPlan<H>>,
    },
}

/// One connection's part of a [`Step::Deliver`].
#[derive(Debug)]
pub(crate) struct ConnPlan<H> {
    pub(crate) conn: ConnId,
    pub(crate) handle: H,
    pub(crate) msgs: Vec<Arc<DirectMessage>>,
}

/// What happened to one connection's part: one result per message tried, in order.
#[derive(Debug, Clone)]
pub(crate) struct ConnOutcome {
    pub(crate) conn: ConnId,
    pub(crate) results: Vec<Delivered>,
}

/// What a pipeline call asks of the driver.
#[derive(Debug)]
pub(crate) struct Progress<H> {
    /// The user's next stage, if one is ready.
    pub(crate) next: Option<Step<H>>,
    /// Sends that are done.
    pub(crate) finished: Vec<Finished>,
    /// Connections that must start a replay (their send queue overflowed).
    pub(crate) replays: Vec<ConnId>,
    /// Remove the user's entries up to this one (written to clients that cannot acknowledge).
    pub(crate) ack: Option<(Arc<str>, EntryId)>,
}

impl<H> Default for Progress<H> {
    fn default() -> Self {
        Progress {
            next: None,
            finished: Vec::new(),
            replays: Vec::new(),
            ack: None,
        }
    }
}

/// The next step of a connection's replay.
#[derive(Debug, Clone)]
pub(crate) enum ReplayStep {
    /// Read up to `max` entries of `user` after `after`, then call [`Users::replay_read`].
    Read {
        user: Arc<str>,
        after: EntryId,
        max: usize,
    },
    /// Write these in order, each waiting for room, then call [`Users::replay_written`].
    Write(Vec<Arc<DirectMessage>>),
    /// Caught up: the connection is live.
    Live,
    /// The connection is gone or closing: stop.
    Gone,
}

/// A user's pipeline of sends.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    pub(crate) stage: Option<Stage>,
    pub(crate) pending: VecDeque<Pending>,
    /// The highest entry the pipeline has stored (a replay's horizon).
    pub(crate) pushed_upto: EntryId,
    /// The user's live connections must read the queue once the running stage is done (a
    /// catch-up asked for while a stage was handing messages over: switching them now could
    /// send those messages twice).
    pub(crate) catch_up: bool,
}

impl Pipeline {
    /// The highest entry the pipeline has stored (a replay's horizon).
    pub(crate) fn stored(&self) -> EntryId {
        self.pushed_upto
    }

    /// No stage running and nothing waiting.
    pub(crate) fn is_idle(&self) -> bool {
        self.stage.is_none() && self.pending.is_empty()
    }
}

/// The stage a pipeline is at.
#[derive(Debug)]
pub(crate) enum Stage {
    Pushing(Vec<Pending>),
    /// The sends being handed over, and which of them each connection of the plan was given.
    Delivering(Vec<Staged>, Vec<(ConnId, Vec<usize>)>),
}

/// A send being handed over.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) pending: Pending,
    /// Its queue entry; `None` for a live-only message.
    pub(crate) entry: Option<EntryId>,
    pub(crate) report: Report,
    /// Live only, and the user had no connection left when its turn came.
    pub(crate) offline: bool,
}

/// Remembers a message handed to a connection until its client acknowledges it. Acks are
/// cumulative: forgetting the oldest beyond `max` loses nothing a later ack covers.
pub(super) fn push_window(
    window: &mut VecDeque<(MessageId, EntryId)>,
    w: (MessageId, EntryId),
    max: usize,
) {
    if window.len() >= max {
        window.pop_front();
    }
    window.push_back(w);
}

impl<H> Progress<H> {
    pub(crate) fn merge(&mut self, other: Progress<H>) {
        if other.next.is_some() {
            self.next = other.next;
        }
        self.finished.extend(other.finished);
        self.replays.extend(other.replays);
        if other.ack.is_some() {
            self.ack = other.ack;
        }
    }
}
