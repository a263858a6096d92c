//! A reconnect storm's reads do not make a thread each (issue 21): 1 000 concurrent reads of a
//! redb queue raise the process's thread count by at most [`MAX_CONCURRENT_READS`], however
//! many callers wait. Without the bound each read would take a blocking-pool thread of its own
//! while the others run (tokio's pool grows to 512), which is what 1 500 reconnecting users did
//! to chinwag-server. Alone in its own test binary: a thread count is the whole process's.

use std::sync::Arc;

use chinwag_queue::{Queue, QueueConfig};
use chinwag_queue_redb::{MAX_CONCURRENT_READS, RedbQueue};

/// The process's thread count (`Threads:` of `/proc/self/status`).
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_read_storm_uses_a_few_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let q = Arc::new(
            RedbQueue::open(dir.path().join("offline.redb"), QueueConfig::default()).unwrap(),
        );
        for u in 0..100 {
            q.push(&format!("user{u}"), "while you were away".into(), None)
                .await
                .unwrap();
        }
        let before = threads();
        let reads: Vec<_> = (0..1000)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(async move { q.read(&format!("user{}", i % 100), 0, 10).await })
            })
            .collect();
        for r in reads {
            assert_eq!(r.await.unwrap().unwrap().len(), 1);
        }
        // The blocking pool keeps its threads for 10 s after their last task, so the count
        // after the storm is the most it made.
        let after = threads();
        assert!(
            after <= before + MAX_CONCURRENT_READS,
            "{before} threads before 1 000 concurrent reads, {after} after"
        );
    });
}
