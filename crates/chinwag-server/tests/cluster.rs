//! Several real `chinwag-server` processes as one cluster on a private redis-server
//! (`--cluster-redis-url`): distinct random node ids, `/readyz` following the node's lease
//! (not ready before it is registered, nor after the node fenced itself), the cluster's metrics
//! on `/metrics`, and the default sign-on policy `Single` holding across processes: a sign-in at
//! node 2 closes the user's connection at node 1 with `bye` 4003; 100 concurrent sign-ins over
//! three processes leave exactly one connection.
//!
//! Waits are for events (a printed line, a notification, a closed connection) under a deadline;
//! state that signals nothing (`/readyz`, `/metrics`, a key in Redis) is polled every 20 ms up
//! to the deadline.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chinwag::cluster::redis::redis;
use chinwag::hub::auth::JwtIssuer;
use chinwag::rpc::{Handlers, Peer, RpcConfig, RpcError};
use chinwag_queue_redis::test_server::RedisServer;
use serde_json::{Value, json};

mod common;

use common::*;

const SECRET: &str = "the cluster tests' HS256 secret, shared by every node";

fn token(user: &str, device: &str) -> String {
    JwtIssuer::hs256(SECRET.as_bytes()).issue(user, Some(device), Duration::from_secs(3600))
}

/// The example configuration of a cluster node (`deploy/cluster/node.toml`): every node of
/// these tests starts from it, so it stays a working configuration.
const NODE_TOML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/cluster/node.toml"
);

/// A node of the cluster at `redis`, from the example configuration (per-device sign-on, the
/// queue and room history on the cluster's Redis) with loopback ports chosen by the system, the
/// tests' JWT secret, a `lease` TTL, and another sign-on policy when `sign_on` says so.
fn node_cmd(redis: &str, lease: &str, sign_on: Option<&str>) -> Command {
    let mut c = command();
    c.args([
        "--config",
        NODE_TOML,
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        "--auth-secret",
        SECRET,
        "--cluster-redis-url",
        redis,
        "--cluster-lease-ttl",
        lease,
    ]);
    if let Some(p) = sign_on {
        c.args(["--hub-sign-on", p]);
    }
    c
}

/// A node with the default sign-on policy, `Single`, and a 1 s lease (so a stopped node is
/// declared dead quickly).
fn node(redis: &str) -> Command {
    node_cmd(redis, "1s", Some("single"))
}

