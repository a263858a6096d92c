//! `RedisHistory` against a private redis-server per test: offsets and epochs, reads both
//! ways, trimming by count and by age (a `ManualClock`), remove, sweep, bounds at their edges,
//! two processes appending to one stream, reconnects and a Redis restart. After most cases the
//! Redis keys are checked for consistent accounting (the layout is in the module docs).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chinwag_queue::{
    Clock, Direction, History, HistoryConfig, Limit, ManualClock, Page, QueueError, Retention,
    StreamState,
};
use chinwag_queue_redis::test_server::RedisServer;
use chinwag_queue_redis::{RedisHistory, RedisOptions, SWEEP_BATCH, redis};

const T0: u64 = 1_700_000_000_000;
const PREFIX: &str = "t:";
const E1: u64 = 1_000_001;
const E2: u64 = 2_000_002;

fn keep(n: u64) -> Retention {
    Retention::new(n, None)
}

fn aged(n: u64, secs: u64) -> Retention {
    Retention::new(n, Some(Duration::from_secs(secs)))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn open(server: &RedisServer, config: HistoryConfig, clock: Arc<dyn Clock>) -> RedisHistory {
    open_prefix(server, config, clock, PREFIX).await
}

async fn open_prefix(
    server: &RedisServer,
    config: HistoryConfig,
    clock: Arc<dyn Clock>,
    prefix: &str,
) -> RedisHistory {
    let options = RedisOptions::default().prefix(prefix).clock(clock);
    RedisHistory::connect_with(&server.url(), config, options)
        .await
        .expect("connect")
}

fn start() -> (RedisServer, Arc<ManualClock>) {
    (RedisServer::start(), Arc::new(ManualClock::new(T0)))
}

async fn page(h: &RedisHistory, s: &str, from: u64, dir: Direction, limit: usize) -> Page {
    h.read(s, from, dir, limit)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("stream {s} must exist"))
}

/// Offsets and payloads of a page.
fn items(p: &Page) -> Vec<(u64, String)> {
    p.publications
        .iter()
        .map(|p| (p.offset, String::from_utf8_lossy(&p.payload).into_owned()))
        .collect()
}

fn offsets(p: &Page) -> Vec<u64> {
    p.publications.iter().map(|p| p.offset).collect()
}

/// An `XRANGE` entry: id and fields.
type XEntry = (String, Vec<(String, Vec<u8>)>);

/// Checks the Redis keys under `prefix`: the global stream count and byte total match the
/// streams' metas, each stream holds exactly `f..=l` and its meta's bytes are its payloads'.
async fn check_accounting(server: &RedisServer, prefix: &str) {
    let client = redis::Client::open(server.url()).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let metas: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{prefix}{{h:*}}:m"))
        .query_async(&mut c)
        .await
        .expect("KEYS");
    let mut bytes = 0u64;
    for m in &metas {
        let (f, l, held): (u64, u64, u64) = redis::cmd("HMGET")
            .arg(m)
            .arg("f")
            .arg("l")
            .arg("b")
            .query_async(&mut c)
            .await
            .expect("HMGET");
        let mut p = m.clone();
        p.truncate(p.len() - 1);
        p.push(b'p');
        let entries: Vec<XEntry> = redis::cmd("XRANGE")
            .arg(&p)
            .arg("-")
            .arg("+")
            .query_async(&mut c)
            .await
            .expect("XRANGE");
        let name = String::from_utf8_lossy(m);
        let ids: Vec<u64> = entries
            .iter()
            .map(|(id, _)| id.trim_end_matches("-0").parse().expect("id"))
            .collect();
        assert_eq!(ids, (f..=l).collect::<Vec<_>>(), "{name} must hold f..=l");
        let sum: u64 = entries
            .iter()
            .map(|(_, fields)| fields.iter().find(|(k, _)| k == "d").expect("d").1.len() as u64)
            .sum();
        assert_eq!(sum, held, "{name}: bytes in meta vs payloads");
        bytes += held;
    }
    let (streams, total): (Option<u64>, Option<u64>) = redis::pipe()
        .get(format!("{prefix}h:streams"))
        .get(format!("{prefix}h:bytes"))
        .query_async(&mut c)
        .await
        .expect("GET");
    assert_eq!(streams.unwrap_or(0), metas.len() as u64, "stream count");
    assert_eq!(total.unwrap_or(0), bytes, "total bytes");
}

