//! Direct messages to one user, as rules the driver carries out.
//!
//! **The pipeline.** Sends to a user enter its pipeline in the order they reach the shard, and
//! take their ids in that order. The pipeline runs one *stage* at a time: a run of consecutive
//! queued sends is stored in the offline queue ([`Step::Push`], in order: the queue's ids are
//! the user's order), then handed to the user's live connections ([`Step::Deliver`]); a
//! live-only send (TTL 0) is handed over directly. The next stage starts only when the driver
//! has reported the last one ([`Users::pushed`], [`Users::delivered`]), so one user's messages
//! can never overtake each other, and no lock is held while the queue or a socket is busy.
//!
//! **Replay.** A new connection (and one whose send queue overflowed) is *replaying*: it reads
//! the queue from its cursor ([`ReplayStep::Read`]), writes what it read, waiting for room
//! ([`ReplayStep::Write`]), and switches to live only when a read that reached the end of the
//! queue saw everything stored so far (its horizon is the highest entry the pipeline has
//! stored) and no live-only message is held for it. While it replays, queued messages are left
//! to it and live-only ones are held (bounded) and written in id order with the replayed ones.
//!
//! **Acknowledgements** remove entries up to the last acknowledged id of the connection's
//! window; doors whose clients cannot acknowledge count written as delivered, only when none of
//! the user's connections acknowledges.

use std::sync::Arc;
use std::time::Duration;

use super::message::{Delivered, DirectMessage, MessageId};
use super::pipeline::{
    ConnOutcome, ConnPlan, Finished, Pending, Progress, Refusal, Report, Stage, Staged, Step,
    push_window,
};
use super::users::{Phase, Replay, Users};
use super::{EntryId, PartialDelivery};

impl<H: Clone> Users<H> {
    /// A send to `user` enters its pipeline (its id was taken from the shard's id source).
    ///
    /// # Errors
    ///
    /// Live only and the user has no connection here; too many sends waiting for the user.
    pub(crate) fn send(&mut self, user: Arc<str>, p: Pending) -> Result<Progress<H>, Refusal> {
        if p.ttl.is_zero() && self.recipients(&user).is_empty() {
            return Err(Refusal::Offline);
        }
        let max = self.limits.max_pending_per_user;
        let u = self.users.entry(user.clone()).or_default();
        if u.pipeline.pending.len() >= max {
            return Err(Refusal::Busy);
        }
        u.pipeline.pending.push_back(p);
        Ok(self.advance(&user))
    }

    /// Starts the user's next stage if none runs.
    fn advance(&mut self, user: &Arc<str>) -> Progress<H> {
        let mut out = Progress::default();
        loop {
            let Some(u) = self.users.get_mut(user) else {
                return out;
            };
            if u.pipeline.stage.is_some() {
                return out;
            }
            if std::mem::take(&mut u.pipeline.catch_up) {
                let replays = self.catch_up(user);
                out.replays.extend(replays);
                continue;
            }
            let Some(first) = u.pipeline.pending.pop_front() else {
                if u.conns.is_empty() {
                    self.users.remove(user);
                }
                return out;
            };
            if let Some(e) = first.stored {
                // Stored by another hub: straight to this hub's connections.
                let mut staged = vec![staged_elsewhere(first, e)];
                while let Some(e) = u.pipeline.pending.front().and_then(|p| p.stored) {
                    staged.extend(
                        u.pipeline
                            .pending
                            .pop_front()
                            .map(|p| staged_elsewhere(p, e)),
                    );
                }
                for s in &staged {
                    u.pipeline.pushed_upto = u.pipeline.pushed_upto.max(s.entry.unwrap_or(0));
                }
                let more = self.hand_stored(user, staged);
                out.merge(more);
                return out;
            }
            if !first.ttl.is_zero() {
                let mut run = vec![first];
                while u
                    .pipeline
                    .pending
                    .front()
                    .is_some_and(|p| !p.ttl.is_zero() && p.stored.is_none())
                {
                    run.extend(u.pipeline.pending.pop_front());
                }
                let items = run
                    .iter()
                    .map(|p| (p.token, p.msg.clone(), p.ttl))
                    .collect();
                u.pipeline.stage = Some(Stage::Pushing(run));
                out.next = Some(Step::Push {
                    user: user.clone(),
                    items,
                });
                return out;
            }
            // A live-only send: to live connections now, held for replaying ones.
            let (plan, staged) = self.plan_live(user, first);
            let Some(u) = self.users.get_mut(user) else {
                return out;
            };
            if plan.is_empty() {
                self.finish(user, vec![staged], &mut out);
                continue;
            }
            let given = plan.iter().map(|p| (p.conn, vec![0])).collect();
            u.pipeline.stage = Some(Stage::Delivering(vec![staged], given));
            out.next = Some(Step::Deliver {
                user: user.clone(),
                plan,
            });
            return out;
        }
    }

