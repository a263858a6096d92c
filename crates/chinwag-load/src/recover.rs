//! The recovery scenario (issue 17): how long a member that was away takes to get back the
//! publications it missed, from its TCP connect to the last of them.
//!
//! One process, sequential like the replay ([`Mode::Recover`](crate::hub::Mode::Recover)), on
//! the chat door (`gotalk+ws://…/gotalk/` or `gotalk+tcp://`) of a hub whose rooms keep a
//! history (`examples/hub --history memory|redb:PATH|redis:URL`):
//!
//! 1. A publisher (`recover-publisher`) signs in and joins `room` (it stays in it, so the room
//!    and its epoch live for the whole run).
//! 2. Each round, the publisher publishes `messages` text publications of `size` bytes, with
//!    `in_flight` publishes outstanding, and waits for every answer (an answered publish is in
//!    the history). Their seqs must be consecutive: `L - messages + 1 ..= L`. Every round
//!    recovers fresh publications, just written, as a member that was away during them would.
//! 3. **Recovery.** A new connection (user `recover-<k>`) is opened, signed in (a JWT in the
//!    WebSocket upgrade's `Authorization` header, or an `auth` request over TCP) and joins with
//!    `since {epoch, seq: L - messages}`. The clock runs from just before the TCP connect to
//!    the moment the client has handled the `messages`-th `room` notification; the time to
//!    the `join` result is kept too. The recovery counts only when it is exact: the result
//!    says `recovered: true`, `missed` = `messages`, the room's epoch and `seq` = `L`, and the
//!    notifications carry exactly the seqs `L - messages + 1 ..= L`, in order, in that epoch.
//!    Anything else is a failure (an error of the run), never a figure.
//! 4. **Plain join.** In the same round, another new connection (`plain-<k>`) connects, signs
//!    in and joins without `since`: the clock runs from its TCP connect to the `join` result.
//!    This is what a reconnect costs without recovering anything; the two alternate which goes
//!    first.
//!
//! Nothing else happens on the hub meanwhile (the publisher is idle while a member joins).
//! [`WARMUP_ROUNDS`] rounds are run first and not recorded (they are checked). Figures
//! ([`RecoverFigures`]): p50/p99 over the `joins` timed rounds of the recovery, of its `join`
//! result and of the plain join; recovery ÷ plain join; the server's CPU per recovery and per
//! plain join and the client's per recovery (from `/proc/<pid>/stat`, whose unit is a 10 ms
//! tick: summed over the rounds, then divided; the hub process only, not a Redis server).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chinwag::client::{Client, Event, JoinResult};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::BoxError;
use crate::chat;
use crate::hub::with_retries;
use crate::load::{Latency, LoadSpec, RunOptions, RunReport, ServerUsage, latency};
use crate::procfs;
use crate::proto::{self, Protocol, Target};

/// Rounds run (and checked) before the timed ones.
pub const WARMUP_ROUNDS: usize = 2;
/// How long a round's joins and publications may take before the round fails.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// The publisher's user id.
const PUBLISHER: &str = "recover-publisher";

/// The figures of a recovery run (in [`RunReport::recover`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoverFigures {
    /// Publications missed, and recovered, per round.
    pub missed: u64,
    /// Timed rounds asked for.
    pub rounds: usize,
    /// Rounds (warm-up included) whose recovery was exact.
    pub exact: u64,
    /// Rounds (warm-up included) that failed: a recovery not exact, or an error.
    pub failed: u64,
    /// TCP connect to the last missed publication handled (µs), exact timed recoveries.
    pub recover_us: Latency,
    /// TCP connect to the `join` result of the recoveries (µs).
    pub recover_result_us: Latency,
    /// TCP connect to the `join` result of a join without `since` (µs).
    pub plain_us: Latency,
    /// Every timed recovery's time (µs), in order.
    pub recover_samples_us: Vec<f64>,
    /// Every timed plain join's time (µs), in order.
    pub plain_samples_us: Vec<f64>,
    /// Recovery p50 ÷ plain join p50 (same run).
    pub ratio_p50: f64,
    /// Recovery p99 ÷ plain join p99.
    pub ratio_p99: f64,
    /// Publishing the round's publications, all answered (ms): the median round.
    pub fill_ms: f64,
    /// The hub's CPU per timed recovery (ms, mean), when its pid was given.
    pub server_cpu_ms_recover: Option<f64>,
    /// The hub's CPU per timed plain join (ms, mean).
    pub server_cpu_ms_plain: Option<f64>,
    /// This process's (the client's) CPU per timed recovery (ms, mean): connecting, signing
    /// in, and handling the missed publications (a JSON parse each).
    #[serde(default)]
    pub client_cpu_ms_recover: Option<f64>,
}

