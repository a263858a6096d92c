//! `cargo xtask bench [--quick] [--scenario NAME].. [--peer NAME=URL].. [--reps N]
//! [--idle-conns N] [--micro] [--list]`, `cargo xtask bench --instructions [--quick]
//! [--scenario NAME].. [--list]`
//!
//! Builds the servers and the load generator in release mode, then runs each scenario: every
//! server is started as its own process on a free loopback port, loaded by `chinwag-load run`
//! (which reads the server's CPU time and RSS from `/proc/<pid>`), and killed. Repetitions are
//! interleaved (chinwag, baseline, chinwag, baseline, ...) so drift on this shared 2-core
//! machine hits both sides of a ratio alike. Every run's JSON goes to
//! `target/bench/<timestamp>/runs/`, then `chinwag-load report` writes `report.md`,
//! `report.json` and SVG charts beside it.
//!
//! Scenarios: WebSocket echo (each chinwag engine against its raw engine), TCP echo (against
//! raw tokio), gotalk RPC echo over TCP and WebSocket (`examples/rpc_echo`, when it exists;
//! otherwise the report says it is not available), idle connections (server RSS per
//! connection), and a slow consumer. `--peer NAME=URL` adds an external loopback server
//! (`ws://`, `tcp://`, `gotalk+tcp://`, `gotalk+ws://`) to the scenarios of its protocol, e.g.
//! the Go gotalk server.
//!
//! The hub scenarios (`hub-*`, issue 12) load `examples/hub` (JWT sign-in, the raw room door
//! and the chat door) with `chinwag-load run --mode fanout|send|replay|idle-auth`: fan-out to
//! rooms of 1 000 and 10 000 members on every engine against `baseline-fanout` (tokio +
//! fastwebsockets, no hub), send to random users, offline replay per queue backend (a private
//! redis-server for Redis), and idle signed-in connections. `hub-fanout-10k-low` is the
//! 10 000-member fan-out at 1 publish/s (latency when the machine is not saturated). The
//! fan-out, send and idle scenarios also load the ready server, `chinwag-server` (issue 13),
//! as users deploy it except for the limits that load from a few loopback addresses trips
//! ([`READY_SERVER_ARGS`]). A `--peer NAME=ws://…?room=R` joins the fan-out scenarios.
//!
//! `hub-history-fanout-1k` and `hub-history-recover-1k` (issue 17) keep room history in
//! memory, redb and Redis: the 1 000-member fan-out against the same hub without history, and
//! `chinwag-load run --mode recover` on the chat door (a member that missed 1 000 publications
//! joins with `since`; connect to the last of them, against a plain join in the same run),
//! whose ratios divide redb and Redis by memory.
//!
//! `hub-guess` and `hub-guess-20` (issue 16) run `chinwag-load run --mode guess` against
//! `examples/hub --protected-room`: a legitimate user's right-password joins, alone and while
//! one connection (`hub-guess`) or 20 connections from one address (`hub-guess-20`) guess the
//! room's password with 200 joins outstanding each; the hub's password limits are its defaults.
//!
//! `hub-deflate-fanout-1k` and `hub-deflate-idle` (issue 20; `--scenario hub-deflate`) load
//! `examples/hub --engine yawc` with yawc clients offering permessage-deflate (no context
//! takeover either way): a 1 KiB chat-like text fanned out to 1 000 members by the hub without
//! deflate (the baseline), with `--deflate --compress-once false` and with `--deflate`
//! (compress once), reporting the server's CPU and the bytes its sockets sent per delivery;
//! and idle signed-in connections on each engine and on yawc with deflate
//! ([`deflate_scenarios`]).
//!
//! `cluster-send` and `cluster-send-2k` (issue 18; `--scenario cluster`) run 1, 2 and 3
//! `chinwag-server` nodes on one private redis-server ([`cluster_server`]): `chinwag-load run
//! --mode send` with one `--target` per node signs user `i` in at node `i % N` and sends every
//! message to a user on another node; the nodes' CPU is summed and Redis's commands in the
//! measured window are counted (INFO; MONITOR in runs of their own). `cluster-fanout-3k` loads
//! one room of 3 000 members spread over the nodes' room doors (`--mode fanout`, member `i` at
//! node `i % N`). Ratios divide 2 and 3 nodes by 1 node in the same repetition.
//!
//! `--micro` runs the criterion micro-benchmarks instead (`cargo bench` on every package that
//! has a `[[bench]]`, or `-p chinwag-bench` when a top-level `benches/` package exists).
//!
//! `--instructions` counts instructions per message instead (issue 21; `xtask/src/instructions.rs`),
//! which machine load does not move: each server of RPC echo over TCP, WebSocket echo (every
//! engine, 20 B and 1 KiB), the 1 000-member fan-out and a direct message through each queue
//! backend, and its raw baseline, runs under `valgrind --tool=callgrind` (same binary and
//! arguments as here) while `chinwag-load count` (natively) sends it a fixed number of
//! messages one at a time; it is stopped with SIGTERM and its `totals:` read. Each server runs
//! with `N` and `2N` messages: `(I(2N) - I(N)) / (D(2N) - D(N))`, `D` the deliveries, removes
//! start-up and connection set-up. The table goes to
//! `target/bench/<timestamp>-instructions/instructions.md`.
//!
//! This file stays std-only like the rest of xtask: measurement, statistics and charts live in
//! `chinwag-load`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::server::{KillOnDrop, free_port, spawn_listening};
use crate::{cargo, root, run_cmd};

#[path = "instructions.rs"]
mod instructions;

/// A server under test.
#[derive(Clone)]
struct Server {
    name: String,
    /// `chinwag`, `baseline` or `peer`.
    role: &'static str,
    /// The server this one is divided by.
    baseline: Option<&'static str>,
    kind: ServerKind,
}

#[derive(Clone)]
enum ServerKind {
    /// A binary we start: program (relative to target/release), its arguments, the flag that
    /// takes the address we load (`--listen`), another address flag it needs (rpc_echo listens
    /// on TCP and WebSocket at once) and the URL scheme of the target.
    Local {
        bin: &'static str,
        args: Vec<String>,
        listen: &'static str,
        other: Option<&'static str>,
        scheme: &'static str,
    },
    /// An external server given with `--peer`.
    Peer { url: String },
    /// A server of the hub scenarios (or their raw baseline): started as `bin ARGS --listen
    /// ADDR [TCP-FLAG ADDR2]` without the `CHINWAG_*` variables of this environment (the
    /// ready server refuses unknown ones), and loaded at `target`, a URL template (`{listen}`,
    /// `{tcp}`). In `args`, `{redis}` is the URL of a private redis-server started for the run
    /// and `{tmp}` a fresh path in the run directory (removed afterwards). The servers are
    /// made by [`hub_server`] (`examples/hub`), [`ready_server`] (`chinwag-server`) and
    /// [`raw_fanout`].
    Hub(HubServer),
    /// A cluster of `nodes` ready servers (`chinwag-server`) on one private redis-server
    /// ([`cluster_server`]), each loaded at `target` (a URL template: `{listen}`).
    Cluster {
        nodes: usize,
        args: Vec<String>,
        target: &'static str,
    },
}

#[derive(Clone)]
struct HubServer {
    bin: &'static str,
    args: Vec<String>,
    target: &'static str,
    /// The flag that takes the address of the chat door over TCP, when the run loads it.
    tcp: Option<&'static str>,
}

