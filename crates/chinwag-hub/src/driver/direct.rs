//! Sends to users: the hub's API ([`Hub::send`], [`Hub::send_as`], [`Hub::send_from`],
//! [`Hub::ack`], [`Hub::receive_app`]) and the runner that carries out a user's pipeline
//! ([`core::delivery`](crate::core::delivery)): it pushes to the queue, hands messages to
//! connections, and gives each waiting sender its result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chinwag_queue::QueueError;
use tokio::sync::oneshot;

use super::conn::Conn;
use super::fanout::Outgoing;
use super::{Hub, Inner, unix_micros};
use crate::close::{Close, CloseCode};
use crate::core::EntryId;
use crate::core::identity::Device;
use crate::core::ids;
use crate::core::message::{Body, Delivered, DirectMessage, Event, MessageId};
use crate::core::pipeline::{ConnOutcome, ConnPlan, Pending, Progress, Refusal, Step, Token};
use crate::core::shares::Ticket;
use crate::core::users::Permit;
use crate::error::SendError;
use crate::hooks::{Incoming, first_poll_under};
use crate::metrics as m;

/// What became of a send to a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The message's id.
    pub id: MessageId,
    /// Connections it was queued on now, or that get it from the offline queue as they catch
    /// up (they are replaying).
    pub delivered: usize,
    /// Connections of the user that could not take it now (full or closing). With a TTL they
    /// get it from the offline queue.
    pub failed: usize,
    /// Whether it is in the offline queue (until acknowledged or expired).
    pub queued: bool,
    /// Its place in the history of the conversation between sender and recipient, when it was
    /// kept there (messages a user sends with a TTL, on a hub keeping conversations; `None`
    /// also when the store failed: it was delivered all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// How a direct message is sent.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// How long it may wait in the offline queue; `Some(ZERO)`: live only (an offline user is an
    /// error); `None`: the hub's [`default_ttl`](crate::HubConfig::default_ttl). Cut to
    /// [`max_ttl`](crate::HubConfig::max_ttl).
    pub ttl: Option<Duration>,
}

impl SendOptions {
    /// With `ttl` (see [`ttl`](Self::ttl)).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Live only: TTL 0.
    pub fn live_only() -> Self {
        SendOptions {
            ttl: Some(Duration::ZERO),
        }
    }
}

/// A send's result, and whether the queue kept the message in its conversation (then the
/// report's `seq` is the queue's doing, and the sender appends nothing).
pub(crate) type Outcome = (Result<DeliveryReport, SendError>, bool);

/// A sender waiting for its send's result.
pub(crate) struct Waiter {
    tx: oneshot::Sender<Outcome>,
    /// Its share of the offline queue, until its entry is stored.
    ticket: Option<Ticket>,
    ttl: Duration,
    /// Whether its message goes into its conversation's history.
    pub(super) keep: bool,
    /// The queue kept it there with the push (`Some`): its `seq` (`None`: refused, failed).
    kept: Option<Option<u64>>,
}

impl Hub {
    /// Sends `body` to every connection of `user` (from the server itself). See
    /// [`send_as`](Self::send_as).
    ///
    /// # Errors
    ///
    /// As [`send_as`](Self::send_as).
    pub async fn send(
        &self,
        user: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        self.send_as(None, user, body, opts).await
    }

