//! The history conformance suite: every [`History`] backend runs it, unchanged, from its own
//! tests (the semantics it checks are in the [`history`](crate::history) module docs).
//!
//! A backend's test implements [`HistoryBackend`] (how to open a store) and calls [`run_all`]
//! from a multi-threaded tokio test:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn history_conformance() {
//!     chinwag_queue::history_conformance::run_all(&MyBackend::new()).await;
//! }
//! ```
//!
//! Each case panics with a message saying what went wrong. No case sleeps: ages are driven by
//! a [`ManualClock`], and the concurrent case's reader polls with a hang guard.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{
    BoxFuture, Clock, Direction, History, HistoryConfig, Limit, ManualClock, Offset, Page,
    QueueError, Retention, StreamState,
};

/// How the suite opens history stores of the backend under test.
pub trait HistoryBackend: Send + Sync {
    /// Opens store number `store` with `config` and `clock`. The first open of a number creates
    /// an empty store; the suite never uses one number in two cases. When
    /// [`supports_restart`](HistoryBackend::supports_restart) is true, opening a number again
    /// after every handle to it was dropped is a restart: it must show what the previous
    /// instance stored. Otherwise the suite never opens a number twice.
    fn open(
        &self,
        store: u32,
        config: HistoryConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn History>, QueueError>>;

    /// Whether the backend keeps data across a reopen (durable backends). Default false.
    fn supports_restart(&self) -> bool {
        false
    }
}

/// Runs every case, one after the other, against `backend`.
pub async fn run_all(backend: &dyn HistoryBackend) {
    first_append_starts_the_epoch_at_offset_1(backend, 1).await;
    batches_get_consecutive_offsets_in_order_atomically(backend, 2).await;
    an_existing_stream_ignores_new_epoch(backend, 3).await;
    reads_go_both_ways_with_limits_and_bounds(backend, 4).await;
    trim_by_count_moves_first_and_keeps_last(backend, 5).await;
    trim_by_age_hides_aged_and_keeps_epoch_and_last(backend, 6).await;
    remove_then_append_starts_a_new_epoch(backend, 7).await;
    sweep_trims_aged_and_forgets_streams_aged_out(backend, 8).await;
    payload_bound_at_the_boundary(backend, 9).await;
    stream_bound_refuses_new_streams_only(backend, 10).await;
    total_bytes_bound_refuses_whole_batches(backend, 11).await;
    invalid_names_and_empty_batches_are_refused(backend, 12).await;
    concurrent_appenders_get_offsets_1_to_n_in_one_order(backend, 13).await;
    restart_keeps_streams_epochs_offsets_and_retention(backend, 14).await;
}

const T0: u64 = 1_700_000_000_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

async fn open(
    backend: &dyn HistoryBackend,
    store: u32,
    config: HistoryConfig,
    clock: Arc<dyn Clock>,
) -> Arc<dyn History> {
    match backend.open(store, config, clock).await {
        Ok(h) => h,
        Err(e) => panic!("opening history store {store} failed: {e}"),
    }
}

fn ok<T>(r: Result<T, QueueError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

fn batch(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|s| Bytes::from(s.to_string())).collect()
}

/// Keeps 1000, no age bound.
fn keep() -> Retention {
    Retention::new(1000, None)
}

fn st(epoch: u64, first: Offset, last: Offset) -> StreamState {
    StreamState::new(epoch, first, last)
}

async fn append(h: &dyn History, s: &str, items: &[&str], r: Retention, epoch: u64) -> StreamState {
    ok(h.append(s, &batch(items), r, epoch).await, "append")
}

async fn page(h: &dyn History, s: &str, from: Offset, d: Direction, limit: usize) -> Page {
    match ok(h.read(s, from, d, limit).await, "read") {
        Some(p) => p,
        None => panic!("read({s:?}, {from}, {d:?}, {limit}): the stream must exist"),
    }
}

/// (offset, payload) of a page.
fn got(p: &Page) -> Vec<(Offset, String)> {
    p.publications
        .iter()
        .map(|x| (x.offset, String::from_utf8_lossy(&x.payload).into_owned()))
        .collect()
}

fn want(items: &[(Offset, &str)]) -> Vec<(Offset, String)> {
    items.iter().map(|&(o, s)| (o, s.to_owned())).collect()
}

fn assert_full<T: std::fmt::Debug>(r: Result<T, QueueError>, limit: Limit, what: &str) {
    match r {
        Err(QueueError::Full { limit: l, .. }) if l == limit => {}
        other => panic!("{what}: expected Full({limit}), got {other:?}"),
    }
}

/// The first append of a stream starts it under the epoch given, at offset 1, and stamps the
/// publication with the clock; an unknown stream has no state and no page.
pub async fn first_append_starts_the_epoch_at_offset_1(b: &dyn HistoryBackend, store: u32) {
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    assert_eq!(
        ok(h.state("room").await, "state"),
        None,
        "first: no stream yet"
    );
    assert_eq!(
        ok(h.read("room", 0, Direction::Forward, 10).await, "read"),
        None,
        "first: reading an unknown stream gives None"
    );
    let s = append(&*h, "room", &["a"], keep(), 77).await;
    assert_eq!(s, st(77, 1, 1), "first: epoch 77, first = last = 1");
    assert_eq!(ok(h.state("room").await, "state"), Some(s), "first: state");
    let p = page(&*h, "room", 0, Direction::Forward, 10).await;
    assert_eq!(p.state, s, "first: the page carries the state");
    assert_eq!(got(&p), want(&[(1, "a")]), "first: the publication");
    assert_eq!(p.publications[0].at_ms, T0, "first: at_ms is the clock's");
}

/// A batch gets consecutive offsets after the last, in the order given, with one `at_ms`; a
/// batch with one payload too large stores nothing of it.
pub async fn batches_get_consecutive_offsets_in_order_atomically(
    b: &dyn HistoryBackend,
    store: u32,
) {
    let config = HistoryConfig::default().with_max_payload_bytes(4);
    let c = clock();
    let h = open(b, store, config, c.clone()).await;
    append(&*h, "s", &["a"], keep(), 1).await;
    c.advance(Duration::from_millis(5));
    let s = append(&*h, "s", &["b", "c", "d"], keep(), 1).await;
    assert_eq!(
        s,
        st(1, 1, 4),
        "batch: the batch's last payload is offset 4"
    );
    let r = h
        .append("s", &batch(&["e", "toolong", "f"]), keep(), 1)
        .await;
    assert!(
        matches!(r, Err(QueueError::TooLarge { size: 7, max: 4 })),
        "batch: a payload over the bound refuses the batch, got {r:?}"
    );
    let s = append(&*h, "s", &["g", "h"], keep(), 1).await;
    assert_eq!(s, st(1, 1, 6), "batch: a refused batch takes no offsets");
    let p = page(&*h, "s", 0, Direction::Forward, 100).await;
    assert_eq!(
        got(&p),
        want(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "g"), (6, "h")]),
        "batch: consecutive offsets in append order, nothing of the refused batch"
    );
    let at: Vec<u64> = p.publications.iter().map(|x| x.at_ms).collect();
    assert_eq!(
        at,
        [T0, T0 + 5, T0 + 5, T0 + 5, T0 + 5, T0 + 5],
        "batch: at_ms"
    );
    // Lookalike names are distinct streams.
    for (i, n) in ["s ", "S", "s:x", "s\u{0}", "é"].into_iter().enumerate() {
        let s = append(&*h, n, &[n], keep(), 10 + i as u64).await;
        assert_eq!(s, st(10 + i as u64, 1, 1), "batch: {n:?} is its own stream");
    }
}

