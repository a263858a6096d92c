//! `cargo xtask fuzz`: runs the libFuzzer targets in `fuzz/` with `cargo fuzz`.
//!
//! Only the stable toolchain exists on the project's machines; `cargo fuzz` needs nightly
//! flags (`-Zsanitizer`), which stable rustc accepts with `RUSTC_BOOTSTRAP=1`.

use crate::{cargo, root, run_cmd};
use std::process::Command;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 60;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" | "-s" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .map_err(|_| format!("--seconds: `{v}` is not a number"))?;
            }
            t if !t.starts_with('-') => targets.push(t.to_string()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    ensure_cargo_fuzz()?;
    if targets.is_empty() {
        targets = list_targets()?;
    }
    for t in &targets {
        let corpus = root().join("fuzz/corpus").join(t);
        let seeds = root().join("fuzz/seeds").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("mkdir {}: {e}", corpus.display()))?;
        run_cmd(
            cargo()
                .env("RUSTC_BOOTSTRAP", "1")
                .args(["fuzz", "run", "--fuzz-dir", "fuzz", t])
                .arg(&corpus)
                .arg(&seeds)
                .args(["--", &format!("-max_total_time={seconds}")]),
        )?;
    }
    eprintln!(
        "xtask fuzz: {} target(s) ran {seconds} s each with no crash",
        targets.len()
    );
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let ok = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("xtask fuzz: installing cargo-fuzz (about 3 minutes on 2 cores)");
        run_cmd(cargo().args(["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}

fn list_targets() -> Result<Vec<String>, String> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "list", "--fuzz-dir", "fuzz"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}
