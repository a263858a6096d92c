//! `cargo xtask bench --instructions [--quick] [--scenario NAME].. [--list]`: instructions per
//! message (issue 21), counted by callgrind, which machine load does not move.
//!
//! Each server runs under `valgrind --tool=callgrind` (the release build, the same binary and
//! arguments as in the wall-clock scenario named in [`CASES`]), loaded by `chinwag-load count`
//! running natively (`crates/chinwag-load/src/count.rs`: closed loop, one message at a time,
//! a fixed count), and is then stopped with SIGTERM (the examples shut down gracefully; the
//! baselines die of it, and valgrind still writes its totals). Each server runs twice, with
//! `N` and with `2N` messages; instructions per message are `(I(2N) - I(N)) / (D(2N) - D(N))`,
//! `I` the `totals:` line of the callgrind file (user-space instructions of every thread of
//! the server process) and `D` the deliveries the load generator counted (echoes; each
//! member's copy of a publish; the recipient's direct messages), so start-up, connection
//! set-up and shutdown cancel out. A redis-server is not counted (it runs natively): the Redis
//! queue row is the chinwag process alone.
//!
//! The table (scenario, server, instructions per message, its baseline's, the ratio) is
//! printed and written to `target/bench/<timestamp>-instructions/instructions.md`, with the
//! raw counts in `instructions.tsv` and each run's callgrind file in `callgrind/` (open with
//! `callgrind_annotate` for a profile).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{
    HUB_SECRET, Server, ServerKind, git, machine, selects, target_dir, utc, without_chinwag_env,
};
use crate::server::{KillOnDrop, free_port, spawn_listening};
use crate::{cargo, run_cmd};

/// One instruction-count scenario: what `chinwag-load count` sends, to which servers of
/// which wall-clock scenario.
struct Case {
    name: &'static str,
    /// The wall-clock scenario whose servers (binaries and arguments) are run.
    from: &'static str,
    /// Those servers, by name, in the order they run.
    servers: &'static [&'static str],
    /// `chinwag-load count --mode`.
    mode: &'static str,
    size: usize,
    /// Fan-out: members of the room; send: sender/recipient pairs at once (`--quick`: a
    /// tenth).
    members: usize,
    /// `N`: messages of the shorter run (`--quick`: a quarter).
    messages: u64,
    /// The server every other server of the case is divided by, when the wall-clock
    /// scenario names none.
    baseline: Option<&'static str>,
}

/// The scenarios, in priority order: RPC echo over TCP, WebSocket echo on each engine at
/// 20 B and 1 KiB, fan-out to 1 000 members, a direct message through each queue backend.
/// `N` is small enough that a pair of runs under callgrind takes well under a minute.
/// The WebSocket echo servers, each chinwag engine beside its raw one (yawc has none).
const ECHO_SERVERS: &[&str] = &[
    "chinwag-tungstenite",
    "raw-tungstenite",
    "chinwag-fastwebsockets",
    "raw-fastwebsockets",
    "chinwag-yawc",
];

const CASES: [Case; 6] = [
    Case {
        name: "instr-rpc-tcp-64B",
        from: "gotalk-rpc-tcp-1",
        servers: &["chinwag-rpc", "raw-gotalk"],
        mode: "echo",
        size: 64,
        members: 0,
        messages: 2000,
        baseline: None,
    },
    Case {
        name: "instr-ws-echo-20B",
        from: "ws-echo-20B",
        servers: ECHO_SERVERS,
        mode: "echo",
        size: 20,
        members: 0,
        messages: 2000,
        baseline: None,
    },
    Case {
        name: "instr-ws-echo-1KiB",
        from: "ws-echo-1KiB",
        servers: ECHO_SERVERS,
        mode: "echo",
        size: 1024,
        members: 0,
        messages: 2000,
        baseline: None,
    },
    Case {
        name: "instr-hub-fanout-1k",
        from: "hub-fanout-1k",
        servers: &[
            "hub-rooms-tungstenite",
            "raw-fanout",
            "hub-rooms-fastwebsockets",
            "hub-rooms-yawc",
        ],
        mode: "fanout",
        size: 100,
        members: 1000,
        messages: 20,
        baseline: None,
    },
    // The chat door over TCP of `examples/hub` with each queue backend, as `hub-replay`
    // starts it (a private redis-server for Redis), divided by the memory queue.
    Case {
        name: "instr-hub-dm",
        from: "hub-replay",
        servers: &["hub-replay-memory", "hub-replay-redb", "hub-replay-redis"],
        mode: "send",
        size: 100,
        members: 0,
        messages: 300,
        baseline: Some("hub-replay-memory"),
    },
    // The same with 32 sender/recipient pairs at once (`members`: pairs), as users of a server
    // send: a durable queue's commits are shared (group commit) instead of one per push and
    // one per ack. Closed loop: every pair waits for its delivery, so a commit gathers what
    // the pairs have pending, under callgrind as in real time.
    Case {
        name: "instr-hub-dm-32",
        from: "hub-replay",
        servers: &["hub-replay-memory", "hub-replay-redb", "hub-replay-redis"],
        mode: "send",
        size: 100,
        members: 32,
        messages: 640,
        baseline: Some("hub-replay-memory"),
    },
];

