//! Crash test of the hub with the redb offline queue: a child process runs a hub and its chat
//! door; we send it direct messages for an offline user and note every id the hub answered as
//! `queued`; we SIGKILL the child mid-stream, start a new child on the same store, sign the user
//! in and check that every noted message is delivered.
//!
//! The child is this test binary itself, re-executed with `CHILD_ENV` set and a filter that runs
//! only this test, which then plays the child's part.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chinwag_queue::QueueConfig;
use chinwag_queue_redb::RedbQueue;
use common::*;
use serde_json::json;

const CHILD_ENV: &str = "CHINWAG_HUB_KILL9_STORE";

/// The child's part: a hub on the store at `path`, serving until killed.
async fn run_child(path: String) {
    let queue = RedbQueue::open(path, QueueConfig::default()).expect("child: open store");
    let hub = hub(config(), Some(Arc::new(queue)));
    let (_door, addr) = chat_tcp(&hub);
    println!("listening {addr}");
    // Until killed.
    std::future::pending::<()>().await;
}

fn spawn_child(path: &std::path::Path) -> (Child, std::net::SocketAddr) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "every_queued_message_survives_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
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
    let (mut child, addr) = spawn_child(&path);

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
    let (mut child, addr) = spawn_child(&path);
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
