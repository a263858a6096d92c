//! Sign-on policies under concurrent logins over real WebSocket connections: 100 logins of one
//! user at once end with exactly the policy's survivors — the newest in sign-on order — and
//! every replaced connection got the `bye` notification and close code 4003.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chinwag_hub::{App, Conn, Hub, SignOn};
use chinwag_ws::Engine;
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use common::*;

/// Records every sign-on: (device, connection id, place in sign-on order).
#[derive(Default)]
struct Record(Mutex<Vec<(String, u64, u64)>>);

impl App for Record {
    fn on_connect(&self, _hub: &Hub, conn: &Conn) {
        self.0.lock().unwrap().push((
            conn.device().device.to_string(),
            conn.id().0,
            conn.sign_on_seq(),
        ));
    }
}

async fn concurrent_logins<E: Engine>(policy: SignOn, devices: usize, survivors: usize) {
    let record = Arc::new(Record::default());
    let hub = Hub::builder()
        .config(config().with_sign_on(policy))
        .authenticator(authenticator())
        .app(record.clone())
        .build();
    let (door, url) = chat_ws::<E>(&hub).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = url.clone();
        let token = token("ada", &format!("d{}", i % devices));
        tasks.push(tokio::spawn(async move {
            Client::ws_bearer::<E>(&url, &token).await
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    // Exactly the replaced connections close: wait for that many closes.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    for c in &clients {
        let (peer, tx) = (c.peer.clone(), closed_tx.clone());
        tokio::spawn(async move {
            peer.closed().await;
            let _ = tx.send(());
        });
    }
    for _ in 0..100 - survivors {
        tokio::time::timeout(DEADLINE, closed_rx.recv())
            .await
            .expect("the replaced connections close within the deadline");
    }

    // The hub counts exactly the survivors at once (a replaced connection stops being one of
    // the user's connections the moment it is replaced), and they are the newest sign-ons.
    let live = hub.connections_of("ada");
    assert_eq!(live.len(), survivors, "{policy:?}");
    let rec = record.0.lock().unwrap().clone();
    assert_eq!(rec.len(), 100);
    let mut expected: Vec<u64> = if devices == 1 {
        let mut seqs: Vec<(u64, u64)> = rec.iter().map(|(_, id, s)| (*s, *id)).collect();
        seqs.sort();
        seqs.iter()
            .rev()
            .take(survivors)
            .map(|(_, id)| *id)
            .collect()
    } else {
        let mut newest: HashMap<&str, (u64, u64)> = HashMap::new();
        for (d, id, s) in &rec {
            let e = newest.entry(d).or_insert((*s, *id));
            if *s > e.0 {
                *e = (*s, *id);
            }
        }
        newest.values().map(|(_, id)| *id).collect()
    };
    let mut got: Vec<u64> = live.iter().map(|c| c.id().0).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "{policy:?}: the survivors are the newest");

    // Every replaced one got the bye and the close code; the survivors still work.
    let mut open = 0;
    for c in &mut clients {
        match c.peer.close_reason() {
            Some(d) => {
                assert_eq!(close_code(&d), Some(4003), "{d:?}");
                let bye = c.note_named("bye").await;
                assert_eq!(bye.body["code"], 4003);
                assert_eq!(bye.body["name"], "replaced");
                assert_eq!(bye.body["reconnect"], "never");
            }
            None => {
                let me = c.req("whoami", serde_json::json!({})).await.unwrap();
                assert_eq!(me["user"], "ada");
                assert!(got.contains(&me["conn"].as_u64().unwrap()));
                open += 1;
            }
        }
    }
    assert_eq!(open, survivors);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_keeps_only_the_newest_of_100_concurrent_logins() {
    concurrent_logins::<Tungstenite>(SignOn::Single, 1, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_device_keeps_the_newest_login_of_each_device() {
    concurrent_logins::<FastWebSockets>(SignOn::PerDevice, 10, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_keeps_the_newest_max_logins() {
    concurrent_logins::<Tungstenite>(SignOn::Multi { max: 5 }, 1, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_stops_counting_the_moment_it_is_replaced() {
    let hub = Hub::builder()
        .config(config())
        .authenticator(authenticator())
        .build();
    let (door, addr) = chat_tcp(&hub);
    let _old = Client::tcp(addr, Some(&token("ada", "phone"))).await;
    let _new = Client::tcp(addr, Some(&token("ada", "laptop"))).await;
    // Whatever the old connection's client does with its close, the hub no longer counts it: a
    // send reaches exactly the new one, and nothing is reported failed.
    assert_eq!(hub.connections_of("ada").len(), 1);
    let r = hub
        .send(
            "ada",
            chinwag_hub::Body::text("hi"),
            chinwag_hub::SendOptions::live_only(),
        )
        .await
        .unwrap();
    assert_eq!((r.delivered, r.failed), (1, 0));
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// What a cluster directory calls on the node a replacement names: the connection gets the
/// same bye and close code as one replaced on its own node; ids of another user, unknown or
/// already closing are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_replaced_closes_a_local_connection_another_node_replaced() {
    let hub = Hub::builder()
        .config(config())
        .authenticator(authenticator())
        .build();
    let (door, addr) = chat_tcp(&hub);
    let mut ada = Client::tcp(addr, Some(&token("ada", "phone"))).await;
    let bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    let ada_id = chinwag_hub::ConnId(ada.whoami().await["conn"].as_u64().unwrap());
    let bob_id = chinwag_hub::ConnId(bob.whoami().await["conn"].as_u64().unwrap());
    let mut all: Vec<_> = hub.local_connections().iter().map(|c| c.id()).collect();
    all.sort();
    assert_eq!(all, [ada_id, bob_id]);

    let closed = hub.close_replaced("ada", &[ada_id, bob_id, chinwag_hub::ConnId(999)]);
    assert_eq!(closed, 1, "only ada's own connection");
    let bye = ada.bye().await;
    assert_eq!(bye["code"], 4003);
    assert_eq!(bye["name"], "replaced");
    // TCP carries no close code (the bye did); the connection ends.
    ada.closed().await;
    assert_eq!(
        hub.close_replaced("ada", &[ada_id]),
        0,
        "already closing or gone"
    );
    assert!(hub.connections_of("ada").is_empty());
    assert_eq!(bob.whoami().await["user"], "bob");
    assert_eq!(hub.local_connections().len(), 1);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}
