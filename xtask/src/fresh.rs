//! `cargo xtask fresh`: chinwag as an application that starts today builds it, with every
//! dependency resolved afresh (no lock file: the newest compatible releases, as `cargo add
//! chinwag` would pick) and `-D warnings`, so a warning in any of chinwag's crates fails it
//! (cargo caps the lints of crates.io dependencies, as in any application). CI's own builds are
//! `--locked` and would not see, say, a deprecation in a newer rustls. Two steps:
//!
//! 1. the README's library example, as a crate of its own outside the workspace that depends
//!    only on `chinwag` (by path);
//! 2. every example of the facade's docs: the doctests of `chinwag` and of the layer crates it
//!    shows as its modules (they name only `chinwag::` paths, which `cargo xtask tidy` checks;
//!    a doctest is a crate of its own that uses the library as a dependency), in a copy of the
//!    committed workspace (`git ls-files`) whose lock file is made afresh.
//!
//! Not part of `cargo xtask test`: an upstream release can fail it without any change here. Run
//! it when dependencies move and before a release. Needs crates.io; builds in
//! `target/fresh/` (a full build the first time).

use std::fs;
use std::path::Path;

use crate::{cargo, root, run_cmd};

/// The first ```rust block under the README's `## The library` heading.
fn library_example(readme: &str) -> Option<String> {
    let section = readme.split("\n## The library").nth(1)?;
    let section = section.split("\n## ").next()?;
    let start = section.find("```rust\n")? + "```rust\n".len();
    let len = section[start..].find("\n```")?;
    Some(format!("{}\n", &section[start..start + len]))
}

fn manifest(chinwag: &Path) -> String {
    format!(
        "[package]\n\
         name = \"fresh-chinwag-app\"\n\
         version = \"0.0.0\"\n\
         edition = \"2024\"\n\
         publish = false\n\
         \n\
         [dependencies]\n\
         chinwag = {{ path = {:?} }}\n\
         \n\
         # Not a member of the chinwag workspace.\n\
         [workspace]\n",
        chinwag.display().to_string()
    )
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("fresh takes no arguments (got `{a}`)"));
    }
    let root = root();
    let readme = fs::read_to_string(root.join("README.md"))
        .map_err(|e| format!("cannot read README.md: {e}"))?;
    let example =
        library_example(&readme).ok_or("README.md has no ```rust block under `## The library`")?;
    let dir = root.join("target").join("fresh");
    let app = dir.join("app");
    let write = |path: &Path, text: &str| {
        fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    fs::create_dir_all(app.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", app.display()))?;
    write(
        &app.join("Cargo.toml"),
        &manifest(&root.join("crates").join("chinwag")),
    )?;
    write(&app.join("src").join("main.rs"), &example)?;
    let manifest = relock(&app)?;
    run_cmd(
        cargo()
            .args(["tree", "--depth", "0", "-i", "rustls", "--manifest-path"])
            .arg(&manifest),
    )?;
    run_cmd(strict(
        cargo().arg("build").arg("--manifest-path").arg(&manifest),
        &dir,
    ))?;
    eprintln!(
        "fresh: the README's library example builds against fresh dependencies with -D warnings"
    );

    let ws = dir.join("workspace");
    copy_committed(&root, &ws)?;
    let manifest = relock(&ws)?;
    let mut test = cargo();
    test.args(["test", "--doc", "--manifest-path"])
        .arg(&manifest);
    for krate in std::iter::once("chinwag").chain(crate::tidy::INLINED) {
        test.args(["-p", krate]);
    }
    run_cmd(strict(&mut test, &dir))?;
    eprintln!(
        "fresh: every example of the facade's docs builds against fresh dependencies with -D warnings"
    );
    Ok(())
}

/// Removes the lock file of the package or workspace in `dir` and makes a fresh one (what an
/// application resolves today); its manifest.
fn relock(dir: &Path) -> Result<std::path::PathBuf, String> {
    let _ = fs::remove_file(dir.join("Cargo.lock"));
    let manifest = dir.join("Cargo.toml");
    run_cmd(
        cargo()
            .arg("generate-lockfile")
            .arg("--manifest-path")
            .arg(&manifest),
    )?;
    Ok(manifest)
}

/// `cmd` with warnings as errors (code and doctests), building in `dir/target`.
fn strict<'a>(cmd: &'a mut std::process::Command, dir: &Path) -> &'a mut std::process::Command {
    cmd.env("RUSTFLAGS", "-D warnings")
        .env("RUSTDOCFLAGS", "-D warnings")
        .env("CARGO_TARGET_DIR", dir.join("target"))
}

/// Copies the files git tracks in `root` (with their working-tree contents) to `to`,
/// replacing what was there.
fn copy_committed(root: &Path, to: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(to);
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    if !out.status.success() {
        return Err("git ls-files failed".into());
    }
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        let (from, dest) = (root.join(&*name), to.join(&*name));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // A file deleted in the working tree but still tracked is skipped.
        if from.is_file() {
            fs::copy(&from, &dest).map_err(|e| format!("cannot copy {name}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_example_is_the_readmes_first_rust_block_under_its_heading() {
        let readme = "# x\n```rust\nnot this\n```\n## The library\ntext\n```sh\nno\n```\n\
                      ```rust\nfn main() {}\n```\n```rust\nsecond\n```\n## Next\n";
        assert_eq!(library_example(readme).as_deref(), Some("fn main() {}\n"));
        assert_eq!(library_example("## Other\n```rust\nx\n```\n"), None);
        let real = fs::read_to_string(root().join("README.md")).unwrap();
        let ex = library_example(&real).expect("the README has the example");
        assert!(ex.contains("fn main()"), "{ex}");
    }
}
