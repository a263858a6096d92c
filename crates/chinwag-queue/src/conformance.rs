//! The conformance suite: every [`Queue`] backend runs it, unchanged, from its own tests.
//!
//! A backend's test implements [`Backend`] (how to open a store) and calls [`run_all`] from a
//! multi-threaded tokio test:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conformance() {
//!     chinwag_queue::conformance::run_all(&MyBackend::new()).await;
//! }
//! ```
//!
//! Each case panics with a message saying what went wrong. No case sleeps: time-to-live is
//! driven by a [`ManualClock`], and the concurrent case polls with a hang guard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    BoxFuture, Clock, EntryId, Limit, ManualClock, OverflowPolicy, Queue, QueueConfig, QueueError,
};

/// How the suite opens stores of the backend under test.
pub trait Backend: Send + Sync {
    /// Opens store number `store` with `config` and `clock`. The first open of a number creates
    /// an empty store; the suite never uses one number in two cases. When
    /// [`supports_restart`](Backend::supports_restart) is true, opening a number again after
    /// every handle to it was dropped is a restart: it must show what the previous instance
    /// stored. Otherwise the suite never opens a number twice.
    fn open(
        &self,
        store: u32,
        config: QueueConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn Queue>, QueueError>>;

    /// Whether the backend keeps data across a reopen (durable backends). Default false.
    fn supports_restart(&self) -> bool {
        false
    }
}

/// Runs every case, one after the other, against `backend`.
pub async fn run_all(backend: &dyn Backend) {
    fifo_order(backend, 1).await;
    ids_increase_and_are_never_reused(backend, 2).await;
    ack_semantics(backend, 3).await;
    ack_many_semantics(backend, 21).await;
    push_many_semantics(backend, 22).await;
    ttl_expiry(backend, 4).await;
    expiry_frees_space(backend, 5).await;
    bounds_entries(backend, 6).await;
    bounds_recipient_bytes(backend, 8).await;
    bounds_total_bytes(backend, 10).await;
    payload_size_and_recipient_checks(backend, 12).await;
    concurrent_producers_one_reader(backend, 13).await;
    large_payloads(backend, 14).await;
    many_recipients(backend, 15).await;
    restart_keeps_entries_and_ids(backend, 16).await;
    for seed in 1..=4 {
        random_operations_match_a_model(backend, 16 + seed, seed.into()).await;
    }
}

const T0: u64 = 1_700_000_000_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

async fn open(
    backend: &dyn Backend,
    store: u32,
    config: QueueConfig,
    clock: Arc<dyn Clock>,
) -> Arc<dyn Queue> {
    match backend.open(store, config, clock).await {
        Ok(q) => q,
        Err(e) => panic!("opening store {store} failed: {e}"),
    }
}

fn ok<T>(r: Result<T, QueueError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn payload(s: String) -> Bytes {
    Bytes::from(s)
}

/// Pushes are read back in push order with strictly increasing ids; paging with a cursor and
/// `max` works; reading does not remove.
pub async fn fifo_order(backend: &dyn Backend, store: u32) {
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(ok(
            q.push("alice", payload(format!("m{i}")), None).await,
            "fifo: push",
        ));
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "fifo: ids must strictly increase in push order, got {ids:?}"
    );
    assert!(
        ids[0] > 0,
        "fifo: ids must be > 0 (0 is the read-from-start cursor)"
    );
    let all = ok(q.read("alice", 0, 1000).await, "fifo: read");
    assert_eq!(
        all.len(),
        100,
        "fifo: read(after 0, max 1000) must return all 100 entries"
    );
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.id, ids[i], "fifo: entry {i} has the wrong id");
        assert_eq!(
            e.payload,
            format!("m{i}"),
            "fifo: entry {i} has the wrong payload"
        );
        assert_eq!(
            e.expires_at, None,
            "fifo: an entry pushed without ttl must not expire"
        );
    }
    // Paging with a cursor.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(q.read("alice", after, 7).await, "fifo: paged read");
        assert!(
            page.len() <= 7,
            "fifo: read returned {} > max 7 entries",
            page.len()
        );
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page.iter().map(|e| e.id));
    }
    assert_eq!(
        seen, ids,
        "fifo: paging with a cursor must visit every id once, in order"
    );
    assert!(
        ok(q.read("alice", 0, 0).await, "fifo: read max 0").is_empty(),
        "fifo: read with max 0 must return nothing"
    );
    assert!(
        ok(q.read("alice", ids[99], 10).await, "fifo: read after last").is_empty(),
        "fifo: read after the last id must return nothing"
    );
    assert!(
        ok(
            q.read("alice", u64::MAX, 10).await,
            "fifo: read after u64::MAX"
        )
        .is_empty(),
        "fifo: read after u64::MAX must return nothing"
    );
    let mid = ok(q.read("alice", ids[49], 1).await, "fifo: read from middle");
    assert_eq!(
        mid.first().map(|e| e.id),
        Some(ids[50]),
        "fifo: read(after id 49) must start at entry 50"
    );
    assert_eq!(
        ok(q.len("alice").await, "fifo: len"),
        100,
        "fifo: reading must not remove"
    );
    assert!(
        ok(q.read("nobody", 0, 10).await, "fifo: read unknown").is_empty(),
        "fifo: an unknown recipient must have no entries"
    );
    assert_eq!(
        ok(q.len("nobody").await, "fifo: len unknown"),
        0,
        "fifo: unknown len"
    );
    // Recipients that look alike (separators, unicode) must not share a queue.
    for r in ["a", "a:b", "a:q:b", "a b", "a{b}", "élodie", "a\u{0}b"] {
        ok(
            q.push(r, payload(format!("to {r}")), None).await,
            "fifo: push lookalike",
        );
    }
    for r in ["a", "a:b", "a:q:b", "a b", "a{b}", "élodie", "a\u{0}b"] {
        let got = ok(q.read(r, 0, 10).await, "fifo: read lookalike");
        assert_eq!(
            got.len(),
            1,
            "fifo: recipient {r:?} must have exactly its own entry"
        );
        assert_eq!(
            got[0].payload,
            format!("to {r}"),
            "fifo: recipient {r:?} got another's entry"
        );
    }
}

