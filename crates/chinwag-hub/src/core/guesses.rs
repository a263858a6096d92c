//! Room-password guesses, per connection: at most one verification in flight (so one
//! connection cannot hold the server's Argon2 slots), a rate of guesses, and a strike-out: the
//! connection is closed after `strikes` wrong passwords in its life (a right one does not wipe
//! the count, or a client that knows one room's password could alternate); a client that keeps
//! guessing into refusals (busy, too fast) is closed after `refusals` of them in a row. Per client
//! address: a rate (a [`KeyedRates`](super::rate::KeyedRates) the driver keeps next to this)
//! and [`AddressChecks`], a share of the server's Argon2 slots, so that many connections from
//! one address cannot hold every slot and make everyone else's right password wait.

use std::collections::HashMap;
use std::hash::Hash;

use super::rate::{Bucket, Rate};
use super::time::Time;

/// The rules' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuessLimits {
    /// Password guesses per connection.
    pub(crate) rate: Rate,
    /// Wrong passwords after which the connection is closed.
    pub(crate) strikes: u32,
    /// Refused guesses in a row (busy, too fast) after which the connection is closed: a
    /// client that keeps guessing into refusals costs the server answers and checks nothing.
    pub(crate) refusals: u32,
}

/// One connection's guesses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guesses {
    bucket: Bucket,
    wrong: u32,
    refused: u32,
    in_flight: bool,
}

/// Why a guess may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuessRefusal {
    /// Another guess of this connection is being verified.
    InFlight,
    /// Over the connection's guess rate.
    TooFast,
}

/// A guess refused before it began: why, and whether it is one refusal in a row too many
/// (close the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) why: GuessRefusal,
    pub(crate) close: bool,
}

/// How a begun guess ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its password was verified: right or not.
    Checked(bool),
    /// Refused after it began, for its client's sake (its address's rate or share).
    Refused,
    /// It could not be checked, through no fault of its client (no slot in time, dropped).
    NotChecked,
}

/// What an ended guess means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The right password.
    Right,
    /// A wrong one.
    Wrong,
    /// A wrong one, and one too many: close the connection.
    StrikeOut,
    /// Refused, or not checked.
    Refused,
    /// Refused, one refusal in a row too many: close the connection.
    RefusedClose,
}

impl Guesses {
    /// A guess starts at `now` (its verification runs until [`end`](Self::end)).
    pub(crate) fn begin(&mut self, limits: GuessLimits, now: Time) -> Result<(), Refused> {
        let why = if self.in_flight {
            GuessRefusal::InFlight
        } else if !self.bucket.take(limits.rate, now) {
            GuessRefusal::TooFast
        } else {
            self.in_flight = true;
            return Ok(());
        };
        let close = self.refuse(limits);
        Err(Refused { why, close })
    }

    /// The guess that began has ended.
    pub(crate) fn end(&mut self, limits: GuessLimits, ended: Ended) -> Verdict {
        self.in_flight = false;
        match ended {
            Ended::Checked(right) => {
                self.refused = 0;
                if right {
                    return Verdict::Right;
                }
                self.wrong = self.wrong.saturating_add(1);
                if self.wrong >= limits.strikes.max(1) {
                    Verdict::StrikeOut
                } else {
                    Verdict::Wrong
                }
            }
            Ended::Refused if self.refuse(limits) => Verdict::RefusedClose,
            Ended::Refused | Ended::NotChecked => Verdict::Refused,
        }
    }

    /// One more refusal in a row: whether it is one too many.
    fn refuse(&mut self, limits: GuessLimits) -> bool {
        self.refused = self.refused.saturating_add(1);
        self.refused >= limits.refusals.max(1)
    }

    /// Wrong passwords so far.
    #[cfg(test)]
    pub(crate) fn wrong(&self) -> u32 {
        self.wrong
    }
}

/// Password checks in flight (waiting for a slot or running) per client address: at most
/// `share` each, the half of the server's `slots` (at least one), so one address never holds
/// them all. Only addresses with a check in flight are kept, so the table is as large as the
/// checks in flight (one per connection at most).
#[derive(Debug)]
pub(crate) struct AddressChecks<K> {
    share: u32,
    held: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> AddressChecks<K> {
    /// The shares of `slots` checks at once.
    pub(crate) fn new(slots: usize) -> Self {
        let share = u32::try_from(slots / 2).unwrap_or(u32::MAX).max(1);
        AddressChecks {
            share,
            held: HashMap::new(),
        }
    }

    /// A check of `key` starts, unless `key` holds its share already.
    pub(crate) fn begin(&mut self, key: &K) -> bool {
        let held = self.held.entry(key.clone()).or_insert(0);
        if *held >= self.share {
            return false;
        }
        *held += 1;
        true
    }

    /// A check of `key` that [`begin`](Self::begin) allowed has ended.
    pub(crate) fn end(&mut self, key: &K) {
        if let Some(held) = self.held.get_mut(key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.held.remove(key);
            }
        }
    }