/// An append to an existing stream keeps its epoch, whatever `new_epoch` says.
pub async fn an_existing_stream_ignores_new_epoch(b: &dyn HistoryBackend, store: u32) {
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    append(&*h, "s", &["a"], keep(), 5).await;
    let s = append(&*h, "s", &["b"], keep(), 6).await;
    assert_eq!(s, st(5, 1, 2), "epoch: the stream keeps epoch 5");
    let s = append(&*h, "t", &["a"], keep(), 6).await;
    assert_eq!(s.epoch, 6, "epoch: another stream starts under its own");
}

/// Forward and backward reads: strictly after/before `from`, up to `limit`, consecutive,
/// from 0 and from `u64::MAX`, empty at the ends; reads change nothing.
pub async fn reads_go_both_ways_with_limits_and_bounds(b: &dyn HistoryBackend, store: u32) {
    use Direction::{Backward, Forward};
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    let items: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let s = append(&*h, "r", &refs, Retention::new(8, None), 3).await;
    assert_eq!(
        s,
        st(3, 3, 10),
        "reads: max_len 8 of a batch of 10 keeps 3..=10"
    );
    let offsets = |p: &Page| p.publications.iter().map(|x| x.offset).collect::<Vec<_>>();
    let cases: &[(Offset, Direction, usize, &[Offset])] = &[
        (0, Forward, 100, &[3, 4, 5, 6, 7, 8, 9, 10]),
        (0, Forward, 3, &[3, 4, 5]),
        (2, Forward, 2, &[3, 4]),
        (5, Forward, 2, &[6, 7]),
        (9, Forward, 5, &[10]),
        (10, Forward, 5, &[]),
        (11, Forward, 5, &[]),
        (u64::MAX, Forward, 5, &[]),
        (4, Forward, 0, &[]),
        (u64::MAX, Backward, 100, &[10, 9, 8, 7, 6, 5, 4, 3]),
        (u64::MAX, Backward, 2, &[10, 9]),
        (11, Backward, 1, &[10]),
        (10, Backward, 3, &[9, 8, 7]),
        (5, Backward, 10, &[4, 3]),
        (3, Backward, 10, &[]),
        (1, Backward, 10, &[]),
        (0, Backward, 10, &[]),
        (8, Backward, 0, &[]),
    ];
    for &(from, d, limit, expect) in cases {
        let p = page(&*h, "r", from, d, limit).await;
        assert_eq!(
            offsets(&p),
            expect,
            "reads: read(from {from}, {d:?}, limit {limit})"
        );
        assert_eq!(p.state, s, "reads: read(from {from}, {d:?}) state");
        for x in &p.publications {
            assert_eq!(
                x.payload,
                format!("m{}", x.offset),
                "reads: payload of {}",
                x.offset
            );
        }
    }
    assert_eq!(
        ok(h.state("r").await, "state"),
        Some(s),
        "reads: reads change nothing"
    );
    assert_eq!(
        ok(h.read("other", 0, Backward, 5).await, "read"),
        None,
        "reads: unknown"
    );
}

