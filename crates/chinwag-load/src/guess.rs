//! The room-password guessing scenario (issue 16): how long a legitimate user's right-password
//! `join` takes while another client guesses the same room's password as fast as the hub lets
//! it.
//!
//! One process, sequential like the replay ([`Mode::Guess`](crate::hub::Mode::Guess)), on the
//! chat door (`gotalk+tcp://` or `gotalk+ws://`), against a hub that has a room `room` with the
//! password `password` (`examples/hub --protected-room ROOM:PASSWORD`):
//!
//! 1. **Unloaded.** The legitimate user (`legit`, one connection from `127.0.0.1`) makes one
//!    join that is not recorded (the first Argon2 check of a fresh process allocates), then
//!    `joins` timed joins with the right password, each followed by a `leave`, starting one
//!    every `1 / rate` seconds (default 1/s: a join with a password is a guess to the hub, and a
//!    connection may make 1 a second, bursts of 5).
//! 2. **Attacked.** `attackers` connections from one other address (`127.0.0.2`) each keep
//!    `in_flight` wrong-password joins outstanding (every answer is replaced at once by the next
//!    guess, each with a new password), and reconnect (as a new user, `guesser-<k>-<n>`)
//!    whenever the hub closes them (the strike-out closes a connection with 4010 after its 5th
//!    wrong password). After `warmup` seconds the legitimate user repeats its `joins` joins on
//!    the same connection; then the attackers stop.
//!
//! Figures ([`GuessFigures`]): each phase's join latencies (p50, p99: with 50 joins the p99 is
//! the slowest), the ratio attacked ÷ unloaded of the medians, every legitimate join that
//! failed and its error code (a right password must never be refused), the attackers' answers
//! by kind (`wrong_password`: checked and wrong; `guessing_too_fast`; `busy`; others), the
//! requests lost when the hub closed a connection, the connections the strike-out closed, the
//! `bye` notifications by code, and the server's and this process's CPU in each phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chinwag::client::{Client, Event, Events};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::BoxError;
use crate::chat;
use crate::hub::with_retries;
use crate::load::{Latency, LoadSpec, RunOptions, RunReport, ServerUsage, latency};
use crate::procfs::{self, ProcSample};
use crate::proto::{self, Protocol, Target};

/// The legitimate user's id.
const LEGIT_USER: &str = "legit";
/// How long the attackers get to stop once the legitimate joins are done.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long an attacker whose requests failed waits for its connection's end to reach its
/// events (a `bye`, or the disconnection without one): a bound, not a pause.
const BYE_WAIT: Duration = Duration::from_millis(500);
/// The hub's default strike-out: the 5th wrong password closes the connection (4010).
const STRIKES: u64 = 5;

/// One phase of the legitimate user's joins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// Joins that succeeded.
    pub ok: u64,
    /// Joins that failed, by error code (`wrong_password`, `busy`, `guessing_too_fast`,
    /// `timeout`, `closed`, ...: [`ChatError::code`]).
    pub failed: BTreeMap<String, u64>,
    /// Latency of the successful joins (µs), request to answer.
    pub latency_us: Latency,
    /// Every successful join's latency (µs), in order.
    pub samples_us: Vec<f64>,
    /// Seconds from the phase's first join to the end of its last.
    pub seconds: f64,
    /// Server CPU over the phase (ms), when its pid was given.
    pub server_cpu_ms: Option<f64>,
    /// This process's CPU over the phase (ms): the legitimate user, and the attackers in the
    /// attacked phase.
    pub client_cpu_ms: Option<f64>,
}

/// What the attackers did and got, from their start to their stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackFigures {
    /// Seconds the attack ran (warm-up and the legitimate joins).
    pub seconds: f64,
    /// Connections opened (signed in), reconnects included.
    pub connections: u64,
    /// Connections that could not be opened.
    pub connect_errors: u64,
    /// Guesses answered `wrong_password`: a check ran and the password was wrong. The wrong
    /// password that strikes a connection out is not answered (the hub closes the connection
    /// first): it is among [`lost_on_close`](Self::lost_on_close); see
    /// [`checked`](Self::checked).
    pub wrong_password: u64,
    /// Guesses refused `guessing_too_fast` (the connection's or the address's guess rate).
    pub guessing_too_fast: u64,
    /// Guesses refused `busy` (another check of the connection running, or no check slot
    /// within the wait).
    pub busy: u64,
    /// Guesses that joined the room (a wrong password let in: must be 0).
    pub joined: u64,
    /// Other answers, by code (`closed`: the connection was closing).
    pub other: BTreeMap<String, u64>,
    /// Guesses outstanding when the hub closed their connection (no answer).
    pub lost_on_close: u64,
    /// Connections that ended while the attack ran (closed by the hub).
    pub closed: u64,
    /// Of those, connections closed by the strike-out: a `bye` 4010 came, or (a `bye` can be
    /// lost when the connection's send queue is full) the connection had `STRIKES` − 1
    /// wrong passwords answered when it was closed.
    #[serde(default)]
    pub strike_outs: u64,
    /// Of the closed connections, those whose `bye` did not arrive.
    #[serde(default)]
    pub closed_without_bye: u64,
    /// `bye` notifications received, by close code (4010: the strike-out).
    pub byes: BTreeMap<u16, u64>,
    /// The closed connections by what they had seen: `"<n> wrong, bye <code>"` or
    /// `"<n> wrong, no bye"` (n: wrong passwords answered on the connection).
    #[serde(default)]
    pub closes: BTreeMap<String, u64>,
}

