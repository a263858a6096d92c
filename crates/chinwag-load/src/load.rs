//! One load run: connect, warm up, measure, report.
//!
//! A run is described by a [`LoadSpec`]. [`run`] samples the server (when its pid is known),
//! splits the connections over `procs` workers (this process when `procs == 1`, otherwise
//! child processes running `chinwag-load worker`), waits until every worker is connected, says
//! "go", samples the server's CPU time at the start and the end of the measured window, and
//! merges the workers' histograms and counters into a [`RunReport`].
//!
//! Every payload starts with its send time (nanoseconds since "go", little endian), so latency
//! is computed from the echo alone. In open-loop mode a message sent late (beyond the 2 ms
//! slack of tokio's timers) carries its *scheduled* time, so a server that falls behind shows
//! its queueing delay (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::BoxError;
use crate::guess::GuessFigures;
use crate::hub::{HubFigures, Mode};
use crate::payload::Payload;
use crate::procfs::{self, ProcSample};
use crate::proto::{self, ClientEngine, Reader, Target, Writer};
use crate::recover::RecoverFigures;
use crate::workers;

/// Open loop: lateness of a send that is blamed on tokio's 1 ms timer granularity, not on
/// the server.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Smallest payload: the 8-byte send timestamp.
pub const MIN_PAYLOAD: usize = 8;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSpec {
    /// The server (a loopback `ws://` or `tcp://` URL).
    pub target: String,
    /// Send runs on a cluster: the other nodes' URLs (the users are spread over `target` and
    /// these, user `i` on node `i % nodes`, and every send goes to a user on another node).
    #[serde(default)]
    pub targets: Vec<String>,
    /// The WebSocket client used for `ws://` targets.
    pub client_engine: ClientEngine,
    /// Connections that send and read echoes.
    pub conns: usize,
    /// Payload size in bytes (at least [`MIN_PAYLOAD`]).
    pub size: usize,
    /// Closed loop: messages in flight per connection.
    pub in_flight: usize,
    /// Open loop: total target rate in messages per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// Seconds of warm-up (traffic, not measured).
    pub warmup: f64,
    /// Seconds measured.
    pub duration: f64,
    /// Idle mode: connections send nothing; they only answer the server's pings. The report
    /// then gives server RSS per connection and CPU per connection-second.
    pub idle: bool,
    /// Extra connections that send continuously and never read (the slow-consumer scenario).
    /// They are not measured.
    pub stalled: usize,
    /// Payload size of the stalled connections (default: `size`); large payloads fill the
    /// socket buffers quickly, so the stall starts during the warm-up.
    pub stalled_size: Option<usize>,
    /// Spread connections over `127.0.0.1` .. `127.0.0.n`.
    pub source_ips: usize,
    /// Worker processes (1: this process).
    pub procs: usize,
    /// Connections being opened at once, per worker.
    pub connect_concurrency: usize,
    /// What is measured: echo (the default), or one of the hub scenarios ([`crate::hub`]).
    #[serde(default)]
    pub mode: Mode,
    /// Hub modes: the HS256 secret the connections' tokens are signed with (none: no token).
    #[serde(default)]
    pub secret: Option<String>,
    /// Hub modes: the room (fan-out and idle runs; a room-door URL's `room=` wins).
    #[serde(default = "default_room")]
    pub room: String,
    /// Hub idle runs: connections are spread over this many rooms (`ROOM-0` ..).
    #[serde(default = "one")]
    pub rooms: usize,
    /// Replay: messages queued for the offline user.
    #[serde(default = "ten_thousand")]
    pub messages: usize,
    /// Guess: the legitimate user's timed joins per phase.
    #[serde(default = "fifty")]
    pub joins: usize,
    /// Guess: attacker connections at once (all from one source address).
    #[serde(default = "one")]
    pub attackers: usize,
    /// Guess: the protected room's right password.
    #[serde(default)]
    pub password: Option<String>,
    /// Room-door runs (fan-out, idle): the clients offer permessage-deflate with no context
    /// takeover either way ([`crate::proto::client_ws_config_with`]); needs the yawc client.
    #[serde(default)]
    pub deflate: bool,
    /// Fan-out: what a publish carries ([`Payload`]: bytes, or chat-like JSON text).
    #[serde(default)]
    pub payload: Payload,
    /// Fan-out: count the bytes the server's TCP sockets sent in the measured window
    /// ([`crate::wire`], from `ss`), reported per delivery.
    #[serde(default)]
    pub wire_bytes: bool,
}

