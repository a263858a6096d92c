//! Turns a bench directory into a report people can read.
//!
//! Input (written by `cargo xtask bench`):
//!
//! * `DIR/runs/*.json`: one [`RunReport`] per run, whose `meta` says `scenario`, `kind`
//!   (`echo`, `idle`, `slow-consumer`), `server`, `role` (`chinwag`, `baseline`, `peer`),
//!   `baseline` (the server a chinwag row is divided by), `rep` (repetition) and, for the slow
//!   consumer, `variant` (`alone` or `stalled`);
//! * `DIR/meta.txt`: `key=value` lines about the run (date, commit, mode, machine);
//! * `DIR/notes.txt`: free lines (skipped scenarios and why).
//!
//! Output: `DIR/report.json` (medians, ratios, goals and every run), `DIR/report.md` and SVG
//! charts. Each figure is the median over repetitions; each ratio is the median over
//! repetitions of chinwag / baseline measured in the same repetition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::BoxError;
use crate::load::RunReport;
use crate::redis_monitor::{Monitored, RedisFigures};

/// One row of a table: a server in a scenario (and a variant for the slow consumer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// Server name.
    pub server: String,
    /// `chinwag`, `baseline` or `peer`.
    pub role: String,
    /// The baseline this row is compared with, if any.
    pub baseline: Option<String>,
    /// Repetitions measured.
    pub reps: usize,
    /// Connections established (median).
    pub connected: f64,
    /// Messages per second (median).
    pub msgs_per_sec: f64,
    /// Latency p50 / p90 / p99 / p99.9 in microseconds (medians).
    pub latency_us: [f64; 4],
    /// Server CPU per message in microseconds (median).
    pub cpu_us_per_msg: Option<f64>,
    /// Server RSS per idle connection in KiB (median).
    pub rss_per_conn_kib: Option<f64>,
    /// Server CPU per connection-second in microseconds (median).
    pub cpu_us_per_conn_sec: Option<f64>,
    /// The most OS threads the server had at once during a run (median over runs; hub runs).
    pub threads_peak: Option<f64>,
    /// Errors over all repetitions.
    pub errors: u64,
    /// Median over repetitions of msgs/s ÷ the baseline's in the same repetition.
    pub throughput_ratio: Option<f64>,
    /// Median over repetitions of CPU/msg ÷ the baseline's (below 1: cheaper than baseline).
    pub cpu_ratio: Option<f64>,
    /// Median over repetitions of RSS/conn ÷ the baseline's (idle).
    pub rss_ratio: Option<f64>,
    /// Slow consumer: p99 with the stalled client (median).
    pub p99_stalled_us: Option<f64>,
    /// Slow consumer: median over repetitions of p99 stalled ÷ p99 alone.
    pub p99_stalled_ratio: Option<f64>,
    /// Fan-out with wire bytes counted: bytes the server's sockets sent per delivery (median).
    pub wire_bytes_per_delivery: Option<f64>,
    /// Median over repetitions of bytes per delivery ÷ the baseline's.
    pub wire_ratio: Option<f64>,
    /// Hub scenarios: their own figures, medians over repetitions.
    pub hub: Option<HubRow>,
    /// The password-guessing scenario: its figures, medians over repetitions.
    pub guess: Option<GuessRow>,
    /// The recovery scenario: its figures, medians over repetitions.
    pub recover: Option<RecoverRow>,
    /// The cluster scenario: its figures, medians over repetitions.
    pub cluster: Option<ClusterRow>,
}

/// The figures of a cluster row (direct messages across nodes, or a room's fan-out over
/// nodes: [`crate::hub`]'s send and fan-out runs on several nodes): medians over repetitions, counts summed, ratios against the one-node row
/// (the baseline) in the same repetition. Everything but the `MONITOR` counts comes from the
/// runs without it (variant ``); those counts come from the runs with it (variant `monitor`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterRow {
    /// Nodes the users were spread over.
    pub nodes: usize,
    /// Sends made in the window, per second.
    pub sent_per_sec: f64,
    /// Send: their distinct deliveries (within a second after the window), per second;
    /// fan-out: deliveries received in the window, per second.
    pub delivered_per_sec: f64,
    /// Fan-out: publications in the window.
    pub publishes: f64,
    /// Fan-out: publications that missed a member (summed over repetitions, both variants).
    pub incomplete: u64,
    /// Sends of the window not delivered within a second after it, answered or not (summed
    /// over repetitions, both variants).
    pub undelivered: u64,
    /// Sends of the window not answered (or answered with an error) by then (summed likewise).
    pub unanswered: u64,
    /// Deliveries of a message already received (fan-out: or out of order), summed over
    /// repetitions, both variants.
    pub duplicates: u64,
    /// The nodes' CPU time in the window, summed over the nodes (ms).
    pub server_cpu_ms: f64,
    /// Each node's CPU time in the window (ms).
    pub node_cpu_ms: Vec<f64>,
    /// Deliveries per second of summed server CPU time.
    pub deliveries_per_cpu_sec: f64,
    /// Median over repetitions of this row's deliveries per CPU-second ÷ the one-node row's.
    pub vs_one_node_per_cpu: Option<f64>,
    /// The same for deliveries per second.
    pub vs_one_node_delivered: Option<f64>,
    /// The same for the latency's p50 and p99 (a send's delivery; a publication's last
    /// delivery in fan-out runs).
    pub vs_one_node_p50: Option<f64>,
    /// See `vs_one_node_p50`.
    pub vs_one_node_p99: Option<f64>,
    /// `INFO`: commands Redis processed per message (a delivered direct message; a
    /// publication in fan-out runs), scripts' own included.
    pub redis_processed_per_msg: Option<f64>,
    /// `INFO`: reads from client sockets per message.
    pub redis_reads_per_msg: Option<f64>,
    /// `INFO commandstats`: `EVALSHA` calls per message (only clients send those).
    pub redis_evalsha_per_msg: Option<f64>,
    /// Redis's CPU per message (µs), from the runs without `MONITOR`.
    pub redis_cpu_us_per_msg: Option<f64>,
    /// `MONITOR`: commands the nodes sent Redis per message (round trips, unless pipelined).
    pub redis_commands_per_msg: Option<f64>,
    /// `MONITOR`: commands Redis's scripts ran per message.
    pub redis_script_calls_per_msg: Option<f64>,
    /// `MONITOR`: commands the nodes sent per message, by command.
    pub redis_by_command_per_msg: BTreeMap<String, f64>,
    /// `MONITOR`: commands scripts ran per message, by script and command.
    pub redis_in_scripts_per_msg: BTreeMap<String, f64>,
    /// Repetitions with `MONITOR`.
    pub monitored_reps: usize,
}

/// Deliveries per second of the nodes' summed CPU time in a cluster run.
fn per_cpu_sec(r: &RunReport) -> Option<f64> {
    let h = r.hub.as_ref()?;
    let cpu = r.server?.cpu_ms;
    (cpu > 0.0).then(|| h.delivered as f64 / (cpu / 1e3))
}

/// The Redis figures of a cluster run and what they are counted per (when there were some):
/// its delivered direct messages, or its publications (fan-out).
fn redis_of(r: &RunReport) -> Option<(&RedisFigures, f64)> {
    let h = r.hub.as_ref()?;
    let per = if r.spec.mode == crate::hub::Mode::Fanout {
        h.publishes
    } else {
        h.delivered
    };
    (per > 0).then_some((h.redis.as_ref()?, per as f64))
}

/// The `MONITOR` counts of a cluster run and its delivered messages.
fn monitored(r: &RunReport) -> Option<(&Monitored, f64)> {
    let (x, d) = redis_of(r)?;
    Some((x.monitored.as_ref()?, d))
}

/// The [`ClusterRow`] of a server's runs `rs` (without `MONITOR`) and `counted` (with it),
/// against the one-node runs `base` (without).
fn cluster_row(
    rs: &[&RunReport],
    counted: &[&RunReport],
    base: &[&RunReport],
) -> Option<ClusterRow> {
    let first = rs.iter().chain(counted).find_map(|r| r.hub.as_ref())?;
    let med = |runs: &[&RunReport], f: &dyn Fn(&RunReport) -> Option<f64>| {
        median(runs.iter().filter_map(|r| f(r)).collect())
    };
    let secs = |r: &RunReport| r.spec.duration.max(1e-9);
    let delivered = |r: &RunReport| r.hub.as_ref().map(|h| h.delivered as f64);
    let keyed = |f: &dyn Fn(&Monitored) -> &BTreeMap<String, u64>| {
        let mut keys: Vec<&String> = counted
            .iter()
            .filter_map(|r| monitored(r))
            .flat_map(|(x, _)| f(x).keys())
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let v = med(counted, &|r| {
                    let (x, d) = monitored(r)?;
                    Some(f(x).get(k).copied().unwrap_or(0) as f64 / d)
                })?;
                Some((k.clone(), v))
            })
            .collect()
    };
    // The run's latency: a send's delivery, or a publication's last delivery (fan-out).
    let p = |r: &RunReport, p99: bool| {
        let l = r.latency_us;
        (l.samples > 0).then_some(if p99 { l.p99 } else { l.p50 })
    };
    let ratio = |f: &dyn Fn(&RunReport) -> Option<f64>| {
        (!base.is_empty())
            .then(|| paired_ratio(rs, base, f))
            .flatten()
    };
    let all = || rs.iter().chain(counted).filter_map(|r| r.hub.as_ref());
    Some(ClusterRow {
        nodes: first.nodes,
        sent_per_sec: med(rs, &|r| Some(r.hub.as_ref()?.made as f64 / secs(r))).unwrap_or(0.0),
        delivered_per_sec: med(rs, &|r| Some(delivered(r)? / secs(r))).unwrap_or(0.0),
        publishes: med(rs, &|r| Some(r.hub.as_ref()?.publishes as f64)).unwrap_or(0.0),
        incomplete: all().map(|h| h.incomplete).sum(),
        undelivered: all().map(|h| h.made.saturating_sub(h.delivered)).sum(),
        unanswered: all().map(|h| h.made.saturating_sub(h.answered)).sum(),
        duplicates: all().map(|h| h.duplicates).sum(),
        server_cpu_ms: med(rs, &|r| Some(r.server?.cpu_ms)).unwrap_or(f64::NAN),
        node_cpu_ms: (0..first.node_cpu_ms.len())
            .filter_map(|i| med(rs, &|r| r.hub.as_ref()?.node_cpu_ms.get(i).copied()))
            .collect(),
        deliveries_per_cpu_sec: med(rs, &per_cpu_sec).unwrap_or(f64::NAN),
        vs_one_node_per_cpu: ratio(&per_cpu_sec),
        vs_one_node_delivered: ratio(&delivered),
        vs_one_node_p50: ratio(&|r| p(r, false)),
        vs_one_node_p99: ratio(&|r| p(r, true)),
        redis_processed_per_msg: med(rs, &|r| {
            let (x, d) = redis_of(r)?;
            Some(x.processed as f64 / d)
        }),
        redis_reads_per_msg: med(rs, &|r| {
            let (x, d) = redis_of(r)?;
            Some(x.reads as f64 / d)
        }),
        redis_evalsha_per_msg: med(rs, &|r| {
            let (x, d) = redis_of(r)?;
            Some(x.calls.get("evalsha").copied().unwrap_or(0) as f64 / d)
        }),
        redis_cpu_us_per_msg: med(rs, &|r| {
            let (x, d) = redis_of(r)?;
            Some(x.cpu_ms? * 1e3 / d)
        }),
        redis_commands_per_msg: med(counted, &|r| {
            let (x, d) = monitored(r)?;
            Some(x.commands as f64 / d)
        }),
        redis_script_calls_per_msg: med(counted, &|r| {
            let (x, d) = monitored(r)?;
            Some(x.script_calls as f64 / d)
        }),
        redis_by_command_per_msg: keyed(&|x| &x.by_command),
        redis_in_scripts_per_msg: keyed(&|x| &x.in_scripts),
        monitored_reps: counted.iter().filter(|r| monitored(r).is_some()).count(),
    })
}

