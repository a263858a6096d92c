//! Crash tests: a child process pushes (or appends to a history stream) as fast as it can and
//! prints each id (offset) once the call returned; we SIGKILL it at a random moment and check
//! that every printed id survived.
//!
//! The child is this test binary itself, re-executed with `CHILD_ENV` set and a filter that
//! runs only [`kill9_child`] (or [`kill9_history_child`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chinwag_queue::{Direction, History, HistoryConfig, Queue, QueueConfig, Retention};
use chinwag_queue_redb::{RedbHistory, RedbQueue};

const CHILD_ENV: &str = "CHINWAG_QUEUE_REDB_KILL9_STORE";
/// The `new_epoch` a history child passes: the round's, ignored after the first round.
const EPOCH_ENV: &str = "CHINWAG_QUEUE_REDB_KILL9_EPOCH";
const PRODUCERS: usize = 4;
const ROUNDS: usize = 5;

/// Not a test on its own: the child process of [`kill9_loses_nothing_pushed`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill9_loses_nothing_pushed, which runs it"]
async fn kill9_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        eprintln!("kill9_child does nothing unless run by kill9_loses_nothing_pushed");
        return;
    };
    let q = Arc::new(RedbQueue::open(path, QueueConfig::default()).expect("child: open store"));
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let q = Arc::clone(&q);
        tasks.push(tokio::spawn(async move {
            // Bounded so a parent that fails to kill us cannot fill the disk.
            for n in 0..1_000_000u64 {
                let id = q
                    .push(&format!("p{p}"), format!("p{p}-{n}").into(), None)
                    .await
                    .expect("child: push");
                // Printed only after push returned: the id is acknowledged.
                println!("pushed {p} {n} {id}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("child: producer task");
    }
}

fn random_below(n: u64) -> u64 {
    RandomState::new().build_hasher().finish() % n
}

/// Runs one round: starts `child` (a test of this binary) on the store at `path`, SIGKILLs it
/// after a random number of lines starting with `prefix`, and returns every such line it
/// printed (with the prefix stripped), split into numbers, lines in the pipe after the kill
/// included: those calls returned, so they are acknowledged too.
fn crash_round(child: &str, path: &Path, prefix: &str, round: usize) -> Vec<Vec<u64>> {
    let kill_after = 20 + random_below(400);
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .env(EPOCH_ENV, (round + 1).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut printed = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("reading the child's output");
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let f: Vec<u64> = rest
            .split(' ')
            .map(|x| x.parse().expect("child printed a malformed line"))
            .collect();
        printed.push(f);
        if !killed && printed.len() as u64 >= kill_after {
            child.kill().expect("SIGKILL the child");
            killed = true;
        }
    }
    let status = child.wait().expect("waiting for the child");
    assert!(
        killed && !status.success(),
        "round {round}: the child must be killed mid-run (status {status:?}, saw {} lines)",
        printed.len()
    );
    printed
}

#[test]
fn kill9_loses_nothing_pushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    // What every round printed, per producer: (n, id) in print order.
    let mut printed: Vec<Vec<(u64, u64)>> = vec![Vec::new(); PRODUCERS];
    for round in 0..ROUNDS {
        for f in crash_round("kill9_child", &path, "pushed ", round) {
            printed[f[0] as usize].push((f[1], f[2]));
        }

        // The store must open cleanly and hold every printed id, in order, with its payload.
        let q = RedbQueue::open(&path, QueueConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: store does not reopen after kill -9: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut max_id = 0;
            for (p, want) in printed.iter().enumerate() {
                let got = q
                    .read(&format!("p{p}"), 0, usize::MAX)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: read after crash: {e}"));
                assert!(
                    got.windows(2).all(|w| w[0].id < w[1].id),
                    "round {round}: ids out of order for producer {p}"
                );
                let mut it = got.iter();
                for &(n, id) in want {
                    let e = it.find(|e| e.id == id).unwrap_or_else(|| {
                        panic!("round {round}: producer {p} printed id {id} (n={n}) but it is lost")
                    });
                    assert_eq!(
                        e.payload,
                        format!("p{p}-{n}"),
                        "round {round}: id {id} has the wrong payload"
                    );
                }
                max_id = max_id.max(got.last().map_or(0, |e| e.id));
            }
            // The store still works, and ids keep increasing after the crash. (The extra
            // entry stays; later rounds look entries up by id.)
            let id = q
                .push("p0", "after".into(), None)
                .await
                .expect("push after crash");
            assert!(
                id > max_id,
                "round {round}: id {id} after crash must exceed {max_id}"
            );
        });
    }
    let total: usize = printed.iter().map(Vec::len).sum();
    eprintln!("kill9: {ROUNDS} rounds, {total} acknowledged pushes checked");
}

/// Not a test on its own: the child process of [`kill9_history_loses_nothing_appended`].
/// Producers append to one stream (so their appends share commits) under epoch 1 + the
/// round, which must be ignored after the first round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill9_history_loses_nothing_appended, which runs it"]
async fn kill9_history_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        eprintln!(
            "kill9_history_child does nothing unless run by kill9_history_loses_nothing_appended"
        );
        return;
    };
    let h = Arc::new(RedbHistory::open(path, HistoryConfig::default()).expect("child: open"));
    let epoch = std::env::var(EPOCH_ENV)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(1);
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            for n in 0..1_000_000u64 {
                let s = h
                    .append("room", &[format!("p{p}-{n}").into()], keep_all(), epoch)
                    .await
                    .expect("child: append");
                // Printed only after append returned: the offset is acknowledged.
                println!("appended {p} {n} {} {}", s.last, s.epoch);
            }
        }));
    }
    for t in tasks {
        t.await.expect("child: producer task");
    }
}