impl HubServer {
    /// The server's arguments for one run: `{tmp}` is `file` with the extension `data`,
    /// `{redis}` the URL of a private redis-server started here (returned, to keep it running),
    /// then `--listen addr` and, when the run loads the chat door over TCP, its flag and `tcp`.
    fn run_args(
        &self,
        file: &Path,
        addr: SocketAddr,
        tcp: SocketAddr,
    ) -> Result<(Vec<String>, Option<KillOnDrop>), String> {
        let tmp = file.with_extension("data");
        let mut redis = None;
        let mut args = Vec::new();
        for a in &self.args {
            let mut a = a.replace("{tmp}", &tmp.to_string_lossy());
            if a.contains("{redis}") {
                let (running, url) = start_redis(&file.with_extension("redis"))?;
                a = a.replace("{redis}", &url);
                redis = Some(running);
            }
            args.push(a);
        }
        args.extend(["--listen".to_owned(), addr.to_string()]);
        if let Some(flag) = self.tcp {
            args.extend([flag.to_owned(), tcp.to_string()]);
        }
        Ok((args, redis))
    }
}

/// Keeps the environment's `CHINWAG_*` settings away from a server under test.
fn without_chinwag_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHINWAG_") {
            cmd.env_remove(k);
        }
    }
}

/// The secret the hub servers verify tokens with and the load generator signs them with.
const HUB_SECRET: &str = "chinwag bench secret, not for production";

/// The protected room of the guessing scenarios, and its password.
const GUESS_ROOM: &str = "guarded";
/// See [`GUESS_ROOM`].
const GUESS_PASSWORD: &str = "correct horse battery staple";

/// The URL template a hub door is loaded at, and whether it is the chat door over TCP.
fn hub_door(door: &str) -> (&'static str, bool) {
    match door {
        "rooms" => ("ws://{listen}/ws?room=bench", false),
        "chat-ws" => ("gotalk+ws://{listen}/gotalk/", false),
        _ => ("gotalk+tcp://{tcp}", true),
    }
}

/// A chinwag server of the hub scenarios on `door` (`rooms`, `chat-ws` or `chat-tcp`); the
/// room door is divided by the raw fan-out baseline.
fn hub_like(
    name: &str,
    bin: &'static str,
    tcp_flag: &'static str,
    door: &str,
    args: Vec<String>,
) -> Server {
    let (target, tcp) = hub_door(door);
    Server {
        name: name.to_owned(),
        role: "chinwag",
        baseline: (door == "rooms").then_some("raw-fanout"),
        kind: ServerKind::Hub(HubServer {
            bin,
            args,
            target,
            tcp: tcp.then_some(tcp_flag),
        }),
    }
}

/// The hub bench server (`examples/hub.rs`): `door` is `rooms`, `chat-ws` or `chat-tcp`.
fn hub_server(name: &str, door: &str, engine: &str, extra: &[&str]) -> Server {
    let mut args = strs(&["--engine", engine, "--secret", HUB_SECRET]);
    args.extend(strs(extra));
    hub_like(name, "examples/hub", "--tcp", door, args)
}

/// What the ready server (`chinwag-server`) is given beyond its defaults in every hub run:
/// the bench secret, no tok door, a data directory of its own, and the limits that load from
/// four loopback addresses trips (connection rate per address, connections, members per room,
/// sockets on the HTTP port). Everything else is as users deploy it (redb queue, message rate
/// 100/s per connection, 30 s pings, 60 s gotalk heartbeats).
const READY_SERVER_ARGS: [&str; 14] = [
    "--tok-listen",
    "",
    "--data-dir",
    "{tmp}",
    "--auth-secret",
    HUB_SECRET,
    "--hub-limits-connection-rate-per-second",
    "0",
    "--hub-limits-max-connections",
    "20000",
    "--hub-limits-max-members-per-room",
    "20000",
    "--websocket-max-connections",
    "12000",
];

/// The ready server (`crates/chinwag-server`, its tungstenite engine by default) on `door`,
/// with [`READY_SERVER_ARGS`] and `extra`.
fn ready_server(name: &str, door: &str, extra: &[&str]) -> Server {
    let mut args = strs(&READY_SERVER_ARGS);
    if !hub_door(door).1 {
        args.extend(strs(&["--tcp-listen", ""]));
    }
    args.extend(strs(extra));
    hub_like(name, "chinwag-server", "--tcp-listen", door, args)
}

/// Room history (issue 17): the 1 000-member fan-out of `examples/hub` keeping each room's
/// history in memory, redb and Redis, against the same hub keeping none (the baseline of the
/// ratios), in the same run.
fn history_fanout(load: Vec<String>, reps: usize) -> Scenario {
    let hub = |name: &str, history: Option<&str>| {
        let mut args = strs(&["--engine", "tungstenite", "--secret", HUB_SECRET]);
        if let Some(h) = history {
            args.extend(strs(&["--history", h]));
        }
        Server {
            name: name.to_owned(),
            role: if history.is_some() {
                "chinwag"
            } else {
                "baseline"
            },
            baseline: history.map(|_| "hub-history-off"),
            kind: ServerKind::Hub(HubServer {
                bin: "examples/hub",
                args,
                target: hub_door("rooms").0,
                tcp: None,
            }),
        }
    };
    Scenario {
        name: "hub-history-fanout-1k",
        kind: "hub-fanout",
        servers: vec![
            hub("hub-history-off", None),
            hub("hub-history-memory", Some("memory")),
            hub("hub-history-redb", Some("redb:{tmp}")),
            hub("hub-history-redis", Some("redis:{redis}")),
        ],
        load,
        reps,
    }
}

/// Room history (issue 17): recovering 1 000 missed publications. A member that was away
/// connects to the chat door (`gotalk+ws://…/gotalk/`) of `examples/hub` and joins with
/// `since` (`crates/chinwag-load/src/recover.rs`); each round
/// also times a plain join (no `since`) on the same hub. The history is in memory (the
/// baseline of the ratios: what a durable store adds to a recovery), redb and Redis.
fn history_recover(reps: usize, quick: bool) -> Scenario {
    let hub = |name: &str, history: &str| Server {
        name: name.to_owned(),
        role: if history == "memory" {
            "baseline"
        } else {
            "chinwag"
        },
        baseline: (history != "memory").then_some("hub-recover-memory"),
        kind: ServerKind::Hub(HubServer {
            bin: "examples/hub",
            args: strs(&[
                "--engine",
                "tungstenite",
                "--secret",
                HUB_SECRET,
                "--history",
                history,
            ]),
            target: hub_door("chat-ws").0,
            tcp: None,
        }),
    };
    let load = strs(&[
        "--mode",
        "recover",
        "--room",
        "recover",
        "--messages",
        "1000",
        "--joins",
        if quick { "10" } else { "100" },
        "--size",
        "100",
        "--in-flight",
        "64",
        "--secret",
        HUB_SECRET,
    ]);
    Scenario {
        name: "hub-history-recover-1k",
        kind: "hub-recover",
        servers: vec![
            hub("hub-recover-memory", "memory"),
            hub("hub-recover-redb", "redb:{tmp}"),
            hub("hub-recover-redis", "redis:{redis}"),
        ],
        load,
        reps,
    }
}

/// A cluster of `nodes` ready servers on one Redis (issue 18): each node is `chinwag-server`
/// with [`READY_SERVER_ARGS`] (its own data directory), no chat door over TCP,
/// `--queue-backend redis --cluster-redis-url {redis}`: the offline queue and the room history
/// are the cluster's Redis, every node has the bench secret, each picks a random node id. It
/// is loaded on `door` (`chat-ws` or `rooms`, as [`hub_door`]). One node is a cluster too (on
/// Redis, with its notices), the baseline the others are divided by, so the ratios isolate
/// what crossing nodes costs.
fn cluster_server(nodes: usize, door: &str) -> Server {
    let mut args = strs(&READY_SERVER_ARGS);
    args.extend(strs(&[
        "--tcp-listen",
        "",
        "--queue-backend",
        "redis",
        "--cluster-redis-url",
        "{redis}",
    ]));
    Server {
        name: if nodes == 1 {
            "cluster-1-node".into()
        } else {
            format!("cluster-{nodes}-nodes")
        },
        role: if nodes == 1 { "baseline" } else { "chinwag" },
        baseline: (nodes > 1).then_some("cluster-1-node"),
        kind: ServerKind::Cluster {
            nodes,
            args,
            target: hub_door(door).0,
        },
    }
}

