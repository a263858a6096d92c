//! Room-password guesses, per connection: at most one verification in flight (so one
//! connection cannot hold the server's Argon2 slots), a rate of guesses, and a strike-out: the
//! connection is closed after `strikes` wrong passwords in its life (a right one does not wipe
//! the count, or a client that knows one room's password could alternate). Per client
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
}

/// One connection's guesses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guesses {
    bucket: Bucket,
    wrong: u32,
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

/// What a verified guess means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The right password.
    Right,
    /// A wrong one.
    Wrong,
    /// A wrong one, and one too many: close the connection.
    StrikeOut,
}

impl Guesses {
    /// A guess starts at `now` (its verification runs until [`end`](Self::end)).
    pub(crate) fn begin(&mut self, limits: GuessLimits, now: Time) -> Result<(), GuessRefusal> {
        if self.in_flight {
            return Err(GuessRefusal::InFlight);
        }
        if !self.bucket.take(limits.rate, now) {
            return Err(GuessRefusal::TooFast);
        }
        self.in_flight = true;
        Ok(())
    }

    /// The guess was verified (`right`), or given up (`None`: the check could not run).
    pub(crate) fn end(&mut self, limits: GuessLimits, right: Option<bool>) -> Verdict {
        self.in_flight = false;
        match right {
            Some(true) => Verdict::Right,
            None => Verdict::Wrong,
            Some(false) => {
                self.wrong = self.wrong.saturating_add(1);
                if self.wrong >= limits.strikes.max(1) {
                    Verdict::StrikeOut
                } else {
                    Verdict::Wrong
                }
            }
        }
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
    };

    #[test]
    fn one_guess_in_flight_per_connection() {
        let mut g = Guesses::default();
        let t = Time::ZERO;
        assert_eq!(g.begin(LIMITS, t), Ok(()));
        assert_eq!(g.begin(LIMITS, t), Err(GuessRefusal::InFlight));
        assert_eq!(g.end(LIMITS, Some(true)), Verdict::Right);
        assert_eq!(g.begin(LIMITS, t), Ok(()), "the burst allows a second");
    }

    #[test]
    fn the_guess_rate_holds_at_its_boundary() {
        let mut g = Guesses::default();
        let t = Time::ZERO;
        for _ in 0..2 {
            assert_eq!(g.begin(LIMITS, t), Ok(()));
            g.end(LIMITS, Some(true));
        }
        assert_eq!(g.begin(LIMITS, t), Err(GuessRefusal::TooFast));
        assert_eq!(g.begin(LIMITS, t + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn strike_out_after_the_nth_wrong_password_and_right_ones_do_not_wipe_it() {
        let mut g = Guesses::default();
        let mut t = Time::ZERO;
        let mut guess = |g: &mut Guesses, right| {
            t = t + Duration::from_secs(1);
            g.begin(LIMITS, t).unwrap();
            g.end(LIMITS, Some(right))
        };
        assert_eq!(guess(&mut g, false), Verdict::Wrong);
        assert_eq!(guess(&mut g, true), Verdict::Right);
        assert_eq!(guess(&mut g, false), Verdict::Wrong);
        assert_eq!(guess(&mut g, false), Verdict::StrikeOut);
        assert_eq!(g.wrong(), 3);
        // A check that could not run is no strike.
        let mut h = Guesses::default();
        h.begin(LIMITS, Time::ZERO).unwrap();
        assert_eq!(h.end(LIMITS, None), Verdict::Wrong);
        assert_eq!(h.wrong(), 0);
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
