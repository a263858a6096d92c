//! `cargo xtask tidy`: the layering check. Reads `cargo metadata` and fails when a crate depends
//! on a chinwag crate it must not (the allowed arrows are in `xtask/layers.txt`), and when a
//! library crate reads the environment or handles signals (only `chinwag-server`, and tooling,
//! may: libraries take their settings as values), when the facade built with only the
//! fastwebsockets engine pulls a tungstenite crate or with only the yawc engine a tungstenite or
//! fastwebsockets crate, when the hub's sans-IO core
//! (`crates/chinwag-hub/src/core`) names a runtime, an I/O crate, the driver or a door, a lock or
//! a clock, when a file of `crates/chinwag-hub/src` grows over 600 lines, and when an example in
//! the docs of a crate the facade shows as its own module names the inner crate
//! (`chinwag_hub::`) instead of the facade's path (`chinwag::hub::`).

use std::collections::BTreeMap;

use crate::{cargo, root};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`xtask tidy` takes no arguments (got `{a}`)"));
    }
    let rules = read_rules()?;
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let meta = json::parse(&text).map_err(|e| format!("cargo metadata: bad JSON: {e}"))?;
    let mut problems = Vec::new();
    let mut libraries = Vec::new();
    for pkg in meta
        .get("packages")
        .and_then(json::Value::as_array)
        .unwrap_or(&[])
    {
        let name = pkg.get("name").and_then(json::Value::as_str).unwrap_or("?");
        let Some(allowed) = rules.get(name) else {
            problems.push(format!(
                "{name}: not in xtask/layers.txt (add it with the chinwag crates it may use)"
            ));
            continue;
        };
        if allowed.iter().all(|a| a != "*") && name != "xtask" {
            libraries.push(pkg);
        }
        for dep in pkg
            .get("dependencies")
            .and_then(json::Value::as_array)
            .unwrap_or(&[])
        {
            let dep_name = dep.get("name").and_then(json::Value::as_str).unwrap_or("?");
            let kind = dep.get("kind").and_then(json::Value::as_str);
            if !dep_name.starts_with("chinwag") || kind == Some("dev") {
                continue;
            }
            if !allowed.iter().any(|a| a == "*" || a == dep_name) {
                problems.push(format!(
                    "{name} depends on {dep_name}, which xtask/layers.txt does not allow"
                ));
            }
        }
    }
    for pkg in libraries {
        let name = pkg.get("name").and_then(json::Value::as_str).unwrap_or("?");
        if name == "chinwag-server" {
            continue;
        }
        let Some(manifest) = pkg.get("manifest_path").and_then(json::Value::as_str) else {
            continue;
        };
        let src = std::path::Path::new(manifest).with_file_name("src");
        scan_sources(name, &src, &mut problems);
    }
    facade_engines(&mut problems)?;
    hub_core(&mut problems);
    hub_file_sizes(&mut problems);
    for krate in INLINED {
        let dir = root().join("crates").join(krate).join("src");
        doc_example_paths(&dir, &mut problems);
    }
    if problems.is_empty() {
        eprintln!("xtask tidy: layering and library rules hold");
        Ok(())
    } else {
        Err(format!("tidy found problems:\n  {}", problems.join("\n  ")))
    }
}

/// The facade's engine features stay independent, as its crate docs promise:
/// * `chinwag` built with only the fastwebsockets engine pulls no tungstenite crate (through a
///   layer, a default feature or a dev-dependency);
/// * built with only the yawc engine, it pulls neither a tungstenite nor a fastwebsockets crate
///   (through a layer, a default feature or a dev-dependency: the facade's dev-dependency on
///   itself turns on `ws-yawc` and neither of the other engines).
fn facade_engines(problems: &mut Vec<String>) -> Result<(), String> {
    facade_engine(problems, "ws-fastwebsockets", "features", &["tungstenite"])?;
    facade_engine(
        problems,
        "ws-yawc",
        "features",
        &["tungstenite", "fastwebsockets"],
    )
}

fn facade_engine(
    problems: &mut Vec<String>,
    feature: &str,
    edges: &str,
    forbidden: &[&str],
) -> Result<(), String> {
    let args = [
        "tree",
        "-e",
        edges,
        "-p",
        "chinwag",
        "--no-default-features",
        "--features",
        feature,
        "--prefix",
        "none",
        "--offline",
    ];
    let out = cargo()
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut pulled: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| forbidden.iter().any(|f| name.contains(f)))
        .collect();
    pulled.sort_unstable();
    pulled.dedup();
    if !pulled.is_empty() {
        problems.push(format!(
            "chinwag with only {feature} pulls {} (`cargo {}`): the engine features must stay \
             independent",
            pulled.join(", "),
            args.join(" ")
        ));
    }
    Ok(())
}