/// Ids strictly increase per recipient and are never reused: not after ack, not after remove.
pub async fn ids_increase_and_are_never_reused(backend: &dyn Backend, store: u32) {
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    let a1 = ok(q.push("bob", "1".into(), None).await, "ids: push");
    let a2 = ok(q.push("bob", "2".into(), None).await, "ids: push");
    let c1 = ok(q.push("carol", "1".into(), None).await, "ids: push");
    let c2 = ok(q.push("carol", "2".into(), None).await, "ids: push");
    assert!(a1 < a2 && c1 < c2, "ids: ids must increase per recipient");
    assert_eq!(
        ok(q.ack("bob", a2).await, "ids: ack"),
        2,
        "ids: ack must remove both"
    );
    let a3 = ok(q.push("bob", "3".into(), None).await, "ids: push after ack");
    assert!(
        a3 > a2,
        "ids: id {a3} after ack must exceed the acknowledged {a2}"
    );
    assert_eq!(
        ok(q.remove("bob").await, "ids: remove"),
        1,
        "ids: remove must count 1"
    );
    let a4 = ok(
        q.push("bob", "4".into(), None).await,
        "ids: push after remove",
    );
    assert!(
        a4 > a3,
        "ids: id {a4} after remove must exceed the removed {a3}"
    );
    let got = ok(q.read("bob", 0, 10).await, "ids: read");
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![a4],
        "ids: only the entry pushed after remove must remain"
    );
    assert_eq!(
        ok(q.len("carol").await, "ids: len"),
        2,
        "ids: others' queues untouched"
    );
}

/// Partial ack, ack of unknown ids and recipients, double ack, ack beyond the last id.
pub async fn ack_semantics(backend: &dyn Backend, store: u32) {
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(ok(
            q.push("dave", payload(format!("{i}")), None).await,
            "ack: push",
        ));
    }
    assert_eq!(
        ok(q.ack("dave", 0).await, "ack: ack 0"),
        0,
        "ack: ack(0) must remove nothing"
    );
    assert_eq!(
        ok(q.ack("dave", ids[0] - 1).await, "ack: ack below first"),
        0,
        "ack: ack below the first id must remove nothing"
    );
    assert_eq!(
        ok(q.ack("dave", ids[2]).await, "ack: partial"),
        3,
        "ack: partial ack count"
    );
    let rest: Vec<_> = ok(q.read("dave", 0, 10).await, "ack: read")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        rest,
        ids[3..].to_vec(),
        "ack: partial ack must leave exactly the later ids"
    );
    assert_eq!(
        ok(q.ack("dave", ids[2]).await, "ack: double"),
        0,
        "ack: double ack is a no-op"
    );
    assert_eq!(
        ok(q.len("dave").await, "ack: len"),
        2,
        "ack: double ack must not remove more"
    );
    assert_eq!(
        ok(q.ack("nobody", 42).await, "ack: unknown recipient"),
        0,
        "ack: ack of an unknown recipient removes nothing"
    );
    assert_eq!(
        ok(q.ack("dave", u64::MAX).await, "ack: beyond last"),
        2,
        "ack: ack beyond the last id removes everything queued"
    );
    assert_eq!(
        ok(q.len("dave").await, "ack: len"),
        0,
        "ack: queue must be empty"
    );
    let next = ok(
        q.push("dave", "later".into(), None).await,
        "ack: push after ack-all",
    );
    assert!(next > ids[4], "ack: ids continue after ack-all");
    assert_eq!(
        ok(q.len("dave").await, "ack: len"),
        1,
        "ack: an earlier ack beyond the last id must not swallow later pushes"
    );
}

/// `ack_many` applies its acks in order, each as `ack` would (the same recipient twice, an
/// unknown one, none at all), and returns each one's count.
pub async fn ack_many_semantics(backend: &dyn Backend, store: u32) {
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    assert_eq!(
        ok(q.ack_many(&[]).await, "ack_many: nothing"),
        Vec::<u64>::new(),
        "ack_many: no acks, no counts"
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(ok(
            q.push("erin", payload(format!("{i}")), None).await,
            "ack_many: push",
        ));
        ok(
            q.push("fay", payload(format!("{i}")), None).await,
            "ack_many: push",
        );
    }
    let fay_last = ok(q.read("fay", 0, 10).await, "ack_many: read")[3].id;
    let counts = ok(
        q.ack_many(&[
            ("erin", ids[1]),
            ("nobody", 7),
            ("fay", fay_last),
            ("erin", ids[0]),
            ("erin", ids[2]),
        ])
        .await,
        "ack_many",
    );
    assert_eq!(
        counts,
        [2, 0, 4, 0, 1],
        "ack_many: each ack's count, applied in order"
    );
    let left: Vec<_> = ok(q.read("erin", 0, 10).await, "ack_many: read")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [ids[3]], "ack_many: erin keeps her last entry");
    assert_eq!(
        ok(q.len("fay").await, "ack_many: len"),
        0,
        "ack_many: fay acked all"
    );
}

