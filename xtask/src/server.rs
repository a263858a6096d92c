//! Starting and stopping the server processes that `autobahn` and `bench` measure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server process, killed (and reaped) when dropped, so an error path cannot leave
/// it running.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of asking.
pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts `cmd` (its output discarded) and waits up to 30 s until it accepts connections on
/// `addr`; fails if it exits first.
pub(crate) fn spawn_listening(cmd: &mut Command, addr: SocketAddr) -> Result<KillOnDrop, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    // chinwag-server logs each sign-in, join and disconnect at info: not what is measured.
    cmd.env("CHINWAG_LOG_FILTER", "warn");
    let mut server = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("{program} exited before listening: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{program} did not start listening on {addr}"))
}
