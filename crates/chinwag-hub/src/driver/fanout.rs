//! Handing events to connections: [`Outgoing`] (an event with its encodings, made once per
//! door format and shared), [`Inner::deliver`] (hooks, encoding, the non-blocking send), and
//! [`Fanout`], a room's ordered queue of publishes and presence events.
//!
//! **Fan-out off the publisher's task.** A publish is sequenced under its room shard's lock and
//! its job (the event and the members it was sequenced for) is queued on the room's fan-out
//! queue under the same lock, so jobs are in sequence order. Whoever finds the queue idle
//! drains it; a drain runs inline only while it stays small ([`INLINE_DELIVERIES`]) and hands
//! the rest to a task of its own, so a publish to a room of 10 000 never holds up the
//! publisher's connection (which keeps reading) and each member still gets the room's events
//! in sequence order. Measured in `docs/BENCHMARKS.md` ("Fan-out off the publisher's task").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use chinwag_session::SendError as SessionSendError;
use chinwag_session::codec::Encoded;
use tokio::sync::oneshot;

use super::conn::Conn;
use super::{Inner, lock};
use crate::core::identity::Device;
use crate::core::message::{Body, Delivered, Event};
use crate::core::recovery::Keep;
use crate::core::rooms::Snapshot;
use crate::core::signon::ConnId;
use crate::error::RoomError;
use crate::hooks::BeforeSend;
use crate::link::DoorFormat;
use crate::metrics as m;

/// Formats whose encodings an event caches; connections of formats registered beyond it get
/// theirs made one by one.
const CACHED_FORMATS: usize = 8;

/// Deliveries a drain may run on the task that found the queue idle before it hands the rest
/// to a task of its own.
pub(crate) const INLINE_DELIVERIES: usize = 256;

/// An event on its way out, with its encodings: each door format encodes it at most once, so a
/// publish to 10 000 members is serialized once per format, not once per member.
pub(crate) struct Outgoing {
    event: Event,
    encodings: [OnceLock<Option<Encoded>>; CACHED_FORMATS],
}

impl Outgoing {
    pub(crate) fn new(event: Event) -> Self {
        Outgoing {
            event,
            encodings: Default::default(),
        }
    }

    pub(crate) fn event(&self) -> &Event {
        &self.event
    }

    /// The encoding for `format`, made the first time it is asked for.
    fn encoded(&self, format: &DoorFormat) -> Option<Encoded> {
        match self.encodings.get(format.id) {
            Some(cell) => cell
                .get_or_init(|| format.format.encode(&self.event))
                .clone(),
            None => format.format.encode(&self.event),
        }
    }
}

impl Inner {
    /// Hands one event to one connection: the before-send hook, the shared encoding, the
    /// non-blocking send, the after-send hook.
    pub(crate) fn deliver(&self, conn: &Conn, out: &Outgoing) -> Delivered {
        let app = &self.app;
        let device = &conn.0.device;
        let encoded = match app.before_send(device, out.event()) {
            BeforeSend::Keep => out.encoded(&conn.0.format),
            BeforeSend::Drop => {
                m::dropped("filtered");
                app.after_send(device, out.event(), Delivered::Filtered);
                return Delivered::Filtered;
            }
            BeforeSend::Replace(body) => conn.0.format.format.encode(&out.event().with_body(body)),
        };
        let Some(encoded) = encoded else {
            // Not carried by this door (e.g. presence on the raw room door).
            return Delivered::Filtered;
        };
        let outcome = match conn.0.link.try_send(encoded) {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT, "kind" => out.event().kind()).increment(1);
                Delivered::Sent
            }
            Err(SessionSendError::Closed) => {
                m::dropped("closed");
                Delivered::Closed
            }
            Err(_) => {
                m::dropped("overflow");
                Delivered::Dropped
            }
        };
        app.after_send(device, out.event(), outcome);
        outcome
    }

    /// Hands `out` to every connection of `to` but `skip`: the counts.
    pub(crate) fn deliver_all(
        &self,
        to: &[(ConnId, Conn)],
        skip: Option<ConnId>,
        out: &Outgoing,
    ) -> Counts {
        let started = std::time::Instant::now();
        let mut counts = Counts::default();
        let sample = to.len().div_ceil(64).max(1);
        for (i, (id, c)) in to.iter().enumerate() {
            if Some(*id) == skip {
                continue;
            }
            match self.deliver(c, out) {
                Delivered::Sent => counts.delivered += 1,
                Delivered::Filtered => counts.filtered += 1,
                Delivered::Dropped | Delivered::Closed => counts.dropped += 1,
            }
            if i % sample == 0 {
                metrics::histogram!(m::SEND_QUEUE_DEPTH).record(c.0.link.queue_len() as f64);
            }
        }
        if matches!(out.event(), Event::Room(_)) {
            metrics::counter!(m::FANOUT_DELIVERIES).increment(counts.delivered as u64);
            metrics::histogram!(m::FANOUT_SECONDS).record(started.elapsed().as_secs_f64());
        }
        counts
    }
}