/// Trimming by count: the oldest go, `first` advances, `last` stays the last appended; a
/// smaller `max_len` on a later append trims at once.
pub async fn trim_by_count_moves_first_and_keeps_last(b: &dyn HistoryBackend, store: u32) {
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    let three = Retention::new(3, None);
    for i in 1..=3 {
        let s = append(&*h, "c", &[format!("{i}").as_str()], three, 1).await;
        assert_eq!(s, st(1, 1, i), "count: under max_len nothing is trimmed");
    }
    let s = append(&*h, "c", &["4"], three, 1).await;
    assert_eq!(s, st(1, 2, 4), "count: the 4th append trims offset 1");
    let s = append(&*h, "c", &["5", "6"], three, 1).await;
    assert_eq!(s, st(1, 4, 6), "count: a batch of 2 trims 2");
    let s = append(&*h, "c", &["7"], Retention::new(1, None), 1).await;
    assert_eq!(s, st(1, 7, 7), "count: a smaller max_len trims at once");
    let p = page(&*h, "c", 0, Direction::Forward, 10).await;
    assert_eq!(got(&p), want(&[(7, "7")]), "count: only the newest is held");
    assert!(
        p.state.holds_after(1, 6) && !p.state.holds_after(1, 5),
        "count: recovery rule"
    );
}

