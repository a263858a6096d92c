//! Server figures from `/proc`: CPU time (`utime + stime` of `/proc/<pid>/stat`), resident
//! memory (`VmRSS` of `/proc/<pid>/status`) and threads (`Threads` there). CPU time is the most stable figure on a shared
//! machine: it does not depend on how much CPU the load generator left to the server.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// One sample of a process's CPU time and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// User plus system CPU time so far, in microseconds (resolution: one clock tick).
    pub cpu_us: u64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// OS threads of the process.
    pub threads: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be run).
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// Parses `utime + stime` (in ticks) from the contents of `/proc/<pid>/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(3) ppid(4) ... utime is field 14, stime field 15 of the file.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Parses `VmRSS` (KiB) from the contents of `/proc/<pid>/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status_field(status, "VmRSS:")
}

/// Parses `Threads` from the contents of `/proc/<pid>/status`.
pub fn parse_status_threads(status: &str) -> Option<u64> {
    status_field(status, "Threads:")
}

/// The first number after `key` in `/proc/<pid>/status`.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples process `pid`; `None` when it does not exist (any more) or `/proc` is unreadable.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    Some(ProcSample {
        cpu_us: ticks * 1_000_000 / clock_ticks(),
        rss_kib: parse_status_rss_kib(&status)?,
        threads: parse_status_threads(&status)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(300));
    }

    #[test]
    fn parses_status_rss() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t    1536 kB\nThreads:\t2\n";
        assert_eq!(parse_status_rss_kib(status), Some(1536));
        assert_eq!(parse_status_threads(status), Some(2));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_kib > 0);
    }
}
