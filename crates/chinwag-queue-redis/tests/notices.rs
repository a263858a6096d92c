//! Push notices ([`RedisOptions::notices`]): every push publishes `"<id>\n<payload>"` on the
//! recipient's channel, in the queue's order; a refused push publishes nothing; without the
//! option nothing is published.

use std::time::Duration;

use chinwag_queue::{Limit, Queue, QueueConfig, QueueError};
use chinwag_queue_redis::redis;
use chinwag_queue_redis::{RedisOptions, RedisQueue};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_push_is_published_on_its_recipients_channel_in_order() {
    let server = chinwag_queue_redis::test_server::RedisServer::start();
    let config = QueueConfig::default().with_max_entries_per_recipient(3);
    let q = RedisQueue::connect_with(
        &server.url(),
        config.clone(),
        RedisOptions::default().notices("n:"),
    )
    .await
    .expect("connect");
    let quiet = RedisQueue::connect_with(
        &server.url(),
        QueueConfig::default(),
        RedisOptions::default().prefix("other:"),
    )
    .await
    .expect("connect");
    let client = redis::Client::open(server.url()).expect("client");
    let mut ps = client.get_async_pubsub().await.expect("pubsub");
    ps.subscribe("n:zoé").await.expect("subscribe");
    ps.subscribe("n:ann").await.expect("subscribe");
    let mut stream = ps.on_message();

    let mut ids = Vec::new();
    for (who, body) in [("zoé", &b"one"[..]), ("ann", b"x"), ("zoé", b"t\nwo\0")] {
        ids.push(q.push(who, body.to_vec().into(), None).await.expect("push"));
    }
    // Without the option: nothing published.
    quiet
        .push("zoé", "silent".into(), None)
        .await
        .expect("push");
    q.push("zoé", "fill".into(), None).await.expect("push");
    let full = q.push("zoé", "refused".into(), None).await;
    assert!(
        matches!(
            full,
            Err(QueueError::Full {
                limit: Limit::EntriesPerRecipient,
                ..
            })
        ),
        "the fourth entry is over the bound: {full:?}"
    );
    // A last one to ann marks the end.
    let last = q.push("ann", "end".into(), None).await.expect("push");

    let mut got = Vec::new();
    while got.last().map(|(c, _): &(String, Vec<u8>)| c.as_str()) != Some("n:ann")
        || got.len() < 2
        || !got.last().is_some_and(|(_, p)| p.ends_with(b"end"))
    {
        let m = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a notice in time")
            .expect("stream open");
        got.push((
            m.get_channel_name().to_owned(),
            m.get_payload_bytes().to_vec(),
        ));
    }
    let want: Vec<(String, Vec<u8>)> = [
        ("n:zoé", format!("{}\none", ids[0]).into_bytes()),
        ("n:ann", format!("{}\nx", ids[1]).into_bytes()),
        (
            "n:zoé",
            [format!("{}\n", ids[2]).as_bytes(), b"t\nwo\0"].concat(),
        ),
        ("n:zoé", format!("{}\nfill", ids[2] + 1).into_bytes()),
        ("n:ann", format!("{last}\nend").into_bytes()),
    ]
    .into_iter()
    .map(|(c, p)| (c.to_owned(), p))
    .collect();
    assert_eq!(
        got, want,
        "one notice per stored push, in order; none for the refused push or the quiet queue"
    );
    // Ids are dense per recipient (the cluster relies on it to see gaps).
    assert_eq!(ids[2], ids[0] + 1, "consecutive ids for one recipient");
}

/// A history with notices publishes every appended publication of a room stream, with its
/// epoch and offset, in offset order; a conversation stream (its name starts with NUL)
/// publishes nothing.
#[tokio::test]
async fn every_append_to_a_room_stream_is_published_with_its_offset() {
    use chinwag_queue::{History, HistoryConfig, Retention};
    use chinwag_queue_redis::RedisHistory;

    let server = chinwag_queue_redis::test_server::RedisServer::start();
    let h = RedisHistory::connect_with(
        &server.url(),
        HistoryConfig::default(),
        RedisOptions::default().notices("r:"),
    )
    .await
    .expect("connect");
    let client = redis::Client::open(server.url()).expect("client");
    let mut ps = client.get_async_pubsub().await.expect("pubsub");
    ps.psubscribe("r:*").await.expect("psubscribe");
    let mut stream = ps.on_message();
    let keep = Retention::new(2, None);
    let s1 = h
        .append("lobby", &["a".into(), "b\nc".into()], keep, 7)
        .await
        .expect("append");
    h.append("\0dm\0a\0b", &["secret".into()], keep, 7)
        .await
        .expect("append");
    let s2 = h
        .append("lobby", &["d".into()], keep, 9)
        .await
        .expect("append");
    assert_eq!((s1.epoch, s1.last, s2.last), (7, 2, 3));
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a notice in time")
            .expect("stream open");
        got.push((
            m.get_channel_name().to_owned(),
            m.get_payload_bytes().to_vec(),
        ));
    }
    let want: Vec<(String, Vec<u8>)> = [("7 1\na"), ("7 2\nb\nc"), ("7 3\nd")]
        .into_iter()
        .map(|p| ("r:lobby".to_owned(), p.as_bytes().to_vec()))
        .collect();
    assert_eq!(
        got, want,
        "the stream's epoch (not the one offered), each offset once"
    );
    // Nothing for the conversation: the next message on the pattern is a later room append.
    h.append("other", &["e".into()], keep, 1)
        .await
        .expect("append");
    let m = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a notice in time")
        .expect("stream open");
    assert_eq!(m.get_channel_name(), "r:other");
}
