//! The core's clock: [`Time`], an instant the driver passes in. The core never reads a clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// An instant, in microseconds since an origin the driver chose (the hub's start). Monotonic
/// as long as the driver's clock is (the driver uses Tokio's, which tests can pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Time(u64);

impl Time {
    /// The origin.
    #[cfg(test)]
    pub(crate) const ZERO: Time = Time(0);

    /// `us` microseconds after the origin.
    #[cfg(test)]
    pub(crate) const fn from_micros(us: u64) -> Time {
        Time(us)
    }

    /// `d` after the origin (saturating).
    pub(crate) fn from_duration(d: Duration) -> Time {
        Time(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Microseconds since the origin.
    pub(crate) const fn as_micros(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is (zero when it is not after).
    pub(crate) fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    /// Saturating: a huge duration is "never" in practice, not an overflow.
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_micros(5);
        assert_eq!(t + Duration::from_micros(3), Time::from_micros(8));
        assert_eq!(t - Duration::from_micros(9), Time::ZERO);
        assert_eq!((t + Duration::MAX).as_micros(), u64::MAX);
        assert_eq!(Time::from_micros(8).since(t), Duration::from_micros(3));
        assert_eq!(t.since(Time::from_micros(8)), Duration::ZERO);
    }
}
