//! `chinwag-load`: load generator for chinwag's servers and their baselines.
//!
//! ```text
//! chinwag-load run --target ws://127.0.0.1:9001/ --conns 100 --size 20 [--in-flight K | --rate R]
//!                  [--warmup 2] [--duration 10] [--idle] [--stalled M] [--procs P]
//!                  [--source-ips N] [--server-pid PID].. [--meta k=v].. [--json FILE]
//!                  [--mode echo|fanout|send|replay|idle-auth|guess|recover] [--secret S] [--room R]
//!                  [--rooms K] [--messages N] [--joins N] [--attackers A] [--password P]
//!                  [--client-engine fastwebsockets|tungstenite|yawc] [--deflate]
//!                  [--payload bytes|chat] [--wire-bytes]
//! # the hub scenarios (crates/chinwag-load/src/hub.rs), e.g.:
//! chinwag-load run --mode fanout --target 'ws://127.0.0.1:9400/ws?room=bench' --conns 1000 \
//!                  --size 100 --rate 50 --procs 2 --secret S
//! # permessage-deflate (issue 20): 1 KiB chat-like text to 1 000 members, yawc clients offering
//! # deflate, the bytes the server's sockets sent counted per delivery:
//! chinwag-load run --mode fanout --target 'ws://127.0.0.1:9400/ws?room=bench' --conns 1000 \
//!                  --size 1024 --payload chat --rate 20 --procs 2 --client-engine yawc \
//!                  --deflate --wire-bytes --secret S
//! # a right-password join, alone and while one connection guesses (200 guesses outstanding):
//! chinwag-load run --mode guess --target gotalk+tcp://127.0.0.1:9401 --room guarded \
//!                  --password P --joins 50 --attackers 1 --in-flight 200 --warmup 2 --secret S
//! # recover 1 000 missed publications (history on), 30 timed rounds, against a plain join:
//! chinwag-load run --mode recover --target gotalk+ws://127.0.0.1:9400/gotalk/ --room recover \
//!                  --messages 1000 --joins 30 --size 100 --in-flight 64 --secret S
//! # direct messages across 3 cluster nodes (each user on one node, every send to another
//! # node), the nodes' CPU summed, the Redis commands of the window counted with MONITOR:
//! chinwag-load run --mode send --target gotalk+ws://127.0.0.1:9401/gotalk/ \
//!                  --target gotalk+ws://127.0.0.1:9402/gotalk/ \
//!                  --target gotalk+ws://127.0.0.1:9403/gotalk/ --conns 300 --size 100 \
//!                  --rate 1000 --secret S --server-pid P1 --server-pid P2 --server-pid P3 \
//!                  --redis redis://127.0.0.1:6390/ --redis-pid P4 [--redis-monitor]
//! chinwag-load report DIR      # DIR/runs/*.json -> DIR/report.md, report.json, *.svg
//! # a fixed count, one at a time (instruction counts, `cargo xtask bench --instructions`):
//! chinwag-load count --mode echo|fanout|send --target URL --messages N [--size S]
//!                    [--members M] [--client-engine E] [--secret S]
//! ```
//!
//! `run` prints its [`chinwag_load::RunReport`] as JSON (or writes it to `--json`). A recover
//! run whose recoveries were not all exact writes its report, then exits with an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chinwag_load::count::{self, CountSpec};
use chinwag_load::hub::Mode;
use chinwag_load::load::{self, LoadSpec, RunOptions, WorkerSpec};
use chinwag_load::payload::Payload;
use chinwag_load::{BoxError, ClientEngine, report};
use clap::{Parser, Subcommand};

