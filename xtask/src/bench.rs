//! `cargo xtask bench [--quick] [--scenario NAME].. [--peer NAME=URL].. [--reps N]
//! [--idle-conns N] [--micro] [--list]`
//!
//! Builds the servers and the load generator in release mode, then runs each scenario: every
//! server is started as its own process on a free loopback port, loaded by `chinwag-load run`
//! (which reads the server's CPU time and RSS from /proc/<pid>), and killed. Repetitions are
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
//! `--micro` runs the criterion micro-benchmarks instead (`cargo bench` on every package that
//! has a `[[bench]]`, or `-p chinwag-bench` when a top-level `benches/` package exists).
//!
//! This file stays std-only like the rest of xtask: measurement, statistics and charts live in
//! `chinwag-load`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::server::{free_port, spawn_listening};
use crate::{cargo, root, run_cmd};

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

/// Scenario names; `--scenario X` selects `X` and every `X-*` (`gotalk-rpc`, `ws-echo`).
const SCENARIOS: [&str; 10] = [
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
        servers.extend(peers("ws"));
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
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "chinwag-load",
        "-p",
        "chinwag-examples",
        "--bins",
        "--examples",
    ]))?;
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
    let meta = format!(
        "date={y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC\ncommit={}{dirty}\nmode={}\nmachine={}\nreps={}\n",
        git(&["rev-parse", "--short", "HEAD"]),
        if o.quick { "quick" } else { "full" },
        machine(),
        plan.first().map_or(0, |s| s.reps),
    );
    fs::write(dir.join("meta.txt"), meta).map_err(|e| e.to_string())?;

    let total: usize = plan
        .iter()
        .map(|s| s.reps * s.servers.len() * if s.kind == "slow-consumer" { 2 } else { 1 })
        .sum();
    let started = Instant::now();
    let mut n = 0;
    for sc in &plan {
        for rep in 0..sc.reps {
            for server in &sc.servers {
                let variants: &[&str] = if sc.kind == "slow-consumer" {
                    &["alone", "stalled"]
                } else {
                    &[""]
                };
                for variant in variants {
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
                    if *variant == "stalled" {
                        extra.extend(strs(&["--stalled", "1", "--stalled-size", "65536"]));
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
    let _running = match &server.kind {
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
            Some(running)
        }
        ServerKind::Peer { url } => {
            cmd.args(["--target", url]);
            None
        }
    };
    cmd.args(&sc.load).args(extra).arg("--json").arg(file);
    for (k, v) in meta {
        cmd.arg("--meta").arg(format!("{k}={v}"));
    }
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", load.display()))?;
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
        assert_eq!(plan.len(), if rpc { 10 } else { 6 });
        assert_eq!(rpc, plan.iter().any(|s| s.name.starts_with("gotalk-rpc")));
        assert_eq!(!rpc, notes.iter().any(|n| n.starts_with("gotalk-rpc")));
        let o = parse(&["--scenario".into(), "ws-echo".into()]).unwrap();
        assert_eq!(scenarios(&o, &mut Vec::new()).len(), 3);
        let o = parse(&["--scenario".into(), "idle".into()]).unwrap();
        let mut notes = Vec::new();
        assert_eq!(scenarios(&o, &mut notes).len(), 1);
        assert!(notes.is_empty());
        assert!(parse(&["--scenario".into(), "nope".into()]).is_err());
    }
}