/// The figures of a recovery row (see [`crate::recover`]): medians over repetitions of each
/// run's figures, counts summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverRow {
    /// Publications missed and recovered per round.
    pub missed: u64,
    /// Timed rounds per run.
    pub rounds: usize,
    /// Recoveries that were exact, over all repetitions (warm-up rounds included).
    pub exact: u64,
    /// Rounds that failed, over all repetitions (must be 0).
    pub failed: u64,
    /// TCP connect to the last missed publication: p50 and p99 (ms). This and the other
    /// figures come from the runs whose every recovery was exact.
    pub recover_p50_ms: f64,
    /// See `recover_p50_ms`.
    pub recover_p99_ms: f64,
    /// TCP connect to the recovering join's result, p50 (ms).
    pub result_p50_ms: f64,
    /// TCP connect to a plain join's result (no `since`): p50 and p99 (ms).
    pub plain_p50_ms: f64,
    /// See `plain_p50_ms`.
    pub plain_p99_ms: f64,
    /// Median over repetitions of recovery p50 ÷ plain join p50 (same run).
    pub vs_plain_p50: f64,
    /// Median over repetitions of recovery p99 ÷ plain join p99.
    pub vs_plain_p99: f64,
    /// Median over repetitions of this row's recovery p50 ÷ the baseline row's, in the same
    /// repetition (`None` for the baseline itself).
    pub vs_baseline_p50: Option<f64>,
    /// Each repetition's `vs_baseline_p50`.
    pub vs_baseline_p50_reps: Vec<f64>,
    /// The same for p99.
    pub vs_baseline_p99: Option<f64>,
    /// Publishing a round's publications, all answered (ms).
    pub fill_ms: f64,
    /// The hub's CPU per recovery and per plain join (ms).
    pub server_cpu_ms_recover: Option<f64>,
    /// See `server_cpu_ms_recover`.
    pub server_cpu_ms_plain: Option<f64>,
    /// The client's (load generator's) CPU per recovery (ms).
    pub client_cpu_ms_recover: Option<f64>,
}

fn recover_row(rs: &[&RunReport], base: &[&RunReport]) -> Option<RecoverRow> {
    use crate::recover::RecoverFigures;
    let all: Vec<&RecoverFigures> = rs.iter().filter_map(|r| r.recover.as_ref()).collect();
    let first = all.first()?;
    // A run that did not recover exactly every time gives no figure.
    let fs: Vec<&RecoverFigures> = all.iter().copied().filter(|x| x.failed == 0).collect();
    let med = |f: &dyn Fn(&RecoverFigures) -> f64| {
        median(fs.iter().map(|x| f(x)).collect()).unwrap_or(f64::NAN)
    };
    let ms = |us: f64| us / 1000.0;
    let pct = |r: &RunReport, p99: bool| {
        let x = r.recover.as_ref().filter(|x| x.failed == 0)?;
        (x.recover_us.samples > 0).then_some(if p99 {
            x.recover_us.p99
        } else {
            x.recover_us.p50
        })
    };
    let per_rep: Vec<f64> = rs
        .iter()
        .filter_map(|r| {
            let b = base.iter().find(|b| m(b, "rep") == m(r, "rep"))?;
            let (x, y) = (pct(r, false)?, pct(b, false)?);
            (y > 0.0).then_some(x / y)
        })
        .collect();
    Some(RecoverRow {
        missed: first.missed,
        rounds: first.rounds,
        exact: all.iter().map(|x| x.exact).sum(),
        failed: all.iter().map(|x| x.failed).sum(),
        recover_p50_ms: med(&|x| ms(x.recover_us.p50)),
        recover_p99_ms: med(&|x| ms(x.recover_us.p99)),
        result_p50_ms: med(&|x| ms(x.recover_result_us.p50)),
        plain_p50_ms: med(&|x| ms(x.plain_us.p50)),
        plain_p99_ms: med(&|x| ms(x.plain_us.p99)),
        vs_plain_p50: med(&|x| x.ratio_p50),
        vs_plain_p99: med(&|x| x.ratio_p99),
        vs_baseline_p50: median(per_rep.clone()),
        vs_baseline_p50_reps: per_rep,
        vs_baseline_p99: paired_ratio(rs, base, |r| pct(r, true)),
        fill_ms: med(&|x| x.fill_ms),
        server_cpu_ms_recover: median(fs.iter().filter_map(|x| x.server_cpu_ms_recover).collect()),
        server_cpu_ms_plain: median(fs.iter().filter_map(|x| x.server_cpu_ms_plain).collect()),
        client_cpu_ms_recover: median(fs.iter().filter_map(|x| x.client_cpu_ms_recover).collect()),
    })
}

/// The figures of a password-guessing row (see [`crate::guess`]): medians over repetitions,
/// failures summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuessRow {
    /// Timed legitimate joins per phase.
    pub joins: usize,
    /// Attacker connections at once.
    pub attackers: usize,
    /// Guesses each attacker keeps outstanding.
    pub attacker_in_flight: usize,
    /// Unloaded join latency p50 and p99 (µs).
    pub unloaded_p50_us: f64,
    /// See `unloaded_p50_us`.
    pub unloaded_p99_us: f64,
    /// Attacked join latency p50 and p99 (µs).
    pub attacked_p50_us: f64,
    /// See `attacked_p50_us`.
    pub attacked_p99_us: f64,
    /// Median over repetitions of attacked p50 ÷ unloaded p50 (same run).
    pub ratio_p50: f64,
    /// Each repetition's p50 ratio.
    pub ratio_p50_reps: Vec<f64>,
    /// Median over repetitions of attacked p99 ÷ unloaded p99.
    pub ratio_p99: f64,
    /// Legitimate joins that succeeded, over all repetitions and both phases.
    pub legit_ok: u64,
    /// Legitimate joins that failed, by code, over all repetitions and both phases.
    pub legit_failed: BTreeMap<String, u64>,
    /// Attacker connections opened per run.
    pub connections: f64,
    /// Guesses answered `wrong_password` per run.
    pub wrong_password: f64,
    /// Wrong passwords checked per run (answered, plus the unanswered one of each strike-out).
    pub checked: f64,
    /// Connections closed by the hub per run.
    pub closed: f64,
    /// Of those, closed without a `bye` received, over all repetitions.
    pub closed_without_bye: u64,
    /// `bye` codes other than 4010 received, over all repetitions.
    pub other_byes: BTreeMap<u16, u64>,
    /// Guesses refused `guessing_too_fast` per run.
    pub guessing_too_fast: f64,
    /// Guesses refused `busy` per run.
    pub busy: f64,
    /// Other answers per run.
    pub other: f64,
    /// Guesses lost when the hub closed their connection, per run.
    pub lost_on_close: f64,
    /// Connections closed by the strike-out (bye 4010) per run.
    pub strike_outs: f64,
    /// Wrong passwords that joined, over all repetitions (must be 0).
    pub joined: u64,
    /// Seconds the attack ran per run.
    pub attack_seconds: f64,
    /// Guesses answered per second of attack.
    pub answered_per_sec: f64,
    /// Server CPU in cores (CPU seconds per second) during the unloaded and attacked joins.
    pub server_cores_unloaded: Option<f64>,
    /// See `server_cores_unloaded`.
    pub server_cores_attacked: Option<f64>,
    /// This process's (the load generator's) CPU in cores during the attacked joins.
    pub client_cores_attacked: Option<f64>,
}