/// How long a server under valgrind may take to exit after SIGTERM (or to open its second
/// port).
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

struct Opts {
    quick: bool,
    scenarios: Vec<String>,
    list: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        scenarios: Vec::new(),
        list: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--instructions" => {}
            "--quick" => o.quick = true,
            "--list" => o.list = true,
            "--scenario" => {
                let s = it.next().ok_or("--scenario needs a value")?;
                if !CASES.iter().any(|c| selects(s, c.name)) {
                    let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
                    return Err(format!(
                        "unknown instruction scenario `{s}`; scenarios: {}",
                        names.join(", ")
                    ));
                }
                o.scenarios.push(s.clone());
            }
            other => return Err(format!("unknown option `{other}` for bench --instructions")),
        }
    }
    Ok(o)
}

/// One server's pair of runs.
struct Row {
    case: &'static str,
    server: String,
    baseline: Option<String>,
    /// `(N, I(N), D(N))` and the same for `2N`.
    runs: [(u64, u64, u64); 2],
}

impl Row {
    fn per_message(&self) -> Option<f64> {
        let [(_, i1, d1), (_, i2, d2)] = self.runs;
        (i1 > 0 && d1 > 0 && d2 > d1 && i2 >= i1).then(|| (i2 - i1) as f64 / (d2 - d1) as f64)
    }
}

pub(super) fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| o.scenarios.is_empty() || o.scenarios.iter().any(|s| selects(s, c.name)))
        .collect();
    // The wall-clock plan, for its servers.
    let plan = super::scenarios(&super::parse(&[])?, &mut Vec::new());
    let server_of = |case: &Case, name: &str| -> Result<Server, String> {
        plan.iter()
            .find(|s| s.name == case.from)
            .and_then(|s| s.servers.iter().find(|x| x.name == name))
            .cloned()
            .ok_or(format!("{}: no server {name} in {}", case.name, case.from))
    };
    if o.list {
        for c in &cases {
            let (n, members) = sizes(c, o.quick);
            println!(
                "{:22} {} {} B, N={n}{}: {}",
                c.name,
                c.mode,
                c.size,
                if c.members > 0 {
                    let what = if c.mode == "send" { "pairs" } else { "members" };
                    format!(", {members} {what}")
                } else {
                    String::new()
                },
                c.servers.join(", ")
            );
        }
        return Ok(());
    }
    let version = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("bench --instructions needs valgrind (callgrind): {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    // The same build as the wall-clock bench's (the same features unified).
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "chinwag-load",
        "-p",
        "chinwag-examples",
        "--examples",
        "--bins",
    ]))?;
    let rel = target_dir().join("release");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let (y, mo, d, h, mi, s) = utc(now);
    let date = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC");
    let dir = target_dir().join("bench").join(format!(
        "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-instructions"
    ));
    let cg = dir.join("callgrind");
    fs::create_dir_all(&cg).map_err(|e| format!("{}: {e}", cg.display()))?;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut notes = vec![
        "hub-fanout-1k with yawc and permessage-deflate: not run (the `hub-deflate-fanout-1k` \
         servers are not instruction cases yet)"
            .to_owned(),
    ];
    for case in &cases {
        let (n, members) = sizes(case, o.quick);
        for name in case.servers {
            let server = server_of(case, name)?;
            let mut runs = [(0, 0, 0); 2];
            for (k, count) in [n, 2 * n].into_iter().enumerate() {
                let label = format!("{} {name} N={count}", case.name);
                eprintln!("bench --instructions: {label}");
                let file = cg.join(format!("{}-{name}-{count}.out", case.name));
                match one(&rel, &server, case, count, members, &file) {
                    Ok((i, d)) => runs[k] = (count, i, d),
                    Err(e) => {
                        eprintln!("bench --instructions: {label}: {e}");
                        notes.push(format!("{label}: failed: {e}"));
                    }
                }
            }
            let baseline = case
                .baseline
                .filter(|b| b != name)
                .or(server.baseline)
                .map(|b| display_name(case, b));
            rows.push(Row {
                case: case.name,
                server: display_name(case, name),
                baseline,
                runs,
            });
        }
    }
    let table = table(&rows);
    let meta = format!(
        "Date: {date}. Commit: {}. Machine: {}. {version}, `--tool=callgrind`. \
         Mode: {}. Took {:.0} s.\n",
        git(&["rev-parse", "--short", "HEAD"]),
        machine(),
        if o.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64(),
    );
    let mut md = format!(
        "# Instruction counts (issue 21)\n\n{meta}\nCommand: `cargo xtask bench --instructions{}`\n\n{table}",
        if o.quick { " --quick" } else { "" }
    );
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for n in &notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    fs::write(dir.join("instructions.md"), &md).map_err(|e| e.to_string())?;
    fs::write(dir.join("instructions.tsv"), tsv(&rows)).map_err(|e| e.to_string())?;
    println!("{md}");
    eprintln!(
        "bench --instructions: {}",
        dir.join("instructions.md").display()
    );
    Ok(())
}

