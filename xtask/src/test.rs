//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{cargo, run_cmd};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`xtask test` takes no arguments (got `{a}`)"));
    }
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
    eprintln!("xtask test: all checks passed");
    Ok(())
}
