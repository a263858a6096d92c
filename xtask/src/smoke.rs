//! `cargo xtask test`'s last step: the shipped examples, run as a user runs them. `rpc_echo`
//! serves; `rpc_call` makes single and streaming requests over TCP and WebSocket (both client
//! engines, with the default `Origin`); SIGTERM stops `rpc_echo` with exit status 0.

use std::net::SocketAddr;
use std::process::Command;

use crate::server::{free_port, spawn_listening};
use crate::{cargo, root, run_cmd};

pub(crate) fn run() -> Result<(), String> {
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
    let cases: [(&[&str], &str); 6] = [
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
