//! Sign-ons across nodes on a real redis-server: concurrent sign-ons of one user from three
//! "nodes" (three separate connections), the key layout, and bad input.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use chinwag_cluster_redis::{ClusterError, RedisSignOns};
use chinwag_hub::{ConnId, ConnRef, Device, NodeId, SignOn, SignOnTable, SignedOn};
use chinwag_queue_redis::test_server::RedisServer;
use common::redis_server;
use redis::aio::MultiplexedConnection;
use tokio::sync::Barrier;

const SIGN_ONS: u64 = 100;
const NODES: u64 = 3;

async fn connect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// One store per node, each on its own connection.
async fn nodes(server: &RedisServer) -> Vec<RedisSignOns<MultiplexedConnection>> {
    let mut v = Vec::new();
    for _ in 0..NODES {
        v.push(RedisSignOns::new(connect(server).await));
    }
    v
}

fn conn(i: u64) -> ConnRef {
    ConnRef {
        node: NodeId(i % NODES),
        conn: ConnId(i),
    }
}

/// Sign-on `i` of `user` from node `i % 3` under `policy`, device `d{i % devices}`, all
/// released at once; returns each sign-on's device, connection and outcome.
async fn concurrent(
    server: &RedisServer,
    user: &str,
    devices: u64,
    policy: SignOn,
) -> Vec<(Device, ConnRef, chinwag_hub::SignOnOutcome)> {
    let nodes = nodes(server).await;
    let start = Arc::new(Barrier::new(SIGN_ONS as usize));
    let mut tasks = Vec::new();
    for i in 0..SIGN_ONS {
        let store = nodes[(i % NODES) as usize].clone();
        let start = start.clone();
        let device = Device::new(user, format!("d{}", i % devices));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let out = store.sign_on(&device, conn(i), policy).await;
            (device, conn(i), out.expect("sign-on"))
        }));
    }
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await.expect("task"));
    }
    outs
}

/// Redis ran the sign-ons one at a time: their seqs are 1..=100 and replaying them in that
/// order through the one-node table gives exactly the outcomes Redis gave, and the same
/// survivors.
async fn check_linearizable(
    store: &RedisSignOns<MultiplexedConnection>,
    user: &str,
    policy: SignOn,
    mut outs: Vec<(Device, ConnRef, chinwag_hub::SignOnOutcome)>,
) -> Vec<SignedOn> {
    outs.sort_by_key(|(_, _, o)| o.seq);
    let seqs: Vec<u64> = outs.iter().map(|(_, _, o)| o.seq).collect();
    assert_eq!(seqs, (1..=SIGN_ONS).collect::<Vec<_>>());
    let mut table = SignOnTable::new();
    let mut replaced_by: HashMap<ConnRef, Vec<u64>> = HashMap::new();
    for (device, c, out) in &outs {
        let want = table.sign_on(device, *c, policy);
        let got: Vec<_> = out.replaced.iter().map(|s| (s.conn, &s.device)).collect();
        let want: Vec<_> = want.replaced.iter().map(|s| (s.conn, &s.device)).collect();
        assert_eq!(got, want, "sign-on {c:?} (seq {})", out.seq);
        for r in &out.replaced {
            replaced_by.entry(r.conn).or_default().push(out.seq);
        }
    }
    let left = store.connections(user).await.expect("connections");
    let want: Vec<_> = table.connections(user).iter().map(|s| s.conn).collect();
    assert_eq!(left.iter().map(|s| s.conn).collect::<Vec<_>>(), want);
    // Every connection is either still signed on or was replaced exactly once, never both.
    for (_, c, _) in &outs {
        let times = replaced_by.get(c).map_or(0, Vec::len);
        let stays = left.iter().any(|s| s.conn == *c);
        assert_eq!(times + usize::from(stays), 1, "{c:?}");
    }
    left
}

/// The one-node semantics, cluster-wide: under `Single` nobody is refused (newest wins), 100
/// concurrent sign-ons of one user from three nodes leave exactly one connection, the one
/// Redis ran last, and every other was reported replaced exactly once, by the sign-on Redis
/// ran right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_sign_ons_over_three_nodes_leave_exactly_one() {
    let server = redis_server();
    let outs = concurrent(&server, "dora", 4, SignOn::Single).await;
    let by_seq: HashMap<u64, ConnRef> = outs.iter().map(|(_, c, o)| (o.seq, *c)).collect();
    for (_, _, out) in &outs {
        let replaced: Vec<_> = out.replaced.iter().map(|s| (s.conn, s.seq)).collect();
        if out.seq == 1 {
            assert!(replaced.is_empty());
        } else {
            assert_eq!(replaced, [(by_seq[&(out.seq - 1)], out.seq - 1)]);
        }
    }
    let store = RedisSignOns::new(connect(&server).await);
    let left = check_linearizable(&store, "dora", SignOn::Single, outs).await;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].conn, left[0].seq), (by_seq[&SIGN_ONS], SIGN_ONS));
    // Signing off a replaced connection changes nothing; the survivor's takes the user offline.
    for i in 0..SIGN_ONS {
        let last = conn(i) == left[0].conn;
        assert_eq!(store.sign_off("dora", conn(i)).await.unwrap(), last);
    }
    assert!(store.connections("dora").await.unwrap().is_empty());
}

/// `Multi { max: 3 }`: the three newest stay, sign-on k replaced sign-on k - 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_multi_sign_ons_keep_the_newest_three() {
    let server = redis_server();
    let policy = SignOn::Multi { max: 3 };
    let outs = concurrent(&server, "erin", 1, policy).await;
    let store = RedisSignOns::new(connect(&server).await);
    let left = check_linearizable(&store, "erin", policy, outs).await;
    let seqs: Vec<u64> = left.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [SIGN_ONS - 2, SIGN_ONS - 1, SIGN_ONS]);
}

