//! Shared by the tests that run the real `chinwag-server` binary: a command with a clean
//! environment, a running server and the lines it printed, plain HTTP GETs. Every wait is for
//! an event (a printed line, an answer, an exit) under a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chinwag-server");
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The binary with the test runner's own `CHINWAG_*` variables removed (they are not the
/// server's configuration), logging warnings only.
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHINWAG_") {
            c.env_remove(k);
        }
    }
    c.env("CHINWAG_LOG_FILTER", "warn");
    c
}

/// A running server and the addresses (and cluster node id) it printed.
pub struct Running {
    pub child: Child,
    pub http: SocketAddr,
    pub chat_tcp: SocketAddr,
    /// Its `cluster-node` line (`None`: not in a cluster).
    pub node: Option<u64>,
    /// Its `tok-tcp` line (`None`: that door is off).
    pub tok_tcp: Option<SocketAddr>,
    /// Its `tok-ws` line (`None`: that door is off).
    pub tok_ws: Option<String>,
}

impl Running {
    /// Starts `cmd` and waits for its `ready` line.
    pub fn start(cmd: Command) -> Running {
        Self::start_with(cmd, Stdio::inherit())
    }

    /// Starts `cmd` with its log (stderr) read line by line into the receiver, and waits for
    /// its `ready` line.
    pub fn start_logged(cmd: Command) -> (Running, mpsc::Receiver<String>) {
        let mut r = Self::start_with(cmd, Stdio::piped());
        let err = r.child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (r, rx)
    }

    fn start_with(mut cmd: Command, stderr: Stdio) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start chinwag-server");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut http, mut chat_tcp, mut node) = (None, None, None);
        let (mut tok_tcp, mut tok_ws) = (None, None);
        loop {
            let line = rx
                .recv_timeout(DEADLINE)
                .expect("the server prints its addresses and `ready`");
            let (what, rest) = line.split_once(' ').unwrap_or((&line, ""));
            match what {
                "http" => {
                    let hostport = rest.trim_start_matches("http://").trim_end_matches('/');
                    http = Some(hostport.parse().unwrap());
                }
                "chat-tcp" => chat_tcp = Some(rest.parse().unwrap()),
                "cluster-node" => node = Some(rest.parse().unwrap()),
                "tok-tcp" => tok_tcp = Some(rest.parse().unwrap()),
                "tok-ws" => tok_ws = Some(rest.to_owned()),
                "ready" => break,
                _ => {}
            }
        }
        Running {
            child,
            http: http.expect("an http line"),
            chat_tcp: chat_tcp.expect("a chat-tcp line"),
            node,
            tok_tcp,
            tok_ws,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.http, path)
    }

    /// Sends `sig` (`-TERM`, `-STOP`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig}");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < until, "the server exits after SIGTERM");
            std::thread::yield_now();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A stopped process must be continued before SIGKILL can be reaped promptly.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, &addr.to_string(), path)
}

/// A plain HTTP/1.1 GET with `Host: host`: status and body.
pub fn get_as(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
