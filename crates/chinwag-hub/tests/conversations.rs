//! Direct-message history over the chat door (real sockets): the conversation between two
//! users, both directions, readable by either from any device (`history {with}`), bounded by
//! count; live-only messages are not kept; a hub without a history store says so. Also: room
//! history readable by non-members when the room allows it, and a room whose stream was swept
//! away goes on under a new epoch (no `seq` reused within an epoch).

mod common;

use std::time::Duration;

use chinwag_hub::RoomHistory;
use chinwag_queue::History;
use common::*;
use serde_json::{Value, json};

/// `(seq, from user, to, body)` of a conversation page.
fn entries(v: &Value) -> Vec<(u64, String, String, String)> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {v}"))
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["from"]["user"].as_str().unwrap().to_owned(),
                m["to"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn send(c: &Client, to: &str, body: &str) -> Value {
    c.req("send", json!({"to": to, "body": body}))
        .await
        .unwrap()
}

fn e(seq: u64, from: &str, to: &str, body: &str) -> (u64, String, String, String) {
    (seq, from.into(), to.into(), body.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_kept_both_ways_and_read_from_any_device() {
    let hub = history_hub(memory(), RoomHistory::default());
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "phone"))).await;
    let bob = Client::tcp(addr, Some(&token("bob", "laptop"))).await;
    let mut ids = Vec::new();
    for (i, (from, to, body)) in [
        (&alice, "bob", "hi bob"),
        (&bob, "alice", "hi alice"),
        (&alice, "bob", "lunch?"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = send(from, to, body).await;
        assert_eq!(r["seq"], i as u64 + 1, "its place in the conversation: {r}");
        ids.push(r["id"].as_u64().unwrap());
    }
    // A live-only message (a typing indicator, say) is delivered but not kept.
    let live = alice
        .req("send", json!({"to": "bob", "body": "typing", "ttl_ms": 0}))
        .await
        .unwrap();
    assert!(live.get("seq").is_none(), "{live}");
    // Alice's second device, never connected before, sees the whole conversation.
    let tablet = Client::tcp(addr, Some(&token("alice", "tablet"))).await;
    let page = tablet.req("history", json!({"with": "bob"})).await.unwrap();
    assert_eq!(page["with"], "bob");
    assert_eq!(
        (page["first"].clone(), page["last"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(
        entries(&page),
        [
            e(3, "alice", "bob", "lunch?"),
            e(2, "bob", "alice", "hi alice"),
            e(1, "alice", "bob", "hi bob"),
        ],
        "newest first"
    );
    let page_ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .rev()
        .collect();
    assert_eq!(page_ids, ids, "the ids the recipients got");
    assert_eq!(page["messages"][0]["from"]["device"], "phone");
    // Bob reads the same conversation, oldest first from a point.
    let after = bob
        .req("history", json!({"with": "alice", "after": 1}))
        .await
        .unwrap();
    assert_eq!(
        entries(&after),
        [
            e(2, "bob", "alice", "hi alice"),
            e(3, "alice", "bob", "lunch?")
        ]
    );
    let before = bob
        .req("history", json!({"with": "alice", "before": 3, "limit": 1}))
        .await
        .unwrap();
    assert_eq!(entries(&before), [e(2, "bob", "alice", "hi alice")]);
    // Carol has no conversation with alice: an empty page, not someone else's.
    let carol = Client::tcp(addr, Some(&token("carol", "d"))).await;
    let none = carol
        .req("history", json!({"with": "alice"}))
        .await
        .unwrap();
    assert_eq!(entries(&none), []);
    assert_eq!(none["last"], 0);
    let bad = carol.req("history", json!({"with": ""})).await.unwrap_err();
    assert_eq!(bad.code, "bad_recipient");
    let both = carol
        .req("history", json!({"with": "alice", "room": "r"}))
        .await
        .unwrap_err();
    assert_eq!(both.code, "bad_request");
    let neither = carol.req("history", json!({})).await.unwrap_err();
    assert_eq!(neither.code, "bad_request");
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_keeps_its_last_max_len_messages() {
    let hub = history_hub(
        memory(),
        RoomHistory::default().with_conversation_max_len(3),
    );
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    for i in 1..=5 {
        send(&alice, "bob", &format!("m{i}")).await;
    }
    let page = alice
        .req("history", json!({"with": "bob", "after": 0}))
        .await
        .unwrap();
    assert_eq!(
        (page["first"].clone(), page["last"].clone()),
        (json!(3), json!(5))
    );
    assert_eq!(
        entries(&page),
        [
            e(3, "alice", "bob", "m3"),
            e(4, "alice", "bob", "m4"),
            e(5, "alice", "bob", "m5")
        ]
    );
    // Notes to oneself are a conversation too.
    assert_eq!(send(&alice, "alice", "note").await["seq"], 1);
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_history_store_nothing_is_kept_and_history_with_says_so() {
    let hub = common::hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let r = send(&alice, "bob", "hi").await;
    assert!(r.get("seq").is_none(), "{r}");
    let e = alice
        .req("history", json!({"with": "bob"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "no_history");
    // Nor with conversations turned off on a hub that keeps rooms.
    let off = history_hub(
        memory(),
        RoomHistory::default().with_conversation_max_len(0),
    );
    let (door2, addr2) = chat_tcp(&off);
    let alice2 = Client::tcp(addr2, Some(&token("alice", "d"))).await;
    assert!(send(&alice2, "bob", "hi").await.get("seq").is_none());
    door.shutdown(DEADLINE).await;
    door2.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
    off.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_rooms_history_is_readable_by_non_members() {
    let hub = history_hub(memory(), RoomHistory::default().with_public(true));
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    alice.req("join", json!({"room": "news"})).await.unwrap();
    alice
        .req("publish", json!({"room": "news", "body": "extra"}))
        .await
        .unwrap();
    let bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let page = bob.req("history", json!({"room": "news"})).await.unwrap();
    assert_eq!(page["publications"][0]["body"], "extra");
    // A room that does not exist tells a non-member nothing more than "not a member".
    let e = bob
        .req("history", json!({"room": "nowhere"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_member");
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_stream_was_swept_goes_on_under_a_new_epoch() {
    let history = memory();
    // Everything ages at once: the stream is swept as soon as the sweep runs.
    let hub = history_hub(
        history.clone(),
        RoomHistory::default().with_max_age(Some(Duration::ZERO)),
    );
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let joined = alice.req("join", json!({"room": "r"})).await.unwrap();
    let epoch = joined["epoch"].as_u64().unwrap();
    let r = alice
        .req("publish", json!({"room": "r", "body": "one"}))
        .await
        .unwrap();
    assert_eq!(r["seq"], 1);
    assert!(history.sweep().await.unwrap() <= 1);
    assert!(history.state("r").await.unwrap().is_none(), "swept away");
    let r = alice
        .req("publish", json!({"room": "r", "body": "two"}))
        .await
        .unwrap();
    assert_eq!(r["seq"], 1, "a new stream starts at 1");
    let info = alice.req("join", json!({"room": "r"})).await.unwrap();
    assert_ne!(
        info["epoch"].as_u64().unwrap(),
        epoch,
        "so under a new epoch"
    );
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}