/// `PerDevice` over four devices: the newest of each device stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_per_device_sign_ons_keep_the_newest_of_each_device() {
    let server = redis_server();
    let outs = concurrent(&server, "finn", 4, SignOn::PerDevice).await;
    let store = RedisSignOns::new(connect(&server).await);
    let left = check_linearizable(&store, "finn", SignOn::PerDevice, outs).await;
    let mut devices: Vec<&str> = left.iter().map(|s| &*s.device).collect();
    devices.sort_unstable();
    assert_eq!(devices, ["d0", "d1", "d2", "d3"]);
}

/// The layout `docs/cluster.md` describes: one hash per user, hash-tagged by the user id.
#[tokio::test]
async fn one_hash_per_user_with_the_user_as_hash_tag() {
    let server = redis_server();
    let mut raw = connect(&server).await;
    let store = RedisSignOns::with_prefix(raw.clone(), "app:").unwrap();
    assert_eq!(store.key("gus"), "app:{gus}:s");
    let c = ConnRef {
        node: NodeId(7),
        conn: ConnId(42),
    };
    store
        .sign_on(&Device::new("gus", "phone"), c, SignOn::Single)
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys, ["app:{gus}:s"]);
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("app:{gus}:s")
        .query_async(&mut raw)
        .await
        .unwrap();
    let want = HashMap::from([
        ("n".to_owned(), "1".to_owned()),
        ("7:42".to_owned(), "1:phone".to_owned()),
    ]);
    assert_eq!(hash, want);
    // Offline, the counter stays: the next sign-on of gus is seq 2.
    assert!(store.sign_off("gus", c).await.unwrap());
    let out = store
        .sign_on(&Device::new("gus", "laptop"), c, SignOn::Single)
        .await
        .unwrap();
    assert_eq!(out.seq, 2);
    // The scripts run by EVALSHA and load themselves again when Redis forgot them.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let out = store
        .sign_on(&Device::new("gus", "tablet"), conn(1), SignOn::Single)
        .await
        .unwrap();
    assert_eq!(out.replaced.len(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let server = redis_server();
    let mut raw = connect(&server).await;
    let store = RedisSignOns::new(raw.clone());
    let c = conn(1);

    let long = "u".repeat(1025);
    let e = store
        .sign_on(&Device::new(long.as_str(), "d"), c, SignOn::Single)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::BadUser(id) if id.reason() == "too_long"),
        "{e}"
    );
    assert!(e.to_string().starts_with("bad user id"), "{e}");
    assert!(!e.is_unavailable());
    assert!(matches!(
        store.sign_off(&long, c).await,
        Err(ClusterError::BadUser(_))
    ));
    assert!(matches!(
        store.connections(&long).await,
        Err(ClusterError::BadUser(_))
    ));
    assert!(matches!(
        store.connections("").await,
        Err(ClusterError::BadUser(id)) if id.reason() == "empty"
    ));
    let e = store
        .sign_on(&Device::new("hal", "a\nb"), c, SignOn::Single)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::BadDevice(id) if id.reason() == "control"),
        "{e}"
    );
    let e = store
        .sign_on(&Device::new("hal", "d".repeat(257)), c, SignOn::Single)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClusterError::BadDevice(id) if id.reason() == "too_long"),
        "{e}"
    );
    // The longest ids are fine.
    let longest = "u".repeat(1024);
    store
        .sign_on(
            &Device::new(longest.as_str(), "d".repeat(256)),
            c,
            SignOn::Single,
        )
        .await
        .unwrap();
    assert_eq!(store.connections(&longest).await.unwrap().len(), 1);

    // A prefix that would change the hash tag.
    let e = RedisSignOns::with_prefix(raw.clone(), "a{b}:").unwrap_err();
    assert!(matches!(e, ClusterError::BadPrefix(_)), "{e}");

    // The same connection twice: refused, nothing changes.
    let d = Device::new("hal", "phone");
    store
        .sign_on(&d, c, SignOn::Multi { max: 5 })
        .await
        .unwrap();
    let e = store
        .sign_on(&d, c, SignOn::Multi { max: 5 })
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::AlreadySignedOn(x) if x == c),
        "{e}"
    );
    let left = store.connections("hal").await.unwrap();
    assert_eq!(
        left.iter().map(|s| (s.conn, s.seq)).collect::<Vec<_>>(),
        [(c, 1)]
    );

    // Data this crate did not write: an error, never a panic, and the failed script changed
    // nothing (it checks before it writes).
    let () = redis::cmd("HSET")
        .arg(store.key("ivy"))
        .arg("1:1")
        .arg("garbage")
        .query_async(&mut raw)
        .await
        .unwrap();
    let e = store.connections("ivy").await.unwrap_err();
    assert!(matches!(e, ClusterError::Corrupt(_)), "{e}");
    let e = store
        .sign_on(&Device::new("ivy", "d"), conn(5), SignOn::Single)
        .await
        .unwrap_err();
    assert!(matches!(e, ClusterError::Redis(_)), "{e}");
    let n: Option<String> = redis::cmd("HGET")
        .arg(store.key("ivy"))
        .arg("n")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, None);

    // Redis gone: a Redis error, marked as worth a retry.
    drop(server);
    let e = store
        .sign_on(&d, conn(2), SignOn::Single)
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(store.connections("hal").await.unwrap_err().is_unavailable());
}
