//! The delivery rules with a **shared queue** (a cluster): two hubs' cores, one queue whose ids
//! are dense per user, and the push notices a cluster sends between them, under random
//! interleavings (proptest), with no sockets and no runtime. Notices may arrive late, or be
//! lost — the node then learns it missed some (its pub/sub connection dropped) and makes the
//! user's connections catch up. The invariants are in the test names: every connection on
//! either node gets the user's messages in entry order, never twice, under their entry ids,
//! and ends with everything queued.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::EntryId;
use super::PartialDelivery;
use super::message::{Body, Delivered, DirectMessage, MessageId};
use super::pipeline::{ConnOutcome, Pending, Progress, ReplayStep, Step};
use super::signon::ConnId;
use super::users::{UserLimits, Users};

const USER: &str = "u";

/// One node: its core, its outstanding work, what its connections got.
struct Node {
    users: Users<u64>,
    pipe: Option<Pipe>,
    replays: BTreeMap<u64, Replay>,
    /// Notices from the queue, in order, not yet handed to the core.
    notices: VecDeque<(EntryId, Arc<DirectMessage>)>,
    /// A notice was lost: the node catches up when it notices (its listener reconnects).
    missed: bool,
    attached: BTreeSet<u64>,
}

enum Pipe {
    Step(Step<u64>),
    Pushed(Vec<Option<EntryId>>),
    Delivered(Vec<ConnOutcome>),
}

enum Replay {
    Next,
    Read(EntryId, usize),
    Report(Vec<(EntryId, Option<Arc<DirectMessage>>)>),
    Write(Vec<Arc<DirectMessage>>),
}

struct Cluster {
    nodes: [Node; 2],
    /// The shared queue: entries of the one user, ids 1, 2, 3, ... (dense).
    queue: Vec<(EntryId, Arc<DirectMessage>)>,
    next_conn: u64,
    next_token: u64,
    /// What each connection was handed, in order (message ids).
    received: BTreeMap<u64, Vec<MessageId>>,
}

fn limits() -> UserLimits {
    UserLimits {
        max_held_live: 4,
        max_unacked: 1_000,
        replay_page: 2,
        max_pending_per_user: 3,
        message_rate: None,
        rate_limit_strikes: 10,
        partial: PartialDelivery::AnyDelivered,
        shared_queue: true,
    }
}

impl Cluster {
    fn new() -> Self {
        let node = || Node {
            users: Users::new(limits()),
            pipe: None,
            replays: BTreeMap::new(),
            notices: VecDeque::new(),
            missed: false,
            attached: BTreeSet::new(),
        };
        Cluster {
            nodes: [node(), node()],
            queue: Vec::new(),
            next_conn: 1,
            next_token: 1,
            received: BTreeMap::new(),
        }
    }

    fn progress(&mut self, n: usize, p: Progress<u64>) {
        let node = &mut self.nodes[n];
        if let Some(step) = p.next {
            assert!(node.pipe.is_none(), "one stage at a time per user");
            node.pipe = Some(Pipe::Step(step));
        }
        for c in p.replays {
            node.replays.insert(c.0, Replay::Next);
        }
    }

    fn connect(&mut self, n: usize) {
        let id = self.next_conn;
        self.next_conn += 1;
        let node = &mut self.nodes[n];
        node.users.attach(ConnId(id), id, USER.into(), true);
        node.attached.insert(id);
        node.replays.insert(id, Replay::Next);
        self.received.insert(id, Vec::new());
    }

    fn disconnect(&mut self, n: usize, k: usize) {
        let node = &mut self.nodes[n];
        let Some(&id) = node.attached.iter().nth(k % node.attached.len().max(1)) else {
            return;
        };
        node.users.detach(ConnId(id));
        node.attached.remove(&id);
        node.replays.remove(&id);
    }

    fn send(&mut self, n: usize) {
        let token = self.next_token;
        self.next_token += 1;
        // The node's own id source: the shared queue renumbers it.
        let msg = Arc::new(DirectMessage {
            id: MessageId(1_000_000 + token),
            to: USER.into(),
            from: None,
            sent_at: 0,
            body: Body::text("x"),
        });
        let pending = Pending::new(token, msg, Duration::from_secs(60));
        if let Ok(p) = self.nodes[n].users.send(USER.into(), pending) {
            self.progress(n, p);
        }
    }

