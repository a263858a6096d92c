//! The rooms' side of recovery (`core::recovery`'s rules 1 and 3): publications kept in a
//! room's history are sequenced with the history's offsets and held for the members catching
//! up; a catch-up is taken in rounds and ends under the room's lock.

use std::sync::Arc;

use super::message::RoomMessage;
use super::recovery::{Kept, Overflow};
use super::rooms::{RoomRefusal, Rooms, Snapshot};
use super::signon::ConnId;

impl<M: Clone> Rooms<M> {
    /// Publications of `name` its history kept under `epoch`, the first at offset `first`: they
    /// are sequenced with the history's offsets (rule 1), held for the members catching up, and
    /// returned with the members they go to. When the history's numbering does not continue
    /// the room's (the history was lost, or another writer appended), the room takes the
    /// history's and every catch-up is spoilt.
    pub(crate) fn sequence_kept(
        &mut self,
        name: &str,
        epoch: u64,
        first: u64,
        kept: Vec<Kept>,
    ) -> Result<(Vec<Arc<RoomMessage>>, Snapshot<M>), RoomRefusal> {
        let r = self.rooms.get_mut(name).ok_or(RoomRefusal::NoSuchRoom)?;
        if kept.is_empty() {
            return Ok((Vec::new(), r.snapshot()));
        }
        if r.epoch != epoch || r.seq + 1 != first {
            r.epoch = epoch;
            for c in r.catchups.values_mut() {
                c.spoil();
            }
        }
        let mut msgs = Vec::with_capacity(kept.len());
        for (i, (from, sent_at, body)) in kept.into_iter().enumerate() {
            let msg = Arc::new(RoomMessage {
                room: r.name.clone(),
                epoch,
                seq: first + i as u64,
                from,
                sent_at,
                body,
            });
            for c in r.catchups.values_mut() {
                c.hold(msg.seq, msg.clone());
            }
            msgs.push(msg);
        }
        r.seq = first + msgs.len() as u64 - 1;
        Ok((msgs, r.snapshot()))
    }

    /// The room's history holds from `held_from` on after an append under `epoch`: how many
    /// publications it trimmed since the last append (0 when the epoch changed). Called before
    /// [`sequence_kept`](Self::sequence_kept) of that append.
    pub(crate) fn trimmed_to(&mut self, name: &str, epoch: u64, held_from: u64) -> u64 {
        let Some(r) = self.rooms.get_mut(name) else {
            return 0;
        };
        let trimmed = if r.epoch == epoch {
            held_from.saturating_sub(r.held_from)
        } else {
            0
        };
        r.held_from = if r.epoch == epoch {
            r.held_from.max(held_from)
        } else {
            held_from
        };
        trimmed
    }

    /// The next step of `conn`'s catch-up in `name`, once its missed publications are written:
    /// the publications held for it meanwhile (write them, then ask again), or none — then the
    /// catch-up is over and the member is live from this instant, so nothing can overtake what
    /// was held. `None`: it was not catching up there; `Overflow`: the catch-up ended spoilt.
    pub(crate) fn catchup_take(
        &mut self,
        name: &str,
        conn: ConnId,
    ) -> Option<Result<Vec<Arc<RoomMessage>>, Overflow>> {
        let r = self.rooms.get_mut(name)?;
        let c = r.catchups.get_mut(&conn)?;
        let taken = c.take();
        if !matches!(&taken, Ok(held) if !held.is_empty()) {
            r.catchups.remove(&conn);
            r.snapshot = None;
        }
        Some(taken)
    }
}