#[tokio::test]
async fn append_assigns_consecutive_offsets_under_the_first_epoch() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    assert_eq!(h.state("room").await.expect("state"), None);
    assert!(
        h.read("room", 0, Direction::Forward, 10)
            .await
            .expect("read")
            .is_none()
    );

    let s = h
        .append("room", &[b("a"), b("b"), b("c")], keep(100), E1)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 1, 3), "first batch: 1..=3 under E1");
    clock.advance(Duration::from_millis(5));
    let s = h
        .append("room", &[b("d")], keep(100), E2)
        .await
        .expect("append");
    assert_eq!(
        s,
        StreamState::new(E1, 1, 4),
        "new_epoch is ignored for an existing stream"
    );
    assert_eq!(h.state("room").await.expect("state"), Some(s));

    let p = page(&h, "room", 0, Direction::Forward, 100).await;
    assert_eq!(p.state, s);
    assert_eq!(
        items(&p),
        vec![
            (1, "a".into()),
            (2, "b".into()),
            (3, "c".into()),
            (4, "d".into())
        ]
    );
    let at: Vec<u64> = p.publications.iter().map(|p| p.at_ms).collect();
    assert_eq!(
        at,
        vec![T0, T0, T0, T0 + 5],
        "at_ms is the clock's at the append"
    );

    // Another stream starts on its own.
    let o = h
        .append("other", &[b("x")], keep(100), E2)
        .await
        .expect("append");
    assert_eq!(o, StreamState::new(E2, 1, 1));
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn reads_forward_and_backward_with_limits() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    let payloads: Vec<Bytes> = (1..=10).map(|i| b(&format!("p{i}"))).collect();
    h.append("r", &payloads, keep(100), E1)
        .await
        .expect("append");
    let fwd = |from, limit| {
        let h = &h;
        async move { offsets(&page(h, "r", from, Direction::Forward, limit).await) }
    };
    assert_eq!(fwd(0, 3).await, vec![1, 2, 3]);
    assert_eq!(fwd(7, 100).await, vec![8, 9, 10]);
    assert_eq!(fwd(9, 1).await, vec![10]);
    assert!(fwd(10, 100).await.is_empty(), "nothing after the last");
    assert!(fwd(11, 100).await.is_empty());
    assert!(fwd(u64::MAX, 100).await.is_empty());
    assert!(fwd(0, 0).await.is_empty(), "limit 0 reads nothing");
    assert_eq!(fwd(0, usize::MAX).await, (1..=10).collect::<Vec<_>>());

    let bwd = |from, limit| {
        let h = &h;
        async move { offsets(&page(h, "r", from, Direction::Backward, limit).await) }
    };
    assert_eq!(bwd(u64::MAX, 3).await, vec![10, 9, 8], "newest first");
    assert_eq!(bwd(4, 100).await, vec![3, 2, 1]);
    assert_eq!(bwd(11, 2).await, vec![10, 9]);
    assert_eq!(bwd(2, 100).await, vec![1]);
    assert!(bwd(1, 100).await.is_empty(), "nothing before the first");
    assert!(bwd(0, 100).await.is_empty());
    assert!(bwd(u64::MAX, 0).await.is_empty());

    let p = page(&h, "r", 5, Direction::Backward, 2).await;
    assert_eq!(
        p.state,
        StreamState::new(E1, 1, 10),
        "state comes with the page"
    );
    assert_eq!(items(&p), vec![(4, "p4".into()), (3, "p3".into())]);
}

