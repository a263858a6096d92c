//! Node leases, the sweep of a dead node's sign-ons, fencing. Short leases (400 ms); no sleep
//! waits for an event: Redis state and hub state are polled with a deadline where nothing
//! signals, the clients' `bye` and the listeners' status are awaited; no timing is asserted.

mod common;

use std::collections::BTreeSet;

use chinwag_cluster_redis::{FENCED_REASON, RedisDirectory, SweepOutcome};
use chinwag_hub::{ConnId, ConnRef, Device, Directory, NodeId, SignOn};
use common::*;
use serde_json::json;

const TTL_MS: u64 = 400;

fn admin_url(server: &RedisServer) -> String {
    server.url()
}

async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(admin_url(server))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut admin(server).await)
        .await
        .unwrap()
}

async fn nodes(d: &RedisDirectory, server: &RedisServer) -> BTreeSet<u64> {
    redis::cmd("SMEMBERS")
        .arg(d.nodes_key())
        .query_async(&mut admin(server).await)
        .await
        .unwrap()
}

/// Asserts a fenced node's bye: 1001 (`going_away`, reconnect with backoff), "node fenced".
fn assert_fenced(bye: &serde_json::Value) {
    assert_eq!(bye["code"], 1001, "{bye}");
    assert_eq!(bye["name"], "going_away", "{bye}");
    assert_eq!(bye["reason"], FENCED_REASON, "{bye}");
    assert_eq!(bye["reconnect"], "backoff", "{bye}");
}

/// Node 1 "dies" (cut off Redis for good, as kill -9 would leave it: no sign-off reaches
/// Redis): its lease expires, node 2 sweeps it. Una, only on node 1, leaves the hashes and the
/// online count; Uwe, on both nodes, stays online with node 2's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_sign_ons_are_swept() {
    let server = redis_server();
    let a_url = acl_user(&server, "node1").await;
    let policy = SignOn::Multi { max: 2 };
    let a = Node::start_with(&a_url, 1, policy, lease_config(TTL_MS)).await;
    let b = Node::start_with(&server.url(), 2, policy, lease_config(SURVIVOR_LEASE_MS)).await;
    assert!(exists(&server, &b.directory.lease_key(NodeId(1))).await);
    assert_eq!(nodes(&b.directory, &server).await, BTreeSet::from([1, 2]));

    let mut una = Client::signed_in(a.addr, &token("una", "phone")).await;
    una.conn_id().await;
    let mut uwe_a = Client::signed_in(a.addr, &token("uwe", "phone")).await;
    uwe_a.conn_id().await;
    let uwe_b = Client::signed_in(b.addr, &token("uwe", "laptop")).await;
    let uwe_b_id = uwe_b.conn_id().await;
    assert_eq!(b.hub.online_users().await.unwrap(), 2);
    assert_eq!(
        b.hub.online_list(None, 10).await.unwrap().users,
        ["una", "uwe"]
    );
    let indexed: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(a.directory.users_key(NodeId(1)))
        .query_async(&mut admin(&server).await)
        .await
        .unwrap();
    assert_eq!(
        indexed,
        BTreeSet::from(["una".to_owned(), "uwe".to_owned()])
    );

    cut_off(&server, "node1").await;

    let d = &b.directory;
    eventually("una's entry swept", || async {
        d.connections("una").await.unwrap().is_empty()
    })
    .await;
    eventually("uwe's node-1 entry swept", || async {
        d.connections("uwe").await.unwrap().len() == 1
    })
    .await;
    assert_eq!(
        conn_refs(d, "uwe").await,
        [ConnRef {
            node: NodeId(2),
            conn: uwe_b_id
        }]
    );
    eventually("node 1 gone from the registry", || async {
        nodes(d, &server).await == BTreeSet::from([2])
    })
    .await;
    assert_eq!(
        d.online_users().await.unwrap(),
        1,
        "una went offline, uwe stays"
    );
    assert_eq!(
        b.hub.online_list(None, 10).await.unwrap().users,
        ["uwe"],
        "the sweep takes una off the list too"
    );
    assert!(!exists(&server, &d.users_key(NodeId(1))).await);
    assert!(!exists(&server, &d.lease_key(NodeId(1))).await);
    let s = b.status_until("swept node 1", |s| s.sweeps >= 1).await;
    assert_eq!((s.sweeps, s.swept), (1, 2));

    // Node 1 could not renew either: it fenced itself and closed its connections, without
    // writing to Redis.
    assert_fenced(&una.bye().await);
    assert_fenced(&uwe_a.bye().await);
    una.closed().await;
    uwe_a.closed().await;
    let s = a.status_until("fenced", |s| s.fenced).await;
    assert_eq!(s.fenced_closed, 2);
    assert!(s.renewals_failed >= 1);
    assert!(a.directory.is_fenced());
    // Uwe's other connection is untouched and Redis still counts him.
    assert!(!uwe_b.is_closed());
    assert_eq!(uwe_b.req("whoami", json!({})).await.unwrap()["user"], "uwe");
    a.stop().await;
    b.stop().await;
}

