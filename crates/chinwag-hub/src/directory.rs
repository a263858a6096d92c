//! The seam between a hub and the rest of a cluster: where users are connected, and the
//! sign-on decision ([`Directory`]). [`LocalDirectory`] is the one-node implementation;
//! `chinwag-cluster-redis`'s `RedisDirectory` implements the same trait so that sign-on policies
//! hold across nodes, closing another node's replaced connections there through
//! [`Hub::close_replaced`](crate::Hub::close_replaced) (see `docs/cluster.md`).

use std::sync::{Arc, Mutex};

use futures_core::future::BoxFuture;

use crate::core::identity::Device;
use crate::core::registry::RoomRecord;
use crate::core::signon::{ConnRef, NodeId, SignOn, SignOnOutcome, SignOnTable, SignedOn};

/// A directory could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Its store (a cluster's Redis) could not be reached or failed; retry later.
    #[error("directory unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This node was declared dead by the others (it paused past its lease): it must not act on
    /// stale sign-on decisions.
    #[error("this node is no longer part of the cluster")]
    Fenced,
}

impl DirectoryError {
    /// Wraps a store's error as [`DirectoryError::Unavailable`].
    pub fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DirectoryError::Unavailable(e.into())
    }
}

/// A room's members on every node of a cluster ([`Directory::room_members`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterMembers {
    /// Connections in the room, on every node.
    pub connections: u64,
    /// Users with at least one connection in the room.
    pub users: u64,
    /// A page of members: each connection and its device.
    pub page: Vec<(ConnRef, Device)>,
    /// Where the next page starts (0: this was the last).
    pub next: u64,
}

impl ClusterMembers {
    /// The counts and a page (for directories).
    pub fn new(connections: u64, users: u64, page: Vec<(ConnRef, Device)>, next: u64) -> Self {
        ClusterMembers {
            connections,
            users,
            page,
            next,
        }
    }
}

/// Where users are connected, and who may stay signed on. The hub asks it at every sign-on and
/// sign-off and for presence; sends and room publishes use the hub's own table of local
/// connections (a cluster routes them to the nodes its directory names).
pub trait Directory: Send + Sync + 'static {
    /// Signs `conn` of `device` on under `policy`; returns its place in sign-on order and the
    /// connections (on any node) it replaces, which the hub then closes.
    fn sign_on<'a>(
        &'a self,
        device: &'a Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> BoxFuture<'a, Result<SignOnOutcome, DirectoryError>>;

    /// `conn` of `user` closed. Returns whether the user now has no connection anywhere.
    fn sign_off<'a>(&'a self, user: &'a str, conn: ConnRef) -> BoxFuture<'a, bool>;

    /// The signed-on connections of `user`, oldest first.
    fn connections<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SignedOn>, DirectoryError>>;

    /// How many users are online.
    fn online_users(&self) -> BoxFuture<'_, Result<u64, DirectoryError>>;

    /// Up to `limit` online users (on any node), in byte order of the user id, whose ids come
    /// strictly after `after` (from the first with `None`; `after` need not be a user online,
    /// or one at all). Paging with the last id of each page lists every user online
    /// throughout once; users coming or going meanwhile may or may not be listed.
    ///
    /// No default: a directory that counts online users must be able to list them (an empty
    /// page would claim that nobody is online).
    fn online_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, DirectoryError>>;

    /// `conn` of `device`, a connection of this node, joined (`true`) or left (`false`)
    /// `room`. A cluster directory lists the room's members cluster-wide
    /// ([`room_members`](Self::room_members)) and follows the room's publications on other
    /// nodes while the node has members there (with
    /// [`HubConfig::shared_history`](crate::HubConfig::shared_history)), and returns from a
    /// join once it does. Default: nothing.
    fn room_member<'a>(
        &'a self,
        room: &'a str,
        conn: ConnRef,
        device: &'a Device,
        joined: bool,
    ) -> BoxFuture<'a, ()> {
        let _ = (room, conn, device, joined);
        Box::pin(async {})
    }

    /// `room`'s members on every node: how many connections and users, and a page of up to
    /// `limit` members from `cursor` (0: the start; the page's `next`, 0 when it was the
    /// last). `Ok(None)`: this directory does not know (one node: the hub's own table).
    /// Default: `Ok(None)`.
    fn room_members<'a>(
        &'a self,
        room: &'a str,
        cursor: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<ClusterMembers>, DirectoryError>> {
        let _ = (room, cursor, limit);
        Box::pin(async { Ok(None) })
    }

    /// `device`, a member on node `node` (this one), joined (`true`) or left `room`, a room with
    /// presence events: a cluster directory tells the other nodes with members there, which
    /// hand it to theirs ([`Hub::presence_elsewhere`](crate::Hub::presence_elsewhere)).
    /// Default: nothing.
    fn room_presence<'a>(
        &'a self,
        room: &'a str,
        node: NodeId,
        device: &'a Device,
        joined: bool,
    ) -> BoxFuture<'a, ()> {
        let _ = (room, node, device, joined);
        Box::pin(async {})
    }

    /// A room made with options ([`Hub::create_room`](crate::Hub::create_room)) on this node:
    /// a cluster directory keeps `record` so that the other nodes make the room alike (with its
    /// password). `Ok(false)`: a room of that name is recorded already. Default: `Ok(true)`,
    /// keeping nothing.
    fn register_room<'a>(
        &'a self,
        room: &'a str,
        record: &'a RoomRecord,
    ) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let _ = (room, record);
        Box::pin(async { Ok(true) })
    }

    /// The record of `room`, if one was made with options on some node. Default: `Ok(None)`.
    fn room_record<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoomRecord>, DirectoryError>> {
        let _ = room;
        Box::pin(async { Ok(None) })
    }

    /// `room` was removed ([`Hub::remove_room`](crate::Hub::remove_room)): its record goes.
    /// Default: nothing.
    fn unregister_room<'a>(&'a self, room: &'a str) -> BoxFuture<'a, ()> {
        let _ = room;
        Box::pin(async {})
    }
}

