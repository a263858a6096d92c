//! `cargo xtask`: the project's automation, one binary behind a cargo alias
//! (see `.cargo/config.toml`), in the style of rust-analyzer's xtask.
//!
//! Subcommands:
//!
//! * `cargo xtask test` — format check, clippy with `-D warnings` on every target (including the
//!   fuzz crate, so it cannot rot), and the whole test suite including doc tests.
//! * `cargo xtask tidy` — the layering check (`xtask/layers.txt`: which chinwag crate may depend
//!   on which), the rule that only `chinwag-server` reads the environment or handles signals,
//!   that the facade built with only the fastwebsockets engine pulls no tungstenite crate (with
//!   only the yawc engine: neither tungstenite nor fastwebsockets), and
//!   that the layers' doc examples use the facade's paths (`chinwag::hub::`).
//! * `cargo xtask smoke` — the shipped examples run as a user runs them (`rpc_echo` with
//!   `rpc_call`'s single and streaming requests over TCP and WebSocket, SIGTERM exits 0); the
//!   last step of `cargo xtask test`.
//! * `cargo xtask fuzz [--seconds N] [TARGET...]` — runs every fuzz target (or the named ones) for
//!   N seconds each (default 60) with `cargo fuzz` on the stable toolchain
//!   (`RUSTC_BOOTSTRAP=1`); installs `cargo-fuzz` if it is missing.
//! * `cargo xtask autobahn [--engine tungstenite|fastwebsockets|yawc|all] [--quick] [--cases ..]` —
//!   runs the Autobahn|Testsuite fuzzing client against `ws_echo` for each engine and fails on
//!   any FAILED case.
//! * `cargo xtask bench [--quick] [--scenario NAME].. [--peer NAME=URL].. [--micro]` — load
//!   benchmarks of chinwag's servers against raw-engine baselines (`target/bench/<timestamp>/`),
//!   or the criterion micro-benchmarks with `--micro`, or instructions per message under
//!   callgrind with `--instructions`; see `xtask/src/bench.rs`.
//! * `cargo xtask fresh` — the README's library example as an application outside the
//!   workspace builds it, and every doc example of the facade: freshly resolved dependencies,
//!   `-D warnings` (`xtask/src/fresh.rs`).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

mod autobahn;
mod bench;
mod fresh;
mod fuzz;
mod server;
mod smoke;
mod test;
mod tidy;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next();
    let rest: Vec<String> = args.collect();
    let result = match cmd.as_deref() {
        Some("test") => test::run(&rest),
        Some("tidy") => tidy::run(&rest),
        Some("smoke") => smoke::run(),
        Some("fuzz") => fuzz::run(&rest),
        Some("autobahn") => autobahn::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("fresh") => fresh::run(&rest),
        Some("help" | "--help" | "-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown subcommand `{other}`; try `cargo xtask help`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         commands:\n  \
         test                     tidy, fmt check, clippy -D warnings, all tests (incl. doc tests)\n  \
         tidy                     layering check (xtask/layers.txt), no env/signals in libraries,\n                           \
         facade engines independent\n  \
         smoke                    the example servers and rpc_call run as a user runs them\n  \
         fuzz [--seconds N] [T..] run fuzz targets (default: all, 60 s each)\n  \
         autobahn [--engine E|all] [--quick] [--cases '1.*,..']  WebSocket conformance (ws_echo)\n  \
         bench [--quick] [--scenario S].. [--peer NAME=URL].. [--reps N] [--micro] [--list]  load benchmarks (target/bench/)\n  \
         bench --instructions [--quick] [--scenario S].. [--list]  instructions per message under callgrind\n  \
         fresh                    the README example and the facade's doc examples against fresh dependencies, -D warnings\n"
    );
}

/// The workspace root (the parent of this crate's manifest directory).
pub(crate) fn root() -> PathBuf {
    // `cargo run` (the `cargo xtask` alias) sets CARGO_MANIFEST_DIR at run time; prefer it over
    // the compile-time value, which is wrong when two checkouts share one target directory.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.as_path()
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs `cmd` in the workspace root, echoing it first; fails if it exits non-zero.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    cmd.current_dir(root());
    eprintln!("$ {}", render(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", render(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {status}", render(cmd)))
    }
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `cargo` as invoked by the user (respects `$CARGO`).
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