/// `push_many` answers each item as pushing them one after the other would: ids increasing in
/// item order, an item refused (too large, over the recipient's bound) failing alone, TTLs
/// kept per item; nothing at all is no results.
pub async fn push_many_semantics(backend: &dyn Backend, store: u32) {
    let clock = clock();
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(4)
        .with_max_payload_bytes(16);
    let q = open(backend, store, config, clock.clone()).await;
    assert!(
        q.push_many("gus", Vec::new()).await.is_empty(),
        "push_many: no items, no results"
    );
    let before = ok(q.push("gus", "0".into(), None).await, "push_many: push");
    let results = q
        .push_many(
            "gus",
            vec![
                ("1".into(), None),
                (Bytes::from(vec![b'x'; 17]), None),
                ("2".into(), Some(Duration::from_secs(5))),
                ("3".into(), None),
                ("4".into(), None),
                ("5".into(), None),
            ],
        )
        .await;
    assert_eq!(results.len(), 6, "push_many: one result per item");
    assert!(
        matches!(results[1], Err(QueueError::TooLarge { .. })),
        "push_many: the oversized item alone fails: {:?}",
        results[1]
    );
    assert!(
        matches!(results[4], Err(QueueError::Full { .. })),
        "push_many: the item past the recipient's 4 entries fails: {:?}",
        results[4]
    );
    assert!(
        matches!(results[5], Err(QueueError::Full { .. })),
        "push_many: and so does the next: {:?}",
        results[5]
    );
    let stored: Vec<EntryId> = [0, 2, 3]
        .iter()
        .map(|&i| match &results[i] {
            Ok(id) => *id,
            Err(e) => panic!("push_many: item {i} failed: {e}"),
        })
        .collect();
    assert!(
        before < stored[0] && stored[0] < stored[1] && stored[1] < stored[2],
        "push_many: ids increase in item order: {before} then {stored:?}"
    );
    let read: Vec<(EntryId, Bytes)> = ok(q.read("gus", 0, 10).await, "push_many: read")
        .into_iter()
        .map(|e| (e.id, e.payload))
        .collect();
    assert_eq!(
        read,
        [
            (before, Bytes::from("0")),
            (stored[0], Bytes::from("1")),
            (stored[1], Bytes::from("2")),
            (stored[2], Bytes::from("3")),
        ],
        "push_many: stored in item order, after the earlier push"
    );
    clock.advance(Duration::from_secs(5));
    let ids: Vec<EntryId> = ok(q.read("gus", 0, 10).await, "push_many: read")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        ids,
        [before, stored[0], stored[2]],
        "push_many: the item with a TTL expired alone"
    );
    // A long run (longer than a backend's batch or script) keeps its order too.
    let q = open(backend, store + 100, QueueConfig::default(), clock).await;
    let n = 600;
    let results = q
        .push_many(
            "hal",
            (0..n).map(|i| (payload(format!("{i}")), None)).collect(),
        )
        .await;
    let ids: Vec<EntryId> = results
        .into_iter()
        .map(|r| ok(r, "push_many: a long run"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "push_many: a long run's ids increase in item order"
    );
    let read = ok(q.read("hal", 0, n + 1).await, "push_many: read");
    assert_eq!(read.len(), n, "push_many: every item of a long run stored");
    for (i, e) in read.iter().enumerate() {
        assert_eq!(
            e.payload,
            payload(format!("{i}")),
            "push_many: item {i} in order"
        );
    }
}

/// Entries expire exactly at push time + ttl, on the injected clock; others stay.
pub async fn ttl_expiry(backend: &dyn Backend, store: u32) {
    let clock = clock();
    let q = open(backend, store, QueueConfig::default(), clock.clone()).await;
    let long = ok(
        q.push("erin", "long".into(), Some(Duration::from_secs(10)))
            .await,
        "ttl",
    );
    let keep = ok(q.push("erin", "keep".into(), None).await, "ttl: push");
    let short = ok(
        q.push("erin", "short".into(), Some(Duration::from_secs(5)))
            .await,
        "ttl",
    );
    let zero = ok(
        q.push("erin", "zero".into(), Some(Duration::ZERO)).await,
        "ttl: zero",
    );
    let ids = |v: Vec<crate::Entry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ok(q.read("erin", 0, 10).await, "ttl: read")),
        vec![long, keep, short],
        "ttl: a zero ttl expires at once; the others are visible"
    );
    let e = ok(q.read("erin", 0, 1).await, "ttl: read");
    assert_eq!(
        e[0].expires_at,
        Some(T0 + 10_000),
        "ttl: expires_at = push time + ttl"
    );
    clock.advance(Duration::from_millis(4_999));
    assert_eq!(
        ids(ok(q.read("erin", 0, 10).await, "ttl: read")),
        vec![long, keep, short],
        "ttl: 1 ms before expiry the 5 s entry must still be visible"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        ids(ok(q.read("erin", 0, 10).await, "ttl: read")),
        vec![long, keep],
        "ttl: the 5 s entry must be gone exactly 5 s after push"
    );
    assert_eq!(
        ok(q.len("erin").await, "ttl: len"),
        2,
        "ttl: len must not count expired"
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        ids(ok(q.read("erin", 0, 10).await, "ttl: read")),
        vec![keep],
        "ttl: only the entry without ttl remains after 10 s"
    );
    // Ack across expired ids is harmless.
    assert_eq!(
        ok(q.ack("erin", zero).await, "ttl: ack"),
        1,
        "ttl: ack removes the survivor"
    );
    // A huge ttl does not overflow.
    ok(
        q.push("erin", "forever".into(), Some(Duration::MAX)).await,
        "ttl: huge ttl",
    );
    clock.advance(Duration::from_secs(86_400 * 365 * 100));
    assert_eq!(
        ok(q.len("erin").await, "ttl: len"),
        1,
        "ttl: a huge ttl must not expire"
    );
}