/// What the hub's sans-IO core must not name: it decides, the driver acts (docs/ARCHITECTURE.md).
const CORE_FORBIDDEN: [(&str, &str); 17] = [
    ("tokio", "a runtime"),
    ("futures", "a runtime"),
    ("chinwag_session", "an I/O crate"),
    ("chinwag_transport", "an I/O crate"),
    ("chinwag_rpc", "an I/O crate"),
    ("chinwag_ws", "an I/O crate"),
    ("chinwag_queue", "an I/O crate"),
    ("crate::driver", "the driver"),
    ("crate::doors", "a door"),
    ("crate::link", "the doors' seam"),
    ("crate::hooks", "the application's hooks"),
    ("Mutex", "a lock"),
    ("RwLock", "a lock"),
    ("Instant::now", "a clock"),
    ("SystemTime::now", "a clock"),
    ("thread::spawn", "a thread"),
    ("std::net::Tcp", "a socket"),
];

/// The hub's core is sans-IO: no runtime, I/O crate, driver, door, lock or clock in its code.
fn hub_core(problems: &mut Vec<String>) {
    let dir = root().join("crates/chinwag-hub/src/core");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        problems.push(format!(
            "{}: missing (the hub's sans-IO core)",
            dir.display()
        ));
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (word, what) in CORE_FORBIDDEN {
                if code.contains(word) {
                    problems.push(format!(
                        "{}:{}: `{word}` ({what}) in the hub's sans-IO core: the core takes time \
                         and inputs and returns what must happen; the driver does the rest",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
}

/// No file of the hub over 600 lines: one job per file.
fn hub_file_sizes(problems: &mut Vec<String>) {
    fn walk(dir: &std::path::Path, problems: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, problems);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let lines = std::fs::read_to_string(&path).map_or(0, |t| t.lines().count());
                if lines > 600 {
                    problems.push(format!(
                        "{}: {lines} lines; a file of the hub holds one job in at most 600",
                        path.display()
                    ));
                }
            }
        }
    }
    walk(&root().join("crates/chinwag-hub/src"), problems);
}

/// The crates the facade re-exports as its own modules (`chinwag::hub`, `chinwag::queue::redis`,
/// ...): their docs are the facade's, so their examples are written as a user of `chinwag`
/// writes them (each has `chinwag` as a dev-dependency, so the examples compile).
pub(crate) const INLINED: [&str; 13] = [
    "chinwag-wire",
    "chinwag-transport",
    "chinwag-session",
    "chinwag-rpc",
    "chinwag-hub",
    "chinwag-queue",
    "chinwag-queue-redb",
    "chinwag-queue-redis",
    "chinwag-ws",
    "chinwag-ws-tungstenite",
    "chinwag-ws-fastwebsockets",
    "chinwag-ws-yawc",
    "chinwag-cluster-redis",
];

/// Lines of doc-comment code blocks in `text` that name an inner chinwag crate
/// (`chinwag_hub::`, `use chinwag_wire;`): their line numbers (from 1).
fn inner_paths_in_doc_examples(text: &str) -> Vec<usize> {
    let mut in_block = false;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let Some(doc) = t.strip_prefix("///").or_else(|| t.strip_prefix("//!")) else {
            in_block = false;
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && names_inner_crate(doc) {
            found.push(n + 1);
        }
    }
    found
}

/// Whether `code` names a crate `chinwag_<something>` (not the facade, `chinwag`).
fn names_inner_crate(code: &str) -> bool {
    let bytes = code.as_bytes();
    code.match_indices("chinwag_").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let word_start = before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'));
        let rest = &code[i + "chinwag_".len()..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        word_start
            && name_len > 0
            && (rest[name_len..].starts_with("::") || rest[name_len..].starts_with(';'))
    })
}

fn doc_example_paths(dir: &std::path::Path, problems: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            doc_example_paths(&path, problems);
        } else if name.ends_with(".rs")
            // Behind chinwag-queue's `test-suite` feature, which the facade does not show.
            && !matches!(name, "conformance.rs" | "history_conformance.rs")
        {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for n in inner_paths_in_doc_examples(&text) {
                problems.push(format!(
                    "{}:{n}: a doc example names an inner crate; write the facade's path \
                     (`chinwag::hub::...`, as users do)",
                    path.display()
                ));
            }
        }
    }
}

