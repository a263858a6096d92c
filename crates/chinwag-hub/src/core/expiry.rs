//! Token expiry: when a connection must end ([`expiry_at`]) and the deadlines the driver's
//! timer waits for ([`Deadlines`]).

use std::collections::BTreeSet;
use std::time::Duration;

use super::time::Time;

/// When a connection whose token expires at `exp_unix_ms` (unix milliseconds) must end, seen
/// at `now` (the core's clock) when the wall clock reads `now_unix_ms`: at **the later of `exp`
/// and now, plus `grace`**. So a token whose `exp` is already past (inside the authenticator's
/// leeway) still gets the whole grace period to refresh.
pub(crate) fn expiry_at(now: Time, now_unix_ms: u64, exp_unix_ms: u64, grace: Duration) -> Time {
    now + Duration::from_millis(exp_unix_ms.saturating_sub(now_unix_ms)) + grace
}

/// Deadlines of things `K` (connections), earliest first.
#[derive(Debug)]
pub(crate) struct Deadlines<K> {
    set: BTreeSet<(Time, K)>,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            set: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> Deadlines<K> {
    /// Adds `id`'s deadline `at` (an earlier one of the same connection stays until it is due;
    /// the driver checks the connection's current expiry then).
    pub(crate) fn insert(&mut self, at: Time, id: K) {
        self.set.insert((at, id));
    }

    /// Forgets `id`'s deadline `at`.
    pub(crate) fn remove(&mut self, at: Time, id: K) {
        self.set.remove(&(at, id));
    }

    /// Takes the deadlines due at `now`.
    pub(crate) fn due(&mut self, now: Time) -> Vec<(Time, K)> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.set.first() {
            if at > now {
                break;
            }
            self.set.pop_first();
            out.push((at, id));
        }
        out
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.set.first().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::signon::ConnId;

    #[test]
    fn the_later_of_exp_and_now_plus_grace() {
        let now = Time::from_micros(1_000_000);
        let grace = Duration::from_secs(30);
        // exp in 60 s: 60 + 30 s from now.
        assert_eq!(
            expiry_at(now, 100_000, 160_000, grace),
            now + Duration::from_secs(90)
        );
        // exp 10 s ago (inside a leeway): now + grace, not before.
        assert_eq!(expiry_at(now, 100_000, 90_000, grace), now + grace);
    }

    #[test]
    fn deadlines_come_due_in_order() {
        let mut d = Deadlines::default();
        let t = |s| Time::ZERO + Duration::from_secs(s);
        d.insert(t(5), ConnId(2));
        d.insert(t(1), ConnId(1));
        d.insert(t(9), ConnId(3));
        d.remove(t(9), ConnId(3));
        assert_eq!(d.next(), Some(t(1)));
        assert_eq!(d.due(t(4)), [(t(1), ConnId(1))]);
        assert_eq!(d.due(t(5)), [(t(5), ConnId(2))]);
        assert_eq!(d.next(), None);
    }
}