impl Running {
    /// Polls `path` until `f` accepts the answer.
    fn get_until(&self, path: &str, what: &str, f: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let until = Instant::now() + DEADLINE;
        loop {
            let (status, body) = self.get(path);
            if f(status, &body) {
                return (status, body);
            }
            assert!(
                Instant::now() < until,
                "not within {DEADLINE:?}: {what} (last: {status} {body})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self) {
        self.get_until("/readyz", "/readyz says ready", |s, _| s == 200);
    }

    /// Its cluster node id.
    fn id(&self) -> u64 {
        self.node.expect("a cluster-node line")
    }
}

/// Polls Redis until `f` holds.
fn redis_until(url: &str, what: &str, mut f: impl FnMut(&mut redis::Connection) -> bool) {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let until = Instant::now() + DEADLINE;
    while !f(&mut conn) {
        assert!(Instant::now() < until, "not within {DEADLINE:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A chat-protocol client over TCP that collects `bye` and `message` notifications.
struct Client {
    peer: Peer,
    notes: tokio::sync::mpsc::UnboundedReceiver<(&'static str, Value)>,
}

/// Handlers that pass the `bye`, `message` and `room` notifications to `tx`.
fn collecting(tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Value)>) -> Handlers {
    let mut h = Handlers::new();
    for name in ["bye", "message", "room"] {
        let tx = tx.clone();
        h.handle_notification(name, move |_peer, payload| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((name, serde_json::from_slice(&payload).unwrap()));
            }
        });
    }
    h
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (tx, notes) = tokio::sync::mpsc::unbounded_channel();
        let h = collecting(tx);
        let t = chinwag::transport::tcp::connect(addr, &Default::default())
            .await
            .unwrap();
        Client {
            peer: chinwag::rpc::connect(t, Arc::new(h), RpcConfig::client()),
            notes,
        }
    }

    async fn req(&self, op: &str, body: Value) -> Result<Value, String> {
        match tokio::time::timeout(DEADLINE, self.peer.request::<_, Value>(op, &body)).await {
            Err(_) => panic!("{op}: no answer within {DEADLINE:?}"),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(RpcError::Remote { message, .. })) => Err(message),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }

    async fn signed_in(addr: SocketAddr, user: &str, device: &str) -> Client {
        let c = Client::connect(addr).await;
        c.req("auth", json!({ "token": token(user, device) }))
            .await
            .expect("auth");
        c
    }

    /// The next notification named `name` (skipping others), within the deadline.
    async fn next(&mut self, name: &str) -> Value {
        loop {
            let (n, body) = tokio::time::timeout(DEADLINE, self.notes.recv())
                .await
                .unwrap_or_else(|_| panic!("a {name} within the deadline"))
                .unwrap_or_else(|| panic!("a {name} before the connection ended"));
            if n == name {
                return body;
            }
        }
    }

    async fn bye(&mut self) -> Value {
        self.next("bye").await
    }

    async fn closed(&self) {
        tokio::time::timeout(DEADLINE, self.peer.closed())
            .await
            .expect("closed within the deadline");
    }
}

fn assert_replaced(bye: &Value) {
    assert_eq!(bye["code"], 4003, "{bye}");
    assert_eq!(bye["name"], "replaced", "{bye}");
    assert_eq!(bye["reconnect"], "never", "{bye}");
}

/// Three processes on one Redis, started at once.
fn three(redis: &str) -> [Running; 3] {
    three_with(redis, |_| {})
}

/// [`three`], each command changed by `f` first.
fn three_with(redis: &str, f: impl Fn(&mut Command)) -> [Running; 3] {
    let mut cmds = [node(redis), node(redis), node(redis)];
    for c in &mut cmds {
        f(c);
    }
    let nodes = cmds.map(Running::start);
    let mut ids: Vec<u64> = nodes.iter().map(|n| n.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct random node ids: {ids:?}");
    assert!(ids.iter().all(|&n| n != 0));
    for n in &nodes {
        n.ready();
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_holds_across_three_server_processes() {
    let redis = RedisServer::start();
    let nodes = three(&redis.url());

    // Every node registered itself in the cluster's registry.
    let url = redis.url();
    redis_until(&url, "three nodes registered", |c| {
        let n: Vec<u64> = redis::cmd("SMEMBERS")
            .arg("chinwag:cluster:{cluster}:nodes")
            .query(c)
            .unwrap();
        n.len() == 3
    });
    // The cluster's metrics are on /metrics (the counters from the start, the gauge of live
    // nodes after the first renewal).
    let (_, metrics) = nodes[0].get_until("/metrics", "the live-nodes gauge", |_, m| {
        m.contains("chinwag_cluster_nodes_alive 3")
    });
    for name in [
        "chinwag_cluster_sweeps_total",
        "chinwag_cluster_lease_renewals_failed_total",
        "chinwag_cluster_fenced_total 0",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }

    let mut at_1 = Client::signed_in(nodes[0].chat_tcp, "una", "phone").await;
    let at_2 = Client::signed_in(nodes[1].chat_tcp, "una", "laptop").await;
    assert_replaced(&at_1.bye().await);
    at_1.closed().await;
    // Node 3 sees one connection of una's, node 2's, and one user online.
    let at_3 = Client::signed_in(nodes[2].chat_tcp, "otto", "web").await;
    let online = at_3
        .req("online", json!({ "users": ["una"] }))
        .await
        .unwrap();
    assert_eq!(online["users"]["una"], json!(["laptop"]), "{online}");
    assert_eq!(online["online"], 2, "una and otto: {online}");
    assert_eq!(at_2.req("whoami", json!({})).await.unwrap()["user"], "una");
}

/// A direct message from a user on node 1 reaches the recipient's devices on nodes 2 and 3, in
/// order, under the ids its sender was given; an ack on one node removes it for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_cross_three_server_processes_in_order() {
    let redis = RedisServer::start();
    // Per-device sign-on, as the example configuration says.
    let nodes = three_with(&redis.url(), |c| *c = node_cmd(&redis.url(), "1s", None));
    let bob = Client::signed_in(nodes[0].chat_tcp, "bob", "pc").await;
    let mut phone = Client::signed_in(nodes[1].chat_tcp, "una", "phone").await;
    let mut laptop = Client::signed_in(nodes[2].chat_tcp, "una", "laptop").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = bob
            .req("send", json!({ "to": "una", "body": format!("m{i}") }))
            .await
            .expect("send");
        ids.push(r["id"].as_u64().expect("id"));
    }
    for device in [&mut phone, &mut laptop] {
        let mut got = Vec::new();
        for _ in 0..30 {
            let m = device.next("message").await;
            assert_eq!(m["from"]["user"], "bob", "{m}");
            got.push((
                m["id"].as_u64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            ));
        }
        let want: Vec<(u64, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, format!("m{i}")))
            .collect();
        assert_eq!(got, want, "every message once, in order, under its id");
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "increasing ids: {ids:?}"
    );
    let r = phone
        .req("ack", json!({ "id": ids[29] }))
        .await
        .expect("ack");
    assert_eq!(r["removed"], 30, "{r}");
    // A device signing on later, at node 1, gets nothing acknowledged.
    let mut tablet = Client::signed_in(nodes[0].chat_tcp, "una", "tablet").await;
    bob.req("send", json!({ "to": "una", "body": "later" }))
        .await
        .expect("send");
    assert_eq!(tablet.next("message").await["body"], "later");
}

/// A room with members on three processes: publications from each reach every member with one
/// epoch and consecutive seqs, in the order they were made, the same on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_three_server_processes_in_one_order() {
    let redis = RedisServer::start();
    let nodes = three(&redis.url());
    let mut members = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = Client::signed_in(n.chat_tcp, &format!("u{i}"), "d").await;
        c.req("join", json!({ "room": "town" }))
            .await
            .expect("join");
        members.push(c);
    }
    for round in 0..10 {
        for (i, c) in members.iter().enumerate() {
            c.req(
                "publish",
                json!({ "room": "town", "body": format!("{i}:{round}") }),
            )
            .await
            .expect("publish");
        }
    }
    let mut seen = Vec::new();
    for c in &mut members {
        let mut got = Vec::new();
        for _ in 0..30 {
            let m = c.next("room").await;
            got.push((
                m["epoch"].as_u64().unwrap(),
                m["seq"].as_u64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            ));
        }
        seen.push(got);
    }
    let seqs: Vec<u64> = seen[0].iter().map(|p| p.1).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
    // Published one after the other: in the order of the calls.
    let bodies: Vec<String> = seen[0].iter().map(|p| p.2.clone()).collect();
    let want: Vec<String> = (0..10)
        .flat_map(|r| (0..3).map(move |i| format!("{i}:{r}")))
        .collect();
    assert_eq!(bodies, want);
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_sign_ons_over_three_server_processes_leave_one() {
    let redis = RedisServer::start();
    let nodes = three(&redis.url());
    let start = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let addr = nodes[i % 3].chat_tcp;
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
    let mut open = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        if c.peer.close_reason().is_some() {
            assert_replaced(&c.bye().await);
        } else {
            open.push(i);
        }
    }
    assert_eq!(open.len(), 1, "exactly one connection stays: {open:?}");
    let survivor = &clients[open[0]];
    let me = survivor.req("whoami", json!({})).await.unwrap();
    assert_eq!(me["user"], "dora");
    let online = survivor
        .req("online", json!({ "users": ["dora"] }))
        .await
        .unwrap();
    assert_eq!(
        online["users"]["dora"],
        json!([format!("d{}", open[0])]),
        "the cluster lists the survivor only: {online}"
    );
}

