//! Room recovery (issue 17): a member that comes back with `since {epoch, seq}` gets exactly
//! the publications it missed, then the live ones, with no gap and no duplicate across the
//! switch — or is told it did not recover, never a partial recovery presented as complete.
//!
//! The rules, as plain data (the driver reads the history and writes):
//!
//! 1. **Sequenced after they are kept.** In a room with history, a publication gets its `seq`
//!    when the history has it (the driver appends, then sequences under the room shard's lock),
//!    so at a join the room's `seq` is the last publication the history holds.
//! 2. **The decision at the join** ([`decide`]): recoverable when the epoch is the room's, the
//!    member is not ahead of the room, and it missed at most `max_missed`; the member then
//!    catches up on `(since.seq, seq at the join]` from the history.
//! 3. **The catch-up** ([`Catchup`]): from the join on, every publication sequenced in the room
//!    is held for the member (offsets `seq at the join + 1`, consecutive) instead of being sent;
//!    the member is not in the room's fan-out snapshot. The history read must return the missed
//!    range whole and consecutive ([`check_missed`]), or the history lost part of it (trimmed in
//!    between): not recovered. Held publications follow the missed ones, taken and written
//!    in rounds (`Rooms::catchup_take` (`core::catchup`)) until a round finds nothing held: the catch-up ends
//!    there, under the room's lock, so no live publication overtakes a held one. More than
//!    `max_held` held at once is an overflow (the member could not keep up: the driver closes
//!    it, and it recovers on its next connection).

use std::collections::VecDeque;
use std::time::Duration;

use super::identity::Device;
use super::message::Body;

/// What a room keeps of its publications: its last `max_len`, none older than `max_age`; and
/// who may read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keep {
    /// Publications kept (at least 1).
    pub max_len: u64,
    /// None older than this (`None`: no age bound).
    pub max_age: Option<Duration>,
    /// Whether signed-in users that are not members may read it (`history`). Default: members
    /// only.
    pub public: bool,
}

impl Keep {
    /// The last `max_len` publications (at least 1), none older than `max_age`, for members.
    pub fn new(max_len: u64, max_age: Option<Duration>) -> Self {
        Keep {
            max_len: max_len.max(1),
            max_age,
            public: false,
        }
    }

    /// Readable by non-members too (`public`).
    pub fn readable_by_all(mut self) -> Self {
        self.public = true;
        self
    }
}

/// What a room keeps of its publications, as asked when it is made
/// ([`RoomOptions::with_history`](crate::RoomOptions::with_history)). A hub without a history
/// store keeps nothing whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeepHistory {
    /// The hub's default ([`RoomHistory`](crate::RoomHistory)).
    #[default]
    HubDefault,
    /// Nothing: a member that comes back is not recovered.
    Off,
    /// What [`Keep`] says.
    Keep(Keep),
}

/// Where a member says it was: the last publication it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Since {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

/// Why a member did not recover (a metric label and the `reason` of the join's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRecovered {
    /// The room keeps no history.
    NoHistory,
    /// The room's epoch is another: its history was lost or the room was made again.
    EpochChanged,
    /// The member claims publications the room never had (a `seq` past the room's).
    Ahead,
    /// More than the hub recovers at once were missed.
    TooMany,
    /// The history no longer holds all that was missed (trimmed by length or age).
    Trimmed,
    /// The history could not be read.
    Unavailable,
}

impl NotRecovered {
    /// Its name: `no_history`, `epoch_changed`, `ahead`, `too_many`, `trimmed`, `unavailable`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotRecovered::NoHistory => "no_history",
            NotRecovered::EpochChanged => "epoch_changed",
            NotRecovered::Ahead => "ahead",
            NotRecovered::TooMany => "too_many",
            NotRecovered::Trimmed => "trimmed",
            NotRecovered::Unavailable => "unavailable",
        }
    }
}

/// What a join with `since` must do: read `(after, up_to]` from the history (an empty range:
/// nothing was missed), or not recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Missed {
    pub(crate) after: u64,
    pub(crate) up_to: u64,
}

impl Missed {
    /// How many publications were missed.
    pub(crate) fn len(self) -> u64 {
        self.up_to - self.after
    }
}