    /// Sends `body` from `from` (`None`: the server) to every connection of `user`.
    ///
    /// With a TTL the message goes into the offline queue first (returning once it is stored:
    /// for a durable queue, once it would survive a crash) and then straight to the user's
    /// connections that are live; connections still replaying, or whose send queue is full,
    /// get it from the queue, in order. It stays queued until a connection acknowledges it or
    /// its TTL passes. With TTL 0 it goes only to live connections and an offline user is
    /// [`SendError::Offline`].
    ///
    /// Sends to one user are ordered: ids increase in the order the sends reach the user's
    /// shard, and every connection sees them in id order. A sender's messages held in other
    /// users' queues are bounded by its share ([`OfflineShares`](crate::OfflineShares)).
    ///
    /// # Errors
    ///
    /// [`SendError`]: offline (TTL 0), too large, bad recipient, over the sender's share, queue
    /// refused or failed, partial (under [`PartialDelivery::AllOrError`](crate::PartialDelivery)),
    /// busy, shutting down.
    pub async fn send_as(
        &self,
        from: Option<&Device>,
        user: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        let inner = &self.inner;
        if self.is_stopping() {
            return Err(SendError::ShuttingDown);
        }
        ids::check_user(user).map_err(SendError::BadRecipient)?;
        self.inner.check_body(&body)?;
        let mut ttl = opts
            .ttl
            .unwrap_or(inner.config.default_ttl)
            .min(inner.config.max_ttl);
        // Live-only messages are not kept (in a cluster they are queued, briefly, all the same).
        let keep = inner.keeps_conversation(from.is_some(), ttl.is_zero());
        if ttl.is_zero() && inner.config.shared_queue {
            // A cluster has one order per user, the queue's: a live-only message to a user
            // online anywhere goes through it too, briefly.
            ttl = self.live_ttl_in_cluster(user).await?;
        }
        let ticket = if ttl.is_zero() {
            None
        } else {
            let sender = from.map(|d| &d.user);
            let now = inner.now();
            Some(
                inner
                    .shares(|s| s.reserve(sender, body.len() as u64, now))
                    .map_err(|r| {
                        m::refusal("offline_share");
                        SendError::Quota(r.into())
                    })?,
            )
        };
        let shard = inner.user_shard(user);
        let (tx, rx) = oneshot::channel();
        let token = inner.token();
        let mut kept = None;
        let progress = {
            let mut sh = inner.users(shard);
            let key = sh.core.user_key(user).unwrap_or_else(|| Arc::from(user));
            let now_us = unix_micros();
            let msg = Arc::new(DirectMessage {
                id: sh.ids.next(now_us),
                to: key.clone(),
                from: from.cloned(),
                sent_at: now_us / 1000,
                body,
            });
            if keep {
                kept = Some(msg.clone());
            }
            match sh.core.send(key, Pending::new(token, msg, ttl)) {
                Ok(p) => {
                    sh.waiters.insert(
                        token,
                        Waiter {
                            tx,
                            ticket,
                            ttl,
                            keep,
                            kept: None,
                        },
                    );
                    p
                }
                Err(r) => {
                    drop(sh);
                    inner.cancel_share(ticket);
                    return Err(refusal(r, user));
                }
            }
        };
        inner.run(shard, progress);
        let (mut result, queue_kept) = rx.await.unwrap_or((Err(SendError::ShuttingDown), false));
        if let (Ok(report), Some(msg), false) = (&mut result, kept, queue_kept) {
            // On a task of its own: a sender that goes away does not leave it unkept.
            let keeper = inner.clone();
            let kept = inner
                .tasks
                .spawn(async move { keeper.keep_direct(msg).await });
            report.seq = kept.await.ok().flatten();
        }
        result
    }

    /// With a shared queue: the TTL a live-only send to `user` is queued with, if the user is
    /// online on any node.
    async fn live_ttl_in_cluster(&self, user: &str) -> Result<Duration, SendError> {
        let shard = self.inner.user_shard(user);
        let here = !self.inner.users(shard).core.recipients(user).is_empty();
        let online = here
            || !self
                .inner
                .directory
                .connections(user)
                .await
                // In a cluster the directory and the queue live in one Redis: the client sees
                // the queue's error (`queue`), as for a push that failed.
                .map_err(|e| SendError::Queue(QueueError::backend(format!("directory: {e}"))))?
                .is_empty();
        if !online {
            return Err(SendError::Offline(user.to_owned()));
        }
        Ok(self
            .inner
            .config
            .shared_live_ttl
            .max(Duration::from_millis(1)))
    }

    /// Another hub sharing the offline queue (a cluster node) stored `payload` for `user` as
    /// entry `entry` (its push notice, e.g. from `chinwag-cluster-redis`): this hub's live
    /// connections of the user get it in order, behind this hub's own sends; a connection
    /// whose cursor it does not continue reads the queue instead. Nothing happens when the
    /// user has no connection here, and a payload this hub did not write is skipped (with a
    /// warning). For hubs with [`HubConfig::shared_queue`](crate::HubConfig::shared_queue).
    pub fn stored_elsewhere(&self, user: &str, entry: EntryId, payload: bytes::Bytes) {
        let inner = &self.inner;
        let shard = inner.user_shard(user);
        let token = inner.token();
        let progress = {
            let mut sh = inner.users(shard);
            let Some(key) = sh.core.user_key(user) else {
                return;
            };
            let Some(msg) = crate::core::message::decode_envelope(&key, payload) else {
                tracing::warn!(user, entry, "skipping a push notice this hub cannot decode");
                return;
            };
            sh.core.stored_elsewhere(&key, token, entry, Arc::new(msg))
        };
        inner.run(shard, progress);
    }

    /// Every live connection of `user` here reads the offline queue from where it stands:
    /// for a cluster node that may have missed other nodes' push notices (its pub/sub
    /// connection dropped). Messages it had are not sent again.
    pub fn catch_up(&self, user: &str) {
        let inner = &self.inner;
        let shard = inner.user_shard(user);
        let replays = inner.users(shard).core.catch_up(user);
        let progress = Progress {
            replays,
            ..Progress::default()
        };
        inner.run(shard, progress);
    }

