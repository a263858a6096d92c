//! Questions about who is where: rooms and their members, users' devices (from the directory:
//! the whole cluster), this node's connections.

use std::sync::atomic::Ordering;

use super::Hub;
use super::conn::Conn;
use crate::core::rooms::RoomInfo;
use crate::core::signon::ConnId;
use crate::directory::DirectoryError;
use crate::error::RoomError;

/// A page of room members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MembersPage {
    /// Members: on one node in order of connection id; in a cluster in the directory's order.
    pub members: Vec<Member>,
    /// The cursor for the next page (`None`: this was the last): on one node the last
    /// connection id of the page; in a cluster the directory's cursor (opaque).
    pub next: Option<u64>,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Member {
    /// Its connection (on its node).
    pub conn: ConnId,
    /// The node it is connected to (this hub's [`HubConfig::node`](crate::HubConfig::node)
    /// on one node).
    pub node: u64,
    /// Its user.
    pub user: String,
    /// Its device.
    pub device: String,
}

/// One device of an online user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Presence {
    /// The device id.
    pub device: String,
    /// The node it is connected to.
    pub node: u64,
    /// Its connection there.
    pub conn: ConnId,
}

/// A page of the users online ([`Hub::online_list`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct OnlinePage {
    /// User ids, in byte order.
    pub users: Vec<String>,
    /// Where the next page starts (its `after`): the last user of this page when more follow;
    /// `None`: this was the last.
    pub next: Option<String>,
}

impl Hub {
    /// A room as it is now.
    pub fn room(&self, name: &str) -> Option<RoomInfo> {
        let inner = &self.inner;
        inner.rooms(inner.room_shard(name)).core.info(name)
    }

