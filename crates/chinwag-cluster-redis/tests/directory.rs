//! `RedisDirectory` on the wire: three hubs in one process, each with its own node id, chat door
//! on loopback TCP and directory on one private redis-server. Sign-on policies hold across
//! nodes (the replaced connection, wherever it is, gets its `bye` with 4003 and is closed),
//! online users are counted cluster-wide, and a listener that lost its pub/sub connection
//! reconciles what it missed.

mod common;

use std::time::Duration;

use chinwag_cluster_redis::{DirectoryConfig, RedisDirectory};
use chinwag_hub::{ConnRef, Directory, NodeId, SignOn};
use common::*;
use serde_json::json;

fn at(node: &Node, conn: chinwag_hub::ConnId) -> ConnRef {
    ConnRef {
        node: node.hub.config().node,
        conn,
    }
}

/// `Single` across nodes: signing on at node B closes the connection at node A (bye 4003),
/// and Redis lists only B's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replaces_a_connection_on_another_node() {
    let server = redis_server();
    let [a, b, c] = three(&server.url(), SignOn::Single).await;
    let mut on_a = Client::signed_in(a.addr, &token("ada", "phone")).await;
    let a_id = on_a.conn_id().await;
    let on_b = Client::signed_in(b.addr, &token("ada", "laptop")).await;
    let b_id = on_b.conn_id().await;

    assert_replaced(&on_a.bye().await);
    on_a.closed().await;
    a.until("A no longer counts ada's connection", |h| {
        h.connections_of("ada").is_empty()
    })
    .await;
    let listed: Vec<ConnRef> = c
        .directory
        .connections("ada")
        .await
        .unwrap()
        .iter()
        .map(|s| s.conn)
        .collect();
    assert_eq!(listed, [at(&b, b_id)]);
    assert_ne!(at(&a, a_id), at(&b, b_id));
    let s = a.status_until("has closed one", |s| s.closed == 1).await;
    assert_eq!((s.instructions, s.reconciled, s.ignored), (1, 0, 0));
    // The survivor works; B's listener closed nothing.
    assert_eq!(on_b.req("whoami", json!({})).await.unwrap()["user"], "ada");
    assert_eq!(b.listener.status().borrow().closed, 0);
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// 100 concurrent sign-ons of one user spread over three nodes: exactly one connection stays
/// open cluster-wide, and each of the 99 others got its bye (4003) and was closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_sign_ons_over_three_nodes_leave_one() {
    let server = redis_server();
    let nodes = three(&server.url(), SignOn::Single).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let addr = nodes[i % 3].addr;
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(addr).await;
            start.wait().await;
            // A connection may be replaced before its answer to `auth` is written: then the
            // answer may be lost, and its bye still tells.
            let _ = c
                .req("auth", json!({ "token": token("dora", &format!("d{i}")) }))
                .await;
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    // Exactly 99 close: wait for that many ends.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for c in &clients {
        let (peer, tx) = (c.peer.clone(), tx.clone());
        tokio::spawn(async move {
            peer.closed().await;
            let _ = tx.send(());
        });
    }
    for _ in 0..99 {
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("the replaced connections close within the deadline");
    }
    let mut byes = 0;
    let mut open = Vec::new();
    for c in &mut clients {
        if c.is_closed() {
            assert_replaced(&c.bye().await);
            byes += 1;
        } else {
            open.push(c.conn_id().await);
        }
    }
    assert_eq!((byes, open.len()), (99, 1));
    let live: usize = nodes
        .iter()
        .map(|n| n.hub.connections_of("dora").len())
        .sum();
    assert_eq!(live, 1, "one connection cluster-wide");
    let listed = nodes[0].directory.connections("dora").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].conn.conn, open[0]);
    let holder = nodes
        .iter()
        .find(|n| n.hub.config().node == listed[0].conn.node)
        .unwrap();
    assert_eq!(holder.hub.connections_of("dora")[0].id(), open[0]);
    // Closes by instruction plus closes by the signing node itself: 99.
    let remote: u64 = nodes
        .iter()
        .map(|n| n.listener.status().borrow().closed)
        .sum();
    assert!(remote <= 99 && remote > 0, "{remote}");
    for n in nodes {
        n.stop().await;
    }
}

