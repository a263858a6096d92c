//! The cluster's list of online users (`P{cluster}:online:list`, a sorted set with every score
//! 0, so ordered by the bytes of the user id) and its counter (`P{cluster}:online`), moved
//! together by `online.lua` after each script that took a user online or offline (see
//! `docs/cluster.md`, "Online users").

use std::sync::LazyLock;

use chinwag_queue_redis::Counted;
use redis::Script;

use crate::ClusterError;
use crate::lease::Keys;

static ONLINE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("online.lua")));

/// The version of the transition that took a user online with its sign-on seq `seq`: even.
pub(crate) fn came_online(seq: u64) -> u64 {
    seq.saturating_mul(2)
}

/// The version of the transition that took a user offline, `n` its last sign-on seq then:
/// odd, above that of the sign-on that took it online, below that of the next one.
pub(crate) fn went_offline(n: u64) -> u64 {
    n.saturating_mul(2).saturating_add(1)
}

/// Applies one transition of `user` (`version` from [`came_online`] or [`went_offline`]) to the
/// list and the counter, unless a newer one was applied already. Returns 1 when the user
/// joined the list, -1 when it left, 0 when nothing changed.
pub(crate) async fn moved(
    conn: &Counted,
    keys: &Keys,
    user: &str,
    version: u64,
) -> Result<i64, ClusterError> {
    Ok(ONLINE
        .key(keys.online())
        .key(keys.online_list())
        .key(keys.online_versions())
        .arg(user)
        .arg(version)
        .invoke_async(&mut conn.clone())
        .await?)
}

/// Up to `limit` users of the list after `after` (strictly), in byte order: one
/// `ZRANGE ... BYLEX ... LIMIT` (Redis 6.2 or later).
pub(crate) async fn page(
    conn: &Counted,
    keys: &Keys,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, ClusterError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut from = Vec::with_capacity(after.map_or(1, |a| a.len() + 1));
    match after {
        // Exclusive: strictly after.
        Some(a) => {
            from.push(b'(');
            from.extend_from_slice(a.as_bytes());
        }
        None => from.push(b'-'),
    }
    let users: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(keys.online_list())
        .arg(from)
        .arg("+")
        .arg("BYLEX")
        .arg("LIMIT")
        .arg(0)
        .arg(limit)
        .query_async(&mut conn.clone())
        .await?;
    users
        .into_iter()
        .map(|u| {
            String::from_utf8(u).map_err(|_| {
                ClusterError::Corrupt("a user id in the online list is not UTF-8".into())
            })
        })
        .collect()
}
