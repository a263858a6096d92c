//! Rooms across nodes (issue 18, point 4): three hubs in one process share one Redis for their
//! directory, queue and room history (with notices), as the facade's `redis_cluster` sets them
//! up; real chat clients on each node's TCP door. A room that keeps history is one room: one
//! epoch, one offset order, whichever node a member is on or publishes from.

mod common;

use std::collections::BTreeMap;

use chinwag_hub::SignOn;
use common::*;
use serde_json::{Value, json};

/// The next `room` notification (skipping others), within the deadline.
async fn room_note(c: &mut Client) -> Value {
    loop {
        let n = tokio::time::timeout(DEADLINE, c.notes.recv())
            .await
            .expect("a room notification within the deadline")
            .expect("a notification before the connection ended");
        if n.name == "room" {
            return n.body;
        }
    }
}

/// The next `n` publications: (epoch, seq, body).
async fn publications(c: &mut Client, n: usize) -> Vec<(u64, u64, String)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let m = room_note(c).await;
        got.push((
            m["epoch"].as_u64().expect("epoch"),
            m["seq"].as_u64().expect("seq"),
            m["body"].as_str().expect("body").to_owned(),
        ));
    }
    got
}

async fn publish(c: &Client, room: &str, body: &str) -> u64 {
    let r = c
        .req("publish", json!({ "room": room, "body": body }))
        .await
        .expect("publish");
    r["seq"].as_u64().expect("seq")
}

async fn three_shared(url: &str) -> [Node; 3] {
    let policy = SignOn::PerDevice;
    [
        Node::start_shared(url, url, 1, policy).await,
        Node::start_shared(url, url, 2, policy).await,
        Node::start_shared(url, url, 3, policy).await,
    ]
}