/// What a member expects to be written before its `join` result, and what it got.
#[derive(Debug)]
pub struct Expect {
    room: String,
    epoch: u64,
    /// The next seq due.
    next: u64,
    /// The last seq due.
    last: u64,
    /// The first thing that was wrong.
    wrong: Option<String>,
}

impl Expect {
    /// Expects the publications `since + 1 ..= last` of `room` in `epoch`.
    pub fn new(room: &str, epoch: u64, since: u64, last: u64) -> Self {
        Expect {
            room: room.to_owned(),
            epoch,
            next: since + 1,
            last,
            wrong: None,
        }
    }

    /// Takes one publication of `room` (epoch, seq) as the client emitted it; `true` when it
    /// was the last one due.
    pub fn take(&mut self, room: &str, epoch: u64, seq: u64) -> bool {
        if room != self.room {
            return false; // another room (the server's broadcasts, `*`)
        }
        if epoch != self.epoch {
            return self.fail(format!("epoch {epoch}, expected {}", self.epoch));
        }
        if seq != self.next || self.next > self.last {
            let expected = if self.next > self.last {
                "none (all received)".to_owned()
            } else {
                self.next.to_string()
            };
            return self.fail(format!("seq {seq}, expected {expected}"));
        }
        self.next += 1;
        self.next > self.last
    }

    fn fail(&mut self, what: String) -> bool {
        self.wrong.get_or_insert(what);
        false
    }

    /// Publications received as expected so far.
    pub fn received(&self, since: u64) -> u64 {
        self.next - 1 - since
    }

    /// The first thing that was wrong, if any.
    pub fn wrong(&self) -> Option<&str> {
        self.wrong.as_deref()
    }
}

/// Checks a `join` result with `since`: recovered, `missed` publications, at (epoch, last).
pub fn check_result(r: &JoinResult, epoch: u64, last: u64, missed: u64) -> Result<(), String> {
    let ok =
        r.recovered == Some(true) && r.missed == Some(missed) && r.epoch == epoch && r.seq == last;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "join result {r:?}, expected recovered: true, missed: {missed}, epoch {epoch}, seq {last}"
        ))
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// One timed join: connect to result, and (a recovery) connect to the last missed publication.
struct Timed {
    result: Duration,
    last: Option<Duration>,
    server_cpu_us: Option<u64>,
    client_cpu_us: Option<u64>,
}

/// The publisher's fill of one round: its publications, all answered; returns the last seq.
async fn fill(publisher: &Client, spec: &LoadSpec, body: &str) -> Result<u64, String> {
    let n = spec.messages.max(1);
    let gate = Arc::new(Semaphore::new(spec.in_flight.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (client, room, body) = (publisher.clone(), spec.room.clone(), body.to_owned());
        set.spawn(async move {
            let r = client.publish(&room, body).await;
            drop(permit);
            r
        });
    }
    let mut seqs = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        let report = r
            .map_err(|e| format!("publish task: {e}"))?
            .map_err(|e| format!("publish: {}", chat::error(&e)))?;
        seqs.push(report.seq);
    }
    seqs.sort_unstable();
    let last = *seqs.last().ok_or("no publish")?;
    let consecutive = seqs
        .iter()
        .enumerate()
        .all(|(i, s)| *s + (n - 1 - i) as u64 == last);
    if !consecutive {
        return Err(format!(
            "the round's publishes were not consecutive ({} .. {last}): another publisher?",
            seqs[0]
        ));
    }
    Ok(last)
}

