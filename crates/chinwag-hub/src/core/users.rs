//! One shard of users: their connections and where each stands. The delivery rules that move a
//! connection between replaying and live are in [`delivery`](super::delivery); this file holds
//! the tables and the per-connection rules that are not about delivery (sign-on marks, message
//! rate, rooms joined, token expiry, password guesses).
//!
//! A connection is identified by its [`ConnId`]; `H` is whatever the driver wants back to reach
//! it (its handle). The core never looks inside `H`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::guesses::Guesses;
use super::message::{DirectMessage, MessageId};
use super::rate::{Bucket, Rate};
use super::signon::ConnId;
use super::time::Time;
use super::{EntryId, PartialDelivery};

/// The limits the users' rules apply (copied from the hub's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserLimits {
    /// Live-only messages held for a replaying connection.
    pub(crate) max_held_live: usize,
    /// Unacknowledged ids remembered per connection.
    pub(crate) max_unacked: usize,
    /// Queue entries read at a time by a replay.
    pub(crate) replay_page: usize,
    /// Sends waiting for one user's earlier sends to be stored.
    pub(crate) max_pending_per_user: usize,
    /// Messages per connection.
    pub(crate) message_rate: Option<Rate>,
    /// Refused messages in a row that close a connection.
    pub(crate) rate_limit_strikes: u32,
    /// What a partially delivered live-only send reports.
    pub(crate) partial: PartialDelivery,
    /// The queue is shared with other hubs (a cluster): a message's id is its queue entry, and
    /// a connection takes entries only in an unbroken run from its cursor (entries are dense
    /// per user there; a gap means another hub stored one this hub has not handed over yet).
    pub(crate) shared_queue: bool,
}

/// Where a connection stands in the delivery of its user's direct messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A replay sends what is queued, from the cursor on; live sends leave queued messages to
    /// it and hold live-only ones.
    Replaying(Replay),
    /// Sends go straight to the connection.
    Live,
}

/// The step a replay is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// The next thing to do is a read.
    Idle,
    /// A read is under way; it sees at least every entry stored up to `horizon`.
    Reading { horizon: EntryId },
    /// Writing what a read returned; `end`: that read reached the end of the queue.
    Writing { end: bool, horizon: EntryId },
}

/// One connection.
#[derive(Debug)]
pub(crate) struct ConnState<H> {
    pub(crate) handle: H,
    pub(crate) user: Arc<str>,
    /// Its clients acknowledge direct messages (else written counts as delivered).
    pub(crate) acknowledges: bool,
    /// Still a recipient: false from the moment the hub decided to close it (replaced, kicked,
    /// expired, ...), so sends stop counting it at once.
    pub(crate) recipient: bool,
    pub(crate) phase: Phase,
    /// The last queue entry handed to the connection.
    pub(crate) cursor: EntryId,
    /// Delivered, not yet acknowledged: (message id, queue entry), oldest first.
    pub(crate) window: VecDeque<(MessageId, EntryId)>,
    /// Live-only messages that arrived during a replay, sent in id order with it.
    pub(crate) held: VecDeque<Arc<DirectMessage>>,
    /// The rooms it is in.
    pub(crate) rooms: Vec<Arc<str>>,
    /// When its token expires (plus grace).
    pub(crate) expires_at: Option<Time>,
    rate: Bucket,
    strikes: u32,
    pub(crate) guesses: Guesses,
}

/// One user: its connections in sign-on order, and the pipeline of sends to it.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    pub(crate) conns: Vec<ConnId>,
    pub(crate) pipeline: super::pipeline::Pipeline,
}

/// A shard of users and their connections.
#[derive(Debug)]
pub(crate) struct Users<H> {
    pub(crate) limits: UserLimits,
    /// Boxed, as are the users: a hash table keeps room for up to twice its entries, and an
    /// idle connection should pay for its own state once, not for two more empty slots of it.
    pub(crate) conns: HashMap<ConnId, Box<ConnState<H>>>,
    pub(crate) users: HashMap<Arc<str>, Box<UserState>>,
}

/// What a message-rate check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Go on.
    Granted,
    /// Refused (the client gets `rate_limited`).
    Refused,
    /// Refused, and that was one refusal in a row too many: close the connection.
    RefusedClose,
}

/// A connection the hub is closing.
#[derive(Debug)]
pub(crate) struct Closing<H> {
    pub(crate) handle: H,
    /// Live-only messages held for it during its replay.
    pub(crate) held: Vec<Arc<DirectMessage>>,
}

/// A connection that left the tables.
#[derive(Debug)]
pub(crate) struct Detached {
    pub(crate) user: Arc<str>,
    pub(crate) rooms: Vec<Arc<str>>,
    /// It was still a recipient (the hub had not closed it).
    pub(crate) recipient: bool,
    /// Its token's expiry, if one was set.
    pub(crate) expires_at: Option<Time>,
    /// The user has no connection left.
    pub(crate) user_gone: bool,
}

impl<H: Clone> Users<H> {
    pub(crate) fn new(limits: UserLimits) -> Self {
        Users {
            limits,
            conns: HashMap::new(),
            users: HashMap::new(),
        }
    }

    /// The shared key of `user` when it is known here (no allocation per send).
    pub(crate) fn user_key(&self, user: &str) -> Option<Arc<str>> {
        self.users.get_key_value(user).map(|(k, _)| k.clone())
    }

