//! Fixed-count runs (`chinwag-load count`): a known number of messages, one at a time, and
//! nothing timed. `cargo xtask bench --instructions` runs each server under callgrind with
//! `N` and then `2N` messages and divides the difference of the instruction counts by the
//! difference of the [`CountReport::deliveries`], which removes start-up and connection set-up
//! (`xtask/src/instructions.rs`).
//!
//! * [`Mode::Echo`]: one connection (`ws://`, `tcp://`, `gotalk+tcp://`, `gotalk+ws://`)
//!   sends `messages` payloads of `size` bytes, each after the echo of the one before (closed
//!   loop, 1 in flight); every echo is checked for its length. Deliveries: the echoes.
//! * [`Mode::Fanout`]: `members` connections on a room door (`ws://…/ws?room=R`, signed in
//!   with a JWT when a secret is given). Member 0 first publishes probes until every member has
//!   received one (a member's join may land after its handshake completes), then publishes
//!   `messages` times, each after every member (itself included) has received the one
//!   before. Deliveries: every message the members received, probes included (a probe that
//!   reaches a member costs the server what a publish does).
//! * [`Mode::Send`]: `members` pairs of users on the chat door (`gotalk+tcp://`,
//!   `gotalk+ws://`), all at once; each pair's sender sends its share of `messages` direct
//!   messages to its recipient, each after the one before was answered and delivered; the
//!   recipient acknowledges each (the client's auto-ack). Deliveries: the messages the
//!   recipients received. One pair is the worst case for a durable queue (one commit per
//!   push and per ack); pairs at once share commits (group commit), as users of a server do.
//!
//! Every connection is closed before the run returns, so the server's teardown is the same
//! for every count.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag::client::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::BoxError;
use crate::chat;
use crate::hub::{MIN_FANOUT_PAYLOAD, Mode, room_member, with_retries};
use crate::load::{LoadSpec, MIN_PAYLOAD};
use crate::proto::{self, ClientEngine, Protocol, Target};

/// How long one message (an echo, a publish's last delivery, a send's delivery) may take
/// before the run fails. Generous: the server may run under valgrind, ~50x slower.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Fan-out: how long to wait for every member to receive a probe before publishing another.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);

/// Fan-out: probes published before the run gives up on members that never receive one.
pub const MAX_PROBES: u64 = 100;

/// Most messages a run sends (a count run is for instruction counts, not for soaking).
pub const MAX_MESSAGES: u64 = 10_000_000;

/// Most fan-out members.
pub const MAX_MEMBERS: usize = 20_000;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountSpec {
    /// Echo, fanout or send.
    pub mode: Mode,
    /// The server: an echo target, a room door (`ws://…/ws?room=R`) or the chat door.
    pub target: String,
    /// Messages: echoes, publishes or sends (1 ..= [`MAX_MESSAGES`]).
    pub messages: u64,
    /// Payload bytes (echo: at least [`MIN_PAYLOAD`]; fan-out: at least
    /// [`MIN_FANOUT_PAYLOAD`]; send: the body's length).
    pub size: usize,
    /// Fan-out: members of the room, the publisher included (1 ..= [`MAX_MEMBERS`]); send:
    /// sender/recipient pairs at once (0 is 1).
    pub members: usize,
    /// The WebSocket client engine.
    pub client_engine: ClientEngine,
    /// The HS256 secret tokens are signed with (required by the chat door; on a room door,
    /// none: no token).
    pub secret: Option<String>,
    /// Spread the fan-out members over `127.0.0.1` .. `127.0.0.N`.
    pub source_ips: usize,
    /// Fan-out: handshakes at once.
    pub connect_concurrency: usize,
}

/// What a run did (`chinwag-load count` prints it as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountReport {
    /// Messages sent: echoes asked for, publishes (probes not included), sends.
    pub sent: u64,
    /// Messages the server delivered: echoes, every member's receipts (probes included), the
    /// recipient's direct messages.
    pub deliveries: u64,
    /// Fan-out: probes published before the counted publishes.
    pub probes: u64,
    /// Fan-out: deliveries of those probes (included in `deliveries`).
    pub probe_deliveries: u64,
    /// Connections opened.
    pub connected: usize,
}

