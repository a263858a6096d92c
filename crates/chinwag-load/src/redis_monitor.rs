//! The Redis commands of a run's measured window: `INFO` at its bounds, and `MONITOR` on
//! request.
//!
//! The cluster scenario asks how many Redis round trips a delivered direct message costs.
//! `INFO stats`' `total_commands_processed` (and `INFO commandstats`) count the commands a
//! script runs as well as the `EVALSHA` that ran it, so they cannot tell the round trips a
//! node waits for from the work Redis does inside one; `total_reads_processed` counts reads
//! from client sockets (a batch of pipelined commands is one read). `MONITOR` tells them
//! apart: Redis shows every command a client sent with the client's address
//! (`[0 127.0.0.1:PORT]`) and every command a script ran with `[0 lua]`, each line stamped
//! with Redis's wall clock (the machine's, as the load generator's). So a connection that
//! monitors from before the window to after it counts, for exactly the window: the commands
//! clients sent (each one request and one answer, unless the client pipelined several), by
//! command, and the commands scripts ran, by the script that ran them (the first 8 hex digits
//! of its SHA1).
//!
//! `MONITOR` costs Redis CPU (it formats every command, a script's too, for the monitor
//! connection: about as much again as the commands themselves in the cluster scenario), which
//! the other processes of a small machine feel; so `cargo xtask bench` counts with MONITOR in
//! separate runs, and takes CPU and latency from runs with `INFO` only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::BoxError;

/// What Redis did in the measured window (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisFigures {
    /// `INFO`: commands processed, those scripts ran included (the two `INFO`s excluded).
    pub processed: u64,
    /// `INFO`: reads from client sockets (the `INFO` connections' included, about 2).
    pub reads: u64,
    /// `INFO commandstats`: calls per command, those scripts ran included (`info` excluded).
    pub calls: BTreeMap<String, u64>,
    /// Redis's CPU time in the window (ms), when its pid was given.
    pub cpu_ms: Option<f64>,
    /// `MONITOR`'s counts, when it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitored: Option<Monitored>,
}

/// What `MONITOR` showed in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Monitored {
    /// Commands clients sent (not those run by scripts).
    pub commands: u64,
    /// Commands scripts ran.
    pub script_calls: u64,
    /// Commands clients sent, by command (`evalsha <sha8>` per script).
    pub by_command: BTreeMap<String, u64>,
    /// Commands scripts ran, by script and command (`<sha8> <command>`).
    pub in_scripts: BTreeMap<String, u64>,
}

/// One `INFO stats` and `INFO commandstats` reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    processed: u64,
    reads: u64,
    calls: BTreeMap<String, u64>,
}

impl Info {
    /// Reads `INFO stats` and `INFO commandstats` of the Redis at `addr` (on a connection of
    /// its own).
    pub async fn read(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let mut r = BufReader::new(stream);
        r.get_mut()
            .write_all(b"INFO stats\r\nINFO commandstats\r\n")
            .await?;
        let mut text = bulk(&mut r).await?;
        text.push_str(&bulk(&mut r).await?);
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut info = Info::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim_end().split_once(':') else {
                continue;
            };
            match k {
                "total_commands_processed" => info.processed = v.parse().unwrap_or(0),
                "total_reads_processed" => info.reads = v.parse().unwrap_or(0),
                _ => {
                    let Some(cmd) = k.strip_prefix("cmdstat_") else {
                        continue;
                    };
                    let calls = v
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("calls="))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    info.calls.insert(cmd.to_owned(), calls);
                }
            }
        }
        info
    }

    /// What happened between `self` and `later`, without the two `INFO`s of this reading
    /// pair that `later` counts (this reading's second and `later`'s first).
    pub fn until(&self, later: &Info) -> RedisFigures {
        let mut calls = BTreeMap::new();
        for (k, &v) in &later.calls {
            let d = v.saturating_sub(self.calls.get(k).copied().unwrap_or(0));
            if d > 0 && k != "info" {
                calls.insert(k.clone(), d);
            }
        }
        RedisFigures {
            processed: later
                .processed
                .saturating_sub(self.processed)
                .saturating_sub(2),
            reads: later.reads.saturating_sub(self.reads),
            calls,
            cpu_ms: None,
            monitored: None,
        }
    }
}

/// Reads one RESP bulk string (`$<len>\r\n<bytes>\r\n`); an error reply is an error.
async fn bulk(r: &mut BufReader<TcpStream>) -> Result<String, BoxError> {
    let mut head = Vec::new();
    r.read_until(b'\n', &mut head).await?;
    let len: usize = std::str::from_utf8(&head)?
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("INFO answered {:?}", String::from_utf8_lossy(&head)))?;
    let mut body = vec![0; len + 2];
    r.read_exact(&mut body).await?;
    body.truncate(len);
    Ok(String::from_utf8(body)?)
}