/// Sign-on entries of a node that never comes back (node 9, written straight through
/// `RedisSignOns` plus its index), swept by two directories at once: each entry is removed
/// once, the counter goes down and the list loses each user who went offline once, a live
/// node's entries stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_racing_remove_each_entry_once() {
    let server = redis_server();
    let d1 = RedisDirectory::connect(&server.url()).await.unwrap();
    let d2 = RedisDirectory::connect(&server.url()).await.unwrap();
    let mut admin = admin(&server).await;
    let (dead, live) = (NodeId(9), NodeId(8));
    // Node 8 holds a lease (no TTL: it stays alive for the test).
    let () = redis::cmd("SET")
        .arg(d1.lease_key(live))
        .arg("x")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut online = 0;
    let mut entries = 0;
    for u in 0..60u64 {
        let user = format!("user{u}");
        let conns: &[(NodeId, u64)] = match u % 3 {
            0 => &[(dead, 1)],
            1 => &[(dead, 1), (dead, 2)],
            _ => &[(dead, 1), (live, 1)],
        };
        for (node, c) in conns {
            let r = d1
                .signons()
                .sign_on(
                    &Device::new(user.as_str(), format!("d{}{c}", node.0)),
                    ConnRef {
                        node: *node,
                        conn: ConnId(u * 10 + c),
                    },
                    SignOn::Multi { max: 5 },
                )
                .await
                .unwrap();
            assert!(r.replaced.is_empty());
            if *node == dead {
                entries += 1;
            }
            let _: u64 = redis::cmd("SADD")
                .arg(d1.users_key(*node))
                .arg(&user)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        online += 1;
    }
    // A user indexed without an entry (a crash between SADD and the script): skipped.
    let _: u64 = redis::cmd("SADD")
        .arg(d1.users_key(dead))
        .arg("nobody")
        .query_async(&mut admin)
        .await
        .unwrap();
    // Listed and counted as the directory would have (the sign-ons above went straight
    // through `RedisSignOns`).
    for u in 0..60u64 {
        let _: u64 = redis::cmd("ZADD")
            .arg(d1.online_list_key())
            .arg(0)
            .arg(format!("user{u}"))
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let () = redis::cmd("SET")
        .arg(d1.online_key())
        .arg(online)
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: u64 = redis::cmd("SADD")
        .arg(d1.nodes_key())
        .arg(&[8, 9])
        .query_async(&mut admin)
        .await
        .unwrap();

    let (r1, r2) = tokio::join!(d1.sweep(dead), d2.sweep(dead));
    let (mut removed, mut offline, mut swept) = (0, 0, 0);
    for r in [r1.unwrap(), r2.unwrap()] {
        match r {
            SweepOutcome::Swept {
                removed: n,
                offline: o,
                ..
            } => {
                swept += 1;
                removed += n;
                offline += o;
            }
            SweepOutcome::Locked => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(swept >= 1);
    assert_eq!(removed, entries, "every entry of node 9 removed once");
    assert_eq!(offline, 40, "users only on node 9 went offline once each");
    assert_eq!(d1.online_users().await.unwrap(), 20);
    for u in 0..60u64 {
        let left = d2.connections(&format!("user{u}")).await.unwrap();
        assert!(
            left.iter().all(|s| s.conn.node == live),
            "user{u}: {left:?}"
        );
        assert_eq!(left.len(), usize::from(u % 3 == 2), "user{u}");
    }
    assert_eq!(nodes(&d1, &server).await, BTreeSet::from([8]));
    assert!(!exists(&server, &d1.users_key(dead)).await);
    // Sweeping again finds nothing; a live node is not swept; a held lock is respected.
    assert!(matches!(
        d2.sweep(dead).await.unwrap(),
        SweepOutcome::Swept { removed: 0, .. }
    ));
    assert_eq!(d1.sweep(live).await.unwrap(), SweepOutcome::Alive);
    assert_eq!(d1.connections("user2").await.unwrap().len(), 1);
    let () = redis::cmd("SET")
        .arg("chinwag:cluster:{node:7}:sweep")
        .arg("another sweeper")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(d1.sweep(NodeId(7)).await.unwrap(), SweepOutcome::Locked);
    assert_eq!(d1.online_users().await.unwrap(), 20);
    // The list holds exactly the users still on node 8, in byte order.
    let mut still: Vec<String> = (0..60u64)
        .filter(|u| u % 3 == 2)
        .map(|u| format!("user{u}"))
        .collect();
    still.sort();
    assert_eq!(d2.online_page(None, 100).await.unwrap(), still);
    let at = still.iter().position(|u| u == "user5").unwrap();
    assert_eq!(
        d2.online_page(Some("user5"), 2).await.unwrap(),
        still[at + 1..at + 3]
    );
}

/// A node that paused past its lease (here: its lease key vanished, as it would have expired
/// while the process was stopped) finds it gone at its next renewal: it closes its
/// connections (bye 1001, "node fenced"), refuses new sign-ons for good, and another node
/// sweeps its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_expired_fences_itself() {
    let server = redis_server();
    let a = Node::start_with(&server.url(), 1, SignOn::Single, lease_config(TTL_MS)).await;
    let b = Node::start_with(
        &server.url(),
        2,
        SignOn::Single,
        lease_config(SURVIVOR_LEASE_MS),
    )
    .await;
    let mut ada = Client::signed_in(a.addr, &token("ada", "phone")).await;
    ada.conn_id().await;
    a.status_until("renewed", |s| s.renewals >= 1).await;

    let _: u64 = redis::cmd("DEL")
        .arg(a.directory.lease_key(NodeId(1)))
        .query_async(&mut admin(&server).await)
        .await
        .unwrap();

    assert_fenced(&ada.bye().await);
    ada.closed().await;
    let s = a.status_until("fenced", |s| s.fenced).await;
    assert_eq!(s.fenced_closed, 1);
    assert!(a.directory.is_fenced());
    // New sign-ons on the fenced node are refused; on node 2 they work.
    let c = Client::connect(a.addr).await;
    let refused = c
        .req("auth", json!({ "token": token("bea", "phone") }))
        .await;
    // DirectoryError::Fenced, as the chat door words it.
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("no longer part of the cluster")),
        "{refused:?}"
    );
    let bea = Client::signed_in(b.addr, &token("bea", "phone")).await;
    bea.conn_id().await;
    // Node 2 sweeps node 1: ada's entry goes, and with it her place in the count.
    let d = &b.directory;
    eventually("ada's entry swept", || async {
        d.connections("ada").await.unwrap().is_empty()
    })
    .await;
    eventually("node 1 unregistered", || async {
        nodes(d, &server).await == BTreeSet::from([2])
    })
    .await;
    assert_eq!(d.online_users().await.unwrap(), 1);
    assert!(
        !exists(&server, &d.lease_key(NodeId(1))).await,
        "not re-registered"
    );
    assert!(a.hub.local_connections().is_empty());
    a.stop().await;
    b.stop().await;
}