/// The raw fan-out baseline (`baseline-fanout`: tokio + fastwebsockets, no hub).
fn raw_fanout() -> Server {
    Server {
        name: "raw-fanout".into(),
        role: "baseline",
        baseline: None,
        kind: ServerKind::Hub(HubServer {
            bin: "baseline-fanout",
            args: Vec::new(),
            target: "ws://{listen}/ws?room=bench",
            tcp: None,
        }),
    }
}

fn ws_echo(engine: &'static str, ping: Option<u64>) -> Server {
    let mut args = vec!["--engine".to_owned(), engine.to_owned()];
    if let Some(p) = ping {
        // The idle scenario: room for all of its connections (the default budget is half the
        // descriptor limit, 9 500 under this machine's 20 000).
        args.extend(["--ping-interval".to_owned(), p.to_string()]);
        args.extend(["--max-connections".to_owned(), "12000".to_owned()]);
    }
    Server {
        name: format!("chinwag-{engine}"),
        role: "chinwag",
        baseline: Some(if engine == "tungstenite" {
            "raw-tungstenite"
        } else {
            "raw-fastwebsockets"
        }),
        kind: ServerKind::Local {
            bin: "examples/ws_echo",
            args,
            listen: "--listen",
            other: None,
            scheme: "ws",
        },
    }
}

fn baseline(name: &'static str, bin: &'static str, scheme: &'static str) -> Server {
    Server {
        name: name.to_owned(),
        role: "baseline",
        baseline: None,
        kind: ServerKind::Local {
            bin,
            args: Vec::new(),
            listen: "--listen",
            other: None,
            scheme,
        },
    }
}

fn ws_servers(ping: Option<u64>) -> Vec<Server> {
    vec![
        ws_echo("tungstenite", ping),
        baseline("raw-tungstenite", "baseline-tungstenite", "ws"),
        ws_echo("fastwebsockets", ping),
        baseline("raw-fastwebsockets", "baseline-fastwebsockets", "ws"),
        // compared with raw fastwebsockets (there is no raw yawc baseline)
        ws_echo("yawc", ping),
    ]
}

/// One scenario: its name, kind, servers, and the `chinwag-load run` arguments.
struct Scenario {
    name: &'static str,
    kind: &'static str,
    servers: Vec<Server>,
    /// Load arguments; the slow consumer runs each server twice (`alone`, `stalled`).
    load: Vec<String>,
    reps: usize,
}

struct Opts {
    quick: bool,
    scenarios: Vec<String>,
    peers: Vec<(String, String)>,
    reps: Option<usize>,
    idle_conns: Option<usize>,
    micro: bool,
    list: bool,
}

/// Scenario names; `--scenario X` selects `X` and every `X-*` (`gotalk-rpc`, `ws-echo`, `hub`,
/// `hub-deflate`, `cluster`).
const SCENARIOS: [&str; 25] = [
    "ws-echo-20B",
    "ws-echo-16KiB",
    "ws-echo-1KiB",
    "tcp-echo-64B",
    "gotalk-rpc-tcp-1",
    "gotalk-rpc-tcp-16",
    "gotalk-rpc-ws-1",
    "gotalk-rpc-ws-16",
    "idle",
    "slow-consumer",
    "hub-fanout-1k",
    "hub-fanout-10k",
    "hub-fanout-10k-low",
    "hub-history-fanout-1k",
    "hub-history-recover-1k",
    "hub-send",
    "hub-replay",
    "hub-idle",
    "hub-guess",
    "hub-guess-20",
    "hub-deflate-fanout-1k",
    "hub-deflate-idle",
    "cluster-send",
    "cluster-send-2k",
    "cluster-fanout-3k",
];

fn selects(selector: &str, name: &str) -> bool {
    name == selector
        || name
            .strip_prefix(selector)
            .is_some_and(|rest| rest.starts_with('-'))
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        scenarios: Vec::new(),
        peers: Vec::new(),
        reps: None,
        idle_conns: None,
        micro: false,
        list: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--micro" => o.micro = true,
            "--list" => o.list = true,
            "--scenario" => {
                let s = value("--scenario")?;
                if !SCENARIOS.iter().any(|n| selects(&s, n)) {
                    return Err(format!(
                        "unknown scenario `{s}`; scenarios: {}",
                        SCENARIOS.join(", ")
                    ));
                }
                o.scenarios.push(s);
            }
            "--peer" => {
                let p = value("--peer")?;
                let (name, url) = p
                    .split_once('=')
                    .ok_or(format!("--peer wants NAME=URL, got `{p}`"))?;
                o.peers.push((name.to_owned(), url.to_owned()));
            }
            "--reps" => {
                let v = value("--reps")?;
                o.reps = Some(v.parse().map_err(|_| format!("bad --reps `{v}`"))?);
            }
            "--idle-conns" => {
                let v = value("--idle-conns")?;
                o.idle_conns = Some(v.parse().map_err(|_| format!("bad --idle-conns `{v}`"))?);
            }
            other => return Err(format!("unknown option `{other}` for bench")),
        }
    }
    Ok(o)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn scenarios(o: &Opts, notes: &mut Vec<String>) -> Vec<Scenario> {
    // (warm-up, measured seconds, repetitions)
    let (warmup, secs, reps) = if o.quick {
        ("0.5", "1.5", 1)
    } else {
        ("2", "8", 3)
    };
    let reps = o.reps.unwrap_or(reps);
    let timing = |extra: &[&str]| {
        let mut v = strs(&["--warmup", warmup, "--duration", secs]);
        v.extend(strs(extra));
        v
    };
    let peers = |scheme: &str| -> Vec<Server> {
        o.peers
            .iter()
            .filter(|(_, url)| url.starts_with(&format!("{scheme}://")))
            .map(|(name, url)| Server {
                name: name.clone(),
                role: "peer",
                baseline: None,
                kind: ServerKind::Peer { url: url.clone() },
            })
            .collect()
    };
    for (name, url) in &o.peers {
        if !["ws://", "tcp://", "gotalk+tcp://", "gotalk+ws://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            notes.push(format!(
                "peer {name} ({url}): not run: peers must be ws://, tcp://, gotalk+tcp:// or \
                 gotalk+ws:// URLs"
            ));
        }
    }
    let mut out = Vec::new();
    for (name, conns, size) in [
        ("ws-echo-20B", "100", "20"),
        ("ws-echo-16KiB", "200", "16384"),
        ("ws-echo-1KiB", "500", "1024"),
    ] {
        let mut servers = ws_servers(None);
        // Room servers (`ws://…?room=R`) are for the hub fan-out, not for echoes.
        servers.extend(peers("ws").into_iter().filter(|p| !is_room_peer(p)));
        out.push(Scenario {
            name,
            kind: "echo",
            servers,
            load: timing(&["--conns", conns, "--size", size, "--in-flight", "1"]),
            reps,
        });
    }
    let mut tcp = vec![
        Server {
            name: "chinwag-tcp".into(),
            role: "chinwag",
            baseline: Some("raw-tokio-tcp"),
            kind: ServerKind::Local {
                bin: "examples/tcp_echo",
                args: Vec::new(),
                listen: "--listen",
                other: None,
                scheme: "tcp",
            },
        },
        baseline("raw-tokio-tcp", "baseline-tcp", "tcp"),
    ];
    tcp.extend(peers("tcp"));
    out.push(Scenario {
        name: "tcp-echo-64B",
        kind: "echo",
        servers: tcp,
        load: timing(&["--conns", "100", "--size", "64", "--in-flight", "16"]),
        reps,
    });
    // gotalk RPC echo: chinwag's rpc_echo (one process serves TCP and WebSocket), loaded with
    // chinwag-rpc's client; the Go gotalk server joins with --peer NAME=gotalk+tcp://...
    if root().join("examples/rpc_echo.rs").exists() {
        let rpc = |name: &str, engine: Option<&'static str>, over_ws: bool| {
            let mut args = Vec::new();
            if let Some(e) = engine {
                args.extend(["--engine".to_owned(), e.to_owned()]);
            }
            Server {
                name: name.to_owned(),
                role: "chinwag",
                // Over TCP, divided by a gotalk echo written directly on tokio + chinwag-wire.
                baseline: (!over_ws).then_some("raw-gotalk"),
                kind: ServerKind::Local {
                    bin: "examples/rpc_echo",
                    args,
                    listen: if over_ws { "--ws" } else { "--tcp" },
                    other: Some(if over_ws { "--tcp" } else { "--ws" }),
                    scheme: if over_ws { "gotalk+ws" } else { "gotalk+tcp" },
                },
            }
        };
        for (name, over_ws, k) in [
            ("gotalk-rpc-tcp-1", false, "1"),
            ("gotalk-rpc-tcp-16", false, "16"),
            ("gotalk-rpc-ws-1", true, "1"),
            ("gotalk-rpc-ws-16", true, "16"),
        ] {
            let mut servers = if over_ws {
                vec![
                    rpc("chinwag-rpc-tungstenite", Some("tungstenite"), true),
                    rpc("chinwag-rpc-fastwebsockets", Some("fastwebsockets"), true),
                    rpc("chinwag-rpc-yawc", Some("yawc"), true),
                ]
            } else {
                vec![
                    rpc("chinwag-rpc", None, false),
                    baseline("raw-gotalk", "baseline-gotalk", "gotalk+tcp"),
                ]
            };
            servers.extend(peers(if over_ws { "gotalk+ws" } else { "gotalk+tcp" }));
            out.push(Scenario {
                name,
                kind: "echo",
                servers,
                load: timing(&["--conns", "100", "--size", "64", "--in-flight", k]),
                reps,
            });
        }
    } else {
        notes.push("gotalk-rpc: not available yet: rpc_echo example missing".into());
    }
    // Idle: the server pings every few seconds (heartbeats); clients over several processes
    // and source addresses (every process here may hold at most 20 000 files).
    let idle_conns = o.idle_conns.unwrap_or(if o.quick { 1000 } else { 10_000 });
    let procs = idle_conns.div_ceil(2500).max(1).to_string();
    let ping = if o.quick { 1 } else { 3 };
    let idle_conns = idle_conns.to_string();
    out.push(Scenario {
        name: "idle",
        kind: "idle",
        servers: ws_servers(Some(ping)),
        load: timing(&[
            "--idle",
            "--conns",
            &idle_conns,
            "--procs",
            &procs,
            "--source-ips",
            "4",
            "--connect-concurrency",
            "128",
        ]),
        reps: o.reps.unwrap_or(1),
    });
    let mut slow = ws_servers(None);
    if o.quick {
        slow.retain(|s| s.role == "chinwag");
    }
    out.push(Scenario {
        name: "slow-consumer",
        kind: "slow-consumer",
        servers: slow,
        // Open loop at a rate well below saturation: p99 then shows how long the 100 wait
        // because of the stalled one, not how the 2 cores are shared at full load.
        load: timing(&["--conns", "100", "--size", "64", "--rate", "20000"]),
        reps,
    });
    hub_scenarios(o, &timing, &peers, &mut out);
    cluster_scenarios(o, &timing, &mut out);
    if !o.scenarios.is_empty() {
        out.retain(|s| o.scenarios.iter().any(|sel| selects(sel, s.name)));
        notes.retain(|n| {
            o.scenarios
                .iter()
                .any(|sel| n.starts_with(sel.as_str()) || n.starts_with("peer"))
        });
    }
    out
}