/// Load generator for chinwag's servers and their baselines.
#[derive(Debug, Parser)]
#[command(name = "chinwag-load")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs load against one server and prints the result as JSON.
    Run(Box<RunArgs>),
    /// Sends a fixed number of messages, one at a time, and prints what was delivered as JSON
    /// (`src/count.rs`).
    Count(CountArgs),
    /// Writes report.md, report.json and SVG charts from DIR/runs/*.json.
    Report {
        /// The bench directory (target/bench/<timestamp>).
        dir: PathBuf,
    },
    /// Internal: one worker process of a multi-process run.
    #[command(hide = true)]
    Worker {
        /// The worker's share, as JSON.
        #[arg(long)]
        spec: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Server URL: ws://IP:PORT/path or tcp://IP:PORT (loopback only). Send and fan-out runs
    /// may give it once per cluster node: users or members are spread over the nodes (and every
    /// send crosses nodes).
    #[arg(long, required = true)]
    target: Vec<String>,
    /// WebSocket client engine.
    #[arg(long, value_enum, default_value = "fastwebsockets")]
    client_engine: ClientEngine,
    /// Connections.
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Payload bytes per message (at least 8: the send timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Closed loop: messages in flight per connection (replay: sends in flight; guess: guesses
    /// each attacker keeps outstanding; recover: publishes in flight while filling a round).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Open loop: target total rate in messages/s (instead of closed loop); guess: the
    /// legitimate user's joins per second (default 1, its guess rate).
    #[arg(long)]
    rate: Option<f64>,
    /// Warm-up seconds (guess: how long the attack runs before the timed joins).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Idle connections: send nothing, answer pings; report server RSS per connection.
    #[arg(long)]
    idle: bool,
    /// Extra connections that keep sending and never read (slow consumers).
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Payload bytes of the stalled connections (default: --size).
    #[arg(long)]
    stalled_size: Option<usize>,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// Spread connections over 127.0.0.1 .. 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    source_ips: usize,
    /// Concurrent connection handshakes per worker.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The server's pid (CPU per message and RSS from /proc); hub runs on a cluster: once per
    /// node, and CPU and RSS are summed.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Hub runs: count the commands of this Redis (`redis://IP:PORT/`, loopback) in the
    /// measured window (INFO at its bounds).
    #[arg(long)]
    redis: Option<String>,
    /// With --redis: also count them with MONITOR (the commands clients sent apart from those
    /// scripts ran; costs Redis CPU).
    #[arg(long, requires = "redis")]
    redis_monitor: bool,
    /// That Redis's pid (its CPU time in the window).
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Labels copied into the JSON (key=value; repeatable).
    #[arg(long = "meta", value_parser = parse_kv)]
    meta: Vec<(String, String)>,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// What to measure: echo, or a hub scenario (fanout, send, replay, idle-auth, guess,
    /// recover).
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
    /// Hub modes: the HS256 secret to sign the connections' tokens with.
    #[arg(long)]
    secret: Option<String>,
    /// Hub modes: the room (a room-door URL's `room=` wins).
    #[arg(long, default_value = "bench")]
    room: String,
    /// Hub idle runs: spread the connections over this many rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Replay: messages queued for the offline user; recover: publications missed per round.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Guess: the legitimate user's timed joins per phase (unloaded, attacked); recover: timed
    /// rounds (each a recovery and a plain join).
    #[arg(long, default_value_t = 50)]
    joins: usize,
    /// Guess: attacker connections at once, all from one source address (127.0.0.2).
    #[arg(long, default_value_t = 1)]
    attackers: usize,
    /// Guess: the protected room's right password (the room is --room).
    #[arg(long)]
    password: Option<String>,
    /// Room-door runs (fanout, idle-auth): offer permessage-deflate (no context takeover either
    /// way); needs --client-engine yawc.
    #[arg(long)]
    deflate: bool,
    /// Fan-out: what a publish carries: bytes (binary, send time and sequence number then 0x5a
    /// bytes) or chat (JSON text with words from a vocabulary, different in every message).
    #[arg(long, value_enum, default_value = "bytes")]
    payload: Payload,
    /// Fan-out: count the bytes the server's TCP sockets sent in the measured window (with
    /// `ss`, iproute2), reported per delivery.
    #[arg(long)]
    wire_bytes: bool,
}

#[derive(Debug, clap::Args)]
struct CountArgs {
    /// echo (any echo target), fanout (a room door) or send (the chat door).
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
    /// Server URL (loopback only).
    #[arg(long)]
    target: String,
    /// Echoes, publishes or direct messages.
    #[arg(long)]
    messages: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Fan-out: members of the room, the publisher included (default 1000); send:
    /// sender/recipient pairs sending at once (default 1).
    #[arg(long)]
    members: Option<usize>,
    /// WebSocket client engine.
    #[arg(long, value_enum, default_value = "fastwebsockets")]
    client_engine: ClientEngine,
    /// The HS256 secret to sign tokens with (the chat door needs one).
    #[arg(long)]
    secret: Option<String>,
    /// Fan-out: spread the members over 127.0.0.1 .. 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    source_ips: usize,
    /// Fan-out: concurrent handshakes.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Run(a) => rt.block_on(run(*a)),
        Cmd::Count(a) => {
            let spec = CountSpec {
                mode: a.mode,
                target: a.target,
                messages: a.messages,
                size: a.size,
                members: a
                    .members
                    .unwrap_or(if a.mode == Mode::Send { 1 } else { 1000 }),
                client_engine: a.client_engine,
                secret: a.secret,
                source_ips: a.source_ips,
                connect_concurrency: a.connect_concurrency,
            };
            let report = rt.block_on(count::run(&spec))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Cmd::Report { dir } => report::write_report(&dir),
        Cmd::Worker { spec } => {
            let ws: WorkerSpec = serde_json::from_str(&spec)?;
            rt.block_on(load::worker_main(ws))
        }
    }
}

async fn run(a: RunArgs) -> Result<(), BoxError> {
    let mut targets = a.target.into_iter();
    let target = targets.next().ok_or("--target is required")?;
    let targets: Vec<String> = targets.collect();
    if !targets.is_empty() && !matches!(a.mode, Mode::Send | Mode::Fanout) {
        return Err("several --target URLs (cluster nodes) are for send and fan-out runs".into());
    }
    let mut pids = a.server_pid.into_iter();
    let spec = LoadSpec {
        target,
        targets,
        client_engine: a.client_engine,
        conns: a.conns,
        size: a.size,
        in_flight: a.in_flight,
        rate: a.rate,
        warmup: a.warmup,
        duration: a.duration,
        idle: a.idle,
        stalled: a.stalled,
        stalled_size: a.stalled_size,
        source_ips: a.source_ips,
        procs: a.procs,
        connect_concurrency: a.connect_concurrency,
        mode: a.mode,
        secret: a.secret,
        room: a.room,
        rooms: a.rooms,
        messages: a.messages,
        joins: a.joins,
        attackers: a.attackers,
        password: a.password,
        deflate: a.deflate,
        payload: a.payload,
        wire_bytes: a.wire_bytes,
    };
    let opts = RunOptions {
        server_pid: pids.next(),
        other_server_pids: pids.collect(),
        redis: a.redis,
        redis_pid: a.redis_pid,
        redis_monitor: a.redis_monitor,
        meta: a.meta.into_iter().collect::<BTreeMap<_, _>>(),
        progress: !a.no_progress,
        worker_exe: None,
    };
    let report = load::run(&spec, &opts).await?;
    let json = serde_json::to_string_pretty(&report)?;
    match a.json {
        Some(path) => std::fs::write(&path, json + "\n")?,
        None => println!("{json}"),
    }
    if report.errors > 0 {
        eprintln!(
            "chinwag-load: {} errors, first: {:?}",
            report.errors, report.first_errors
        );
        // A recovery that was not exact is a failure of the run, not a figure.
        if report.spec.mode == Mode::Recover {
            return Err(format!("{} rounds did not recover exactly", report.errors).into());
        }
    }
    Ok(())
}