/// `PerDevice` across nodes: two devices on two nodes both stay; the same device again on a
/// third node replaces only that device's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_keeps_one_connection_per_device_across_nodes() {
    let server = redis_server();
    let [a, b, c] = three(&server.url(), SignOn::PerDevice).await;
    let mut phone = Client::signed_in(a.addr, &token("ada", "phone")).await;
    let laptop = Client::signed_in(b.addr, &token("ada", "laptop")).await;
    let laptop_id = laptop.conn_id().await;
    let phone_id = phone.conn_id().await;
    let listed: Vec<ConnRef> = c
        .directory
        .connections("ada")
        .await
        .unwrap()
        .iter()
        .map(|s| s.conn)
        .collect();
    assert_eq!(listed, [at(&a, phone_id), at(&b, laptop_id)]);
    assert_eq!(c.hub.devices("ada").await.unwrap().len(), 2);

    let phone2 = Client::signed_in(c.addr, &token("ada", "phone")).await;
    let phone2_id = phone2.conn_id().await;
    assert_replaced(&phone.bye().await);
    phone.closed().await;
    let devices: Vec<(String, u64)> = a
        .hub
        .devices("ada")
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.device, p.node))
        .collect();
    assert_eq!(
        devices,
        [("laptop".to_string(), 2), ("phone".to_string(), 3)]
    );
    assert!(!laptop.is_closed());
    assert_eq!(laptop.conn_id().await, laptop_id);
    assert_eq!(phone2.conn_id().await, phone2_id);
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// Polls `f` until it returns `want`, with a deadline: a directory's sign-off runs on a hub
/// task after the connection ended, and signals nothing when it is done.
async fn poll_until(what: &str, want: u64, f: impl AsyncFn() -> u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = f().await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {got}, not {want}, within {DEADLINE:?}"
        );
        // Polling interval (no event exists for a finished directory sign-off).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Online users are counted across nodes: a user with connections on two nodes counts once,
/// and goes when its last connection, on any node, goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_users_are_counted_across_nodes() {
    let server = redis_server();
    let [a, b, c] = three(&server.url(), SignOn::Multi { max: 2 }).await;
    assert_eq!(c.hub.online_users().await.unwrap(), 0);
    let ada1 = Client::signed_in(a.addr, &token("ada", "phone")).await;
    let ada2 = Client::signed_in(b.addr, &token("ada", "laptop")).await;
    let bob = Client::signed_in(c.addr, &token("bob", "phone")).await;
    for n in [&a, &b, &c] {
        assert_eq!(n.hub.online_users().await.unwrap(), 2);
    }
    // A third connection of ada replaces her oldest: still two users.
    let mut ada1 = ada1;
    let ada3 = Client::signed_in(c.addr, &token("ada", "tablet")).await;
    assert_replaced(&ada1.bye().await);
    ada1.closed().await;
    assert_eq!(a.hub.online_users().await.unwrap(), 2);

    bob.close().await;
    poll_until("online after bob left", 1, || async {
        a.hub.online_users().await.unwrap()
    })
    .await;
    ada2.close().await;
    // ada still has a connection at node C.
    poll_until("ada's laptop signed off", 1, || async {
        a.directory.connections("ada").await.unwrap().len() as u64
    })
    .await;
    assert_eq!(b.hub.online_users().await.unwrap(), 1);
    ada3.close().await;
    poll_until("online after everyone left", 0, || async {
        b.hub.online_users().await.unwrap()
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

/// The listener's pub/sub connection is killed, and its node cannot subscribe again (its Redis
/// user is disabled) while the user signs on at another node: the close instruction reaches
/// nobody. When the node can subscribe again, the listener reconciles and closes the stale
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_reconnects_closes_what_was_replaced_meanwhile() {
    let server = redis_server();
    let a_url = acl_user(&server, "node1").await;
    let a = Node::start(&a_url, 1, SignOn::Single).await;
    let b = Node::start(&server.url(), 2, SignOn::Single).await;
    let mut on_a = Client::signed_in(a.addr, &token("ada", "phone")).await;
    on_a.conn_id().await;

    // Cut A's listener off: disable its user, kill its pub/sub connection.
    cut_listener(&server, "node1", &a).await;

    // Meanwhile ada signs on at B: the instruction to A reaches no one.
    let on_b = Client::signed_in(b.addr, &token("ada", "laptop")).await;
    let b_id = on_b.conn_id().await;
    let listed = b.directory.connections("ada").await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.conn).collect::<Vec<_>>(),
        [at(&b, b_id)]
    );
    assert_eq!(
        a.hub.connections_of("ada").len(),
        1,
        "A missed the instruction"
    );
    assert!(!on_a.is_closed());

    // A's user is back: the listener subscribes again, reconciles, closes the stale one.
    let_listener_back(&server, "node1").await;
    assert_replaced(&on_a.bye().await);
    on_a.closed().await;
    let s = a.status_until("reconciled", |s| s.reconciled == 1).await;
    assert_eq!((s.subscriptions, s.closed, s.instructions), (2, 0, 0));
    assert!(s.subscribed);
    assert!(a.hub.connections_of("ada").is_empty());
    assert!(!on_b.is_closed());
    a.stop().await;
    b.stop().await;
}

