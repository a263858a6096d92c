//! Direct messages across nodes (issue 18, point 3): three hubs in one process share one Redis
//! for their directory and their offline queue (with push notices), as the facade's
//! `redis_cluster` sets them up; real chat clients on each node's TCP door.
//!
//! Waits are for events (notifications, send results, the listener's status); the queue's
//! length, which signals nothing, is polled with a deadline.

mod common;

use std::collections::BTreeSet;

use chinwag_hub::SignOn;
use chinwag_queue::{Queue, QueueConfig};
use chinwag_queue_redis::RedisQueue;
use common::*;
use serde_json::{Value, json};

/// The next `message` notification (skipping others), within the deadline.
async fn message(c: &mut Client) -> Value {
    loop {
        let n = tokio::time::timeout(DEADLINE, c.notes.recv())
            .await
            .expect("a message within the deadline")
            .expect("a message before the connection ended");
        if n.name == "message" {
            return n.body;
        }
    }
}

/// The next `n` messages' (id, body).
async fn messages(c: &mut Client, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let m = message(c).await;
        got.push((
            m["id"].as_u64().expect("id"),
            m["body"].as_str().expect("body").to_owned(),
        ));
    }
    got
}

async fn send(c: &Client, to: &str, body: &str, ttl_ms: Option<u64>) -> Result<Value, String> {
    let mut req = json!({ "to": to, "body": body });
    if let Some(t) = ttl_ms {
        req["ttl_ms"] = json!(t);
    }
    c.req("send", req).await
}

async fn queue(url: &str) -> RedisQueue {
    RedisQueue::connect(url, QueueConfig::default())
        .await
        .expect("queue")
}

/// Una has a phone on node 2 and a laptop on node 3; bob on node 1 and carl on node 2 send to
/// her, concurrently. Both devices get every message once, in the same order, with increasing
/// ids that are the ids the senders were given; an ack from one device removes them from the
/// queue for the whole cluster, so a device signing on later at node 1 gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_reaches_the_users_devices_on_every_node_in_one_order() {
    let server = redis_server();
    let url = server.url();
    let policy = SignOn::Multi { max: 5 };
    let nodes = [
        Node::start_shared(&url, &url, 1, policy).await,
        Node::start_shared(&url, &url, 2, policy).await,
        Node::start_shared(&url, &url, 3, policy).await,
    ];
    let mut phone = Client::signed_in(nodes[1].addr, &token("una", "phone")).await;
    let mut laptop = Client::signed_in(nodes[2].addr, &token("una", "laptop")).await;
    let bob = Client::signed_in(nodes[0].addr, &token("bob", "pc")).await;
    let carl = Client::signed_in(nodes[1].addr, &token("carl", "pc")).await;

    const EACH: usize = 40;
    let from_bob = async {
        let mut ids = Vec::new();
        for i in 0..EACH {
            let r = send(&bob, "una", &format!("bob {i}"), None)
                .await
                .expect("send");
            assert_eq!(r["queued"], true, "{r}");
            ids.push(r["id"].as_u64().expect("id"));
        }
        ids
    };
    let from_carl = async {
        let mut ids = Vec::new();
        for i in 0..EACH {
            let r = send(&carl, "una", &format!("carl {i}"), None)
                .await
                .expect("send");
            ids.push(r["id"].as_u64().expect("id"));
        }
        ids
    };
    let (bob_ids, carl_ids) = tokio::join!(from_bob, from_carl);
    let on_phone = messages(&mut phone, 2 * EACH).await;
    let on_laptop = messages(&mut laptop, 2 * EACH).await;

    assert_eq!(
        on_phone, on_laptop,
        "both devices, on two nodes, in one order"
    );
    for w in on_phone.windows(2) {
        assert!(w[0].0 < w[1].0, "ids increase: {:?}", w);
    }
    let seen: BTreeSet<u64> = on_phone.iter().map(|(id, _)| *id).collect();
    let sent: BTreeSet<u64> = bob_ids.iter().chain(&carl_ids).copied().collect();
    assert_eq!(seen, sent, "the ids the senders were given, each once");
    // Each sender's messages keep their order.
    for who in ["bob", "carl"] {
        let mine: Vec<&str> = on_phone
            .iter()
            .map(|(_, b)| b.as_str())
            .filter(|b| b.starts_with(who))
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("{who} {i}")).collect();
        assert_eq!(mine, want, "{who}'s messages in the order sent");
    }

    // An ack on node 3 empties the queue for everyone.
    let last = on_laptop.last().expect("messages").0;
    let r = laptop.req("ack", json!({ "id": last })).await.expect("ack");
    assert_eq!(r["removed"], 2 * EACH as u64, "{r}");
    let q = queue(&url).await;
    assert_eq!(q.len("una").await.expect("len"), 0);
    let mut tablet = Client::signed_in(nodes[0].addr, &token("una", "tablet")).await;
    let r = send(&bob, "una", "after the ack", None)
        .await
        .expect("send");
    let m = message(&mut tablet).await;
    assert_eq!(
        m["body"], "after the ack",
        "nothing acknowledged comes again: {m}"
    );
    assert_eq!(m["id"], r["id"]);
    for c in [phone, laptop, tablet, bob, carl] {
        c.close().await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A live-only message (TTL 0) to a user connected only to another node reaches her there (it
/// goes through the queue briefly: one order for all of a user's messages); to a user online
/// nowhere it is `offline`, as on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_only_messages_cross_nodes_and_offline_users_are_refused() {
    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared(&url, &url, 2, SignOn::Single).await;
    let bob = Client::signed_in(a.addr, &token("bob", "pc")).await;
    let mut una = Client::signed_in(b.addr, &token("una", "phone")).await;

    let r = send(&bob, "una", "live", Some(0)).await.expect("send");
    let m = message(&mut una).await;
    assert_eq!(
        (m["body"].as_str(), m["id"].as_u64()),
        (Some("live"), r["id"].as_u64())
    );
    let e = send(&bob, "nobody", "live", Some(0)).await.unwrap_err();
    assert!(e.contains("offline"), "{e}");
    for c in [bob, una] {
        c.close().await;
    }
    a.stop().await;
    b.stop().await;
}

/// Node 3's listener loses its pub/sub connection and cannot subscribe again for a while
/// (its Redis user is disabled): messages sent meanwhile at node 1 reach una's device on node
/// 3 all the same, in order and once, when the listener is back and makes her connection read
/// the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_notices_catches_up_from_the_queue() {
    let server = redis_server();
    let url = server.url();
    let c_url = acl_user(&server, "node3").await;
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let c = Node::start_shared(&url, &c_url, 3, SignOn::Single).await;
    let bob = Client::signed_in(a.addr, &token("bob", "pc")).await;
    let mut una = Client::signed_in(c.addr, &token("una", "phone")).await;
    send(&bob, "una", "before", None).await.expect("send");
    assert_eq!(message(&mut una).await["body"], "before");

    cut_listener(&server, "node3", &c).await;
    let before = c.listener.status().borrow().catch_ups;
    for i in 0..5 {
        send(&bob, "una", &format!("missed {i}"), None)
            .await
            .expect("send");
    }
    let_listener_back(&server, "node3").await;
    c.status_until("subscribed again, una caught up", |s| {
        s.subscribed && s.catch_ups > before
    })
    .await;
    let got: Vec<String> = messages(&mut una, 5)
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        got,
        (0..5).map(|i| format!("missed {i}")).collect::<Vec<_>>()
    );
    send(&bob, "una", "after", None).await.expect("send");
    assert_eq!(
        message(&mut una).await["body"],
        "after",
        "nothing sent twice, live again"
    );
    for cl in [bob, una] {
        cl.close().await;
    }
    a.stop().await;
    c.stop().await;
}