/// Expired entries free their space: for the recipient (lazily on push), overall (push at the
/// overall bound) and by `sweep`.
pub async fn expiry_frees_space(backend: &dyn Backend, store: u32) {
    let clock = clock();
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(2)
        .with_max_total_bytes(100);
    let q = open(backend, store, config, clock.clone()).await;
    let ttl = Some(Duration::from_secs(1));
    ok(q.push("fay", "x".into(), ttl).await, "frees: push");
    ok(q.push("fay", "y".into(), ttl).await, "frees: push");
    let full = q.push("fay", "z".into(), None).await;
    assert!(
        matches!(
            full,
            Err(QueueError::Full {
                limit: Limit::EntriesPerRecipient,
                ..
            })
        ),
        "frees: third push must be refused before expiry, got {full:?}"
    );
    clock.advance(Duration::from_secs(1));
    ok(
        q.push("fay", "z".into(), None).await,
        "frees: push after the others expired",
    );
    // Overall bytes: nine recipients fill 90 bytes with ttl entries, then expire.
    for i in 0..9 {
        ok(
            q.push(&format!("g{i}"), Bytes::from(vec![b'g'; 10]), ttl)
                .await,
            "frees",
        );
    }
    let full = q.push("h", Bytes::from(vec![b'h'; 10]), None).await;
    assert!(
        matches!(
            full,
            Err(QueueError::Full {
                limit: Limit::TotalBytes,
                ..
            })
        ),
        "frees: 1 + 90 + 10 bytes must exceed the 100-byte overall bound, got {full:?}"
    );
    clock.advance(Duration::from_secs(1));
    ok(
        q.push("h", Bytes::from(vec![b'h'; 10]), None).await,
        "frees: push at overall bound",
    );
    // sweep removes what nobody touched.
    for i in 0..5 {
        ok(
            q.push(&format!("s{i}"), "s".into(), ttl).await,
            "frees: push",
        );
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        ok(q.sweep().await, "frees: sweep"),
        5,
        "frees: sweep must remove 5 entries"
    );
    assert_eq!(
        ok(q.sweep().await, "frees: sweep"),
        0,
        "frees: second sweep removes nothing"
    );
    for i in 0..9 {
        assert_eq!(
            ok(q.len(&format!("g{i}")).await, "frees: len"),
            0,
            "frees: g{i} expired"
        );
    }
    assert_eq!(
        ok(q.len("h").await, "frees: len"),
        1,
        "frees: sweep keeps live entries"
    );
    // 1 (fay) + 10 (h) bytes are live: 89 more fit exactly, 90 do not.
    let big = q.push("i", Bytes::from(vec![b'i'; 90]), None).await;
    assert!(
        matches!(
            big,
            Err(QueueError::Full {
                limit: Limit::TotalBytes,
                ..
            })
        ),
        "frees: 11 + 90 bytes must exceed the overall bound, got {big:?}"
    );
    ok(
        q.push("i", Bytes::from(vec![b'i'; 89]), None).await,
        "frees: exactly at bound",
    );
}

fn assert_full(r: Result<u64, QueueError>, limit: Limit, what: &str) {
    match r {
        Err(QueueError::Full { limit: l, .. }) if l == limit => {}
        other => panic!("{what}: expected Full({limit}), got {other:?}"),
    }
}