    /// Addresses with a check in flight.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: GuessLimits = GuessLimits {
        rate: Rate::new(1, 2),
        strikes: 3,
        refusals: 4,
    };

    fn refused(why: GuessRefusal, close: bool) -> Result<(), Refused> {
        Err(Refused { why, close })
    }

    #[test]
    fn one_guess_in_flight_per_connection() {
        let mut g = Guesses::default();
        let t = Time::ZERO;
        assert_eq!(g.begin(LIMITS, t), Ok(()));
        assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::InFlight, false));
        assert_eq!(g.end(LIMITS, Ended::Checked(true)), Verdict::Right);
        assert_eq!(g.begin(LIMITS, t), Ok(()), "the burst allows a second");
    }

    #[test]
    fn the_guess_rate_holds_at_its_boundary() {
        let mut g = Guesses::default();
        let t = Time::ZERO;
        for _ in 0..2 {
            assert_eq!(g.begin(LIMITS, t), Ok(()));
            g.end(LIMITS, Ended::Checked(true));
        }
        assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::TooFast, false));
        assert_eq!(g.begin(LIMITS, t + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn strike_out_after_the_nth_wrong_password_and_right_ones_do_not_wipe_it() {
        let mut g = Guesses::default();
        let mut t = Time::ZERO;
        let mut guess = |g: &mut Guesses, right| {
            t = t + Duration::from_secs(1);
            g.begin(LIMITS, t).unwrap();
            g.end(LIMITS, Ended::Checked(right))
        };
        assert_eq!(guess(&mut g, false), Verdict::Wrong);
        assert_eq!(guess(&mut g, true), Verdict::Right);
        assert_eq!(guess(&mut g, false), Verdict::Wrong);
        assert_eq!(guess(&mut g, false), Verdict::StrikeOut);
        assert_eq!(g.wrong(), 3);
        // A check that could not run, or was refused, is no strike.
        let mut h = Guesses::default();
        for ended in [Ended::NotChecked, Ended::Refused] {
            h.begin(LIMITS, t + Duration::from_secs(10)).unwrap();
            assert_eq!(h.end(LIMITS, ended), Verdict::Refused);
        }
        assert_eq!(h.wrong(), 0);
    }

    #[test]
    fn the_nth_refusal_in_a_row_closes_and_a_checked_guess_resets_the_row() {
        let mut g = Guesses::default();
        let t = Time::ZERO;
        // In flight, then refused three times in a row (the 4th would close).
        g.begin(LIMITS, t).unwrap();
        for _ in 0..3 {
            assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::InFlight, false));
        }
        // A checked guess resets the row.
        assert_eq!(g.end(LIMITS, Ended::Checked(false)), Verdict::Wrong);
        assert_eq!(g.begin(LIMITS, t), Ok(()));
        // Refusals of every kind count in one row; the 4th closes.
        assert_eq!(g.end(LIMITS, Ended::Refused), Verdict::Refused);
        assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::TooFast, false));
        assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::TooFast, false));
        assert_eq!(g.begin(LIMITS, t), refused(GuessRefusal::TooFast, true));
        // A guess not checked through no fault of its client is not counted.
        let mut h = Guesses::default();
        for i in 0..10 {
            h.begin(LIMITS, t + Duration::from_secs(100 + i)).unwrap();
            assert_eq!(h.end(LIMITS, Ended::NotChecked), Verdict::Refused);
        }
    }

    #[test]
    fn an_address_holds_at_most_half_the_slots_and_is_forgotten_when_done() {
        let mut a = AddressChecks::new(2);
        assert!(a.begin(&1));
        assert!(!a.begin(&1), "the second slot stays for other addresses");
        assert!(a.begin(&2));
        a.end(&1);
        assert!(a.begin(&1));
        a.end(&1);
        a.end(&2);
        assert_eq!(a.addresses(), 0);
        // Odd counts round down, one at least.
        let mut b = AddressChecks::new(5);
        assert!(b.begin(&1) && b.begin(&1));
        assert!(!b.begin(&1));
        let mut c = AddressChecks::new(1);
        assert!(c.begin(&1));
        assert!(!c.begin(&1));
        assert!(c.begin(&2));
    }
}
