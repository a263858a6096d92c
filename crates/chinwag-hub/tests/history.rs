//! Room history and recovery over the chat door (real sockets): a member that comes back with
//! `since` gets exactly what it missed, then the live publications, with no gap and no
//! duplicate — also while others publish during its recovery — or is told why it did not
//! recover; `history` pages; a room keeps its epoch and sequence across a hub restart on redb.

mod common;

use std::sync::Arc;

use chinwag_hub::{Hub, Keep, KeepHistory, RoomHistory, RoomOptions};
use chinwag_queue::{History, HistoryConfig, MemoryHistory};
use chinwag_queue_redb::RedbHistory;
use common::*;
use serde_json::{Value, json};

/// The `seq`s of the next `n` room notifications, checking their room and epoch.
async fn seqs(c: &mut Client, room: &str, epoch: u64, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let note = c.note_named("room").await;
        assert_eq!(note.body["room"], room);
        assert_eq!(note.body["epoch"], epoch, "{}", note.body);
        out.push(note.body["seq"].as_u64().unwrap());
    }
    out
}

async fn publish(c: &Client, room: &str, body: &str) -> u64 {
    let r = c
        .req("publish", json!({"room": room, "body": body}))
        .await
        .unwrap();
    r["seq"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_comes_back_gets_exactly_what_it_missed_then_live() {
    let hub = history_hub(memory(), RoomHistory::default());
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let joined = alice.req("join", json!({"room": "lobby"})).await.unwrap();
    let epoch = joined["epoch"].as_u64().unwrap();
    bob.req("join", json!({"room": "lobby"})).await.unwrap();
    for i in 1..=3 {
        assert_eq!(publish(&alice, "lobby", &format!("m{i}")).await, i);
    }
    assert_eq!(seqs(&mut bob, "lobby", epoch, 3).await, [1, 2, 3]);
    // Bob's network blinks: he is gone while alice publishes 4..=8.
    bob.peer.close();
    for i in 4..=8 {
        assert_eq!(publish(&alice, "lobby", &format!("m{i}")).await, i);
    }
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let r = bob
        .req(
            "join",
            json!({"room": "lobby", "since": {"epoch": epoch, "seq": 3}}),
        )
        .await
        .unwrap();
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(r["missed"], 5);
    assert_eq!(r["seq"], 8);
    assert_eq!(seqs(&mut bob, "lobby", epoch, 5).await, [4, 5, 6, 7, 8]);
    let body = bob.note_named("room");
    publish(&alice, "lobby", "m9").await;
    let live = body.await;
    assert_eq!(live.body["seq"], 9, "then live");
    assert_eq!(live.body["body"], "m9");
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_during_a_recovery_are_neither_lost_nor_duplicated() {
    let hub = history_hub(memory(), RoomHistory::default());
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let joined = alice.req("join", json!({"room": "r"})).await.unwrap();
    let epoch = joined["epoch"].as_u64().unwrap();
    for i in 0..300 {
        publish(&alice, "r", &format!("before {i}")).await;
    }
    // Alice keeps publishing while bob recovers from seq 0.
    let publisher = tokio::spawn(async move {
        for i in 0..300 {
            publish(&alice, "r", &format!("during {i}")).await;
        }
        alice
    });
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let r = bob
        .req(
            "join",
            json!({"room": "r", "since": {"epoch": epoch, "seq": 0}}),
        )
        .await
        .unwrap();
    assert_eq!(r["recovered"], true, "{r}");
    let alice = publisher.await.unwrap();
    let got = seqs(&mut bob, "r", epoch, 600).await;
    assert_eq!(
        got,
        (1..=600).collect::<Vec<u64>>(),
        "every seq once, in order"
    );
    drop(alice);
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_told_why_it_did_not_recover_and_gets_what_follows_the_join() {
    let h = RoomHistory::default().with_max_recover(5);
    let hub = history_hub(memory(), h);
    hub.create_room(
        "short",
        RoomOptions::new().with_history(KeepHistory::Keep(Keep::new(3, None))),
    )
    .await
    .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let joined = alice.req("join", json!({"room": "lobby"})).await.unwrap();
    let epoch = joined["epoch"].as_u64().unwrap();
    alice.req("join", json!({"room": "short"})).await.unwrap();
    for i in 1..=10 {
        publish(&alice, "lobby", &format!("{i}")).await;
        publish(&alice, "short", &format!("{i}")).await;
    }
    let short_epoch = hub.room("short").unwrap().epoch;
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let cases = [
        ("lobby", epoch + 1, 9, "epoch_changed"),
        ("lobby", epoch, 11, "ahead"),
        ("lobby", epoch, 2, "too_many"),
        ("short", short_epoch, 6, "trimmed"),
    ];
    for (room, e, seq, why) in cases {
        let r = bob
            .req(
                "join",
                json!({"room": room, "since": {"epoch": e, "seq": seq}}),
            )
            .await
            .unwrap();
        assert_eq!(r["recovered"], false, "{room} {seq}: {r}");
        assert_eq!(r["reason"], why, "{room} {seq}: {r}");
        assert_eq!(
            r["seq"], 10,
            "the room's seq, after which it gets everything"
        );
        bob.req("leave", json!({"room": room})).await.unwrap();
    }
    // Inside what the short room keeps (its last 3: 8, 9, 10): recovered.
    let r = bob
        .req(
            "join",
            json!({"room": "short", "since": {"epoch": short_epoch, "seq": 7}}),
        )
        .await
        .unwrap();
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(seqs(&mut bob, "short", short_epoch, 3).await, [8, 9, 10]);
    // A hub without a history store: rooms keep nothing.
    let plain = hub_without_history();
    let (door2, addr2) = chat_tcp(&plain);
    let carol = Client::tcp(addr2, Some(&token("carol", "d"))).await;
    let r = carol
        .req(
            "join",
            json!({"room": "x", "since": {"epoch": 1, "seq": 0}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r["recovered"].clone(), r["reason"].clone()),
        (json!(false), json!("no_history"))
    );
    let e = carol
        .req("history", json!({"room": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "no_such_room");
    for d in [door, door2] {
        d.shutdown(DEADLINE).await;
    }
    hub.shutdown(DEADLINE).await;
    plain.shutdown(DEADLINE).await;
}

fn hub_without_history() -> Hub {
    common::hub(config(), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_go_both_ways_for_members_only() {
    let hub = history_hub(memory(), RoomHistory::default().with_max_page(4));
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    alice.req("join", json!({"room": "r"})).await.unwrap();
    for i in 1..=10 {
        publish(&alice, "r", &format!("m{i}")).await;
    }
    let seq_of = |v: &Value| -> Vec<u64> {
        v["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["seq"].as_u64().unwrap())
            .collect()
    };
    let newest = alice
        .req("history", json!({"room": "r", "limit": 3}))
        .await
        .unwrap();
    assert_eq!(seq_of(&newest), [10, 9, 8]);
    assert_eq!(
        (newest["first"].clone(), newest["last"].clone()),
        (json!(1), json!(10))
    );
    assert_eq!(newest["publications"][0]["body"], "m10");
    assert_eq!(newest["publications"][0]["from"]["user"], "alice");
    let before = alice
        .req("history", json!({"room": "r", "before": 8, "limit": 100}))
        .await
        .unwrap();
    assert_eq!(seq_of(&before), [7, 6, 5, 4], "cut to max_page");
    let after = alice
        .req("history", json!({"room": "r", "after": 8}))
        .await
        .unwrap();
    assert_eq!(seq_of(&after), [9, 10]);
    let both = alice
        .req("history", json!({"room": "r", "after": 1, "before": 5}))
        .await
        .unwrap_err();
    assert_eq!(both.code, "bad_request");
    let bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let e = bob.req("history", json!({"room": "r"})).await.unwrap_err();
    assert_eq!(e.code, "not_member");
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_epoch_and_sequence_across_a_restart_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.redb");
    let (epoch, last) = {
        let store: Arc<dyn History> =
            Arc::new(RedbHistory::open(&path, HistoryConfig::default()).unwrap());
        let hub = history_hub(store, RoomHistory::default());
        let (door, addr) = chat_tcp(&hub);
        let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
        let joined = alice.req("join", json!({"room": "r"})).await.unwrap();
        let mut last = 0;
        for i in 1..=5 {
            last = publish(&alice, "r", &format!("m{i}")).await;
        }
        door.shutdown(DEADLINE).await;
        hub.shutdown(DEADLINE).await;
        (joined["epoch"].as_u64().unwrap(), last)
    };
    // Every store handle is gone with the hub: open the file again, as a restarted server.
    let store: Arc<dyn History> = Arc::new(reopen(&path).await);
    let hub = history_hub(store, RoomHistory::default());
    let (door, addr) = chat_tcp(&hub);
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    let r = bob
        .req(
            "join",
            json!({"room": "r", "since": {"epoch": epoch, "seq": 2}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r["epoch"].as_u64(), r["seq"].as_u64()),
        (Some(epoch), Some(last))
    );
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(seqs(&mut bob, "r", epoch, 3).await, [3, 4, 5]);
    let next = publish(&bob, "r", "after the restart").await;
    assert_eq!(next, last + 1);
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}

/// Opens the redb file again once the previous instance let go of it.
async fn reopen(path: &std::path::Path) -> RedbHistory {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match RedbHistory::open(path, HistoryConfig::default()) {
            Ok(h) => return h,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("the history file stays locked: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_are_answered_only_once_kept_and_removed_rooms_start_again() {
    let store = memory();
    let hub = history_hub(store.clone(), RoomHistory::default());
    hub.create_room("r", RoomOptions::new()).await.unwrap();
    let e1 = hub.room("r").unwrap().epoch;
    let report = hub
        .publish("r", chinwag_hub::Body::text("x"))
        .await
        .unwrap();
    assert_eq!(report.seq, 1);
    let state = store.state("r").await.unwrap().unwrap();
    assert_eq!(
        (state.epoch, state.last),
        (e1, 1),
        "kept before it was answered"
    );
    assert!(hub.remove_room("r"));
    // The removal of the stream runs on a task: wait for it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store.state("r").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream never removed"
        );
        tokio::task::yield_now().await;
    }
    hub.create_room("r", RoomOptions::new()).await.unwrap();
    let again = hub.room("r").unwrap();
    assert!(again.epoch > e1 && again.seq == 0, "{again:?}");
    hub.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_door_publishes_are_kept_in_order_without_waiting_for_each_write() {
    use chinwag_hub::doors::rooms::RoomsDoor;
    use chinwag_transport::{Frame, FrameWrite, Transport};
    use chinwag_ws::{ConnectOptions, WsAcceptor};
    use chinwag_ws_tungstenite::Tungstenite;

    let store: Arc<dyn History> = Arc::new(MemoryHistory::new(HistoryConfig::default()));
    let hub = history_hub(store.clone(), RoomHistory::default());
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=loud", acc.local_addr());
    let door = RoomsDoor::new(hub.clone()).serve(acc);
    let opts = ConnectOptions::default()
        .with_header("authorization", format!("Bearer {}", token("pat", "web")));
    let conn = chinwag_ws::connect_with::<Tungstenite>(&url, &ws_config(), &opts)
        .await
        .unwrap();
    let (_r, mut w) = conn.split();
    for i in 0..500 {
        w.send(Frame::Text(format!("m{i}").into())).await.unwrap();
    }
    // The member that reads through the chat door sees them kept, in order.
    let (chat, addr) = chat_tcp(&hub);
    let reader = Client::tcp(addr, Some(&token("rae", "d"))).await;
    reader.req("join", json!({"room": "loud"})).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while store
        .state("loud")
        .await
        .unwrap()
        .is_none_or(|s| s.last < 500)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 500 were never kept"
        );
        tokio::task::yield_now().await;
    }
    let page = reader
        .req("history", json!({"room": "loud", "after": 0, "limit": 100}))
        .await
        .unwrap();
    let bodies: Vec<&str> = page["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies[..3], ["m0", "m1", "m2"]);
    assert_eq!(bodies.len(), 100);
    for d in [door, chat] {
        d.shutdown(DEADLINE).await;
    }
    hub.shutdown(DEADLINE).await;
}
