//! Crash tests of the hub on redb: a child process runs a hub and its chat door, with the redb
//! offline queue and the redb room history.
//!
//! * We send direct messages for an offline user and note every id the hub answered as
//!   `queued`; we SIGKILL the child mid-stream, start a new child on the same store, sign the
//!   user in and check that every noted message is delivered.
//! * We publish to a room and note every `seq` the hub answered; after the SIGKILL, a member
//!   that saw the room up to some seq before the crash joins the new child with `since`: it
//!   recovers, and every answered publish is among what it gets.
//!
//! The child is this test binary itself, re-executed with `CHILD_ENV` set and a filter that runs
//! only this test, which then plays the child's part.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chinwag_hub::{Hub, RoomHistory};
use chinwag_queue::{HistoryConfig, QueueConfig};
use chinwag_queue_redb::{RedbHistory, RedbQueue};
use common::*;
use serde_json::json;

const CHILD_ENV: &str = "CHINWAG_HUB_KILL9_STORE";

/// The child's part: a hub on the queue at `path` and the history beside it, serving until
/// killed. Rooms keep (and a join recovers) everything the test publishes.
async fn run_child(path: String) {
    let history = RedbHistory::open(format!("{path}.history"), HistoryConfig::default())
        .expect("child: open history");
    let queue = RedbQueue::open(path, QueueConfig::default()).expect("child: open store");
    let keep_all = RoomHistory::default()
        .with_max_len(u64::MAX)
        .with_max_age(None)
        .with_max_recover(u64::MAX);
    let hub = Hub::builder()
        .config(config().with_history(keep_all))
        .authenticator(authenticator())
        .queue(Arc::new(queue))
        .history(Arc::new(history))
        .build();
    let (_door, addr) = chat_tcp(&hub);
    println!("listening {addr}");
    // Until killed.
    std::future::pending::<()>().await;
}

