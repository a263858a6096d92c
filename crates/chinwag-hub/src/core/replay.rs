//! A connection's replay of its user's queued messages, and acknowledgements (see
//! [`delivery`](super::delivery) for the rules).
//!
//! A replay reads the queue from the connection's cursor ([`ReplayStep::Read`]), writes what it
//! read, waiting for room ([`ReplayStep::Write`]), and switches to live only when a read that
//! reached the end of the queue saw everything stored so far — its horizon, taken when the read
//! began, is at least the highest entry the pipeline has stored by now — and no live-only
//! message is held for it. Held live-only messages go out in id order with the replayed ones.

use std::sync::Arc;

use super::EntryId;
use super::message::{DirectMessage, MessageId};
use super::pipeline::{ReplayStep, push_window};
use super::signon::ConnId;
use super::users::{Phase, Replay, Users};

impl<H: Clone> Users<H> {
    /// The next step of `id`'s replay.
    pub(crate) fn replay_next(&mut self, id: ConnId) -> ReplayStep {
        let page = self.limits.replay_page.max(1);
        let Some(c) = self.conns.get(&id) else {
            return ReplayStep::Gone;
        };
        if !c.recipient {
            return ReplayStep::Gone;
        }
        match c.phase {
            Phase::Live => ReplayStep::Live,
            Phase::Replaying(Replay::Writing { .. }) => self.replay_written(id),
            Phase::Replaying(Replay::Idle | Replay::Reading { .. }) => {
                let horizon = self.users.get(&c.user).map_or(0, |u| u.pipeline.stored());
                let (user, after) = (c.user.clone(), c.cursor);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.phase = Phase::Replaying(Replay::Reading { horizon });
                }
                ReplayStep::Read {
                    user,
                    after,
                    max: page,
                }
            }
        }
    }

    /// The replay's read returned `entries` (in entry order; `None` for an entry this hub
    /// cannot decode, which is skipped). Returns what to write, and an entry to acknowledge up
    /// to when no connection of the user acknowledges.
    pub(crate) fn replay_read(
        &mut self,
        id: ConnId,
        entries: Vec<(EntryId, Option<Arc<DirectMessage>>)>,
    ) -> (ReplayStep, Option<(Arc<str>, EntryId)>) {
        let page = self.limits.replay_page.max(1);
        let max_unacked = self.limits.max_unacked.max(1);
        let shared = self.limits.shared_queue;
        let end = entries.len() < page;
        let anyone_acks = self
            .conns
            .get(&id)
            .is_some_and(|c| self.anyone_acknowledges(&c.user));
        let Some(c) = self.conns.get_mut(&id) else {
            return (ReplayStep::Gone, None);
        };
        let Phase::Replaying(Replay::Reading { horizon }) = c.phase else {
            return (ReplayStep::Gone, None);
        };
        if !c.recipient {
            return (ReplayStep::Gone, None);
        }
        let mut writes = Vec::new();
        let mut written_upto = None;
        for (e, msg) in entries {
            if e <= c.cursor {
                continue;
            }
            c.cursor = e;
            let Some(mut msg) = msg else { continue };
            if shared && msg.id != MessageId(e) {
                msg = Arc::new(msg.with_id(MessageId(e)));
            }
            // Live-only messages held during the replay go out in id order with it.
            while c.held.front().is_some_and(|h| h.id < msg.id) {
                writes.extend(c.held.pop_front());
            }
            if c.acknowledges {
                push_window(&mut c.window, (msg.id, e), max_unacked);
            }
            written_upto = Some(e);
            writes.push(msg);
        }
        c.phase = Phase::Replaying(Replay::Writing { end, horizon });
        let ack = written_upto
            .filter(|_| !anyone_acks)
            .map(|e| (c.user.clone(), e));
        (ReplayStep::Write(writes), ack)
    }

    /// The replay wrote what it was given.
    pub(crate) fn replay_written(&mut self, id: ConnId) -> ReplayStep {
        let Some(c) = self.conns.get(&id) else {
            return ReplayStep::Gone;
        };
        if !c.recipient {
            return ReplayStep::Gone;
        }
        let Phase::Replaying(Replay::Writing { end, horizon }) = c.phase else {
            return self.replay_next(id);
        };
        let stored = self.users.get(&c.user).map_or(0, |u| u.pipeline.stored());
        if !end || horizon < stored {
            // More to read, or stored since the read began: read again.
            if let Some(c) = self.conns.get_mut(&id) {
                c.phase = Phase::Replaying(Replay::Idle);
            }
            return self.replay_next(id);
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return ReplayStep::Gone;
        };
        if !c.held.is_empty() {
            return ReplayStep::Write(c.held.drain(..).collect());
        }
        c.phase = Phase::Live;
        ReplayStep::Live
    }

    /// `id`'s client acknowledges every message up to `upto`: the queue entry to remove up to
    /// (for its user), `None` when its window has nothing up to there.
    pub(crate) fn ack(&mut self, id: ConnId, upto: MessageId) -> Option<(Arc<str>, EntryId)> {
        let c = self.conns.get_mut(&id)?;
        let mut last = None;
        while let Some(&(mid, e)) = c.window.front() {
            if mid > upto {
                break;
            }
            last = Some(e);
            c.window.pop_front();
        }
        last.map(|e| (c.user.clone(), e))
    }
}