/// Trimming by age (on the injected clock): a publication is aged exactly at `at + max_age`,
/// never returned after, `first` moves past it; with everything aged the stream keeps its
/// epoch and last (`first = last + 1`) and appends continue after the last.
pub async fn trim_by_age_hides_aged_and_keeps_epoch_and_last(b: &dyn HistoryBackend, store: u32) {
    let c = clock();
    let h = open(b, store, HistoryConfig::default(), c.clone()).await;
    let ten = Retention::new(100, Some(Duration::from_secs(10)));
    append(&*h, "a", &["1", "2"], ten, 9).await;
    c.advance(Duration::from_secs(5));
    append(&*h, "a", &["3"], ten, 9).await;
    c.advance(Duration::from_millis(4_999));
    let p = page(&*h, "a", 0, Direction::Forward, 10).await;
    assert_eq!(
        p.state,
        st(9, 1, 3),
        "age: 1 ms before 10 s everything is held"
    );
    c.advance(Duration::from_millis(1));
    let p = page(&*h, "a", 0, Direction::Forward, 10).await;
    assert_eq!(
        got(&p),
        want(&[(3, "3")]),
        "age: 1 and 2 aged exactly at 10 s"
    );
    assert_eq!(p.state, st(9, 3, 3), "age: first moves past the aged");
    let p = page(&*h, "a", u64::MAX, Direction::Backward, 10).await;
    assert_eq!(
        got(&p),
        want(&[(3, "3")]),
        "age: backward reads skip the aged too"
    );
    c.advance(Duration::from_secs(5));
    let p = page(&*h, "a", 0, Direction::Forward, 10).await;
    assert!(
        p.publications.is_empty(),
        "age: everything aged, got {:?}",
        got(&p)
    );
    assert_eq!(
        p.state,
        st(9, 4, 3),
        "age: the stream keeps epoch and last, first = last + 1"
    );
    assert_eq!(
        ok(h.state("a").await, "state"),
        Some(st(9, 4, 3)),
        "age: state"
    );
    let s = append(&*h, "a", &["4"], ten, 10).await;
    assert_eq!(
        s,
        st(9, 4, 4),
        "age: an append continues the epoch after the last"
    );
    // A zero max_age keeps nothing, but the offsets are taken.
    let s = append(
        &*h,
        "z",
        &["x", "y"],
        Retention::new(10, Some(Duration::ZERO)),
        2,
    )
    .await;
    assert_eq!(s, st(2, 3, 2), "age: a zero max_age ages the batch at once");
}

/// `remove` forgets a stream (and says whether it existed); the next append starts the epoch
/// it is given at offset 1.
pub async fn remove_then_append_starts_a_new_epoch(b: &dyn HistoryBackend, store: u32) {
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    append(&*h, "x", &["a", "b"], keep(), 1).await;
    assert!(
        ok(h.remove("x").await, "remove"),
        "remove: the stream existed"
    );
    assert!(
        !ok(h.remove("x").await, "remove"),
        "remove: twice is harmless"
    );
    assert_eq!(ok(h.state("x").await, "state"), None, "remove: no state");
    assert_eq!(
        ok(h.read("x", 0, Direction::Forward, 9).await, "read"),
        None,
        "remove: read"
    );
    let s = append(&*h, "x", &["c"], keep(), 2).await;
    assert_eq!(s, st(2, 1, 1), "remove: a new epoch from offset 1");
    let p = page(&*h, "x", 0, Direction::Forward, 9).await;
    assert_eq!(
        got(&p),
        want(&[(1, "c")]),
        "remove: nothing of the old epoch"
    );
}

/// `sweep` trims aged publications everywhere (counting them), forgets streams left with
/// nothing, keeps the rest; an append to a swept-away stream starts a new epoch.
pub async fn sweep_trims_aged_and_forgets_streams_aged_out(b: &dyn HistoryBackend, store: u32) {
    let c = clock();
    let h = open(b, store, HistoryConfig::default(), c.clone()).await;
    let min = Retention::new(100, Some(Duration::from_secs(60)));
    append(&*h, "gone", &["1", "2"], min, 1).await;
    append(&*h, "half", &["1", "2", "3"], min, 1).await;
    append(&*h, "forever", &["1"], keep(), 1).await;
    c.advance(Duration::from_secs(30));
    append(&*h, "half", &["4"], min, 1).await;
    assert_eq!(ok(h.sweep().await, "sweep"), 0, "sweep: nothing aged yet");
    c.advance(Duration::from_secs(30));
    assert_eq!(
        ok(h.sweep().await, "sweep"),
        5,
        "sweep: 2 + 3 publications aged"
    );
    assert_eq!(
        ok(h.sweep().await, "sweep"),
        0,
        "sweep: a second sweep removes nothing"
    );
    assert_eq!(
        ok(h.state("gone").await, "state"),
        None,
        "sweep: aged-out stream forgotten"
    );
    assert_eq!(
        ok(h.state("half").await, "state"),
        Some(st(1, 4, 4)),
        "sweep: half trimmed"
    );
    let p = page(&*h, "forever", 0, Direction::Forward, 9).await;
    assert_eq!(got(&p), want(&[(1, "1")]), "sweep: no age bound, kept");
    let s = append(&*h, "gone", &["new"], min, 2).await;
    assert_eq!(
        s,
        st(2, 1, 1),
        "sweep: a swept-away stream starts a new epoch"
    );
    // A stream read after aging (lazily trimmed) is forgotten by the sweep all the same.
    c.advance(Duration::from_secs(60));
    let p = page(&*h, "gone", 0, Direction::Forward, 9).await;
    assert_eq!(p.state, st(2, 2, 1), "sweep: aged out, kept until swept");
    ok(h.sweep().await, "sweep");
    assert_eq!(
        ok(h.state("gone").await, "state"),
        None,
        "sweep: forgotten after a read"
    );
    assert_eq!(
        ok(h.state("half").await, "state"),
        None,
        "sweep: half aged out by now"
    );
}

