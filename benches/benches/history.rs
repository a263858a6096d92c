//! Room history (issue 17), per backend: what one publish costs to keep (one per write, and 64
//! per write as the hub's drain batches them), and what recovering 1 000 missed publications
//! costs to read (pages of 256, as the hub reads them).
//!
//! Run: `cargo bench -p chinwag-bench --bench history -- --quick` (Redis: a private
//! redis-server on a free port, started and stopped by the bench).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_queue::{Direction, History, HistoryConfig, MemoryHistory, Retention};
use chinwag_queue_redb::RedbHistory;
use chinwag_queue_redis::RedisHistory;
use chinwag_queue_redis::test_server::RedisServer;
use criterion::{Criterion, Throughput, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let config = HistoryConfig::default();
    let backends: Vec<(&str, Arc<dyn History>)> = vec![
        ("memory", Arc::new(MemoryHistory::new(config))),
        (
            "redb",
            Arc::new(RedbHistory::open(dir.path().join("history.redb"), config).expect("redb")),
        ),
        (
            "redis",
            Arc::new(
                rt.block_on(RedisHistory::connect(&redis.url(), config))
                    .expect("redis"),
            ),
        ),
    ];
    // The hub's default: a room keeps its last 1 000 publications for a day.
    let keep = Retention::new(1_000, Some(Duration::from_secs(24 * 3600)));
    let one = [Bytes::from(vec![b'x'; 100])];
    let batch: Vec<Bytes> = (0..64).map(|_| Bytes::from(vec![b'x'; 100])).collect();
    let mut g = c.benchmark_group("history");
    g.sample_size(10);
    for (name, h) in &backends {
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}/append_1x100B"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(h.append("one", &one, keep, 1).await.unwrap()) })
        });
        g.throughput(Throughput::Elements(64));
        g.bench_function(format!("{name}/append_64x100B_per_write"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(h.append("batch", &batch, keep, 1).await.unwrap()) })
        });
        // A room with 1 000 more publications than a member saw.
        let last = rt.block_on(async {
            let mut s = None;
            for _ in 0..16 {
                s = Some(h.append("recover", &batch, keep, 1).await.unwrap());
            }
            s.unwrap().last
        });
        let after = last - 1_000;
        g.throughput(Throughput::Elements(1_000));
        g.bench_function(format!("{name}/recover_1000"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut from = after;
                let mut n = 0;
                while from < last {
                    let page = h
                        .read("recover", from, Direction::Forward, 256)
                        .await
                        .unwrap()
                        .unwrap();
                    n += page.publications.len();
                    from = page.publications.last().unwrap().offset;
                }
                assert_eq!(n, 1_000);
                black_box(n)
            })
        });
    }
    g.finish();
}

// criterion's macros generate undocumented public functions.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
