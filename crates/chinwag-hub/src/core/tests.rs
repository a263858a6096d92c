//! The core's delivery rules under random interleavings (proptest), with a manual clock, no
//! sockets and no runtime. A harness plays the driver: it keeps the work the core asked for
//! (a pipeline stage, each connection's replay step, each half of a queue operation) and the
//! test's random actions pick which piece of work happens next, among connects, sign-ons,
//! disconnects, sends with and without TTL, acks, full send queues and the clock moving on.
//! The invariants are in the test names.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::identity::Device;
use super::message::{Body, Delivered, DirectMessage, MessageId};
use super::pipeline::{ConnOutcome, Pending, Progress, ReplayStep, Step};
use super::signon::{ConnId, ConnRef, NodeId, SignOn, SignOnTable};
use super::time::Time;
use super::users::{UserLimits, Users};
use super::{EntryId, PartialDelivery};

const USER: &str = "u";

/// The offline queue as the queue crate's semantics say: ids increase, reads skip expired
/// entries, acks remove up to an id.
#[derive(Default)]
struct ModelQueue {
    next: EntryId,
    entries: Vec<(EntryId, Arc<DirectMessage>, Time)>,
}

impl ModelQueue {
    fn push(&mut self, msg: Arc<DirectMessage>, expires: Time) -> EntryId {
        self.next += 1;
        self.entries.push((self.next, msg, expires));
        self.next
    }
    fn read(
        &self,
        after: EntryId,
        max: usize,
        now: Time,
    ) -> Vec<(EntryId, Option<Arc<DirectMessage>>)> {
        self.entries
            .iter()
            .filter(|(e, _, exp)| *e > after && *exp > now)
            .take(max)
            .map(|(e, m, _)| (*e, Some(m.clone())))
            .collect()
    }
    fn ack(&mut self, upto: EntryId) {
        self.entries.retain(|(e, _, _)| *e > upto);
    }
    fn live(&self, now: Time) -> Vec<MessageId> {
        self.entries
            .iter()
            .filter(|(_, _, exp)| *exp > now)
            .map(|(_, m, _)| m.id)
            .collect()
    }
}

/// A replay's outstanding work.
enum ReplayWork {
    /// Ask the core for the next step.
    Next,
    /// A read was asked for; not done yet.
    Read { after: EntryId, max: usize },
    /// The read was done (at some instant); the core has not been told.
    Report(Vec<(EntryId, Option<Arc<DirectMessage>>)>),
    /// Write these, then tell the core.
    Write(Vec<Arc<DirectMessage>>),
}

/// The pipeline's outstanding work.
enum PipeWork {
    Step(Step<u64>),
    /// Pushed to the queue; the core has not been told.
    Pushed(Vec<Option<EntryId>>),
    /// Handed to connections; the core has not been told.
    Delivered(Vec<ConnOutcome>),
}

struct Harness {
    users: Users<u64>,
    table: SignOnTable,
    policy: SignOn,
    queue: ModelQueue,
    now: Time,
    next_conn: u64,
    next_token: u64,
    next_id: u64,
    acknowledges: HashMap<u64, bool>,
    attached: BTreeSet<u64>,
    pipe: Option<PipeWork>,
    replays: BTreeMap<u64, ReplayWork>,
    /// What each connection was handed, in order.
    received: HashMap<u64, Vec<MessageId>>,
    /// Sends and their results (`None`: not finished).
    sends: BTreeMap<u64, Option<Result<bool, ()>>>,
    /// Messages a client acknowledged.
    acked: BTreeSet<MessageId>,
}

impl Harness {
    fn new(policy: SignOn, max_held: usize) -> Self {
        Harness {
            users: Users::new(UserLimits {
                max_held_live: max_held,
                max_unacked: 1_000,
                replay_page: 3,
                max_pending_per_user: 1_000,
                message_rate: None,
                rate_limit_strikes: 10,
                partial: PartialDelivery::AnyDelivered,
                shared_queue: false,
            }),
            table: SignOnTable::new(),
            policy,
            queue: ModelQueue::default(),
            now: Time::from_micros(1),
            next_conn: 1,
            next_token: 1,
            next_id: 1,
            acknowledges: HashMap::new(),
            attached: BTreeSet::new(),
            pipe: None,
            replays: BTreeMap::new(),
            received: HashMap::new(),
            sends: BTreeMap::new(),
            acked: BTreeSet::new(),
        }
    }