fn is_room_peer(s: &Server) -> bool {
    matches!(&s.kind, ServerKind::Peer { url } if url.contains("room="))
}

/// The hub scenarios of issue 12 (`crates/chinwag-load/src/hub.rs` describes each load).
/// Members and users are spread over worker processes (each may hold 20 000 files here) and
/// loopback source addresses; the hub server's connection and message rates are off.
fn hub_scenarios(
    o: &Opts,
    timing: &dyn Fn(&[&str]) -> Vec<String>,
    peers: &dyn Fn(&str) -> Vec<Server>,
    out: &mut Vec<Scenario>,
) {
    let q = o.quick;
    let reps = o.reps.unwrap_or(if q { 1 } else { 3 });
    let secret = ["--secret", HUB_SECRET];
    // Fan-out: a steady publish rate, the same deliveries per second asked of both sizes
    // (100 000/s: what this 2-core machine sustains with the load generator on it), and 1
    // publish/s to 10 000 members (10 000 deliveries/s: the best latency this machine gives a
    // room that size), over a longer window for enough publishes (its own warm-up and window).
    let low_window = if q { ["0.5", "3"] } else { ["2", "20"] };
    let ten_k = if q { "1000" } else { "10000" };
    for (name, members, rate, procs, window) in [
        (
            "hub-fanout-1k",
            if q { "100" } else { "1000" },
            "100",
            "2",
            None,
        ),
        ("hub-fanout-10k", ten_k, "10", "4", None),
        ("hub-fanout-10k-low", ten_k, "1", "4", Some(low_window)),
    ] {
        let mut servers = vec![
            hub_server("hub-rooms-tungstenite", "rooms", "tungstenite", &[]),
            raw_fanout(),
            hub_server("hub-rooms-fastwebsockets", "rooms", "fastwebsockets", &[]),
            hub_server("hub-rooms-yawc", "rooms", "yawc", &[]),
            // The publisher sends 100 messages/s at 1 000 members: exactly the ready server's
            // default message rate per connection, which it is left at.
            ready_server("server-rooms-tungstenite", "rooms", &[]),
        ];
        servers.extend(peers("ws").into_iter().filter(is_room_peer));
        let with_window = |args: &[&str]| match window {
            None => timing(args),
            Some([warmup, secs]) => {
                let mut v = strs(&["--warmup", warmup, "--duration", secs]);
                v.extend(strs(args));
                v
            }
        };
        let mut load = with_window(&[
            "--mode",
            "fanout",
            "--conns",
            members,
            "--size",
            "100",
            "--rate",
            rate,
            "--procs",
            procs,
            "--source-ips",
            "4",
            "--connect-concurrency",
            "128",
        ]);
        load.extend(strs(&secret));
        if name == "hub-fanout-1k" {
            out.push(history_fanout(load.clone(), reps));
            out.push(history_recover(reps, q));
        }
        out.push(Scenario {
            name,
            kind: "hub-fanout",
            servers,
            load,
            reps,
        });
    }
    let users = if q { "1000" } else { "10000" };
    let mut load = timing(&[
        "--mode",
        "send",
        "--conns",
        users,
        "--size",
        "100",
        "--rate",
        "2000",
        "--procs",
        "4",
        "--source-ips",
        "4",
        "--connect-concurrency",
        "128",
    ]);
    load.extend(strs(&secret));
    out.push(Scenario {
        name: "hub-send",
        kind: "hub-send",
        servers: vec![
            hub_server("hub-chat-ws-tungstenite", "chat-ws", "tungstenite", &[]),
            hub_server(
                "hub-chat-ws-fastwebsockets",
                "chat-ws",
                "fastwebsockets",
                &[],
            ),
            hub_server("hub-chat-ws-yawc", "chat-ws", "yawc", &[]),
            hub_server("hub-chat-tcp", "chat-tcp", "tungstenite", &[]),
            // As deployed (redb, an fsync per queued message, conversations kept in the redb
            // history), without keeping conversations (what that costs), and with the memory
            // queue of the hub rows above.
            ready_server("server-chat-ws-redb", "chat-ws", &[]),
            ready_server(
                "server-chat-ws-redb-no-conversations",
                "chat-ws",
                &["--hub-history-conversation-max-len", "0"],
            ),
            ready_server(
                "server-chat-ws-memory",
                "chat-ws",
                &["--queue-backend", "memory"],
            ),
        ],
        load,
        reps,
    });
    let mut load = strs(&[
        "--mode",
        "replay",
        "--messages",
        if q { "1000" } else { "10000" },
        "--size",
        "100",
        // One recipient written to by 1 000 senders, one send each in flight (issue 21).
        "--conns",
        if q { "100" } else { "1000" },
        "--in-flight",
        if q { "100" } else { "1000" },
    ]);
    load.extend(strs(&secret));
    out.push(Scenario {
        name: "hub-replay",
        kind: "hub-replay",
        servers: vec![
            hub_server("hub-replay-memory", "chat-tcp", "tungstenite", &[]),
            hub_server(
                "hub-replay-redb",
                "chat-tcp",
                "tungstenite",
                &["--queue", "redb:{tmp}"],
            ),
            hub_server(
                "hub-replay-redis",
                "chat-tcp",
                "tungstenite",
                &["--queue", "redis:{redis}"],
            ),
        ],
        load,
        reps,
    });
    let ping = if q { "1" } else { "3" };
    let mut load = idle_auth_load(o, timing);
    load.extend(strs(&secret));
    let ping_args = ["--ping-interval", ping];
    let ready_ping = ["--websocket-ping-interval", if q { "1s" } else { "3s" }];
    out.push(Scenario {
        name: "hub-idle",
        kind: "hub-idle",
        servers: vec![
            hub_server("hub-rooms-tungstenite", "rooms", "tungstenite", &ping_args),
            hub_server(
                "hub-rooms-fastwebsockets",
                "rooms",
                "fastwebsockets",
                &ping_args,
            ),
            hub_server("hub-rooms-yawc", "rooms", "yawc", &ping_args),
            hub_server(
                "hub-chat-ws-tungstenite",
                "chat-ws",
                "tungstenite",
                &ping_args,
            ),
            // The ready server's WebSocket pings every 3 s too; its gotalk heartbeats stay at
            // their 60 s (no key sets them).
            ready_server("server-rooms-tungstenite", "rooms", &ready_ping),
            ready_server("server-chat-ws-tungstenite", "chat-ws", &ready_ping),
        ],
        load,
        reps: o.reps.unwrap_or(1),
    });
    deflate_scenarios(o, timing, &ping_args, out);
    // Password guessing (issue 16): a legitimate user's right-password joins, 50 per phase at
    // the one-per-second its connection may guess, alone and under attack; the attack runs for
    // the warm-up before the timed joins. One attacking connection, then 20 from one address
    // (the per-address guess rate is what holds them), each keeping 200 joins outstanding.
    let protected = format!("{GUESS_ROOM}:{GUESS_PASSWORD}");
    let (joins, warmup) = if q { ("5", "0.5") } else { ("50", "2") };
    for (name, attackers) in [("hub-guess", "1"), ("hub-guess-20", "20")] {
        let mut load = strs(&[
            "--mode",
            "guess",
            "--room",
            GUESS_ROOM,
            "--password",
            GUESS_PASSWORD,
            "--joins",
            joins,
            "--rate",
            "1",
            "--attackers",
            attackers,
            "--in-flight",
            "200",
            "--warmup",
            warmup,
        ]);
        load.extend(strs(&secret));
        out.push(Scenario {
            name,
            kind: "hub-guess",
            servers: vec![hub_server(
                "hub-chat-tcp",
                "chat-tcp",
                "tungstenite",
                &["--protected-room", &protected],
            )],
            load,
            reps,
        });
    }
}

