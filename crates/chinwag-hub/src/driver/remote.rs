//! Rooms shared with other hubs ([`HubConfig::shared_history`](crate::HubConfig::shared_history),
//! a cluster): their offsets are the shared history's, so this hub hands out other hubs'
//! publications as they are announced ([`Hub::published_elsewhere`]), in offset order with its
//! own, and fills any offsets it lacks from the history — a notice that came late or was lost,
//! or a publication of its own whose offset shows that others came first. Everything here runs
//! on the room's fan-out queue, one job after the other, so a room's offsets are taken in order.

use std::sync::Arc;

use bytes::Bytes;

use super::fanout::{Outgoing, Remote};
use super::{Hub, Inner};
use crate::core::message::{Event, RoomMessage, decode_publication};
use crate::core::recovery::{Kept, Missed};
use crate::metrics as m;

impl Hub {
    /// Another hub sharing the room history kept a publication of `room` as `offset` of
    /// `epoch` (its notice, e.g. from `chinwag-cluster-redis`): this hub's members of the room
    /// get it in offset order, after any offsets this hub lacks (read from the history).
    /// Nothing happens when the room has no members here, or the offset was handed out already.
    pub fn published_elsewhere(&self, room: &str, epoch: u64, offset: u64, payload: Bytes) {
        self.inner.queue_remote(room, epoch, offset, Some(payload));
    }

    /// `device`, a member on another hub, joined or left `room` (a cluster directory's notice):
    /// this hub's members of the room get the presence event, if the room has presence events.
    pub fn presence_elsewhere(&self, room: &str, device: crate::Device, joined: bool) {
        let inner = &self.inner;
        let shard = inner.room_shard(room);
        let job = inner
            .rooms(shard)
            .core
            .presence_elsewhere(room, device, joined);
        if let Some(p) = job {
            inner.presence(shard, p, None);
        }
    }

    /// This hub may have missed publications of `room` kept by other hubs (its notices were
    /// lost, or it had no member there for a while): reads the history's state and hands out
    /// what this hub lacks, in order.
    pub fn sync_room(&self, room: &str) {
        self.inner.queue_remote(room, 0, 0, None);
    }
}

/// After which offset of the shared history's `epoch` a room here at (`room_epoch`,
/// `room_seq`) lacks publications: its own seq within its epoch; 0 when it has handed out
/// nothing yet (the stream began under another hub's epoch after the room was made here);
/// `None` when the history started again under a new epoch after the room's (it was lost or
/// swept): the room takes the new epoch from the publication on, its catch-ups spoilt.
pub(crate) fn lacks_after(room_epoch: u64, room_seq: u64, epoch: u64) -> Option<u64> {
    if epoch == room_epoch {
        Some(room_seq)
    } else if room_seq == 0 {
        Some(0)
    } else {
        None
    }
}

impl Inner {
    /// Queues a remote publication (or a sync) on `room`'s fan-out queue, if the room is here.
    pub(crate) fn queue_remote(
        self: &Arc<Self>,
        room: &str,
        epoch: u64,
        offset: u64,
        payload: Option<Bytes>,
    ) {
        if self.history.is_none() {
            return;
        }
        let shard = self.room_shard(room);
        let (f, start) = {
            let mut sh = self.rooms(shard);
            if !matches!(sh.core.keep_of(room), Ok(Some(_))) {
                return;
            }
            let name: Arc<str> = Arc::from(room);
            let f = sh.fanout.entry(name.clone()).or_default().clone();
            let r = Remote {
                room: name,
                epoch,
                offset,
                payload,
            };
            // Bounded like local publishes; a notice that does not fit is read from the
            // history once the queue is drained.
            let start = f.push_remote(r, self.config.limits.max_pending_publishes);
            (f, start)
        };
        if start {
            self.drain(f);
        }
    }