fn default_room() -> String {
    "bench".into()
}

fn one() -> usize {
    1
}

fn ten_thousand() -> usize {
    10_000
}

fn fifty() -> usize {
    50
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            target: String::new(),
            targets: Vec::new(),
            client_engine: ClientEngine::default(),
            conns: 10,
            size: 64,
            in_flight: 1,
            rate: None,
            warmup: 1.0,
            duration: 5.0,
            idle: false,
            stalled: 0,
            stalled_size: None,
            source_ips: 4,
            procs: 1,
            connect_concurrency: 64,
            mode: Mode::Echo,
            secret: None,
            room: default_room(),
            rooms: 1,
            messages: 10_000,
            joins: 50,
            attackers: 1,
            password: None,
            deflate: false,
            payload: Payload::Bytes,
            wire_bytes: false,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Samples.
    pub samples: u64,
}

/// What the server process used, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// The server's pid.
    pub pid: u32,
    /// CPU time during the measured window, in milliseconds.
    pub cpu_ms: f64,
    /// CPU time per echoed message in the measured window, in microseconds.
    pub cpu_us_per_msg: Option<f64>,
    /// RSS before the generator connected, in KiB.
    pub rss_before_kib: u64,
    /// RSS at the end of the measured window, in KiB.
    pub rss_end_kib: u64,
    /// `(rss_end - rss_before) / connections`, in KiB (idle runs).
    pub rss_per_conn_kib: Option<f64>,
    /// CPU per connection-second in the measured window, in microseconds (idle runs).
    pub cpu_us_per_conn_sec: Option<f64>,
    /// Most OS threads the server had at once, from before the generator connected to the
    /// end (sampled every 50 ms, summed over a cluster's nodes; hub runs).
    #[serde(default)]
    pub threads_peak: Option<u64>,
}

/// The result of one run (what `chinwag-load run` prints as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Free-form labels given by the caller (`--meta k=v`): scenario, server, baseline, ...
    pub meta: BTreeMap<String, String>,
    /// What was run.
    pub spec: LoadSpec,
    /// Connections that were established (measured ones and stalled ones).
    pub connected: usize,
    /// Echoes received in the measured window, per second.
    pub msgs_per_sec: f64,
    /// Echoes received in the measured window.
    pub messages: u64,
    /// Latency of messages sent and echoed inside the measured window.
    pub latency_us: Latency,
    /// Failed connects, I/O errors, early closes and wrong echoes during the run.
    pub errors: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
    /// Server usage, when its pid was given.
    pub server: Option<ServerUsage>,
    /// The hub scenarios' own figures ([`crate::hub`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubFigures>,
    /// The password-guessing scenario's figures ([`crate::guess`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guess: Option<GuessFigures>,
    /// The recovery scenario's figures ([`crate::recover`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<RecoverFigures>,
}

/// What one worker sends back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Connections established.
    pub connected: usize,
    /// Echoes received in the measured window.
    pub messages: u64,
    /// Latency histogram (nanoseconds) as `(value, count)` pairs.
    pub histogram: Vec<(u64, u64)>,
    /// Errors.
    pub errors: u64,
    /// The first few error messages.
    pub first_errors: Vec<String>,
}