/// `/readyz` follows the lease: a node whose id is held by a live lease waits (not ready, and
/// sign-ins are refused) until the lease is gone; a node stopped past its lease fences itself
/// once continued (not ready, `node fenced`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_nodes_lease() {
    let redis = RedisServer::start();
    let url = redis.url();
    let lease = "chinwag:cluster:{node:77}:lease";
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("SET")
        .arg(lease)
        .arg("another process")
        .arg("PX")
        .arg(600_000)
        .query(&mut conn)
        .unwrap();
    let mut cmd = node(&url);
    cmd.args(["--cluster-node", "77"]);
    let n = Running::start(cmd);
    assert_eq!(n.id(), 77);
    assert_eq!(
        n.get("/readyz"),
        (503, "not ready: cluster lease not registered\n".into())
    );
    let refused = Client::connect(n.chat_tcp)
        .await
        .req("auth", json!({ "token": token("una", "phone") }))
        .await;
    assert!(refused.is_err(), "no sign-on before the lease: {refused:?}");
    let () = redis::cmd("DEL").arg(lease).query(&mut conn).unwrap();
    n.ready();
    let mut una = Client::signed_in(n.chat_tcp, "una", "phone").await;

    // Stopped past its lease: the lease expires in Redis; continued, the node fences itself.
    n.signal("-STOP");
    redis_until(&url, "the stopped node's lease expired", |c| {
        let exists: bool = redis::cmd("EXISTS").arg(lease).query(c).unwrap();
        !exists
    });
    n.signal("-CONT");
    // 1001 `node fenced`; or, when the stop caught her connection's first read of the offline
    // queue (the queue is on Redis here), 1013 `offline queue unavailable` a moment earlier, as
    // that read timed out: either way the client reconnects elsewhere. (The fencing's own bye
    // is checked in chinwag-cluster-redis's lease tests.)
    let bye = una.bye().await;
    assert!(bye["code"] == 1001 || bye["code"] == 1013, "{bye}");
    una.closed().await;
    let (_, why) = n.get_until("/readyz", "not ready once fenced", |s, _| s == 503);
    assert_eq!(why, "not ready: node fenced\n");
    let (_, metrics) = n.get("/metrics");
    assert!(
        metrics.contains("chinwag_cluster_fenced_total 1"),
        "{metrics}"
    );
}

