//! Publishing to rooms: [`Hub::publish_as`] and its variants, [`Hub::broadcast`]. A publish to a
//! room without history is sequenced under its room shard's lock and queued on the room's
//! fan-out queue at once; one to a room with history is queued unsequenced and kept in the
//! history first (`driver::history`), then sequenced and handed out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::conn::Conn;
use super::fanout::{Counts, Fanout, Job, Outgoing, Pending, Work};
use super::{Hub, unix_micros};
use crate::core::identity::Device;
use crate::core::message::{Body, Event, RoomMessage};
use crate::error::RoomError;
use crate::hooks::Incoming;
use crate::metrics as m;

/// What became of a room publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PublishReport {
    /// The publish's sequence number in the room.
    pub seq: u64,
    /// Members it was queued on.
    pub delivered: usize,
    /// Members whose overflow policy dropped it (or closed them).
    pub dropped: usize,
    /// Members a before-send hook filtered out.
    pub filtered: usize,
}

impl Hub {
    /// Publishes `body` to `room` from the server. See [`publish_as`](Self::publish_as).
    ///
    /// # Errors
    ///
    /// As [`publish_as`](Self::publish_as).
    pub async fn publish(&self, room: &str, body: Body) -> Result<PublishReport, RoomError> {
        self.publish_as(None, room, body).await
    }

    /// Publishes `body` to every member of `room` (the publisher too, if it is a member):
    /// sequenced now, encoded once per door format, queued on each member without waiting — a
    /// member that does not read is handled by its overflow policy and never slows the others.
    /// Returns once every member was handed it (large rooms are fanned out on a task of the
    /// room's, not the caller's). Room publishes are not queued for offline users.
    ///
    /// # Errors
    ///
    /// No such room, too large, busy (the room's fan-out queue is full).
    pub async fn publish_as(
        &self,
        from: Option<&Device>,
        room: &str,
        body: Body,
    ) -> Result<PublishReport, RoomError> {
        self.enqueue_as(from, room, body)?.report().await
    }

    /// The first half of a publish, without awaiting: checked and queued on the room's fan-out
    /// queue (sequenced now in a room without history; in one with history, queued to be kept
    /// first), in the order of the calls. The [`Ticket`] tells what became of it.
    fn enqueue_as(
        &self,
        from: Option<&Device>,
        room: &str,
        body: Body,
    ) -> Result<Ticket, RoomError> {
        let inner = &self.inner;
        self.inner.check_body(&body)?;
        let shard = inner.room_shard(room);
        let max = inner.config.limits.max_pending_publishes;
        let (ticket, f, start) = {
            let mut sh = inner.rooms(shard);
            let f = match sh.fanout.get(room) {
                Some(f) => f.clone(),
                None => Arc::new(Fanout::default()),
            };
            if !f.has_room(max) {
                m::refusal("fanout_queue");
                return Err(RoomError::Busy);
            }
            match sh.core.keep_of(room).map_err(|_| RoomError::NoSuchRoom)? {
                Some(keep) => {
                    let (tx, rx) = oneshot::channel();
                    let name: Arc<str> = Arc::from(room);
                    sh.fanout.entry(name.clone()).or_insert_with(|| f.clone());
                    let start = f.push(Work::Keep(Pending {
                        room: name,
                        keep,
                        from: from.cloned(),
                        sent_at: unix_micros() / 1000,
                        body,
                        reply: tx,
                    }));
                    (Ticket::Kept(rx), f, start)
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    let (msg, to) = sh
                        .core
                        .publish(room, from.cloned(), body, unix_micros() / 1000)
                        .map_err(|_| RoomError::NoSuchRoom)?;
                    sh.fanout
                        .entry(msg.room.clone())
                        .or_insert_with(|| f.clone());
                    let seq = msg.seq;
                    let job = Job {
                        out: Outgoing::new(Event::Room(msg)),
                        to,
                        skip: None,
                        reply: Some(tx),
                    };
                    let start = f.push(Work::Send(job));
                    (Ticket::Sent(seq, rx), f, start)
                }
            }
        };
        if start {
            inner.drain(f);
        }
        Ok(ticket)
    }