    /// Registers connection `id` of `user`, replaying (it first gets what is queued). It counts
    /// as a recipient at once: registered before the sign-on decision, so a newer sign-on racing
    /// with it always finds it. Returns whether it is the user's first connection.
    pub(crate) fn attach(
        &mut self,
        id: ConnId,
        handle: H,
        user: Arc<str>,
        acknowledges: bool,
    ) -> bool {
        let conns = &mut self.users.entry(user.clone()).or_default().conns;
        let first = conns.is_empty();
        super::push_small(conns, id);
        self.conns.insert(
            id,
            Box::new(ConnState {
                handle,
                user,
                acknowledges,
                recipient: true,
                phase: Phase::Replaying(Replay::Idle),
                cursor: 0,
                window: VecDeque::new(),
                held: VecDeque::new(),
                rooms: Vec::new(),
                expires_at: None,
                rate: Bucket::new(),
                strikes: 0,
                guesses: Guesses::default(),
            }),
        );
        first
    }

    /// The sign-on decision came: the connections it `replaced` stop being recipients now and
    /// are returned (those of this shard) for the driver to close.
    pub(crate) fn replace(&mut self, replaced: &[ConnId]) -> Vec<(ConnId, Closing<H>)> {
        replaced
            .iter()
            .filter_map(|id| self.close(*id).map(|h| (*id, h)))
            .collect()
    }

    /// The hub closes `id` (replaced, kicked, expired, over its rate, shutting down): it stops
    /// being a recipient now. Returns its handle and the live-only messages held for it (they
    /// were reported delivered: the driver writes them before the goodbye); `None` when it is
    /// unknown or already closing.
    pub(crate) fn close(&mut self, id: ConnId) -> Option<Closing<H>> {
        let c = self.conns.get_mut(&id)?;
        if !c.recipient {
            return None;
        }
        c.recipient = false;
        Some(Closing {
            handle: c.handle.clone(),
            held: c.held.drain(..).collect(),
        })
    }

    /// The connection ended: removes it. `None` when it was not here (twice is harmless).
    pub(crate) fn detach(&mut self, id: ConnId) -> Option<Detached> {
        let c = *self.conns.remove(&id)?;
        let mut user_gone = false;
        if let Some(u) = self.users.get_mut(&c.user) {
            u.conns.retain(|x| *x != id);
            user_gone = u.conns.is_empty();
            if user_gone && u.pipeline.is_idle() {
                self.users.remove(&c.user);
            }
        }
        Some(Detached {
            user: c.user,
            rooms: c.rooms,
            recipient: c.recipient,
            expires_at: c.expires_at,
            user_gone,
        })
    }

    /// A connection's state.
    pub(crate) fn conn(&self, id: ConnId) -> Option<&ConnState<H>> {
        self.conns.get(&id).map(|c| &**c)
    }

    /// The connections of `user` that are still recipients, oldest sign-on first.
    pub(crate) fn recipients(&self, user: &str) -> Vec<(ConnId, H)> {
        let Some(u) = self.users.get(user) else {
            return Vec::new();
        };
        u.conns
            .iter()
            .filter_map(|id| {
                let c = self.conns.get(id)?;
                c.recipient.then(|| (*id, c.handle.clone()))
            })
            .collect()
    }

    /// Every connection that is still a recipient.
    pub(crate) fn all_recipients(&self) -> Vec<(ConnId, H)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.recipient)
            .map(|(id, c)| (*id, c.handle.clone()))
            .collect()
    }

    /// One more message from `id` at `now`: its message rate, and the strikes that close a
    /// client that keeps sending over it.
    pub(crate) fn permit(&mut self, id: ConnId, now: Time) -> Permit {
        let Some(rate) = self.limits.message_rate else {
            return Permit::Granted;
        };
        let strikes = self.limits.rate_limit_strikes;
        let Some(c) = self.conns.get_mut(&id) else {
            return Permit::Granted;
        };
        if c.rate.take(rate, now) {
            c.strikes = 0;
            Permit::Granted
        } else {
            c.strikes = c.strikes.saturating_add(1);
            if c.strikes >= strikes {
                Permit::RefusedClose
            } else {
                Permit::Refused
            }
        }
    }

    /// Sets when `id`'s token expires. False when it is gone.
    pub(crate) fn set_expiry(&mut self, id: ConnId, at: Option<Time>) -> bool {
        match self.conns.get_mut(&id) {
            Some(c) => {
                c.expires_at = at;
                true
            }
            None => false,
        }
    }

    /// Whether `id`'s token has expired at `now` (a refresh may have moved its expiry since the
    /// deadline was set).
    pub(crate) fn expired(&self, id: ConnId, now: Time) -> bool {
        self.conns
            .get(&id)
            .and_then(|c| c.expires_at)
            .is_some_and(|at| at <= now)
    }

    /// Whether `id` is in `room`.
    pub(crate) fn in_room(&self, id: ConnId, room: &str) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.rooms.iter().any(|r| &**r == room))
    }

    /// The rooms `id` is in (`None`: gone).
    pub(crate) fn rooms_of(&self, id: ConnId) -> Option<&[Arc<str>]> {
        self.conns.get(&id).map(|c| c.rooms.as_slice())
    }

    /// Records that `id` joined `room`. False when the connection is gone (the driver then
    /// takes the membership back) .
    pub(crate) fn add_room(&mut self, id: ConnId, room: Arc<str>) -> bool {
        match self.conns.get_mut(&id) {
            Some(c) if c.recipient => {
                if !c.rooms.contains(&room) {
                    super::push_small(&mut c.rooms, room);
                }
                true
            }
            _ => false,
        }
    }

    /// Records that `id` left `room`; whether it was in it.
    pub(crate) fn remove_room(&mut self, id: ConnId, room: &str) -> bool {
        let Some(c) = self.conns.get_mut(&id) else {
            return false;
        };
        let Some(i) = c.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        c.rooms.swap_remove(i);
        true
    }

    /// The password-guess state of `id`.
    pub(crate) fn guesses(&mut self, id: ConnId) -> Option<&mut Guesses> {
        self.conns.get_mut(&id).map(|c| &mut c.guesses)
    }
}
