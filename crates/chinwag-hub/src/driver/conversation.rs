//! Conversation history in the driver (issue 17; the stream and its entries are
//! `core::conversation`'s): a direct message a user sent with a TTL is kept, once the hub has
//! accepted it, in the history of the conversation between sender and recipient; either user
//! reads pages of it from any device ([`Hub::conversation`]).

use std::sync::Arc;

use bytes::Bytes;
use chinwag_queue::{QueueError, Retention, StreamState};

use super::conn::Conn;
use super::history::{HistoryFrom, retention};
use super::{Hub, Inner};
use crate::core::conversation::{self, ConversationEntry, MAX_STREAM_BYTES};
use crate::core::ids;
use crate::core::message::DirectMessage;
use crate::error::{ConversationError, HistoryFailure};
use crate::metrics as m;

// The history store takes the longest conversation stream name.
const _: () = assert!(MAX_STREAM_BYTES <= chinwag_queue::history::MAX_STREAM_LEN);

/// A page of a conversation's history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConversationPage {
    /// The conversation's epoch (a new one when its history was lost or swept away).
    pub epoch: u64,
    /// The oldest `seq` the history holds (`last + 1`: none).
    pub first: u64,
    /// The conversation's last `seq` (0: nothing kept yet).
    pub last: u64,
    /// The messages, in the page's order.
    pub messages: Vec<ConversationEntry>,
}

impl Inner {
    /// Whether a direct message sent `from` a user with TTL `ttl` goes into its conversation's
    /// history (live-only messages do not).
    pub(crate) fn keeps_conversation(&self, from_user: bool, ttl_zero: bool) -> bool {
        from_user
            && !ttl_zero
            && self.history.is_some()
            && self.config.history.conversation().is_some()
    }

    /// The append that keeps `msg` in its conversation's history (for
    /// [`Queue::push_keeping`](chinwag_queue::Queue::push_keeping), or [`keep_direct`](Self::keep_direct)):
    /// `None` when this hub keeps no conversations or the message is from the server.
    pub(crate) fn conversation_keep(
        &self,
        msg: &DirectMessage,
    ) -> Option<(String, Bytes, Retention)> {
        let from = msg.from.as_ref()?;
        let keep = self.config.history.conversation()?;
        self.history.as_ref()?;
        Some((
            conversation::stream(&from.user, &msg.to),
            conversation::encode(msg, from),
            retention(keep),
        ))
    }

    /// Appends an accepted direct message to its conversation's history; its `seq` there. A
    /// store that fails is logged and counted (`chinwag_hub_history_unkept_total`): the message
    /// was delivered, and the send's report says it was not kept (no `seq`).
    pub(crate) async fn keep_direct(&self, msg: Arc<DirectMessage>) -> Option<u64> {
        let (stream, payload, retention) = self.conversation_keep(&msg)?;
        let history = self.history.as_ref()?;
        let r = history
            .append(&stream, &[payload], retention, self.epoch())
            .await;
        self.kept_direct(&msg, r)
    }

    /// Counts (and logs a failure of) an append that kept `msg` in its conversation, made by
    /// [`keep_direct`](Self::keep_direct) or by the queue with its push; its `seq` there.
    pub(crate) fn kept_direct(
        &self,
        msg: &DirectMessage,
        r: Result<StreamState, QueueError>,
    ) -> Option<u64> {
        match r {
            Ok(s) => {
                metrics::counter!(m::HISTORY_APPENDS, "kind" => "conversation").increment(1);
                Some(s.last)
            }
            Err(e) => {
                let from = msg.from.as_ref().map(|d| d.user.as_ref());
                tracing::warn!(from, to = %msg.to, error = %e,
                    "a delivered direct message could not be kept in its conversation");
                metrics::counter!(m::HISTORY_UNKEPT).increment(1);
                None
            }
        }
    }
}

impl Hub {
    /// A page of the conversation between `conn`'s user and `with` (direct messages both ways,
    /// as kept): up to `limit` messages (at most
    /// [`RoomHistory::max_page`](crate::RoomHistory::max_page)) from `from`. A conversation
    /// with nothing kept is an empty page (epoch 0).
    ///
    /// # Errors
    ///
    /// No conversation history on this hub, a bad user id, the store failed.
    pub async fn conversation(
        &self,
        conn: &Conn,
        with: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<ConversationPage, ConversationError> {
        let inner = &self.inner;
        ids::check_user(with).map_err(ConversationError::BadUser)?;
        let (Some(history), Some(_)) = (&inner.history, inner.config.history.conversation()) else {
            return Err(ConversationError::NotKept);
        };
        inner
            .read_conversation(history, &conn.device().user, with, from, limit)
            .await
    }
}

impl Inner {
    /// A page of the conversation between `user` and `with` (whoever asks: the callers check).
    pub(super) async fn read_conversation(
        &self,
        history: &Arc<dyn chinwag_queue::History>,
        user: &str,
        with: &str,
        from: HistoryFrom,
        limit: usize,
    ) -> Result<ConversationPage, ConversationError> {
        let limit = limit.clamp(1, self.config.history.max_page.max(1));
        let (offset, direction) = from.read_from();
        let stream = conversation::stream(user, with);
        let page = history
            .read(&stream, offset, direction, limit)
            .await
            .map_err(|e| ConversationError::History(HistoryFailure::new(e)))?;
        let Some(page) = page else {
            return Ok(ConversationPage {
                epoch: 0,
                first: 1,
                last: 0,
                messages: Vec::new(),
            });
        };
        let s = page.state;
        let messages = page
            .publications
            .into_iter()
            .filter_map(|p| conversation::decode(user, with, p.offset, p.payload))
            .collect();
        Ok(ConversationPage {
            epoch: s.epoch,
            first: s.first,
            last: s.last,
            messages,
        })
    }
}