#[tokio::test]
async fn payloads_are_binary_safe_and_names_any_string() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    let payloads = vec![
        Bytes::new(),
        Bytes::from_static(b"\0\x01\xff\xfe-0:}{"),
        Bytes::from(vec![0xAB; 100_000]),
        Bytes::from_static("é 🦀".as_bytes()),
    ];
    for name in ["a}b", "}", "{x}", "with space:and:colons", "ü-0"] {
        h.append(name, &payloads, keep(100), E1)
            .await
            .expect("append");
        let p = page(&h, name, 0, Direction::Forward, 100).await;
        let got: Vec<Bytes> = p.publications.into_iter().map(|p| p.payload).collect();
        assert_eq!(got, payloads, "stream {name:?}: payloads as appended");
    }
    // Names that share a hash tag prefix stay separate streams.
    assert_eq!(
        h.state("a").await.expect("state"),
        None,
        "`a` is not `a}}b`"
    );
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn trims_by_count_including_within_a_batch() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    for i in 1..=5 {
        h.append("r", &[b(&format!("m{i}"))], keep(3), E1)
            .await
            .expect("append");
    }
    let p = page(&h, "r", 0, Direction::Forward, 100).await;
    assert_eq!(p.state, StreamState::new(E1, 3, 5));
    assert_eq!(offsets(&p), vec![3, 4, 5]);
    assert!(!p.state.holds_after(E1, 1), "2 was trimmed");
    assert!(p.state.holds_after(E1, 2));

    // A batch longer than max_len keeps only its tail.
    let batch: Vec<Bytes> = (6..=10).map(|i| b(&format!("m{i}"))).collect();
    let s = h.append("r", &batch, keep(2), E1).await.expect("append");
    assert_eq!(s, StreamState::new(E1, 9, 10));
    let p = page(&h, "r", 0, Direction::Forward, 100).await;
    assert_eq!(items(&p), vec![(9, "m9".into()), (10, "m10".into())]);

    // A longer max_len later does not bring anything back.
    let s = h
        .append("r", &[b("m11")], keep(100), E1)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 9, 11));
    // Retention::new(0, ..) is at least 1.
    let s = h
        .append("r", &[b("m12")], Retention::new(0, None), E1)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 12, 12));
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn trims_by_age_on_the_manual_clock() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    let ten = aged(100, 10);
    h.append("r", &[b("a")], ten, E1).await.expect("append"); // at T0
    clock.advance(Duration::from_secs(4));
    h.append("r", &[b("b")], ten, E1).await.expect("append"); // at T0+4s
    clock.advance(Duration::from_secs(4));
    h.append("r", &[b("c")], ten, E1).await.expect("append"); // at T0+8s

    clock.set(T0 + 9_999);
    let p = page(&h, "r", 0, Direction::Forward, 100).await;
    assert_eq!(offsets(&p), vec![1, 2, 3], "1ms before a's max_age");
    clock.set(T0 + 10_000);
    let p = page(&h, "r", 0, Direction::Forward, 100).await;
    assert_eq!(
        p.state,
        StreamState::new(E1, 2, 3),
        "a aged at exactly max_age"
    );
    assert_eq!(offsets(&p), vec![2, 3]);
    let p = page(&h, "r", u64::MAX, Direction::Backward, 100).await;
    assert_eq!(offsets(&p), vec![3, 2], "backward reads skip aged ones too");

    clock.set(T0 + 18_000);
    let s = h.state("r").await.expect("state").expect("still there");
    assert_eq!(
        s,
        StreamState::new(E1, 4, 3),
        "all aged out: epoch and last kept, first = last + 1"
    );
    assert!(s.holds_after(E1, 3), "a client that saw 3 missed nothing");
    assert!(
        page(&h, "r", 0, Direction::Forward, 100)
            .await
            .publications
            .is_empty()
    );

    // An append continues the epoch, and trims the aged ones for good.
    let s = h.append("r", &[b("d")], ten, E2).await.expect("append");
    assert_eq!(s, StreamState::new(E1, 4, 4));
    check_accounting(&server, PREFIX).await;

    // Many publications: the aged prefix is found inside the stream (binary search).
    for i in 0..50u64 {
        clock.set(T0 + 20_000 + i * 100);
        h.append("long", &[b(&format!("{i}"))], ten, E1)
            .await
            .expect("append");
    }
    for cut in [0u64, 1, 17, 33, 49] {
        // Publication i (offset i + 1) ages at T0 + 30_000 + i * 100.
        clock.set(T0 + 30_000 + cut * 100);
        let s = h.state("long").await.expect("state").expect("there");
        assert_eq!(s.first, cut + 2, "publications 0..={cut} aged");
    }

    // Bounds near u64::MAX mean no bound (and are not mangled on the way through Lua).
    let huge = Retention::new(u64::MAX, Some(Duration::MAX));
    for _ in 0..3 {
        h.append("huge", &[b("x")], huge, E1).await.expect("append");
    }
    clock.advance(Duration::from_secs(1_000_000_000));
    assert_eq!(
        h.state("huge").await.expect("state"),
        Some(StreamState::new(E1, 1, 3)),
        "nothing trimmed"
    );

    // A zero max_age ages a publication at once.
    let s = h
        .append(
            "zero",
            &[b("x")],
            Retention::new(10, Some(Duration::ZERO)),
            E1,
        )
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 2, 1));
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn a_later_retention_applies_and_first_never_moves_back() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    h.append("r", &[b("a"), b("b")], aged(100, 10), E1)
        .await
        .expect("append");
    clock.advance(Duration::from_secs(5));
    h.append("r", &[b("c")], aged(100, 10), E1)
        .await
        .expect("append");
    clock.advance(Duration::from_secs(5)); // a and b aged under the 10 s bound
    assert_eq!(h.state("r").await.expect("state").expect("there").first, 3);
    // Dropping the age bound does not bring a and b back.
    let s = h
        .append("r", &[b("d")], keep(100), E1)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 3, 4));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        h.state("r").await.expect("state"),
        Some(StreamState::new(E1, 3, 4)),
        "no age bound remembered now"
    );
    assert_eq!(h.sweep().await.expect("sweep"), 0, "nothing due");
    // A shorter age bound applies to what is held.
    let s = h
        .append("r", &[b("e")], aged(100, 1), E1)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 5, 5));
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn a_clock_behind_never_makes_times_go_back() {
    let server = RedisServer::start();
    let ahead = Arc::new(ManualClock::new(T0 + 5_000));
    let behind = Arc::new(ManualClock::new(T0));
    let a = open(&server, HistoryConfig::default(), ahead).await;
    let b_ = open(&server, HistoryConfig::default(), behind.clone()).await;
    a.append("r", &[b("1")], aged(10, 10), E1)
        .await
        .expect("append");
    b_.append("r", &[b("2")], aged(10, 10), E1)
        .await
        .expect("append");
    let p = page(&b_, "r", 0, Direction::Forward, 10).await;
    let at: Vec<u64> = p.publications.iter().map(|p| p.at_ms).collect();
    assert_eq!(
        at,
        vec![T0 + 5_000, T0 + 5_000],
        "raised to the previous time"
    );
    behind.set(T0 + 15_000);
    assert_eq!(
        b_.state("r").await.expect("state"),
        Some(StreamState::new(E1, 3, 2)),
        "both aged together"
    );
}