/// Keeps everything, so that every acknowledged offset must be found.
fn keep_all() -> Retention {
    Retention::new(u64::MAX, None)
}

#[test]
fn kill9_history_loses_nothing_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.redb");
    // offset -> payload, of everything printed in every round.
    let mut printed = std::collections::BTreeMap::new();
    for round in 0..ROUNDS {
        for f in crash_round("kill9_history_child", &path, "appended ", round) {
            let (p, n, offset, epoch) = (f[0], f[1], f[2], f[3]);
            assert_eq!(epoch, 1, "round {round}: the child saw another epoch");
            let old = printed.insert(offset, format!("p{p}-{n}"));
            assert!(
                old.is_none(),
                "round {round}: offset {offset} returned twice"
            );
        }
        let h = RedbHistory::open(&path, HistoryConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: store does not reopen after kill -9: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let page = h
                .read("room", 0, Direction::Forward, usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("round {round}: read after crash: {e}"))
                .unwrap_or_else(|| panic!("round {round}: the stream is gone"));
            assert_eq!(page.state.epoch, 1, "round {round}: the epoch changed");
            assert_eq!(page.state.first, 1, "round {round}: nothing is trimmed");
            let offsets: Vec<u64> = page.publications.iter().map(|x| x.offset).collect();
            assert_eq!(
                offsets,
                (1..=page.state.last).collect::<Vec<_>>(),
                "round {round}: offsets must be exactly 1..=last"
            );
            for (&offset, payload) in &printed {
                let got = page
                    .publications
                    .get(offset as usize - 1)
                    .map(|x| &x.payload);
                assert_eq!(
                    got.map(|p| String::from_utf8_lossy(p).into_owned())
                        .as_deref(),
                    Some(payload.as_str()),
                    "round {round}: offset {offset} was acknowledged but is lost or wrong"
                );
            }
            // The store still works: the next append continues after the last offset.
            let s = h
                .append("room", &["after".into()], keep_all(), 99)
                .await
                .expect("append after crash");
            assert_eq!(
                (s.epoch, s.last),
                (1, page.state.last + 1),
                "round {round}: append after crash"
            );
            printed.insert(s.last, "after".to_owned());
        });
    }
    eprintln!(
        "kill9 history: {ROUNDS} rounds, {} acknowledged offsets checked",
        printed.len()
    );
}
