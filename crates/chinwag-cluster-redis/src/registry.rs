//! The cluster's room registry: rooms made with options on one node
//! ([`RoomRecord`]: password hash, member limit, presence events, history) are recorded in
//! Redis, so that a join on any other node makes the room alike — never without its password.
//!
//! ```text
//! P{room:<name>}:opts   string   the record, written once (SET NX), deleted with the room
//! ```
//!
//! The record's text, one field per line: `v1`, the member limit, presence events (`0`/`1`),
//! what the room keeps (`-`, or `<max_len> <max_age ms or -> <public 0/1>`), the password's
//! Argon2id hash (empty: none; a PHC string holds no newline).

use std::time::Duration;

use chinwag_hub::{Keep, RoomRecord};

/// The record as stored.
pub(crate) fn encode(r: &RoomRecord) -> String {
    let keep = match r.keep {
        None => "-".to_owned(),
        Some(k) => format!(
            "{} {} {}",
            k.max_len,
            k.max_age
                .map_or_else(|| "-".to_owned(), |a| a.as_millis().to_string()),
            u8::from(k.public)
        ),
    };
    format!(
        "v1\n{}\n{}\n{keep}\n{}",
        r.max_members,
        u8::from(r.presence_events),
        r.password_hash.as_deref().unwrap_or("")
    )
}

/// A stored record; `None` when it is not one this crate wrote.
pub(crate) fn decode(s: &str) -> Option<RoomRecord> {
    let mut lines = s.splitn(5, '\n');
    if lines.next()? != "v1" {
        return None;
    }
    let max_members = lines.next()?.parse().ok()?;
    let presence = match lines.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let keep = match lines.next()? {
        "-" => None,
        k => {
            let mut f = k.split(' ');
            let max_len = f.next()?.parse().ok()?;
            let max_age = match f.next()? {
                "-" => None,
                ms => Some(Duration::from_millis(ms.parse().ok()?)),
            };
            let keep = Keep::new(max_len, max_age);
            match f.next()? {
                "0" => Some(keep),
                "1" => Some(keep.readable_by_all()),
                _ => return None,
            }
        }
    };
    let hash = lines.next()?;
    if hash.contains('\n') {
        return None;
    }
    let hash = (!hash.is_empty()).then(|| hash.to_owned());
    Some(RoomRecord::new(hash, max_members, presence, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_text_is_refused() {
        for r in [
            RoomRecord::new(None, 10, false, None),
            RoomRecord::new(
                Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                5_000,
                true,
                Some(Keep::new(100, Some(Duration::from_secs(60))).readable_by_all()),
            ),
            RoomRecord::new(None, 1, true, Some(Keep::new(3, None))),
        ] {
            assert_eq!(decode(&encode(&r)), Some(r.clone()), "{r:?}");
        }
        for bad in [
            "",
            "v2\n1\n0\n-\n",
            "v1\nx\n0\n-\n",
            "v1\n1\n2\n-\n",
            "v1\n1\n0\n5\n",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
