//! The worker processes of a run, shared by the echo ([`crate::load`]) and hub
//! ([`crate::hub`]) modes.
//!
//! A run's connections are split into shares ([`split_shares`](crate::load::split_shares)).
//! One share is prepared and run in this process; more are each given to a `chinwag-load
//! worker --spec JSON` child, which connects its share, prints `ready N` (N connections), waits
//! for a go line on stdin, runs, and prints its result as one JSON line.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxError;
use crate::load::{RunOptions, WorkerSpec};

/// The workers of a run, connected and waiting for their go.
pub(crate) struct Workers<P> {
    /// The share this process runs (when there is only one).
    pub(crate) local: Option<P>,
    /// The child processes (when there are several shares).
    pub(crate) children: Children,
    /// Connections all of them hold.
    pub(crate) connected: usize,
}

/// Worker child processes, each with its stdin and stdout.
pub(crate) struct Children(Vec<(Child, ChildStdin, BufReader<ChildStdout>)>);

/// Prepares `shares`: one share here (`prepare`), several in child processes (started from
/// `opts.worker_exe`, else this executable), and waits until every one of them is connected.
pub(crate) async fn start<P, F, Fut>(
    shares: Vec<WorkerSpec>,
    opts: &RunOptions,
    prepare: F,
    connected: impl Fn(&P) -> usize,
) -> Result<Workers<P>, BoxError>
where
    F: FnOnce(WorkerSpec) -> Fut,
    Fut: Future<Output = Result<P, BoxError>>,
{
    if shares.len() == 1 {
        let share = shares.into_iter().next().expect("one share");
        let p = prepare(share).await?;
        return Ok(Workers {
            connected: connected(&p),
            local: Some(p),
            children: Children(Vec::new()),
        });
    }
    let exe = match &opts.worker_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let mut children = Vec::with_capacity(shares.len());
    for share in &shares {
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg("--spec")
            .arg(serde_json::to_string(share)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start worker {}: {e}", exe.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        children.push((child, stdin, stdout));
    }
    // Wait for every worker to be connected ("ready N").
    let mut total = 0;
    for (_, _, stdout) in &mut children {
        let line = tokio::task::block_in_place(|| read_line(stdout))?;
        total += line
            .strip_prefix("ready ")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .ok_or_else(|| format!("worker said {line:?} instead of ready"))?;
    }
    Ok(Workers {
        local: None,
        children: Children(children),
        connected: total,
    })
}

impl Children {
    /// Sends every child its go line (`line`, without the newline).
    pub(crate) fn go(&mut self, line: &str) -> Result<(), BoxError> {
        for (_, stdin, _) in &mut self.0 {
            writeln!(stdin, "{line}")?;
            stdin.flush()?;
        }
        Ok(())
    }

    /// Reads every child's result line, then lets it exit.
    pub(crate) fn results<T: DeserializeOwned>(self) -> Result<Vec<T>, BoxError> {
        let mut out = Vec::with_capacity(self.0.len());
        for (mut child, stdin, mut stdout) in self.0 {
            let line = tokio::task::block_in_place(|| read_line(&mut stdout))?;
            drop(stdin);
            let _ = child.wait();
            out.push(
                serde_json::from_str::<T>(&line)
                    .map_err(|e| format!("worker result {line:?}: {e}"))?,
            );
        }
        Ok(out)
    }
}

/// The child's side: says `ready N` on stdout and returns the go line read from stdin
/// (trimmed).
pub(crate) async fn ready_then_go(connected: usize) -> Result<String, BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {connected}")?;
    out.flush()?;
    drop(out);
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(line.trim().to_owned())
}

/// The child's side: prints its result as one JSON line.
pub(crate) fn print_result(result: &impl Serialize) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(result)?)?;
    out.flush()?;
    Ok(())
}

fn read_line(r: &mut impl BufRead) -> Result<String, BoxError> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err("a worker exited early".into());
    }
    Ok(line.trim_end().to_owned())
}