/// The loopback address of a `redis://HOST:PORT[/DB]` URL (no password, no TLS).
pub fn parse_url(url: &str) -> Result<SocketAddr, BoxError> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url}: not a redis:// URL"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    if hostport.contains('@') {
        return Err(format!("{url}: credentials are not supported here").into());
    }
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|e| format!("{url}: {e} (an IP:PORT is expected)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: only loopback addresses are loaded").into());
    }
    Ok(addr)
}

/// A monitoring connection, started before the window.
pub struct Monitor {
    addr: SocketAddr,
    lines: BufReader<TcpStream>,
}

/// The command the monitor sends (on another connection) after the window, so that a line
/// stamped after it exists; not counted, as `INFO` is not.
const MARKER: &[u8] = b"ECHO chinwag-load-monitor-end\r\n";

impl Monitor {
    /// Connects to Redis at `addr` and starts monitoring.
    pub async fn start(addr: SocketAddr) -> Result<Self, BoxError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream);
        let mut ok = Vec::new();
        lines.read_until(b'\n', &mut ok).await?;
        if !ok.starts_with(b"+OK") {
            return Err(format!("MONITOR answered {:?}", String::from_utf8_lossy(&ok)).into());
        }
        Ok(Monitor { addr, lines })
    }

    /// Counts the commands stamped in `[start, end)` (wall-clock ns): reads until the first
    /// line stamped after the window, however late it is read (the monitor may lag behind a
    /// busy Redis); at `stop` (after the window) it makes sure such a line comes, with a
    /// command of its own. Then closes the connection.
    pub async fn count(
        mut self,
        start: u64,
        end: u64,
        stop: tokio::time::Instant,
    ) -> Result<Monitored, BoxError> {
        let mut counter = Counter::new(start, end);
        let mut line = Vec::with_capacity(512);
        let mut marked = false;
        let give_up = stop + std::time::Duration::from_secs(60);
        loop {
            let until = if marked { give_up } else { stop };
            // A timed-out read keeps what it read of a line in `line`.
            match tokio::time::timeout_at(until, self.lines.read_until(b'\n', &mut line)).await {
                Err(_) if !marked => {
                    marked = true;
                    let mut c = TcpStream::connect(self.addr).await?;
                    c.write_all(MARKER).await?;
                    let mut answer = [0u8; 64];
                    let _ = c.read(&mut answer).await?;
                }
                Err(_) => return Err("MONITOR: no command after the window within 60 s".into()),
                Ok(Ok(0)) => return Err("Redis closed the MONITOR connection".into()),
                Ok(Ok(_)) => {
                    if counter.line(&line) == Seen::After {
                        break;
                    }
                    line.clear();
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        Ok(counter.figures)
    }
}

/// Where a monitored line falls.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Before,
    In,
    After,
    Unparsed,
}

/// Counts monitored lines (kept apart from the socket for the tests).
struct Counter {
    start: u64,
    end: u64,
    /// The script of the last `EVALSHA`/`EVAL` a client sent: Redis runs a script's commands
    /// right after it, with nothing in between.
    script: String,
    figures: Monitored,
}

impl Counter {
    fn new(start: u64, end: u64) -> Self {
        Counter {
            start,
            end,
            script: "?".into(),
            figures: Monitored::default(),
        }
    }

    fn line(&mut self, line: &[u8]) -> Seen {
        let Some(m) = parse_line(line) else {
            return Seen::Unparsed;
        };
        // The load generator's own commands (`INFO` at the window's bounds, the marker).
        if !m.lua && matches!(m.command.as_str(), "info" | "echo") {
            return if m.at >= self.end {
                Seen::After
            } else {
                Seen::Unparsed
            };
        }
        // The script is tracked outside the window too: its commands may straddle a bound.
        if !m.lua {
            self.script = match m.command.as_str() {
                "evalsha" | "evalsha_ro" => m.arg.chars().take(8).collect(),
                "eval" | "eval_ro" => "eval".into(),
                _ => "?".into(),
            };
        }
        if m.at < self.start {
            return Seen::Before;
        }
        if m.at >= self.end {
            return Seen::After;
        }
        if m.lua {
            self.figures.script_calls += 1;
            *self
                .figures
                .in_scripts
                .entry(format!("{} {}", self.script, m.command))
                .or_default() += 1;
        } else {
            self.figures.commands += 1;
            let key = match m.command.as_str() {
                "evalsha" | "evalsha_ro" => format!("{} {}", m.command, self.script),
                _ => m.command,
            };
            *self.figures.by_command.entry(key).or_default() += 1;
        }
        Seen::In
    }
}

/// One monitored command.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    /// Redis's wall clock, ns.
    at: u64,
    /// Run by a script.
    lua: bool,
    /// The command, lower case.
    command: String,
    /// Its first argument (the SHA1 of an `EVALSHA`), as shown.
    arg: String,
}