    fn progress(&mut self, p: Progress<u64>) {
        if let Some(step) = p.next {
            assert!(self.pipe.is_none(), "one stage at a time per user");
            self.pipe = Some(PipeWork::Step(step));
        }
        for f in p.finished {
            let r = f.result.map(|r| r.queued).map_err(|_| ());
            let prev = self.sends.insert(f.token, Some(r));
            assert_eq!(prev, Some(None), "a send finishes once");
        }
        for c in p.replays {
            assert!(
                !self.replays.contains_key(&c.0),
                "a connection has one replay at a time"
            );
            self.replays.insert(c.0, ReplayWork::Next);
        }
        if let Some((_, e)) = p.ack {
            self.queue.ack(e);
        }
    }

    fn connect(&mut self, device: u8, acks: bool) {
        let id = self.next_conn;
        self.next_conn += 1;
        self.users.attach(ConnId(id), id, USER.into(), acks);
        self.acknowledges.insert(id, acks);
        self.attached.insert(id);
        self.received.insert(id, Vec::new());
        let d = Device::new(USER, format!("d{device}"));
        let out = self.table.sign_on(
            &d,
            ConnRef {
                node: NodeId(0),
                conn: ConnId(id),
            },
            self.policy,
        );
        let replaced: Vec<ConnId> = out.replaced.iter().map(|s| s.conn.conn).collect();
        // The driver writes what was held for them before their goodbye.
        for (id, closing) in self.users.replace(&replaced) {
            let got = self.received.entry(id.0).or_default();
            got.extend(closing.held.iter().map(|m| m.id));
        }
        self.replays.insert(id, ReplayWork::Next);
    }

    fn disconnect(&mut self, k: usize) {
        let Some(&id) = self.attached.iter().nth(k % self.attached.len().max(1)) else {
            return;
        };
        self.users.detach(ConnId(id));
        self.table.sign_off(
            USER,
            ConnRef {
                node: NodeId(0),
                conn: ConnId(id),
            },
        );
        self.attached.remove(&id);
        self.replays.remove(&id);
    }

    fn send(&mut self, live_only: bool, ttl_ms: u64) {
        let token = self.next_token;
        self.next_token += 1;
        let id = MessageId(self.next_id);
        self.next_id += 1;
        let msg = Arc::new(DirectMessage {
            id,
            to: USER.into(),
            from: None,
            sent_at: 0,
            body: Body::text("x"),
        });
        let ttl = if live_only {
            Duration::ZERO
        } else {
            Duration::from_millis(ttl_ms)
        };
        match self.users.send(USER.into(), Pending::new(token, msg, ttl)) {
            Ok(p) => {
                self.sends.insert(token, None);
                self.progress(p);
            }
            Err(_) => {
                self.sends.insert(token, Some(Err(())));
            }
        }
    }

    fn ack(&mut self, k: usize) {
        let Some(&id) = self.attached.iter().nth(k % self.attached.len().max(1)) else {
            return;
        };
        let Some(&last) = self.received.get(&id).and_then(|r| r.last()) else {
            return;
        };
        if let Some((_, e)) = self.users.ack(ConnId(id), last) {
            self.queue.ack(e);
        }
        if self.acknowledges[&id] {
            self.acked.extend(self.received[&id].iter().copied());
        }
    }

    /// Does the pipeline's next piece of work; `fail` picks full send queues.
    fn pipe_work(&mut self, fail: u8) {
        let Some(work) = self.pipe.take() else { return };
        match work {
            PipeWork::Step(Step::Push { items, .. }) => {
                let entries = items
                    .into_iter()
                    .map(|(_, msg, ttl)| Some(self.queue.push(msg, self.now + ttl)))
                    .collect();
                self.pipe = Some(PipeWork::Pushed(entries));
            }
            PipeWork::Pushed(entries) => {
                let p = self.users.pushed(&Arc::from(USER), &entries);
                self.progress(p);
            }
            PipeWork::Step(Step::Deliver { plan, .. }) => {
                let mut outcomes = Vec::new();
                for (i, cp) in plan.into_iter().enumerate() {
                    let mut results = Vec::new();
                    for m in cp.msgs {
                        let open = self.users.conn(cp.conn).is_some_and(|c| c.recipient);
                        let r = if !self.attached.contains(&cp.conn.0) || !open {
                            Delivered::Closed
                        } else if fail & (1 << (i % 8)) != 0 {
                            Delivered::Dropped
                        } else {
                            Delivered::Sent
                        };
                        if r == Delivered::Sent {
                            self.received.entry(cp.conn.0).or_default().push(m.id);
                        }
                        results.push(r);
                        if r != Delivered::Sent {
                            break;
                        }
                    }
                    outcomes.push(ConnOutcome {
                        conn: cp.conn,
                        results,
                    });
                }
                self.pipe = Some(PipeWork::Delivered(outcomes));
            }
            PipeWork::Delivered(outcomes) => {
                let p = self.users.delivered(&Arc::from(USER), &outcomes);
                self.progress(p);
            }
        }
    }