    /// Takes one remote publication (or sync) of a room: skipped when it was handed out
    /// already, read with what precedes it when offsets are missing, then sequenced and handed
    /// to the members.
    pub(crate) async fn take_remote(&self, r: Remote) {
        let shard = self.room_shard(&r.room);
        let Some(info) = self.rooms(shard).core.info(&r.room) else {
            return;
        };
        let Some(payload) = r.payload else {
            // A sync: whatever the history holds beyond this hub's last offset.
            let Some(history) = &self.history else { return };
            match history.state(&r.room).await {
                Ok(Some(s)) => {
                    if let Some(after) = lacks_after(info.epoch, info.seq, s.epoch)
                        && s.last > after
                    {
                        self.fill(&r.room, s.epoch, after, s.last).await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(room = %r.room, error = %e, "room history unavailable"),
            }
            return;
        };
        if let Some(after) = lacks_after(info.epoch, info.seq, r.epoch) {
            if r.offset <= after {
                return;
            }
            if r.offset > after + 1 {
                // Offsets missing in between: they come first, from the history.
                self.fill(&r.room, r.epoch, after, r.offset - 1).await;
            }
        }
        let Some(msg) = decode_publication(&r.room, r.epoch, r.offset, payload) else {
            tracing::warn!(room = %r.room, offset = r.offset, "skipping a publication this hub cannot decode");
            return;
        };
        let lag_ms = (super::unix_micros() / 1000).saturating_sub(msg.sent_at);
        metrics::histogram!(m::REMOTE_LAG).record(lag_ms as f64 / 1000.0);
        self.sequence_remote(&r.room, r.epoch, r.offset, vec![Arc::new(msg)]);
    }

    /// Hands out the publications `(after, up_to]` of `room` under `epoch` from the history,
    /// if the room still lacks them; when the history no longer holds them whole, the room
    /// goes on without them (its members' catch-ups are spoilt; their clients see the jump).
    pub(crate) async fn fill(&self, room: &Arc<str>, epoch: u64, after: u64, up_to: u64) {
        let missed = Missed { after, up_to };
        match self.read_missed(room, epoch, missed).await {
            Ok(msgs) if !msgs.is_empty() => self.sequence_remote(room, epoch, after + 1, msgs),
            Ok(_) => {}
            Err(why) => {
                tracing::warn!(room = %room, after, up_to, why = why.as_str(), "room offsets missing from the shared history");
            }
        }
    }

    /// Sequences publications the shared history numbered from `first` (those this hub has
    /// already are dropped) and hands them to the room's members.
    fn sequence_remote(
        &self,
        room: &Arc<str>,
        epoch: u64,
        first: u64,
        msgs: Vec<Arc<RoomMessage>>,
    ) {
        let shard = self.room_shard(room);
        let sequenced = {
            let mut sh = self.rooms(shard);
            let Some(info) = sh.core.info(room) else {
                return;
            };
            let skip = lacks_after(info.epoch, info.seq, epoch)
                .map_or(0, |after| (after + 1).saturating_sub(first) as usize);
            if skip >= msgs.len() {
                return;
            }
            let kept: Vec<Kept> = msgs[skip..]
                .iter()
                .map(|m| (m.from.clone(), m.sent_at, m.body.clone()))
                .collect();
            sh.core
                .sequence_kept(room, epoch, first + skip as u64, kept)
        };
        if let Ok((msgs, to)) = sequenced {
            for msg in msgs {
                self.deliver_all(&to, None, &Outgoing::new(Event::Room(msg)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lacks_after;

    #[test]
    fn what_a_room_lacks_of_the_shared_history() {
        assert_eq!(
            lacks_after(7, 5, 7),
            Some(5),
            "its own seq within its epoch"
        );
        assert_eq!(
            lacks_after(7, 0, 9),
            Some(0),
            "nothing handed out: all of the stream"
        );
        assert_eq!(
            lacks_after(7, 5, 9),
            None,
            "a new epoch after its own: taken as it comes"
        );
    }
}