/// Parses `+1796583099.922370 [0 127.0.0.1:35410] "evalsha" "3fa1..." "1" ...` (Redis quotes
/// every argument and escapes what is not printable, so a command is one line).
fn parse_line(line: &[u8]) -> Option<Line> {
    let s = std::str::from_utf8(line).ok()?;
    let s = s.strip_prefix('+')?.trim_end();
    let (stamp, rest) = s.split_once(' ')?;
    let (secs, micros) = stamp.split_once('.')?;
    // Redis prints six digits of microseconds; fewer are read as a decimal fraction.
    if micros.is_empty() || micros.len() > 9 {
        return None;
    }
    let frac = micros.parse::<u64>().ok()? * 10u64.pow(9 - micros.len() as u32);
    let at = secs.parse::<u64>().ok()? * 1_000_000_000 + frac;
    let rest = rest.strip_prefix('[')?;
    let (client, rest) = rest.split_once("] ")?;
    let lua = client.split_once(' ').is_some_and(|(_, c)| c == "lua");
    let mut quoted = rest.split('"').skip(1).step_by(2);
    let command = quoted.next()?.to_ascii_lowercase();
    let arg = quoted.next().unwrap_or("").to_owned();
    Some(Line {
        at,
        lua,
        command,
        arg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379/").unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert_eq!(
            parse_url("redis://127.0.0.1:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(parse_url("redis://10.0.0.1:6379/").is_err());
        assert!(parse_url("redis://u:p@127.0.0.1:6379/").is_err());
        assert!(parse_url("http://127.0.0.1:6379/").is_err());
    }

    #[test]
    fn info_parses_and_subtracts() {
        let a = Info::parse(
            "# Stats\r\ntotal_commands_processed:10\r\ntotal_reads_processed:7\r\n\
             # Commandstats\r\ncmdstat_evalsha:calls=3,usec=9,usec_per_call=3.00\r\n\
             cmdstat_info:calls=1,usec=1\r\n",
        );
        assert_eq!((a.processed, a.reads), (10, 7));
        assert_eq!(a.calls["evalsha"], 3);
        let b = Info::parse(
            "total_commands_processed:22\ntotal_reads_processed:12\n\
             cmdstat_evalsha:calls=8,usec=9\ncmdstat_zadd:calls=4,usec=1\ncmdstat_info:calls=3\n",
        );
        let d = a.until(&b);
        assert_eq!((d.processed, d.reads), (10, 5));
        assert_eq!(d.calls.len(), 2);
        assert_eq!((d.calls["evalsha"], d.calls["zadd"]), (5, 4));
    }

    #[test]
    fn lines_parse() {
        let m = parse_line(
            b"+1796583099.922370 [0 127.0.0.1:35410] \"EVALSHA\" \"3fa1b2c3d4\" \"1\"\r\n",
        )
        .unwrap();
        assert_eq!(m.at, 1_796_583_099_922_370_000);
        assert!(!m.lua);
        assert_eq!(
            (m.command.as_str(), m.arg.as_str()),
            ("evalsha", "3fa1b2c3d4")
        );
        let m = parse_line(b"+1796583099.922437 [0 lua] \"publish\" \"c\" \"x\\ny\"\r\n").unwrap();
        assert!(m.lua);
        assert_eq!(m.command, "publish");
        assert_eq!(parse_line(b"+OK\r\n"), None);
        assert_eq!(parse_line(b"garbage"), None);
    }

    #[test]
    fn counts_the_window_and_attributes_script_calls() {
        // Window [100 s, 101 s).
        let mut c = Counter::new(100_000_000_000, 101_000_000_000);
        let lines: [&[u8]; 9] = [
            b"+99.999999 [0 127.0.0.1:1] \"evalsha\" \"aaaaaaaaaaaa\" \"1\" \"k\"",
            // Runs inside a script whose EVALSHA came before the window: not counted as a
            // command, but its calls in the window are the script's.
            b"+100.000001 [0 lua] \"incr\" \"k\"",
            b"+100.5 [0 127.0.0.1:1] \"evalsha\" \"bbbbbbbbbbbb\" \"1\" \"k\"",
            b"+100.500001 [0 lua] \"zadd\" \"k\" \"1\" \"m\"",
            b"+100.500002 [0 lua] \"publish\" \"c\" \"m\"",
            b"+100.6 [0 127.0.0.2:2] \"HGETALL\" \"h\"",
            b"+100.7 [0 127.0.0.2:2] \"publish\" \"c\" \"m\"",
            b"+100.8 [0 127.0.0.3:3] \"INFO\" \"stats\"",
            b"+101.0 [0 127.0.0.1:1] \"echo\" \"chinwag-load-monitor-end\"",
        ];
        let seen: Vec<Seen> = lines.iter().map(|l| c.line(l)).collect();
        assert_eq!(seen.first(), Some(&Seen::Before));
        assert_eq!(seen.last(), Some(&Seen::After));
        let f = &c.figures;
        assert_eq!((f.commands, f.script_calls), (3, 3));
        assert_eq!(f.by_command["evalsha bbbbbbbb"], 1);
        assert_eq!(f.by_command["hgetall"], 1);
        assert_eq!(f.by_command["publish"], 1);
        assert_eq!(f.in_scripts["aaaaaaaa incr"], 1);
        assert_eq!(f.in_scripts["bbbbbbbb zadd"], 1);
        assert_eq!(f.in_scripts["bbbbbbbb publish"], 1);
    }
}
