//! Storing a user's run of sends in the offline queue (the pipeline's
//! [`Step::Push`](crate::core::pipeline::Step::Push)): the sends that waited for the user while
//! the previous run was stored go to the queue together with [`Queue::push_many`], in their
//! order: on redb one transaction and one fsync for the run, on Redis one script, so one busy
//! recipient is not held to one fsync per message (issue 21: ~1 000 queued messages/s to one
//! user before, 14 866/s from 1 000 senders after). A queue that keeps the senders'
//! conversations itself (the Redis queue with a history) pushes one at a time, each push with its
//! append.

use std::sync::Arc;
use std::time::Duration;

use chinwag_queue::{Keep, Queue, QueueError};

use super::Inner;
use crate::core::EntryId;
use crate::core::message::{DirectMessage, encode_envelope};
use crate::core::pipeline::Token;

impl Inner {
    /// Queues a run of sends to `user`, in order: all at once ([`Queue::push_many`]: one
    /// commit for the run on a durable queue), or one after the other when the queue keeps the
    /// senders' conversations itself (each push carries its own append).
    pub(super) async fn push_run(
        &self,
        shard: usize,
        user: &str,
        items: &[(Token, Arc<DirectMessage>, Duration)],
    ) -> Vec<Result<(EntryId, Option<Option<u64>>), QueueError>> {
        if self.queue.keeps_history() {
            let mut out = Vec::with_capacity(items.len());
            for (token, msg, ttl) in items {
                out.push(self.push(shard, *token, user, msg, *ttl).await);
            }
            return out;
        }
        let payloads = items
            .iter()
            .map(|(_, msg, ttl)| (encode_envelope(msg), Some(*ttl)))
            .collect();
        let mut pushed = self.queue.push_many(user, payloads).await;
        // A queue that answers fewer items than it was given fails the rest: each sender hears.
        let answered = pushed.len();
        pushed.resize_with(items.len(), || {
            Err(QueueError::backend(format!(
                "the queue answered {answered} of {} pushes",
                items.len()
            )))
        });
        pushed.truncate(items.len());
        pushed.into_iter().map(|r| r.map(|e| (e, None))).collect()
    }

    /// Queues a send's message; a message its sender keeps in its conversation is appended
    /// there with the push by a queue that keeps that history (the Redis queue: in one round
    /// trip), and then its `seq` comes back too.
    async fn push(
        &self,
        shard: usize,
        token: Token,
        user: &str,
        msg: &DirectMessage,
        ttl: Duration,
    ) -> Result<(EntryId, Option<Option<u64>>), QueueError> {
        let payload = encode_envelope(msg);
        // A queue that keeps no history leaves the append to the sender (`send_as`).
        let keep = self.queue.keeps_history()
            && self
                .users(shard)
                .waiters
                .get(&token)
                .is_some_and(|w| w.keep);
        let Some((stream, kept, retention)) = keep.then(|| self.conversation_keep(msg)).flatten()
        else {
            let e = self.queue.push(user, payload, Some(ttl)).await?;
            return Ok((e, None));
        };
        let keep = Keep {
            stream: &stream,
            payload: kept,
            retention,
            new_epoch: self.epoch(),
        };
        let p = self
            .queue
            .push_keeping(user, payload, Some(ttl), keep)
            .await?;
        Ok((p.id, p.kept.map(|r| self.kept_direct(msg, r))))
    }
}