/// A process restarted with the node id of one that died waits for the old lease to expire,
/// sweeps the old process's entries itself, and registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_is_reused_after_its_old_entries_are_swept() {
    let server = redis_server();
    let old_url = acl_user(&server, "old1").await;
    let old = Node::start_with(&old_url, 1, SignOn::Single, lease_config(TTL_MS)).await;
    let mut ada = Client::signed_in(old.addr, &token("ada", "phone")).await;
    ada.conn_id().await;
    cut_off(&server, "old1").await;
    // Same id, alone (no other node sweeps): it registers only after sweeping.
    let new = Node::start_with(&server.url(), 1, SignOn::Single, lease_config(TTL_MS)).await;
    assert!(new.directory.connections("ada").await.unwrap().is_empty());
    assert_eq!(new.directory.online_users().await.unwrap(), 0);
    let ada2 = Client::signed_in(new.addr, &token("ada", "laptop")).await;
    ada2.conn_id().await;
    assert_eq!(new.directory.connections("ada").await.unwrap().len(), 1);
    assert_eq!(new.directory.online_users().await.unwrap(), 1);
    assert_fenced(&ada.bye().await);
    old.stop().await;
    new.stop().await;
}

/// Set in the environment of the child process [`a_killed_node_process_is_swept`] starts: the
/// Redis URL its node uses.
const CHILD_REDIS: &str = "CHINWAG_CLUSTER_TEST_CHILD_REDIS";

/// The node process of [`a_killed_node_process_is_swept`] (this test binary run again with
/// this test's name): node 5 with a 400 ms lease, its door's address on stdout, then it serves
/// until it is killed. Without the variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_node() {
    let Ok(url) = std::env::var(CHILD_REDIS) else {
        return;
    };
    let node = Node::start_with(&url, 5, SignOn::Multi { max: 2 }, lease_config(TTL_MS)).await;
    println!("CHILD_ADDR {}", node.addr);
    std::future::pending::<()>().await;
}