    /// Every room, sorted by name (at most [`max_page`](crate::HubLimits::max_page)).
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut v: Vec<RoomInfo> = (0..super::SHARDS)
            .flat_map(|s| self.inner.rooms(s).core.infos().collect::<Vec<_>>())
            .collect();
        v.sort_by(|a, b| a.room.cmp(&b.room));
        v.truncate(self.inner.config.limits.max_page.max(1));
        v
    }

    /// A page of `room`'s members after connection `after`, at most `limit` (cut to
    /// [`HubLimits::max_page`](crate::HubLimits::max_page); 0 counts as 1).
    ///
    /// # Errors
    ///
    /// No such room.
    pub fn members(
        &self,
        room: &str,
        after: Option<ConnId>,
        limit: usize,
    ) -> Result<MembersPage, RoomError> {
        let inner = &self.inner;
        let limit = limit.clamp(1, inner.config.limits.max_page.max(1));
        let (page, more) = inner
            .rooms(inner.room_shard(room))
            .core
            .members(room, after, limit)
            .ok_or(RoomError::NoSuchRoom)?;
        let members: Vec<Member> = page
            .into_iter()
            .map(|(conn, d)| Member {
                conn,
                node: inner.config.node.0,
                user: d.user.to_string(),
                device: d.device.to_string(),
            })
            .collect();
        let next = if more {
            members.last().map(|m| m.conn.0)
        } else {
            None
        };
        Ok(MembersPage { members, next })
    }

    /// A page of `room`'s members on **every node** of a cluster (from the directory), or of
    /// this hub's when it is on its own (as [`members`](Self::members)). `after`: the `next` of
    /// the previous page.
    ///
    /// # Errors
    ///
    /// No such room (no member anywhere, and none here); the directory failed (busy).
    pub async fn room_members(
        &self,
        room: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<MembersPage, RoomError> {
        let inner = &self.inner;
        if !inner.clustered() {
            return self.members(room, after.map(ConnId), limit);
        }
        let limit = limit.clamp(1, inner.config.limits.max_page.max(1));
        let page = inner
            .directory
            .room_members(room, after.unwrap_or(0), limit)
            .await
            .map_err(|e| {
                tracing::warn!(room, error = %e, "room members: the cluster's directory failed");
                RoomError::Busy
            })?;
        let Some(p) = page else {
            return self.members(room, after.map(ConnId), limit);
        };
        if p.connections == 0 && self.room(room).is_none() {
            return Err(RoomError::NoSuchRoom);
        }
        let members = p
            .page
            .into_iter()
            .map(|(c, d)| Member {
                conn: c.conn,
                node: c.node.0,
                user: d.user.to_string(),
                device: d.device.to_string(),
            })
            .collect();
        Ok(MembersPage {
            members,
            next: (p.next != 0).then_some(p.next),
        })
    }

    /// How many connections are in `room` on every node of a cluster (this hub's own count on
    /// its own, or when the directory cannot tell).
    pub async fn room_connections(&self, room: &str) -> Option<u64> {
        let local = self.room(room).map(|r| r.members as u64);
        if !self.inner.clustered() {
            return local;
        }
        match self.inner.directory.room_members(room, 0, 0).await {
            Ok(Some(p)) => Some(p.connections),
            _ => local,
        }
    }

    /// The devices `user` is connected with, oldest first (from the directory: every node of a
    /// cluster).
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn devices(&self, user: &str) -> Result<Vec<Presence>, DirectoryError> {
        Ok(self
            .inner
            .directory
            .connections(user)
            .await?
            .into_iter()
            .map(|s| Presence {
                device: s.device.to_string(),
                node: s.conn.node.0,
                conn: s.conn.conn,
            })
            .collect())
    }

    /// Whether `user` has a connection anywhere.
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn is_online(&self, user: &str) -> Result<bool, DirectoryError> {
        Ok(!self.inner.directory.connections(user).await?.is_empty())
    }

    /// How many users are online.
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn online_users(&self) -> Result<u64, DirectoryError> {
        self.inner.directory.online_users().await
    }

    /// A page of the users online (from the directory: on every node of a cluster), in byte
    /// order of the user id: up to `limit` (cut to
    /// [`HubLimits::max_page`](crate::HubLimits::max_page); 0 counts as 1) whose ids come
    /// strictly after `after` (`None`: from the first). `after` need not be online: pass the
    /// page's [`next`](OnlinePage::next) to get the next page. A user with several devices, on
    /// one node or several, is listed once. Users coming or going while a caller pages may be
    /// listed or not; the others are listed exactly once.
    ///
    /// # Errors
    ///
    /// The directory failed.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), chinwag::hub::DirectoryError> {
    /// use chinwag::hub::Hub;
    /// let hub = Hub::builder().build();
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let page = hub.online_list(after.as_deref(), 100).await?;
    ///     for user in &page.users {
    ///         println!("{user} is online");
    ///     }
    ///     match page.next {
    ///         Some(next) => after = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn online_list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OnlinePage, DirectoryError> {
        let limit = limit.clamp(1, self.inner.config.limits.max_page.max(1));
        // One more than asked: whether another page follows.
        let mut users = self
            .inner
            .directory
            .online_page(after, limit.saturating_add(1))
            .await?;
        let next = if users.len() > limit {
            users.truncate(limit);
            users.last().cloned()
        } else {
            None
        };
        Ok(OnlinePage { users, next })
    }

    /// How many connections this node has signed on (those the hub is closing included, until
    /// they are gone).
    pub fn connection_count(&self) -> usize {
        self.inner.attached.load(Ordering::Acquire)
    }

    /// The connections of `user` on this node that the hub is not closing, oldest first.
    pub fn connections_of(&self, user: &str) -> Vec<Conn> {
        let inner = &self.inner;
        inner
            .users(inner.user_shard(user))
            .core
            .recipients(user)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// The names of the rooms `conn` is in.
    pub fn rooms_of(&self, conn: &Conn) -> Vec<String> {
        self.inner
            .users(conn.0.shard)
            .core
            .rooms_of(conn.id())
            .map(|r| r.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }
}