    fn plan_live(&mut self, user: &str, p: Pending) -> (Vec<ConnPlan<H>>, Staged) {
        let max_held = self.limits.max_held_live;
        let mut report = Report::default();
        let mut plan = Vec::new();
        let ids = self
            .users
            .get(user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        let mut any = false;
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if !c.recipient {
                continue;
            }
            any = true;
            match c.phase {
                Phase::Live => plan.push(ConnPlan {
                    conn: id,
                    handle: c.handle.clone(),
                    msgs: vec![p.msg.clone()],
                }),
                Phase::Replaying(_) if c.held.len() < max_held => {
                    c.held.push_back(p.msg.clone());
                    report.delivered += 1;
                }
                Phase::Replaying(_) => report.failed += 1,
            }
        }
        (
            plan,
            Staged {
                pending: p,
                entry: None,
                report,
                // Everyone left since the send was accepted.
                offline: !any,
            },
        )
    }

    /// The driver stored the last [`Step::Push`]: `entries[i]` is the entry of its `i`-th
    /// message (`None`: the queue refused or failed it).
    pub(crate) fn pushed(&mut self, user: &Arc<str>, entries: &[Option<EntryId>]) -> Progress<H> {
        let mut out = Progress::default();
        let Some(u) = self.users.get_mut(user) else {
            return out;
        };
        let Some(Stage::Pushing(run)) = u.pipeline.stage.take() else {
            debug_assert!(false, "pushed without a push stage");
            return out;
        };
        let shared = self.limits.shared_queue;
        let mut staged = Vec::new();
        for (mut p, e) in run.into_iter().zip(entries.iter().copied()) {
            let Some(e) = e else { continue };
            u.pipeline.pushed_upto = u.pipeline.pushed_upto.max(e);
            if shared {
                // One order for the whole cluster: the queue's.
                p.msg = Arc::new(p.msg.with_id(MessageId(e)));
            }
            if let Some(report) = p.requeued {
                out.finished.push(Finished {
                    token: p.token,
                    user: user.clone(),
                    id: p.msg.id,
                    result: Ok(Report {
                        queued: true,
                        ..report
                    }),
                });
                continue;
            }
            staged.push(Staged {
                pending: p,
                entry: Some(e),
                report: Report::default(),
                offline: false,
            });
        }
        let more = self.hand_stored(user, staged);
        out.merge(more);
        out
    }