fn guess_row(rs: &[&RunReport]) -> Option<GuessRow> {
    let gs: Vec<&crate::guess::GuessFigures> = rs.iter().filter_map(|r| r.guess.as_ref()).collect();
    let first = gs.first()?;
    let med = |f: &dyn Fn(&crate::guess::GuessFigures) -> f64| {
        median(gs.iter().map(|g| f(g)).collect()).unwrap_or(f64::NAN)
    };
    let cores = |f: &dyn Fn(&crate::guess::GuessFigures) -> Option<f64>| {
        median(gs.iter().filter_map(|g| f(g)).collect())
    };
    let mut other_byes = BTreeMap::new();
    for g in &gs {
        for (code, n) in g.attack.byes.iter().filter(|(c, _)| **c != 4010) {
            *other_byes.entry(*code).or_default() += n;
        }
    }
    let mut legit_failed = BTreeMap::new();
    for g in &gs {
        for (code, n) in g.unloaded.failed.iter().chain(&g.attacked.failed) {
            *legit_failed.entry(code.clone()).or_default() += n;
        }
    }
    Some(GuessRow {
        joins: first.joins,
        attackers: first.attackers,
        attacker_in_flight: first.attacker_in_flight,
        unloaded_p50_us: med(&|g| g.unloaded.latency_us.p50),
        unloaded_p99_us: med(&|g| g.unloaded.latency_us.p99),
        attacked_p50_us: med(&|g| g.attacked.latency_us.p50),
        attacked_p99_us: med(&|g| g.attacked.latency_us.p99),
        ratio_p50: med(&|g| g.ratio_p50),
        ratio_p50_reps: gs.iter().map(|g| g.ratio_p50).collect(),
        ratio_p99: med(&|g| g.ratio_p99),
        legit_ok: gs.iter().map(|g| g.unloaded.ok + g.attacked.ok).sum(),
        legit_failed,
        connections: med(&|g| g.attack.connections as f64),
        wrong_password: med(&|g| g.attack.wrong_password as f64),
        checked: med(&|g| g.attack.checked() as f64),
        closed: med(&|g| g.attack.closed as f64),
        closed_without_bye: gs.iter().map(|g| g.attack.closed_without_bye).sum(),
        other_byes,
        guessing_too_fast: med(&|g| g.attack.guessing_too_fast as f64),
        busy: med(&|g| g.attack.busy as f64),
        other: med(&|g| g.attack.other.values().sum::<u64>() as f64),
        lost_on_close: med(&|g| g.attack.lost_on_close as f64),
        strike_outs: med(&|g| g.attack.strike_outs as f64),
        joined: gs.iter().map(|g| g.attack.joined).sum(),
        attack_seconds: med(&|g| g.attack.seconds),
        answered_per_sec: med(&|g| g.attack.answered() as f64 / g.attack.seconds.max(1e-9)),
        server_cores_unloaded: cores(&|g| {
            Some(g.unloaded.server_cpu_ms? / (g.unloaded.seconds.max(1e-9) * 1e3))
        }),
        server_cores_attacked: cores(&|g| {
            Some(g.attacked.server_cpu_ms? / (g.attacked.seconds.max(1e-9) * 1e3))
        }),
        client_cores_attacked: cores(&|g| {
            Some(g.attacked.client_cpu_ms? / (g.attacked.seconds.max(1e-9) * 1e3))
        }),
    })
}

/// The figures of a hub scenario's row (medians over repetitions; see [`crate::hub`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HubRow {
    /// Fan-out: publishes in the window.
    pub publishes: f64,
    /// Fan-out: publishes that missed a member (summed over repetitions).
    pub incomplete: u64,
    /// Fan-out: deliveries per second asked for.
    pub offered_per_sec: f64,
    /// Fan-out and send: every delivery's p50 and p99 (µs).
    pub delivery_p50_us: f64,
    /// See `delivery_p50_us`.
    pub delivery_p99_us: f64,
    /// Replay: ms to queue the messages.
    pub fill_ms: f64,
    /// Replay: ms from connect to the first message.
    pub first_ms: f64,
    /// Replay: ms from connect to the last message.
    pub replay_ms: f64,
    /// Replay: ms from connect to the last ack's answer.
    pub acked_ms: f64,
    /// Replay: messages replayed.
    pub replayed: f64,
}

/// One scenario's table.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// `echo`, `idle` or `slow-consumer`.
    pub kind: String,
    /// A short description of the load.
    pub load: String,
    /// Rows, in the order servers were run.
    pub rows: Vec<Row>,
}

/// A goal of issue 6 and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The goal.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measured (`None`).
    pub met: Option<bool>,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `DIR/meta.txt`.
    pub meta: BTreeMap<String, String>,
    /// `DIR/notes.txt`.
    pub notes: Vec<String>,
    /// Tables.
    pub scenarios: Vec<Scenario>,
    /// Goals.
    pub goals: Vec<Goal>,
    /// Every run.
    pub runs: Vec<RunReport>,
}

/// The median (`None` for no values).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn m<'a>(r: &'a RunReport, k: &str) -> &'a str {
    r.meta.get(k).map(String::as_str).unwrap_or("")
}

/// The bytes a fan-out run's server sockets sent per delivery in the window, when counted.
fn wire_per_delivery(r: &RunReport) -> Option<f64> {
    let h = r.hub.as_ref()?;
    let bytes = h.wire_bytes?;
    (h.delivered > 0).then(|| bytes as f64 / h.delivered as f64)
}

/// Per-repetition ratio of `f(row run) / f(baseline run)`, median over repetitions.
fn paired_ratio(
    runs: &[&RunReport],
    base: &[&RunReport],
    f: impl Fn(&RunReport) -> Option<f64>,
) -> Option<f64> {
    let ratios = runs
        .iter()
        .filter_map(|r| {
            let b = base.iter().find(|b| m(b, "rep") == m(r, "rep"))?;
            let (x, y) = (f(r)?, f(b)?);
            (y > 0.0).then_some(x / y)
        })
        .collect();
    median(ratios)
}

