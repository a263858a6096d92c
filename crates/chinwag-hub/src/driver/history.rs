//! Room history in the driver (issue 17; the rules are `core::recovery`'s): rooms with a
//! history start from their stream's epoch and last offset; their publishes are appended to the
//! history before they are sequenced and handed out (in batches, on the room's fan-out queue, so
//! in order); a join with `since` reads what the member missed, writes it, then what was held
//! for it meanwhile, and only then makes it a live member; `Hub::history` reads pages.

use std::sync::Arc;

use bytes::Bytes;
use chinwag_queue::{Direction, Retention};

use super::conn::Conn;
use super::fanout::{Outgoing, Pending};
use super::{Hub, Inner};
use crate::close::{Close, CloseCode};
use crate::core::message::{Event, RoomMessage, decode_publication, encode_publication};
use crate::core::recovery::{
    Keep, KeepHistory, Kept, Missed, NotRecovered, Overflow, check_missed,
};
use crate::core::rooms::NewRoom;
use crate::error::{HistoryFailure, RoomError};
use crate::metrics as m;

/// Publications read from a history at a time.
const READ_PAGE: u64 = 256;

/// How a join with `since` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether the member got exactly what it missed (then the live publications).
    pub recovered: bool,
    /// Why not: `no_history`, `epoch_changed`, `ahead`, `too_many`, `trimmed`, `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Publications written to it from the history.
    pub missed: u64,
}

impl Recovery {
    /// A join of a room the connection was in already: it has been getting the publications.
    pub(crate) fn already() -> Self {
        Recovery {
            recovered: true,
            reason: None,
            missed: 0,
        }
    }

    pub(crate) fn not(why: NotRecovered) -> Self {
        metrics::counter!(m::RECOVERIES, "outcome" => why.as_str()).increment(1);
        Recovery {
            recovered: false,
            reason: Some(why.as_str()),
            missed: 0,
        }
    }

    pub(crate) fn done(missed: u64) -> Self {
        metrics::counter!(m::RECOVERIES, "outcome" => "recovered").increment(1);
        Recovery {
            recovered: true,
            reason: None,
            missed,
        }
    }
}

/// Where a page of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFrom {
    /// The newest, going back (newest first).
    Newest,
    /// Publications before this `seq`, newest first.
    Before(u64),
    /// Publications after this `seq`, oldest first.
    After(u64),
}

impl HistoryFrom {
    /// The history read it is: the offset to read from and which way.
    pub(crate) fn read_from(self) -> (u64, Direction) {
        match self {
            HistoryFrom::Newest => (u64::MAX, Direction::Backward),
            HistoryFrom::Before(s) => (s, Direction::Backward),
            HistoryFrom::After(s) => (s, Direction::Forward),
        }
    }
}

/// A page of a room's history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The room's epoch.
    pub epoch: u64,
    /// The oldest `seq` the history holds (`last + 1`: none).
    pub first: u64,
    /// The room's last `seq`.
    pub last: u64,
    /// The publications, in the page's order.
    pub publications: Vec<Arc<RoomMessage>>,
}

pub(crate) fn retention(keep: Keep) -> Retention {
    Retention::new(keep.max_len, keep.max_age)
}

impl Inner {
    /// Where a room about to be made starts: its history's epoch and last offset when it keeps
    /// one that has the stream, else a new epoch at 0.
    pub(crate) async fn new_room(
        &self,
        name: &str,
        keep: Option<Keep>,
        max_members: usize,
    ) -> Result<NewRoom, RoomError> {
        let fresh = NewRoom {
            epoch: self.epoch(),
            seq: 0,
            held_from: 1,
            max_members,
            keep,
        };
        let (Some(history), Some(_)) = (&self.history, keep) else {
            return Ok(fresh);
        };
        match history.state(name).await {
            Ok(Some(s)) => Ok(NewRoom {
                epoch: s.epoch,
                seq: s.last,
                held_from: s.first,
                ..fresh
            }),
            Ok(None) => Ok(fresh),
            Err(e) => {
                tracing::warn!(room = name, error = %e, "room history unavailable");
                Err(RoomError::History(HistoryFailure::new(e)))
            }
        }
    }