    /// A publish from a member: its rate, the before-receive hook, membership, then
    /// [`publish_as`](Self::publish_as).
    ///
    /// # Errors
    ///
    /// Rate limited, refused, not a member, too large, busy.
    pub async fn publish_from(
        &self,
        conn: &Conn,
        room: &str,
        body: Body,
    ) -> Result<PublishReport, RoomError> {
        self.enqueue_from(conn, room, body).await?.report().await
    }

    /// A publish from a member for a door that has no answer to give (the room door): what
    /// [`publish_from`](Self::publish_from) refuses at once is returned; in a room without
    /// history it waits, as `publish_from` does, until every member was handed it; in a room
    /// with history it returns once queued, and a later refusal (the history failed) goes to
    /// `refused` — so a publisher's next message is read while its history write is under
    /// way, and one write keeps many of them.
    pub(crate) async fn publish_from_detached(
        &self,
        conn: &Conn,
        room: &str,
        body: Body,
        refused: impl FnOnce(RoomError) + Send + 'static,
    ) -> Result<(), RoomError> {
        match self.enqueue_from(conn, room, body).await? {
            t @ Ticket::Sent(..) => t.report().await.map(|_| ()),
            t @ Ticket::Kept(_) => {
                self.inner.tasks.spawn(async move {
                    if let Err(e) = t.report().await {
                        refused(e);
                    }
                });
                Ok(())
            }
        }
    }

    /// The checks of a member's publish, then [`enqueue_as`](Self::enqueue_as).
    /// The hook runs in the connection's lane, held until the publish is sequenced.
    async fn enqueue_from(&self, conn: &Conn, room: &str, body: Body) -> Result<Ticket, RoomError> {
        self.permit(conn).map_err(|()| RoomError::RateLimited)?;
        metrics::counter!(m::MESSAGES_IN, "kind" => "publish").increment(1);
        let incoming = Incoming::Publish {
            room: room.to_owned(),
            body,
        };
        let _lane = conn.0.lane.lock().await;
        let decided = self.inner.app.before_receive_async(conn, incoming).await;
        let (room, body) = match decided {
            Ok(Incoming::Publish { room, body }) => (room, body),
            Ok(_) => return Err(RoomError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(RoomError::Refused(why)),
        };
        self.inner.check_body(&body)?;
        if !self
            .inner
            .users(conn.0.shard)
            .core
            .in_room(conn.id(), &room)
        {
            return Err(RoomError::NotMember);
        }
        self.enqueue_as(Some(conn.device()), &room, body)
    }

    /// Sends `body` to every connection of the hub, as a room message of the reserved room
    /// `*` (epoch 0, its own sequence).
    ///
    /// # Errors
    ///
    /// The body is over the limit ([`RoomError::TooLarge`]).
    pub fn broadcast(&self, body: Body) -> Result<PublishReport, RoomError> {
        let inner = &self.inner;
        self.inner.check_body(&body)?;
        let seq = inner.broadcast_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let out = Outgoing::new(Event::Room(Arc::new(RoomMessage {
            room: "*".into(),
            epoch: 0,
            seq,
            from: None,
            sent_at: unix_micros() / 1000,
            body,
        })));
        let mut all = Counts::default();
        for shard in 0..super::SHARDS {
            let conns = inner.users(shard).core.all_recipients();
            let c = inner.deliver_all(&conns, None, &out);
            all.delivered += c.delivered;
            all.dropped += c.dropped;
            all.filtered += c.filtered;
        }
        Ok(PublishReport {
            seq,
            delivered: all.delivered,
            dropped: all.dropped,
            filtered: all.filtered,
        })
    }
}

/// A publish queued on its room's fan-out queue: what became of it, once known.
enum Ticket {
    /// Sequenced (its `seq`); the counts come when every member was handed it.
    Sent(u64, oneshot::Receiver<Counts>),
    /// To be kept in the room's history first: its `seq` and counts, or why it was not
    /// published.
    Kept(oneshot::Receiver<Result<(u64, Counts), RoomError>>),
}

impl Ticket {
    async fn report(self) -> Result<PublishReport, RoomError> {
        let (seq, c) = match self {
            Ticket::Sent(seq, rx) => (seq, rx.await.unwrap_or_default()),
            // Dropped only when the hub stops before the history answered.
            Ticket::Kept(rx) => rx.await.map_err(|_| RoomError::Busy)??,
        };
        Ok(PublishReport {
            seq,
            delivered: c.delivered,
            dropped: c.dropped,
            filtered: c.filtered,
        })
    }
}
