//! `cargo xtask fresh`: the README's library example built the way an application outside this
//! workspace builds it — a crate of its own depending only on `chinwag` (by path), with no lock
//! file, so every dependency resolves to its newest compatible release as a `cargo add chinwag`
//! would today, and with `RUSTFLAGS=-D warnings`, so a warning in any of chinwag's crates fails
//! it (cargo caps the lints of crates.io dependencies, as in any application). CI's own builds
//! are `--locked` and would not see, say, a deprecation in a newer rustls.
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
    // No lock file: what an application resolves today.
    let _ = fs::remove_file(app.join("Cargo.lock"));
    let manifest = app.join("Cargo.toml");
    run_cmd(
        cargo()
            .arg("generate-lockfile")
            .arg("--manifest-path")
            .arg(&manifest),
    )?;
    run_cmd(
        cargo()
            .args(["tree", "--depth", "0", "-i", "rustls", "--manifest-path"])
            .arg(&manifest),
    )?;
    run_cmd(
        cargo()
            .arg("build")
            .arg("--manifest-path")
            .arg(&manifest)
            .env("RUSTFLAGS", "-D warnings")
            .env("CARGO_TARGET_DIR", dir.join("target")),
    )?;
    eprintln!(
        "fresh: the README's library example builds against fresh dependencies with -D warnings"
    );
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