#[tokio::test]
async fn remove_forgets_and_the_next_append_starts_a_new_epoch() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    h.append("r", &[b("a"), b("b")], aged(10, 60), E1)
        .await
        .expect("append");
    h.append("keep", &[b("k")], keep(10), E1)
        .await
        .expect("append");
    assert!(h.remove("r").await.expect("remove"));
    assert!(!h.remove("r").await.expect("remove"), "already gone");
    assert!(!h.remove("never").await.expect("remove"));
    assert_eq!(h.state("r").await.expect("state"), None);
    check_accounting(&server, PREFIX).await;
    let s = h
        .append("r", &[b("c")], keep(10), E2)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E2, 1, 1), "a new epoch from offset 1");
    let p = page(&h, "r", 0, Direction::Forward, 10).await;
    assert_eq!(items(&p), vec![(1, "c".into())]);
    assert_eq!(
        h.state("keep").await.expect("state"),
        Some(StreamState::new(E1, 1, 1)),
        "other streams untouched"
    );
    assert_eq!(
        h.sweep().await.expect("sweep"),
        0,
        "a removed stream is not due"
    );
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn sweep_trims_aged_publications_and_forgets_aged_out_streams() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    h.append("gone", &[b("1"), b("2")], aged(10, 10), E1)
        .await
        .expect("append");
    h.append("part", &[b("1"), b("2")], aged(10, 20), E1)
        .await
        .expect("append");
    h.append("forever", &[b("1")], keep(10), E1)
        .await
        .expect("append");
    assert_eq!(h.sweep().await.expect("sweep"), 0, "nothing aged yet");

    clock.advance(Duration::from_secs(15));
    h.append("part", &[b("3")], aged(10, 20), E1)
        .await
        .expect("append"); // at T0+15s
    clock.advance(Duration::from_secs(10)); // T0+25s: gone's and part's first two aged
    assert_eq!(
        h.state("gone").await.expect("state"),
        Some(StreamState::new(E1, 3, 2)),
        "aged out but kept until swept"
    );
    assert_eq!(h.sweep().await.expect("sweep"), 4, "2 of gone, 2 of part");
    assert_eq!(h.state("gone").await.expect("state"), None, "forgotten");
    assert_eq!(
        h.state("part").await.expect("state"),
        Some(StreamState::new(E1, 3, 3))
    );
    assert_eq!(
        h.state("forever").await.expect("state"),
        Some(StreamState::new(E1, 1, 1))
    );
    assert_eq!(
        h.sweep().await.expect("sweep"),
        0,
        "a second sweep finds nothing"
    );
    check_accounting(&server, PREFIX).await;

    let s = h
        .append("gone", &[b("new")], aged(10, 10), E2)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E2, 1, 1), "swept away: a new epoch");

    clock.advance(Duration::from_secs(20));
    assert_eq!(
        h.sweep().await.expect("sweep"),
        2,
        "part's 3 and gone's new"
    );
    assert_eq!(h.state("part").await.expect("state"), None);
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn sweep_runs_batch_after_batch() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    let n = SWEEP_BATCH + 7;
    for i in 0..n {
        h.append(&format!("s{i}"), &[b("x")], aged(10, 1), E1)
            .await
            .expect("append");
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        h.sweep().await.expect("sweep"),
        n,
        "every stream's publication"
    );
    for i in [0, SWEEP_BATCH - 1, SWEEP_BATCH, n - 1] {
        assert_eq!(h.state(&format!("s{i}")).await.expect("state"), None);
    }
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn bounds_payload_size() {
    let (server, clock) = start();
    let config = HistoryConfig::default().with_max_payload_bytes(10);
    let h = open(&server, config, clock).await;
    let s = h
        .append("r", &[Bytes::from(vec![1; 10])], keep(10), E1)
        .await
        .expect("a payload of exactly max_payload_bytes");
    assert_eq!(s.last, 1);
    let e = h
        .append(
            "r",
            &[b("ok"), Bytes::from(vec![1; 11]), b("ok")],
            keep(10),
            E1,
        )
        .await;
    assert!(
        matches!(e, Err(QueueError::TooLarge { size: 11, max: 10 })),
        "one byte over: {e:?}"
    );
    assert_eq!(
        h.state("r").await.expect("state"),
        Some(StreamState::new(E1, 1, 1)),
        "nothing of the refused batch stored"
    );
    let e = h
        .append("new", &[Bytes::from(vec![1; 11])], keep(10), E1)
        .await;
    assert!(matches!(e, Err(QueueError::TooLarge { .. })), "{e:?}");
    assert_eq!(h.state("new").await.expect("state"), None);
    check_accounting(&server, PREFIX).await;

    // A payload over max_total_bytes could never fit: TooLarge too, with that bound.
    let small = open_prefix(
        &server,
        HistoryConfig::default()
            .with_max_payload_bytes(10)
            .with_max_total_bytes(5),
        Arc::new(ManualClock::new(T0)),
        "small:",
    )
    .await;
    let e = small.append("r", &[b("123456")], keep(10), E1).await;
    assert!(
        matches!(e, Err(QueueError::TooLarge { size: 6, max: 5 })),
        "{e:?}"
    );
}