/// `N` and the fan-out's members of `case` (smaller with `--quick`).
fn sizes(case: &Case, quick: bool) -> (u64, usize) {
    if quick {
        ((case.messages / 4).max(1), (case.members / 10).max(1))
    } else {
        (case.messages, case.members)
    }
}

/// The queue rows are named for what they measure (`hub-dm-redb`), not for the wall-clock
/// scenario they borrow their servers from.
fn display_name(case: &Case, name: &str) -> String {
    match (case.from, name.strip_prefix("hub-replay-")) {
        ("hub-replay", Some(backend)) => format!("hub-dm-{backend}"),
        _ => name.to_owned(),
    }
}

fn table(rows: &[Row]) -> String {
    let per = |server: &str, case: &str| {
        rows.iter()
            .find(|r| r.case == case && r.server == server)
            .and_then(Row::per_message)
    };
    let mut t = String::from(
        "| scenario | server | instr/msg | baseline | baseline instr/msg | ratio |\n\
         |---|---|---:|---|---:|---:|\n",
    );
    for r in rows {
        let mine = r.per_message();
        let theirs = r.baseline.as_deref().and_then(|b| per(b, r.case));
        let fmt = |v: Option<f64>| v.map_or("failed".to_owned(), |v| format!("{v:.0}"));
        let ratio = match (mine, theirs) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "–".to_owned(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {ratio} |\n",
            r.case,
            r.server,
            fmt(mine),
            r.baseline.as_deref().unwrap_or("–"),
            if r.baseline.is_some() {
                fmt(theirs)
            } else {
                "–".to_owned()
            },
        ));
    }
    t
}

fn tsv(rows: &[Row]) -> String {
    let mut t = String::from(
        "scenario\tserver\tN\tinstructions(N)\tdeliveries(N)\t2N\tinstructions(2N)\tdeliveries(2N)\tinstr_per_msg\n",
    );
    for r in rows {
        let [(n1, i1, d1), (n2, i2, d2)] = r.runs;
        t.push_str(&format!(
            "{}\t{}\t{n1}\t{i1}\t{d1}\t{n2}\t{i2}\t{d2}\t{}\n",
            r.case,
            r.server,
            r.per_message().map_or(String::new(), |v| format!("{v:.1}"))
        ));
    }
    t
}

/// A server under callgrind, with its private redis-server and scratch path.
struct Running {
    server: KillOnDrop,
    url: String,
    redis: Option<KillOnDrop>,
    tmp: Option<PathBuf>,
}

/// Starts `server` under callgrind (writing `file`), as `bench`'s `one_run` starts it.
fn start(rel: &Path, server: &Server, file: &Path) -> Result<Running, String> {
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(format!(
            "--log-file={}",
            file.with_extension("log").display()
        ));
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    match &server.kind {
        ServerKind::Local {
            bin,
            args,
            listen,
            other,
            scheme,
        } => {
            cmd.arg(rel.join(bin))
                .args(args)
                .arg(listen)
                .arg(addr.to_string());
            if let Some(flag) = other {
                cmd.arg(flag).arg(format!("127.0.0.1:{}", free_port()?));
            }
            let url = match *scheme {
                "ws" => format!("ws://{addr}/"),
                "gotalk+ws" => format!("gotalk+ws://{addr}/gotalk/"),
                other => format!("{other}://{addr}"),
            };
            let server = spawn_listening(&mut cmd, addr)?;
            Ok(Running {
                server,
                url,
                redis: None,
                tmp: None,
            })
        }
        ServerKind::Hub(h) => {
            let tcp: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let (args, redis) = h.run_args(file, addr, tcp)?;
            cmd.arg(rel.join(h.bin)).args(&args);
            without_chinwag_env(&mut cmd);
            let url = h
                .target
                .replace("{listen}", &addr.to_string())
                .replace("{tcp}", &tcp.to_string());
            let mut server = spawn_listening(&mut cmd, addr)?;
            if h.tcp.is_some() {
                // The chat door over TCP opens after the HTTP port: under valgrind, visibly.
                wait_listening(&mut server, tcp)?;
            }
            Ok(Running {
                server,
                url,
                redis,
                tmp: Some(file.with_extension("data")),
            })
        }
        _ => Err(format!("{}: not a server this machine starts", server.name)),
    }
}