/// A node process killed with SIGKILL: node 5 runs in a child process; una and uwe sign on
/// there, uwe also on node 2 (here). After the kill, node 2 sweeps node 5: una leaves the
/// hashes and the count, uwe stays online with node 2's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_process_is_swept() {
    let server = redis_server();
    let b = Node::start_with(
        &server.url(),
        2,
        SignOn::Multi { max: 2 },
        lease_config(SURVIVOR_LEASE_MS),
    )
    .await;
    let (mut child, addr) = spawn_child_node(&server).await;

    let una = Client::signed_in(addr, &token("una", "phone")).await;
    una.conn_id().await;
    let uwe_5 = Client::signed_in(addr, &token("uwe", "phone")).await;
    uwe_5.conn_id().await;
    let uwe_b = Client::signed_in(b.addr, &token("uwe", "laptop")).await;
    let uwe_b_id = uwe_b.conn_id().await;
    let d = &b.directory;
    assert_eq!(d.connections("uwe").await.unwrap().len(), 2);
    assert_eq!(d.online_users().await.unwrap(), 2);

    child.kill().await.unwrap(); // SIGKILL: no sign-off, no cleanup
    una.closed().await;
    uwe_5.closed().await;
    eventually("node 5 swept", || async {
        d.connections("una").await.unwrap().is_empty()
            && d.connections("uwe").await.unwrap().len() == 1
            && nodes(d, &server).await == BTreeSet::from([2])
    })
    .await;
    assert_eq!(
        conn_refs(d, "uwe").await,
        [ConnRef {
            node: NodeId(2),
            conn: uwe_b_id
        }]
    );
    assert_eq!(d.online_users().await.unwrap(), 1);
    assert!(!exists(&server, &d.users_key(NodeId(5))).await);
    let s = b.status_until("swept node 5", |s| s.sweeps >= 1).await;
    assert_eq!(s.swept, 2);
    assert!(!uwe_b.is_closed());
    b.stop().await;
}

/// Starts [`child_node`] in a child process on `server`; returns it and its door's address.
async fn spawn_child_node(server: &RedisServer) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_node", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_REDIS, server.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the test binary runs again as a child node");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the child's address");
            // libtest may have written "test child_node ... " before it on the line.
            if let Some((_, a)) = line.split_once("CHILD_ADDR ") {
                return a.parse().unwrap();
            }
        }
    })
    .await
    .expect("the child node started within the deadline");
    (child, addr)
}

/// Sends `signal` (`STOP`, `CONT`) to `child` with kill(1).
async fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the child runs").to_string();
    let ok = tokio::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(ok.success(), "kill -{signal} {pid}");
}

/// A node process stopped (SIGSTOP) past its lease, then continued (SIGCONT): meanwhile node 2
/// sweeps it; once continued it fences itself: its client gets `bye` 1001 `node fenced`, and
/// a new sign-in there is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_process_fences_itself_when_continued() {
    let server = redis_server();
    let b = Node::start_with(
        &server.url(),
        2,
        SignOn::Multi { max: 2 },
        lease_config(SURVIVOR_LEASE_MS),
    )
    .await;
    let (mut child, addr) = spawn_child_node(&server).await;
    let mut una = Client::signed_in(addr, &token("una", "phone")).await;
    una.conn_id().await;
    let d = &b.directory;
    assert_eq!(d.online_users().await.unwrap(), 1);

    signal(&child, "STOP").await;
    eventually("the stopped node swept", || async {
        d.connections("una").await.unwrap().is_empty()
            && nodes(d, &server).await == BTreeSet::from([2])
    })
    .await;
    assert_eq!(d.online_users().await.unwrap(), 0);
    assert!(!una.is_closed(), "a stopped process closes nothing");

    signal(&child, "CONT").await;
    assert_fenced(&una.bye().await);
    una.closed().await;
    let c = Client::connect(addr).await;
    let refused = c
        .req("auth", json!({ "token": token("bea", "phone") }))
        .await;
    // DirectoryError::Fenced, as the chat door words it.
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("no longer part of the cluster")),
        "{refused:?}"
    );
    assert!(d.connections("bea").await.unwrap().is_empty());
    assert!(
        !exists(&server, &d.lease_key(NodeId(5))).await,
        "not re-registered"
    );
    assert_eq!(d.online_users().await.unwrap(), 0);
    child.kill().await.unwrap();
    b.stop().await;
}

/// Where `user`'s connections are, as the directory lists them.
async fn conn_refs(d: &RedisDirectory, user: &str) -> Vec<ConnRef> {
    d.connections(user)
        .await
        .unwrap()
        .iter()
        .map(|s| s.conn)
        .collect()
}
