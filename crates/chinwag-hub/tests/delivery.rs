//! Send-to-user with the offline queue, on all three backends (memory, redb, Redis), through
//! the chat door over real TCP: offline messages are queued, replayed in order before live
//! ones, removed only when acknowledged; a connection killed mid-replay gets the rest (and the
//! unacknowledged ones again) on reconnect; a message whose TTL passed is never delivered.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chinwag_queue::{ManualClock, MemoryQueue, Queue, QueueConfig};
use chinwag_queue_redb::RedbQueue;
use chinwag_queue_redis::{RedisOptions, RedisQueue};
use common::*;
use serde_json::json;

/// A queue backend under test, its clock, and what keeps it alive.
struct Backend {
    queue: Arc<dyn Queue>,
    clock: Arc<ManualClock>,
    _keep: Box<dyn std::any::Any + Send>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn memory() -> Backend {
    let clock = Arc::new(ManualClock::new(now_ms()));
    Backend {
        queue: Arc::new(MemoryQueue::with_clock(
            QueueConfig::default(),
            clock.clone(),
        )),
        clock,
        _keep: Box::new(()),
    }
}

async fn redb() -> Backend {
    let clock = Arc::new(ManualClock::new(now_ms()));
    let dir = tempfile::tempdir().unwrap();
    let q = RedbQueue::open_with_clock(
        dir.path().join("q.redb"),
        QueueConfig::default(),
        clock.clone(),
    )
    .unwrap();
    Backend {
        queue: Arc::new(q),
        clock,
        _keep: Box::new(dir),
    }
}

async fn redis() -> Backend {
    let clock = Arc::new(ManualClock::new(now_ms()));
    let server = RedisServer::start();
    let q = RedisQueue::connect_with(
        &server.url(),
        QueueConfig::default(),
        RedisOptions::default().clock(clock.clone()),
    )
    .await
    .unwrap();
    Backend {
        queue: Arc::new(q),
        clock,
        _keep: Box::new(server),
    }
}

async fn send(c: &Client, to: &str, body: &str) -> serde_json::Value {
    c.req("send", json!({ "to": to, "body": body }))
        .await
        .unwrap()
}

/// Offline → queued → replayed in order before live messages → removed only after ack.
async fn queued_then_live_in_order(b: Backend) {
    let hub = hub(config(), Some(b.queue.clone()));
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "laptop"))).await;
    for i in 0..5 {
        let r = send(&alice, "bob", &format!("m{i}")).await;
        assert_eq!(r["queued"], true);
        assert_eq!(r["delivered"], 0);
    }
    assert_eq!(b.queue.len("bob").await.unwrap(), 5);

    // Bob signs in while alice keeps sending: the queued five come first, then the live ones,
    // in one increasing order of ids.
    let mut bob = Client::tcp(addr, None).await;
    let (auth, live) = tokio::join!(
        bob.req("auth", json!({ "token": token("bob", "phone") })),
        async {
            for i in 5..10 {
                send(&alice, "bob", &format!("m{i}")).await;
            }
        }
    );
    auth.unwrap();
    let () = live;
    let mut ids = Vec::new();
    for i in 0..10 {
        let n = bob.note_named("message").await;
        assert_eq!(n.body["body"], format!("m{i}"), "message {i} in order");
        assert_eq!(n.body["from"]["user"], "alice");
        ids.push(n.body["id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Nothing is removed before it is acknowledged.
    assert_eq!(b.queue.len("bob").await.unwrap(), 10);
    let r = bob.req("ack", json!({ "id": ids[4] })).await.unwrap();
    assert_eq!(r["removed"], 5);
    assert_eq!(b.queue.len("bob").await.unwrap(), 5);

    // Bob leaves without acknowledging the rest: they come back, and only they.
    bob.peer.close();
    bob.closed().await;
    let mut bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    for (i, id) in ids.iter().enumerate().skip(5) {
        let n = bob.note_named("message").await;
        assert_eq!(n.body["id"].as_u64().unwrap(), *id);
        assert_eq!(n.body["body"], format!("m{i}"));
    }
    bob.req("ack", json!({ "id": ids[9] })).await.unwrap();
    assert_eq!(b.queue.len("bob").await.unwrap(), 0);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// A connection killed in the middle of its replay gets the rest, and the unacknowledged ones
/// again, when it comes back.
async fn killed_mid_replay(b: Backend) {
    let hub = hub(config(), Some(b.queue.clone()));
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "laptop"))).await;
    let n = 300;
    for i in 0..n {
        send(&alice, "bob", &format!("m{i}")).await;
    }
    let mut bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let m = bob.note_named("message").await;
        assert_eq!(m.body["body"], format!("m{i}"));
        ids.push(m.body["id"].as_u64().unwrap());
    }
    bob.req("ack", json!({ "id": ids[19] })).await.unwrap();
    // Killed: the socket goes away without a goodbye (nothing queued is written).
    bob.peer
        .session()
        .close_with(chinwag_session::CloseCause::PeerGone("killed".into()), None);
    until(&hub, "bob's first connection is gone", |hub| {
        hub.connections_of("bob").is_empty()
    })
    .await;

    let mut bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    let first = bob.note_named("message").await;
    assert_eq!(
        first.body["id"].as_u64().unwrap(),
        ids[20],
        "resumes after the last ack"
    );
    assert_eq!(first.body["body"], "m20");
    let mut last = first.body["id"].as_u64().unwrap();
    for i in 21..n {
        let m = bob.note_named("message").await;
        assert_eq!(m.body["body"], format!("m{i}"));
        let id = m.body["id"].as_u64().unwrap();
        assert!(id > last);
        last = id;
    }
    bob.req("ack", json!({ "id": last })).await.unwrap();
    assert_eq!(b.queue.len("bob").await.unwrap(), 0);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// A message whose TTL passed is never delivered; one sent with TTL 0 to an offline user is an
/// `offline` error.
async fn expired_is_not_delivered(b: Backend) {
    let hub = hub(config(), Some(b.queue.clone()));
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "laptop"))).await;
    let r = alice
        .req(
            "send",
            json!({ "to": "bob", "body": "short-lived", "ttl_ms": 1000 }),
        )
        .await
        .unwrap();
    assert_eq!(r["queued"], true);
    let e = alice
        .req(
            "send",
            json!({ "to": "bob", "body": "now or never", "ttl_ms": 0 }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "offline");
    b.clock.advance(Duration::from_secs(2));
    send(&alice, "bob", "fresh").await;
    let mut bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    let m = bob.note_named("message").await;
    assert_eq!(m.body["body"], "fresh", "the expired message is skipped");
    // And it is not behind: a live message comes next.
    send(&alice, "bob", "after").await;
    assert_eq!(bob.note_named("message").await.body["body"], "after");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

macro_rules! on_every_backend {
    ($($scenario:ident),*) => {
        mod memory_backend {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(memory().await).await })*
        }
        mod redb_backend {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(redb().await).await })*
        }
        mod redis_backend {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(redis().await).await })*
        }
    };
}

on_every_backend!(
    queued_then_live_in_order,
    killed_mid_replay,
    expired_is_not_delivered
);