/// Publishes per second of `hub-deflate-fanout-1k` (1 000 members: 10 000 deliveries/s). Each
/// connection compressing its own copy cost about 80 µs of server CPU per delivery on this
/// 2-core machine (2026-12-07), so 20 000 deliveries/s would saturate it; at 10 000/s every
/// row keeps up and CPU per delivery compares like with like.
const DEFLATE_FANOUT_RATE: &str = "10";

/// permessage-deflate (issue 20), on `examples/hub --engine yawc`'s room door with clients on
/// yawc that offer deflate with no context takeover either way (`chinwag-load --client-engine
/// yawc --deflate`; a server without deflate declines the offer).
///
/// `hub-deflate-fanout-1k`: one member publishes a 1 KiB chat-like JSON text (`--payload
/// chat`: words from a vocabulary, different in every message) at [`DEFLATE_FANOUT_RATE`] to
/// a room of 1 000; three servers in the same run: no deflate (the baseline of the ratios),
/// `--deflate --compress-once false` (each connection compresses its own copy) and
/// `--deflate` (compress once for the room). Besides the server's CPU per delivery, the bytes
/// its sockets sent in the window are counted (`--wire-bytes`) and divided by the deliveries.
///
/// `hub-deflate-idle`: the signed-in idle connections of `hub-idle` (room door, pings every 3
/// s) on each engine, and on yawc with deflate negotiated (the ratio divides it by yawc
/// without).
/// The `chinwag-load run` arguments of an idle signed-in run (`hub-idle`, `hub-deflate-idle`):
/// `--idle-conns` connections (10 000; `--quick` 1 000) in 100 rooms, a worker process per
/// 2 500, over 4 source addresses.
fn idle_auth_load(o: &Opts, timing: &dyn Fn(&[&str]) -> Vec<String>) -> Vec<String> {
    let conns = o.idle_conns.unwrap_or(if o.quick { 1000 } else { 10_000 });
    let procs = conns.div_ceil(2500).max(1).to_string();
    let conns = conns.to_string();
    timing(&[
        "--mode",
        "idle-auth",
        "--conns",
        &conns,
        "--procs",
        &procs,
        "--rooms",
        "100",
        "--source-ips",
        "4",
        "--connect-concurrency",
        "128",
    ])
}

fn deflate_scenarios(
    o: &Opts,
    timing: &dyn Fn(&[&str]) -> Vec<String>,
    ping_args: &[&str],
    out: &mut Vec<Scenario>,
) {
    let q = o.quick;
    let reps = o.reps.unwrap_or(if q { 1 } else { 3 });
    let yawc = |name: &str, baseline: Option<&'static str>, extra: &[&str]| {
        let mut s = hub_server(name, "rooms", "yawc", extra);
        s.role = if name == "hub-deflate-off" {
            "baseline"
        } else {
            "chinwag"
        };
        s.baseline = baseline;
        s
    };
    let client = [
        "--client-engine",
        "yawc",
        "--deflate",
        "--secret",
        HUB_SECRET,
    ];
    let mut load = timing(&[
        "--mode",
        "fanout",
        "--conns",
        if q { "100" } else { "1000" },
        "--size",
        "1024",
        "--payload",
        "chat",
        "--wire-bytes",
        "--rate",
        DEFLATE_FANOUT_RATE,
        "--procs",
        "2",
        "--source-ips",
        "4",
        "--connect-concurrency",
        "128",
    ]);
    load.extend(strs(&client));
    out.push(Scenario {
        name: "hub-deflate-fanout-1k",
        kind: "hub-deflate-fanout",
        servers: vec![
            yawc("hub-deflate-off", None, &[]),
            yawc(
                "hub-deflate-per-connection",
                Some("hub-deflate-off"),
                &["--deflate", "--compress-once", "false"],
            ),
            yawc(
                "hub-deflate-compress-once",
                Some("hub-deflate-off"),
                &["--deflate", "--compress-once", "true"],
            ),
        ],
        load,
        reps,
    });
    let mut load = idle_auth_load(o, timing);
    load.extend(strs(&client));
    let mut deflate_args = ping_args.to_vec();
    deflate_args.push("--deflate");
    out.push(Scenario {
        name: "hub-deflate-idle",
        kind: "hub-idle",
        servers: vec![
            hub_server("hub-rooms-tungstenite", "rooms", "tungstenite", ping_args),
            hub_server(
                "hub-rooms-fastwebsockets",
                "rooms",
                "fastwebsockets",
                ping_args,
            ),
            yawc("hub-rooms-yawc", None, ping_args),
            yawc(
                "hub-rooms-yawc-deflate",
                Some("hub-rooms-yawc"),
                &deflate_args,
            ),
        ],
        load,
        reps: o.reps.unwrap_or(1),
    });
}

