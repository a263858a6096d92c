//! Durations in configuration files (feature `serde`): one format for every chinwag
//! configuration type, a whole number and a unit — `250us`, `500ms`, `10s`, `5m`, `2h`, `7d`
//! (`0` alone is zero). Printed with the largest unit that divides the value exactly, so
//! `120s` reads back as `2m` and every value round-trips.
//!
//! Use it with `#[serde(with = "chinwag_transport::duration")]` on a [`Duration`] field, and
//! [`option`] on an `Option<Duration>` whose `None` means "off": written `"off"` (a zero
//! duration reads as `None` too, since no such setting means anything at zero).
//!
//! ```
//! use std::time::Duration;
//! use chinwag::transport::duration;
//! assert_eq!(duration::parse("7d").unwrap(), Duration::from_secs(7 * 86_400));
//! assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
//! assert_eq!(duration::format(Duration::from_secs(120)), "2m");
//! assert!(duration::parse("10").is_err());
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Units, largest first: (suffix, nanoseconds).
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Parses a whole number and a unit: `ns`, `us`, `ms`, `s`, `m`, `h` or `d` (`0` alone is
/// zero).
///
/// # Errors
///
/// No unit, an unknown unit, a number that is not whole, or one too large; the message
/// names the value and the units.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit (ms, s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u128 = n.parse().map_err(|_| {
        format!("`{s}` is not a duration (a whole number and a unit: 500ms, 10s, 5m, 2h, 7d)")
    })?;
    let (_, size) = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(|| format!("`{s}`: unknown unit `{unit}` (ms, s, m, h, d)"))?;
    let nanos = n
        .checked_mul(*size)
        .ok_or_else(|| format!("`{s}` is too long"))?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("`{s}` is too long"))?;
    // The remainder is below 10^9, so it fits.
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes `d` with the largest unit that divides it exactly (`0` for zero).
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0".to_owned();
    }
    let (unit, size) = UNITS
        .iter()
        .find(|(_, size)| nanos.is_multiple_of(*size))
        .unwrap_or(&("ns", 1));
    format!("{}{unit}", nanos / size)
}

/// Serializes a [`Duration`] as [`format`] writes it.
///
/// # Errors
///
/// Those of the serializer.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Deserializes a [`Duration`] from a string [`parse`] accepts.
///
/// # Errors
///
/// Not a string, or not a duration.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// An `Option<Duration>` whose `None` means "off": written `"off"`; `"off"`, `"none"` and a
/// zero duration read as `None`.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// What `None` is written as.
    pub const OFF: &str = "off";

    /// Serializes `None` as `"off"`, a duration as [`format`](super::format) writes it.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            None => s.serialize_str(OFF),
            Some(d) => super::serialize(d, s),
        }
    }

    /// Deserializes `"off"` (or `"none"`, or a zero duration) as `None`, any other duration
    /// as `Some`.
    ///
    /// # Errors
    ///
    /// Not a string, or neither `off` nor a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().eq_ignore_ascii_case(OFF) || s.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let d = super::parse(&s).map_err(|e| serde::de::Error::custom(format!("{e}, or `off`")))?;
        Ok((!d.is_zero()).then_some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        for s in [
            "0", "1ns", "250us", "500ms", "10s", "5m", "2h", "7d", "1500ms", "90s",
        ] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(format(parse("120s").unwrap()), "2m");
        assert_eq!(format(parse("24h").unwrap()), "1d");
        assert_eq!(parse(" 10s ").unwrap(), Duration::from_secs(10));
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1.5s",
            "10 s",
            "99999999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format(Duration::new(3, 1)),
            "3000000001ns",
            "exact, whatever the value"
        );
    }
}