    /// Stored sends (by this hub or another sharing the queue), in entry order, to the user's
    /// connections: live ones get those after their cursor, replaying ones read them.
    fn hand_stored(&mut self, user: &Arc<str>, mut staged: Vec<Staged>) -> Progress<H> {
        let mut out = Progress::default();
        let Some(u) = self.users.get(user) else {
            return out;
        };
        let conns = u.conns.clone();
        let shared = self.limits.shared_queue;
        let max_unacked = self.limits.max_unacked.max(1);
        let mut plan = Vec::new();
        let mut given = Vec::new();
        for id in conns {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if !c.recipient {
                continue;
            }
            match c.phase {
                Phase::Live => {
                    // Entries at or before the cursor were already read by the replay that
                    // just switched it to live.
                    let mut mine = Vec::new();
                    let mut next = c.cursor;
                    let mut gap = false;
                    for (i, s) in staged.iter_mut().enumerate() {
                        let e = s.entry.unwrap_or(0);
                        if e <= next {
                            s.report.delivered += 1;
                        } else if shared && e != next + 1 {
                            // Another hub stored entries this one has not handed over: the
                            // connection reads them, and these, from the queue, in order.
                            gap = true;
                        } else {
                            mine.push(i);
                            next = e;
                        }
                    }
                    if gap {
                        for s in &mut staged {
                            if s.entry.is_some_and(|e| e > c.cursor) {
                                s.report.delivered += 1;
                            }
                        }
                        c.phase = Phase::Replaying(Replay::Idle);
                        out.replays.push(id);
                        continue;
                    }
                    if c.acknowledges {
                        // In its window before it is written: its client may acknowledge it
                        // as soon as it arrives (taken back if it is not written).
                        for &i in &mine {
                            if let Some(e) = staged[i].entry {
                                let w = (staged[i].pending.msg.id, e);
                                push_window(&mut c.window, w, max_unacked);
                            }
                        }
                    }
                    if !mine.is_empty() {
                        plan.push(ConnPlan {
                            conn: id,
                            handle: c.handle.clone(),
                            msgs: mine
                                .iter()
                                .map(|&i| staged[i].pending.msg.clone())
                                .collect(),
                        });
                        given.push((id, mine));
                    }
                }
                Phase::Replaying(_) => {
                    for s in &mut staged {
                        s.report.delivered += 1;
                    }
                }
            }
        }
        if plan.is_empty() {
            self.finish(user, staged, &mut out);
            let more = self.advance(user);
            out.merge(more);
            return out;
        }
        if let Some(u) = self.users.get_mut(user) {
            u.pipeline.stage = Some(Stage::Delivering(staged, given));
        }
        out.next = Some(Step::Deliver {
            user: user.clone(),
            plan,
        });
        out
    }

    /// The driver carried out the last [`Step::Deliver`]: one outcome per connection of the
    /// plan.
    pub(crate) fn delivered(&mut self, user: &Arc<str>, outcomes: &[ConnOutcome]) -> Progress<H> {
        let mut out = Progress::default();
        let Some(u) = self.users.get_mut(user) else {
            return out;
        };
        let Some(Stage::Delivering(mut staged, given)) = u.pipeline.stage.take() else {
            debug_assert!(false, "delivered without a delivery stage");
            return out;
        };
        let mut sent_upto: Option<EntryId> = None;
        for (conn, mine) in &given {
            let results = outcomes
                .iter()
                .find(|o| o.conn == *conn)
                .map_or(&[][..], |o| o.results.as_slice());
            let c = self.conns.get_mut(conn);
            let recipient = c.as_ref().is_some_and(|c| c.recipient);
            let mut cursor = None;
            let mut not_written = Vec::new();
            let mut stop: Option<Delivered> = None;
            for (k, &i) in mine.iter().enumerate() {
                let s = &mut staged[i];
                let r = stop.or_else(|| results.get(k).copied());
                match r {
                    Some(Delivered::Sent | Delivered::Filtered) => {
                        s.report.delivered += 1;
                        if let Some(e) = s.entry {
                            cursor = Some(e);
                            if r == Some(Delivered::Sent) {
                                sent_upto = sent_upto.max(Some(e));
                            } else {
                                not_written.push(s.pending.msg.id);
                            }
                        }
                    }
                    Some(Delivered::Dropped) | None if s.entry.is_some() && recipient => {
                        // Its send queue is full: it catches up from the queue, in order,
                        // instead of losing the message.
                        s.report.delivered += 1;
                        stop = Some(Delivered::Dropped);
                        not_written.push(s.pending.msg.id);
                    }
                    _ => {
                        s.report.failed += 1;
                        stop = Some(Delivered::Closed);
                        not_written.push(s.pending.msg.id);
                    }
                }
            }
            let Some(c) = c else { continue };
            if let Some(e) = cursor {
                c.cursor = c.cursor.max(e);
            }
            if !not_written.is_empty() {
                c.window.retain(|(id, _)| !not_written.contains(id));
            }
            if stop == Some(Delivered::Dropped) && c.recipient && c.phase == Phase::Live {
                c.phase = Phase::Replaying(Replay::Idle);
                out.replays.push(*conn);
            }
        }
        if let Some(e) = sent_upto
            && !self.anyone_acknowledges(user)
        {
            out.ack = Some((user.clone(), e));
        }
        self.finish(user, staged, &mut out);
        let more = self.advance(user);
        out.merge(more);
        out
    }