    /// Appends a batch of one room's publishes to its history, then sequences them with the
    /// history's offsets and hands them out (rule 1 of `core::recovery`). A batch the history
    /// refuses is not published: each publisher gets the error.
    pub(crate) async fn keep_and_send(&self, batch: Vec<Pending>) {
        let (room, keep) = (batch[0].room.clone(), batch[0].keep);
        let Some(history) = self.history.clone() else {
            for p in batch {
                let _ = p.reply.send(Err(RoomError::NoSuchRoom));
            }
            return;
        };
        // A stream the append starts takes the room's epoch when the room has no publication
        // yet (it was made before its stream); a room whose stream went away (swept once all of
        // it aged out) goes on under a new epoch, so no offset is reused within an epoch.
        let shard = self.room_shard(&room);
        let info = self.rooms(shard).core.info(&room);
        let known = info.as_ref().map(|i| (i.epoch, i.seq));
        let Some(epoch) = info.map(|i| if i.seq == 0 { i.epoch } else { self.epoch() }) else {
            for p in batch {
                let _ = p.reply.send(Err(RoomError::NoSuchRoom));
            }
            return;
        };
        let payloads: Vec<Bytes> = batch
            .iter()
            .map(|p| encode_publication(p.from.as_ref(), p.sent_at, &p.body))
            .collect();
        let state = match history
            .append(&room, &payloads, retention(keep), epoch)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "room history refused a publish");
                m::refusal("history");
                let f = HistoryFailure::new(e);
                for p in batch {
                    let _ = p.reply.send(Err(RoomError::History(f.clone())));
                }
                return;
            }
        };
        metrics::counter!(m::HISTORY_APPENDS, "kind" => "room").increment(batch.len() as u64);
        let first = (state.last + 1).saturating_sub(batch.len() as u64);
        if self.config.shared_history
            && let Some((e, seq)) = known
            && let Some(after) = super::remote::lacks_after(e, seq, state.epoch)
            && first > after + 1
        {
            // Other hubs sharing the history published first: their publications go out
            // before these (`driver::remote`).
            self.fill(&room, state.epoch, after, first - 1).await;
        }
        let (kept, replies): (Vec<Kept>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.from, p.sent_at, p.body), p.reply))
            .unzip();
        let (trimmed, sequenced) = {
            let mut rooms = self.rooms(shard);
            let trimmed = rooms.core.trimmed_to(&room, state.epoch, state.first);
            (
                trimmed,
                rooms.core.sequence_kept(&room, state.epoch, first, kept),
            )
        };
        if trimmed > 0 {
            metrics::counter!(m::HISTORY_TRIMMED).increment(trimmed);
        }
        match sequenced {
            Err(_) => {
                for r in replies {
                    let _ = r.send(Err(RoomError::NoSuchRoom));
                }
            }
            Ok((msgs, to)) => {
                for (msg, reply) in msgs.into_iter().zip(replies) {
                    let seq = msg.seq;
                    let counts = self.deliver_all(&to, None, &Outgoing::new(Event::Room(msg)));
                    let _ = reply.send(Ok((seq, counts)));
                }
            }
        }
    }

    /// A join's catch-up (rule 3): the missed publications from the history, then those held
    /// meanwhile, round after round, until the member is live.
    pub(crate) async fn catch_up(
        &self,
        conn: &Conn,
        room: &Arc<str>,
        epoch: u64,
        missed: Missed,
    ) -> Recovery {
        let outcome = match self.read_missed(room, epoch, missed).await {
            Ok(msgs) => {
                let n = msgs.len() as u64;
                for msg in msgs {
                    if !self
                        .send_waiting(conn, &Outgoing::new(Event::Room(msg)))
                        .await
                    {
                        return Recovery::not(NotRecovered::Unavailable);
                    }
                }
                Recovery::done(n)
            }
            Err(why) => Recovery::not(why),
        };
        let shard = self.room_shard(room);
        loop {
            let taken = self.rooms(shard).core.catchup_take(room, conn.id());
            match taken {
                None => break,
                Some(Err(Overflow)) => {
                    m::dropped("catchup_overflow");
                    self.close(
                        conn,
                        Close::new(CloseCode::POLICY, "could not keep up while catching up"),
                    );
                    break;
                }
                Some(Ok(held)) if held.is_empty() => break,
                Some(Ok(held)) => {
                    for msg in held {
                        if !self
                            .send_waiting(conn, &Outgoing::new(Event::Room(msg)))
                            .await
                        {
                            return outcome;
                        }
                    }
                }
            }
        }
        outcome
    }

    /// The publications `(missed.after, missed.up_to]` of `room` under `epoch`, whole.
    pub(crate) async fn read_missed(
        &self,
        room: &Arc<str>,
        epoch: u64,
        missed: Missed,
    ) -> Result<Vec<Arc<RoomMessage>>, NotRecovered> {
        let history = self.history.as_ref().ok_or(NotRecovered::NoHistory)?;
        let mut out = Vec::with_capacity(missed.len() as usize);
        let mut after = missed.after;
        while after < missed.up_to {
            let want = (missed.up_to - after).min(READ_PAGE) as usize;
            let page = history
                .read(room, after, Direction::Forward, want)
                .await
                .map_err(|e| {
                    tracing::warn!(room = %room, error = %e, "room history read failed");
                    NotRecovered::Unavailable
                })?
                .ok_or(NotRecovered::Trimmed)?;
            if page.state.epoch != epoch {
                return Err(NotRecovered::EpochChanged);
            }
            let Some(last) = page.publications.last().map(|p| p.offset) else {
                break;
            };
            for p in page.publications {
                if p.offset > missed.up_to {
                    break;
                }
                let msg = decode_publication(room, epoch, p.offset, p.payload)
                    .ok_or(NotRecovered::Unavailable)?;
                out.push(Arc::new(msg));
            }
            after = last;
        }
        check_missed(missed, out.iter().map(|m| m.seq))?;
        Ok(out)
    }
}