/// Members on three nodes publish at once: every member gets every publication once, with
/// consecutive seqs of one epoch, the same seq naming the same publication on every node, and
/// each publisher's in the order published; the seqs the publishers were given are those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_members_on_three_nodes_has_one_order() {
    let server = redis_server();
    let url = server.url();
    let nodes = three_shared(&url).await;
    let names = ["ann", "ben", "cat"];
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = Client::signed_in(n.addr, &token(names[i], "d")).await;
        let r = c
            .req("join", json!({ "room": "lobby" }))
            .await
            .expect("join");
        assert_eq!(r["seq"], 0, "{r}");
        members.push(c);
    }
    const EACH: usize = 30;
    let sends = members.iter().enumerate().map(|(i, c)| async move {
        let mut seqs = Vec::new();
        for k in 0..EACH {
            seqs.push(publish(c, "lobby", &format!("{} {k}", names[i])).await);
        }
        seqs
    });
    let given: Vec<Vec<u64>> = futures_util::future::join_all(sends).await;
    let mut seen: Vec<Vec<(u64, u64, String)>> = Vec::new();
    for c in &mut members {
        seen.push(publications(c, 3 * EACH).await);
    }
    let epoch = seen[0][0].0;
    for got in &seen {
        let seqs: Vec<u64> = got.iter().map(|p| p.1).collect();
        assert_eq!(
            seqs,
            (1..=3 * EACH as u64).collect::<Vec<_>>(),
            "consecutive, once each"
        );
        assert!(got.iter().all(|p| p.0 == epoch), "one epoch");
    }
    assert_eq!(seen[0], seen[1], "node 1 and node 2 agree");
    assert_eq!(seen[0], seen[2], "node 1 and node 3 agree");
    let by_seq: BTreeMap<u64, &str> = seen[0].iter().map(|p| (p.1, p.2.as_str())).collect();
    for (i, seqs) in given.iter().enumerate() {
        let bodies: Vec<&str> = seqs.iter().map(|s| by_seq[s]).collect();
        let want: Vec<String> = (0..EACH).map(|k| format!("{} {k}", names[i])).collect();
        assert_eq!(
            bodies, want,
            "{}'s publications, under the seqs it was given",
            names[i]
        );
    }
    for c in members {
        c.close().await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A member that saw the room up to seq 3 on node 1 comes back on node 3 after two more were
/// published on node 2: it recovers exactly those two, then gets the live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_recovers_on_another_node() {
    let server = redis_server();
    let url = server.url();
    let nodes = three_shared(&url).await;
    let mut ann = Client::signed_in(nodes[0].addr, &token("ann", "d")).await;
    let ben = Client::signed_in(nodes[1].addr, &token("ben", "d")).await;
    ann.req("join", json!({ "room": "r" })).await.expect("join");
    ben.req("join", json!({ "room": "r" })).await.expect("join");
    for k in 1..=3 {
        publish(&ben, "r", &format!("m{k}")).await;
    }
    let seen = publications(&mut ann, 3).await;
    let (epoch, last) = (seen[2].0, seen[2].1);
    assert_eq!(last, 3);
    ann.close().await;
    for k in 4..=5 {
        publish(&ben, "r", &format!("m{k}")).await;
    }
    let mut back = Client::signed_in(nodes[2].addr, &token("ann", "d")).await;
    let r = back
        .req(
            "join",
            json!({ "room": "r", "since": { "epoch": epoch, "seq": last } }),
        )
        .await
        .expect("join");
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(
        (r["epoch"].as_u64(), r["seq"].as_u64()),
        (Some(epoch), Some(5))
    );
    let missed = publications(&mut back, 2).await;
    assert_eq!(
        missed,
        [(epoch, 4, "m4".to_owned()), (epoch, 5, "m5".to_owned())]
    );
    publish(&ben, "r", "m6").await;
    assert_eq!(
        publications(&mut back, 1).await,
        [(epoch, 6, "m6".to_owned())]
    );
    for c in [back, ben] {
        c.close().await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// Node 3's listener is cut off while five publications are made on node 1: its member gets
/// them all the same, in order and once, when the listener is back and the room reads its
/// history; then live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_publications_reads_them_from_the_history() {
    let server = redis_server();
    let url = server.url();
    let c_url = acl_user(&server, "node3").await;
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let c = Node::start_shared(&url, &c_url, 3, SignOn::Single).await;
    let ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    let mut cat = Client::signed_in(c.addr, &token("cat", "d")).await;
    ann.req("join", json!({ "room": "r" })).await.expect("join");
    cat.req("join", json!({ "room": "r" })).await.expect("join");
    publish(&ann, "r", "before").await;
    assert_eq!(publications(&mut cat, 1).await[0].2, "before");

    cut_listener(&server, "node3", &c).await;
    for k in 0..5 {
        publish(&ann, "r", &format!("missed {k}")).await;
    }
    let_listener_back(&server, "node3").await;
    let got = publications(&mut cat, 5).await;
    assert_eq!(
        got.iter().map(|p| (p.1, p.2.as_str())).collect::<Vec<_>>(),
        (0..5)
            .map(|k| (k as u64 + 2, format!("missed {k}")))
            .collect::<Vec<_>>()
            .iter()
            .map(|(s, b)| (*s, b.as_str()))
            .collect::<Vec<_>>()
    );
    publish(&ann, "r", "after").await;
    let p = publications(&mut cat, 1).await;
    assert_eq!(
        (p[0].1, p[0].2.as_str()),
        (7, "after"),
        "live again, nothing twice"
    );
    for cl in [ann, cat] {
        cl.close().await;
    }
    a.stop().await;
    c.stop().await;
}

/// A node follows a room's channel only while it has members there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_only_the_rooms_they_have_members_in() {
    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared(&url, &url, 2, SignOn::Single).await;
    let ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    ann.req("join", json!({ "room": "r" })).await.expect("join");
    assert_eq!(a.directory.interested_rooms().await, 1);
    assert_eq!(b.directory.interested_rooms().await, 0);
    let channel = format!("{}r", a.directory.rooms_prefix());
    let admin = admin(&server).await;
    let numsub = |admin: redis::aio::MultiplexedConnection, channel: String| async move {
        let subs: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut admin.clone())
            .await
            .unwrap();
        subs[0].1
    };
    assert_eq!(
        numsub(admin.clone(), channel.clone()).await,
        1,
        "node 1 only"
    );
    assert_eq!(
        ann.req("leave", json!({ "room": "r" }))
            .await
            .expect("leave")["left"],
        true
    );
    eventually("node 1 stops following the room", || {
        let (admin, channel) = (admin.clone(), channel.clone());
        async move { numsub(admin, channel).await == 0 }
    })
    .await;
    assert_eq!(a.directory.interested_rooms().await, 0);
    ann.close().await;
    a.stop().await;
    b.stop().await;
}