/// Library code must not read the environment or handle signals.
fn scan_sources(krate: &str, dir: &std::path::Path, problems: &mut Vec<String>) {
    const FORBIDDEN: [&str; 4] = ["env::var(", "env::var_os(", "env::args(", "tokio::signal"];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            scan_sources(krate, &path, problems);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if let Some(f) = FORBIDDEN.iter().find(|f| code.contains(*f)) {
                    problems.push(format!(
                        "{krate}: {}:{}: `{f}`: only chinwag-server reads the environment or \
                         handles signals",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
}

fn read_rules() -> Result<BTreeMap<String, Vec<String>>, String> {
    let path = root().join("xtask/layers.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rules = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, deps) = line
            .split_once(':')
            .ok_or_else(|| format!("xtask/layers.txt:{}: expected `crate: deps`", n + 1))?;
        rules.insert(
            name.trim().to_owned(),
            deps.split_whitespace().map(str::to_owned).collect(),
        );
    }
    Ok(rules)
}

/// Just enough JSON to read `cargo metadata` (xtask keeps no dependencies).
mod json {
    #[derive(Debug)]
    pub(crate) enum Value {
        Null,
        Bool,
        Number,
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub(crate) fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub(crate) fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
        pub(crate) fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Array(a) => Some(a),
                _ => None,
            }
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing input at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {}", c as char, self.i))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        fields.push((k, self.value()?));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(fields));
                            }
                            _ => return Err(format!("bad object at byte {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => return Err(format!("bad array at byte {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::String(self.string()?)),
                Some(b't') => self.word("true", Value::Bool),
                Some(b'f') => self.word("false", Value::Bool),
                Some(b'n') => self.word("null", Value::Null),
                Some(c) if c.is_ascii_digit() || *c == b'-' => {
                    while self.i < self.b.len()
                        && matches!(
                            self.b[self.i],
                            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                        )
                    {
                        self.i += 1;
                    }
                    Ok(Value::Number)
                }
                _ => Err(format!("unexpected input at byte {}", self.i)),
            }
        }

        fn word(&mut self, w: &str, v: Value) -> Result<Value, String> {
            if self.b[self.i..].starts_with(w.as_bytes()) {
                self.i += w.len();
                Ok(v)
            } else {
                Err(format!("bad literal at byte {}", self.i))
            }
        }

        fn string(&mut self) -> Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected a string at byte {}", self.i));
            }
            self.i += 1;
            let mut out = Vec::new();
            while let Some(&c) = self.b.get(self.i) {
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = *self.b.get(self.i).ok_or("unterminated escape")?;
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex = self.b.get(self.i..self.i + 4).ok_or("short \\u")?;
                                let code = u32::from_str_radix(
                                    std::str::from_utf8(hex).map_err(|e| e.to_string())?,
                                    16,
                                )
                                .map_err(|e| e.to_string())?;
                                self.i += 4;
                                let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    other => out.push(other),
                }
            }
            Err("unterminated string".into())
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_what_cargo_metadata_writes() {
            let v = super::parse(
                r#"{"packages":[{"name":"a\u0041","dependencies":[{"name":"b","kind":null,
                "optional":false,"req":"^1.0","n":-1.5e3}]}],"x":[]}"#,
            )
            .unwrap();
            let pkgs = v.get("packages").unwrap().as_array().unwrap();
            assert_eq!(pkgs[0].get("name").unwrap().as_str(), Some("aA"));
            let deps = pkgs[0].get("dependencies").unwrap().as_array().unwrap();
            assert_eq!(deps[0].get("name").unwrap().as_str(), Some("b"));
            assert!(super::parse("{").is_err());
        }
    }
}

#[cfg(test)]
mod doc_path_tests {
    use super::*;

    #[test]
    fn doc_examples_that_name_an_inner_crate_are_found() {
        let text = "//! Prose may name chinwag_hub::Hub.\n\
                    //! ```\n\
                    //! use chinwag::hub::Hub;\n\
                    //! let x = chinwag_hub::Body::text(\"chinwag_hub::\");\n\
                    //! # use chinwag_wire;\n\
                    //! let my_chinwag_hub = 1;\n\
                    //! ```\n\
                    /// ```rust\n\
                    /// chinwag_queue_redis::RedisQueue::connect\n\
                    fn f() {}\n\
                    /// chinwag_rpc::Peer outside a block\n";
        assert_eq!(inner_paths_in_doc_examples(text), [4, 5, 9]);
        assert!(!names_inner_crate(
            "use chinwag::ws::tungstenite::Tungstenite;"
        ));
        assert!(names_inner_crate("x(chinwag_ws_tungstenite::Tungstenite)"));
    }

    #[test]
    fn the_crates_the_facade_shows_have_facade_paths_in_their_examples() {
        let mut problems = Vec::new();
        for krate in INLINED {
            doc_example_paths(
                &root().join("crates").join(krate).join("src"),
                &mut problems,
            );
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
