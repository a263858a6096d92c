//! Acknowledgements applied in batches (group commit): every ack of the hub (a client's
//! [`Hub::ack`](crate::Hub::ack), and the hub's own for doors that cannot acknowledge) goes
//! through one task, which gathers what arrives within
//! [`ack_linger`](crate::HubConfig::ack_linger) of the first (at most
//! [`max_ack_batch`](crate::HubConfig::max_ack_batch)) and applies them with one
//! [`Queue::ack_many`](chinwag_queue::Queue::ack_many) call: on Redis one script, one round trip
//! for the batch; on redb one transaction. Each ack is answered once its batch is applied, so
//! "an ack is applied when it is answered" holds; what the linger costs is the answer's delay.
//! The hub's own acks (of what it wrote to clients that cannot acknowledge) are handed over
//! without waiting, so a user's pipeline never waits for a linger.
//! The channel to the task is bounded ([`ACK_CHANNEL`]): past it, acks wait for room. After
//! the hub stops, the task applies what it had and acks go to the queue directly.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chinwag_queue::{EntryId, QueueError};
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::metrics as m;

/// Acks waiting for the batching task, at most.
pub(crate) const ACK_CHANNEL: usize = 4096;

/// One ack for the batching task.
pub(crate) struct AckRequest {
    user: Arc<str>,
    upto: EntryId,
    /// Who waits for it (`None`: the hub's own ack, which nobody waits for).
    done: Option<oneshot::Sender<Result<u64, QueueError>>>,
}

/// The channel to the batching task, and its receiving end (for [`ack_loop`]).
pub(crate) fn channel() -> (mpsc::Sender<AckRequest>, mpsc::Receiver<AckRequest>) {
    mpsc::channel(ACK_CHANNEL)
}

impl Inner {
    /// Removes `user`'s queue entries up to `upto` in the hub's next batch of acks; how many
    /// it removed. Fair shares and metrics follow.
    pub(crate) async fn ack_queue(
        &self,
        user: &Arc<str>,
        upto: EntryId,
    ) -> Result<u64, QueueError> {
        let (done, rx) = oneshot::channel();
        let req = AckRequest {
            user: user.clone(),
            upto,
            done: Some(done),
        };
        if self.acks.send(req).await.is_err() {
            // The hub stopped: straight to the queue.
            let n = self.queue.ack(user, upto).await?;
            self.acked(user, upto, n);
            return Ok(n);
        }
        rx.await.unwrap_or_else(|_| {
            Err(QueueError::backend(
                "the hub stopped before the ack was applied",
            ))
        })
    }

    /// Hands the hub's own ack of what it wrote to clients that cannot acknowledge to the
    /// batching task, without waiting for it to be applied (the user's pipeline goes on; a
    /// failure is logged). Acks of one pipeline keep their order.
    pub(crate) async fn ack_written(&self, user: &Arc<str>, upto: EntryId) {
        let req = AckRequest {
            user: user.clone(),
            upto,
            done: None,
        };
        if self.acks.send(req).await.is_err() {
            // The hub stopped: straight to the queue.
            match self.queue.ack(user, upto).await {
                Ok(n) => self.acked(user, upto, n),
                Err(e) => tracing::warn!(%user, error = %e, "offline queue ack failed"),
            }
        }
    }

    fn acked(&self, user: &str, upto: EntryId, n: u64) {
        self.shares(|s| s.acked(user, upto));
        metrics::counter!(m::ACKED).increment(n);
    }

    /// Applies `batch` with one queue call and answers each ack.
    async fn apply_acks(&self, batch: &mut Vec<AckRequest>) {
        metrics::histogram!(m::ACK_BATCH).record(batch.len() as f64);
        let pairs: Vec<(&str, EntryId)> = batch.iter().map(|r| (&*r.user, r.upto)).collect();
        let r = self.queue.ack_many(&pairs).await;
        drop(pairs);
        match r {
            Ok(counts) if counts.len() == batch.len() => {
                for (req, n) in batch.drain(..).zip(counts) {
                    self.acked(&req.user, req.upto, n);
                    if let Some(done) = req.done {
                        let _ = done.send(Ok(n));
                    }
                }
            }
            Ok(_) => fail(
                batch,
                &QueueError::backend("ack_many: one count per ack expected"),
            ),
            Err(e) => fail(batch, &e),
        }
    }
}

fn fail(batch: &mut Vec<AckRequest>, e: &QueueError) {
    for req in batch.drain(..) {
        match req.done {
            Some(done) => {
                let _ = done.send(Err(QueueError::backend(e.to_string())));
            }
            None => {
                tracing::warn!(user = %req.user, error = %e, "offline queue ack failed");
            }
        }
    }
}

/// The batching task: runs until the hub stops (then applies what it holds) or is dropped.
pub(crate) async fn ack_loop(inner: Weak<Inner>, mut rx: mpsc::Receiver<AckRequest>) {
    let (linger, max, stop) = match inner.upgrade() {
        Some(h) => (
            h.config.ack_linger,
            h.config.max_ack_batch.max(1),
            h.stop.clone(),
        ),
        None => return,
    };
    let mut batch = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        batch.push(first);
        gather(&mut rx, &mut batch, max, linger).await;
        let Some(hub) = inner.upgrade() else { return };
        hub.apply_acks(&mut batch).await;
    }
    // Stopping: what was sent before still gets applied; later acks go to the queue directly.
    rx.close();
    while let Some(r) = rx.recv().await {
        batch.push(r);
        if batch.len() == max {
            let Some(hub) = inner.upgrade() else { return };
            hub.apply_acks(&mut batch).await;
        }
    }
    if let (false, Some(hub)) = (batch.is_empty(), inner.upgrade()) {
        hub.apply_acks(&mut batch).await;
    }
}

/// Adds to `batch` what arrives within `linger` (none: only what is waiting), up to `max`.
async fn gather(
    rx: &mut mpsc::Receiver<AckRequest>,
    batch: &mut Vec<AckRequest>,
    max: usize,
    linger: Duration,
) {
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(r) => batch.push(r),
                        None => return,
                    },
                    () = tokio::time::sleep_until(deadline) => return,
                }
            }
        }
    }
}