impl<M: Clone> Rooms<M> {
    /// Ends `conn`'s catch-up in `name` whatever it held (its join was dropped: the driver
    /// closes the connection). Whether there was one.
    pub(crate) fn end_catchup(&mut self, name: &str, conn: ConnId) -> bool {
        let Some(r) = self.rooms.get_mut(name) else {
            return false;
        };
        let ended = r.catchups.remove(&conn).is_some();
        if ended {
            r.snapshot = None;
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::Device;
    use crate::core::message::Body;
    use crate::core::recovery::{Keep, Missed, NotRecovered, Since};
    use crate::core::rooms::{Member, NewRoom, Recover};

    fn kept(n: usize) -> Vec<Kept> {
        (0..n).map(|i| (None, i as u64, Body::text("x"))).collect()
    }

    #[test]
    fn a_member_catching_up_is_held_for_then_live() {
        let mut rooms = Rooms::<u32>::default();
        let keep = Some(Keep::new(100, None));
        let new = NewRoom {
            epoch: 7,
            seq: 0,
            held_from: 1,
            max_members: 10,
            keep,
        };
        rooms.create("r", new, None, false).unwrap();
        let m = |n: &str| Member {
            device: Device::new(n, "d"),
            handle: 0u32,
        };
        rooms.add_member("r", 7, ConnId(1), m("a"), None).unwrap();
        let (msgs, to) = rooms.sequence_kept("r", 7, 1, kept(3)).unwrap();
        assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(to.len(), 1);
        // b saw up to 1: it misses 2 and 3, catches up, and is not sent live meanwhile.
        let limits = Recover {
            max_missed: 10,
            max_held: 10,
        };
        let since = Since { epoch: 7, seq: 1 };
        let added = rooms
            .add_member("r", 7, ConnId(2), m("b"), Some((since, limits)))
            .unwrap();
        assert_eq!(added.recovery, Some(Ok(Missed { after: 1, up_to: 3 })));
        let (_, to) = rooms.sequence_kept("r", 7, 4, kept(2)).unwrap();
        assert_eq!(to.iter().map(|m| m.0).collect::<Vec<_>>(), [ConnId(1)]);
        let held = rooms.catchup_take("r", ConnId(2)).unwrap().unwrap();
        assert_eq!(held.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
        // Held while the first held ones were written; then nothing: live.
        let (_, to) = rooms.sequence_kept("r", 7, 6, kept(1)).unwrap();
        assert_eq!(to.len(), 1, "still catching up");
        let held = rooms.catchup_take("r", ConnId(2)).unwrap().unwrap();
        assert_eq!(held.iter().map(|m| m.seq).collect::<Vec<_>>(), [6]);
        assert!(
            rooms
                .catchup_take("r", ConnId(2))
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let (_, to) = rooms.sequence_kept("r", 7, 7, kept(1)).unwrap();
        assert_eq!(to.len(), 2, "live after its catch-up");
        assert!(rooms.catchup_take("r", ConnId(2)).is_none());
        // Nothing missed: live at once. Another epoch: not recovered, live at once.
        let now = Since { epoch: 7, seq: 7 };
        let added = rooms
            .add_member("r", 7, ConnId(3), m("c"), Some((now, limits)))
            .unwrap();
        assert_eq!(added.recovery, Some(Ok(Missed { after: 7, up_to: 7 })));
        let old = Since { epoch: 6, seq: 7 };
        let added = rooms
            .add_member("r", 7, ConnId(4), m("d"), Some((old, limits)))
            .unwrap();
        assert_eq!(added.recovery, Some(Err(NotRecovered::EpochChanged)));
        let (_, to) = rooms.sequence_kept("r", 7, 8, kept(1)).unwrap();
        assert_eq!(to.len(), 4);
    }

    #[test]
    fn a_history_that_does_not_continue_the_room_spoils_catch_ups() {
        let mut rooms = Rooms::<u32>::default();
        let new = NewRoom {
            epoch: 7,
            seq: 5,
            held_from: 1,
            max_members: 10,
            keep: Some(Keep::new(100, None)),
        };
        rooms.create("r", new, None, false).unwrap();
        let m = Member {
            device: Device::new("a", "d"),
            handle: 0u32,
        };
        let limits = Recover {
            max_missed: 10,
            max_held: 10,
        };
        let since = Since { epoch: 7, seq: 2 };
        rooms
            .add_member("r", 7, ConnId(1), m, Some((since, limits)))
            .unwrap();
        // The history was lost: it starts again under another epoch.
        let (msgs, _) = rooms.sequence_kept("r", 9, 1, kept(1)).unwrap();
        assert_eq!((msgs[0].epoch, msgs[0].seq), (9, 1));
        assert_eq!(rooms.info("r").unwrap().epoch, 9);
        assert!(matches!(
            rooms.catchup_take("r", ConnId(1)),
            Some(Err(Overflow))
        ));
        assert!(rooms.catchup_take("r", ConnId(1)).is_none(), "ended");
    }

    #[test]
    fn trims_are_counted_once_and_not_across_epochs() {
        let mut rooms = Rooms::<u32>::default();
        let new = NewRoom {
            epoch: 7,
            seq: 10,
            held_from: 3,
            max_members: 10,
            keep: Some(Keep::new(8, None)),
        };
        rooms.create("r", new, None, false).unwrap();
        assert_eq!(rooms.trimmed_to("r", 7, 4), 1);
        assert_eq!(rooms.trimmed_to("r", 7, 4), 0, "counted once");
        assert_eq!(rooms.trimmed_to("r", 7, 9), 5);
        assert_eq!(
            rooms.trimmed_to("r", 8, 1),
            0,
            "another epoch: a new stream"
        );
        assert_eq!(rooms.trimmed_to("nope", 7, 9), 0);
    }
}