impl CountSpec {
    /// Checks the spec: a clear error for what cannot run.
    pub fn check(&self) -> Result<Target, BoxError> {
        let target: Target = self.target.parse()?;
        if self.messages == 0 || self.messages > MAX_MESSAGES {
            return Err(format!(
                "--messages must be 1 ..= {MAX_MESSAGES}, got {}",
                self.messages
            )
            .into());
        }
        match self.mode {
            Mode::Echo if self.size < MIN_PAYLOAD => {
                Err(format!("echo payloads are at least {MIN_PAYLOAD} bytes").into())
            }
            Mode::Echo => Ok(target),
            Mode::Fanout if target.protocol != Protocol::Ws => {
                Err("fan-out counts load a room door (ws://…/ws?room=R)".into())
            }
            Mode::Fanout if self.size < MIN_FANOUT_PAYLOAD => {
                Err(format!("fan-out payloads are at least {MIN_FANOUT_PAYLOAD} bytes").into())
            }
            Mode::Fanout if self.members == 0 || self.members > MAX_MEMBERS => Err(format!(
                "--members must be 1 ..= {MAX_MEMBERS}, got {}",
                self.members
            )
            .into()),
            Mode::Fanout => Ok(target),
            Mode::Send if !matches!(target.protocol, Protocol::RpcTcp | Protocol::RpcWs) => {
                Err("send counts load the chat door (gotalk+tcp:// or gotalk+ws://)".into())
            }
            Mode::Send if self.secret.is_none() => {
                Err("send counts need --secret (the chat door signs users in)".into())
            }
            Mode::Send if self.members > MAX_MEMBERS => Err(format!(
                "--members (pairs) must be at most {MAX_MEMBERS}, got {}",
                self.members
            )
            .into()),
            Mode::Send => Ok(target),
            other => Err(format!("count runs are echo, fanout or send, not {other:?}").into()),
        }
    }

    /// The [`LoadSpec`] the hub and chat helpers take.
    fn load_spec(&self) -> LoadSpec {
        LoadSpec {
            target: self.target.clone(),
            client_engine: self.client_engine,
            size: self.size,
            mode: self.mode,
            secret: self.secret.clone(),
            source_ips: self.source_ips,
            connect_concurrency: self.connect_concurrency,
            ..LoadSpec::default()
        }
    }
}

/// Runs `spec`.
pub async fn run(spec: &CountSpec) -> Result<CountReport, BoxError> {
    let target = spec.check()?;
    match spec.mode {
        Mode::Fanout => fanout(spec, &target).await,
        Mode::Send => send(spec, &target).await,
        _ => echo(spec, &target).await,
    }
}

async fn within<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    tokio::time::timeout(MESSAGE_TIMEOUT, f)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", MESSAGE_TIMEOUT.as_secs()))?
}

async fn echo(spec: &CountSpec, target: &Target) -> Result<CountReport, BoxError> {
    let source = proto::source_addr(target, 0, 1);
    let (mut r, mut w) = proto::connect(target, spec.client_engine, source).await?;
    let payload = Bytes::from(vec![0x5a; spec.size]);
    for k in 0..spec.messages {
        w.feed(payload.clone()).await?;
        w.flush().await?;
        let got = within("echo", r.read()).await?;
        match got {
            Some(b) if b.len() == spec.size => {}
            Some(b) => {
                return Err(format!("echo {k}: {} bytes, sent {}", b.len(), spec.size).into());
            }
            None => return Err(format!("the server closed after {k} echoes").into()),
        }
    }
    drop((r, w));
    Ok(CountReport {
        sent: spec.messages,
        deliveries: spec.messages,
        connected: 1,
        ..CountReport::default()
    })
}

/// A fan-out payload: sequence number (0: a probe), padded to `size`.
fn fanout_payload(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::from(&vec![0x5a; size][..]);
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b.freeze()
}