// ---- failures mid-traffic -------------------------------------------------------------------

/// A device that stays signed in as a real client does: when its connection ends (its node
/// died, fenced itself, or closed it) it signs in again at the next node of `nodes` that
/// answers, and keeps every message it got, in order, duplicates included.
struct Device {
    got: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
    /// Connections it made (1 + reconnects).
    sessions: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn start(nodes: Vec<SocketAddr>, user: &'static str, device: &'static str) -> Device {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let (g, s) = (got.clone(), sessions.clone());
        let task = tokio::spawn(async move {
            let mut first = Some(first_tx);
            let mut i = 0;
            loop {
                let addr = nodes[i % nodes.len()];
                i += 1;
                let Some(mut c) = Client::try_signed_in(addr, user, device).await else {
                    // That node is down: the next one, after a short backoff.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
                // Reconnecting to the same node first (a closed connection on a live node).
                i -= 1;
                loop {
                    tokio::select! {
                        n = c.notes.recv() => match n {
                            Some(("message", m)) => g.lock().unwrap().push((
                                m["id"].as_u64().unwrap(),
                                m["body"].as_str().unwrap().to_owned(),
                            )),
                            Some(_) => {}
                            None => break,
                        },
                        _ = c.peer.closed() => {
                            while let Ok((name, m)) = c.notes.try_recv() {
                                if name == "message" {
                                    g.lock().unwrap().push((
                                        m["id"].as_u64().unwrap(),
                                        m["body"].as_str().unwrap().to_owned(),
                                    ));
                                }
                            }
                            break;
                        }
                    }
                }
                i += 1;
            }
        });
        tokio::time::timeout(DEADLINE, first_rx)
            .await
            .expect("the device signs in")
            .expect("the device task runs");
        Device {
            got,
            sessions,
            task,
        }
    }

    /// Waits (polling: a message count signals nothing) until it has every id of `want`.
    async fn has_all(&self, want: &[u64], what: &str) {
        let until = Instant::now() + DEADLINE;
        loop {
            let have: std::collections::BTreeSet<u64> =
                self.got.lock().unwrap().iter().map(|(id, _)| *id).collect();
            let missing: Vec<u64> = want
                .iter()
                .filter(|id| !have.contains(id))
                .copied()
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < until,
                "{what}: lost {} acknowledged messages, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (messages received, duplicates, connections made). Duplicates must be exact copies
    /// (same id, same body), so the client can drop them by id.
    fn counts(&self) -> (usize, usize, usize) {
        let got = self.got.lock().unwrap();
        let mut seen = std::collections::BTreeMap::new();
        let mut dup = 0;
        for (id, body) in got.iter() {
            if let Some(b) = seen.insert(*id, body.clone()) {
                assert_eq!(&b, body, "a duplicate of {id} is the same message");
                dup += 1;
            }
        }
        let sessions = self.sessions.load(std::sync::atomic::Ordering::SeqCst);
        (got.len(), dup, sessions)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects and signs in, or `None` when the node does not answer or refuses.
    async fn try_signed_in(addr: SocketAddr, user: &str, device: &str) -> Option<Client> {
        let t = tokio::time::timeout(
            Duration::from_secs(2),
            chinwag::transport::tcp::connect(addr, &Default::default()),
        )
        .await
        .ok()?
        .ok()?;
        let (tx, notes) = tokio::sync::mpsc::unbounded_channel();
        let h = collecting(tx);
        let c = Client {
            peer: chinwag::rpc::connect(t, Arc::new(h), RpcConfig::client()),
            notes,
        };
        let auth = tokio::time::timeout(
            Duration::from_secs(5),
            c.peer
                .request::<_, Value>("auth", &json!({ "token": token(user, device) })),
        )
        .await;
        matches!(auth, Ok(Ok(_))).then_some(c)
    }
}

/// What a disruption does to a running cluster, mid-traffic.
enum Disruption {
    /// SIGKILL node 3.
    Kill,
    /// SIGSTOP node 3 until its lease expired in Redis, then SIGCONT: it fences itself.
    Stop,
    /// SIGKILL Redis and start it again (same port and data: AOF, `appendfsync always`).
    RedisRestart,
}

/// Three nodes; bob on node 1 sends 150 messages to una, whose phone is on node 2 and laptop on
/// node 3 (each reconnecting elsewhere when its connection ends); the disruption strikes after
/// the 50th. Every message whose send bob saw succeed reaches both devices (lost: 0);
/// duplicates are exact copies (at least once, dropped by id); sends that failed got a clear
/// error, never silence.
async fn traffic_through(disruption: Disruption) -> (Vec<u64>, usize, [(usize, usize, usize); 2]) {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let lease = match disruption {
        Disruption::RedisRestart => "10s",
        _ => "1s",
    };
    let nodes = [
        node_cmd(&url, lease, None),
        node_cmd(&url, lease, None),
        node_cmd(&url, lease, None),
    ]
    .map(Running::start);
    for n in &nodes {
        n.ready();
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.chat_tcp).collect();
    let bob = Client::signed_in(addrs[0], "bob", "pc").await;
    let phone = Device::start(vec![addrs[1], addrs[0]], "una", "phone").await;
    let laptop = Device::start(vec![addrs[2], addrs[1]], "una", "laptop").await;

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..150 {
        if i == 50 {
            match disruption {
                Disruption::Kill => nodes[2].signal("-KILL"),
                Disruption::Stop => {
                    nodes[2].signal("-STOP");
                    let lease_key = format!("chinwag:cluster:{{node:{}}}:lease", nodes[2].id());
                    redis_until(&url, "the stopped node's lease expired", |c| {
                        let exists: bool = redis::cmd("EXISTS").arg(&lease_key).query(c).unwrap();
                        !exists
                    });
                    nodes[2].signal("-CONT");
                }
                Disruption::RedisRestart => redis.restart(),
            }
        }
        match bob
            .req("send", json!({ "to": "una", "body": format!("m{i}") }))
            .await
        {
            Ok(r) => acknowledged.push(r["id"].as_u64().expect("id")),
            Err(e) => {
                // Redis was down: a clear error naming the queue.
                assert!(e.contains("queue"), "a failed send says why: {e}");
                refused += 1;
            }
        }
    }
    phone.has_all(&acknowledged, "the phone").await;
    laptop.has_all(&acknowledged, "the laptop").await;
    let counts = [phone.counts(), laptop.counts()];
    // The figures docs/cluster.md quotes (`cargo test -p chinwag-server --test cluster
    // mid_traffic -- --nocapture`).
    eprintln!(
        "sent 150: acknowledged {}, refused {refused}; (received, duplicates, connections): \
         phone {:?}, laptop {:?}",
        acknowledged.len(),
        counts[0],
        counts[1]
    );
    (acknowledged, refused, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_traffic_loses_nothing_acknowledged() {
    let (acknowledged, refused, [phone, laptop]) = traffic_through(Disruption::Kill).await;
    assert_eq!(
        acknowledged.len(),
        150,
        "bob's node stayed up: every send succeeded"
    );
    assert_eq!(refused, 0);
    assert_eq!(phone, (150, 0, 1), "the phone's node stayed up: each once");
    // The laptop's node died: it signs in at node 2 and reads the queue from the start, so
    // what it had before comes again (at least once), under the same ids.
    assert!(laptop.0 >= 150 && laptop.2 >= 2, "{laptop:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_mid_traffic_loses_nothing_acknowledged() {
    let (acknowledged, refused, [phone, laptop]) = traffic_through(Disruption::Stop).await;
    assert_eq!((acknowledged.len(), refused), (150, 0));
    assert_eq!(phone, (150, 0, 1));
    assert!(
        laptop.0 >= 150 && laptop.2 >= 2,
        "fenced: signed in elsewhere: {laptop:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_traffic_loses_nothing_acknowledged() {
    let (acknowledged, refused, [phone, laptop]) = traffic_through(Disruption::RedisRestart).await;
    assert_eq!(
        acknowledged.len() + refused,
        150,
        "every send answered: stored, or a `queue` error while Redis was down"
    );
    assert!(
        acknowledged.len() >= 100,
        "the sends after the restart succeed"
    );
    assert!(phone.0 >= acknowledged.len() && laptop.0 >= acknowledged.len());
}