impl AttackFigures {
    /// Wrong passwords the hub checked: those answered `wrong_password`, and the unanswered
    /// one of each strike-out.
    pub fn checked(&self) -> u64 {
        self.wrong_password + self.strike_outs
    }

    /// Every guess answered.
    pub fn answered(&self) -> u64 {
        self.wrong_password
            + self.guessing_too_fast
            + self.busy
            + self.joined
            + self.other.values().sum::<u64>()
    }
}

/// The figures of a guess run (in [`RunReport::guess`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuessFigures {
    /// Timed legitimate joins per phase.
    pub joins: usize,
    /// Seconds between the starts of two legitimate joins.
    pub join_interval_s: f64,
    /// Attacker connections at once.
    pub attackers: usize,
    /// Guesses each attacker keeps outstanding.
    pub attacker_in_flight: usize,
    /// Phase 1: no attacker.
    pub unloaded: PhaseFigures,
    /// Phase 2: under attack.
    pub attacked: PhaseFigures,
    /// Attacked ÷ unloaded, medians (the acceptance figure).
    pub ratio_p50: f64,
    /// Attacked ÷ unloaded, p99s.
    pub ratio_p99: f64,
    /// The attackers.
    pub attack: AttackFigures,
}

/// The attackers' counters, shared by their tasks.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    connect_errors: AtomicU64,
    wrong_password: AtomicU64,
    guessing_too_fast: AtomicU64,
    busy: AtomicU64,
    joined: AtomicU64,
    lost_on_close: AtomicU64,
    closed: AtomicU64,
    closed_without_bye: AtomicU64,
    strike_outs: AtomicU64,
    guesses: AtomicU64,
    other: Mutex<BTreeMap<String, u64>>,
    byes: Mutex<BTreeMap<u16, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    first_errors: Mutex<Vec<String>>,
}

impl Counters {
    fn note(&self, what: String) {
        let mut f = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 5 {
            f.push(what);
        }
    }