async fn fanout(spec: &CountSpec, target: &Target) -> Result<CountReport, BoxError> {
    let load = std::sync::Arc::new(spec.load_spec());
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(spec.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..spec.members {
        let (target, load, gate) = (target.clone(), load.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let source = proto::source_addr(&target, i, load.source_ips);
            let rw = with_retries(|| room_member(&target, &load, i, source)).await?;
            Ok::<_, BoxError>((i, rw))
        });
    }
    let mut members = Vec::with_capacity(spec.members);
    while let Some(res) = set.join_next().await {
        members.push(res??);
    }
    members.sort_by_key(|m| m.0);
    // Every member's reader reports (member, sequence number) of each delivery.
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<(usize, u64), String>>();
    let mut writers = Vec::with_capacity(members.len());
    let mut readers = JoinSet::new();
    for (i, mut r, w) in members.into_iter().map(|(i, (r, w))| (i, r, w)) {
        writers.push(w);
        let tx = tx.clone();
        readers.spawn(async move {
            loop {
                let m = match r.read().await {
                    Ok(Some(b)) if b.len() >= 8 => {
                        Ok((i, u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))))
                    }
                    Ok(Some(b)) => Err(format!("member {i}: a delivery of {} bytes", b.len())),
                    Ok(None) => Err(format!("member {i}: the server closed")),
                    Err(e) => Err(format!("member {i}: {e}")),
                };
                let stop = m.is_err();
                if tx.send(m).is_err() || stop {
                    return;
                }
            }
        });
    }
    drop(tx);
    let n = writers.len();
    let mut report = CountReport {
        connected: n,
        ..CountReport::default()
    };
    let publisher = &mut writers[0];
    // Probes until every member has received one.
    let mut probed = vec![false; n];
    let mut reached = 0;
    while reached < n {
        if report.probes == MAX_PROBES {
            return Err(format!(
                "{} of {n} members received none of {MAX_PROBES} probes",
                n - reached
            )
            .into());
        }
        publisher.feed(fanout_payload(0, spec.size)).await?;
        publisher.flush().await?;
        report.probes += 1;
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while reached < n {
            let Ok(got) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            let (i, seq) = got.ok_or("every member's reader stopped")??;
            if seq != 0 {
                return Err(format!("member {i}: publication {seq} before any was made").into());
            }
            report.deliveries += 1;
            report.probe_deliveries += 1;
            if !probed[i] {
                probed[i] = true;
                reached += 1;
            }
        }
    }
    // The counted publishes, each after every member received the one before; probes still
    // in flight arrive before them (a member's deliveries come in publish order).
    for seq in 1..=spec.messages {
        publisher.feed(fanout_payload(seq, spec.size)).await?;
        publisher.flush().await?;
        report.sent += 1;
        let mut got_it = 0;
        while got_it < n {
            let got = tokio::time::timeout(MESSAGE_TIMEOUT, rx.recv())
                .await
                .map_err(|_| {
                    format!(
                        "publication {seq}: {got_it} of {n} members within {} s",
                        MESSAGE_TIMEOUT.as_secs()
                    )
                })?;
            let (i, s) = got.ok_or("every member's reader stopped")??;
            report.deliveries += 1;
            match s {
                0 => report.probe_deliveries += 1,
                s if s == seq => got_it += 1,
                s => return Err(format!("member {i}: publication {s} while {seq} was due").into()),
            }
        }
    }
    readers.abort_all();
    drop(writers);
    Ok(report)
}

async fn send(spec: &CountSpec, target: &Target) -> Result<CountReport, BoxError> {
    let load = spec.load_spec();
    let source = proto::source_addr(target, 0, 1);
    // Distinct names for every run: nothing is left queued from an earlier one.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // `members` pairs, each sending its share of the messages one at a time, all at once.
    let pairs = spec.members.max(1);
    let mut report = CountReport::default();
    let mut set = JoinSet::new();
    for p in 0..pairs {
        let (from, to) = (
            format!("count-{stamp}-{p}-a"),
            format!("count-{stamp}-{p}-b"),
        );
        let (sender, sender_events) = chat::connect(target, &load, &from, source, true).await?;
        chat::drain(sender_events);
        let (recipient, events) = chat::connect(target, &load, &to, source, true).await?;
        report.connected += 2;
        let share =
            spec.messages / pairs as u64 + u64::from((p as u64) < spec.messages % pairs as u64);
        let body = "x".repeat(spec.size);
        set.spawn(async move {
            let r = send_pair(&sender, &to, events, &body, share).await;
            recipient.close().await;
            sender.close().await;
            r
        });
    }
    while let Some(r) = set.join_next().await {
        let (sent, deliveries) = r??;
        report.sent += sent;
        report.deliveries += deliveries;
    }
    Ok(report)
}

/// One pair's sends, each after the one before was answered and delivered: (sent, delivered).
async fn send_pair(
    sender: &chinwag::client::Client,
    to: &str,
    mut events: chinwag::client::Events,
    body: &str,
    messages: u64,
) -> Result<(u64, u64), BoxError> {
    let (mut sent, mut deliveries) = (0, 0);
    for k in 0..messages {
        within("send", async {
            sender
                .send(to, body.to_owned())
                .await
                .map_err(|e| format!("send {k}: {}", chat::error(&e)).into())
        })
        .await?;
        sent += 1;
        within("delivery", async {
            while let Some(ev) = events.next().await {
                match ev {
                    Event::Message(_) => return Ok(()),
                    Event::Disconnected(d) => {
                        return Err(format!("recipient disconnected: {}", d.close.reason).into());
                    }
                    _ => {}
                }
            }
            Err("the recipient's client closed".into())
        })
        .await?;
        deliveries += 1;
    }
    Ok((sent, deliveries))
}