    /// Does the next piece of work of the `k`-th replay.
    fn replay_work(&mut self, k: usize) {
        let Some(&id) = self.replays.keys().nth(k % self.replays.len().max(1)) else {
            return;
        };
        let work = self.replays.remove(&id).expect("chosen from the map");
        let next = match work {
            ReplayWork::Next => step_of(self.users.replay_next(ConnId(id))),
            ReplayWork::Read { after, max } => {
                Some(ReplayWork::Report(self.queue.read(after, max, self.now)))
            }
            ReplayWork::Report(entries) => {
                let (step, ack) = self.users.replay_read(ConnId(id), entries);
                if let Some((_, e)) = ack {
                    self.queue.ack(e);
                }
                step_of(step)
            }
            ReplayWork::Write(msgs) => {
                // A connection the hub closed takes no more writes (its session is closing).
                let open = self.users.conn(ConnId(id)).is_some_and(|c| c.recipient);
                if open {
                    let r = self.received.entry(id).or_default();
                    r.extend(msgs.iter().map(|m| m.id));
                }
                step_of(self.users.replay_written(ConnId(id)))
            }
        };
        if let Some(w) = next {
            self.replays.insert(id, w);
        }
    }

    /// Does all outstanding work, with no more failures.
    fn quiesce(&mut self) {
        for _ in 0..100_000 {
            if self.pipe.is_some() {
                self.pipe_work(0);
            } else if !self.replays.is_empty() {
                self.replay_work(0);
            } else {
                return;
            }
        }
        panic!("the work never ends");
    }
}

fn step_of(s: ReplayStep) -> Option<ReplayWork> {
    match s {
        ReplayStep::Read { after, max, .. } => Some(ReplayWork::Read { after, max }),
        ReplayStep::Write(m) => Some(ReplayWork::Write(m)),
        ReplayStep::Live | ReplayStep::Gone => None,
    }
}

#[derive(Debug, Clone)]
enum Action {
    Connect { device: u8, acks: bool },
    Disconnect(usize),
    Send { live_only: bool, ttl_ms: u64 },
    Ack(usize),
    Pipe { fail: u8 },
    Replay(usize),
    Tick(u64),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0u8..3, any::<bool>()).prop_map(|(device, acks)| Action::Connect { device, acks }),
        1 => any::<usize>().prop_map(Action::Disconnect),
        4 => (prop::bool::weighted(0.2), 1u64..5_000).prop_map(|(live_only, ttl_ms)| Action::Send { live_only, ttl_ms }),
        2 => any::<usize>().prop_map(Action::Ack),
        5 => any::<u8>().prop_map(|b| Action::Pipe { fail: b & 0b0001_0001 }),
        5 => any::<usize>().prop_map(Action::Replay),
        1 => (1u64..2_000).prop_map(Action::Tick),
    ]
}

fn policy() -> impl Strategy<Value = SignOn> {
    prop_oneof![
        Just(SignOn::Single),
        Just(SignOn::PerDevice),
        (1usize..4).prop_map(|max| SignOn::Multi { max }),
    ]
}

fn run(policy: SignOn, max_held: usize, actions: &[Action]) -> Harness {
    let mut h = Harness::new(policy, max_held);
    for a in actions {
        match *a {
            Action::Connect { device, acks } => h.connect(device, acks),
            Action::Disconnect(k) => h.disconnect(k),
            Action::Send { live_only, ttl_ms } => h.send(live_only, ttl_ms),
            Action::Ack(k) => h.ack(k),
            Action::Pipe { fail } => h.pipe_work(fail),
            Action::Replay(k) => h.replay_work(k),
            Action::Tick(ms) => h.now = h.now + Duration::from_millis(ms),
        }
    }
    h.quiesce();
    h
}