    /// A send from a connection: its message rate and the before-receive hook first.
    ///
    /// # Errors
    ///
    /// As [`send_as`](Self::send_as), plus [`SendError::RateLimited`] and
    /// [`SendError::Refused`].
    pub async fn send_from(
        &self,
        conn: &Conn,
        to: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        self.permit(conn).map_err(|()| SendError::RateLimited)?;
        metrics::counter!(m::MESSAGES_IN, "kind" => "direct").increment(1);
        let incoming = Incoming::Direct {
            to: to.to_owned(),
            body,
        };
        let lane = conn.0.lane.lock().await;
        let decided = self.inner.app.before_receive_async(conn, incoming).await;
        let (to, body) = match decided {
            Ok(Incoming::Direct { to, body }) => (to, body),
            Ok(_) => return Err(SendError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(SendError::Refused(why)),
        };
        // The lane is held until the send is under way (its first poll orders it).
        first_poll_under(lane, self.send_as(Some(conn.device()), &to, body, opts)).await
    }

    /// One more message from `conn`: its message rate; a client over it too many times in a row
    /// is closed (4008).
    pub(crate) fn permit(&self, conn: &Conn) -> Result<(), ()> {
        let inner = &self.inner;
        let now = inner.now();
        let verdict = inner.users(conn.0.shard).core.permit(conn.id(), now);
        match verdict {
            Permit::Granted => Ok(()),
            Permit::Refused => {
                m::refusal("message_rate");
                Err(())
            }
            Permit::RefusedClose => {
                m::refusal("message_rate");
                self.close(
                    conn,
                    Close::new(CloseCode::RATE_LIMITED, "message rate exceeded repeatedly"),
                );
                Err(())
            }
        }
    }

    /// The client acknowledges every direct message up to `id`: they are removed from the
    /// offline queue and never sent to this user again. Returns how many queue entries were
    /// removed. An ack is applied when this returns (the chat door answers the `ack` request
    /// then).
    ///
    /// # Errors
    ///
    /// The queue failed.
    pub async fn ack(&self, conn: &Conn, id: MessageId) -> Result<u64, SendError> {
        let upto = self.inner.users(conn.0.shard).core.ack(conn.id(), id);
        let Some((user, e)) = upto else {
            return Ok(0);
        };
        Ok(self.inner.ack_queue(&user, e).await?)
    }

    /// A message from `conn` for the application: its rate, the before-receive hook, then
    /// [`App::on_receive`](crate::App::on_receive), awaited in the connection's lane (so a
    /// connection's app messages are handled one at a time, in order); its answer for the
    /// client.
    ///
    /// # Errors
    ///
    /// Rate limited, too large, or refused by a hook.
    pub async fn receive_app(&self, conn: &Conn, body: Body) -> Result<Option<Body>, SendError> {
        self.permit(conn).map_err(|()| SendError::RateLimited)?;
        self.inner.check_body(&body)?;
        metrics::counter!(m::MESSAGES_IN, "kind" => "app").increment(1);
        // In the connection's lane from the hook to the application's answer.
        let _lane = conn.0.app_lane.lock().await;
        let app = &self.inner.app;
        let body = match app.before_receive_async(conn, Incoming::App { body }).await {
            Ok(Incoming::App { body }) => body,
            Ok(_) => return Err(SendError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(SendError::Refused(why)),
        };
        app.on_receive(self, conn, body)
            .await
            .map_err(SendError::Refused)
    }
}

fn refusal(r: Refusal, user: &str) -> SendError {
    match r {
        Refusal::Offline => SendError::Offline(user.to_owned()),
        Refusal::Undelivered => SendError::Undelivered,
        Refusal::Partial { delivered, total } => SendError::Partial { delivered, total },
        Refusal::Busy => {
            m::refusal("pending_sends");
            SendError::Busy
        }
    }
}

impl Inner {
    /// Carries out a user's pipeline from `p` on: completes finished sends, starts replays, runs
    /// the next stages. A stage that only hands messages to connections runs here, on the
    /// caller's task: it never waits, so nothing can interrupt it half-way. A stage that waits
    /// on the queue (a push, an acknowledgement), and all that follows it, runs on a task of
    /// its own: a sender that goes away (its request dropped) cannot leave a user's pipeline
    /// half-done, and no sender waits for later senders' messages.
    pub(crate) fn run(self: &Arc<Self>, shard: usize, mut p: Progress<Conn>) {
        loop {
            self.settle(shard, &mut p);
            if p.ack.is_some() || matches!(p.next, Some(Step::Push { .. })) {
                let inner = self.clone();
                self.tasks
                    .spawn(async move { inner.advance(shard, p).await });
                return;
            }
            match p.next.take() {
                None => return,
                Some(Step::Deliver { user, plan }) => p = self.hand_over(shard, &user, &plan),
                Some(push @ Step::Push { .. }) => p.next = Some(push),
            }
        }
    }

    /// Runs the pipeline's steps, waiting on the queue, until there are none left.
    async fn advance(self: &Arc<Self>, shard: usize, mut p: Progress<Conn>) {
        loop {
            self.settle(shard, &mut p);
            if let Some((user, e)) = p.ack.take() {
                self.ack_written(&user, e).await;
            }
            let Some(step) = p.next.take() else { return };
            p = self.step(shard, step).await;
        }
    }

    async fn step(&self, shard: usize, step: Step<Conn>) -> Progress<Conn> {
        match step {
            Step::Push { user, items } => {
                let results = self.push_run(shard, &user, &items).await;
                let mut entries = Vec::with_capacity(items.len());
                for ((token, _, _), r) in items.iter().zip(results) {
                    match r {
                        Ok((e, kept)) => {
                            metrics::counter!(m::QUEUED).increment(1);
                            self.stored(shard, *token, &user, e, kept);
                            entries.push(Some(e));
                        }
                        Err(e) => {
                            let w = self.users(shard).waiters.remove(token);
                            if let Some(w) = w {
                                self.cancel_share(w.ticket);
                                self.complete(w.tx, (Err(SendError::Queue(e)), false));
                            }
                            entries.push(None);
                        }
                    }
                }
                self.users(shard).core.pushed(&user, &entries)
            }
            Step::Deliver { user, plan } => self.hand_over(shard, &user, &plan),
        }
    }

    /// A [`Step::Deliver`]: each connection its messages, in order, without waiting.
    fn hand_over(&self, shard: usize, user: &Arc<str>, plan: &[ConnPlan<Conn>]) -> Progress<Conn> {
        // Each message encoded once for all of the user's connections of a format.
        let mut outs: HashMap<MessageId, Outgoing> = HashMap::new();
        let outcomes: Vec<ConnOutcome> = plan
            .iter()
            .map(|cp| {
                let mut results = Vec::with_capacity(cp.msgs.len());
                for msg in &cp.msgs {
                    let out = outs
                        .entry(msg.id)
                        .or_insert_with(|| Outgoing::new(Event::Direct(msg.clone())));
                    let r = self.deliver(&cp.handle, out);
                    results.push(r);
                    if matches!(r, Delivered::Dropped | Delivered::Closed) {
                        break;
                    }
                }
                ConnOutcome {
                    conn: cp.conn,
                    results,
                }
            })
            .collect();
        self.users(shard).core.delivered(user, &outcomes)
    }

    /// A send's entry is stored (and kept in its conversation by the queue: `kept`): its
    /// share stays taken until the entry leaves the queue.
    fn stored(
        &self,
        shard: usize,
        token: Token,
        user: &Arc<str>,
        e: EntryId,
        kept: Option<Option<u64>>,
    ) {
        let (ticket, ttl) = {
            let mut sh = self.users(shard);
            match sh.waiters.get_mut(&token) {
                Some(w) => {
                    w.kept = kept;
                    (w.ticket.take(), w.ttl)
                }
                None => return,
            }
        };
        if let Some(t) = ticket {
            let expires = self.now() + ttl;
            self.shares(|s| s.commit(t, user, e, expires));
        }
    }

    /// Completes finished sends, starts replays (the acknowledgement for doors that cannot is
    /// left in `p`: it waits on the queue).
    fn settle(self: &Arc<Self>, shard: usize, p: &mut Progress<Conn>) {
        if !p.replays.is_empty() {
            let conns: Vec<Conn> = {
                let sh = self.users(shard);
                p.replays
                    .drain(..)
                    .filter_map(|id| sh.core.conn(id).map(|c| c.handle.clone()))
                    .collect()
            };
            for c in conns {
                self.start_replay(c);
            }
        }
        if p.finished.is_empty() {
            return;
        }
        let done: Vec<_> = {
            let mut sh = self.users(shard);
            p.finished
                .drain(..)
                .filter_map(|f| sh.waiters.remove(&f.token).map(|w| (w, f)))
                .collect()
        };
        for (w, f) in done {
            self.cancel_share(w.ticket);
            let r = match f.result {
                Ok(r) => Ok(DeliveryReport {
                    id: f.id,
                    delivered: r.delivered,
                    failed: r.failed,
                    queued: r.queued,
                    seq: w.kept.flatten(),
                }),
                Err(r) => Err(refusal(r, &f.user)),
            };
            self.complete(w.tx, (r, w.kept.is_some()));
        }
    }
}