async fn ids_of(q: &dyn Queue, r: &str) -> Vec<u64> {
    ok(q.read(r, 0, 100_000).await, "read")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// max_entries_per_recipient at the boundary, under both policies (uses `store`, `store + 1`).
pub async fn bounds_entries(backend: &dyn Backend, store: u32) {
    const N: u64 = 5;
    let config = QueueConfig::default().with_max_entries_per_recipient(N);
    let q = open(backend, store, config.clone(), clock()).await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(ok(
            q.push("r", payload(format!("{i}")), None).await,
            "entries: push N",
        ));
    }
    assert_full(
        q.push("r", "x".into(), None).await,
        Limit::EntriesPerRecipient,
        "entries N+1",
    );
    assert_eq!(
        ids_of(&*q, "r").await,
        ids,
        "entries: a refused push must change nothing"
    );
    ok(
        q.push("other", "x".into(), None).await,
        "entries: another recipient is not full",
    );
    ok(q.ack("r", ids[0]).await, "entries: ack");
    ok(
        q.push("r", "x".into(), None).await,
        "entries: push after ack frees a slot",
    );

    let q = open(
        backend,
        store + 1,
        config.with_overflow(OverflowPolicy::DropOldest),
        clock(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..=N {
        ids.push(ok(
            q.push("r", payload(format!("{i}")), None).await,
            "drop: push N+1",
        ));
    }
    assert_eq!(
        ids_of(&*q, "r").await,
        ids[1..].to_vec(),
        "entries/drop-oldest: the N+1th push must drop exactly the oldest entry"
    );
    let got = ok(q.read("r", 0, 1).await, "drop: read");
    assert_eq!(
        got[0].payload, "1",
        "entries/drop-oldest: the oldest survivor is entry 1"
    );
}

/// max_bytes_per_recipient at the boundary, under both policies (uses `store`, `store + 1`).
pub async fn bounds_recipient_bytes(backend: &dyn Backend, store: u32) {
    let config = QueueConfig::default().with_max_bytes_per_recipient(100);
    let ten = || Bytes::from(vec![b'b'; 10]);
    let q = open(backend, store, config.clone(), clock()).await;
    for _ in 0..10 {
        ok(
            q.push("r", ten(), None).await,
            "bytes: 10 x 10 bytes fit in 100",
        );
    }
    assert_full(
        q.push("r", "1".into(), None).await,
        Limit::BytesPerRecipient,
        "bytes +1",
    );
    assert_eq!(
        ok(q.len("r").await, "bytes: len"),
        10,
        "bytes: refused push changed nothing"
    );
    let big = q.push("s", Bytes::from(vec![0; 101]), None).await;
    assert!(
        matches!(big, Err(QueueError::TooLarge { size: 101, .. })),
        "bytes: a payload larger than the recipient bound can never fit: TooLarge, got {big:?}"
    );
    ok(
        q.push("s", Bytes::from(vec![0; 100]), None).await,
        "bytes: exactly the bound fits",
    );

    let q = open(
        backend,
        store + 1,
        config.with_overflow(OverflowPolicy::DropOldest),
        clock(),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(ok(q.push("r", ten(), None).await, "bytes/drop: push"));
    }
    let id = ok(
        q.push("r", Bytes::from(vec![b'c'; 15]), None).await,
        "bytes/drop: push 15",
    );
    let mut want = ids[2..].to_vec();
    want.push(id);
    assert_eq!(
        ids_of(&*q, "r").await,
        want,
        "bytes/drop-oldest: 15 more bytes must drop exactly the two oldest 10-byte entries"
    );
}

/// max_total_bytes at the boundary, under both policies (uses `store`, `store + 1`).
pub async fn bounds_total_bytes(backend: &dyn Backend, store: u32) {
    let config = QueueConfig::default().with_max_total_bytes(100);
    let ten = || Bytes::from(vec![b't'; 10]);
    let q = open(backend, store, config.clone(), clock()).await;
    for i in 0..10 {
        ok(
            q.push(&format!("u{i}"), ten(), None).await,
            "total: 10 x 10 bytes fit in 100",
        );
    }
    assert_full(
        q.push("u10", "1".into(), None).await,
        Limit::TotalBytes,
        "total +1 byte",
    );
    assert_full(
        q.push("u0", "1".into(), None).await,
        Limit::TotalBytes,
        "total +1 byte",
    );
    assert_eq!(
        ok(q.len("u10").await, "total: len"),
        0,
        "total: refused push changed nothing"
    );
    ok(q.ack("u3", u64::MAX).await, "total: ack");
    ok(
        q.push("u10", ten(), None).await,
        "total: ack frees overall space",
    );
    ok(q.remove("u4").await, "total: remove");
    ok(
        q.push("u11", ten(), None).await,
        "total: remove frees overall space",
    );

    let q = open(
        backend,
        store + 1,
        config.with_overflow(OverflowPolicy::DropOldest),
        clock(),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(ok(q.push("v", ten(), None).await, "total/drop: push"));
    }
    for i in 0..5 {
        ok(
            q.push(&format!("w{i}"), ten(), None).await,
            "total/drop: push",
        );
    }
    assert_full(
        q.push("newcomer", "1".into(), None).await,
        Limit::TotalBytes,
        "total/drop-oldest: a recipient with nothing to drop is refused",
    );
    let id = ok(
        q.push("v", ten(), None).await,
        "total/drop: v drops its own oldest",
    );
    let mut want = ids[1..].to_vec();
    want.push(id);
    assert_eq!(
        ids_of(&*q, "v").await,
        want,
        "total/drop-oldest: exactly v's oldest entry must be dropped"
    );
    for i in 0..5 {
        assert_eq!(
            ok(q.len(&format!("w{i}")).await, "total/drop: len"),
            1,
            "total/drop-oldest: other recipients' entries must never be dropped"
        );
    }
}

fn inv<T>(r: &Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::InvalidRecipient { .. }))
}