/// Connects as `user` and joins; with `since` (epoch, seq, last), checks the recovery.
async fn timed_join(
    target: &Target,
    spec: &LoadSpec,
    user: &str,
    since: Option<(u64, u64, u64)>,
    server_pid: Option<u32>,
) -> Result<Timed, String> {
    let source = proto::source_addr(target, 1, spec.source_ips);
    let cpu_before = server_pid.and_then(procfs::sample);
    let client_before = procfs::sample(std::process::id());
    let t0 = Instant::now();
    let (client, mut events) = chat::connect(target, spec, user, source, true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let r = client
        .join_with(&spec.room, None, since.map(|(epoch, seq, _)| (epoch, seq)))
        .await
        .map_err(|e| format!("join: {}", chat::error(&e)));
    let result = t0.elapsed();
    let mut last = None;
    let outcome = match (r, since) {
        (Err(e), _) => Err(e),
        (Ok(_), None) => Ok(()),
        (Ok(joined), Some((epoch, seq, end))) => {
            let missed = end - seq;
            let mut expect = Expect::new(&spec.room, epoch, seq, end);
            let checked = check_result(&joined, epoch, end, missed);
            // The missed publications were written before the result: they are among the
            // events already, or on their way.
            let waited = match checked {
                Ok(()) => tokio::time::timeout(ROUND_TIMEOUT, async {
                    while let Some(ev) = events.next().await {
                        if let Event::Room(m) = ev
                            && expect.take(&m.room, m.epoch, m.seq)
                        {
                            return Ok(Instant::now());
                        }
                    }
                    Err("the connection ended".to_owned())
                })
                .await
                .map_err(|_| "timed out waiting for the missed publications".to_owned())
                .and_then(|r| r),
                Err(e) => Err(e),
            };
            if let Ok(at) = &waited {
                last = Some(at.duration_since(t0));
            }
            match (waited, expect.wrong()) {
                (_, Some(wrong)) => Err(format!(
                    "{wrong} ({} of {missed} received as expected)",
                    expect.received(seq)
                )),
                (Err(w), None) => Err(format!(
                    "{w} ({} of {missed} received)",
                    expect.received(seq)
                )),
                (Ok(_), None) => Ok(()),
            }
        }
    };
    let cpu_after = server_pid.and_then(procfs::sample);
    let client_after = procfs::sample(std::process::id());
    client.close().await;
    outcome?;
    Ok(Timed {
        result,
        last,
        server_cpu_us: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| b.cpu_us.saturating_sub(a.cpu_us)),
        client_cpu_us: client_before
            .zip(client_after)
            .map(|(a, b)| b.cpu_us.saturating_sub(a.cpu_us)),
    })
}

