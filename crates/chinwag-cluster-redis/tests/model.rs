//! The model test of the sign-on script: random sequences of sign-ons and sign-offs (several
//! users, devices and nodes, all three policies) go through both `RedisSignOns` on a real
//! redis-server and the one-node `SignOnTable`, and every step must agree: the connections a
//! sign-on replaces (which, their devices, their order), what a sign-off reports, and every
//! user's remaining connections in order.

mod common;

use std::collections::HashMap;

use chinwag_cluster_redis::RedisSignOns;
use chinwag_hub::{ConnId, ConnRef, Device, NodeId, SignOn, SignOnTable, SignedOn};
use common::redis_server;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;

/// Users and devices with the characters that could trip a key or a field: a brace (the hash
/// tag), a colon (the separator of fields and values), non-ASCII.
const USERS: [&str; 3] = ["alice", "b}o{b", "ça va"];
const DEVICES: [&str; 3] = ["phone", "lap:top", "📟"];

#[derive(Debug, Clone)]
enum Op {
    On {
        user: usize,
        device: usize,
        node: u64,
        policy: SignOn,
    },
    /// Signs off the `pick`-th connection ever signed on (modulo their number), under `user`
    /// (so also replaced connections, and connections of another user).
    Off { user: usize, pick: usize },
}

fn policy() -> impl Strategy<Value = SignOn> {
    prop_oneof![
        Just(SignOn::Single),
        Just(SignOn::PerDevice),
        (0usize..4).prop_map(|max| SignOn::Multi { max }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS.len(), 0..DEVICES.len(), 0u64..3, policy()).prop_map(
            |(user, device, node, policy)| Op::On { user, device, node, policy }
        ),
        1 => (0..USERS.len(), any::<usize>()).prop_map(|(user, pick)| Op::Off { user, pick }),
    ]
}

/// What can be compared between the two: the connection and its device. Seqs differ by
/// design (the table's are global, Redis's per user) and are checked separately.
fn view(list: &[SignedOn]) -> Vec<(ConnRef, String)> {
    list.iter()
        .map(|s| (s.conn, s.device.to_string()))
        .collect()
}

async fn run_case(conn: MultiplexedConnection, prefix: &str, ops: &[Op]) -> Result<(), String> {
    let store = RedisSignOns::with_prefix(conn, prefix).map_err(|e| e.to_string())?;
    let mut table = SignOnTable::new();
    // Every connection signed on so far, and the seq Redis gave it.
    let mut issued: Vec<ConnRef> = Vec::new();
    let mut redis_seq: HashMap<ConnRef, u64> = HashMap::new();
    let mut sign_ons = [0u64; USERS.len()];
    for (step, op) in ops.iter().enumerate() {
        let at = |what: &str| format!("step {step} ({op:?}): {what}");
        match *op {
            Op::On {
                user,
                device,
                node,
                policy,
            } => {
                let d = Device::new(USERS[user], DEVICES[device]);
                let c = ConnRef {
                    node: NodeId(node),
                    conn: ConnId(issued.len() as u64),
                };
                let want = table.sign_on(&d, c, policy);
                let got = store
                    .sign_on(&d, c, policy)
                    .await
                    .map_err(|e| at(&e.to_string()))?;
                if view(&got.replaced) != view(&want.replaced) {
                    return Err(at(&format!(
                        "replaced {:?}, the table replaced {:?}",
                        got.replaced, want.replaced
                    )));
                }
                for r in &got.replaced {
                    if Some(&r.seq) != redis_seq.get(&r.conn) {
                        return Err(at(&format!("replaced {r:?} with a seq it was not given")));
                    }
                }
                sign_ons[user] += 1;
                if got.seq != sign_ons[user] {
                    return Err(at(&format!(
                        "seq {} for the user's sign-on number {}",
                        got.seq, sign_ons[user]
                    )));
                }
                redis_seq.insert(c, got.seq);
                issued.push(c);
            }
            Op::Off { user, pick } => {
                let c = if issued.is_empty() {
                    ConnRef {
                        node: NodeId(0),
                        conn: ConnId(u64::MAX),
                    }
                } else {
                    issued[pick % issued.len()]
                };
                let want = table.sign_off(USERS[user], c);
                let got = store
                    .sign_off(USERS[user], c)
                    .await
                    .map_err(|e| at(&e.to_string()))?;
                if got != want {
                    return Err(at(&format!("sign_off said {got}, the table {want}")));
                }
            }
        }
        for user in USERS {
            let want = table.connections(user);
            let got = store
                .connections(user)
                .await
                .map_err(|e| at(&e.to_string()))?;
            if view(&got) != view(want) {
                return Err(at(&format!("{user:?} has {got:?}, in the table {want:?}")));
            }
            if got.iter().any(|s| Some(&s.seq) != redis_seq.get(&s.conn)) {
                return Err(at(&format!("{user:?}'s seqs changed: {got:?}")));
            }
        }
    }
    Ok(())
}

#[test]
fn the_sign_on_script_agrees_with_the_one_node_table() {
    let server = redis_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = rt.block_on(async {
        redis::Client::open(server.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    });
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u64);
    let result = runner.run(&prop::collection::vec(op(), 1..32), |ops| {
        // A fresh prefix per case (shrinking reruns cases too): every case starts empty.
        case.set(case.get() + 1);
        let prefix = format!("model:{}:", case.get());
        rt.block_on(run_case(conn.clone(), &prefix, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