proptest! {
    // At least 512 random histories per property (`PROPTEST_CASES` asks for more).
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_connection_gets_its_users_messages_in_id_order_and_never_twice(
        policy in policy(),
        max_held in 0usize..3,
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let h = run(policy, max_held, &actions);
        for (conn, got) in &h.received {
            for w in got.windows(2) {
                prop_assert!(w[0] < w[1], "connection {conn} got {got:?}");
            }
        }
    }

    #[test]
    fn every_live_connection_ends_with_every_queued_message_nothing_accepted_is_lost(
        policy in policy(),
        max_held in 0usize..3,
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let h = run(policy, max_held, &actions);
        let queued: BTreeSet<MessageId> = h.queue.live(h.now).into_iter().collect();
        for (id, _) in h.users.recipients(USER) {
            let got: BTreeSet<MessageId> = h.received[&id.0].iter().copied().collect();
            let missing: Vec<_> = queued.difference(&got).collect();
            prop_assert!(missing.is_empty(), "connection {} lacks {missing:?}", id.0);
        }
        // A new device that connects now reads exactly what is queued, in order.
        let mut h = h;
        h.connect(9, true);
        let fresh = h.next_conn - 1;
        h.quiesce();
        let queued: Vec<MessageId> = h.queue.live(h.now);
        prop_assert_eq!(&h.received[&fresh], &queued);
    }

    #[test]
    fn an_acknowledged_message_is_never_delivered_again(
        policy in policy(),
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let mut h = run(policy, 2, &actions);
        // Everything a client acknowledged is gone for every connection that comes later.
        h.connect(8, true);
        let fresh = h.next_conn - 1;
        h.quiesce();
        for id in &h.received[&fresh] {
            prop_assert!(!h.acked.contains(id), "{id} was acknowledged");
        }
    }

    #[test]
    fn every_send_finishes_and_every_replay_ends(
        policy in policy(),
        max_held in 0usize..3,
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let h = run(policy, max_held, &actions);
        for (token, r) in &h.sends {
            prop_assert!(r.is_some(), "send {token} never finished");
        }
        prop_assert!(h.replays.is_empty());
        prop_assert!(h.pipe.is_none());
    }

    #[test]
    fn exactly_the_sign_on_policys_survivors_remain_recipients(
        policy in policy(),
        actions in prop::collection::vec(action(), 1..120),
    ) {
        let h = run(policy, 2, &actions);
        let recipients: BTreeSet<u64> =
            h.users.recipients(USER).into_iter().map(|(id, _)| id.0).collect();
        let survivors: BTreeSet<u64> =
            h.table.connections(USER).iter().map(|s| s.conn.conn.0).collect();
        prop_assert_eq!(&recipients, &survivors);
        let max = match policy {
            SignOn::Single => 1,
            SignOn::PerDevice => 3,
            SignOn::Multi { max } => max,
        };
        prop_assert!(recipients.len() <= max);
    }
}

#[test]
fn a_full_send_queue_turns_a_live_connection_back_to_replaying_without_a_gap() {
    let mut h = Harness::new(SignOn::Multi { max: 2 }, 4);
    h.connect(0, true);
    h.quiesce();
    h.send(false, 10_000);
    h.pipe_work(0); // pushed to the queue
    h.pipe_work(0); // core told: a plan for the live connection
    h.pipe_work(1); // its send queue is full
    h.pipe_work(0); // core told: replay
    assert!(h.received[&1].is_empty());
    assert_eq!(h.replays.len(), 1, "it replays");
    h.send(false, 10_000);
    h.quiesce();
    assert_eq!(h.received[&1], [MessageId(1), MessageId(2)]);
}

#[test]
fn live_only_messages_held_during_a_replay_go_out_in_id_order() {
    let mut h = Harness::new(SignOn::Single, 4);
    h.send(false, 10_000); // queued while offline: id 1
    h.quiesce();
    h.connect(0, true); // replaying
    h.send(true, 0); // live only, id 2: held
    h.send(false, 10_000); // id 3
    h.quiesce();
    assert_eq!(h.received[&1], [MessageId(1), MessageId(2), MessageId(3)]);
}

#[test]
fn a_live_only_send_to_nobody_is_offline() {
    let mut h = Harness::new(SignOn::Single, 4);
    h.send(true, 0);
    assert_eq!(h.sends[&1], Some(Err(())));
}