#[tokio::test]
async fn bounds_stream_names_and_empty_batches() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    let long = "n".repeat(chinwag_queue::history::MAX_STREAM_LEN);
    h.append(&long, &[b("x")], keep(1), E1)
        .await
        .expect("a name of MAX_STREAM_LEN bytes");
    let too_long = format!("{long}n");
    for name in ["", too_long.as_str()] {
        let e = h.append(name, &[b("x")], keep(1), E1).await;
        assert!(
            matches!(e, Err(QueueError::InvalidRecipient { .. })),
            "{e:?}"
        );
        let e = h.read(name, 0, Direction::Forward, 1).await;
        assert!(
            matches!(e, Err(QueueError::InvalidRecipient { .. })),
            "{e:?}"
        );
    }
    let e = h.append("r", &[], keep(1), E1).await;
    assert!(
        matches!(e, Err(QueueError::InvalidRecipient { .. })),
        "{e:?}"
    );
    assert_eq!(h.state("r").await.expect("state"), None);
}

#[tokio::test]
async fn bounds_streams() {
    let (server, clock) = start();
    let config = HistoryConfig::default().with_max_streams(2);
    let h = open(&server, config, clock.clone()).await;
    h.append("a", &[b("1")], aged(10, 10), E1)
        .await
        .expect("first stream");
    h.append("b", &[b("1")], keep(10), E1)
        .await
        .expect("second stream: at the bound");
    let e = h.append("c", &[b("1")], keep(10), E1).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::Streams,
                ..
            })
        ),
        "a third stream: {e:?}"
    );
    assert_eq!(h.state("c").await.expect("state"), None, "nothing stored");
    h.append("a", &[b("2")], aged(10, 10), E1)
        .await
        .expect("existing streams still take appends");
    check_accounting(&server, PREFIX).await;

    assert!(h.remove("b").await.expect("remove"));
    h.append("c", &[b("1")], keep(10), E1)
        .await
        .expect("room again after a remove");

    // A stream whose publications all aged out counts until it is swept.
    clock.advance(Duration::from_secs(10));
    let e = h.append("d", &[b("1")], keep(10), E2).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::Streams,
                ..
            })
        ),
        "a aged out but not swept yet: {e:?}"
    );
    assert_eq!(h.sweep().await.expect("sweep"), 2, "a's two publications");
    assert_eq!(h.state("a").await.expect("state"), None);
    let s = h
        .append("d", &[b("1")], keep(10), E2)
        .await
        .expect("room again after the sweep");
    assert_eq!(s, StreamState::new(E2, 1, 1));
    check_accounting(&server, PREFIX).await;

    let none = open_prefix(
        &server,
        HistoryConfig::default().with_max_streams(0),
        clock,
        "zero:",
    )
    .await;
    let e = none.append("x", &[b("1")], keep(1), E1).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::Streams,
                ..
            })
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn bounds_total_bytes() {
    let (server, clock) = start();
    let config = HistoryConfig::default().with_max_total_bytes(10);
    let h = open(&server, config, clock.clone()).await;
    h.append("a", &[b("123456")], keep(1), E1)
        .await
        .expect("6 bytes");
    let e = h.append("b", &[b("123"), b("45")], keep(10), E1).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::TotalBytes,
                ..
            })
        ),
        "11 bytes: {e:?}"
    );
    assert_eq!(h.state("b").await.expect("state"), None, "nothing stored");
    assert_eq!(
        h.state("a").await.expect("state"),
        Some(StreamState::new(E1, 1, 1)),
        "another stream's publications are never dropped to make room"
    );
    check_accounting(&server, PREFIX).await;
    h.append("b", &[b("12"), b("34")], keep(10), E1)
        .await
        .expect("exactly 10 bytes");
    let e = h.append("b", &[b("5")], keep(10), E1).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::TotalBytes,
                ..
            })
        ),
        "one byte over: {e:?}"
    );
    assert_eq!(
        h.state("b").await.expect("state"),
        Some(StreamState::new(E1, 1, 2))
    );
    // Bytes are counted after the stream's own trim: a replaces its 6 bytes with 5.
    let s = h
        .append("a", &[b("12345")], keep(1), E1)
        .await
        .expect("a's own trim makes room");
    assert_eq!(s, StreamState::new(E1, 2, 2));
    check_accounting(&server, PREFIX).await;

    // Aged publications of another stream count until swept; reads do not free them.
    let aging = open_prefix(
        &server,
        HistoryConfig::default().with_max_total_bytes(10),
        clock.clone(),
        "age:",
    )
    .await;
    aging
        .append("old", &[b("12345678")], aged(10, 5), E1)
        .await
        .expect("append");
    aging
        .append("old2", &[b("1")], keep(10), E1)
        .await
        .expect("append");
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        aging.state("old").await.expect("state"),
        Some(StreamState::new(E1, 2, 1)),
        "old aged out"
    );
    let e = aging.append("new", &[b("123456789")], keep(10), E1).await;
    assert!(
        matches!(
            e,
            Err(QueueError::Full {
                limit: Limit::TotalBytes,
                ..
            })
        ),
        "old's bytes count until swept: {e:?}"
    );
    assert_eq!(aging.sweep().await.expect("sweep"), 1);
    aging
        .append("new", &[b("123456789")], keep(10), E1)
        .await
        .expect("old's bytes swept");
    assert_eq!(aging.state("old").await.expect("state"), None, "swept");
    check_accounting(&server, "age:").await;
    // An append to an aged stream trims it first: its own aged bytes do not count.
    aging
        .append("new", &[b("x")], aged(10, 5), E1)
        .await
        .expect_err("10 + 1 bytes, nothing aged yet");
    aging.remove("old2").await.expect("remove");
    aging
        .append("new", &[b("x")], aged(10, 5), E1)
        .await
        .expect("10 bytes");
    clock.advance(Duration::from_secs(5));
    let s = aging
        .append("new", &[b("123456789")], aged(10, 5), E1)
        .await
        .expect("the stream's 10 aged bytes are trimmed in the same append");
    assert_eq!(s, StreamState::new(E1, 3, 3));
    check_accounting(&server, "age:").await;
}