/// What one fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) delivered: usize,
    pub(crate) dropped: usize,
    pub(crate) filtered: usize,
}

/// Publishes of one room appended to its history in one write, at most.
pub(crate) const MAX_APPEND_BATCH: usize = 256;

/// A publish waiting for its room's history (`driver::history` keeps it, then hands it out).
pub(crate) struct Pending {
    pub(crate) room: Arc<str>,
    pub(crate) keep: Keep,
    pub(crate) from: Option<Device>,
    pub(crate) sent_at: u64,
    pub(crate) body: Body,
    /// Its sequence number and what the fan-out did, or why it was not published.
    pub(crate) reply: oneshot::Sender<Result<(u64, Counts), RoomError>>,
}

/// What a room's fan-out queue holds, in order: events to hand out, and publishes to keep in
/// the room's history first (then sequenced and handed out, `driver::history`).
// A job is large (its cached encodings) and was queued by value before there were kept
// publishes; boxing it would cost every publish an allocation, and the small variant wastes
// only its queue slot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Send(Job),
    Keep(Pending),
    /// A publication another hub kept in the shared history (or, without one, a look at the
    /// history for what this hub missed): `driver::history` sequences it.
    Remote(Remote),
}

/// A publication of a room another hub sharing the history kept
/// ([`HubConfig::shared_history`](crate::HubConfig::shared_history)).
pub(crate) struct Remote {
    pub(crate) room: Arc<str>,
    pub(crate) epoch: u64,
    pub(crate) offset: u64,
    /// Its payload as kept; `None`: no publication, read the history's state and take what
    /// this hub lacks (notices may have been missed).
    pub(crate) payload: Option<bytes::Bytes>,
}

/// One event to hand to a room's members.
pub(crate) struct Job {
    pub(crate) out: Outgoing,
    pub(crate) to: Snapshot<Conn>,
    /// A member that does not get it (the subject of a presence event).
    pub(crate) skip: Option<ConnId>,
    /// Who waits for the counts (a publisher).
    pub(crate) reply: Option<oneshot::Sender<Counts>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Work>,
    /// Someone is draining the queue.
    running: bool,
    /// Another hub's publication of this room was not queued (the queue was full): once the
    /// queue is drained, the room reads what it lacks from the shared history.
    lagging: Option<Arc<str>>,
}

/// A room's fan-out queue.
#[derive(Default)]
pub(crate) struct Fanout {
    queue: Mutex<Queue>,
}

impl Fanout {
    /// Whether the queue has room for one more job (checked, under the room shard's lock,
    /// before a publish takes a sequence number: only pushes happen under that lock, so the
    /// room is still there at the push).
    pub(crate) fn has_room(&self, max: usize) -> bool {
        lock(&self.queue).jobs.len() < max.max(1)
    }

    /// Queues `job` (under the room shard's lock, so in sequence order). `true`: nobody drains
    /// the queue; the caller must ([`Inner::drain`]).
    pub(crate) fn push(&self, job: Work) -> bool {
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        let start = !q.running;
        q.running = true;
        start
    }