/// `max_payload_bytes` at the boundary: exactly the bound is stored, one byte more is
/// `TooLarge`; also at the default bound (1 MiB), byte for byte.
pub async fn payload_bound_at_the_boundary(b: &dyn HistoryBackend, store: u32) {
    let config = HistoryConfig::default();
    let max = usize::try_from(config.max_payload_bytes).unwrap_or(usize::MAX);
    let h = open(b, store, config, clock()).await;
    let big = Bytes::from((0..max).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let s = ok(
        h.append("big", std::slice::from_ref(&big), keep(), 1).await,
        "append 1 MiB",
    );
    assert_eq!(s, st(1, 1, 1), "payload: exactly the bound is stored");
    let r = h
        .append("big", &[Bytes::from(vec![0; max + 1])], keep(), 1)
        .await;
    assert!(
        matches!(r, Err(QueueError::TooLarge { .. })),
        "payload: the bound + 1 must be TooLarge, got {r:?}"
    );
    let p = page(&*h, "big", 0, Direction::Forward, 9).await;
    assert_eq!(p.publications.len(), 1, "payload: nothing more stored");
    assert!(
        p.publications[0].payload == big,
        "payload: round-trips byte for byte"
    );
    assert_eq!(
        p.state,
        st(1, 1, 1),
        "payload: a refused append takes no offset"
    );
}

/// `max_streams`: the stream over the bound is refused (`Limit::Streams`), appends to
/// existing streams go on, and a removed stream makes room.
pub async fn stream_bound_refuses_new_streams_only(b: &dyn HistoryBackend, store: u32) {
    let h = open(
        b,
        store,
        HistoryConfig::default().with_max_streams(3),
        clock(),
    )
    .await;
    for n in ["a", "b", "c"] {
        append(&*h, n, &["x"], keep(), 1).await;
    }
    let r = h.append("d", &batch(&["x"]), keep(), 1).await;
    assert_full(
        r,
        Limit::Streams,
        "streams: a 4th stream over max_streams 3",
    );
    assert_eq!(
        ok(h.state("d").await, "state"),
        None,
        "streams: nothing of d stored"
    );
    let s = append(&*h, "a", &["y"], keep(), 1).await;
    assert_eq!(s, st(1, 1, 2), "streams: an existing stream still appends");
    assert!(ok(h.remove("b").await, "remove"), "streams: remove b");
    let s = append(&*h, "d", &["x"], keep(), 4).await;
    assert_eq!(s, st(4, 1, 1), "streams: room again after a remove");
}

/// `max_total_bytes`: a batch that would go over is refused whole (`Limit::TotalBytes`);
/// exactly the bound is fine; trimming (by count, by sweep) and removing free bytes.
pub async fn total_bytes_bound_refuses_whole_batches(b: &dyn HistoryBackend, store: u32) {
    let c = clock();
    let h = open(
        b,
        store,
        HistoryConfig::default().with_max_total_bytes(100),
        c.clone(),
    )
    .await;
    let (a, bb) = ("a".repeat(10), "b".repeat(10));
    let (a, bb) = (a.as_str(), bb.as_str());
    let six = [a; 6];
    append(&*h, "a", &six, keep(), 1).await;
    let aged = Retention::new(100, Some(Duration::from_secs(1)));
    append(&*h, "b", &[bb, bb, bb], aged, 1).await;
    let r = h.append("c", &batch(&[a, a]), keep(), 1).await;
    assert_full(r, Limit::TotalBytes, "bytes: 90 + 20 over 100");
    assert_eq!(
        ok(h.state("c").await, "state"),
        None,
        "bytes: nothing of the batch stored"
    );
    let r = h.append("a", &batch(&[a, a]), keep(), 1).await;
    assert_full(r, Limit::TotalBytes, "bytes: also for an existing stream");
    let s = append(&*h, "a", &[a], keep(), 1).await;
    assert_eq!(
        s,
        st(1, 1, 7),
        "bytes: exactly 100 fits; the refused took no offsets"
    );
    let s = append(&*h, "a", &[a, a], Retention::new(5, None), 1).await;
    assert_eq!(
        s,
        st(1, 5, 9),
        "bytes: a count trim in the same append frees room"
    );
    c.advance(Duration::from_secs(1));
    assert_eq!(
        ok(h.sweep().await, "sweep"),
        3,
        "bytes: sweep frees b's 30 bytes"
    );
    append(&*h, "c", &[a; 5], keep(), 1).await;
    let r = h.append("c", &batch(&["!"]), keep(), 1).await;
    assert_full(r, Limit::TotalBytes, "bytes: full again at 50 + 50");
    assert!(ok(h.remove("c").await, "remove"), "bytes: remove c");
    let s = append(&*h, "d", &[a; 5], keep(), 1).await;
    assert_eq!(s, st(1, 1, 5), "bytes: a remove frees its bytes");
}

fn inv<T>(r: &Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::InvalidRecipient { .. }))
}