/// The directory of a hub on its own: a [`SignOnTable`] in memory.
#[derive(Debug, Default)]
pub struct LocalDirectory {
    table: Mutex<SignOnTable>,
}

impl LocalDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, SignOnTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Directory for LocalDirectory {
    fn sign_on<'a>(
        &'a self,
        device: &'a Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> BoxFuture<'a, Result<SignOnOutcome, DirectoryError>> {
        let out = self.table().sign_on(device, conn, policy);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn sign_off<'a>(&'a self, user: &'a str, conn: ConnRef) -> BoxFuture<'a, bool> {
        let gone = self.table().sign_off(user, conn);
        Box::pin(std::future::ready(gone))
    }

    fn connections<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SignedOn>, DirectoryError>> {
        let v = self.table().connections(user).to_vec();
        Box::pin(std::future::ready(Ok(v)))
    }

    fn online_users(&self) -> BoxFuture<'_, Result<u64, DirectoryError>> {
        let n = self.table().online_users() as u64;
        Box::pin(std::future::ready(Ok(n)))
    }

    fn online_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, DirectoryError>> {
        let page = self.table().online_page(after, limit);
        Box::pin(std::future::ready(Ok(page)))
    }
}

/// Shorthand for the hub's default.
pub(crate) fn local() -> Arc<dyn Directory> {
    Arc::new(LocalDirectory::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::signon::{ConnId, NodeId};

    fn conn(n: u64) -> ConnRef {
        ConnRef {
            node: NodeId(0),
            conn: ConnId(n),
        }
    }

    async fn page(d: &LocalDirectory, after: Option<&str>, limit: usize) -> Vec<String> {
        d.online_page(after, limit).await.unwrap()
    }

    #[tokio::test]
    async fn online_pages_are_in_byte_order_and_start_strictly_after() {
        let d = LocalDirectory::new();
        assert!(page(&d, None, 10).await.is_empty(), "nobody online");
        assert!(page(&d, Some("m"), 10).await.is_empty());
        // Byte order: upper case before lower case, UTF-8 after ASCII.
        let mut n = 0;
        for user in ["bob", "Zoe", "ada", "\u{e9}mile", "carl"] {
            n += 1;
            let out = d
                .sign_on(&Device::new(user, "d"), conn(n), SignOn::Multi { max: 2 })
                .await
                .unwrap();
            assert!(out.replaced.is_empty());
        }
        // A user with two devices is listed once.
        d.sign_on(&Device::new("bob", "e"), conn(9), SignOn::Multi { max: 2 })
            .await
            .unwrap();
        let all = ["Zoe", "ada", "bob", "carl", "\u{e9}mile"];
        assert_eq!(page(&d, None, 10).await, all);
        assert_eq!(page(&d, None, 5).await, all, "exactly the limit");
        assert_eq!(page(&d, None, 2).await, ["Zoe", "ada"]);
        assert_eq!(page(&d, Some("ada"), 2).await, ["bob", "carl"]);
        assert_eq!(page(&d, Some("carl"), 2).await, ["\u{e9}mile"]);
        assert!(
            page(&d, Some("\u{e9}mile"), 2).await.is_empty(),
            "after the last"
        );
        // After a name nobody has: from the next one.
        assert_eq!(page(&d, Some("b"), 1).await, ["bob"]);
        assert_eq!(page(&d, Some("bz"), 10).await, ["carl", "\u{e9}mile"]);
        assert!(page(&d, None, 0).await.is_empty(), "limit 0");
        // Gone with the last device only.
        assert!(!d.sign_off("bob", conn(1)).await);
        assert_eq!(page(&d, Some("ada"), 1).await, ["bob"]);
        assert!(d.sign_off("bob", conn(9)).await);
        assert_eq!(page(&d, Some("ada"), 1).await, ["carl"]);
        assert_eq!(d.online_users().await.unwrap(), 4);
    }
}
