//! `cargo xtask autobahn [--engine tungstenite|fastwebsockets|yawc|all] [--quick] [--cases '1.*,..']`
//!
//! Builds the `ws_echo` example (release), and for each engine starts it on a free loopback
//! port, runs the Autobahn|Testsuite fuzzing client against it (`xtask/autobahn/fuzzingclient.sh`
//! installs wstest on first use), stops it, and prints the case counts per engine. yawc runs
//! with `--deflate` (permessage-deflate accepted), so its 12.* and 13.* cases are played.
//! Fails when any case FAILED. Reports go to `target/autobahn/<engine>/index.html`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::server::{free_port, spawn_listening};
use crate::{cargo, root, run_cmd};

const ENGINES: [&str; 3] = ["tungstenite", "fastwebsockets", "yawc"];

struct Opts {
    engines: Vec<&'static str>,
    cases: String,
    exclude: String,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut engines = ENGINES.to_vec();
    let mut cases = "*".to_owned();
    let mut exclude = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--engine" => {
                let e = it.next().ok_or("--engine needs a value")?;
                engines = match e.as_str() {
                    "all" => ENGINES.to_vec(),
                    "tungstenite" => vec!["tungstenite"],
                    "fastwebsockets" => vec!["fastwebsockets"],
                    "yawc" => vec!["yawc"],
                    other => return Err(format!("unknown engine `{other}`")),
                };
            }
            "--quick" => exclude.extend(["9.*", "12.*", "13.*"].map(String::from)),
            "--cases" => cases = it.next().ok_or("--cases needs a value")?.clone(),
            "--exclude" => exclude.push(it.next().ok_or("--exclude needs a value")?.clone()),
            other => return Err(format!("unknown option `{other}` for autobahn")),
        }
    }
    Ok(Opts {
        engines,
        cases,
        exclude: exclude.join(","),
    })
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "chinwag-examples",
        "--example",
        "ws_echo",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("release/examples/ws_echo");
    let script = root().join("xtask/autobahn/fuzzingclient.sh");

    let mut summaries = Vec::new();
    let mut failed = false;
    for engine in &opts.engines {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        eprintln!("autobahn: starting ws_echo --engine {engine} on {addr}");
        let mut args = vec!["--engine", engine];
        // yawc implements permessage-deflate: its run covers 12.* and 13.* too.
        if *engine == "yawc" {
            args.push("--deflate");
        }
        let addr_arg = addr.to_string();
        args.extend(["--listen", &addr_arg]);
        let server = spawn_listening(Command::new(&bin).args(&args), addr)?;
        let outdir = target.join("autobahn").join(engine);
        let _ = std::fs::remove_dir_all(&outdir);
        let out = Command::new("bash")
            .arg(&script)
            .arg(format!("ws://{addr}"))
            .arg(&opts.cases)
            .arg(&opts.exclude)
            .arg(&outdir)
            .arg(format!("chinwag-{engine}"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        drop(server);
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        let summary = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("autobahn:"))
            .unwrap_or("autobahn: no summary")
            .trim_start_matches("autobahn: ")
            .to_owned();
        match out.status.code() {
            Some(0) => {}
            Some(1) => failed = true,
            _ => {
                return Err(format!(
                    "{engine}: the fuzzing client produced no result: {summary}"
                ));
            }
        }
        summaries.push(format!(
            "{engine:<15} {summary}   (report: {}/index.html)",
            outdir.display()
        ));
    }
    println!(
        "\nAutobahn|Testsuite results (cases: {}, excluded: [{}])",
        opts.cases, opts.exclude
    );
    for s in &summaries {
        println!("  {s}");
    }
    if failed {
        Err("some Autobahn cases FAILED".to_owned())
    } else {
        Ok(())
    }
}
