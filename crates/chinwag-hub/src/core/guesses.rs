//! Room-password guesses, per connection: at most one verification in flight (so one
//! connection cannot hold the server's Argon2 slots), a rate of guesses, and a strike-out: the
//! connection is closed after `strikes` wrong passwords in its life (a right one does not wipe
//! the count, or a client that knows one room's password could alternate). The rate per client
//! address is a [`KeyedRates`](super::rate::KeyedRates) the driver keeps next to this.

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
}
