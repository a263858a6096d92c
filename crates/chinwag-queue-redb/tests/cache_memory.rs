//! redb's page cache is bounded by [`RedbOptions::cache_size`]: a queue filled with eight
//! times the cache in payload bytes, then read back a page at a time and acknowledged, grows
//! the process by less than the cache plus a fixed slack ([`SLACK`]). A control run with
//! redb's own default cache (1 GiB) grows by more than that bound, so the measurement can tell
//! the two apart.
//!
//! Each measurement runs in a child process (this test binary, re-executed with `CHILD_ENV`
//! set and a filter that runs only [`cache_child`]), so that neither the other run nor the
//! test harness blurs it. The child reads its resident memory from `/proc/self/status` as
//! `crates/chinwag-rpc/tests/hostile_memory.rs` does, taking the peak (`VmHWM`) against the
//! resident size before the flood (`VmRSS`), so nothing needs to sample.
//!
//! The child runs with `MALLOC_ARENA_MAX=1`. With glibc's default of one arena per thread,
//! pages that redb's cache allocates on one of tokio's blocking threads and evicts on another
//! are kept by the allocator for a while, and the read-back adds allocator retention that is
//! not the cache's (measured: +29.6 MiB over the 8 MiB cache for 64 MiB read back, +37.5 MiB
//! for 128 MiB). One arena measures the cache; the shipped binaries use jemalloc, whose
//! figures are in `docs/BENCHMARKS.md` ("redb's page cache").

use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use chinwag_queue::{Queue, QueueConfig, SystemClock};
use chinwag_queue_redb::{RedbOptions, RedbQueue};

const CHILD_ENV: &str = "CHINWAG_QUEUE_REDB_CACHE_CHILD";
const MIB: usize = 1 << 20;
/// The cache under test (small, so that eight times it fills quickly in a debug build).
const CACHE: usize = 8 * MIB;
/// Payload bytes pushed: eight times the cache.
const FILL: usize = 8 * CACHE;
/// The hub's largest message body.
const PAYLOAD: usize = 64 * 1024;
const PRODUCERS: usize = 8;
/// What the process may grow by besides the cache: payloads in flight (one per producer and
/// a page of 64 read back: 4 MiB), the writer's batch, redb's own state and the allocator's
/// overhead. Measured: 13.2 MiB (the pushes alone 9.2 MiB), 5.2 MiB over the cache; the
/// control with a 1 GiB cache grew 137 MiB (the pushes alone 133 MiB).
const SLACK: usize = 12 * MIB;

/// A line of `/proc/self/status` in KiB (Linux).
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// Not a test on its own: the child process of [`redb_cache_bounds_memory`], which runs it.
/// Fills a queue, reads it back page by page, acknowledges it, and prints how much the
/// process grew at its peak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of redb_cache_bounds_memory, which runs it"]
async fn cache_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("cache_child does nothing unless run by redb_cache_bounds_memory");
        return;
    };
    let (cache, path) = spec.split_once(' ').expect("child: '<cache bytes> <path>'");
    let cache: usize = cache.parse().expect("child: cache size");
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(u64::MAX)
        .with_max_bytes_per_recipient(u64::MAX)
        .with_max_total_bytes(u64::MAX);
    let q = Arc::new(
        RedbQueue::open_with(
            path,
            config,
            RedbOptions::default().with_cache_size(cache),
            Arc::new(SystemClock),
        )
        .expect("child: open store"),
    );
    let before = status_kib("VmRSS:");

    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    let per_producer = FILL / PAYLOAD / PRODUCERS;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = Arc::clone(&q);
            let payload = payload.clone();
            tokio::spawn(async move {
                for _ in 0..per_producer {
                    q.push(&format!("user{p}"), payload.clone(), None)
                        .await
                        .expect("child: push");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("child: producer");
    }
    let after_push = status_kib("VmHWM:").saturating_sub(before);
    let mut read = 0;
    for p in 0..PRODUCERS {
        let who = format!("user{p}");
        let mut after = 0;
        loop {
            let page = q.read(&who, after, 64).await.expect("child: read");
            let Some(last) = page.last() else { break };
            after = last.id;
            read += page.len();
        }
        q.ack(&who, after).await.expect("child: ack");
    }
    assert_eq!(read, FILL / PAYLOAD, "child: entries read back");
    assert_eq!(q.len("user0").await.expect("child: len"), 0);
    let peak = status_kib("VmHWM:").saturating_sub(before);
    // The peak first (the parent reads it), then the peak of the pushes alone.
    println!("grew {peak} KiB (pushes alone: {after_push} KiB)");
}

/// Runs [`cache_child`] with `cache` bytes of page cache; returns its peak growth in KiB and
/// its report.
fn child_growth(cache: usize) -> (u64, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.redb");
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "cache_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{cache} {}", path.display()))
        .env("MALLOC_ARENA_MAX", "1")
        .stderr(Stdio::inherit())
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .find_map(|l| {
            let report = l.split_once("grew ")?.1;
            Some((
                report.split_once(" KiB")?.0.parse().ok()?,
                report.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no growth line in the child's output: {stdout}"))
}

#[test]
fn redb_cache_bounds_memory() {
    let allowed = ((CACHE + SLACK) / 1024) as u64;
    let (grew, report) = child_growth(CACHE);
    println!(
        "{} MiB pushed, read and acked with a {} MiB cache: grew {report} (allowed {allowed} KiB)",
        FILL / MIB,
        CACHE / MIB
    );
    assert!(
        grew < allowed,
        "grew {grew} KiB with a {} MiB cache",
        CACHE / MIB
    );

    // The control: redb's own default cache keeps what the flood brought in.
    let (grew, report) = child_growth(1 << 30);
    println!("the same with redb's default 1 GiB cache: grew {report}");
    assert!(
        grew > allowed,
        "the control grew only {grew} KiB: the test cannot tell a bounded cache"
    );
}