/// The cluster scenarios (issue 18). `cluster-send` and `cluster-send-2k`: direct messages
/// across 1, 2 and 3 `chinwag-server` nodes on one Redis ([`cluster_server`]) at 1 000 and
/// 2 000 sends/s, loaded by `chinwag-load run --mode send` with one `--target` per node: user
/// `i` signs in at node `i % N` and every send goes to a random user on another node (on one
/// node: any other user); each recipient acks. The run sums the nodes' CPU and reads Redis's
/// `INFO` at the bounds of the measured window; each size also runs once more per repetition
/// counting Redis's commands with MONITOR (variant `monitor`, see [`variants`];
/// `crates/chinwag-load/src/redis_monitor.rs`). Five repetitions in full mode: the CPU per
/// message on this shared machine moves with how much the processes batch.
/// `cluster-fanout-3k`: one room of 3 000 members on the nodes' room doors (member `i` at node
/// `i % N`), member 0 publishing 20 times a second (`--mode fanout`), likewise twice per
/// repetition. A room that keeps history (the default) is one room across nodes.
fn cluster_scenarios(o: &Opts, timing: &dyn Fn(&[&str]) -> Vec<String>, out: &mut Vec<Scenario>) {
    let reps = o.reps.unwrap_or(if o.quick { 1 } else { 5 });
    for (name, rate) in [("cluster-send", "1000"), ("cluster-send-2k", "2000")] {
        // 300 users: 100 per node at 3 nodes, each sending 3-7 messages/s (the ready
        // server's message rate is 100/s per connection).
        let mut load = timing(&[
            "--mode",
            "send",
            "--conns",
            "300",
            "--size",
            "100",
            "--rate",
            rate,
            "--procs",
            "2",
            "--source-ips",
            "4",
            "--connect-concurrency",
            "64",
        ]);
        load.extend(strs(&["--secret", HUB_SECRET]));
        out.push(Scenario {
            name,
            kind: "cluster-send",
            servers: (1..=3).map(|n| cluster_server(n, "chat-ws")).collect(),
            load,
            reps,
        });
    }
    // One room of 3 000 members (the room door; the room keeps history, the default, which is
    // what makes it one room across nodes), member 0 publishing.
    let mut load = timing(&[
        "--mode",
        "fanout",
        "--conns",
        if o.quick { "300" } else { "3000" },
        "--size",
        "100",
        "--rate",
        CLUSTER_FANOUT_RATE,
        "--procs",
        "2",
        "--source-ips",
        "4",
        "--connect-concurrency",
        "128",
    ]);
    load.extend(strs(&["--secret", HUB_SECRET]));
    out.push(Scenario {
        name: "cluster-fanout-3k",
        kind: "cluster-fanout",
        servers: (1..=3).map(|n| cluster_server(n, "rooms")).collect(),
        load,
        reps,
    });
}

/// Publishes per second to the 3 000-member room of `cluster-fanout-3k`.
const CLUSTER_FANOUT_RATE: &str = "20";

/// Starts a private redis-server (its own directory, append-only file with `appendfsync
/// always`, as `chinwag_queue_redis::test_server` does) on a free port.
fn start_redis(dir: &Path) -> Result<(KillOnDrop, String), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .args(["--protected-mode", "no", "--dir"])
        .arg(dir);
    let running = spawn_listening(&mut cmd, addr)?;
    Ok((running, format!("redis://{addr}/")))
}

/// Waits up to 30 s until the server at `addr` answers `GET /readyz` with 200 (a cluster
/// node: once its lease is registered).
fn wait_ready(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if http_status(addr, "/readyz") == Some(200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{addr}: /readyz not 200 within 30 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The status of a plain HTTP/1.1 `GET path` (`None`: no answer).
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]).ok()? {
            0 => break,
            k => n += k,
        }
    }
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Civil date and time (UTC) from Unix seconds (Howard Hinnant's days-to-civil algorithm).
fn utc(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

fn micro(quick: bool) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.arg("bench");
    if root().join("benches/Cargo.toml").exists() {
        cmd.args(["-p", "chinwag-bench"]);
    }
    // Every crate with a `[[bench]]` target.
    let mut found = false;
    let crates = fs::read_dir(root().join("crates")).map_err(|e| e.to_string())?;
    let mut manifests: Vec<PathBuf> = crates
        .filter_map(|e| e.ok().map(|e| e.path().join("Cargo.toml")))
        .filter(|p| p.exists())
        .collect();
    manifests.sort();
    for m in manifests {
        let text = fs::read_to_string(&m).map_err(|e| e.to_string())?;
        if !text.contains("[[bench]]") {
            continue;
        }
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or(format!("{}: no package name", m.display()))?;
        cmd.args(["-p", &name]);
        found = true;
    }
    if !found && !root().join("benches/Cargo.toml").exists() {
        return Err("no criterion benchmarks found".into());
    }
    // Only the `[[bench]]` targets (`--benches` would include the libraries' test harnesses,
    // which do not know criterion's flags).
    cmd.args(["--bench", "*"]);
    if quick {
        cmd.args(["--", "--quick"]);
    }
    run_cmd(&mut cmd)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--instructions") {
        return instructions::run(args);
    }
    let o = parse(args)?;
    if o.micro {
        return micro(o.quick);
    }
    let mut notes = Vec::new();
    let plan = scenarios(&o, &mut notes);
    if o.list {
        for s in &plan {
            let names: Vec<&str> = s.servers.iter().map(|x| x.name.as_str()).collect();
            println!(
                "{:15} {} x{}: {}",
                s.name,
                s.load.join(" "),
                s.reps,
                names.join(", ")
            );
        }
        for n in &notes {
            println!("{n}");
        }
        return Ok(());
    }
    // The examples only when a scenario of the plan starts one.
    let examples = plan.iter().any(|s| {
        s.servers.iter().any(|x| match &x.kind {
            ServerKind::Local { bin, .. } => bin.starts_with("examples/"),
            ServerKind::Hub(h) => h.bin.starts_with("examples/"),
            _ => false,
        })
    });
    let mut build = cargo();
    build.args(["build", "--release", "-p", "chinwag-load"]);
    if examples {
        build.args(["-p", "chinwag-examples", "--examples"]);
    }
    run_cmd(build.arg("--bins"))?;
    // The ready server on its own: built with the others, its facade's features would be
    // unified into theirs. Only when a scenario of the plan loads it.
    let ready = plan.iter().any(|s| {
        s.servers.iter().any(|x| match &x.kind {
            ServerKind::Hub(h) => h.bin == "chinwag-server",
            ServerKind::Cluster { .. } => true,
            _ => false,
        })
    });
    if ready {
        run_cmd(cargo().args([
            "build",
            "--release",
            "-p",
            "chinwag-server",
            "--bin",
            "chinwag-server",
        ]))?;
    }
    let rel = target_dir().join("release");
    let load = rel.join("chinwag-load");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let (y, mo, d, h, mi, s) = utc(now);
    let dir = target_dir()
        .join("bench")
        .join(format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}"));
    let runs = dir.join("runs");
    fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (working tree has uncommitted changes)"
    };
    // How busy the machine was when the run started (it is shared).
    let loadavg = fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let meta = format!(
        "date={y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC\ncommit={}{dirty}\nmode={}\nmachine={}\nreps={}\nloadavg={loadavg}\n",
        git(&["rev-parse", "--short", "HEAD"]),
        if o.quick { "quick" } else { "full" },
        machine(),
        plan.first().map_or(0, |s| s.reps),
    );
    fs::write(dir.join("meta.txt"), meta).map_err(|e| e.to_string())?;

    let total: usize = plan
        .iter()
        .map(|s| s.reps * s.servers.len() * variants(s.kind).len())
        .sum();
    let started = Instant::now();
    let mut n = 0;
    for sc in &plan {
        for rep in 0..sc.reps {
            for server in &sc.servers {
                for variant in variants(sc.kind) {
                    n += 1;
                    let label = format!(
                        "[{n}/{total}] {} {}{}{} rep {}",
                        sc.name,
                        server.name,
                        if variant.is_empty() { "" } else { " " },
                        variant,
                        rep + 1
                    );
                    eprintln!("bench: {label}");
                    let file = runs.join(format!(
                        "{:04}-{}-{}{}{}-{rep}.json",
                        n,
                        sc.name,
                        server.name,
                        if variant.is_empty() { "" } else { "-" },
                        variant
                    ));
                    let mut extra = Vec::new();
                    match *variant {
                        "stalled" => {
                            extra.extend(strs(&["--stalled", "1", "--stalled-size", "65536"]));
                        }
                        "monitor" => extra.push("--redis-monitor".into()),
                        _ => {}
                    }
                    let meta = [
                        ("scenario", sc.name.to_owned()),
                        ("kind", sc.kind.to_owned()),
                        ("server", server.name.clone()),
                        ("role", server.role.to_owned()),
                        ("baseline", server.baseline.unwrap_or("").to_owned()),
                        ("rep", rep.to_string()),
                        ("variant", variant.to_string()),
                        ("label", label.clone()),
                    ];
                    if let Err(e) = one_run(&rel, &load, server, sc, &extra, &meta, &file) {
                        eprintln!("bench: {label}: {e}");
                        notes.push(format!("{label}: failed: {e}"));
                    }
                }
            }
        }
    }
    fs::write(dir.join("notes.txt"), notes.join("\n") + "\n").map_err(|e| e.to_string())?;
    run_cmd(Command::new(&load).arg("report").arg(&dir))?;
    eprintln!(
        "bench: {n} runs in {:.0} s; report: {}",
        started.elapsed().as_secs_f64(),
        dir.join("report.md").display()
    );
    Ok(())
}