/// Payload size bound and recipient id checks (bad input is an error, never a panic).
pub async fn payload_size_and_recipient_checks(backend: &dyn Backend, store: u32) {
    let config = QueueConfig::default().with_max_payload_bytes(64);
    let q = open(backend, store, config, clock()).await;
    ok(
        q.push("p", Bytes::from(vec![1; 64]), None).await,
        "size: exactly max accepted",
    );
    let r = q.push("p", Bytes::from(vec![1; 65]), None).await;
    assert!(
        matches!(r, Err(QueueError::TooLarge { size: 65, max: 64 })),
        "size: max + 1 must be TooLarge {{ size: 65, max: 64 }}, got {r:?}"
    );
    ok(
        q.push("p", Bytes::new(), None).await,
        "size: empty payload accepted",
    );
    let long = "x".repeat(crate::MAX_RECIPIENT_LEN + 1);
    for bad in ["", long.as_str()] {
        let what = if bad.is_empty() { "empty" } else { "too long" };
        assert!(
            inv(&q.push(bad, "x".into(), None).await),
            "push to {what} recipient"
        );
        assert!(inv(&q.read(bad, 0, 1).await), "read of {what} recipient");
        assert!(inv(&q.ack(bad, 1).await), "ack of {what} recipient");
        assert!(inv(&q.len(bad).await), "len of {what} recipient");
        assert!(inv(&q.remove(bad).await), "remove of {what} recipient");
    }
    let longest = "y".repeat(crate::MAX_RECIPIENT_LEN);
    ok(
        q.push(&longest, "x".into(), None).await,
        "recipient of MAX_RECIPIENT_LEN bytes",
    );
    assert_eq!(
        ok(q.len(&longest).await, "len"),
        1,
        "longest recipient id works"
    );
}

/// Many producers push concurrently to one recipient while one reader pages with a cursor and
/// acknowledges: nothing lost, nothing duplicated, each producer's order kept.
pub async fn concurrent_producers_one_reader(backend: &dyn Backend, store: u32) {
    const PRODUCERS: usize = 8;
    const EACH: usize = 250;
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let q = Arc::clone(&q);
        producers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let r = q.push("hub", payload(format!("{p}:{i}")), None).await;
                if let Err(e) = r {
                    panic!("concurrent: producer {p} push {i} failed: {e}");
                }
            }
        }));
    }
    let reader = {
        let q = Arc::clone(&q);
        tokio::spawn(async move {
            let mut next = [0usize; PRODUCERS];
            let mut after = 0;
            let mut total = 0;
            while total < PRODUCERS * EACH {
                let page = ok(q.read("hub", after, 100).await, "concurrent: read");
                if page.is_empty() {
                    // Nothing new yet: let the producers run. The hang guard below bounds this.
                    tokio::task::yield_now().await;
                    continue;
                }
                for e in &page {
                    assert!(
                        e.id > after,
                        "concurrent: ids must increase past the cursor"
                    );
                    after = e.id;
                    let text = String::from_utf8_lossy(&e.payload).into_owned();
                    let (p, i) = text
                        .split_once(':')
                        .and_then(|(p, i)| {
                            Some((p.parse::<usize>().ok()?, i.parse::<usize>().ok()?))
                        })
                        .unwrap_or_else(|| panic!("concurrent: corrupt payload {text:?}"));
                    assert!(p < PRODUCERS, "concurrent: unknown producer in {text:?}");
                    assert_eq!(
                        i, next[p],
                        "concurrent: producer {p}'s entries must arrive once each, in order"
                    );
                    next[p] += 1;
                    total += 1;
                }
                ok(q.ack("hub", after).await, "concurrent: ack");
            }
        })
    };
    let all = async {
        for p in producers {
            if let Err(e) = p.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        if let Err(e) = reader.await {
            std::panic::resume_unwind(e.into_panic());
        }
    };
    // A hang guard, not a timing assertion: a backend that loses an entry would otherwise make
    // the reader wait forever.
    if tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .is_err()
    {
        panic!("concurrent: the reader did not see all entries within 300 s (lost entries?)");
    }
    assert_eq!(
        ok(q.len("hub").await, "concurrent: len"),
        0,
        "concurrent: all acknowledged"
    );
}

/// Payloads of exactly the default maximum (1 MiB) round-trip byte for byte.
pub async fn large_payloads(backend: &dyn Backend, store: u32) {
    let config = QueueConfig::default();
    let max = usize::try_from(config.max_payload_bytes).unwrap_or(usize::MAX);
    let q = open(backend, store, config, clock()).await;
    let make = |seed: u8| {
        Bytes::from(
            (0..max)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<_>>(),
        )
    };
    for seed in 0..4 {
        ok(q.push("big", make(seed), None).await, "large: push 1 MiB");
    }
    let got = ok(q.read("big", 0, 10).await, "large: read");
    assert_eq!(
        got.len(),
        4,
        "large: all four 1 MiB entries must be read back"
    );
    for (seed, e) in got.iter().enumerate() {
        assert!(
            e.payload == make(seed as u8),
            "large: payload {seed} corrupted"
        );
    }
    let r = q.push("big", Bytes::from(vec![0; max + 1]), None).await;
    assert!(
        matches!(r, Err(QueueError::TooLarge { .. })),
        "large: 1 MiB + 1 must be TooLarge by default, got {r:?}"
    );
}

