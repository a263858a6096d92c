//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{cargo, run_cmd};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`xtask test` takes no arguments (got `{a}`)"));
    }
    preflight()?;
    crate::tidy::run(&[])?;
    run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Unit, integration and doc tests of every crate. The fuzz crate has no tests; clippy above
    // already compiled it.
    run_cmd(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "chinwag-fuzz",
        "--locked",
    ]))?;
    // The JavaScript client's tests (node --test) run against the real `rpc_echo` server.
    run_cmd(cargo().args([
        "build",
        "--locked",
        "-p",
        "chinwag-examples",
        "--example",
        "rpc_echo",
    ]))?;
    let rpc_echo = crate::root().join("target/debug/examples/rpc_echo");
    run_cmd(
        std::process::Command::new("bash")
            .arg(crate::root().join("clients/js/run-tests.sh"))
            .env("CHINWAG_RPC_ECHO", rpc_echo),
    )?;
    // The chat client's Node tests and the browser tests (playwright-core driving Debian's
    // chromium) against the real chinwag-server binary.
    run_cmd(cargo().args(["build", "--locked", "-p", "chinwag-server"]))?;
    run_cmd(
        std::process::Command::new("bash")
            .arg(crate::root().join("clients/js/run-server-tests.sh"))
            .env(
                "CHINWAG_SERVER",
                crate::root().join("target/debug/chinwag-server"),
            ),
    )?;
    crate::smoke::run()?;
    eprintln!("xtask test: all checks passed");
    Ok(())
}

/// The programs the tests start (real servers and runtimes, never mocks), checked first so a
/// missing one stops the run at once with the line that installs it, not minutes in.
fn preflight() -> Result<(), String> {
    let needed = [
        ("redis-server", "redis-server"),
        ("node", "nodejs"),
        ("npm", "npm"),
        ("chromium", "chromium"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(prog, _)| {
            std::process::Command::new(prog)
                .arg("--version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the tests need programs that are not installed; on Debian:\n    \
         sudo apt-get install -y {}\n(`.ci/run` installs them, then runs `cargo xtask test`)",
        missing.join(" ")
    ))
}