/// A worker's share of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The whole run.
    pub spec: LoadSpec,
    /// Index of this worker's first connection among all connections (for source addresses).
    pub first: usize,
    /// Measured connections of this worker.
    pub conns: usize,
    /// Stalled connections of this worker.
    pub stalled: usize,
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// State shared by one worker's connection tasks.
struct Shared {
    base: Instant,
    start_ns: u64,
    end_ns: u64,
    size: usize,
    hist: Mutex<Histogram<u64>>,
    messages: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < 5 {
            first.push(what.to_string());
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn end(&self) -> Instant {
        self.base + Duration::from_nanos(self.end_ns)
    }

    fn payload(&self, template: &Bytes, ts_ns: u64) -> Bytes {
        let mut b = BytesMut::from(&template[..]);
        b[..8].copy_from_slice(&ts_ns.to_le_bytes());
        b.freeze()
    }

    fn record(&self, samples: &mut Vec<u64>) {
        if samples.is_empty() {
            return;
        }
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        for &s in samples.iter() {
            h.saturating_record(s.max(1));
        }
        samples.clear();
    }
}

/// A worker whose connections are open, waiting for "go".
pub struct Prepared {
    ws: WorkerSpec,
    conns: Vec<(Reader, Writer)>,
    stalled: Vec<(Reader, Writer)>,
    errors: Vec<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("conns", &self.conns.len())
            .field("stalled", &self.stalled.len())
            .field("errors", &self.errors.len())
            .finish()
    }
}

impl Prepared {
    /// Connections established.
    pub fn connected(&self) -> usize {
        self.conns.len() + self.stalled.len()
    }
}

/// How often one connection is tried again after a `503`.
const CONNECT_RETRIES: u32 = 20;

/// Opens a worker's connections (at most `connect_concurrency` handshakes at once).
pub async fn prepare(ws: WorkerSpec) -> Result<Prepared, BoxError> {
    let target: Target = ws.spec.target.parse()?;
    let target = Arc::new(target);
    let limit = Arc::new(Semaphore::new(ws.spec.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    let total = ws.conns + ws.stalled;
    for i in 0..total {
        let target = target.clone();
        let limit = limit.clone();
        let source = proto::source_addr(&target, ws.first + i, ws.spec.source_ips);
        let engine = ws.spec.client_engine;
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            // A server that is busy admitting answers 503 (with Retry-After): like a real
            // client, try again after a growing pause instead of giving up.
            let mut pause = Duration::from_millis(10);
            let mut attempt = 0;
            loop {
                let r = proto::connect(&target, engine, source).await;
                match &r {
                    Err(e) if attempt < CONNECT_RETRIES && e.to_string().contains("503") => {
                        attempt += 1;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    _ => return (i, r),
                }
            }
        });
    }
    let mut conns = Vec::with_capacity(ws.conns);
    let mut stalled = Vec::with_capacity(ws.stalled);
    let mut errors = Vec::new();
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, Ok(c))) if i < ws.conns => conns.push(c),
            Ok((_, Ok(c))) => stalled.push(c),
            Ok((_, Err(e))) => errors.push(format!("connect: {e}")),
            Err(e) => errors.push(format!("connect task: {e}")),
        }
    }
    Ok(Prepared {
        ws,
        conns,
        stalled,
        errors,
    })
}

/// Runs a prepared worker from "go" (now) to the end of the measured window.
pub async fn run_prepared(p: Prepared) -> WorkerResult {
    let spec = &p.ws.spec;
    let connected = p.connected();
    let start_ns = (spec.warmup * 1e9) as u64;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        start_ns,
        end_ns: start_ns + (spec.duration * 1e9) as u64,
        size: spec.size.max(MIN_PAYLOAD),
        hist: Mutex::new(new_histogram()),
        messages: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
    });
    for e in &p.errors {
        shared.error(e);
    }
    let template = Bytes::from(vec![0x5a; shared.size]);
    let mut set = JoinSet::new();
    let n = p.conns.len().max(1);
    for (i, (reader, writer)) in p.conns.into_iter().enumerate() {
        if spec.idle {
            set.spawn(idle_conn(shared.clone(), reader, writer));
            continue;
        }
        let permits = Arc::new(Semaphore::new(spec.in_flight.max(1)));
        let closed = spec.rate.is_none();
        set.spawn(read_echoes(
            shared.clone(),
            reader,
            closed.then(|| permits.clone()),
        ));
        match spec.rate {
            None => set.spawn(closed_writer(
                shared.clone(),
                writer,
                permits,
                template.clone(),
            )),
            Some(rate) => {
                let interval = Duration::from_secs_f64(n as f64 / rate.max(1e-3));
                let offset = interval.mul_f64(i as f64 / n as f64);
                set.spawn(open_writer(
                    shared.clone(),
                    writer,
                    interval,
                    offset,
                    template.clone(),
                ))
            }
        };
    }
    let stalled_template = Bytes::from(vec![
        0x5a;
        spec.stalled_size
            .unwrap_or(shared.size)
            .max(MIN_PAYLOAD)
    ]);
    for (reader, writer) in p.stalled {
        set.spawn(stalled_conn(
            shared.clone(),
            reader,
            writer,
            stalled_template.clone(),
        ));
    }
    // Every task stops by itself at the end of the window (they use `timeout_at(end)`).
    while set.join_next().await.is_some() {}
    let hist = shared.hist.lock().unwrap_or_else(|p| p.into_inner());
    let first_errors = shared
        .first_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    WorkerResult {
        connected,
        messages: shared.messages.load(Ordering::Relaxed),
        histogram: hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
        errors: shared.errors.load(Ordering::Relaxed),
        first_errors,
    }
}