    fn pipe_work(&mut self, n: usize, full: bool) {
        let Some(work) = self.nodes[n].pipe.take() else {
            return;
        };
        match work {
            Pipe::Step(Step::Push { items, .. }) => {
                let mut entries = Vec::new();
                for (_, msg, _) in items {
                    let e = self.queue.len() as EntryId + 1;
                    self.queue.push((e, msg.clone()));
                    // The queue's notice, to both nodes (the pushing one too).
                    for node in &mut self.nodes {
                        node.notices.push_back((e, msg.clone()));
                    }
                    entries.push(Some(e));
                }
                self.nodes[n].pipe = Some(Pipe::Pushed(entries));
            }
            Pipe::Pushed(entries) => {
                let p = self.nodes[n].users.pushed(&Arc::from(USER), &entries);
                self.progress(n, p);
            }
            Pipe::Step(Step::Deliver { plan, .. }) => {
                let mut outcomes = Vec::new();
                for cp in plan {
                    let open = self.nodes[n].attached.contains(&cp.conn.0);
                    let mut results = Vec::new();
                    for m in cp.msgs {
                        let r = if !open {
                            Delivered::Closed
                        } else if full {
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
                self.nodes[n].pipe = Some(Pipe::Delivered(outcomes));
            }
            Pipe::Delivered(outcomes) => {
                let p = self.nodes[n].users.delivered(&Arc::from(USER), &outcomes);
                self.progress(n, p);
            }
        }
    }

    fn replay_work(&mut self, n: usize, k: usize) {
        let node = &mut self.nodes[n];
        let Some(&id) = node.replays.keys().nth(k % node.replays.len().max(1)) else {
            return;
        };
        let work = node.replays.remove(&id).expect("chosen from the map");
        let next = match work {
            Replay::Next => step_of(node.users.replay_next(ConnId(id))),
            Replay::Read(after, max) => Some(Replay::Report(
                self.queue
                    .iter()
                    .filter(|(e, _)| *e > after)
                    .take(max)
                    .map(|(e, m)| (*e, Some(m.clone())))
                    .collect(),
            )),
            Replay::Report(entries) => step_of(node.users.replay_read(ConnId(id), entries).0),
            Replay::Write(msgs) => {
                if node.users.conn(ConnId(id)).is_some_and(|c| c.recipient) {
                    let r = self.received.entry(id).or_default();
                    r.extend(msgs.iter().map(|m| m.id));
                }
                step_of(node.users.replay_written(ConnId(id)))
            }
        };
        if let Some(w) = next {
            self.nodes[n].replays.insert(id, w);
        }
    }

    /// The node's next notice reaches its core, or is lost.
    fn notice(&mut self, n: usize, lose: bool) {
        let Some((e, msg)) = self.nodes[n].notices.pop_front() else {
            return;
        };
        if lose {
            self.nodes[n].missed = true;
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let p = self.nodes[n]
            .users
            .stored_elsewhere(&Arc::from(USER), token, e, msg);
        self.progress(n, p);
    }

    /// The node's listener reconnected after losing notices: the user's connections catch up.
    fn reconnect(&mut self, n: usize) {
        if !std::mem::take(&mut self.nodes[n].missed) {
            return;
        }
        let replays = self.nodes[n].users.catch_up(USER);
        for c in replays {
            self.nodes[n].replays.insert(c.0, Replay::Next);
        }
    }

    fn quiesce(&mut self) {
        for _ in 0..100_000 {
            let busy = (0..2).find(|&n| {
                let node = &self.nodes[n];
                node.pipe.is_some()
                    || !node.replays.is_empty()
                    || !node.notices.is_empty()
                    || node.missed
            });
            let Some(n) = busy else { return };
            if self.nodes[n].pipe.is_some() {
                self.pipe_work(n, false);
            } else if !self.nodes[n].notices.is_empty() {
                self.notice(n, false);
            } else if self.nodes[n].missed {
                self.reconnect(n);
            } else {
                self.replay_work(n, 0);
            }
        }
        panic!("the work never ends");
    }
}

fn step_of(s: ReplayStep) -> Option<Replay> {
    match s {
        ReplayStep::Read { after, max, .. } => Some(Replay::Read(after, max)),
        ReplayStep::Write(m) => Some(Replay::Write(m)),
        ReplayStep::Live | ReplayStep::Gone => None,
    }
}

#[derive(Debug, Clone)]
enum Action {
    Connect(usize),
    Disconnect(usize, usize),
    Send(usize),
    Pipe(usize, bool),
    Replay(usize, usize),
    Notice(usize, bool),
    Reconnect(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let n = 0usize..2;
    prop_oneof![
        2 => n.clone().prop_map(Action::Connect),
        1 => (n.clone(), any::<usize>()).prop_map(|(n, k)| Action::Disconnect(n, k)),
        4 => n.clone().prop_map(Action::Send),
        6 => (n.clone(), prop::bool::weighted(0.1)).prop_map(|(n, f)| Action::Pipe(n, f)),
        5 => (n.clone(), any::<usize>()).prop_map(|(n, k)| Action::Replay(n, k)),
        5 => (n.clone(), prop::bool::weighted(0.1)).prop_map(|(n, l)| Action::Notice(n, l)),
        1 => n.prop_map(Action::Reconnect),
    ]
}

fn run(actions: &[Action]) -> Cluster {
    let mut c = Cluster::new();
    for a in actions {
        match *a {
            Action::Connect(n) => c.connect(n),
            Action::Disconnect(n, k) => c.disconnect(n, k),
            Action::Send(n) => c.send(n),
            Action::Pipe(n, full) => c.pipe_work(n, full),
            Action::Replay(n, k) => c.replay_work(n, k),
            Action::Notice(n, lose) => c.notice(n, lose),
            Action::Reconnect(n) => c.reconnect(n),
        }
    }
    c.quiesce();
    c
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn connections_on_both_nodes_get_entries_in_order_never_twice_under_entry_ids(
        actions in prop::collection::vec(action(), 1..150),
    ) {
        let c = run(&actions);
        for (conn, got) in &c.received {
            for w in got.windows(2) {
                prop_assert!(w[0] < w[1], "connection {conn} got {got:?}");
            }
            for id in got {
                prop_assert!(id.0 as usize <= c.queue.len(), "{conn} got {id}, not an entry id");
            }
        }
    }

    #[test]
    fn every_connection_left_on_either_node_ends_with_every_entry(
        actions in prop::collection::vec(action(), 1..150),
    ) {
        let c = run(&actions);
        let all: Vec<MessageId> = c.queue.iter().map(|(e, _)| MessageId(*e)).collect();
        for node in &c.nodes {
            for id in &node.attached {
                prop_assert_eq!(&c.received[id], &all, "connection {}", id);
            }
        }
    }
}

#[test]
fn a_send_on_one_node_reaches_the_other_through_its_notice_under_its_entry_id() {
    let mut c = Cluster::new();
    c.connect(0);
    c.connect(1);
    c.quiesce();
    c.send(0);
    c.send(1);
    c.send(0);
    c.quiesce();
    let want = [MessageId(1), MessageId(2), MessageId(3)];
    assert_eq!(c.received[&1], want, "node 0's connection");
    assert_eq!(c.received[&2], want, "node 1's connection");
}

#[test]
fn a_gap_makes_a_live_connection_read_the_queue_instead_of_skipping() {
    let mut c = Cluster::new();
    c.connect(1);
    c.quiesce();
    // Node 0 stores entry 1; node 1 has not heard of it when its own send, entry 2, is stored.
    c.send(0);
    c.pipe_work(0, false); // entry 1 pushed (notices queued)
    c.nodes[1].notices.clear(); // node 1's notice of entry 1 is late...
    c.send(1);
    c.pipe_work(1, false); // entry 2 pushed
    c.nodes[1].notices.clear();
    c.pipe_work(1, false); // node 1's core: a gap before entry 2: its connection reads
    assert_eq!(
        c.nodes[1].replays.len(),
        1,
        "the live connection replays rather than take entry 2 before entry 1"
    );
    c.quiesce();
    assert_eq!(c.received[&1], [MessageId(1), MessageId(2)]);
}
