//! Fills a redb queue, reads it back and drains it, printing throughput and the process's
//! resident memory at each step; with jemalloc and its background threads, like the shipped
//! binaries, so the figure after the drain is what a server would keep.
//!
//! ```text
//! cargo run --release -p chinwag-queue-redb --example redb_flood -- \
//!     --cache-mib 16 --total-mib 1024 --payload 16384 --producers 16 --settle 10
//! ```
//!
//! Options (all optional): `--cache-mib` (redb's page cache, default the crate's 16 MiB),
//! `--total-mib` (payload bytes pushed, default 512), `--payload` (bytes per message, default
//! 16 384), `--producers` (concurrent pushers, one recipient each, default 16), `--settle`
//! (seconds to wait after the drain before the last figure, default 10), `--read-mib-per-s`
//! (pace the read-back to about this many MiB/s, as a replay to clients over a network would
//! be; default 0: as fast as it goes), `--dir` (where the file goes, default a new directory
//! under the system's temporary one, removed at the end).
//! Figures are for `docs/BENCHMARKS.md` and `docs/queues.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chinwag_queue::{Queue, QueueConfig, SystemClock};
use chinwag_queue_redb::{DEFAULT_CACHE_SIZE, RedbOptions, RedbQueue};

#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: usize = 1 << 20;
/// Entries per read, as the hub's replay pages.
const PAGE: usize = 64;

/// A line of `/proc/self/status` in KiB (Linux; 0 elsewhere).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

struct Args {
    cache: usize,
    total: usize,
    payload: usize,
    producers: usize,
    settle: u64,
    read_rate: usize,
    dir: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cache: DEFAULT_CACHE_SIZE,
        total: 512 * MIB,
        payload: 16 * 1024,
        producers: 16,
        settle: 10,
        read_rate: 0,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--cache-mib" => a.cache = number()? * MIB,
            "--total-mib" => a.total = number()? * MIB,
            "--payload" => a.payload = number()?.max(1),
            "--producers" => a.producers = number()?.max(1),
            "--settle" => a.settle = number()? as u64,
            "--read-mib-per-s" => a.read_rate = number()? * MIB,
            "--dir" => a.dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| {
        eprintln!("redb_flood: {e}");
        std::process::exit(2)
    })?;
    let (dir, _temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(u64::MAX)
        .with_max_bytes_per_recipient(u64::MAX)
        .with_max_total_bytes(u64::MAX);
    let options = RedbOptions::default().with_cache_size(args.cache);
    let path = dir.join(format!("flood-{}.redb", std::process::id()));
    let q = Arc::new(RedbQueue::open_with(
        &path,
        config,
        options,
        Arc::new(SystemClock),
    )?);
    let per_producer = args.total / args.payload / args.producers;
    let messages = per_producer * args.producers;
    let payload_mib = (messages * args.payload) as f64 / MIB as f64;
    println!(
        "cache {} MiB, {messages} messages of {} B ({payload_mib:.0} MiB) from {} producers",
        args.cache / MIB,
        args.payload,
        args.producers
    );
    let start = rss_mib();
    println!("start:        RSS {start:7.1} MiB");

    let payload = Bytes::from(vec![b'x'; args.payload]);
    let t = Instant::now();
    let tasks: Vec<_> = (0..args.producers)
        .map(|p| {
            let q = Arc::clone(&q);
            let payload = payload.clone();
            tokio::spawn(async move {
                let who = format!("user{p}");
                for _ in 0..per_producer {
                    q.push(&who, payload.clone(), None).await?;
                }
                Ok::<_, chinwag_queue::QueueError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "after flood:  RSS {:7.1} MiB  push {:8.0} msg/s {:6.1} MiB/s ({secs:.1} s)",
        rss_mib(),
        messages as f64 / secs,
        payload_mib / secs
    );

    // Read every recipient's queue back, a page at a time, one reader after another (as
    // replays of users who come back).
    let t = Instant::now();
    let mut bytes_read = 0usize;
    let mut last = Vec::with_capacity(args.producers);
    for p in 0..args.producers {
        let who = format!("user{p}");
        let mut after = 0;
        loop {
            let page = q.read(&who, after, PAGE).await?;
            match page.last() {
                Some(e) => after = e.id,
                None => break,
            }
            bytes_read += page.iter().map(|e| e.payload.len()).sum::<usize>();
            if args.read_rate > 0 {
                let due = Duration::from_secs_f64(bytes_read as f64 / args.read_rate as f64);
                if let Some(wait) = due.checked_sub(t.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        last.push((who, after));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "after read:   RSS {:7.1} MiB  read {:8.0} msg/s {:6.1} MiB/s ({secs:.1} s)",
        rss_mib(),
        messages as f64 / secs,
        payload_mib / secs
    );

    for (who, up_to) in &last {
        q.ack(who, *up_to).await?;
    }
    println!("after drain:  RSS {:7.1} MiB", rss_mib());
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    println!(
        "{:>3} s later:  RSS {:7.1} MiB  (peak {:.1} MiB)",
        args.settle,
        rss_mib(),
        status_kib("VmHWM:") as f64 / 1024.0
    );
    drop(q);
    std::fs::remove_file(&path)?;
    Ok(())
}