async fn read_echoes(shared: Arc<Shared>, mut reader: Reader, permits: Option<Arc<Semaphore>>) {
    let end = shared.end();
    let mut samples = Vec::with_capacity(256);
    loop {
        let got = match tokio::time::timeout_at(end, reader.read()).await {
            Err(_) => break,
            Ok(got) => got,
        };
        let now = shared.now_ns();
        match got {
            Ok(Some(b)) => {
                if b.len() != shared.size {
                    shared.error(format!("echo of {} bytes, sent {}", b.len(), shared.size));
                    break;
                }
                let ts = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                if now >= shared.start_ns && now < shared.end_ns {
                    shared.messages.fetch_add(1, Ordering::Relaxed);
                    if ts >= shared.start_ns {
                        samples.push(now.saturating_sub(ts));
                        if samples.len() >= 256 {
                            shared.record(&mut samples);
                        }
                    }
                }
                if let Some(p) = &permits {
                    p.add_permits(1);
                }
            }
            Ok(None) => {
                if now < shared.end_ns {
                    shared.error("server closed the connection");
                }
                break;
            }
            Err(e) => {
                if now < shared.end_ns {
                    shared.error(format!("read: {e}"));
                }
                break;
            }
        }
    }
    shared.record(&mut samples);
}

async fn closed_writer(
    shared: Arc<Shared>,
    mut writer: Writer,
    permits: Arc<Semaphore>,
    template: Bytes,
) {
    let end = shared.end();
    let res = tokio::time::timeout_at(end, async {
        loop {
            permits.acquire().await?.forget();
            writer
                .feed(shared.payload(&template, shared.now_ns()))
                .await?;
            // Send everything the window allows in one write.
            while let Ok(p) = permits.try_acquire() {
                p.forget();
                writer
                    .feed(shared.payload(&template, shared.now_ns()))
                    .await?;
            }
            writer.flush().await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    })
    .await;
    if let Ok(Err(e)) = res {
        shared.error(format!("write: {e}"));
    }
}

async fn open_writer(
    shared: Arc<Shared>,
    mut writer: Writer,
    interval: Duration,
    offset: Duration,
    template: Bytes,
) {
    let end = shared.end();
    let res = tokio::time::timeout_at(end, async {
        let mut next = offset;
        loop {
            tokio::time::sleep_until(shared.base + next).await;
            // Everything due by now goes in one write. A message sent more than TIMER_SLACK
            // after its slot is charged from its slot (the server or the generator fell behind:
            // no coordinated omission); within the slack, from now (tokio timers fire up to a
            // millisecond late, which is not the server's doing).
            let now = shared.base.elapsed();
            while next <= now {
                let ts = if now - next > TIMER_SLACK { next } else { now };
                let ts = ts.as_nanos() as u64;
                writer.feed(shared.payload(&template, ts)).await?;
                next += interval;
            }
            writer.flush().await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    })
    .await;
    if let Ok(Err(e)) = res {
        shared.error(format!("write: {e}"));
    }
}

/// Sends without ever reading: the server's writes to it back up, then its reads, then ours.
async fn stalled_conn(shared: Arc<Shared>, _reader: Reader, mut writer: Writer, template: Bytes) {
    let end = shared.end();
    let res = tokio::time::timeout_at(end, async {
        loop {
            writer
                .feed(shared.payload(&template, shared.now_ns()))
                .await?;
            writer.flush().await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    })
    .await;
    // A server that drops a consumer that stopped reading is within its rights: not an error.
    drop(res);
}

/// Holds the connection open, reading (which answers the server's pings) until the end.
async fn idle_conn(shared: Arc<Shared>, mut reader: Reader, _writer: Writer) {
    let end = shared.end();
    loop {
        match tokio::time::timeout_at(end, reader.read()).await {
            Err(_) => break,
            Ok(Ok(Some(_))) => shared.error("unexpected data on an idle connection"),
            Ok(Ok(None)) => {
                shared.error("server closed an idle connection");
                break;
            }
            Ok(Err(e)) => {
                shared.error(format!("idle read: {e}"));
                break;
            }
        }
    }
}

pub(crate) fn split_shares(spec: &LoadSpec) -> Vec<WorkerSpec> {
    let procs = spec.procs.max(1);
    let mut shares = Vec::with_capacity(procs);
    let mut first = 0;
    for w in 0..procs {
        let conns = spec.conns / procs + usize::from(w < spec.conns % procs);
        let stalled = spec.stalled / procs + usize::from(w < spec.stalled % procs);
        shares.push(WorkerSpec {
            spec: spec.clone(),
            first,
            conns,
            stalled,
        });
        first += conns + stalled;
    }
    shares
}

/// Options of [`run`] that are not part of the spec.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The server's pid, for CPU and RSS figures.
    pub server_pid: Option<u32>,
    /// Hub runs on a cluster: the other nodes' pids (CPU and RSS are summed over all nodes).
    pub other_server_pids: Vec<u32>,
    /// Hub runs: a Redis whose commands in the measured window are counted (`INFO` at the
    /// window's bounds, [`crate::redis_monitor`]), as `redis://IP:PORT/`.
    pub redis: Option<String>,
    /// That Redis's pid (its CPU time in the window).
    pub redis_pid: Option<u32>,
    /// Also count that Redis's commands with `MONITOR` (which costs Redis CPU).
    pub redis_monitor: bool,
    /// Labels copied into the report.
    pub meta: BTreeMap<String, String>,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// The executable to start workers from (default: this executable).
    pub worker_exe: Option<std::path::PathBuf>,
}

/// Runs `spec` and reports.
pub async fn run(spec: &LoadSpec, opts: &RunOptions) -> Result<RunReport, BoxError> {
    if spec.mode != Mode::Echo {
        return crate::hub::run(spec, opts).await;
    }
    let _: Target = spec.target.parse()?;
    if spec.deflate || spec.payload != Payload::Bytes || spec.wire_bytes {
        return Err(
            "deflate, chat payloads and wire bytes are for fan-out runs (--mode fanout; \
                    deflate also idle-auth)"
                .into(),
        );
    }
    if spec.size < MIN_PAYLOAD {
        return Err(format!("payload size must be at least {MIN_PAYLOAD} bytes").into());
    }
    let sample = |pid: Option<u32>| pid.and_then(procfs::sample);
    let before = sample(opts.server_pid);

    let workers = workers::start(split_shares(spec), opts, prepare, Prepared::connected).await?;
    let (connected, mut children) = (workers.connected, workers.children);

    // Go.
    let go = Instant::now();
    let local = workers.local.map(|p| tokio::spawn(run_prepared(p)));
    children.go("go")?;
    let total = spec.warmup + spec.duration;
    let bar = progress_bar(opts, total);
    let ticker = bar.clone().map(|bar| {
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(200));
            loop {
                iv.tick().await;
                bar.set_position(go.elapsed().as_millis() as u64);
            }
        })
    });
    tokio::time::sleep_until(go + Duration::from_secs_f64(spec.warmup)).await;
    let at_start = sample(opts.server_pid);
    tokio::time::sleep_until(go + Duration::from_secs_f64(total)).await;
    let at_end = sample(opts.server_pid);
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let mut results = Vec::new();
    if let Some(h) = local {
        results.push(h.await?);
    }
    results.extend(children.results::<WorkerResult>()?);
    Ok(merge(
        spec, opts, connected, results, before, at_start, at_end,
    ))
}