/// Builds the report from the runs (grouped by scenario, in first-seen order).
pub fn build(runs: Vec<RunReport>, meta: BTreeMap<String, String>, notes: Vec<String>) -> Report {
    let mut order: Vec<String> = Vec::new();
    for r in &runs {
        let s = m(r, "scenario").to_owned();
        if !order.contains(&s) {
            order.push(s);
        }
    }
    let mut scenarios = Vec::new();
    for name in order {
        let in_s: Vec<&RunReport> = runs.iter().filter(|r| m(r, "scenario") == name).collect();
        let kind = m(in_s[0], "kind").to_owned();
        let spec = &in_s[0].spec;
        let load = match kind.as_str() {
            "idle" => format!("{} idle WebSocket connections", spec.conns),
            "hub-fanout" => format!(
                "{} room members, one publishes {} B at {} publishes/s",
                spec.conns,
                spec.size,
                spec.rate.unwrap_or(0.0)
            ),
            "hub-deflate-fanout" => format!(
                "{} room members, one publishes {} B of {} at {} publishes/s; the clients (yawc) \
                 offer permessage-deflate{}",
                spec.conns,
                spec.size,
                match spec.payload {
                    crate::payload::Payload::Chat => "chat-like JSON text",
                    crate::payload::Payload::Bytes => "bytes",
                },
                spec.rate.unwrap_or(0.0),
                if spec.deflate {
                    " with no context takeover"
                } else {
                    " (not: --deflate was not given)"
                }
            ),
            "hub-send" => format!(
                "{} users on the chat door, {} B to random users at {} sends/s",
                spec.conns,
                spec.size,
                spec.rate.unwrap_or(0.0)
            ),
            "cluster-fanout" => format!(
                "{} members of one room spread over the nodes of a cluster on one Redis (room \
                 door), member 0 publishes {} B at {} publishes/s",
                spec.conns,
                spec.size,
                spec.rate.unwrap_or(0.0)
            ),
            "cluster-send" => format!(
                "{} users spread over the nodes of a cluster on one Redis, {} B to random users \
                 on another node at {} sends/s; every recipient acks",
                spec.conns,
                spec.size,
                spec.rate.unwrap_or(0.0)
            ),
            "hub-replay" => format!(
                "{} messages of {} B queued for an offline user, then replayed on connect",
                spec.messages, spec.size
            ),
            "hub-idle" => format!(
                "{} idle connections signed in with JWT, each in one of {} rooms",
                spec.conns, spec.rooms
            ),
            "hub-recover" => format!(
                "a member that missed {} publications of {} B connects (chat door) and joins \
                 with `since`; {} rounds, each with fresh publications, against a plain join",
                spec.messages, spec.size, spec.joins
            ),
            "hub-guess" => format!(
                "{} right-password joins of a protected room, alone, then while {} connection(s) \
                 from one address keep {} wrong-password joins each outstanding",
                spec.joins,
                spec.attackers.max(1),
                spec.in_flight.max(1)
            ),
            "slow-consumer" => format!(
                "{} conns x {} B, {}, alone vs plus {} stalled reader(s)",
                spec.conns,
                spec.size,
                match spec.rate {
                    Some(rate) => format!("open loop {rate} msg/s"),
                    None => format!("{} in flight", spec.in_flight),
                },
                in_s.iter().map(|r| r.spec.stalled).max().unwrap_or(0)
            ),
            _ => match spec.rate {
                Some(rate) => format!(
                    "{} conns x {} B, open loop {rate} msg/s",
                    spec.conns, spec.size
                ),
                None => format!(
                    "{} conns x {} B, {} in flight per conn",
                    spec.conns, spec.size, spec.in_flight
                ),
            },
        };
        let mut servers: Vec<String> = Vec::new();
        for r in &in_s {
            let s = m(r, "server").to_owned();
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
        let pick = |server: &str, variant: Option<&str>| -> Vec<&RunReport> {
            in_s.iter()
                .copied()
                .filter(|r| m(r, "server") == server)
                .filter(|r| variant.is_none_or(|v| m(r, "variant") == v))
                .collect()
        };
        let mut rows = Vec::new();
        for server in &servers {
            let main_variant = match kind.as_str() {
                "slow-consumer" => Some("alone"),
                // Runs counting Redis commands with MONITOR are apart (it costs Redis CPU).
                "cluster-send" | "cluster-fanout" => Some(""),
                _ => None,
            };
            let rs = pick(server, main_variant);
            if rs.is_empty() {
                continue;
            }
            let med = |f: &dyn Fn(&RunReport) -> Option<f64>| {
                median(rs.iter().filter_map(|r| f(r)).collect())
            };
            let baseline = Some(m(rs[0], "baseline").to_owned()).filter(|b| !b.is_empty());
            let base_runs = baseline
                .as_deref()
                .map(|b| pick(b, main_variant))
                .unwrap_or_default();
            let mut row = Row {
                server: server.clone(),
                role: m(rs[0], "role").to_owned(),
                baseline: baseline.clone(),
                reps: rs.len(),
                connected: med(&|r| Some(r.connected as f64)).unwrap_or(0.0),
                msgs_per_sec: med(&|r| Some(r.msgs_per_sec)).unwrap_or(0.0),
                latency_us: [
                    med(&|r| Some(r.latency_us.p50)).unwrap_or(0.0),
                    med(&|r| Some(r.latency_us.p90)).unwrap_or(0.0),
                    med(&|r| Some(r.latency_us.p99)).unwrap_or(0.0),
                    med(&|r| Some(r.latency_us.p999)).unwrap_or(0.0),
                ],
                cpu_us_per_msg: med(&|r| r.server.and_then(|s| s.cpu_us_per_msg)),
                rss_per_conn_kib: med(&|r| r.server.and_then(|s| s.rss_per_conn_kib)),
                cpu_us_per_conn_sec: med(&|r| r.server.and_then(|s| s.cpu_us_per_conn_sec)),
                threads_peak: med(&|r| r.server.and_then(|s| s.threads_peak).map(|n| n as f64)),
                errors: in_s
                    .iter()
                    .filter(|r| m(r, "server") == server)
                    .map(|r| r.errors)
                    .sum(),
                ..Row::default()
            };
            if !base_runs.is_empty() {
                row.throughput_ratio = paired_ratio(&rs, &base_runs, |r| Some(r.msgs_per_sec));
                row.cpu_ratio =
                    paired_ratio(&rs, &base_runs, |r| r.server.and_then(|s| s.cpu_us_per_msg));
                row.rss_ratio = paired_ratio(&rs, &base_runs, |r| {
                    r.server.and_then(|s| s.rss_per_conn_kib)
                });
                row.wire_ratio = paired_ratio(&rs, &base_runs, wire_per_delivery);
            }
            row.wire_bytes_per_delivery = med(&wire_per_delivery);
            if kind.starts_with("hub-") || kind.starts_with("cluster-") {
                let h = |f: &dyn Fn(&crate::hub::HubFigures) -> f64| {
                    median(rs.iter().filter_map(|r| r.hub.as_ref().map(f)).collect())
                        .unwrap_or(f64::NAN)
                };
                row.hub = Some(HubRow {
                    publishes: h(&|x| x.publishes as f64),
                    incomplete: rs
                        .iter()
                        .filter_map(|r| r.hub.as_ref().map(|x| x.incomplete))
                        .sum(),
                    offered_per_sec: h(&|x| x.offered_per_sec),
                    delivery_p50_us: h(&|x| x.delivery_latency_us.p50),
                    delivery_p99_us: h(&|x| x.delivery_latency_us.p99),
                    fill_ms: h(&|x| x.fill_ms),
                    first_ms: h(&|x| x.first_ms),
                    replay_ms: h(&|x| x.replay_ms),
                    acked_ms: h(&|x| x.acked_ms),
                    replayed: h(&|x| x.replayed as f64),
                });
            }
            if kind == "hub-guess" {
                row.guess = guess_row(&rs);
            }
            if kind == "hub-recover" {
                row.recover = recover_row(&rs, &base_runs);
            }
            if kind.starts_with("cluster-") {
                row.cluster = cluster_row(&rs, &pick(server, Some("monitor")), &base_runs);
            }
            if kind == "slow-consumer" {
                let stalled = pick(server, Some("stalled"));
                row.p99_stalled_us = median(stalled.iter().map(|r| r.latency_us.p99).collect());
                row.p99_stalled_ratio = paired_ratio(&stalled, &rs, |r| Some(r.latency_us.p99));
            }
            rows.push(row);
        }
        scenarios.push(Scenario {
            name,
            kind,
            load,
            rows,
        });
    }
    let goals = goals(&scenarios);
    Report {
        meta,
        notes,
        scenarios,
        goals,
        runs,
    }
}

fn goals(scenarios: &[Scenario]) -> Vec<Goal> {
    let chinwag_rows = |pred: &dyn Fn(&Scenario) -> bool| -> Vec<(String, Row)> {
        scenarios
            .iter()
            .filter(|s| pred(s))
            .flat_map(|s| {
                s.rows
                    .iter()
                    .filter(|r| r.role == "chinwag")
                    .map(move |r| (s.name.clone(), r.clone()))
            })
            .collect()
    };
    let mut goals = Vec::new();
    let mut ratio_goal = |goal: &str,
                          rows: Vec<(String, Row)>,
                          f: &dyn Fn(&Row) -> Option<f64>,
                          ok: &dyn Fn(f64) -> bool,
                          unit: &str| {
        let vals: Vec<(String, f64)> = rows
            .iter()
            .filter_map(|(s, r)| f(r).map(|v| (format!("{s} {}", r.server), v)))
            .collect();
        let measured = if vals.is_empty() {
            "not measured".to_owned()
        } else {
            vals.iter()
                .map(|(n, v)| format!("{n}: {v:.2}{unit}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        goals.push(Goal {
            goal: goal.to_owned(),
            measured,
            met: (!vals.is_empty()).then(|| vals.iter().all(|(_, v)| ok(*v))),
        });
    };
    ratio_goal(
        "chinwag WebSocket echo >= 1.0x the raw engine it uses (msgs/s)",
        chinwag_rows(&|s| s.kind == "echo" && s.name.starts_with("ws")),
        &|r| r.throughput_ratio,
        &|v| v >= 1.0,
        "x",
    );
    ratio_goal(
        "chinwag TCP echo >= 0.9x raw tokio (msgs/s)",
        chinwag_rows(&|s| s.kind == "echo" && s.name.starts_with("tcp")),
        &|r| r.throughput_ratio,
        &|v| v >= 0.9,
        "x",
    );
    let idle = chinwag_rows(&|s| s.kind == "idle");
    let at = idle
        .first()
        .map(|(_, r)| format!(" (measured at {:.0} connections)", r.connected))
        .unwrap_or_default();
    ratio_goal(
        &format!("<= 4 KiB server RSS per idle connection at 10 000 connections{at}"),
        idle,
        &|r| r.rss_per_conn_kib,
        &|v| v <= 4.0,
        " KiB",
    );
    ratio_goal(
        "a stalled consumer leaves the others' p99 within 10% (p99 with / without)",
        chinwag_rows(&|s| s.kind == "slow-consumer"),
        &|r| r.p99_stalled_ratio,
        &|v| v <= 1.10,
        "x",
    );
    // The hub's goals (issue 12), when its scenarios ran.
    if scenarios.iter().any(|s| s.kind.starts_with("hub-")) {
        ratio_goal(
            "hub fan-out >= 0.8x the raw fan-out baseline (deliveries/s)",
            chinwag_rows(&|s| s.kind == "hub-fanout"),
            &|r| r.throughput_ratio,
            &|v| v >= 0.8,
            "x",
        );
        let big = chinwag_rows(&|s| s.kind == "hub-fanout")
            .into_iter()
            .filter(|(_, r)| r.connected >= 10_000.0)
            .collect();
        ratio_goal(
            "hub fan-out p99 publish-to-last-delivery <= 25 ms at 10 000 members",
            big,
            &|r| Some(r.latency_us[2] / 1000.0),
            &|v| v <= 25.0,
            " ms",
        );
        ratio_goal(
            "<= 6 KiB server RSS per idle signed-in connection (in a room, heartbeats on)",
            chinwag_rows(&|s| s.kind == "hub-idle"),
            &|r| r.rss_per_conn_kib,
            &|v| v <= 6.0,
            " KiB",
        );
    }
    // Issue 20, when the permessage-deflate fan-out ran.
    if scenarios.iter().any(|s| s.kind == "hub-deflate-fanout") {
        let rows = chinwag_rows(&|s| s.kind == "hub-deflate-fanout");
        ratio_goal(
            "permessage-deflate fan-out of chat text: bytes on the wire per delivery <= 0.4x \
             without deflate (same run)",
            rows.clone(),
            &|r| r.wire_ratio,
            &|v| v <= 0.4,
            "x",
        );
        let once = rows
            .into_iter()
            .filter(|(_, r)| r.server.ends_with("compress-once"))
            .collect();
        ratio_goal(
            "permessage-deflate fan-out, compressed once per publish: server CPU per delivery \
             <= 1.3x without deflate (same run)",
            once,
            &|r| r.cpu_ratio,
            &|v| v <= 1.3,
            "x",
        );
    }
    // Issue 16, when the guessing scenario ran.
    if scenarios.iter().any(|s| s.kind == "hub-guess") {
        ratio_goal(
            "a right-password join while the room's password is guessed as fast as allowed \
             <= 2x its unloaded time (medians, same run)",
            chinwag_rows(&|s| s.kind == "hub-guess"),
            &|r| r.guess.as_ref().map(|g| g.ratio_p50),
            &|v| v <= 2.0,
            "x",
        );
        ratio_goal(
            "no right-password join refused (either phase)",
            chinwag_rows(&|s| s.kind == "hub-guess"),
            &|r| {
                r.guess
                    .as_ref()
                    .map(|g| g.legit_failed.values().sum::<u64>() as f64)
            },
            &|v| v == 0.0,
            " failed",
        );
    }
    // Issue 18, when the cluster scenario ran.
    if scenarios.iter().any(|s| s.kind.starts_with("cluster-")) {
        let rows_of = |kind: Option<&str>| -> Vec<(String, Row)> {
            scenarios
                .iter()
                .filter(|s| s.kind.starts_with("cluster-") && kind.is_none_or(|k| s.kind == k))
                .flat_map(|s| s.rows.iter().map(move |r| (s.name.clone(), r.clone())))
                .collect()
        };
        let rows = rows_of(Some("cluster-send"));
        let three = rows_of(None)
            .into_iter()
            .filter(|(_, r)| r.cluster.as_ref().is_some_and(|c| c.nodes == 3))
            .collect();
        ratio_goal(
            "cluster: 3 nodes deliver >= 0.8x one node's messages per server CPU-second (nodes' \
             CPU summed, same run)",
            three,
            &|r| r.cluster.as_ref()?.vs_one_node_per_cpu,
            &|v| v >= 0.8,
            "x",
        );
        ratio_goal(
            "cluster: <= 1.5 Redis round trips (commands the nodes sent) per delivered direct \
             message",
            rows,
            &|r| r.cluster.as_ref()?.redis_commands_per_msg,
            &|v| v <= 1.5,
            "",
        );
    }
    // Issue 17, when the recovery scenario ran.
    if scenarios.iter().any(|s| s.kind == "hub-recover") {
        let rows = scenarios
            .iter()
            .filter(|s| s.kind == "hub-recover")
            .flat_map(|s| s.rows.iter().map(move |r| (s.name.clone(), r.clone())))
            .collect();
        ratio_goal(
            "every recovery of the missed publications exact (recovered, missed as published, \
             consecutive seqs)",
            rows,
            &|r| r.recover.as_ref().map(|x| x.failed as f64),
            &|v| v == 0.0,
            " failed",
        );
    }
    goals
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn ratio(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into())
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Renders the report as Markdown (the tables `docs/BENCHMARKS.md` quotes).
pub fn markdown(rep: &Report) -> String {
    let mut md = String::new();
    let g = |k: &str| rep.meta.get(k).cloned().unwrap_or_else(|| "?".into());
    let _ = writeln!(md, "# chinwag load benchmarks\n");
    let load = rep
        .meta
        .get("loadavg")
        .filter(|l| !l.is_empty())
        .map(|l| format!(" · load average {l} at the start"))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "date {} · commit `{}` · mode {} · {} · repetitions {}{load}\n",
        g("date"),
        g("commit"),
        g("mode"),
        g("machine"),
        g("reps")
    );
    let _ = writeln!(
        md,
        "Figures are medians over repetitions; ratios are chinwag ÷ baseline measured in the same \
         repetition (throughput: higher is better; CPU/msg and RSS: lower is better). Latency in \
         µs, server CPU from /proc/<pid>/stat.\n"
    );
    let _ = writeln!(md, "## Goals\n\n| goal | measured | met |\n|---|---|---|");
    for goal in &rep.goals {
        let met = match goal.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", goal.goal, goal.measured);
    }
    for s in &rep.scenarios {
        let _ = writeln!(md, "\n## {} — {}\n", s.name, s.load);
        match s.kind.as_str() {
            "idle" => {
                let _ = writeln!(
                    md,
                    "| server | conns | RSS/conn KiB | CPU µs per conn·s | errors | RSS ratio |\n|---|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {} | {} | {} | {} |",
                        r.server,
                        r.connected,
                        opt(r.rss_per_conn_kib, 2),
                        opt(r.cpu_us_per_conn_sec, 2),
                        r.errors,
                        ratio(r.rss_ratio)
                    );
                }
            }
            "hub-fanout" => {
                let _ = writeln!(
                    md,
                    "| server | members | publishes | deliveries/s (asked) | ratio | last delivery p50 µs | p99 µs | every delivery p50 µs | p99 µs | incomplete publishes | CPU µs/delivery | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let h = r.hub.clone().unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {:.0} | {} ({}) | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                        r.server,
                        r.connected,
                        h.publishes,
                        thousands(r.msgs_per_sec),
                        thousands(h.offered_per_sec),
                        ratio(r.throughput_ratio),
                        r.latency_us[0],
                        r.latency_us[2],
                        h.delivery_p50_us,
                        h.delivery_p99_us,
                        h.incomplete,
                        opt(r.cpu_us_per_msg, 2),
                        r.errors
                    );
                }
            }
            "hub-deflate-fanout" => {
                let _ = writeln!(
                    md,
                    "| server | members | publishes | deliveries/s (asked) | incomplete publishes | bytes on the wire per delivery | ratio | CPU µs/delivery | ratio | last delivery p50 µs | p99 µs | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let h = r.hub.clone().unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {:.0} | {} ({}) | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
                        r.server,
                        r.connected,
                        h.publishes,
                        thousands(r.msgs_per_sec),
                        thousands(h.offered_per_sec),
                        h.incomplete,
                        opt(r.wire_bytes_per_delivery, 1),
                        ratio(r.wire_ratio),
                        opt(r.cpu_us_per_msg, 2),
                        ratio(r.cpu_ratio),
                        r.latency_us[0],
                        r.latency_us[2],
                        r.errors
                    );
                }
            }
            "hub-send" => {
                let _ = writeln!(
                    md,
                    "| server | users | sends/s | p50 µs | p90 µs | p99 µs | p99.9 µs | CPU µs/send | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let [p50, p90, p99, p999] = r.latency_us;
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {} | {p50:.0} | {p90:.0} | {p99:.0} | {p999:.0} | {} | {} |",
                        r.server,
                        r.connected,
                        thousands(r.msgs_per_sec),
                        opt(r.cpu_us_per_msg, 2),
                        r.errors
                    );
                }
            }
            "hub-replay" => {
                let _ = writeln!(
                    md,
                    "| server | replayed | queue fill ms | queued msgs/s | first message ms | all received ms | last ack answered ms | replayed msgs/s | CPU µs/msg (fill + replay) | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let h = r.hub.clone().unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {:.0} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {} |",
                        r.server,
                        h.replayed,
                        h.fill_ms,
                        thousands(h.replayed * 1e3 / h.fill_ms),
                        h.first_ms,
                        h.replay_ms,
                        h.acked_ms,
                        thousands(r.msgs_per_sec),
                        opt(r.cpu_us_per_msg, 2),
                        r.errors
                    );
                }
            }
            "hub-guess" => guess_markdown(&mut md, s),
            "cluster-send" | "cluster-fanout" => cluster_markdown(&mut md, s),
            "hub-recover" => recover_markdown(&mut md, s),
            "hub-idle" => {
                let _ = writeln!(
                    md,
                    "| server | conns | RSS/conn KiB | CPU µs per conn·s | threads (peak) | errors | RSS ratio |\n|---|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let vs = r
                        .baseline
                        .as_deref()
                        .filter(|_| r.rss_ratio.is_some())
                        .map(|b| format!(" (vs {b})"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {} | {} | {} | {} | {}{vs} |",
                        r.server,
                        r.connected,
                        opt(r.rss_per_conn_kib, 2),
                        opt(r.cpu_us_per_conn_sec, 2),
                        opt(r.threads_peak, 0),
                        r.errors,
                        ratio(r.rss_ratio)
                    );
                }
            }
            "slow-consumer" => {
                let _ = writeln!(
                    md,
                    "| server | msgs/s alone | p99 alone µs | p99 with stalled µs | ratio | errors |\n|---|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.1} | {} | {} | {} |",
                        r.server,
                        thousands(r.msgs_per_sec),
                        r.latency_us[2],
                        opt(r.p99_stalled_us, 1),
                        ratio(r.p99_stalled_ratio),
                        r.errors
                    );
                }
            }
            _ => {
                let _ = writeln!(
                    md,
                    "| server | msgs/s | p50 | p90 | p99 | p99.9 | CPU µs/msg | errors | throughput ratio | CPU ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &s.rows {
                    let [p50, p90, p99, p999] = r.latency_us;
                    let vs = r
                        .baseline
                        .as_deref()
                        .map(|b| format!(" (vs {b})"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "| {} | {} | {p50:.1} | {p90:.1} | {p99:.1} | {p999:.1} | {} | {} | {}{vs} | {} |",
                        r.server,
                        thousands(r.msgs_per_sec),
                        opt(r.cpu_us_per_msg, 2),
                        r.errors,
                        ratio(r.throughput_ratio),
                        ratio(r.cpu_ratio)
                    );
                }
            }
        }
        let _ = writeln!(md, "\nCharts: {}", chart_names(s).join(", "));
    }
    if !rep.notes.is_empty() {
        let _ = writeln!(md, "\n## Not run\n");
        for n in &rep.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn cluster_markdown(md: &mut String, s: &Scenario) {
    let fanout = s.kind == "cluster-fanout";
    if fanout {
        let _ = writeln!(
            md,
            "Runs without MONITOR:\n\n| server | nodes | members | publishes | deliveries/s (asked) | incomplete publishes | out of order or twice | last delivery p50 µs | p99 µs | every delivery p50 µs | p99 µs | server CPU ms (per node) | deliveries per server CPU-s | vs 1 node | last-delivery p50 / p99 vs 1 node | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        );
    } else {
        let _ = writeln!(
            md,
            "Runs without MONITOR:\n\n| server | nodes | users | sent/s | delivered/s | undelivered | unanswered | duplicates | p50 µs | p99 µs | server CPU ms (per node) | deliveries per server CPU-s | vs 1 node | p50 / p99 vs 1 node | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        );
    }
    for r in &s.rows {
        let Some(c) = &r.cluster else { continue };
        let h = r.hub.clone().unwrap_or_default();
        let nodes: Vec<String> = c.node_cpu_ms.iter().map(|v| format!("{v:.0}")).collect();
        let cpu = format!("{:.0} ({})", c.server_cpu_ms, nodes.join(" + "));
        if fanout {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {} ({}) | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {cpu} | {} | {} | {} / {} | {} |",
                r.server,
                c.nodes,
                r.connected,
                c.publishes,
                thousands(c.delivered_per_sec),
                thousands(h.offered_per_sec),
                c.incomplete,
                c.duplicates,
                r.latency_us[0],
                r.latency_us[2],
                h.delivery_p50_us,
                h.delivery_p99_us,
                thousands(c.deliveries_per_cpu_sec),
                ratio(c.vs_one_node_per_cpu),
                ratio(c.vs_one_node_p50),
                ratio(c.vs_one_node_p99),
                r.errors
            );
        } else {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {cpu} | {} | {} | {} / {} | {} |",
                r.server,
                c.nodes,
                r.connected,
                thousands(c.sent_per_sec),
                thousands(c.delivered_per_sec),
                c.undelivered,
                c.unanswered,
                c.duplicates,
                h.delivery_p50_us,
                h.delivery_p99_us,
                thousands(c.deliveries_per_cpu_sec),
                ratio(c.vs_one_node_per_cpu),
                ratio(c.vs_one_node_p50),
                ratio(c.vs_one_node_p99),
                r.errors
            );
        }
    }
    let per = if fanout {
        "publication"
    } else {
        "delivered message"
    };
    let _ = writeln!(
        md,
        "\nRedis per {per}: round trips and script calls counted with MONITOR (runs of their \
         own), the rest from INFO in the runs above:\n\n| server | commands the nodes sent (round trips) | commands scripts ran | INFO: commands processed | INFO: EVALSHA | INFO: socket reads | Redis CPU µs | MONITOR runs |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &s.rows {
        let Some(c) = &r.cluster else { continue };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.server,
            opt(c.redis_commands_per_msg, 2),
            opt(c.redis_script_calls_per_msg, 2),
            opt(c.redis_processed_per_msg, 2),
            opt(c.redis_evalsha_per_msg, 2),
            opt(c.redis_reads_per_msg, 2),
            opt(c.redis_cpu_us_per_msg, 1),
            c.monitored_reps
        );
    }
    // What the Redis commands are, per delivered message.
    let rows: Vec<(&Row, &ClusterRow)> = s
        .rows
        .iter()
        .filter_map(|r| r.cluster.as_ref().map(|c| (r, c)))
        .collect();
    fn sent(c: &ClusterRow) -> &BTreeMap<String, f64> {
        &c.redis_by_command_per_msg
    }
    fn in_scripts(c: &ClusterRow) -> &BTreeMap<String, f64> {
        &c.redis_in_scripts_per_msg
    }
    type Pick = fn(&ClusterRow) -> &BTreeMap<String, f64>;
    for (title, pick) in [
        (
            "Commands the nodes sent Redis, per message (`evalsha` by the script's SHA1 prefix)",
            sent as Pick,
        ),
        (
            "Commands run inside scripts, per message (by script)",
            in_scripts,
        ),
    ] {
        let mut keys: Vec<&String> = rows.iter().flat_map(|(_, c)| pick(c).keys()).collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            continue;
        }
        let names: Vec<&str> = rows.iter().map(|(r, _)| r.server.as_str()).collect();
        let _ = writeln!(
            md,
            "\n{title}:\n\n| command | {} |\n|---|{}",
            names.join(" | "),
            "---:|".repeat(names.len())
        );
        for k in keys {
            let vals: Vec<String> = rows
                .iter()
                .map(|(_, c)| opt(pick(c).get(k).copied(), 3))
                .collect();
            let _ = writeln!(md, "| {k} | {} |", vals.join(" | "));
        }
    }
}