    fn figures(&self, seconds: f64) -> AttackFigures {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AttackFigures {
            seconds,
            connections: n(&self.connections),
            connect_errors: n(&self.connect_errors),
            wrong_password: n(&self.wrong_password),
            guessing_too_fast: n(&self.guessing_too_fast),
            busy: n(&self.busy),
            joined: n(&self.joined),
            other: self.other.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            lost_on_close: n(&self.lost_on_close),
            closed: n(&self.closed),
            closed_without_bye: n(&self.closed_without_bye),
            strike_outs: n(&self.strike_outs),
            byes: self.byes.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            closes: self
                .closes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The legitimate user's connection (its events are not looked at).
async fn legit_client(target: &Target, spec: &LoadSpec) -> Result<Client, BoxError> {
    let source = proto::source_addr(target, 0, 2);
    let (client, events) =
        with_retries(|| chat::connect(target, spec, LEGIT_USER, source, true)).await?;
    chat::drain(events);
    Ok(client)
}

/// Runs one phase: `n` joins (with the right password) and leaves, one every `interval`.
async fn legit_phase(
    target: &Target,
    spec: &LoadSpec,
    client: &mut Client,
    n: usize,
    interval: Duration,
    server_pid: Option<u32>,
    errors: &mut Vec<String>,
) -> PhaseFigures {
    let password = spec.password.as_deref();
    let mut out = PhaseFigures::default();
    let mut hist = new_histogram();
    let server_before = server_pid.and_then(procfs::sample);
    let client_before = procfs::sample(std::process::id());
    let started = Instant::now();
    let mut next = tokio::time::Instant::now();
    for _ in 0..n {
        tokio::time::sleep_until(next).await;
        next = (next + interval).max(tokio::time::Instant::now());
        let t0 = Instant::now();
        let r = client.join_with(&spec.room, password, None).await;
        let took = t0.elapsed();
        match r {
            Ok(_) => {
                out.ok += 1;
                let us = took.as_secs_f64() * 1e6;
                out.samples_us.push(us);
                hist.saturating_record((took.as_nanos() as u64).max(1));
                if let Err(e) = client.leave(&spec.room).await {
                    errors.push(format!("legitimate leave: {}", chat::error(&e)));
                }
            }
            Err(e) => {
                *out.failed.entry(e.code().to_owned()).or_default() += 1;
                errors.push(format!("legitimate join: {}", chat::error(&e)));
                if e.is_closed() {
                    match legit_client(target, spec).await {
                        Ok(c) => *client = c,
                        Err(e) => {
                            errors.push(format!("legitimate reconnect: {e}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.latency_us = latency(&hist);
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| {
        Some(b?.cpu_us.saturating_sub(a?.cpu_us) as f64 / 1000.0)
    };
    out.server_cpu_ms = cpu(server_before, server_pid.and_then(procfs::sample));
    out.client_cpu_ms = cpu(client_before, procfs::sample(std::process::id()));
    out
}

/// One attacker connection's own record: its wrong passwords answered and its `bye`.
#[derive(Default)]
struct ConnRecord {
    wrong: AtomicU64,
    bye_code: AtomicU64,
    bye: Notify,
}

/// Reads an attacker connection's events: counts its `bye` by code and notes it in the
/// connection's record; a connection that ends without one notes that too (code 0).
fn watch_bye(mut events: Events, counters: Arc<Counters>, conn: Arc<ConnRecord>) {
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                Event::Bye(bye) => {
                    *counters
                        .byes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(bye.code)
                        .or_default() += 1;
                    conn.bye_code.store(u64::from(bye.code), Ordering::Relaxed);
                    conn.bye.notify_one();
                    return;
                }
                Event::Disconnected(_) | Event::Closed(_) => {
                    conn.bye.notify_one();
                    return;
                }
                _ => {}
            }
        }
    });
}

/// One guess after another on `client` until the connection closes or the attack stops.
async fn guesser(
    client: Client,
    room: String,
    counters: Arc<Counters>,
    conn: Arc<ConnRecord>,
    stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let k = counters.guesses.fetch_add(1, Ordering::Relaxed);
        let guess = format!("wrong-{k}");
        let r = client.join_with(&room, Some(&guess), None).await;
        if *stop.borrow() {
            return; // answers to our own close are not the hub's
        }
        let e = match r {
            Ok(_) => {
                counters.joined.fetch_add(1, Ordering::Relaxed);
                counters.note("a wrong password joined the room".into());
                continue;
            }
            Err(e) => e,
        };
        if e.is_closed() {
            counters.lost_on_close.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match e.code() {
            "wrong_password" => {
                conn.wrong.fetch_add(1, Ordering::Relaxed);
                &counters.wrong_password
            }
            "guessing_too_fast" => &counters.guessing_too_fast,
            "busy" => &counters.busy,
            other => {
                *counters
                    .other
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(other.to_owned())
                    .or_default() += 1;
                continue;
            }
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// One attacker: a connection from the attackers' address with `in_flight` guessers, opened
/// again (as a new user) each time the hub closes it, until the attack stops.
async fn attacker(
    slot: usize,
    target: Arc<Target>,
    spec: Arc<LoadSpec>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let source = proto::source_addr(&target, 1, 2);
    let mut n = 0u64;
    while !*stop.borrow() {
        n += 1;
        let user = format!("guesser-{slot}-{n}");
        let record = Arc::new(ConnRecord::default());
        let connected = tokio::select! {
            c = with_retries(|| chat::connect(&target, &spec, &user, source, true)) => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let client = match connected {
            Ok((client, events)) => {
                watch_bye(events, counters.clone(), record.clone());
                client
            }
            Err(e) => {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                counters.note(format!("attacker connect: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let mut set = JoinSet::new();
        for _ in 0..spec.in_flight.max(1) {
            set.spawn(guesser(
                client.clone(),
                spec.room.clone(),
                counters.clone(),
                record.clone(),
                stop.clone(),
            ));
        }
        let stopped = tokio::select! {
            _ = async { while set.join_next().await.is_some() {} } => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            client.close().await;
            while set.join_next().await.is_some() {}
            return;
        }
        // Every guesser ended: the connection is closed (or closing). Its bye may still be on
        // its way to the events. (Counted once known, so `closed` and `closes` agree.)
        let _ = tokio::time::timeout(BYE_WAIT, record.bye.notified()).await;
        let bye = record.bye_code.load(Ordering::Relaxed);
        if bye == 0 {
            counters.closed_without_bye.fetch_add(1, Ordering::Relaxed);
        }
        let wrong = record.wrong.load(Ordering::Relaxed);
        if bye == 4010 || (bye == 0 && wrong + 1 >= STRIKES) {
            counters.strike_outs.fetch_add(1, Ordering::Relaxed);
        }
        counters.closed.fetch_add(1, Ordering::Relaxed);
        let kind = match bye {
            0 => format!("{wrong} wrong, no bye"),
            code => format!("{wrong} wrong, bye {code}"),
        };
        *counters
            .closes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
        client.close().await;
    }
}

/// Runs a guess `spec` and reports.
pub async fn run(spec: &LoadSpec, opts: &RunOptions) -> Result<RunReport, BoxError> {
    let target: Target = spec.target.parse()?;
    if !matches!(target.protocol, Protocol::RpcTcp | Protocol::RpcWs) {
        return Err("guess runs load the chat door (gotalk+tcp:// or gotalk+ws://)".into());
    }
    if spec.password.is_none() {
        return Err("guess runs need --password (the protected room's right password)".into());
    }
    let server_before = opts.server_pid.and_then(procfs::sample);
    let interval = Duration::from_secs_f64(1.0 / spec.rate.unwrap_or(1.0).max(1e-3));
    let n = spec.joins.max(1);
    let mut errors = Vec::new();
    let mut client = legit_client(&target, spec).await?;

    // A first join, not recorded: the first Argon2 check of the process allocates its memory.
    let warm = legit_phase(&target, spec, &mut client, 1, interval, None, &mut errors).await;
    if warm.ok == 0 {
        return Err(format!("the first right-password join failed: {errors:?}").into());
    }
    tokio::time::sleep(interval).await;
    let unloaded = legit_phase(
        &target,
        spec,
        &mut client,
        n,
        interval,
        opts.server_pid,
        &mut errors,
    )
    .await;

    // The attack, on a runtime of its own: the attackers' connections and their thousands of
    // guess tasks do not share a scheduler with the legitimate user's (they share the
    // machine's cores, as every process of the bench does).
    let attack_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("guess-attacker")
        .enable_all()
        .build()?;
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let attack_started = Instant::now();
    let mut attackers = Vec::new();
    let (t, s) = (Arc::new(target.clone()), Arc::new(spec.clone()));
    for slot in 0..spec.attackers.max(1) {
        attackers.push(attack_rt.spawn(attacker(
            slot,
            t.clone(),
            s.clone(),
            counters.clone(),
            stop_rx.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(spec.warmup.max(0.0))).await;
    let attacked = legit_phase(
        &target,
        spec,
        &mut client,
        n,
        interval,
        opts.server_pid,
        &mut errors,
    )
    .await;
    let seconds = attack_started.elapsed().as_secs_f64();
    let attack = counters.figures(seconds);
    let _ = stop_tx.send(true);
    let stopped = tokio::time::timeout(STOP_WAIT, async {
        for a in &mut attackers {
            let _ = a.await;
        }
    })
    .await;
    if stopped.is_err() {
        errors.push(format!("the attackers did not stop within {STOP_WAIT:?}"));
    }
    attack_rt.shutdown_background();
    client.close().await;
    let server_end = opts.server_pid.and_then(procfs::sample);

    if attack.joined > 0 {
        errors.push(format!("{} wrong passwords joined the room", attack.joined));
    }
    for e in counters
        .first_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        errors.push(e.clone());
    }
    let failed: u64 = unloaded.failed.values().sum::<u64>() + attacked.failed.values().sum::<u64>();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let figures = GuessFigures {
        joins: n,
        join_interval_s: interval.as_secs_f64(),
        attackers: spec.attackers.max(1),
        attacker_in_flight: spec.in_flight.max(1),
        ratio_p50: ratio(attacked.latency_us.p50, unloaded.latency_us.p50),
        ratio_p99: ratio(attacked.latency_us.p99, unloaded.latency_us.p99),
        unloaded,
        attacked,
        attack,
    };
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
    let first_errors: Vec<String> = errors.iter().take(5).cloned().collect();
    Ok(RunReport {
        meta: opts.meta.clone(),
        spec: spec.clone(),
        connected: 1,
        msgs_per_sec: 0.0,
        messages: figures.unloaded.ok + figures.attacked.ok,
        latency_us: figures.attacked.latency_us,
        errors: failed + figures.attack.joined,
        first_errors,
        server,
        hub: None,
        guess: Some(figures),
        recover: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strike_outs_and_answers() {
        let mut a = AttackFigures {
            wrong_password: 5,
            busy: 7,
            guessing_too_fast: 3,
            ..AttackFigures::default()
        };
        a.strike_outs = 2;
        a.other.insert("closed".into(), 1);
        assert_eq!(a.checked(), 7);
        assert_eq!(a.answered(), 16);
    }
}