/// Ten thousand recipients, pushed concurrently, each find exactly their own entry.
pub async fn many_recipients(backend: &dyn Backend, store: u32) {
    const N: usize = 10_000;
    const TASKS: usize = 16;
    let q = open(backend, store, QueueConfig::default(), clock()).await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let q = Arc::clone(&q);
        tasks.push(tokio::spawn(async move {
            let mut ids = HashMap::new();
            for i in (t..N).step_by(TASKS) {
                let r = format!("user-{i}");
                let id = ok(
                    q.push(&r, payload(format!("hello {i}")), None).await,
                    "many: push",
                );
                ids.insert(i, id);
            }
            for i in (t..N).step_by(TASKS) {
                let got = ok(q.read(&format!("user-{i}"), 0, 10).await, "many: read");
                assert_eq!(got.len(), 1, "many: user-{i} must have exactly one entry");
                assert_eq!(
                    got[0].payload,
                    format!("hello {i}"),
                    "many: user-{i} payload"
                );
                assert_eq!(Some(&got[0].id), ids.get(&i), "many: user-{i} id");
            }
            for i in (t..N).step_by(TASKS) {
                let r = format!("user-{i}");
                let n = if i % 2 == 0 {
                    ok(q.remove(&r).await, "many: remove")
                } else {
                    ok(q.ack(&r, ids[&i]).await, "many: ack")
                };
                assert_eq!(n, 1, "many: removing user-{i}'s entry must count 1");
                assert_eq!(
                    ok(q.len(&r).await, "many: len"),
                    0,
                    "many: user-{i} emptied"
                );
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(
        ok(q.sweep().await, "many: sweep"),
        0,
        "many: nothing expired to sweep"
    );
}

/// Durable backends: entries, expiry times and the id counter survive a reopen, also for a
/// removed recipient. Skipped (and says so) for backends without restart.
pub async fn restart_keeps_entries_and_ids(backend: &dyn Backend, store: u32) {
    if !backend.supports_restart() {
        eprintln!("conformance: backend has no restart; restart case not applicable");
        return;
    }
    let clock = clock();
    let config = QueueConfig::default();
    let q = open(backend, store, config.clone(), clock.clone()).await;
    let a = ok(q.push("kim", "a".into(), None).await, "restart: push");
    let b = ok(
        q.push("kim", "b".into(), Some(Duration::from_secs(60)))
            .await,
        "push",
    );
    let c = ok(q.push("kim", "c".into(), None).await, "restart: push");
    let gone = ok(q.push("lee", "x".into(), None).await, "restart: push");
    ok(q.ack("kim", a).await, "restart: ack");
    ok(q.remove("lee").await, "restart: remove");
    drop(q);
    let q = open(backend, store, config.clone(), clock.clone()).await;
    let got = ok(q.read("kim", 0, 10).await, "restart: read after reopen");
    assert_eq!(
        got.iter()
            .map(|e| (e.id, e.payload.clone(), e.expires_at))
            .collect::<Vec<_>>(),
        vec![
            (b, Bytes::from("b"), Some(T0 + 60_000)),
            (c, Bytes::from("c"), None)
        ],
        "restart: unacknowledged entries (with their expiry) must survive a reopen"
    );
    let d = ok(
        q.push("kim", "d".into(), None).await,
        "restart: push after reopen",
    );
    assert!(d > c, "restart: id {d} after reopen must exceed {c}");
    let l = ok(
        q.push("lee", "y".into(), None).await,
        "restart: push after reopen",
    );
    assert!(
        l > gone,
        "restart: id {l} of a removed recipient must exceed {gone}"
    );
    drop(q);
    clock.advance(Duration::from_secs(60));
    let q = open(backend, store, config, clock.clone()).await;
    let ids = ids_of(&*q, "kim").await;
    assert_eq!(ids, vec![c, d], "restart: expiry applies after a reopen");
    assert_eq!(
        ok(q.sweep().await, "restart: sweep"),
        0,
        "restart: read already freed b"
    );
}

/// A reference model of the semantics, written independently of the backends: plain vectors,
/// lazy expiry at the same points (read, len and push of a recipient; everything when a push
/// reaches the overall bound; sweep).
struct Model {
    config: QueueConfig,
    queues: std::collections::BTreeMap<String, Vec<(u64, Bytes, Option<u64>)>>,
}

impl Model {
    fn purge(&mut self, r: &str, now: u64) -> u64 {
        let Some(q) = self.queues.get_mut(r) else {
            return 0;
        };
        let before = q.len();
        q.retain(|(_, _, exp)| exp.is_none_or(|at| at > now));
        (before - q.len()) as u64
    }

    fn total(&self) -> u64 {
        self.queues
            .values()
            .flatten()
            .map(|(_, p, _)| p.len() as u64)
            .sum()
    }

    /// `Err(limit)` = refused; `Ok(n)` = drop the n oldest, then store.
    fn plan(&mut self, r: &str, size: u64, now: u64) -> Result<usize, Limit> {
        self.purge(r, now);
        if self.total() + size > self.config.max_total_bytes {
            let rs: Vec<String> = self.queues.keys().cloned().collect();
            for r in rs {
                self.purge(&r, now);
            }
        }
        let total = self.total();
        let q = self.queues.get(r).map(Vec::as_slice).unwrap_or_default();
        let bytes: u64 = q.iter().map(|(_, p, _)| p.len() as u64).sum();
        let c = &self.config;
        for drop in 0..=q.len() {
            let dropped: u64 = q[..drop].iter().map(|(_, p, _)| p.len() as u64).sum();
            let violated = if (q.len() - drop) as u64 + 1 > c.max_entries_per_recipient {
                Some(Limit::EntriesPerRecipient)
            } else if bytes - dropped + size > c.max_bytes_per_recipient {
                Some(Limit::BytesPerRecipient)
            } else if total - dropped + size > c.max_total_bytes {
                Some(Limit::TotalBytes)
            } else {
                None
            };
            match violated {
                None => return Ok(drop),
                Some(l) if c.overflow == OverflowPolicy::Refuse || drop == q.len() => {
                    return Err(l);
                }
                Some(_) => {}
            }
        }
        Err(Limit::TotalBytes)
    }
}

/// A small deterministic generator (xorshift64*), so a failure names a reproducible seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Random pushes (some with ttl), reads, acks, lens, removes, sweeps and clock steps, under
/// small bounds and both policies, must give exactly the results of a reference model.
pub async fn random_operations_match_a_model(backend: &dyn Backend, store: u32, seed: u64) {
    const OPS: usize = 300;
    let overflow = if seed.is_multiple_of(2) {
        OverflowPolicy::DropOldest
    } else {
        OverflowPolicy::Refuse
    };
    let config = QueueConfig::default()
        .with_max_entries_per_recipient(4)
        .with_max_bytes_per_recipient(60)
        .with_max_total_bytes(120)
        .with_max_payload_bytes(40)
        .with_overflow(overflow);
    let clock = clock();
    let q = open(backend, store, config.clone(), clock.clone()).await;
    let mut m = Model {
        config,
        queues: Default::default(),
    };
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut last_id: HashMap<String, u64> = HashMap::new();
    for step in 0..OPS {
        let at = format!("model seed {seed} ({overflow:?}) step {step}");
        let r = format!("r{}", rng.below(3));
        let now = clock.now_ms();
        match rng.below(10) {
            0..=3 => {
                let size = rng.below(41) as usize;
                let payload = Bytes::from(format!("{step:04}").repeat(11)).slice(..size);
                let ttl = match rng.below(4) {
                    0 => Some(Duration::from_millis(rng.below(3000))),
                    _ => None,
                };
                let got = q.push(&r, payload.clone(), ttl).await;
                match (m.plan(&r, size as u64, now), got) {
                    (Ok(drop), Ok(id)) => {
                        let prev = last_id.insert(r.clone(), id).unwrap_or(0);
                        assert!(id > prev, "{at}: push id {id} must exceed {prev}");
                        let e = m.queues.entry(r.clone()).or_default();
                        e.drain(..drop);
                        e.push((id, payload, crate::expiry(now, ttl)));
                    }
                    (Err(want), Err(QueueError::Full { limit, .. })) => {
                        assert_eq!(limit, want, "{at}: push refused by the wrong bound");
                    }
                    (want, got) => {
                        panic!("{at}: push to {r} of {size} bytes: model {want:?}, got {got:?}")
                    }
                }
            }
            4 | 5 => {
                m.purge(&r, now);
                let ids: Vec<u64> = m
                    .queues
                    .get(&r)
                    .into_iter()
                    .flatten()
                    .map(|e| e.0)
                    .collect();
                let after = match rng.below(3) {
                    0 => 0,
                    _ => ids
                        .get(rng.below(ids.len() as u64 + 1) as usize)
                        .copied()
                        .unwrap_or(0),
                };
                let max = rng.below(5) as usize;
                let want: Vec<(u64, Bytes, Option<u64>)> = m
                    .queues
                    .get(&r)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.0 > after)
                    .take(max)
                    .cloned()
                    .collect();
                let got: Vec<(u64, Bytes, Option<u64>)> = ok(q.read(&r, after, max).await, &at)
                    .into_iter()
                    .map(|e| (e.id, e.payload, e.expires_at))
                    .collect();
                assert_eq!(got, want, "{at}: read({r}, after {after}, max {max})");
            }
            6 => {
                let ids: Vec<u64> = m
                    .queues
                    .get(&r)
                    .into_iter()
                    .flatten()
                    .map(|e| e.0)
                    .collect();
                let up_to = ids
                    .get(rng.below(ids.len() as u64 + 1) as usize)
                    .copied()
                    .unwrap_or(0);
                let e = m.queues.entry(r.clone()).or_default();
                let before = e.len();
                e.retain(|x| x.0 > up_to);
                let want = (before - e.len()) as u64;
                assert_eq!(
                    ok(q.ack(&r, up_to).await, &at),
                    want,
                    "{at}: ack({r}, {up_to}) count"
                );
            }
            7 => {
                m.purge(&r, now);
                let want = m.queues.get(&r).map_or(0, Vec::len) as u64;
                assert_eq!(ok(q.len(&r).await, &at), want, "{at}: len({r})");
            }
            8 => match rng.below(3) {
                0 => {
                    let want = m.queues.remove(&r).map_or(0, |v| v.len()) as u64;
                    assert_eq!(ok(q.remove(&r).await, &at), want, "{at}: remove({r}) count");
                }
                1 => {
                    let rs: Vec<String> = m.queues.keys().cloned().collect();
                    let want: u64 = rs.iter().map(|r| m.purge(r, now)).sum();
                    assert_eq!(ok(q.sweep().await, &at), want, "{at}: sweep count");
                }
                _ => clock.advance(Duration::from_millis(rng.below(1500))),
            },
            _ => clock.advance(Duration::from_millis(rng.below(1500))),
        }
    }
}