/// Bad input is an error, never a panic: empty and over-long names, an empty batch.
pub async fn invalid_names_and_empty_batches_are_refused(b: &dyn HistoryBackend, store: u32) {
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    let long = "n".repeat(crate::history::MAX_STREAM_LEN + 1);
    let longest = "n".repeat(crate::history::MAX_STREAM_LEN);
    for name in ["", long.as_str()] {
        let what = format!("names: {} bytes", name.len());
        assert!(
            inv(&h.append(name, &batch(&["x"]), keep(), 1).await),
            "{what}: append"
        );
        assert!(inv(&h.state(name).await), "{what}: state");
        assert!(
            inv(&h.read(name, 0, Direction::Forward, 1).await),
            "{what}: read"
        );
        assert!(inv(&h.remove(name).await), "{what}: remove");
    }
    assert!(
        inv(&h.append("ok", &[], keep(), 1).await),
        "names: an empty batch"
    );
    assert_eq!(
        ok(h.state("ok").await, "state"),
        None,
        "names: nothing stored"
    );
    let s = append(&*h, &longest, &["x"], keep(), 1).await;
    assert_eq!(s, st(1, 1, 1), "names: the longest name works");
    // Names are strings of any characters: NUL (the hub's conversation streams use it as a
    // separator), and names that differ only after one are different streams.
    let a = "\0dm\0alice\0bob";
    let b = "\0dm\0alice\0bobby";
    append(&*h, a, &["1", "2"], keep(), 1).await;
    let s = append(&*h, b, &["x"], keep(), 2).await;
    assert_eq!(s, st(2, 1, 1), "names: NUL inside, another stream");
    let page = ok(h.read(a, 0, Direction::Forward, 10).await, "read")
        .expect("names: the NUL name is held");
    assert_eq!(page.publications.len(), 2, "names: NUL inside, its own two");
    assert_eq!(
        ok(h.state("\0dm\0alice").await, "state"),
        None,
        "names: a prefix is not it"
    );
}

