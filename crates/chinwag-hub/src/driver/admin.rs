//! What the server itself may do that no connection may: change a room's settings, read any
//! room's history and any conversation (the server API's operations).

use std::sync::Arc;

use super::Hub;
use super::conversation::ConversationPage;
use super::history::{HistoryFrom, HistoryPage};
use crate::core::ids;
use crate::core::rooms::{RoomChanges, RoomInfo, RoomRefusal};
use crate::error::{ConversationError, RoomError};

impl Hub {
    /// Changes `name`'s settings: its password (set or removed; hashed with Argon2id off the
    /// async threads), presence events, member limit (cut to the hub's). Members stay; the
    /// new settings apply to joins from now on. A changed room is kept when empty, like one
    /// made by [`create_room`](Self::create_room). In a cluster the change applies to this
    /// node's room (the cluster's room registry keeps the options the room was created with).
    ///
    /// ```
    /// use chinwag::hub::{Hub, RoomChanges, RoomOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder().build();
    /// hub.create_room("team", RoomOptions::new()).await.unwrap();
    /// let info = hub
    ///     .change_room("team", RoomChanges::new().with_password(Some("s3cret")))
    ///     .await
    ///     .unwrap();
    /// assert!(info.protected);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Bad name, no such room, password too long.
    pub async fn change_room(
        &self,
        name: &str,
        changes: RoomChanges,
    ) -> Result<RoomInfo, RoomError> {
        let inner = &self.inner;
        let limits = &inner.config.limits;
        ids::check_room(name, limits.max_room_name_bytes).map_err(RoomError::BadName)?;
        let password = match changes.password {
            None => None,
            Some(None) => Some(None),
            Some(Some(p)) if p.len() > limits.max_password_bytes => {
                return Err(RoomError::BadPassword);
            }
            Some(Some(p)) => {
                let h = tokio::task::spawn_blocking(move || super::passwords::hash_password(&p))
                    .await
                    .map_err(|_| RoomError::Busy)?
                    .map_err(|_| RoomError::BadPassword)?;
                Some(Some(Arc::from(h)))
            }
        };
        let max = changes
            .max_members
            .map(|m| m.min(limits.max_members_per_room));
        let info = inner
            .rooms(inner.room_shard(name))
            .core
            .change(name, password, changes.presence_events, max)
            .map_err(|e| match e {
                RoomRefusal::NoSuchRoom | RoomRefusal::Exists | RoomRefusal::Full => {
                    RoomError::NoSuchRoom
                }
            })?;
        inner.changed();
        Ok(info)
    }

    /// A page of `room`'s history as the server sees it (no membership asked): up to `limit`
    /// publications (at most [`RoomHistory::max_page`](crate::RoomHistory::max_page)) from
    /// `from`. [`history`](Self::history) is the same for a member.
    ///
    /// # Errors
    ///
    /// No such room (or it keeps no history), history unavailable.
    pub async fn room_history(
        &self,
        room: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<HistoryPage, RoomError> {
        let inner = &self.inner;
        let keep = inner.rooms(inner.room_shard(room)).core.keep_of(room);
        let (Ok(Some(_)), Some(history)) = (keep, &inner.history) else {
            return Err(RoomError::NoSuchRoom);
        };
        inner.read_history(history, room, from, limit).await
    }

    /// A page of the conversation between users `a` and `b` as the server sees it:
    /// [`conversation`](Self::conversation) for any two users (messages carry their sender).
    ///
    /// # Errors
    ///
    /// No conversation history on this hub, a bad user id, the store failed.
    pub async fn conversation_between(
        &self,
        a: &str,
        b: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<ConversationPage, ConversationError> {
        let inner = &self.inner;
        ids::check_user(a).map_err(ConversationError::BadUser)?;
        ids::check_user(b).map_err(ConversationError::BadUser)?;
        let (Some(history), Some(_)) = (&inner.history, inner.config.history.conversation()) else {
            return Err(ConversationError::NotKept);
        };
        inner.read_conversation(history, a, b, from, limit).await
    }
}

impl Hub {
    /// How many rooms this node has (made by [`create_room`](Self::create_room) or by joins).
    pub fn room_count(&self) -> usize {
        self.inner
            .room_count
            .load(std::sync::atomic::Ordering::Acquire)
    }
}