fn spawn_child(path: &std::path::Path, test: &str) -> (Child, std::net::SocketAddr) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().expect("child stdout");
    // Read on a thread, so a child that never says where it listens fails the test in time.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // The harness prints `test every_queued_message_survives_kill_9 ... ` first.
            if let Some((_, a)) = line.split_once("listening ") {
                let _ = tx.send(a.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the child printed its address within 60 s")
        .parse()
        .expect("an address");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queued_message_survives_kill_9() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return run_child(path).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let (mut child, addr) = spawn_child(&path, "every_queued_message_survives_kill_9");

    // Four senders, concurrently, each noting what the hub answered as queued.
    let mut tasks = Vec::new();
    for s in 0..4 {
        tasks.push(tokio::spawn(async move {
            let c = Client::tcp(addr, Some(&token(&format!("sender{s}"), "d"))).await;
            let mut queued = Vec::new();
            for n in 0..100_000 {
                let r = tokio::time::timeout(
                    DEADLINE,
                    c.peer.request::<_, serde_json::Value>(
                        "send",
                        &json!({ "to": "bob", "body": format!("{s}-{n}") }),
                    ),
                )
                .await
                .expect("an answer or a broken connection");
                match r {
                    Ok(v) => {
                        assert_eq!(v["queued"], true);
                        queued.push(v["id"].as_u64().unwrap());
                    }
                    // The child was killed.
                    Err(_) => break,
                }
            }
            queued
        }));
    }
    // Kill it in the middle of the stream, once a good number were answered: our own 300
    // sends (also to bob, also noted) mark the moment.
    let probe = Client::tcp(addr, Some(&token("probe", "d"))).await;
    let mut noted = BTreeSet::new();
    for n in 0..300 {
        let r = probe
            .req("send", json!({ "to": "bob", "body": format!("probe-{n}") }))
            .await
            .unwrap();
        assert_eq!(r["queued"], true);
        noted.insert(r["id"].as_u64().unwrap());
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("waiting for the child");
    assert!(!status.success(), "the child was killed: {status:?}");
    for t in tasks {
        noted.extend(t.await.unwrap());
    }
    assert!(
        noted.len() > 300,
        "the senders got answers before the kill: {}",
        noted.len()
    );
    assert!(noted.len() < 400_000, "the kill came mid-stream");

    // A new hub on the same store delivers every one of them to bob.
    let (mut child, addr) = spawn_child(&path, "every_queued_message_survives_kill_9");
    let mut bob = Client::tcp(addr, Some(&token("bob", "phone"))).await;
    let mut missing = noted.clone();
    let mut last = 0;
    while !missing.is_empty() {
        let m = bob.note_named("message").await;
        let id = m.body["id"].as_u64().unwrap();
        assert!(id > last, "replayed in order");
        last = id;
        missing.remove(&id);
    }
    child.kill().expect("stopping the second child");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_publish_survives_kill_9_and_recovery_spans_the_crash() {
    const TEST: &str = "every_answered_publish_survives_kill_9_and_recovery_spans_the_crash";
    if let Ok(path) = std::env::var(CHILD_ENV) {
        return run_child(path).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let (mut child, addr) = spawn_child(&path, TEST);
    // A member that watches the room until the crash.
    let mut watcher = Client::tcp(addr, Some(&token("watcher", "d"))).await;
    let joined = watcher.req("join", json!({"room": "r"})).await.unwrap();
    let epoch = joined["epoch"].as_u64().unwrap();
    // Four publishers, each noting the seq of every publish the hub answered.
    let mut tasks = Vec::new();
    for p in 0..4 {
        tasks.push(tokio::spawn(async move {
            let c = Client::tcp(addr, Some(&token(&format!("publisher{p}"), "d"))).await;
            c.req("join", json!({"room": "r"})).await.unwrap();
            let mut answered = Vec::new();
            for n in 0..100_000 {
                let r = tokio::time::timeout(
                    DEADLINE,
                    c.peer.request::<_, serde_json::Value>(
                        "publish",
                        &json!({ "room": "r", "body": format!("{p}-{n}") }),
                    ),
                )
                .await
                .expect("an answer or a broken connection");
                match r {
                    Ok(v) => answered.push(v["seq"].as_u64().unwrap()),
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    // The watcher sees the first 200, then the child is killed.
    let mut seen = 0;
    while seen < 200 {
        let n = watcher.note_named("room").await;
        assert_eq!(n.body["epoch"], epoch);
        seen = n.body["seq"].as_u64().unwrap();
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("waiting for the child");
    assert!(!status.success(), "the child was killed: {status:?}");
    let mut answered = BTreeSet::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    // The watcher saw 200 kept and sent; the answers of the last few may have been in flight
    // when the child died, so not all 200 were necessarily answered.
    assert!(
        answered.len() >= 100,
        "answers before the kill: {}",
        answered.len()
    );
    drop(watcher);

    // The new child on the same files: the watcher comes back from before the crash.
    let (mut child, addr) = spawn_child(&path, TEST);
    let mut watcher = Client::tcp(addr, Some(&token("watcher", "d"))).await;
    let r = watcher
        .req(
            "join",
            json!({"room": "r", "since": {"epoch": epoch, "seq": seen}}),
        )
        .await
        .unwrap();
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(r["epoch"], epoch, "the room's epoch survived the crash");
    let last = r["seq"].as_u64().unwrap();
    assert_eq!(r["missed"].as_u64(), Some(last - seen));
    let mut got = Vec::new();
    while got.len() as u64 != last - seen {
        let n = watcher.note_named("room").await;
        got.push(n.body["seq"].as_u64().unwrap());
    }
    assert_eq!(
        got,
        (seen + 1..=last).collect::<Vec<u64>>(),
        "in order, whole"
    );
    let lost: Vec<u64> = answered.iter().copied().filter(|s| *s > last).collect();
    assert!(
        lost.is_empty(),
        "answered publishes missing after the crash: {lost:?}"
    );
    child.kill().expect("stopping the second child");
    let _ = child.wait();
}