fn recover_markdown(md: &mut String, s: &Scenario) {
    let _ = writeln!(
        md,
        "| server | rounds × missed | recovery p50 / p99 ms | join result p50 ms | plain join p50 / p99 ms | ÷ plain join p50 / p99 | ÷ baseline p50 (per rep) / p99 | fill ms | hub CPU ms per recovery / plain join | client CPU ms per recovery | exact / failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &s.rows {
        let Some(x) = &r.recover else { continue };
        let vs_base = match x.vs_baseline_p50 {
            Some(v) => {
                let reps: Vec<String> = x
                    .vs_baseline_p50_reps
                    .iter()
                    .map(|v| format!("{v:.2}"))
                    .collect();
                format!(
                    "**{v:.2}x** ({}) / {}",
                    reps.join(", "),
                    ratio(x.vs_baseline_p99)
                )
            }
            None if r.role == "baseline" => "(baseline)".into(),
            None => "-".into(),
        };
        let failed = if x.failed == 0 {
            format!("{} / 0", x.exact)
        } else {
            format!("{} / **{}**", x.exact, x.failed)
        };
        let _ = writeln!(
            md,
            "| {} | {} × {} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {:.2}x / {:.2}x | {vs_base} | {:.0} | {} / {} | {} | {failed} |",
            r.server,
            x.rounds,
            x.missed,
            x.recover_p50_ms,
            x.recover_p99_ms,
            x.result_p50_ms,
            x.plain_p50_ms,
            x.plain_p99_ms,
            x.vs_plain_p50,
            x.vs_plain_p99,
            x.fill_ms,
            opt(x.server_cpu_ms_recover, 2),
            opt(x.server_cpu_ms_plain, 2),
            opt(x.client_cpu_ms_recover, 2),
        );
    }
    let _ = writeln!(
        md,
        "\nRecovery: from the TCP connect to the last missed publication handled by the client; \
         plain join: from the TCP connect to the result of a join without `since`, same hub, same \
         room, same round. p50 and p99 are over one run's rounds, then the median over \
         repetitions; ÷ baseline divides by the baseline row's recovery in the same repetition."
    );
}