/// Rule 2: whether a member that saw up to `since` can recover in a room of `epoch` whose last
/// publication is `seq`, `history` telling whether the room keeps one.
pub(crate) fn decide(
    history: bool,
    epoch: u64,
    seq: u64,
    since: Since,
    max_missed: u64,
) -> Result<Missed, NotRecovered> {
    if !history {
        return Err(NotRecovered::NoHistory);
    }
    if since.epoch != epoch {
        return Err(NotRecovered::EpochChanged);
    }
    if since.seq > seq {
        return Err(NotRecovered::Ahead);
    }
    let missed = Missed {
        after: since.seq,
        up_to: seq,
    };
    if missed.len() > max_missed {
        return Err(NotRecovered::TooMany);
    }
    Ok(missed)
}

/// Rule 3, the history's half: `offsets` (what the history returned for `missed`, in order)
/// must be exactly `after + 1 ..= up_to`.
pub(crate) fn check_missed(
    missed: Missed,
    offsets: impl IntoIterator<Item = u64>,
) -> Result<(), NotRecovered> {
    let mut next = missed.after + 1;
    for o in offsets {
        if o != next || o > missed.up_to {
            return Err(NotRecovered::Trimmed);
        }
        next += 1;
    }
    if next == missed.up_to + 1 {
        Ok(())
    } else {
        Err(NotRecovered::Trimmed)
    }
}

/// The catch-up overflowed: more publications came while catching up than may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Rule 3, the live half: the publications sequenced since a member's join, held until it has
/// its missed ones. `E` is the driver's event.
#[derive(Debug)]
pub(crate) struct Catchup<E> {
    /// The room's `seq` at the join: held publications start after it.
    up_to: u64,
    held: VecDeque<(u64, E)>,
    max_held: usize,
    overflow: bool,
}

impl<E> Catchup<E> {
    /// A catch-up from a join at the room's `seq`, holding at most `max_held`.
    pub(crate) fn new(seq_at_join: u64, max_held: usize) -> Self {
        Catchup {
            up_to: seq_at_join,
            held: VecDeque::new(),
            max_held,
            overflow: false,
        }
    }

    /// The room's numbering changed under the member (its history was lost or written by
    /// another): the catch-up cannot be exact.
    pub(crate) fn spoil(&mut self) {
        self.overflow = true;
        self.held.clear();
    }

    /// A publication sequenced `seq` in the room while the member catches up.
    pub(crate) fn hold(&mut self, seq: u64, event: E) {
        let expected = self.held.back().map_or(self.up_to, |(s, _)| *s) + 1;
        if self.overflow || seq != expected || self.held.len() >= self.max_held {
            // Not consecutive (the room's sequence was reset under the member) or too many:
            // either way the member cannot be given an exact stream.
            self.overflow = true;
            self.held.clear();
            return;
        }
        self.held.push_back((seq, event));
    }

    /// The publications held so far, in order, to write (after the missed ones) before the
    /// live ones; later ones are held again until a take finds nothing held.
    pub(crate) fn take(&mut self) -> Result<Vec<E>, Overflow> {
        if self.overflow {
            return Err(Overflow);
        }
        if let Some((last, _)) = self.held.back() {
            self.up_to = *last;
        }
        Ok(self.held.drain(..).map(|(_, e)| e).collect())
    }
}

