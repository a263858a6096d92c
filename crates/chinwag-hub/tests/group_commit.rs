//! Sends to one busy recipient are stored a run at a time: the sends that arrive while the
//! queue stores one run go to it together (`Queue::push_many`), and the redb queue commits
//! such a run once (one fsync), not once per message. Before this, a recipient's sends were
//! pushed one after the other, each waiting for its own fsync (issue 21: ~950 messages/s to
//! one user).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chinwag_hub::{Body, SendOptions};
use chinwag_queue::{BoxFuture, Entry, EntryId, Queue, QueueConfig, QueueError};
use chinwag_queue_redb::RedbQueue;
use common::*;
use tokio::sync::{mpsc, oneshot};

/// A redb queue whose first `push_many` waits for the test's word, and which records how many
/// items each `push_many` carried.
struct Gated {
    inner: RedbQueue,
    runs: Mutex<Vec<usize>>,
    gate: Mutex<Option<oneshot::Receiver<()>>>,
    started: mpsc::UnboundedSender<usize>,
}

impl Queue for Gated {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        self.inner.push(recipient, payload, ttl)
    }

    fn push_many<'a>(
        &'a self,
        recipient: &'a str,
        items: Vec<(Bytes, Option<Duration>)>,
    ) -> BoxFuture<'a, Vec<Result<EntryId, QueueError>>> {
        Box::pin(async move {
            self.runs.lock().unwrap().push(items.len());
            let _ = self.started.send(items.len());
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                gate.await.expect("the test opens the gate");
            }
            self.inner.push_many(recipient, items).await
        })
    }

    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        self.inner.read(recipient, after, max)
    }

    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.ack(recipient, up_to)
    }

    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.len(recipient)
    }

    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.remove(recipient)
    }

    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        self.inner.sweep()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_waiting_for_one_recipient_are_stored_in_one_commit() {
    const WAITING: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let (open, gate) = oneshot::channel();
    let (started, mut runs_started) = mpsc::unbounded_channel();
    let queue = Arc::new(Gated {
        inner: RedbQueue::open(dir.path().join("q.redb"), QueueConfig::default()).unwrap(),
        runs: Mutex::new(Vec::new()),
        gate: Mutex::new(Some(gate)),
        started,
    });
    let hub = hub(config(), Some(queue.clone()));
    let send = |i: usize| hub.send("bob", Body::text(format!("m{i}")), SendOptions::default());

    // The first send's run is being stored (held at the gate)...
    let h = hub.clone();
    let first = tokio::spawn(async move {
        h.send("bob", Body::text("m0"), SendOptions::default())
            .await
    });
    let n = tokio::time::timeout(DEADLINE, runs_started.recv())
        .await
        .expect("the first run reaches the queue")
        .unwrap();
    assert_eq!(n, 1, "the first send is a run of its own");
    // ...while WAITING more sends enter bob's pipeline (a send is in it once first polled).
    let mut waiting = Box::pin(futures_util::future::join_all((1..=WAITING).map(send)));
    assert!(
        futures_util::poll!(&mut waiting).is_pending(),
        "no send is answered before it is stored"
    );
    let before = queue.inner.commits();
    open.send(()).unwrap();

    first.await.unwrap().expect("the first send is queued");
    for (i, r) in waiting.await.into_iter().enumerate() {
        let report = r.unwrap_or_else(|e| panic!("send {}: {e}", i + 1));
        assert!(report.queued, "send {} queued", i + 1);
    }
    assert_eq!(
        *queue.runs.lock().unwrap(),
        [1, WAITING],
        "the sends that waited went to the queue as one run"
    );
    assert_eq!(
        queue.inner.commits() - before,
        2,
        "two runs, two commits (the first one's and the waiting ones')"
    );
    // In the order they were sent.
    let stored = queue.read("bob", 0, 1_000).await.unwrap();
    assert_eq!(stored.len(), WAITING + 1);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
    for (i, e) in stored.iter().enumerate() {
        // The stored envelope ends with the body.
        assert!(
            e.payload.ends_with(format!("m{i}").as_bytes()),
            "entry {i} is send {i}: stored in the order they were sent"
        );
    }
    hub.shutdown(DEADLINE).await;
}