fn guess_markdown(md: &mut String, s: &Scenario) {
    let ms = |us: f64| us / 1000.0;
    let _ = writeln!(
        md,
        "| server | attackers × outstanding | joins per phase | unloaded p50 / p99 ms | attacked p50 / p99 ms | ratio p50 (per rep) | ratio p99 | legitimate joins failed |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &s.rows {
        let Some(g) = &r.guess else { continue };
        let reps: Vec<String> = g.ratio_p50_reps.iter().map(|v| format!("{v:.2}")).collect();
        let failed = if g.legit_failed.is_empty() {
            format!("0 of {}", g.legit_ok)
        } else {
            let codes: Vec<String> = g
                .legit_failed
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            format!(
                "**{}** ({})",
                g.legit_failed.values().sum::<u64>(),
                codes.join(", ")
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} × {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | **{:.2}x** ({}) | {:.2}x | {failed} |",
            r.server,
            g.attackers,
            g.attacker_in_flight,
            g.joins,
            ms(g.unloaded_p50_us),
            ms(g.unloaded_p99_us),
            ms(g.attacked_p50_us),
            ms(g.attacked_p99_us),
            g.ratio_p50,
            reps.join(", "),
            g.ratio_p99,
        );
    }
    let _ = writeln!(
        md,
        "\nThe attackers, per run (medians). Checked: wrong passwords the hub verified (the answered \
         `wrong_password`s plus the unanswered 5th of each strike-out, which the hub closes the \
         connection on); strike-outs: closed connections that got a `bye` 4010 or (a `bye` is \
         lost when the send queue is full) had 4 wrong passwords answered; lost on close: guesses \
         outstanding when a connection was closed.\n\n\
         | server | attack s | connections | closed by the hub | strike-outs | checked | guessing_too_fast | busy | other | lost on close | answers/s | wrong passwords that joined | server cores unloaded / attacked | generator cores attacked |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &s.rows {
        let Some(g) = &r.guess else { continue };
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {} / {} | {} |",
            r.server,
            g.attack_seconds,
            g.connections,
            g.closed,
            g.strike_outs,
            g.checked,
            thousands(g.guessing_too_fast),
            thousands(g.busy),
            g.other,
            thousands(g.lost_on_close),
            thousands(g.answered_per_sec),
            g.joined,
            opt(g.server_cores_unloaded, 2),
            opt(g.server_cores_attacked, 2),
            opt(g.client_cores_attacked, 2),
        );
    }
    let mut odd = Vec::new();
    for r in &s.rows {
        let Some(g) = &r.guess else { continue };
        if g.closed_without_bye > 0 {
            odd.push(format!(
                "{}: {} connection(s) closed without a bye (all repetitions)",
                r.server, g.closed_without_bye
            ));
        }
        for (code, n) in &g.other_byes {
            odd.push(format!("{}: {n} bye(s) with code {code}", r.server));
        }
    }
    if !odd.is_empty() {
        let _ = writeln!(md, "\n{}", odd.join("; "));
    }
}

fn chart_names(s: &Scenario) -> Vec<String> {
    match s.kind.as_str() {
        "echo" => vec![
            format!("[{0}-throughput.svg]({0}-throughput.svg)", s.name),
            format!("[{0}-latency.svg]({0}-latency.svg)", s.name),
        ],
        _ => vec![format!("[{0}.svg]({0}.svg)", s.name)],
    }
}

/// Axis labels: `1200000` -> `1.2M`, `12000` -> `12k`, `12.5` -> `12.5`.
fn short_number(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    s.replace(".00M", "M").replace(".0k", "k")
}

fn pe(e: impl std::fmt::Display) -> BoxError {
    e.to_string().into()
}

/// A bar per item; with `paired`, bars go in pairs of one colour (the second one lighter).
fn bar_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    items: &[(String, f64)],
    paired: bool,
) -> Result<(), BoxError> {
    // Room for the labels under the bars (about 5.5 px per character).
    let longest = items.iter().map(|(s, _)| s.len()).max().unwrap_or(0) as u32;
    let width = (items.len() as u32 * (longest * 11 / 2 + 16) + 120).max(960);
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9) * 1.15;
    let n = items.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), 0f64..max)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .y_label_formatter(&|v| short_number(*v))
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => items.get(*i).map(|(s, _)| s.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                if paired {
                    Palette99::pick(i / 2).mix(if i % 2 == 0 { 1.0 } else { 0.5 })
                } else {
                    Palette99::pick(i).mix(1.0)
                }
                .filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(pe)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                if *v >= 100.0 {
                    thousands(*v)
                } else {
                    format!("{v:.2}")
                },
                (SegmentValue::CenterOf(i), *v + max * 0.06),
                ("sans-serif", 13),
            )
        }))
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