/// The percentiles of a histogram of nanoseconds, in µs.
pub(crate) fn latency(hist: &Histogram<u64>) -> Latency {
    if hist.is_empty() {
        return Latency::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Latency {
        p50: us(hist.value_at_quantile(0.50)),
        p90: us(hist.value_at_quantile(0.90)),
        p99: us(hist.value_at_quantile(0.99)),
        p999: us(hist.value_at_quantile(0.999)),
        max: us(hist.max()),
        mean: hist.mean() / 1000.0,
        samples: hist.len(),
    }
}

fn progress_bar(opts: &RunOptions, total_secs: f64) -> Option<indicatif::ProgressBar> {
    if !opts.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new((total_secs * 1000.0) as u64);
    let style =
        indicatif::ProgressStyle::with_template("{prefix:40} [{bar:30}] {elapsed:>3} / {msg}")
            .ok()?
            .progress_chars("=> ");
    bar.set_style(style);
    let label = opts
        .meta
        .get("label")
        .cloned()
        .unwrap_or_else(|| "load".into());
    bar.set_prefix(label);
    bar.set_message(format!("{total_secs:.0}s"));
    Some(bar)
}

fn merge(
    spec: &LoadSpec,
    opts: &RunOptions,
    connected: usize,
    results: Vec<WorkerResult>,
    before: Option<ProcSample>,
    at_start: Option<ProcSample>,
    at_end: Option<ProcSample>,
) -> RunReport {
    let mut hist = new_histogram();
    let mut messages = 0;
    let mut errors = 0;
    let mut first_errors = Vec::new();
    for r in results {
        for (v, c) in r.histogram {
            let _ = hist.record_n(v.max(1), c);
        }
        messages += r.messages;
        errors += r.errors;
        for e in r.first_errors {
            if first_errors.len() < 5 {
                first_errors.push(e);
            }
        }
    }
    let latency_us = latency(&hist);
    let server = match (opts.server_pid, before, at_start, at_end) {
        (Some(pid), Some(before), Some(a), Some(b)) => {
            let cpu_us = b.cpu_us.saturating_sub(a.cpu_us) as f64;
            let conns = connected.max(1) as f64;
            Some(ServerUsage {
                pid,
                cpu_ms: cpu_us / 1000.0,
                cpu_us_per_msg: (messages > 0).then(|| cpu_us / messages as f64),
                rss_before_kib: before.rss_kib,
                rss_end_kib: b.rss_kib,
                rss_per_conn_kib: spec
                    .idle
                    .then(|| (b.rss_kib as f64 - before.rss_kib as f64) / conns),
                cpu_us_per_conn_sec: spec
                    .idle
                    .then(|| cpu_us / (conns * spec.duration.max(1e-9))),
                threads_peak: None,
            })
        }
        _ => None,
    };
    RunReport {
        meta: opts.meta.clone(),
        spec: spec.clone(),
        connected,
        msgs_per_sec: messages as f64 / spec.duration.max(1e-9),
        messages,
        latency_us,
        errors,
        first_errors,
        server,
        hub: None,
        guess: None,
        recover: None,
    }
}

/// The `chinwag-load worker` side of the child protocol: connect, print `ready N`, wait for
/// `go` on stdin, run, print the [`WorkerResult`] as one JSON line.
pub async fn worker_main(ws: WorkerSpec) -> Result<(), BoxError> {
    if ws.spec.mode != Mode::Echo {
        return crate::hub::worker_main(ws).await;
    }
    let prepared = prepare(ws).await?;
    let line = workers::ready_then_go(prepared.connected()).await?;
    if line != "go" {
        return Err(format!("expected go, got {line:?}").into());
    }
    workers::print_result(&run_prepared(prepared).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let spec = LoadSpec {
            conns: 10,
            stalled: 1,
            procs: 3,
            ..LoadSpec::default()
        };
        let shares = split_shares(&spec);
        assert_eq!(shares.iter().map(|s| s.conns).sum::<usize>(), 10);
        assert_eq!(shares.iter().map(|s| s.stalled).sum::<usize>(), 1);
        assert_eq!(shares[1].first, 5);
        assert_eq!(shares[2].first, 8);
    }
}