/// A room made with a password on node 1 is that room on every node: a join on node 2 without
/// the password is refused, with it admitted, and its publications cross; another node cannot
/// make a second room of that name; once removed, its record goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_made_with_a_password_keeps_it_on_every_node() {
    use chinwag_hub::{RoomError, RoomOptions};

    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared(&url, &url, 2, SignOn::Single).await;
    a.hub
        .create_room(
            "vault",
            RoomOptions::new()
                .with_password("open sesame")
                .with_max_members(5),
        )
        .await
        .expect("created on node 1");
    let again = b.hub.create_room("vault", RoomOptions::new()).await;
    assert!(matches!(again, Err(RoomError::Exists)), "{again:?}");

    let mut ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    let ben = Client::signed_in(b.addr, &token("ben", "d")).await;
    ann.req(
        "join",
        json!({ "room": "vault", "password": "open sesame" }),
    )
    .await
    .expect("join on node 1");
    let refused = ben.req("join", json!({ "room": "vault" })).await;
    assert!(refused.is_err(), "no password on node 2: {refused:?}");
    let wrong = ben
        .req("join", json!({ "room": "vault", "password": "guess" }))
        .await;
    assert!(wrong.is_err(), "a wrong password on node 2: {wrong:?}");
    let r = ben
        .req(
            "join",
            json!({ "room": "vault", "password": "open sesame" }),
        )
        .await
        .expect("the password on node 2");
    assert_eq!(r["protected"], true, "{r}");
    publish(&ben, "vault", "from node 2").await;
    assert_eq!(publications(&mut ann, 1).await[0].2, "from node 2");

    let key = a.directory.room_key("vault");
    let admin = admin(&server).await;
    assert!(a.hub.remove_room("vault"));
    eventually("the room's record removed", || {
        let (mut admin, key) = (admin.clone(), key.clone());
        async move {
            let n: u64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut admin)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    for c in [ann, ben] {
        c.close().await;
    }
    a.stop().await;
    b.stop().await;
}

/// Node 2 queues at most one publication per room (`max_pending_publishes` 1): a burst of 30
/// other nodes' publications overflows its room's queue at once (they are handed to its hub in
/// one go, as its listener does with a burst of notices); what did not fit is read from the
/// shared history once the queue drains, so its member still gets every publication, in order,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_queue_reads_what_it_dropped_from_the_history() {
    use chinwag_queue::{Direction, History, HistoryConfig, Retention};
    use chinwag_queue_redis::RedisHistory;

    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared_with(
        &url,
        &url,
        2,
        SignOn::Single,
        limits().with_max_pending_publishes(1),
        directory_config(),
    )
    .await;
    let mut bea = Client::signed_in(b.addr, &token("bea", "d")).await;
    let ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    bea.req("join", json!({ "room": "r" })).await.expect("join");
    ann.req("join", json!({ "room": "r" })).await.expect("join");
    publish(&ann, "r", "first").await;
    let first = publications(&mut bea, 1).await;
    let epoch = first[0].0;

    // 30 more kept in the shared history (by "another node": no notices), then announced to
    // node 2 all at once.
    let history = RedisHistory::connect(&url, HistoryConfig::default())
        .await
        .expect("history");
    let page = history
        .read("r", 0, Direction::Forward, 1)
        .await
        .expect("read")
        .expect("the stream");
    let payload = page.publications[0].payload.clone();
    let more = vec![payload.clone(); 30];
    let state = history
        .append("r", &more, Retention::new(1_000, None), epoch)
        .await
        .expect("append");
    assert_eq!((state.epoch, state.last), (epoch, 31));
    for offset in 2..=31 {
        b.hub
            .published_elsewhere("r", epoch, offset, payload.clone());
    }
    let got = publications(&mut bea, 30).await;
    let seqs: Vec<u64> = got.iter().map(|p| p.1).collect();
    assert_eq!(
        seqs,
        (2..=31).collect::<Vec<_>>(),
        "every one, in order, once"
    );
    publish(&ann, "r", "live").await;
    let p = publications(&mut bea, 1).await;
    assert_eq!((p[0].1, p[0].2.as_str()), (32, "live"));
    for c in [ann, bea] {
        c.close().await;
    }
    a.stop().await;
    b.stop().await;
}

/// The next `presence` notification (skipping others): (user, device, event).
async fn presence(c: &mut Client) -> (String, String, String) {
    loop {
        let n = tokio::time::timeout(DEADLINE, c.notes.recv())
            .await
            .expect("a presence event within the deadline")
            .expect("a notification before the connection ended");
        if n.name == "presence" {
            let s = |k: &str| n.body[k].as_str().unwrap_or_default().to_owned();
            return (s("user"), s("device"), s("event"));
        }
    }
}