fn latency_chart(path: &Path, title: &str, rows: &[Row]) -> Result<(), BoxError> {
    let root = SVGBackend::new(path, (960, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let all = rows.iter().flat_map(|r| r.latency_us).filter(|v| *v > 0.0);
    let lo = all.clone().fold(f64::INFINITY, f64::min).clamp(0.1, 1e9) * 0.8;
    let hi = all.fold(0.0, f64::max).max(lo * 2.0) * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0usize..3usize, (lo..hi).log_scale())
        .map_err(pe)?;
    const NAMES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|i| NAMES.get(*i).copied().unwrap_or("").to_owned())
        .y_desc("latency (us, log scale)")
        .y_label_formatter(&|v| short_number(*v))
        .draw()
        .map_err(pe)?;
    for (k, r) in rows.iter().enumerate() {
        let color = Palette99::pick(k).mix(1.0);
        chart
            .draw_series(LineSeries::new(
                r.latency_us
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(i, v)| (i, *v)),
                color.stroke_width(2),
            ))
            .map_err(pe)?
            .label(r.server.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

/// Draws each scenario's charts into `dir`; returns the files written.
pub fn charts(rep: &Report, dir: &Path) -> Result<Vec<String>, BoxError> {
    let mut written = Vec::new();
    for s in &rep.scenarios {
        match s.kind.as_str() {
            "echo" => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .map(|r| (r.server.clone(), r.msgs_per_sec))
                    .collect();
                let f = format!("{}-throughput.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: throughput ({})", s.name, s.load),
                    "messages/s",
                    &items,
                    false,
                )?;
                written.push(f);
                let f = format!("{}-latency.svg", s.name);
                latency_chart(&dir.join(&f), &format!("{}: latency", s.name), &s.rows)?;
                written.push(f);
            }
            "hub-guess" => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .filter_map(|r| r.guess.as_ref().map(|g| (r, g)))
                    .flat_map(|(r, g)| {
                        [
                            (format!("{} unloaded", r.server), g.unloaded_p50_us / 1000.0),
                            (format!("{} attacked", r.server), g.attacked_p50_us / 1000.0),
                        ]
                    })
                    .map(|(n, v)| (n, if v.is_finite() { v } else { 0.0 }))
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: right-password join, median", s.name),
                    "ms",
                    &items,
                    false,
                )?;
                written.push(f);
            }
            "hub-recover" => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .filter_map(|r| r.recover.as_ref().map(|x| (r, x)))
                    .flat_map(|(r, x)| {
                        [
                            (format!("{} plain join", r.server), x.plain_p50_ms),
                            (format!("{} recovery", r.server), x.recover_p50_ms),
                        ]
                    })
                    .map(|(n, v)| (n, if v.is_finite() { v } else { 0.0 }))
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: connect to last missed publication, median", s.name),
                    "ms",
                    &items,
                    true,
                )?;
                written.push(f);
            }
            "cluster-send" | "cluster-fanout" => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .filter_map(|r| {
                        let c = r.cluster.as_ref()?;
                        let v = c.deliveries_per_cpu_sec;
                        Some((r.server.clone(), if v.is_finite() { v } else { 0.0 }))
                    })
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: deliveries per second of the nodes' summed CPU", s.name),
                    "deliveries per CPU-second",
                    &items,
                    false,
                )?;
                written.push(f);
            }
            kind if kind.starts_with("hub-") => {
                let (what, unit): (&str, &str) = match kind {
                    "hub-fanout" => ("deliveries per second", "deliveries/s"),
                    "hub-deflate-fanout" => {
                        ("bytes on the wire per delivery", "bytes per delivery")
                    }
                    "hub-send" => ("sends per second", "sends/s"),
                    "hub-replay" => ("ms until every queued message arrived", "ms"),
                    _ => (
                        "server RSS per signed-in idle connection",
                        "KiB per connection",
                    ),
                };
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .map(|r| {
                        let v = match kind {
                            "hub-replay" => r.hub.as_ref().map_or(0.0, |h| h.replay_ms),
                            "hub-idle" => r.rss_per_conn_kib.unwrap_or(0.0),
                            "hub-deflate-fanout" => r.wire_bytes_per_delivery.unwrap_or(0.0),
                            _ => r.msgs_per_sec,
                        };
                        (r.server.clone(), if v.is_finite() { v } else { 0.0 })
                    })
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: {what}", s.name),
                    unit,
                    &items,
                    false,
                )?;
                written.push(f);
            }
            "idle" => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .map(|r| (r.server.clone(), r.rss_per_conn_kib.unwrap_or(0.0)))
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: server RSS per idle connection", s.name),
                    "KiB per connection",
                    &items,
                    false,
                )?;
                written.push(f);
            }
            _ => {
                let items: Vec<_> = s
                    .rows
                    .iter()
                    .flat_map(|r| {
                        [
                            (format!("{} alone", r.server), r.latency_us[2]),
                            (
                                format!("{} stalled", r.server),
                                r.p99_stalled_us.unwrap_or(0.0),
                            ),
                        ]
                    })
                    .collect();
                let f = format!("{}.svg", s.name);
                bar_chart(
                    &dir.join(&f),
                    &format!("{}: p99 of the echo clients", s.name),
                    "p99 latency (us)",
                    &items,
                    true,
                )?;
                written.push(f);
            }
        }
    }
    Ok(written)
}