/// Runs a recover `spec` and reports.
pub async fn run(spec: &LoadSpec, opts: &RunOptions) -> Result<RunReport, BoxError> {
    let target: Target = spec.target.parse()?;
    if !matches!(target.protocol, Protocol::RpcTcp | Protocol::RpcWs) {
        return Err("recover runs load the chat door (gotalk+ws:// or gotalk+tcp://)".into());
    }
    let n = spec.messages.max(1) as u64;
    let server_before = opts.server_pid.and_then(procfs::sample);
    let source = proto::source_addr(&target, 0, spec.source_ips);
    let (publisher, publisher_events) =
        with_retries(|| chat::connect(&target, spec, PUBLISHER, source, true)).await?;
    // The publisher is in the room: its own publications come back to it, unread.
    chat::drain(publisher_events);
    let epoch = publisher
        .join(&spec.room)
        .await
        .map_err(|e| format!("publisher join: {}", chat::error(&e)))?
        .epoch;
    let body = "x".repeat(spec.size.max(1));

    let mut recover = new_histogram();
    let mut result = new_histogram();
    let mut plain = new_histogram();
    let mut fills = Vec::new();
    let mut out = RecoverFigures {
        missed: n,
        rounds: spec.joins,
        ..RecoverFigures::default()
    };
    let (mut cpu_recover, mut cpu_plain, mut cpu_client): (Option<u64>, Option<u64>, Option<u64>) =
        (Some(0), Some(0), Some(0));
    let mut errors = Vec::new();
    for k in 0..WARMUP_ROUNDS + spec.joins {
        let timed = k >= WARMUP_ROUNDS;
        let round = async {
            let started = Instant::now();
            let last = fill(&publisher, spec, &body).await?;
            let fill_ms = started.elapsed().as_secs_f64() * 1e3;
            let since = Some((epoch, last - n, last));
            let pid = opts.server_pid;
            let (rec, pl) = if k % 2 == 0 {
                let pl = timed_join(&target, spec, &format!("plain-{k}"), None, pid).await;
                let rec = timed_join(&target, spec, &format!("recover-{k}"), since, pid).await;
                (rec, pl)
            } else {
                let rec = timed_join(&target, spec, &format!("recover-{k}"), since, pid).await;
                let pl = timed_join(&target, spec, &format!("plain-{k}"), None, pid).await;
                (rec, pl)
            };
            Ok::<_, String>((fill_ms, rec, pl))
        };
        let (fill_ms, rec, pl) = match tokio::time::timeout(ROUND_TIMEOUT * 3, round).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                out.failed += 1;
                errors.push(format!("round {k}: {e}"));
                continue;
            }
            Err(_) => {
                out.failed += 1;
                errors.push(format!("round {k}: timed out"));
                continue;
            }
        };
        let rec = match rec {
            Ok(t) => t,
            Err(e) => {
                out.failed += 1;
                errors.push(format!("round {k}: recovery: {e}"));
                continue;
            }
        };
        out.exact += 1;
        let pl = match pl {
            Ok(t) => t,
            Err(e) => {
                out.failed += 1;
                errors.push(format!("round {k}: plain join: {e}"));
                continue;
            }
        };
        if !timed {
            continue;
        }
        let ns = |d: Duration| (d.as_nanos() as u64).max(1);
        let last = rec.last.unwrap_or(rec.result);
        recover.saturating_record(ns(last));
        result.saturating_record(ns(rec.result));
        plain.saturating_record(ns(pl.result));
        out.recover_samples_us.push(last.as_secs_f64() * 1e6);
        out.plain_samples_us.push(pl.result.as_secs_f64() * 1e6);
        fills.push(fill_ms);
        cpu_recover = cpu_recover.zip(rec.server_cpu_us).map(|(a, b)| a + b);
        cpu_plain = cpu_plain.zip(pl.server_cpu_us).map(|(a, b)| a + b);
        cpu_client = cpu_client.zip(rec.client_cpu_us).map(|(a, b)| a + b);
    }
    publisher.close().await;
    let server_end = opts.server_pid.and_then(procfs::sample);

    out.recover_us = latency(&recover);
    out.recover_result_us = latency(&result);
    out.plain_us = latency(&plain);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    out.ratio_p50 = ratio(out.recover_us.p50, out.plain_us.p50);
    out.ratio_p99 = ratio(out.recover_us.p99, out.plain_us.p99);
    out.fill_ms = crate::report::median(fills).unwrap_or(f64::NAN);
    let timed = out.recover_samples_us.len();
    let per = |cpu: Option<u64>| {
        (timed > 0 && opts.server_pid.is_some()).then_some(())?;
        Some(cpu? as f64 / 1000.0 / timed as f64)
    };
    out.server_cpu_ms_recover = per(cpu_recover);
    out.server_cpu_ms_plain = per(cpu_plain);
    out.client_cpu_ms_recover = cpu_client
        .filter(|_| timed > 0)
        .map(|c| c as f64 / 1000.0 / timed as f64);
    let server = match (opts.server_pid, server_before, server_end) {
        (Some(pid), Some(a), Some(b)) => Some(ServerUsage {
            pid,
            cpu_ms: b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1000.0,
            rss_before_kib: a.rss_kib,
            rss_end_kib: b.rss_kib,
            ..ServerUsage::default()
        }),
        _ => None,
    };
    Ok(RunReport {
        meta: opts.meta.clone(),
        spec: spec.clone(),
        connected: 1,
        msgs_per_sec: 0.0,
        messages: timed as u64 * n,
        latency_us: out.recover_us,
        errors: out.failed,
        first_errors: errors.into_iter().take(5).collect(),
        server,
        hub: None,
        guess: None,
        recover: Some(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_recovery() {
        let mut e = Expect::new("r", 7, 10, 13);
        assert!(!e.take("r", 7, 11));
        assert!(!e.take("*", 0, 1), "other rooms are not counted");
        assert!(!e.take("r", 7, 12));
        assert!(e.take("r", 7, 13));
        assert_eq!(e.received(10), 3);
        assert_eq!(e.wrong(), None);
    }

    #[test]
    fn gaps_duplicates_extras_and_epochs_are_wrong() {
        let mut gap = Expect::new("r", 7, 10, 13);
        assert!(!gap.take("r", 7, 11));
        assert!(!gap.take("r", 7, 13));
        assert!(gap.wrong().unwrap().contains("expected 12"));
        let mut dup = Expect::new("r", 7, 10, 13);
        dup.take("r", 7, 11);
        dup.take("r", 7, 11);
        assert!(dup.wrong().is_some());
        let mut extra = Expect::new("r", 7, 10, 11);
        assert!(extra.take("r", 7, 11));
        assert!(!extra.take("r", 7, 12));
        assert!(extra.wrong().unwrap().contains("all received"));
        let mut epoch = Expect::new("r", 7, 10, 11);
        assert!(!epoch.take("r", 8, 11));
        assert!(epoch.wrong().unwrap().contains("epoch"));
    }

    #[test]
    fn join_results() {
        let result = |v: serde_json::Value| serde_json::from_value::<JoinResult>(v).unwrap();
        let ok = result(
            serde_json::json!({"room":"r","epoch":7,"seq":1010,"members":2,
                        "protected":false,"recovered":true,"missed":1000}),
        );
        assert!(check_result(&ok, 7, 1010, 1000).is_ok());
        let trimmed = result(
            serde_json::json!({"room":"r","epoch":7,"seq":1010,"members":2,
                             "protected":false,"recovered":false,"reason":"trimmed","missed":0}),
        );
        assert!(check_result(&trimmed, 7, 1010, 1000).is_err());
        assert!(check_result(&ok, 7, 1011, 1000).is_err());
        assert!(check_result(&ok, 7, 1010, 999).is_err());
    }
}