    /// Another hub sharing the queue stored `msg` for `user` as entry `e` (a cluster node's
    /// push notice): it joins the user's pipeline behind this hub's own sends and goes to the
    /// live connections whose cursor it continues. Nothing when the user has no connection
    /// here. When too many sends wait already, the user's live connections catch up from the
    /// queue instead (nothing is lost: the entry is stored).
    pub(crate) fn stored_elsewhere(
        &mut self,
        user: &Arc<str>,
        token: super::pipeline::Token,
        e: EntryId,
        msg: Arc<DirectMessage>,
    ) -> Progress<H> {
        let max = self.limits.max_pending_per_user;
        let Some(u) = self.users.get_mut(user) else {
            return Progress::default();
        };
        if u.conns.is_empty() {
            return Progress::default();
        }
        if u.pipeline.pending.len() >= max {
            u.pipeline.pushed_upto = u.pipeline.pushed_upto.max(e);
            return Progress {
                replays: self.catch_up(user),
                ..Progress::default()
            };
        }
        let msg = Arc::new(msg.with_id(MessageId(e)));
        let mut p = Pending::new(token, msg, Duration::MAX);
        p.stored = Some(e);
        u.pipeline.pending.push_back(p);
        self.advance(user)
    }

    /// Every live connection of `user` reads the queue from its cursor (after notices from
    /// other hubs may have been missed); returns those that must start a replay now. While a
    /// stage runs, they do so when it is done.
    pub(crate) fn catch_up(&mut self, user: &str) -> Vec<super::signon::ConnId> {
        let Some(u) = self.users.get_mut(user) else {
            return Vec::new();
        };
        if u.pipeline.stage.is_some() {
            u.pipeline.catch_up = true;
            return Vec::new();
        }
        let mut replays = Vec::new();
        for id in &u.conns {
            if let Some(c) = self.conns.get_mut(id)
                && c.recipient
                && c.phase == Phase::Live
            {
                c.phase = Phase::Replaying(Replay::Idle);
                replays.push(*id);
            }
        }
        replays
    }

    /// Whether any connection of `user` acknowledges (then an ack is for the whole queue).
    pub(super) fn anyone_acknowledges(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| {
            u.conns
                .iter()
                .any(|id| self.conns.get(id).is_some_and(|c| c.acknowledges))
        })
    }

    /// Ends a stage: each send gets its result; a live-only send that must be queued after all
    /// goes back to the front of the pipeline.
    fn finish(&mut self, user: &Arc<str>, staged: Vec<Staged>, out: &mut Progress<H>) {
        let partial = self.limits.partial;
        let mut requeue = Vec::new();
        for s in staged {
            let id = s.pending.msg.id;
            let token = s.pending.token;
            let result = if s.entry.is_some() {
                Ok(Report {
                    queued: true,
                    ..s.report
                })
            } else if s.offline {
                Err(Refusal::Offline)
            } else if s.report.failed == 0 {
                Ok(s.report)
            } else {
                match partial {
                    PartialDelivery::AnyDelivered if s.report.delivered > 0 => Ok(s.report),
                    PartialDelivery::AnyDelivered => Err(Refusal::Undelivered),
                    PartialDelivery::AllOrError => Err(Refusal::Partial {
                        delivered: s.report.delivered,
                        total: s.report.delivered + s.report.failed,
                    }),
                    PartialDelivery::QueueForUser { ttl } => {
                        let mut p = s.pending;
                        p.ttl = ttl.max(Duration::from_millis(1));
                        p.requeued = Some(s.report);
                        requeue.push(p);
                        continue;
                    }
                }
            };
            out.finished.push(Finished {
                token,
                user: user.clone(),
                id,
                result,
            });
        }
        if let Some(u) = self.users.get_mut(user) {
            for p in requeue.into_iter().rev() {
                u.pipeline.pending.push_front(p);
            }
        }
    }
}

/// A send another hub stored, staged for delivery here.
fn staged_elsewhere(pending: Pending, e: EntryId) -> Staged {
    Staged {
        pending,
        entry: Some(e),
        report: Report::default(),
        offline: false,
    }
}