/// Kept publications to sequence: sender, time sent, body.
pub(crate) type Kept = (Option<Device>, u64, Body);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Since = Since { epoch: 7, seq: 3 };

    #[test]
    fn the_decision_at_the_join() {
        assert_eq!(
            decide(true, 7, 10, S, 100),
            Ok(Missed {
                after: 3,
                up_to: 10
            })
        );
        assert_eq!(decide(true, 7, 3, S, 100).map(Missed::len), Ok(0));
        assert_eq!(decide(false, 7, 10, S, 100), Err(NotRecovered::NoHistory));
        assert_eq!(decide(true, 8, 10, S, 100), Err(NotRecovered::EpochChanged));
        assert_eq!(decide(true, 7, 2, S, 100), Err(NotRecovered::Ahead));
        assert_eq!(decide(true, 7, 103, S, 100).map(Missed::len), Ok(100));
        assert_eq!(decide(true, 7, 104, S, 100), Err(NotRecovered::TooMany));
    }

    #[test]
    fn the_missed_range_must_come_back_whole() {
        let m = Missed { after: 3, up_to: 6 };
        assert_eq!(check_missed(m, [4, 5, 6]), Ok(()));
        assert_eq!(
            check_missed(m, [5, 6]),
            Err(NotRecovered::Trimmed),
            "4 lost"
        );
        assert_eq!(check_missed(m, [4, 6]), Err(NotRecovered::Trimmed));
        assert_eq!(check_missed(m, [4, 5]), Err(NotRecovered::Trimmed));
        assert_eq!(check_missed(m, [4, 5, 6, 7]), Err(NotRecovered::Trimmed));
        let none = Missed { after: 6, up_to: 6 };
        assert_eq!(check_missed(none, []), Ok(()));
    }

    #[test]
    fn held_publications_follow_in_order_and_too_many_overflow() {
        let mut c = Catchup::new(10, 3);
        for s in 11..=13 {
            c.hold(s, s);
        }
        assert_eq!(c.take(), Ok(vec![11, 12, 13]));
        c.hold(14, 14);
        assert_eq!(c.take(), Ok(vec![14]), "held again after a take, in order");
        assert_eq!(c.take(), Ok(vec![]));
        let mut c = Catchup::new(10, 3);
        for s in 11..=14 {
            c.hold(s, s);
        }
        assert_eq!(c.take(), Err(Overflow));
        let mut c = Catchup::new(10, 3);
        c.hold(12, 12);
        assert_eq!(c.take(), Err(Overflow), "11 never came: not exact");
    }

    // The whole switch, over random interleavings: publications (sequenced into the history
    // and the room) and a member that leaves at some seq, is away while others publish, and
    // comes back with `since` at some point while a reader pages through the history. Whatever
    // the interleaving, what the member ends up with is 1..=n exactly (no gap, no duplicate),
    // or the join said it did not recover (then the member has everything after the join's seq
    // exactly).
    proptest! {
        #[test]
        fn a_recovered_member_sees_every_publication_once_in_order(
            before in 0u64..20,
            away in 0u64..40,
            during in 0u64..20,
            keep in 1u64..50,
            max_missed in 1u64..50,
            page in 1usize..8,
            reads_between in proptest::collection::vec(0u64..4, 0..20),
        ) {
            // The history: offsets 1.., keeping the last `keep`.
            let mut history: VecDeque<u64> = VecDeque::new();
            let mut seq = 0u64;
            let publish = |history: &mut VecDeque<u64>, seq: &mut u64| {
                *seq += 1;
                history.push_back(*seq);
                while history.len() as u64 > keep {
                    history.pop_front();
                }
                *seq
            };
            let mut seen: Vec<u64> = Vec::new();
            for _ in 0..before {
                seen.push(publish(&mut history, &mut seq));
            }
            let since = Since { epoch: 1, seq };
            for _ in 0..away {
                publish(&mut history, &mut seq);
            }
            // The join, under the room's lock.
            let decision = decide(true, 1, seq, since, max_missed);
            let mut catchup = Catchup::new(seq, 1_000);
            // The driver pages through the history while others publish.
            let mut got = Vec::new();
            let mut between = reads_between.into_iter();
            let mut published_during = 0;
            let outcome = match decision {
                Ok(missed) => {
                    let mut after = missed.after;
                    loop {
                        let chunk: Vec<u64> = history
                            .iter()
                            .copied()
                            .filter(|o| *o > after && *o <= missed.up_to)
                            .take(page)
                            .collect();
                        let done = chunk.len() < page;
                        after = chunk.last().copied().unwrap_or(after);
                        got.extend(chunk);
                        for _ in 0..between.next().unwrap_or(0) {
                            if published_during < during {
                                published_during += 1;
                                let s = publish(&mut history, &mut seq);
                                catchup.hold(s, s);
                            }
                        }
                        if done || after >= missed.up_to {
                            break;
                        }
                    }
                    check_missed(missed, got.iter().copied())
                }
                Err(e) => Err(e),
            };
            while published_during < during {
                published_during += 1;
                let s = publish(&mut history, &mut seq);
                catchup.hold(s, s);
            }
            let held = catchup.take().expect("1 000 is plenty here");
            if away <= max_missed && away + during <= keep {
                prop_assert!(outcome.is_ok(), "kept and few enough: recovered ({:?})", outcome);
            }
            match outcome {
                Ok(()) => {
                    seen.extend(got);
                    seen.extend(held);
                    let all: Vec<u64> = (1..=seq).collect();
                    prop_assert_eq!(seen, all, "recovered: every publication once, in order");
                }
                Err(_) => {
                    // Not recovered: the member gets what came after the join, exactly.
                    let join_seq = seq - during;
                    let after_join: Vec<u64> = (join_seq + 1..=seq).collect();
                    prop_assert_eq!(held, after_join);
                }
            }
        }
    }
}