/// A node subscribes to a user's notices only while it holds one of her connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_subscribe_only_to_the_users_they_hold() {
    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared(&url, &url, 2, SignOn::Single).await;
    let una = Client::signed_in(a.addr, &token("una", "phone")).await;
    assert_eq!(a.directory.interested_users().await, 1);
    assert_eq!(b.directory.interested_users().await, 0);
    let mut admin = admin(&server).await;
    let channel = format!("{}una", a.directory.notices_prefix());
    let subs: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(subs, [(channel.clone(), 1)], "node 1 only");
    una.close().await;
    // The sign-off runs on a task: poll the count.
    eventually("node 1 unsubscribed", || async {
        let subs: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut admin.clone())
            .await
            .unwrap();
        subs == [(channel.clone(), 0)]
    })
    .await;
    assert_eq!(a.directory.interested_users().await, 0);
    a.stop().await;
    b.stop().await;
}

/// A conversation across nodes: each direct message is queued and kept in the conversation
/// by the queue's one script (the nodes' queues keep the shared history), so every send's
/// answer has its place (`seq`), both directions count in one order, nothing is kept twice,
/// and either user reads it from any node. A live-only message (queued briefly, as a cluster
/// does) is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_across_nodes_is_kept_once_per_message_by_the_push() {
    let server = redis_server();
    let url = server.url();
    let policy = SignOn::Multi { max: 5 };
    let nodes = [
        Node::start_shared(&url, &url, 1, policy).await,
        Node::start_shared(&url, &url, 2, policy).await,
    ];
    let mut bob = Client::signed_in(nodes[0].addr, &token("bob", "pc")).await;
    let mut una = Client::signed_in(nodes[1].addr, &token("una", "phone")).await;
    let mut seqs = Vec::new();
    for (i, body) in ["hi una", "hi bob", "lunch?"].into_iter().enumerate() {
        let (from, to, rx) = if i % 2 == 0 {
            (&bob, "una", &mut una)
        } else {
            (&una, "bob", &mut bob)
        };
        let r = send(from, to, body, None).await.expect("send");
        seqs.push(r["seq"].as_u64().unwrap_or_else(|| panic!("kept: {r}")));
        assert_eq!(message(rx).await["body"], body, "delivered across nodes");
    }
    assert_eq!(seqs, [1, 2, 3], "one order both ways, each kept once");
    let live = bob
        .req(
            "send",
            json!({ "to": "una", "body": "typing", "ttl_ms": 0 }),
        )
        .await
        .expect("live-only send to a user online on the other node");
    assert!(
        live.get("seq").is_none(),
        "a live-only message is not kept: {live}"
    );
    assert_eq!(message(&mut una).await["body"], "typing");
    // A second device of bob's on the other node reads the conversation.
    let tablet = Client::signed_in(nodes[1].addr, &token("bob", "tablet")).await;
    let page = tablet
        .req("history", json!({ "with": "una", "after": 0 }))
        .await
        .expect("history");
    let kept: Vec<(u64, String)> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["body"].as_str().expect("body").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            (1, "hi una".to_owned()),
            (2, "hi bob".to_owned()),
            (3, "lunch?".to_owned())
        ],
        "kept once each, in order: {page}"
    );
}
