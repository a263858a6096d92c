//! Rate limits on the core's clock: [`Rate`], one [`Bucket`] per limited thing (a connection's
//! messages, its password guesses), and [`KeyedRates`], a bounded table of buckets per key (a
//! client address). GCRA ("generic cell rate algorithm"): a bucket is one instant, the
//! theoretical arrival time of the next unit, so it costs 8 bytes and no timer; time is passed
//! in, so tests drive it with a manual clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use super::time::Time;

/// A token bucket: `per_second` on average, bursts of up to `burst`. With the `serde`
/// feature: `{ per_second = 50, burst = 200 }` (both fields required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Rate {
    /// Sustained rate (values below 1 act as 1).
    pub per_second: u32,
    /// Largest burst (values below 1 act as 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, bursts of `burst`.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Rate { per_second, burst }
    }

    /// The time one unit takes to come back.
    fn interval(self) -> Duration {
        Duration::from_micros(1_000_000 / u64::from(self.per_second.max(1)))
    }

    /// How far ahead of now the bucket may run: `burst - 1` intervals.
    fn tolerance(self) -> Duration {
        self.interval() * (self.burst.max(1) - 1)
    }
}

/// One limited thing's bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// When the next unit is due if the bucket were drained at its rate.
    tat: Time,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new() -> Self {
        Bucket::default()
    }

    /// Takes one unit at `now`; false (and nothing taken) when the bucket is empty.
    pub(crate) fn take(&mut self, rate: Rate, now: Time) -> bool {
        let tat = self.tat.max(now);
        if tat.since(now) > rate.tolerance() {
            return false;
        }
        self.tat = tat + rate.interval();
        true
    }

    /// Whether the bucket is full at `now` (a full bucket is the same as a fresh one).
    pub(crate) fn is_full(&self, now: Time) -> bool {
        self.tat <= now
    }
}

/// Why [`KeyedRates::take`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyedRefusal {
    /// This key is faster than its rate.
    TooFast,
    /// The table is full of other keys that are not idle.
    TooManyKeys,
}

/// Buckets per key (e.g. a client address), at most `max_keys` of them. A full table refuses
/// *new* keys only; the keys it tracks keep their own rate. A key whose bucket has refilled is
/// the same as an unknown one, so it is forgotten when the table is full and by
/// [`prune`](Self::prune).
#[derive(Debug)]
pub(crate) struct KeyedRates<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> KeyedRates<K> {
    pub(crate) fn new(rate: Rate, max_keys: usize) -> Self {
        KeyedRates {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one unit of `key`'s bucket at `now`.
    pub(crate) fn take(&mut self, key: &K, now: Time) -> Result<(), KeyedRefusal> {
        let rate = self.rate;
        if let Some(b) = self.buckets.get_mut(key) {
            return if b.take(rate, now) {
                Ok(())
            } else {
                Err(KeyedRefusal::TooFast)
            };
        }
        if self.buckets.len() >= self.max_keys {
            self.prune(now);
            if self.buckets.len() >= self.max_keys {
                return Err(KeyedRefusal::TooManyKeys);
            }
        }
        let mut b = Bucket::new();
        let ok = b.take(rate, now);
        self.buckets.insert(key.clone(), b);
        if ok {
            Ok(())
        } else {
            Err(KeyedRefusal::TooFast)
        }
    }

    /// Forgets the keys whose buckets are full again.
    pub(crate) fn prune(&mut self, now: Time) {
        self.buckets.retain(|_, b| !b.is_full(now));
        if self.buckets.capacity() > 2 * self.buckets.len() + 64 {
            self.buckets.shrink_to_fit();
        }
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let rate = Rate::new(10, 3); // one per 100 ms, bursts of 3
        let mut b = Bucket::new();
        let t0 = Time::from_micros(1_000_000);
        assert!(b.take(rate, t0));
        assert!(b.take(rate, t0));
        assert!(b.take(rate, t0));
        assert!(!b.take(rate, t0), "the fourth of a burst of 3 is refused");
        assert!(!b.take(rate, t0 + 99 * MS), "not yet a unit back");
        assert!(b.take(rate, t0 + 100 * MS), "one unit back after 100 ms");
        assert!(!b.take(rate, t0 + 100 * MS));
        // Idle for the refill time: a whole burst again, and the bucket counts as full.
        let later = t0 + 400 * MS;
        assert!(b.is_full(later));
        for _ in 0..3 {
            assert!(b.take(rate, later));
        }
        assert!(!b.take(rate, later));
    }

    #[test]
    fn a_refusal_takes_nothing() {
        let rate = Rate::new(1, 1);
        let mut b = Bucket::new();
        let t = Time::from_micros(10);
        assert!(b.take(rate, t));
        for _ in 0..100 {
            assert!(!b.take(rate, t));
        }
        assert!(b.take(rate, t + Duration::from_secs(1)));
    }

    #[test]
    fn zero_rates_act_as_one() {
        let rate = Rate::new(0, 0);
        let mut b = Bucket::new();
        assert!(b.take(rate, Time::ZERO));
        assert!(!b.take(rate, Time::ZERO));
        assert!(b.take(rate, Time::ZERO + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_table_refuses_new_keys_only() {
        let mut r = KeyedRates::new(Rate::new(1, 2), 2);
        let t = Time::from_micros(5);
        assert_eq!(r.take(&"a", t), Ok(()));
        assert_eq!(r.take(&"b", t), Ok(()));
        assert_eq!(r.take(&"c", t), Err(KeyedRefusal::TooManyKeys));
        // Tracked keys keep their own bucket: a has one unit left, then none.
        assert_eq!(r.take(&"a", t), Ok(()));
        assert_eq!(r.take(&"a", t), Err(KeyedRefusal::TooFast));
        assert_eq!(r.len(), 2);
        // Once a and b have refilled (2 s), c gets in and the idle ones are forgotten.
        let later = t + Duration::from_secs(2);
        assert_eq!(r.take(&"c", later), Ok(()));
        assert_eq!(r.len(), 1);
    }
}