/// Messages on a node's channel that are not close instructions are counted and ignored, and
/// an instruction naming another user's connection closes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_instructions_are_ignored() {
    let server = redis_server();
    let a = Node::start(&server.url(), 1, SignOn::Single).await;
    let on_a = Client::signed_in(a.addr, &token("ada", "phone")).await;
    let id = on_a.conn_id().await;
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let channel = a.directory.channel(NodeId(1));
    for payload in [
        "hello".to_string(),
        "close\nada\nnot-a-number".to_string(),
        "x".repeat(70 * 1024),
        format!("close\nbob\n{}", id.0),
    ] {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let s = a
        .status_until("read all four", |s| s.ignored + s.instructions == 4)
        .await;
    assert_eq!((s.ignored, s.instructions, s.closed), (3, 1, 0));
    assert_eq!(on_a.conn_id().await, id);
    a.stop().await;
}

/// The directory's settings and names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_settings() {
    let server = redis_server();
    let d = RedisDirectory::connect_with(&server.url(), "t:", DirectoryConfig::default())
        .await
        .unwrap();
    assert_eq!(d.channel(NodeId(12)), "t:{node:12}:ctl");
    assert_eq!(d.online_key(), "t:{cluster}:online");
    assert_eq!(d.online_list_key(), "t:{cluster}:online:list");
    assert_eq!(d.online_versions_key(), "t:{cluster}:online:versions");
    assert_eq!(d.signons().prefix(), "t:");
    assert!(
        RedisDirectory::connect_with(&server.url(), "t{", DirectoryConfig::default())
            .await
            .is_err()
    );
}

/// The listener pings Redis on its pub/sub connection; when Redis stops answering without the
/// connection closing (`CLIENT PAUSE`, as a partition would), the ping times out and the
/// listener subscribes again once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ping_makes_the_listener_subscribe_again() {
    let server = redis_server();
    let config = directory_config()
        .with_ping_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_millis(500));
    let node = Node::start_with(&server.url(), 1, SignOn::Single, config).await;
    let before = node
        .status_until("pinged three times", |s| s.pings >= 3)
        .await;

    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let s = node
        .status_until("subscribed again", |s| {
            s.subscribed && s.subscriptions > before.subscriptions
        })
        .await;
    assert!(s.failed_attempts > before.failed_attempts, "{s:?}");
    node.stop().await;
}