/// Two `RedisHistory` instances with their own connections (two hub processes) append to one
/// stream from many tasks while a reader follows: offsets 1..=N, each payload once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_append_in_one_order() {
    const TASKS: usize = 8;
    const BATCHES: usize = 40;
    let (server, clock) = start();
    let p1 = Arc::new(open(&server, HistoryConfig::default(), clock.clone()).await);
    let p2 = Arc::new(open(&server, HistoryConfig::default(), clock.clone()).await);
    let total: usize = (0..TASKS)
        .map(|t| (0..BATCHES).map(|i| 1 + (t + i) % 3).sum::<usize>())
        .sum();

    let reader = {
        let h = p2.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut epoch = None;
            while seen.len() < total {
                let Some(p) = h
                    .read("room", seen.len() as u64, Direction::Forward, 7)
                    .await
                    .expect("read")
                else {
                    tokio::task::yield_now().await;
                    continue;
                };
                assert_eq!(*epoch.get_or_insert(p.state.epoch), p.state.epoch);
                for (i, pb) in p.publications.iter().enumerate() {
                    assert_eq!(
                        pb.offset,
                        (seen.len() + i + 1) as u64,
                        "a reader sees offsets in order, none missing"
                    );
                    assert!(pb.offset <= p.state.last);
                }
                seen.extend(p.publications.into_iter().map(|p| p.payload));
                tokio::task::yield_now().await;
            }
            seen
        })
    };

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let h = if t % 2 == 0 { p1.clone() } else { p2.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..BATCHES {
                let batch: Vec<Bytes> = (0..1 + (t + i) % 3)
                    .map(|j| Bytes::from(format!("t{t}-b{i}-{j}")))
                    .collect();
                let s = h
                    .append("room", &batch, keep(1_000_000), E1 + t as u64)
                    .await
                    .expect("append");
                let n = batch.len() as u64;
                for (k, p) in batch.into_iter().enumerate() {
                    got.push((s.last + 1 - n + k as u64, p, s.epoch));
                }
            }
            got
        }));
    }
    let mut assigned = Vec::new();
    for t in tasks {
        assigned.extend(t.await.expect("appender"));
    }
    let seen = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("hang guard: the reader must catch up once the appenders are done")
        .expect("reader");

    assert_eq!(assigned.len(), total);
    let epochs: HashSet<u64> = assigned.iter().map(|a| a.2).collect();
    assert_eq!(epochs.len(), 1, "one epoch: the first append's");
    assigned.sort_by_key(|a| a.0);
    let offs: Vec<u64> = assigned.iter().map(|a| a.0).collect();
    assert_eq!(
        offs,
        (1..=total as u64).collect::<Vec<_>>(),
        "offsets are exactly 1..=N"
    );
    let payloads: Vec<Bytes> = assigned.into_iter().map(|a| a.1).collect();
    assert_eq!(
        payloads.iter().collect::<HashSet<_>>().len(),
        total,
        "each payload once"
    );
    assert_eq!(
        seen, payloads,
        "the reader saw each offset's payload, in order"
    );
    let p = page(&p1, "room", 0, Direction::Forward, usize::MAX).await;
    assert_eq!(
        p.publications
            .into_iter()
            .map(|p| p.payload)
            .collect::<Vec<_>>(),
        payloads
    );
    check_accounting(&server, PREFIX).await;
}

