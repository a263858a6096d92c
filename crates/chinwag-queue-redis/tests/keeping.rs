//! A push that keeps ([`RedisQueue::keeping`], [`Queue::push_keeping`]): the entry is queued
//! and the publication appended to the kept history by one script (one `EVALSHA`, counted
//! with `INFO commandstats`); a push a queue bound refuses appends nothing; an append a
//! history bound refuses leaves the push done; a queue that keeps no history only pushes.

use std::time::Duration;

use chinwag_queue::{
    Direction, History, HistoryConfig, Keep, Limit, Queue, QueueConfig, QueueError, Retention,
};
use chinwag_queue_redis::redis;
use chinwag_queue_redis::test_server::RedisServer;
use chinwag_queue_redis::{RedisHistory, RedisOptions, RedisQueue};

const EPOCH: u64 = 77;

fn keep<'a>(stream: &'a str, payload: &'static str) -> Keep<'a> {
    Keep {
        stream,
        payload: payload.into(),
        retention: Retention::new(100, Some(Duration::from_secs(3600))),
        new_epoch: EPOCH,
    }
}

/// `EVALSHA` calls Redis has served (`INFO commandstats`).
async fn evalshas(url: &str) -> u64 {
    let client = redis::Client::open(url).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls"))
}

async fn keeping(
    server: &RedisServer,
    queue: QueueConfig,
    history: HistoryConfig,
) -> (RedisQueue, RedisHistory) {
    let q = RedisQueue::connect(&server.url(), queue)
        .await
        .expect("connect");
    let h = q.history(history);
    (q.keeping(h.clone()).expect("same prefix"), h)
}

#[tokio::test]
async fn a_push_that_keeps_queues_and_appends_in_one_script() {
    let server = RedisServer::start();
    let (q, h) = keeping(&server, QueueConfig::default(), HistoryConfig::default()).await;
    // Scripts are loaded by the first call of each: warm both up.
    q.push_keeping("ann", "warm".into(), None, keep("\0warm", "w"))
        .await
        .expect("warm-up");
    let before = evalshas(&server.url()).await;
    let mut ids = Vec::new();
    for (i, body) in ["one", "two", "three"].into_iter().enumerate() {
        let p = q
            .push_keeping("bob", body.into(), None, keep("\0ann\0bob", body))
            .await
            .expect("push");
        let state = p.kept.expect("the queue keeps").expect("appended");
        assert_eq!(
            (state.epoch, state.first, state.last),
            (EPOCH, 1, i as u64 + 1),
            "the append's place"
        );
        ids.push(p.id);
    }
    assert_eq!(
        evalshas(&server.url()).await - before,
        3,
        "one script per push that keeps"
    );
    let queued: Vec<_> = q
        .read("bob", 0, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|e| (e.id, e.payload))
        .collect();
    assert_eq!(
        queued,
        ids.iter()
            .zip(["one", "two", "three"])
            .map(|(id, b)| (*id, bytes::Bytes::from(b)))
            .collect::<Vec<_>>(),
        "queued in order"
    );
    let page = h
        .read("\0ann\0bob", 0, Direction::Forward, 10)
        .await
        .expect("read")
        .expect("the stream exists");
    let kept: Vec<_> = page
        .publications
        .iter()
        .map(|p| (p.offset, p.payload.clone()))
        .collect();
    assert_eq!(
        kept,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())],
        "appended in order"
    );
}

#[tokio::test]
async fn a_push_a_queue_bound_refuses_appends_nothing() {
    let server = RedisServer::start();
    let config = QueueConfig::default().with_max_entries_per_recipient(1);
    let (q, h) = keeping(&server, config, HistoryConfig::default()).await;
    q.push_keeping("bob", "one".into(), None, keep("\0c", "one"))
        .await
        .expect("push");
    let refused = q
        .push_keeping("bob", "two".into(), None, keep("\0c", "two"))
        .await;
    assert!(
        matches!(
            refused,
            Err(QueueError::Full {
                limit: Limit::EntriesPerRecipient,
                ..
            })
        ),
        "over the queue's bound: {refused:?}"
    );
    let state = h.state("\0c").await.expect("state").expect("exists");
    assert_eq!(state.last, 1, "the refused push appended nothing");
    assert!(q.keeps_history(), "a queue that keeps says so");
}

#[tokio::test]
async fn an_append_a_history_bound_refuses_leaves_the_push_done() {
    let server = RedisServer::start();
    let history = HistoryConfig::default()
        .with_max_streams(1)
        .with_max_payload_bytes(8);
    let (q, h) = keeping(&server, QueueConfig::default(), history).await;
    q.push_keeping("bob", "one".into(), None, keep("\0a", "one"))
        .await
        .expect("push");
    // In Redis: a second stream is over max_streams.
    let p = q
        .push_keeping("bob", "two".into(), None, keep("\0b", "two"))
        .await
        .expect("the push is done");
    assert!(
        matches!(
            p.kept,
            Some(Err(QueueError::Full {
                limit: Limit::Streams,
                ..
            }))
        ),
        "the append was refused: {:?}",
        p.kept
    );
    // Before Redis: a payload over max_payload_bytes.
    let p = q
        .push_keeping("bob", "three".into(), None, keep("\0a", "too large!"))
        .await
        .expect("the push is done");
    assert!(
        matches!(p.kept, Some(Err(_))),
        "the append was refused: {:?}",
        p.kept
    );
    assert_eq!(q.len("bob").await.expect("len"), 3, "every push is queued");
    assert_eq!(
        h.state("\0b").await.expect("state"),
        None,
        "no second stream"
    );
    let a = h.state("\0a").await.expect("state").expect("exists");
    assert_eq!(a.last, 1, "only the first append");
}

#[tokio::test]
async fn a_queue_that_keeps_nothing_only_pushes() {
    let server = RedisServer::start();
    let q = RedisQueue::connect(&server.url(), QueueConfig::default())
        .await
        .expect("connect");
    let h = q.history(HistoryConfig::default());
    let p = q
        .push_keeping("bob", "one".into(), None, keep("\0c", "one"))
        .await
        .expect("push");
    assert!(p.kept.is_none(), "the caller appends: {:?}", p.kept);
    assert!(!q.keeps_history(), "and it says so");
    assert_eq!(q.len("bob").await.expect("len"), 1, "pushed");
    assert_eq!(h.state("\0c").await.expect("state"), None, "not appended");

    // A history under another prefix is not this queue's to keep.
    let other = RedisQueue::connect_with(
        &server.url(),
        QueueConfig::default(),
        RedisOptions::default().prefix("other:"),
    )
    .await
    .expect("connect");
    assert!(
        q.keeping(other.history(HistoryConfig::default())).is_err(),
        "another prefix is refused"
    );
}
