//! Push, read and ack throughput of the Redis backend against a private redis-server
//! (`appendfsync always`, as in the tests).
//!
//! Run: `cargo bench -p chinwag-queue-redis --bench redis -- --quick`

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use chinwag_queue::{Queue, QueueConfig};
use chinwag_queue_redis::RedisQueue;
use criterion::{Criterion, Throughput, criterion_main};

fn bench(c: &mut Criterion) {
    let server = chinwag_queue_redis::test_server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let payload = Bytes::from(vec![b'x'; 256]);
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(u64::MAX)
        .with_max_bytes_per_recipient(u64::MAX)
        .with_max_total_bytes(u64::MAX);
    let q = Arc::new(
        rt.block_on(RedisQueue::connect(&server.url(), config))
            .expect("connect"),
    );
    let mut g = c.benchmark_group("redis");
    g.sample_size(10);

    g.throughput(Throughput::Elements(1));
    g.bench_function("push_256B", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(q.push("bench", payload.clone(), None).await) })
    });

    g.throughput(Throughput::Elements(32));
    g.bench_function("push_256B_x32_concurrent", |b| {
        b.to_async(&rt).iter(|| async {
            let mut tasks = Vec::new();
            for i in 0..32 {
                let q = Arc::clone(&q);
                let payload = payload.clone();
                tasks.push(tokio::spawn(async move {
                    q.push(&format!("c{i}"), payload, None).await
                }));
            }
            for t in tasks {
                let _ = black_box(t.await);
            }
        })
    });

    rt.block_on(async {
        for _ in 0..1000 {
            let _ = q.push("reader", payload.clone(), None).await;
        }
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("read_100_of_1000", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(q.read("reader", 0, 100).await) })
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("push_then_ack", |b| {
        b.to_async(&rt).iter(|| async {
            if let Ok(id) = q.push("acker", payload.clone(), None).await {
                black_box(q.ack("acker", id).await).ok();
            }
        })
    });
    g.finish();
    drop(server);
}

// criterion's macros generate undocumented public functions.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
