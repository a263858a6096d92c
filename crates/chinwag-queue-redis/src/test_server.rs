//! A private `redis-server` for tests and benchmarks: free loopback port, its own directory,
//! append-only file with `appendfsync always`, killed on drop. Never a Redis the machine
//! happens to run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting redis-server may take to answer PING.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A private `redis-server` (see the module docs).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or panics saying how to install one: these tests never skip.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut s = Self {
            child: None,
            port: 0,
            dir,
        };
        // The free port is found by binding port 0 and letting it go, so another process can
        // take it before redis-server binds it: then another port, a few times.
        for attempt in 1.. {
            s.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("finding a free loopback port");
            match s.try_spawn() {
                Ok(()) => return s,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    let _ = std::fs::remove_file(s.dir.path().join("redis.log"));
                }
                Err(log) => panic!("redis-server did not start; its log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILLs the server and waits until it is gone. What it acknowledged stays in the
    /// append-only file.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again: same port, same directory (so it replays its AOF).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("redis-server did not start; its log:\n{log}");
        }
    }

    /// Starts redis-server on `self.port` and waits until it answers; `Err(its log)` when it
    /// exited first.
    fn try_spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no", "--logfile", "redis.log"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `redis-server` ({e}). The Redis tests need a real server: \
                     install it with `apt-get install redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls PING until the server answers, with a deadline; `Err(its log)` at once if it
    /// exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if ping(&addr) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "(exited with {status} before answering PING)\n{}",
                    log(self.dir.path())
                ));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {READY_DEADLINE:?}; its log:\n{}",
                log(self.dir.path())
            );
            // Polling interval between connection attempts (not a wait for an event).
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn ping(addr: &SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    // "-LOADING" while the AOF replays: not ready yet.
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
