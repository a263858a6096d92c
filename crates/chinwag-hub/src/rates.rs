//! Connection rate per client address: one token bucket (governor) per address, in a table of
//! at most `max_tracked` addresses. A full table refuses *new* addresses only; the ones it
//! tracks keep their own rate. An address idle long enough for its bucket to refill is the same
//! as a fresh one, so it is pruned when the table is full and by the hub's sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateRefusal {
    /// This address connects faster than its rate.
    TooFast,
    /// The table is full of other addresses that are not idle.
    TooManyClients,
}

struct Entry {
    bucket: DefaultDirectRateLimiter,
    last: Instant,
}

pub(crate) struct IpRates {
    quota: Quota,
    /// How long an idle bucket takes to refill completely.
    refill: Duration,
    max_tracked: usize,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl IpRates {
    pub(crate) fn new(quota: Quota, max_tracked: usize) -> Self {
        let refill = quota
            .replenish_interval()
            .saturating_mul(quota.burst_size().get());
        IpRates {
            quota,
            refill,
            max_tracked,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `ip`'s bucket.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), RateRefusal> {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.get_mut(&ip) {
            e.last = now;
            return e.bucket.check().map_err(|_| RateRefusal::TooFast);
        }
        if t.len() >= self.max_tracked {
            let refill = self.refill;
            t.retain(|_, e| now.duration_since(e.last) < refill);
            if t.len() >= self.max_tracked {
                return Err(RateRefusal::TooManyClients);
            }
        }
        let bucket = RateLimiter::direct(self.quota);
        let r = bucket.check().map_err(|_| RateRefusal::TooFast);
        t.insert(ip, Entry { bucket, last: now });
        r
    }

    /// Forgets the addresses whose buckets have refilled.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let refill = self.refill;
        t.retain(|_, e| now.duration_since(e.last) < refill);
        t.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn a_full_table_refuses_new_addresses_only() {
        let q =
            Quota::per_second(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(2).unwrap());
        let r = IpRates::new(q, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(r.check(a), Ok(()));
        assert_eq!(r.check(b), Ok(()));
        assert_eq!(r.check(c), Err(RateRefusal::TooManyClients));
        // Tracked addresses keep their own bucket: a has one token left, then none.
        assert_eq!(r.check(a), Ok(()));
        assert_eq!(r.check(a), Err(RateRefusal::TooFast));
        assert_eq!(r.len(), 2);
    }
}