/// Eight tasks appending 200 times each to one stream get distinct offsets forming exactly
/// `1..=1600`, each task's in its own order; a concurrent reader sees them consecutively.
pub async fn concurrent_appenders_get_offsets_1_to_n_in_one_order(
    b: &dyn HistoryBackend,
    store: u32,
) {
    const TASKS: usize = 8;
    const EACH: usize = 200;
    const N: u64 = (TASKS * EACH) as u64;
    let h = open(b, store, HistoryConfig::default(), clock()).await;
    let all = Retention::new(N, None);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let s = ok(
                    h.append("hot", &[format!("{t}:{i}").into()], all, 1).await,
                    "append",
                );
                mine.push(s.last);
            }
            mine
        }));
    }
    let reader = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            while (seen.len() as u64) < N {
                let from = seen.len() as u64;
                let Some(p) = ok(h.read("hot", from, Direction::Forward, 100).await, "read") else {
                    tokio::task::yield_now().await;
                    continue;
                };
                for (k, x) in p.publications.iter().enumerate() {
                    assert_eq!(
                        x.offset,
                        from + 1 + k as u64,
                        "concurrent: reader saw a gap"
                    );
                    seen.push(String::from_utf8_lossy(&x.payload).into_owned());
                }
                if p.publications.is_empty() {
                    // Nothing new yet: let the appenders run (the hang guard bounds this).
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };
    let run = async {
        let mut offsets = Vec::new();
        for (t, task) in tasks.into_iter().enumerate() {
            let mine = task
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "concurrent: task {t} out of order"
            );
            offsets.extend(mine);
        }
        let seen = reader
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        (offsets, seen)
    };
    // A hang guard, not a timing assertion: a lost publication would make the reader wait.
    let Ok((mut offsets, seen)) = tokio::time::timeout(Duration::from_secs(300), run).await else {
        panic!("concurrent: the reader did not see {N} publications within 300 s");
    };
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=N).collect::<Vec<_>>(),
        "concurrent: offsets are exactly 1..=N"
    );
    let mut next = [0usize; TASKS];
    for text in &seen {
        let (t, i) = text.split_once(':').expect("concurrent: payload");
        let (t, i): (usize, usize) = (t.parse().expect("task"), i.parse().expect("index"));
        assert_eq!(
            i, next[t],
            "concurrent: task {t}'s publications in its order, once"
        );
        next[t] += 1;
    }
    let p = page(&*h, "hot", 0, Direction::Forward, usize::MAX).await;
    assert_eq!(p.state, st(1, 1, N), "concurrent: final state");
    assert_eq!(
        p.publications.len() as u64,
        N,
        "concurrent: everything held"
    );
}

/// Durable backends: streams, epochs, offsets, publications (with `at_ms`), retention and the
/// bounds' counts survive a reopen; appends continue after the last offset. Skipped (and says
/// so) for backends without restart.
pub async fn restart_keeps_streams_epochs_offsets_and_retention(
    b: &dyn HistoryBackend,
    store: u32,
) {
    if !b.supports_restart() {
        eprintln!("history conformance: backend has no restart; restart case not applicable");
        return;
    }
    let c = clock();
    let config = HistoryConfig::default()
        .with_max_streams(3)
        .with_max_total_bytes(20);
    let h = open(b, store, config, c.clone()).await;
    let aged = Retention::new(100, Some(Duration::from_secs(60)));
    append(&*h, "k", &["a", "b", "c"], Retention::new(2, None), 7).await;
    append(&*h, "m", &["0123456789"], aged, 8).await;
    append(&*h, "gone", &["x"], keep(), 9).await;
    assert!(ok(h.remove("gone").await, "remove"), "restart: remove gone");
    drop(h);
    let h = open(b, store, config, c.clone()).await;
    let p = page(&*h, "k", 0, Direction::Forward, 9).await;
    assert_eq!(p.state, st(7, 2, 3), "restart: state survives");
    assert_eq!(
        got(&p),
        want(&[(2, "b"), (3, "c")]),
        "restart: publications survive"
    );
    assert_eq!(p.publications[0].at_ms, T0, "restart: at_ms survives");
    assert_eq!(
        ok(h.state("gone").await, "state"),
        None,
        "restart: removed stays removed"
    );
    let s = append(&*h, "k", &["d"], Retention::new(2, None), 70).await;
    assert_eq!(
        s,
        st(7, 3, 4),
        "restart: appends continue after the last, same epoch"
    );
    // Bytes: 2 (k) + 10 (m) held; 9 more fit, the bound is remembered.
    let r = h.append("n", &batch(&["123456789"]), keep(), 1).await;
    assert_full(
        r,
        Limit::TotalBytes,
        "restart: total bytes survive (2 + 10 + 9 > 20)",
    );
    append(&*h, "n", &["12345678"], keep(), 1).await;
    let r = h.append("o", &batch(&["x"]), keep(), 1).await;
    assert_full(r, Limit::Streams, "restart: the stream count survives");
    drop(h);
    c.advance(Duration::from_secs(60));
    let h = open(b, store, config, c.clone()).await;
    let p = page(&*h, "m", 0, Direction::Forward, 9).await;
    assert_eq!(
        p.state,
        st(8, 2, 1),
        "restart: the retention (max_age) survives a reopen"
    );
    ok(h.sweep().await, "sweep");
    assert_eq!(ok(h.state("m").await, "state"), None, "restart: swept away");
    append(&*h, "o", &["0123456789"], keep(), 1).await;
}
