//! Acks in batches (`HubConfig::ack_linger`, `HubConfig::max_ack_batch`): acks that arrive
//! together are applied by one `Queue::ack_many` call of at most `max_ack_batch`, each is
//! answered with its own count once its batch is applied (the entries are gone when the
//! client hears back), and a lone ack is applied when the linger ends.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chinwag_hub::auth::BoxFuture;
use chinwag_hub::{Body, SendOptions};
use chinwag_queue::{Entry, EntryId, MemoryQueue, Queue, QueueConfig, QueueError};
use common::*;
use serde_json::json;

/// A memory queue that records the size of each `ack_many` call (and forwards everything).
struct Recorded {
    inner: MemoryQueue,
    batches: Mutex<Vec<usize>>,
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded {
            inner: MemoryQueue::new(QueueConfig::default()),
            batches: Mutex::default(),
        }
    }
}

impl Recorded {
    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

impl Queue for Recorded {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: bytes::Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        self.inner.push(recipient, payload, ttl)
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
    fn ack_many<'a>(
        &'a self,
        acks: &'a [(&'a str, EntryId)],
    ) -> BoxFuture<'a, Result<Vec<u64>, QueueError>> {
        self.batches.lock().unwrap().push(acks.len());
        self.inner.ack_many(acks)
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

/// `n` users, each signed in once with `queued` messages received (not acknowledged yet):
/// their clients and the id of each one's last message.
async fn users_with_messages(
    hub: &chinwag_hub::Hub,
    addr: std::net::SocketAddr,
    n: usize,
    queued: usize,
) -> Vec<(Client, u64)> {
    let mut users = Vec::new();
    for u in 0..n {
        let user = format!("u{u}");
        let mut c = Client::tcp(addr, Some(&token(&user, "phone"))).await;
        let mut last = 0;
        for i in 0..queued {
            hub.send(&user, Body::text(format!("m{i}")), SendOptions::default())
                .await
                .expect("send");
            last = c.note_named("message").await.body["id"]
                .as_u64()
                .expect("id");
        }
        users.push((c, last));
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_that_arrive_together_are_applied_by_one_call_each_at_most_max_ack_batch() {
    let queue = Arc::new(Recorded::default());
    // The linger never ends within the test: batches close only when full.
    let config = config()
        .with_ack_linger(Duration::from_secs(3600))
        .with_max_ack_batch(4);
    let hub = hub(config, Some(queue.clone() as Arc<dyn Queue>));
    let (_door, addr) = chat_tcp(&hub);
    let users = users_with_messages(&hub, addr, 8, 2).await;
    let answers = futures_util::future::join_all(
        users
            .iter()
            .map(|(c, last)| c.req("ack", json!({ "id": last }))),
    )
    .await;
    for (u, a) in answers.into_iter().enumerate() {
        let a = a.expect("ack");
        assert_eq!(a["removed"], 2, "u{u}'s own count: {a}");
        assert_eq!(
            queue.len(&format!("u{u}")).await.unwrap(),
            0,
            "applied when answered"
        );
    }
    assert_eq!(queue.batches(), [4, 4], "two full batches, one call each");
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_ack_is_applied_when_the_linger_ends() {
    let queue = Arc::new(Recorded::default());
    let config = config().with_ack_linger(Duration::from_millis(20));
    let hub = hub(config, Some(queue.clone() as Arc<dyn Queue>));
    let (_door, addr) = chat_tcp(&hub);
    let users = users_with_messages(&hub, addr, 1, 3).await;
    let (c, last) = &users[0];
    let a = c.req("ack", json!({ "id": last })).await.expect("ack");
    assert_eq!(a["removed"], 3);
    assert_eq!(queue.len("u0").await.unwrap(), 0, "applied when answered");
    assert_eq!(queue.batches(), [1]);
    // With no linger it is applied at once, as well.
    hub.shutdown(DEADLINE).await;
    let hub = common::hub(
        config_without_linger(),
        Some(queue.clone() as Arc<dyn Queue>),
    );
    let (_door, addr) = chat_tcp(&hub);
    let users = users_with_messages(&hub, addr, 1, 1).await;
    let a = users[0].0.req("ack", json!({ "id": users[0].1 })).await;
    assert_eq!(a.expect("ack")["removed"], 1);
    assert_eq!(queue.batches(), [1, 1]);
    hub.shutdown(DEADLINE).await;
}

fn config_without_linger() -> chinwag_hub::HubConfig {
    config().with_ack_linger(Duration::ZERO)
}
