//! The cluster's list of online users (`RedisDirectory::online_page`, `Hub::online_list`): two
//! hubs on one private redis-server with real chat clients; a user with devices on both nodes
//! is listed once and leaves the list with its last device; the list and the counter agree;
//! pages start strictly after their cursor; `online.lua` applies one user's transitions in the
//! user's order whatever order they arrive in. The sweep of a dead node is in `leases.rs`.

mod common;

use std::time::Duration;

use chinwag_cluster_redis::RedisDirectory;
use chinwag_hub::{Directory, Hub, SignOn};
use common::*;

/// The whole list, one `ZRANGE` (what the pages must add up to).
async fn listed(server: &RedisServer, d: &RedisDirectory) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(d.online_list_key())
        .arg(0)
        .arg(-1)
        .query_async(&mut admin(server).await)
        .await
        .unwrap()
}

/// Every page of `hub`'s online list, `limit` at a time.
async fn all_pages(hub: &Hub, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = hub.online_list(after.as_deref(), limit).await.unwrap();
        pages.push(page.users);
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

/// Polls the list until it is `want`: a sign-off runs on a hub task after the connection
/// ended and signals nothing when it is done.
async fn list_until(hub: &Hub, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let got = hub.online_list(None, 100).await.unwrap().users;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online list {got:?}, not {want:?}, within {DEADLINE:?}"
        );
        // Polling interval (no event exists for a finished directory sign-off).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_nodes_are_listed_once_in_byte_order_and_leave_with_their_last_device() {
    let server = redis_server();
    let policy = SignOn::Multi { max: 3 };
    let a = Node::start(&server.url(), 1, policy).await;
    let b = Node::start(&server.url(), 2, policy).await;
    let d = &a.directory;
    assert!(a.hub.online_list(None, 10).await.unwrap().users.is_empty());
    assert!(d.online_page(Some("m"), 10).await.unwrap().is_empty());

    // Users on each node; ada on both (two devices), bob with two devices on one node.
    let ada_a = Client::signed_in(a.addr, &token("ada", "phone")).await;
    let ada_b = Client::signed_in(b.addr, &token("ada", "laptop")).await;
    let bob1 = Client::signed_in(b.addr, &token("bob", "phone")).await;
    let bob2 = Client::signed_in(b.addr, &token("bob", "tablet")).await;
    let cy = Client::signed_in(a.addr, &token("Cy", "phone")).await;
    let dee = Client::signed_in(b.addr, &token("d\u{e9}e", "phone")).await;
    // Byte order: upper case first, UTF-8 after ASCII.
    let all = ["Cy", "ada", "bob", "d\u{e9}e"];
    for n in [&a, &b] {
        assert_eq!(n.hub.online_list(None, 10).await.unwrap().users, all);
        assert_eq!(n.hub.online_users().await.unwrap(), 4);
    }
    assert_eq!(listed(&server, d).await, all);

    // Pages: exactly the limit (no cursor), two by two, after the last, after an absent name.
    let whole = a.hub.online_list(None, 4).await.unwrap();
    assert_eq!((whole.users.len(), whole.next), (4, None));
    assert_eq!(
        all_pages(&b.hub, 2).await,
        [vec!["Cy", "ada"], vec!["bob", "d\u{e9}e"]]
    );
    let p = a.hub.online_list(None, 3).await.unwrap();
    assert_eq!(p.users, all[..3]);
    assert_eq!(p.next.as_deref(), Some("bob"));
    let p = a.hub.online_list(Some("bob"), 3).await.unwrap();
    assert_eq!((p.users, p.next), (vec!["d\u{e9}e".to_owned()], None));
    assert!(
        d.online_page(Some("d\u{e9}e"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        d.online_page(Some("b"), 10).await.unwrap(),
        ["bob", "d\u{e9}e"]
    );
    assert_eq!(d.online_page(Some("Cz"), 1).await.unwrap(), ["ada"]);
    assert!(d.online_page(None, 0).await.unwrap().is_empty());

    // Devices leave; the user stays listed until its last one, on whichever node.
    ada_a.close().await;
    bob1.close().await;
    poll_connections(d, "ada", 1).await;
    poll_connections(d, "bob", 1).await;
    assert_eq!(a.hub.online_list(None, 10).await.unwrap().users, all);
    ada_b.close().await;
    list_until(&a.hub, &["Cy", "bob", "d\u{e9}e"]).await;
    bob2.close().await;
    cy.close().await;
    list_until(&b.hub, &["d\u{e9}e"]).await;
    assert_eq!(
        a.hub.online_users().await.unwrap(),
        1,
        "the counter follows"
    );
    // Back on the other node: listed again.
    let _ada = Client::signed_in(a.addr, &token("ada", "phone")).await;
    assert_eq!(
        b.hub.online_list(None, 10).await.unwrap().users,
        ["ada", "d\u{e9}e"]
    );
    dee.close().await;
    list_until(&b.hub, &["ada"]).await;
    assert_eq!(b.hub.online_users().await.unwrap(), 1);
    a.stop().await;
    b.stop().await;
}

async fn poll_connections(d: &RedisDirectory, user: &str, want: usize) {
    eventually(&format!("{user} has {want} connection(s)"), || async {
        d.connections(user).await.unwrap().len() == want
    })
    .await;
}

/// `online.lua` on its own: each transition carries a version (even: online, odd: offline);
/// one older than the last applied changes nothing, so two nodes' reports of one user arriving
/// in the other order leave the list as the user's last transition says. The counter moves
/// only when the list does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_arriving_out_of_order_are_applied_in_the_users_order() {
    let server = redis_server();
    let d = RedisDirectory::connect(&server.url()).await.unwrap();
    let script = redis::Script::new(include_str!("../src/online.lua"));
    let mut conn = admin(&server).await;
    let mut apply = async |user: &str, version: &str| -> i64 {
        script
            .key(d.online_key())
            .key(d.online_list_key())
            .key(d.online_versions_key())
            .arg(user)
            .arg(version)
            .invoke_async(&mut conn)
            .await
            .unwrap()
    };
    // Online with seq 1 (version 2), offline after it (3), online again with seq 2 (4), the
    // offline report (3) arriving last: ignored, ada stays listed.
    assert_eq!(apply("ada", "2").await, 1);
    assert_eq!(apply("ada", "4").await, 0, "listed already");
    assert_eq!(apply("ada", "3").await, 0, "stale");
    assert_eq!(d.online_page(None, 10).await.unwrap(), ["ada"]);
    // Bob goes online (2) and offline (3), the offline report first: never listed.
    assert_eq!(apply("bob", "3").await, 0, "not listed");
    assert_eq!(apply("bob", "2").await, 0, "stale");
    assert_eq!(d.online_page(None, 10).await.unwrap(), ["ada"]);
    assert_eq!(d.online_users().await.unwrap(), 1);
    // The same report twice counts once.
    assert_eq!(apply("ada", "5").await, -1);
    assert_eq!(apply("ada", "5").await, 0);
    assert_eq!(d.online_users().await.unwrap(), 0);
    assert!(d.online_page(None, 10).await.unwrap().is_empty());
    // A version that is not a number is refused, and changes nothing.
    let err = script
        .key(d.online_key())
        .key(d.online_list_key())
        .key(d.online_versions_key())
        .arg("cy")
        .arg("x")
        .invoke_async::<i64>(&mut admin(&server).await)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad version"), "{err}");
    assert!(d.online_page(None, 10).await.unwrap().is_empty());
}