impl Hub {
    /// A page of `room`'s history for `conn`, a member (or anyone signed in, when the room's
    /// history is [`public`](crate::Keep::public)): up to `limit` publications (at most
    /// [`RoomHistory::max_page`](crate::RoomHistory::max_page)) from `from`.
    ///
    /// # Errors
    ///
    /// Not a member (also for a room that does not exist or keeps no history, when `conn` is
    /// not in it: a non-member learns nothing of rooms it may not read), no such room (or it
    /// keeps no history), history unavailable.
    pub async fn history(
        &self,
        conn: &Conn,
        room: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<HistoryPage, RoomError> {
        let inner = &self.inner;
        let member = inner.users(conn.0.shard).core.in_room(conn.id(), room);
        let keep = inner.rooms(inner.room_shard(room)).core.keep_of(room);
        let (Ok(Some(keep)), Some(history)) = (keep, &inner.history) else {
            return Err(if member {
                RoomError::NoSuchRoom
            } else {
                RoomError::NotMember
            });
        };
        if !member && !keep.public {
            return Err(RoomError::NotMember);
        }
        inner.read_history(history, room, from, limit).await
    }
}

impl Inner {
    /// A page of `room`'s history (whoever asks: the callers check).
    pub(super) async fn read_history(
        &self,
        history: &Arc<dyn chinwag_queue::History>,
        room: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<HistoryPage, RoomError> {
        let limit = limit.clamp(1, self.config.history.max_page.max(1));
        let (offset, direction) = from.read_from();
        let page = history
            .read(room, offset, direction, limit)
            .await
            .map_err(|e| RoomError::History(HistoryFailure::new(e)))?
            .ok_or(RoomError::NoSuchRoom)?;
        let name: Arc<str> = Arc::from(room);
        let s = page.state;
        let publications = page
            .publications
            .into_iter()
            .filter_map(|p| decode_publication(&name, s.epoch, p.offset, p.payload).map(Arc::new))
            .collect();
        Ok(HistoryPage {
            epoch: s.epoch,
            first: s.first,
            last: s.last,
            publications,
        })
    }
}

impl Inner {
    /// What a room asked to keep `asked` keeps on this hub (nothing without a history store).
    pub(crate) fn keep_for(&self, asked: KeepHistory) -> Option<Keep> {
        self.history
            .as_ref()
            .and_then(|_| self.config.history.keep(asked))
    }
}

/// A join's catch-up under way: if the join is dropped before it ends, the member would stay
/// out of the room's fan-out with its held publications unwritten, so it is closed instead
/// (it recovers on its next connection).
pub(super) struct CatchingUp<'a> {
    pub(super) inner: &'a Arc<Inner>,
    pub(super) conn: &'a Conn,
    pub(super) room: &'a Arc<str>,
    pub(super) done: bool,
}

impl CatchingUp<'_> {
    pub(super) fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for CatchingUp<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shard = self.inner.room_shard(self.room);
        let ended = self
            .inner
            .rooms(shard)
            .core
            .end_catchup(self.room, self.conn.id());
        if ended {
            self.inner.close(
                self.conn,
                crate::close::Close::new(crate::close::CloseCode::POLICY, "catch-up interrupted"),
            );
        }
    }
}
