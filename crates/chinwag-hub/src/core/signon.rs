//! Sign-on policies ([`SignOn`]) and the table that applies them ([`SignOnTable`]): which of a
//! user's connections a new sign-on replaces. Pure data, no I/O: the
//! [`LocalDirectory`](crate::LocalDirectory) wraps it, and a cluster directory would keep the
//! same decision in a shared store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::identity::Device;

/// How many connections one user may have at once, and which one a new sign-on replaces. The
/// newest sign-on always wins: concurrent logins end with exactly the policy's survivors, the
/// last to sign on among them.
///
/// With the `serde` feature: `"single"`, `"per_device"` or `{ multi = 3 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(
        try_from = "crate::config::SignOnRepr",
        into = "crate::config::SignOnRepr"
    )
)]
#[non_exhaustive]
pub enum SignOn {
    /// One connection per user: a new one closes every older one (with a `bye` and close code
    /// 4003, replaced). tok's default.
    #[default]
    Single,
    /// One connection per device id: a new one closes the older one of the same device.
    PerDevice,
    /// Up to `max` connections per user (at least 1); beyond, the oldest are closed.
    Multi {
        /// The most connections one user keeps.
        max: usize,
    },
}

/// The id of a hub node (0 for a hub on its own). With the `serde` feature: the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct NodeId(pub u64);

/// The id of a connection on its node, unique for the node's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A connection anywhere in a cluster: its node and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// The node it is on.
    pub node: NodeId,
    /// Its id on that node.
    pub conn: ConnId,
}

/// One signed-on connection of a user, as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOn {
    /// The connection.
    pub conn: ConnRef,
    /// Its device id.
    pub device: Arc<str>,
    /// Its place in sign-on order (larger = newer), unique in the table's life.
    pub seq: u64,
}

/// The outcome of a sign-on: its order and the connections it replaces (already removed from
/// the table; the caller closes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOnOutcome {
    /// The new connection's place in sign-on order.
    pub seq: u64,
    /// The older connections the policy replaces.
    pub replaced: Vec<SignedOn>,
}

/// Who is signed on, per user (in byte order of the user id), each user's connections in
/// sign-on order.
#[derive(Debug, Default)]
pub struct SignOnTable {
    users: BTreeMap<Arc<str>, Vec<SignedOn>>,
    next_seq: u64,
}

impl SignOnTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signs `conn` of `device` on under `policy`.
    pub fn sign_on(&mut self, device: &Device, conn: ConnRef, policy: SignOn) -> SignOnOutcome {
        self.next_seq += 1;
        let seq = self.next_seq;
        let list = self.users.entry(device.user.clone()).or_default();
        let replaced = match policy {
            SignOn::Single => std::mem::take(list),
            SignOn::PerDevice => {
                let (gone, keep): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|s| s.device == device.device);
                *list = keep;
                gone
            }
            SignOn::Multi { max } => {
                let max = max.max(1);
                let excess = (list.len() + 1).saturating_sub(max);
                list.drain(..excess).collect()
            }
        };
        super::push_small(
            list,
            SignedOn {
                conn,
                device: device.device.clone(),
                seq,
            },
        );
        SignOnOutcome { seq, replaced }
    }

    /// Removes `conn` of `user`; returns whether the user has no connection left (false when
    /// the connection was not signed on, e.g. it was replaced).
    pub fn sign_off(&mut self, user: &str, conn: ConnRef) -> bool {
        let Some(list) = self.users.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.conn != conn);
        let removed = list.len() != before;
        if list.is_empty() {
            self.users.remove(user);
        }
        removed && !self.users.contains_key(user)
    }

    /// The signed-on connections of `user`, oldest first.
    pub fn connections(&self, user: &str) -> &[SignedOn] {
        self.users.get(user).map_or(&[], |v| v.as_slice())
    }

    /// How many users have at least one connection.
    pub fn online_users(&self) -> usize {
        self.users.len()
    }

    /// Up to `limit` users with at least one connection whose ids come strictly after `after`
    /// (from the first with `None`; `after` need not be online), in byte order of the id.
    pub fn online_page(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.users
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(user, _)| user.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> ConnRef {
        ConnRef {
            node: NodeId(0),
            conn: ConnId(n),
        }
    }

    fn conns(t: &SignOnTable, user: &str) -> Vec<u64> {
        t.connections(user).iter().map(|s| s.conn.conn.0).collect()
    }

    #[test]
    fn single_keeps_only_the_newest() {
        let mut t = SignOnTable::new();
        let a = Device::new("u", "phone");
        let b = Device::new("u", "laptop");
        assert!(t.sign_on(&a, c(1), SignOn::Single).replaced.is_empty());
        let out = t.sign_on(&b, c(2), SignOn::Single);
        assert_eq!(out.replaced.len(), 1);
        assert_eq!(out.replaced[0].conn, c(1));
        assert_eq!(conns(&t, "u"), [2]);
        // Another user is untouched.
        t.sign_on(&Device::new("v", "x"), c(3), SignOn::Single);
        assert_eq!(conns(&t, "u"), [2]);
        assert_eq!(t.online_users(), 2);
    }

    #[test]
    fn per_device_replaces_the_same_device_only() {
        let mut t = SignOnTable::new();
        let phone = Device::new("u", "phone");
        let laptop = Device::new("u", "laptop");
        t.sign_on(&phone, c(1), SignOn::PerDevice);
        t.sign_on(&laptop, c(2), SignOn::PerDevice);
        let out = t.sign_on(&phone, c(3), SignOn::PerDevice);
        assert_eq!(
            out.replaced.iter().map(|s| s.conn).collect::<Vec<_>>(),
            [c(1)]
        );
        assert_eq!(conns(&t, "u"), [2, 3]);
    }

    #[test]
    fn multi_closes_the_oldest_beyond_max() {
        let mut t = SignOnTable::new();
        let d = Device::new("u", "d");
        for n in 1..=3 {
            assert!(
                t.sign_on(&d, c(n), SignOn::Multi { max: 3 })
                    .replaced
                    .is_empty()
            );
        }
        let out = t.sign_on(&d, c(4), SignOn::Multi { max: 3 });
        assert_eq!(
            out.replaced.iter().map(|s| s.conn).collect::<Vec<_>>(),
            [c(1)]
        );
        assert_eq!(conns(&t, "u"), [2, 3, 4]);
        // max 0 behaves as 1.
        let out = t.sign_on(&d, c(5), SignOn::Multi { max: 0 });
        assert_eq!(out.replaced.len(), 3);
        assert_eq!(conns(&t, "u"), [5]);
    }

    #[test]
    fn sign_off_reports_the_user_going_offline() {
        let mut t = SignOnTable::new();
        let d = Device::new("u", "d");
        t.sign_on(&d, c(1), SignOn::Multi { max: 2 });
        t.sign_on(&d, c(2), SignOn::Multi { max: 2 });
        assert!(!t.sign_off("u", c(1)));
        assert!(!t.sign_off("u", c(1)), "twice is harmless");
        assert!(t.sign_off("u", c(2)));
        assert_eq!(t.online_users(), 0);
        assert!(!t.sign_off("nobody", c(9)));
    }

    #[test]
    fn sequence_numbers_order_sign_ons() {
        let mut t = SignOnTable::new();
        let d = Device::new("u", "d");
        let a = t.sign_on(&d, c(1), SignOn::Single).seq;
        let b = t.sign_on(&d, c(2), SignOn::Single).seq;
        assert!(b > a);
    }
}