    /// Queues another hub's publication when there is room; otherwise remembers that the
    /// room lags (a sync follows the queue's last job). `true`: the caller must drain.
    pub(crate) fn push_remote(&self, r: Remote, max: usize) -> bool {
        let mut q = lock(&self.queue);
        if q.jobs.len() >= max.max(1) {
            m::dropped("remote_overflow");
            q.lagging = Some(r.room);
            return false;
        }
        q.jobs.push_back(Work::Remote(r));
        let start = !q.running;
        q.running = true;
        start
    }

    fn pop(&self) -> Option<Work> {
        let mut q = lock(&self.queue);
        let j = q.jobs.pop_front().or_else(|| {
            q.lagging.take().map(|room| {
                Work::Remote(Remote {
                    room,
                    epoch: 0,
                    offset: 0,
                    payload: None,
                })
            })
        });
        if j.is_none() {
            q.running = false;
            // A quiet room keeps no queue storage: a job is large (~0.75 KB; the first push
            // makes room for four), and a server may have a room per pair of users. One
            // allocation per publish to a quiet room is small beside its fan-out.
            q.jobs = VecDeque::new();
        }
        j
    }

    /// Publishes to keep that follow the one popped, up to `max` in all (appended together).
    fn pop_kept(&self, max: usize) -> Vec<Pending> {
        let mut q = lock(&self.queue);
        let mut more = Vec::new();
        while more.len() + 1 < max {
            match q.jobs.front() {
                Some(Work::Keep(_)) => {
                    if let Some(Work::Keep(p)) = q.jobs.pop_front() {
                        more.push(p);
                    }
                }
                _ => break,
            }
        }
        more
    }

    /// The deliveries the next job costs (`usize::MAX`: it must wait for the history, so it
    /// runs on a task).
    fn front_len(&self) -> Option<usize> {
        lock(&self.queue).jobs.front().map(|j| match j {
            Work::Send(j) => j.to.len(),
            Work::Keep(_) | Work::Remote(_) => usize::MAX,
        })
    }
}

impl Inner {
    /// Drains `f`: inline while it stays under [`INLINE_DELIVERIES`] and needs no history
    /// write, then on a task of its own.
    pub(crate) fn drain(self: &Arc<Self>, f: Arc<Fanout>) {
        let mut budget = INLINE_DELIVERIES;
        loop {
            match f.front_len() {
                Some(n) if n <= budget => budget -= n,
                Some(_) => {
                    let inner = self.clone();
                    self.tasks
                        .spawn(async move { inner.drain_all(&f, None).await });
                    return;
                }
                None => {}
            }
            match f.pop() {
                None => return,
                Some(Work::Send(job)) => self.run_job(job),
                Some(first @ (Work::Keep(_) | Work::Remote(_))) => {
                    // Its cost said so: on a task (the history is awaited).
                    let inner = self.clone();
                    self.tasks
                        .spawn(async move { inner.drain_all(&f, Some(first)).await });
                    return;
                }
            }
        }
    }

    /// Drains `f` on a task, starting with `first` when it was popped already.
    async fn drain_all(&self, f: &Fanout, mut first: Option<Work>) {
        loop {
            let next = match first.take() {
                Some(w) => Some(w),
                None => f.pop(),
            };
            match next {
                None => return,
                Some(Work::Send(job)) => self.run_job(job),
                Some(Work::Keep(p)) => {
                    let mut batch = vec![p];
                    batch.extend(f.pop_kept(MAX_APPEND_BATCH));
                    self.keep_and_send(batch).await;
                }
                Some(Work::Remote(r)) => self.take_remote(r).await,
            }
            // One job at a time, letting the connections' tasks write in between.
            tokio::task::yield_now().await;
        }
    }

    fn run_job(&self, job: Job) {
        let counts = self.deliver_all(&job.to, job.skip, &job.out);
        if let Some(tx) = job.reply {
            let _ = tx.send(counts);
        }
    }
}