#[tokio::test]
async fn a_reconnect_keeps_everything_and_prefixes_are_separate() {
    let (server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    h.append("r", &[b("a"), b("b"), b("c")], aged(2, 60), E1)
        .await
        .expect("append");
    let before = page(&h, "r", 0, Direction::Forward, 10).await;
    drop(h);

    let h = open(&server, HistoryConfig::default(), clock.clone()).await;
    let after = page(&h, "r", 0, Direction::Forward, 10).await;
    assert_eq!(after, before, "a new connection sees the same history");
    let s = h
        .append("r", &[b("d")], aged(2, 60), E2)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 3, 4), "offsets and epoch continue");
    // The remembered age bound survives too.
    clock.advance(Duration::from_secs(60));
    assert_eq!(h.sweep().await.expect("sweep"), 2);

    let other = open_prefix(&server, HistoryConfig::default(), clock, "other:").await;
    assert_eq!(other.state("r").await.expect("state"), None);
}

/// Bound on how long the history may take to work again once Redis is back.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_the_history() {
    let (mut server, clock) = start();
    let h = open(&server, HistoryConfig::default(), clock).await;
    let payloads: Vec<Bytes> = (0..50).map(|i| b(&format!("m{i}"))).collect();
    h.append("r", &payloads, keep(40), E1)
        .await
        .expect("append");
    let before = page(&h, "r", 0, Direction::Forward, 100).await;
    server.restart();
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    let after = loop {
        match h.read("r", 0, Direction::Forward, 100).await {
            Ok(p) => break p.expect("stream kept"),
            Err(e) => assert!(
                Instant::now() < deadline,
                "no reconnection within {RECONNECT_DEADLINE:?}: {e}"
            ),
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(after, before, "everything acknowledged is back");
    assert_eq!(after.state, StreamState::new(E1, 11, 50));
    let s = h
        .append("r", &[b("next")], keep(40), E2)
        .await
        .expect("append");
    assert_eq!(s, StreamState::new(E1, 12, 51));
    check_accounting(&server, PREFIX).await;
}
