//! `cargo xtask test`'s last step: the shipped programs, run as a user runs them. The README's
//! first command: `chinwag-server` with no configuration at all (in an empty directory) serves
//! `http://127.0.0.1:8080/` and stops on SIGTERM with status 0. `rpc_echo` serves; `rpc_call`
//! makes single and streaming requests over TCP and WebSocket (every client engine, with the
//! default `Origin`); SIGTERM stops `rpc_echo` with exit status 0.

use std::net::SocketAddr;
use std::process::Command;

use crate::server::{free_port, spawn_listening};
use crate::{cargo, root, run_cmd};

pub(crate) fn run() -> Result<(), String> {
    zero_config_server()?;
    run_cmd(cargo().args([
        "build",
        "--locked",
        "-p",
        "chinwag-examples",
        "--example",
        "rpc_echo",
        "--example",
        "rpc_call",
    ]))?;
    let bin = |name: &str| root().join("target/debug/examples").join(name);
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse().unwrap();
    let ws: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse().unwrap();
    let mut echo = Command::new(bin("rpc_echo"));
    echo.args(["--tcp", &tcp.to_string(), "--ws", &ws.to_string()]);
    let mut server = spawn_listening(&mut echo, ws)?;
    let tcp_url = format!("tcp://{tcp}");
    let ws_url = format!("ws://{ws}/gotalk/");
    let cases: [(&[&str], &str); 7] = [
        (&["--url", &tcp_url, "echo", "hello"], "hello\n"),
        (
            &["--url", &ws_url, "echo.json", r#"{"a":1}"#],
            "{\"a\":1}\n",
        ),
        (
            &[
                "--url",
                &tcp_url,
                "--stream-request",
                "stream.echo",
                "a",
                "b",
                "c",
            ],
            "a\nb\nc\n",
        ),
        (
            &[
                "--url",
                &ws_url,
                "--stream-request",
                "stream.echo",
                "x",
                "y",
            ],
            "x\ny\n",
        ),
        (
            &[
                "--url",
                &ws_url,
                "--engine",
                "fastwebsockets",
                "--stream-request",
                "stream.echo",
                "p",
                "q",
            ],
            "p\nq\n",
        ),
        (
            &["--url", &ws_url, "--engine", "yawc", "echo", "over yawc"],
            "over yawc\n",
        ),
        (&["--url", &ws_url, "--stream", "count", "3"], "1\n2\n3\n"),
    ];
    for (args, want) in cases {
        let out = Command::new(bin("rpc_call"))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run rpc_call: {e}"))?;
        let got = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || got != want {
            return Err(format!(
                "rpc_call {}: expected {want:?}, got {got:?} ({}; stderr: {})",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        eprintln!("smoke: rpc_call {} -> {:?}", args.join(" "), got.trim_end());
    }
    // Graceful shutdown on SIGTERM: exit status 0.
    let pid = server.0.id().to_string();
    run_cmd(Command::new("kill").args(["-TERM", &pid]))?;
    let status = server
        .0
        .wait()
        .map_err(|e| format!("waiting for rpc_echo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "rpc_echo did not exit cleanly on SIGTERM: {status}"
        ));
    }
    eprintln!("smoke: rpc_echo stopped on SIGTERM with {status}");
    Ok(())
}

/// `chinwag-server` exactly as the README starts it (no flags, no file, no variables), in a
/// fresh directory: it must listen on its default `127.0.0.1:8080`, answer `/healthz` and `/`,
/// create its data directory, and exit 0 on SIGTERM. Needs port 8080 free.
fn zero_config_server() -> Result<(), String> {
    use std::io::{Read, Write};
    run_cmd(cargo().args(["build", "--locked", "-p", "chinwag-server"]))?;
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    if std::net::TcpStream::connect(addr).is_ok() {
        return Err(
            "smoke: something already listens on 127.0.0.1:8080, where chinwag-server's default \
             configuration serves; stop it and run again"
                .into(),
        );
    }
    let dir = std::env::temp_dir().join(format!("chinwag-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = Command::new(root().join("target/debug/chinwag-server"));
    cmd.current_dir(&dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHINWAG_") {
            cmd.env_remove(k);
        }
    }
    let mut server = spawn_listening(&mut cmd, addr)?;
    let get = |path: &str| -> Result<String, String> {
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    };
    for (path, want) in [("/healthz", "ok"), ("/", "chinwag")] {
        let resp = get(path)?;
        if !resp.starts_with("HTTP/1.1 200") || !resp.contains(want) {
            return Err(format!("smoke: chinwag-server GET {path}: {resp}"));
        }
    }
    // Ready once every door listens (just after the HTTP port): bounded polling.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = get("/readyz")?;
        if resp.starts_with("HTTP/1.1 200") {
            break;
        }
        if std::time::Instant::now() > until {
            return Err(format!("smoke: chinwag-server never became ready: {resp}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !dir.join("chinwag-data").is_dir() {
        return Err("smoke: chinwag-server did not create ./chinwag-data".into());
    }
    let pid = server.0.id().to_string();
    run_cmd(Command::new("kill").args(["-TERM", &pid]))?;
    let status = server
        .0
        .wait()
        .map_err(|e| format!("waiting for chinwag-server: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(format!(
            "chinwag-server did not exit cleanly on SIGTERM: {status}"
        ));
    }
    eprintln!("smoke: chinwag-server served its defaults on {addr} and stopped on SIGTERM");
    Ok(())
}