fn read_kv(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Reads `dir/runs/*.json` (in file-name order), writes `report.json`, `report.md` and the
/// charts into `dir`, and prints the Markdown on stdout.
pub fn write_report(dir: &Path) -> Result<(), BoxError> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("runs"))
        .map_err(|e| format!("{}: {e}", dir.join("runs").display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        runs.push(
            serde_json::from_str::<RunReport>(&text)
                .map_err(|e| format!("{}: {e}", f.display()))?,
        );
    }
    let meta = read_kv(&dir.join("meta.txt"));
    let notes = std::fs::read_to_string(dir.join("notes.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let rep = build(runs, meta, notes);
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&rep)? + "\n",
    )?;
    charts(&rep, dir)?;
    let md = markdown(&rep);
    std::fs::write(dir.join("report.md"), &md)?;
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn recover_rows_divide_by_the_baseline_in_the_same_repetition() {
        use crate::recover::RecoverFigures;
        let run = |server: &str, rep: &str, p50_ms: f64, failed: u64| {
            let mut meta = BTreeMap::new();
            let base = server != "mem";
            for (k, v) in [
                ("scenario", "hub-history-recover-1k"),
                ("kind", "hub-recover"),
                ("server", server),
                ("role", if base { "chinwag" } else { "baseline" }),
                ("rep", rep),
                ("baseline", if base { "mem" } else { "" }),
            ] {
                meta.insert(k.to_owned(), v.to_owned());
            }
            let lat = |ms: f64| crate::load::Latency {
                p50: ms * 1000.0,
                p99: ms * 2000.0,
                samples: 10,
                ..crate::load::Latency::default()
            };
            RunReport {
                meta,
                spec: crate::LoadSpec::default(),
                connected: 1,
                msgs_per_sec: 0.0,
                messages: 10_000,
                latency_us: lat(p50_ms),
                errors: failed,
                first_errors: vec![],
                server: None,
                hub: None,
                guess: None,
                recover: Some(RecoverFigures {
                    missed: 1000,
                    rounds: 10,
                    exact: 12 - failed,
                    failed,
                    recover_us: lat(p50_ms),
                    recover_result_us: lat(p50_ms),
                    plain_us: lat(1.0),
                    ratio_p50: p50_ms,
                    ratio_p99: p50_ms,
                    ..RecoverFigures::default()
                }),
            }
        };
        let runs = vec![
            run("mem", "0", 5.0, 0),
            run("disk", "0", 10.0, 0),
            run("mem", "1", 4.0, 0),
            run("disk", "1", 6.0, 1),
            run("mem", "2", 5.0, 0),
            run("disk", "2", 10.0, 0),
        ];
        let rep = build(runs, BTreeMap::new(), vec![]);
        let rows = &rep.scenarios[0].rows;
        let (mem, disk) = (
            rows[0].recover.as_ref().unwrap(),
            rows[1].recover.as_ref().unwrap(),
        );
        assert_eq!(mem.vs_baseline_p50, None);
        // Repetition 1 of `disk` did not recover exactly every time: no figure from it.
        assert_eq!(disk.vs_baseline_p50_reps, [2.0, 2.0]);
        assert!((disk.vs_baseline_p50.unwrap() - 2.0).abs() < 1e-9);
        assert!((disk.recover_p50_ms - 10.0).abs() < 1e-9);
        assert_eq!((disk.exact, disk.failed), (35, 1));
        let goal = rep
            .goals
            .iter()
            .find(|g| g.goal.contains("recovery"))
            .unwrap();
        assert_eq!(goal.met, Some(false));
        let md = markdown(&rep);
        assert!(md.contains("(baseline)") && md.contains("**2.00x** (2.00, 2.00)"));
    }

    #[test]
    fn idle_rows_report_the_median_thread_peak() {
        use crate::load::ServerUsage;
        let run = |rep: &str, threads: Option<u64>| {
            let meta = [
                ("scenario", "hub-idle"),
                ("kind", "hub-idle"),
                ("server", "server-rooms"),
                ("role", "chinwag"),
                ("rep", rep),
                ("baseline", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            RunReport {
                meta,
                spec: crate::LoadSpec {
                    mode: crate::hub::Mode::IdleAuth,
                    conns: 100,
                    ..crate::LoadSpec::default()
                },
                connected: 100,
                msgs_per_sec: 0.0,
                messages: 0,
                latency_us: crate::load::Latency::default(),
                errors: 0,
                first_errors: vec![],
                server: Some(ServerUsage {
                    rss_per_conn_kib: Some(6.0),
                    threads_peak: threads,
                    ..ServerUsage::default()
                }),
                hub: Some(crate::hub::HubFigures::default()),
                guess: None,
                recover: None,
            }
        };
        let runs = vec![run("0", Some(9)), run("1", Some(30)), run("2", Some(12))];
        let rep = build(runs, BTreeMap::new(), vec![]);
        assert_eq!(rep.scenarios[0].rows[0].threads_peak, Some(12.0));
        let md = markdown(&rep);
        assert!(md.contains("threads (peak)"), "{md}");
        assert!(
            md.contains("| server-rooms | 100 | 6.00 | - | 12 | 0 |"),
            "{md}"
        );
        // A report written before threads were sampled reads as no figure.
        let old: ServerUsage = serde_json::from_str(
            r#"{"pid":1,"cpu_ms":1.0,"cpu_us_per_msg":null,"rss_before_kib":1,"rss_end_kib":2,"rss_per_conn_kib":null,"cpu_us_per_conn_sec":null}"#,
        )
        .unwrap();
        assert_eq!(old.threads_peak, None);
    }

    #[test]
    fn deflate_rows_divide_wire_bytes_and_cpu_by_no_deflate() {
        use crate::hub::HubFigures;
        use crate::load::ServerUsage;
        // (server, rep, wire bytes, deliveries, CPU µs per delivery)
        let run = |server: &str, rep: &str, wire: u64, delivered: u64, cpu: f64| {
            let mut meta = BTreeMap::new();
            let base = server == "off";
            for (k, v) in [
                ("scenario", "hub-deflate-fanout-1k"),
                ("kind", "hub-deflate-fanout"),
                ("server", server),
                ("role", if base { "baseline" } else { "chinwag" }),
                ("rep", rep),
                ("baseline", if base { "" } else { "off" }),
            ] {
                meta.insert(k.to_owned(), v.to_owned());
            }
            RunReport {
                meta,
                spec: crate::LoadSpec {
                    mode: crate::hub::Mode::Fanout,
                    conns: 1000,
                    size: 1024,
                    payload: crate::payload::Payload::Chat,
                    deflate: true,
                    wire_bytes: true,
                    rate: Some(20.0),
                    ..crate::LoadSpec::default()
                },
                connected: 1000,
                msgs_per_sec: delivered as f64 / 8.0,
                messages: delivered,
                latency_us: crate::load::Latency::default(),
                errors: 0,
                first_errors: vec![],
                server: Some(ServerUsage {
                    cpu_us_per_msg: Some(cpu),
                    ..ServerUsage::default()
                }),
                hub: Some(HubFigures {
                    delivered,
                    wire_bytes: Some(wire),
                    ..HubFigures::default()
                }),
                guess: None,
                recover: None,
            }
        };
        let runs = vec![
            run("off", "0", 1_040_000, 1000, 10.0),
            run("per-connection", "0", 400_000, 1000, 30.0),
            run("compress-once", "0", 400_000, 1000, 12.0),
            run("off", "1", 2_080_000, 2000, 8.0),
            run("per-connection", "1", 700_000, 2000, 24.0),
            run("compress-once", "1", 900_000, 2000, 12.0),
        ];
        let rep = build(runs, BTreeMap::new(), vec![]);
        let rows = &rep.scenarios[0].rows;
        assert_eq!(rows[0].wire_bytes_per_delivery, Some(1040.0));
        assert_eq!(rows[0].wire_ratio, None);
        // Per repetition: 400/1040 and 350/1040; CPU 3.0 and 3.0.
        let per_conn = &rows[1];
        assert!((per_conn.wire_ratio.unwrap() - 375.0 / 1040.0).abs() < 1e-9);
        assert!((per_conn.cpu_ratio.unwrap() - 3.0).abs() < 1e-9);
        // 400/1040 and 450/1040; CPU 1.2 and 1.5.
        let once = &rows[2];
        assert!((once.wire_ratio.unwrap() - 425.0 / 1040.0).abs() < 1e-9);
        assert!((once.cpu_ratio.unwrap() - 1.35).abs() < 1e-9);
        let goal = |part: &str| rep.goals.iter().find(|g| g.goal.contains(part)).unwrap();
        // 0.41x for compress-once: just over.
        assert_eq!(goal("bytes on the wire").met, Some(false));
        let cpu = goal("compressed once");
        assert_eq!(cpu.met, Some(false));
        assert!(
            cpu.measured.contains("compress-once: 1.35x"),
            "{}",
            cpu.measured
        );
        assert!(!cpu.measured.contains("per-connection"));
        let md = markdown(&rep);
        assert!(md.contains("chat-like JSON text"), "{md}");
        assert!(md.contains("| compress-once | 1000 |"), "{md}");
    }

    #[test]
    fn cluster_rows_divide_by_one_node_and_count_apart() {
        use crate::hub::HubFigures;
        use crate::load::ServerUsage;
        use crate::redis_monitor::{Monitored, RedisFigures};
        // `cpu_ms` of the nodes for 1 000 deliveries; MONITOR runs (variant `monitor`) carry
        // the counts and must not move the CPU figures.
        let run = |server: &str, nodes: usize, rep: &str, variant: &str, cpu_ms: f64| {
            let mut meta = BTreeMap::new();
            for (k, v) in [
                ("scenario", "cluster-send"),
                ("kind", "cluster-send"),
                ("server", server),
                ("role", if nodes == 1 { "baseline" } else { "chinwag" }),
                ("baseline", if nodes == 1 { "" } else { "cluster-1-node" }),
                ("rep", rep),
                ("variant", variant),
            ] {
                meta.insert(k.to_owned(), v.to_owned());
            }
            let monitored = (variant == "monitor").then(|| Monitored {
                commands: 3000,
                script_calls: 27_000,
                by_command: BTreeMap::from([("evalsha 018c9d7b".to_owned(), 1000)]),
                in_scripts: BTreeMap::from([("018c9d7b publish".to_owned(), 1000)]),
            });
            RunReport {
                meta,
                spec: crate::LoadSpec {
                    duration: 1.0,
                    ..crate::LoadSpec::default()
                },
                connected: 300,
                msgs_per_sec: 1000.0,
                messages: 1000,
                latency_us: Default::default(),
                errors: 0,
                first_errors: vec![],
                server: Some(ServerUsage {
                    cpu_ms,
                    ..ServerUsage::default()
                }),
                hub: Some(HubFigures {
                    nodes,
                    made: 1001,
                    answered: 1000,
                    delivered: 1000,
                    node_cpu_ms: vec![cpu_ms / nodes as f64; nodes],
                    redis: Some(RedisFigures {
                        processed: 30_000,
                        reads: 2500,
                        calls: BTreeMap::from([("evalsha".to_owned(), 3000)]),
                        cpu_ms: Some(400.0),
                        monitored,
                    }),
                    ..HubFigures::default()
                }),
                guess: None,
                recover: None,
            }
        };
        let runs = vec![
            run("cluster-1-node", 1, "0", "", 500.0),
            run("cluster-1-node", 1, "0", "monitor", 900.0),
            run("cluster-3-nodes", 3, "0", "", 625.0),
            run("cluster-3-nodes", 3, "0", "monitor", 50.0),
        ];
        let rep = build(runs, BTreeMap::new(), vec![]);
        let rows = &rep.scenarios[0].rows;
        assert_eq!(rows.len(), 2);
        let one = rows[0].cluster.as_ref().unwrap();
        assert_eq!(
            (one.deliveries_per_cpu_sec, one.vs_one_node_per_cpu),
            (2000.0, None)
        );
        let three = rows[1].cluster.as_ref().unwrap();
        assert_eq!(three.nodes, 3);
        assert_eq!(three.deliveries_per_cpu_sec, 1600.0);
        assert_eq!(three.vs_one_node_per_cpu, Some(0.8));
        assert_eq!((three.undelivered, three.unanswered), (2, 2));
        assert_eq!(three.redis_commands_per_msg, Some(3.0));
        assert_eq!(three.redis_script_calls_per_msg, Some(27.0));
        assert_eq!(three.redis_evalsha_per_msg, Some(3.0));
        assert_eq!(three.redis_cpu_us_per_msg, Some(400.0));
        assert_eq!(three.redis_by_command_per_msg["evalsha 018c9d7b"], 1.0);
        assert_eq!(three.monitored_reps, 1);
        let goals: Vec<_> = rep
            .goals
            .iter()
            .filter(|g| g.goal.starts_with("cluster"))
            .collect();
        assert_eq!(goals.len(), 2);
        assert_eq!(goals[0].met, Some(true), "{:?}", goals[0]);
        assert_eq!(goals[1].met, Some(false), "{:?}", goals[1]);
        let md = markdown(&rep);
        assert!(
            md.contains("| cluster-3-nodes | 3.00 | 27.00 | 30.00 | 3.00 | 2.50 | 400.0 | 1 |")
        );
    }

    #[test]
    fn groups_and_ratios() {
        let run = |server: &str, role: &str, rep: &str, mps: f64| {
            let mut meta = BTreeMap::new();
            for (k, v) in [
                ("scenario", "ws-echo-20B"),
                ("kind", "echo"),
                ("server", server),
                ("role", role),
                ("rep", rep),
                ("baseline", if role == "chinwag" { "raw" } else { "" }),
            ] {
                meta.insert(k.to_owned(), v.to_owned());
            }
            RunReport {
                meta,
                spec: crate::LoadSpec::default(),
                connected: 10,
                msgs_per_sec: mps,
                messages: 1,
                latency_us: Default::default(),
                errors: 0,
                first_errors: vec![],
                server: None,
                hub: None,
                guess: None,
                recover: None,
            }
        };
        let runs = vec![
            run("cw", "chinwag", "0", 110.0),
            run("raw", "baseline", "0", 100.0),
            run("cw", "chinwag", "1", 50.0),
            run("raw", "baseline", "1", 50.0),
        ];
        let rep = build(
            runs,
            BTreeMap::new(),
            vec!["gotalk: not available yet".into()],
        );
        assert_eq!(rep.scenarios.len(), 1);
        let row = &rep.scenarios[0].rows[0];
        assert_eq!(row.server, "cw");
        assert!((row.throughput_ratio.unwrap() - 1.05).abs() < 1e-9);
        assert_eq!(rep.goals[0].met, Some(true));
        let md = markdown(&rep);
        assert!(md.contains("gotalk: not available yet"));
        let dir = std::env::temp_dir().join(format!("chinwag-load-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = charts(&rep, &dir).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(dir.join(&files[0])).unwrap();
        assert!(svg.contains("<svg"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
