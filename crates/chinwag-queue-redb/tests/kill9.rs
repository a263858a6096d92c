//! Crash test: a child process pushes as fast as it can and prints each id once `push`
//! returned; we SIGKILL it at a random moment and check that every printed id survived.
//!
//! The child is this test binary itself, re-executed with `CHILD_ENV` set and a filter that
//! runs only [`kill9_child`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chinwag_queue::{Queue, QueueConfig};
use chinwag_queue_redb::RedbQueue;

const CHILD_ENV: &str = "CHINWAG_QUEUE_REDB_KILL9_STORE";
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

#[test]
fn kill9_loses_nothing_pushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("current_exe");
    // What every round printed, per producer: (n, id) in print order.
    let mut printed: Vec<Vec<(u64, u64)>> = vec![Vec::new(); PRODUCERS];
    for round in 0..ROUNDS {
        let kill_after = 20 + random_below(400);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the child");
        let stdout = child.stdout.take().expect("child stdout");
        let lines = BufReader::new(stdout).lines();
        let mut seen = 0u64;
        let mut killed = false;
        // Read until EOF: after the kill, lines already in the pipe are still acknowledged
        // pushes and must be checked too.
        for line in lines {
            let line = line.expect("reading the child's output");
            let Some(rest) = line.strip_prefix("pushed ") else {
                continue;
            };
            let f: Vec<u64> = rest
                .split(' ')
                .map(|x| x.parse().expect("child printed a malformed line"))
                .collect();
            let (p, n, id) = (f[0] as usize, f[1], f[2]);
            printed[p].push((n, id));
            seen += 1;
            if !killed && seen >= kill_after {
                child.kill().expect("SIGKILL the child");
                killed = true;
            }
        }
        let status = child.wait().expect("waiting for the child");
        assert!(
            killed && !status.success(),
            "round {round}: the child must be killed mid-run (status {status:?}, saw {seen} lines)"
        );

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