/// The runs of each server and repetition: the slow consumer runs alone and beside a stalled
/// client; a cluster runs once measured and once counting its Redis commands with MONITOR
/// (which costs Redis CPU, so the measured run goes without it).
fn variants(kind: &str) -> &'static [&'static str] {
    match kind {
        "slow-consumer" => &["alone", "stalled"],
        "cluster-send" | "cluster-fanout" => &["", "monitor"],
        _ => &[""],
    }
}

fn one_run(
    rel: &Path,
    load: &Path,
    server: &Server,
    sc: &Scenario,
    extra: &[String],
    meta: &[(&str, String)],
    file: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(load);
    cmd.arg("run");
    // A hub run's redis-server and scratch file, cleaned up after the run.
    let mut aux: Option<(Option<KillOnDrop>, PathBuf)> = None;
    // The servers under load (a cluster's nodes), stopped after the run.
    let running: Vec<KillOnDrop> = match &server.kind {
        ServerKind::Local {
            bin,
            args,
            listen,
            other,
            scheme,
        } => {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let path = rel.join(bin);
            let mut server = Command::new(&path);
            server.args(args).arg(listen).arg(addr.to_string());
            if let Some(flag) = other {
                server.arg(flag).arg(format!("127.0.0.1:{}", free_port()?));
            }
            let running = spawn_listening(&mut server, addr)?;
            let url = match *scheme {
                "ws" => format!("ws://{addr}/"),
                "gotalk+ws" => format!("gotalk+ws://{addr}/gotalk/"),
                other => format!("{other}://{addr}"),
            };
            cmd.args([
                "--target",
                &url,
                "--server-pid",
                &running.0.id().to_string(),
            ]);
            vec![running]
        }
        ServerKind::Peer { url } => {
            cmd.args(["--target", url]);
            Vec::new()
        }
        ServerKind::Cluster {
            nodes,
            args,
            target,
        } => {
            let tmp = file.with_extension("data");
            let (redis, url) = start_redis(&file.with_extension("redis"))?;
            cmd.args(["--redis", &url, "--redis-pid", &redis.0.id().to_string()]);
            aux = Some((Some(redis), tmp.clone()));
            let mut started = Vec::new();
            for k in 0..*nodes {
                let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
                let dir = tmp.join(format!("node-{k}"));
                let mut node = Command::new(rel.join("chinwag-server"));
                for a in args {
                    node.arg(
                        a.replace("{tmp}", &dir.to_string_lossy())
                            .replace("{redis}", &url),
                    );
                }
                node.arg("--listen").arg(addr.to_string());
                without_chinwag_env(&mut node);
                let running = spawn_listening(&mut node, addr)?;
                // Sign-ons are refused until the node's lease is registered.
                wait_ready(addr)?;
                cmd.args([
                    "--target",
                    &target.replace("{listen}", &addr.to_string()),
                    "--server-pid",
                    &running.0.id().to_string(),
                ]);
                started.push(running);
            }
            started
        }
        ServerKind::Hub(h) => {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let tcp: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let (args, redis) = h.run_args(file, addr, tcp)?;
            let mut server = Command::new(rel.join(h.bin));
            server.args(&args);
            without_chinwag_env(&mut server);
            let running = spawn_listening(&mut server, addr)?;
            let url = h
                .target
                .replace("{listen}", &addr.to_string())
                .replace("{tcp}", &tcp.to_string());
            cmd.args([
                "--target",
                &url,
                "--server-pid",
                &running.0.id().to_string(),
            ]);
            aux = Some((redis, file.with_extension("data")));
            vec![running]
        }
    };
    cmd.args(&sc.load).args(extra).arg("--json").arg(file);
    for (k, v) in meta {
        cmd.arg("--meta").arg(format!("{k}={v}"));
    }
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", load.display()));
    drop(running);
    if let Some((redis, tmp)) = aux {
        drop(redis);
        // A queue file (examples/hub) or a data directory (chinwag-server).
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::remove_dir_all(file.with_extension("redis"));
    }
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chinwag-load exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc(1_764_428_843), (2025, 11, 29, 15, 7, 23));
    }

    #[test]
    fn plan_has_every_scenario_and_the_rpc_note() {
        let o = parse(&["--quick".into()]).unwrap();
        let mut notes = Vec::new();
        let plan = scenarios(&o, &mut notes);
        let rpc = root().join("examples/rpc_echo.rs").exists();
        assert_eq!(plan.len(), if rpc { 25 } else { 21 });
        assert_eq!(rpc, plan.iter().any(|s| s.name.starts_with("gotalk-rpc")));
        assert_eq!(!rpc, notes.iter().any(|n| n.starts_with("gotalk-rpc")));
        let o = parse(&["--scenario".into(), "ws-echo".into()]).unwrap();
        assert_eq!(scenarios(&o, &mut Vec::new()).len(), 3);
        let o = parse(&["--scenario".into(), "idle".into()]).unwrap();
        let mut notes = Vec::new();
        assert_eq!(scenarios(&o, &mut notes).len(), 1);
        assert!(notes.is_empty());
        assert!(parse(&["--scenario".into(), "nope".into()]).is_err());
        let o = parse(&["--scenario".into(), "hub".into()]).unwrap();
        let hub = scenarios(&o, &mut Vec::new());
        assert_eq!(hub.len(), 12);
        assert!(hub.iter().all(|s| s.name.starts_with("hub-")));
        let o = parse(&["--scenario".into(), "hub-history".into()]).unwrap();
        let history = scenarios(&o, &mut Vec::new());
        let names: Vec<&str> = history.iter().map(|s| s.name).collect();
        assert_eq!(names, ["hub-history-fanout-1k", "hub-history-recover-1k"]);
        let servers: Vec<&str> = history[0].servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            servers,
            [
                "hub-history-off",
                "hub-history-memory",
                "hub-history-redb",
                "hub-history-redis"
            ]
        );
        assert!(
            history[0].servers[1..]
                .iter()
                .all(|s| s.baseline == Some("hub-history-off"))
        );
        let recover = &history[1];
        assert_eq!(recover.kind, "hub-recover");
        let servers: Vec<&str> = recover.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            servers,
            [
                "hub-recover-memory",
                "hub-recover-redb",
                "hub-recover-redis"
            ]
        );
        assert_eq!(recover.servers[0].role, "baseline");
        assert!(
            recover.servers[1..]
                .iter()
                .all(|s| s.role == "chinwag" && s.baseline == Some("hub-recover-memory"))
        );
        assert!(recover.load.windows(2).any(|w| w == ["--mode", "recover"]));
        let o = parse(&["--scenario".into(), "hub-history-recover-1k".into()]).unwrap();
        assert_eq!(scenarios(&o, &mut Vec::new()).len(), 1);
        let o = parse(&["--scenario".into(), "hub-guess".into()]).unwrap();
        let guess = scenarios(&o, &mut Vec::new());
        let names: Vec<&str> = guess.iter().map(|s| s.name).collect();
        assert_eq!(names, ["hub-guess", "hub-guess-20"]);
    }

    #[test]
    fn deflate_plan_runs_three_servers_against_no_deflate_and_idle_engines() {
        let o = parse(&["--scenario".into(), "hub-deflate".into()]).unwrap();
        let plan = scenarios(&o, &mut Vec::new());
        let names: Vec<&str> = plan.iter().map(|s| s.name).collect();
        assert_eq!(names, ["hub-deflate-fanout-1k", "hub-deflate-idle"]);
        let fanout = &plan[0];
        assert_eq!(fanout.kind, "hub-deflate-fanout");
        let servers: Vec<(&str, &str, Option<&str>)> = fanout
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.role, s.baseline))
            .collect();
        assert_eq!(
            servers,
            [
                ("hub-deflate-off", "baseline", None),
                (
                    "hub-deflate-per-connection",
                    "chinwag",
                    Some("hub-deflate-off")
                ),
                (
                    "hub-deflate-compress-once",
                    "chinwag",
                    Some("hub-deflate-off")
                ),
            ]
        );
        // The switch is a flag of the server process; every server is the hub on yawc.
        let args: Vec<Vec<String>> = fanout
            .servers
            .iter()
            .map(|s| match &s.kind {
                ServerKind::Hub(h) => {
                    assert_eq!(h.bin, "examples/hub");
                    assert!(h.args.windows(2).any(|w| w == ["--engine", "yawc"]));
                    h.args.clone()
                }
                _ => panic!("{} is not a hub", s.name),
            })
            .collect();
        assert!(!args[0].iter().any(|a| a == "--deflate"));
        assert!(
            args[1]
                .windows(3)
                .any(|w| w == ["--deflate", "--compress-once", "false"])
        );
        assert!(
            args[2]
                .windows(3)
                .any(|w| w == ["--deflate", "--compress-once", "true"])
        );
        for pair in [
            ["--mode", "fanout"],
            ["--conns", "1000"],
            ["--size", "1024"],
            ["--payload", "chat"],
            ["--client-engine", "yawc"],
            ["--rate", DEFLATE_FANOUT_RATE],
        ] {
            assert!(fanout.load.windows(2).any(|w| w == pair), "{pair:?}");
        }
        assert!(fanout.load.iter().any(|a| a == "--deflate"));
        assert!(fanout.load.iter().any(|a| a == "--wire-bytes"));
        let idle = &plan[1];
        assert_eq!(idle.kind, "hub-idle");
        let servers: Vec<&str> = idle.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            servers,
            [
                "hub-rooms-tungstenite",
                "hub-rooms-fastwebsockets",
                "hub-rooms-yawc",
                "hub-rooms-yawc-deflate"
            ]
        );
        assert_eq!(idle.servers[3].baseline, Some("hub-rooms-yawc"));
        assert!(idle.load.windows(2).any(|w| w == ["--mode", "idle-auth"]));
        assert!(idle.load.windows(2).any(|w| w == ["--conns", "10000"]));
        assert!(idle.load.iter().any(|a| a == "--deflate"));
        // Selectable alone, quick.
        let o = parse(&[
            "--scenario".into(),
            "hub-deflate-fanout-1k".into(),
            "--quick".into(),
        ])
        .unwrap();
        let quick = scenarios(&o, &mut Vec::new());
        assert_eq!((quick.len(), quick[0].reps), (1, 1));
        assert!(quick[0].load.windows(2).any(|w| w == ["--conns", "100"]));
    }

    #[test]
    fn cluster_plan_runs_one_two_and_three_nodes_against_one() {
        let o = parse(&["--scenario".into(), "cluster".into()]).unwrap();
        let mut notes = Vec::new();
        let plan = scenarios(&o, &mut notes);
        let names: Vec<&str> = plan.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["cluster-send", "cluster-send-2k", "cluster-fanout-3k"]
        );
        let kinds: Vec<&str> = plan.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["cluster-send", "cluster-send", "cluster-fanout"]);
        assert!(plan.iter().all(|s| s.reps == 5));
        // Each size runs measured, then counting Redis's commands with MONITOR.
        assert_eq!(variants("cluster-send"), ["", "monitor"]);
        assert_eq!(variants("cluster-fanout"), ["", "monitor"]);
        let sc = &plan[0];
        assert!(sc.load.windows(2).any(|w| w == ["--rate", "1000"]));
        assert!(plan[1].load.windows(2).any(|w| w == ["--rate", "2000"]));
        let servers: Vec<&str> = sc.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            servers,
            ["cluster-1-node", "cluster-2-nodes", "cluster-3-nodes"]
        );
        let nodes: Vec<usize> = sc
            .servers
            .iter()
            .map(|s| match &s.kind {
                ServerKind::Cluster {
                    nodes,
                    args,
                    target,
                } => {
                    assert_eq!(*target, "gotalk+ws://{listen}/gotalk/");
                    // Every node on the run's Redis, its queue there too.
                    assert!(
                        args.windows(2)
                            .any(|w| w == ["--cluster-redis-url", "{redis}"])
                    );
                    assert!(args.windows(2).any(|w| w == ["--queue-backend", "redis"]));
                    *nodes
                }
                _ => panic!("{} is not a cluster", s.name),
            })
            .collect();
        assert_eq!(nodes, [1, 2, 3]);
        assert_eq!(sc.servers[0].role, "baseline");
        assert!(
            sc.servers[1..]
                .iter()
                .all(|s| s.role == "chinwag" && s.baseline == Some("cluster-1-node"))
        );
        assert!(sc.load.windows(2).any(|w| w == ["--mode", "send"]));
        // The 3 000-member room, spread over the nodes, on their room door.
        let room = &plan[2];
        assert!(room.load.windows(2).any(|w| w == ["--mode", "fanout"]));
        assert!(room.load.windows(2).any(|w| w == ["--conns", "3000"]));
        let targets: Vec<&str> = room
            .servers
            .iter()
            .map(|s| match &s.kind {
                ServerKind::Cluster { target, .. } => *target,
                _ => panic!("{} is not a cluster", s.name),
            })
            .collect();
        assert_eq!(targets, ["ws://{listen}/ws?room=bench"; 3]);
        assert!(notes.is_empty(), "{notes:?}");
        let o = parse(&[
            "--scenario".into(),
            "cluster-send-2k".into(),
            "--quick".into(),
        ])
        .unwrap();
        let quick = scenarios(&o, &mut Vec::new());
        assert_eq!((quick.len(), quick[0].reps), (1, 1));
    }
}
