//! Push, read and ack throughput of the in-memory backend.
//!
//! Run: `cargo bench -p chinwag-queue --bench memory -- --quick`

use std::hint::black_box;

use bytes::Bytes;
use chinwag_queue::{MemoryQueue, Queue, QueueConfig};
use criterion::{Criterion, Throughput, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let payload = Bytes::from(vec![b'x'; 256]);
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(u64::MAX)
        .with_max_bytes_per_recipient(u64::MAX)
        .with_max_total_bytes(u64::MAX);
    let mut g = c.benchmark_group("memory");
    g.throughput(Throughput::Elements(1));

    let q = MemoryQueue::new(config.clone());
    g.bench_function("push_256B", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(q.push("bench", payload.clone(), None).await) })
    });

    let q = MemoryQueue::new(config.clone());
    rt.block_on(async {
        for _ in 0..1000 {
            let _ = q.push("bench", payload.clone(), None).await;
        }
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("read_100_of_1000", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(q.read("bench", 0, 100).await) })
    });

    let q = MemoryQueue::new(config);
    g.throughput(Throughput::Elements(1));
    g.bench_function("push_then_ack", |b| {
        b.to_async(&rt).iter(|| async {
            if let Ok(id) = q.push("bench", payload.clone(), None).await {
                black_box(q.ack("bench", id).await).ok();
            }
        })
    });
    g.finish();
}

// criterion's macros generate undocumented public functions.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