/// One run: `server` under callgrind, `count` messages; its instructions and the deliveries.
fn one(
    rel: &Path,
    server: &Server,
    case: &Case,
    count: u64,
    members: usize,
    file: &Path,
) -> Result<(u64, u64), String> {
    let _ = fs::remove_file(file);
    let mut running = start(rel, server, file)?;
    let mut load = Command::new(rel.join("chinwag-load"));
    load.args(["count", "--mode", case.mode, "--target", &running.url])
        .args(["--messages", &count.to_string()])
        .args(["--size", &case.size.to_string()])
        .args(["--members", &members.max(1).to_string()])
        .args(["--secret", HUB_SECRET]);
    let out = load
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run chinwag-load: {e}"));
    // Stop the server whatever the load did: SIGTERM, then its totals.
    let stopped = stop(&mut running.server);
    drop(running.redis.take());
    if let Some(tmp) = &running.tmp {
        let _ = fs::remove_file(tmp);
        let _ = fs::remove_dir_all(tmp);
        let _ = fs::remove_dir_all(file.with_extension("redis"));
    }
    let out = out?;
    if !out.status.success() {
        return Err(format!("chinwag-load count exited with {}", out.status));
    }
    stopped?;
    let deliveries = json_u64(&String::from_utf8_lossy(&out.stdout), "deliveries")
        .ok_or("chinwag-load count printed no deliveries")?;
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((
        totals(&text).ok_or("no totals in the callgrind file")?,
        deliveries,
    ))
}

/// Waits (bounded) until the started `server` accepts connections on `addr` too.
fn wait_listening(server: &mut KillOnDrop, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!(
                "the server exited before listening on {addr}: {status}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the server did not listen on {addr}"))
}

/// SIGTERM, then waits (bounded) for the process to exit.
fn stop(server: &mut KillOnDrop) -> Result<(), String> {
    let pid = server.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -TERM {pid} failed"));
    }
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Ok(Some(_)) = server.0.try_wait() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the server did not exit within {} s of SIGTERM",
                EXIT_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The instruction count of a callgrind file: its `totals:` line (else `summary:`).
fn totals(text: &str) -> Option<u64> {
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

/// The unsigned number after `"key":` in a flat JSON object.
fn json_u64(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_deliveries_are_read() {
        let cg = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 300209\n\
                  fn=main\n1 5\ntotals: 300210\n";
        assert_eq!(totals(cg), Some(300_210));
        assert_eq!(totals("summary: 7\n"), Some(7));
        assert_eq!(totals("events: Ir\n"), None);
        let json = r#"{"sent":20,"deliveries":20157,"probes":2,"probe_deliveries":157}"#;
        assert_eq!(json_u64(json, "deliveries"), Some(20_157));
        assert_eq!(json_u64(json, "sent"), Some(20));
        assert_eq!(json_u64(json, "nope"), None);
    }

    #[test]
    fn per_message_is_the_difference_over_the_extra_deliveries() {
        let row = Row {
            case: "x",
            server: "s".into(),
            baseline: None,
            runs: [(10, 1_000_000, 10), (20, 1_050_000, 20)],
        };
        assert_eq!(row.per_message(), Some(5000.0));
        let failed = Row {
            runs: [(10, 0, 0), (20, 1_050_000, 20)],
            ..row
        };
        assert_eq!(failed.per_message(), None);
    }

    #[test]
    fn every_case_names_servers_of_the_wall_clock_plan() {
        let plan = super::super::scenarios(&super::super::parse(&[]).unwrap(), &mut Vec::new());
        for c in &CASES {
            let sc = plan.iter().find(|s| s.name == c.from).expect(c.from);
            for name in c.servers {
                assert!(sc.servers.iter().any(|s| s.name == *name), "{name}");
            }
        }
        assert!(parse(&["--scenario".into(), "instr-ws-echo".into()]).is_ok());
        assert!(parse(&["--scenario".into(), "nope".into()]).is_err());
        assert_eq!(display_name(&CASES[4], "hub-replay-redb"), "hub-dm-redb");
    }
}