/// A room with presence events made on node 1: members on either node see the others join
/// and leave, whichever node they are on, each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_cross_nodes() {
    use chinwag_hub::RoomOptions;

    let server = redis_server();
    let url = server.url();
    let a = Node::start_shared(&url, &url, 1, SignOn::Single).await;
    let b = Node::start_shared(&url, &url, 2, SignOn::Single).await;
    a.hub
        .create_room("desk", RoomOptions::new().with_presence_events(true))
        .await
        .expect("created");
    let mut ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    ann.req("join", json!({ "room": "desk" }))
        .await
        .expect("join");
    let mut ben = Client::signed_in(b.addr, &token("ben", "d")).await;
    ben.req("join", json!({ "room": "desk" }))
        .await
        .expect("join");
    let ev = |u: &str, e: &str| (u.to_owned(), "d".to_owned(), e.to_owned());
    assert_eq!(presence(&mut ann).await, ev("ben", "join"), "from node 2");
    let cat = Client::signed_in(a.addr, &token("cat", "d")).await;
    cat.req("join", json!({ "room": "desk" }))
        .await
        .expect("join");
    assert_eq!(presence(&mut ben).await, ev("cat", "join"), "from node 1");
    assert_eq!(
        presence(&mut ann).await,
        ev("cat", "join"),
        "on node 1, once"
    );
    cat.close().await;
    assert_eq!(presence(&mut ben).await, ev("cat", "leave"));
    assert_eq!(presence(&mut ann).await, ev("cat", "leave"));
    assert_eq!(
        ben.req("leave", json!({ "room": "desk" }))
            .await
            .expect("leave")["left"],
        true
    );
    assert_eq!(presence(&mut ann).await, ev("ben", "leave"));
    // Nothing more (a duplicate of node 1's own events would show here).
    publish(&ann, "desk", "end").await;
    let n = tokio::time::timeout(DEADLINE, ann.notes.recv())
        .await
        .expect("a notification")
        .expect("open");
    assert_eq!(n.name, "room", "no other presence event came first: {n:?}");
    for c in [ann, ben] {
        c.close().await;
    }
    a.stop().await;
    b.stop().await;
}

/// `members` and `join`'s `members` count and list a room's members on every node; a leave
/// takes its member out everywhere; a dead node's members are swept out of the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_listed_and_counted_across_nodes() {
    let server = redis_server();
    let url = server.url();
    let c_url = acl_user(&server, "node3").await;
    let node = |id: u64, dir: String, lease_ms: u64| {
        let url = url.clone();
        async move {
            let lease = lease_config(lease_ms);
            Node::start_shared_with(&url, &dir, id, SignOn::PerDevice, limits(), lease).await
        }
    };
    let a = node(1, url.clone(), SURVIVOR_LEASE_MS).await;
    let b = node(2, url.clone(), SURVIVOR_LEASE_MS).await;
    let c = node(3, c_url, 400).await;
    let ann = Client::signed_in(a.addr, &token("ann", "d")).await;
    let phone = Client::signed_in(b.addr, &token("ben", "phone")).await;
    let laptop = Client::signed_in(c.addr, &token("ben", "laptop")).await;
    let mut counts = Vec::new();
    for cl in [&ann, &phone, &laptop] {
        let r = cl.req("join", json!({ "room": "r" })).await.expect("join");
        counts.push(r["members"].as_u64().unwrap());
    }
    assert_eq!(counts, [1, 2, 3], "join's members counts every node");
    let listed = |r: Value| {
        let mut v: Vec<(u64, String, String)> = r["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["node"].as_u64().unwrap(),
                    m["user"].as_str().unwrap().to_owned(),
                    m["device"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let r = ann
        .req("members", json!({ "room": "r" }))
        .await
        .expect("members");
    assert_eq!(r["next"], Value::Null, "{r}");
    let all = vec![
        (1, "ann".to_owned(), "d".to_owned()),
        (2, "ben".to_owned(), "phone".to_owned()),
        (3, "ben".to_owned(), "laptop".to_owned()),
    ];
    assert_eq!(listed(r), all);
    let r = phone
        .req("leave", json!({ "room": "r" }))
        .await
        .expect("leave");
    assert_eq!(r["left"], true);
    eventually("the leave is listed", || {
        let a = &a;
        async move { a.hub.room_connections("r").await == Some(2) }
    })
    .await;
    // Node 3 dies (cut off Redis): node 1 or 2 sweeps it, and its member with it.
    cut_off(&server, "node3").await;
    eventually("node 3's member swept out of the list", || {
        let a = &a;
        async move { a.hub.room_connections("r").await == Some(1) }
    })
    .await;
    let r = ann
        .req("members", json!({ "room": "r" }))
        .await
        .expect("members");
    assert_eq!(listed(r), [(1, "ann".to_owned(), "d".to_owned())]);
    for cl in [ann, phone] {
        cl.close().await;
    }
    drop(laptop);
    a.stop().await;
    b.stop().await;
}
