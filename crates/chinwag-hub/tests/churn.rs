//! Churn (issue 17): 200 members across 20 rooms, a publisher per room; every round 5% of the
//! members drop and come back with their `since` while the rooms go on. Every member that came
//! back inside the history's window ends with exactly its room's sequence (no gap, no
//! duplicate); members kept out past the window are told `recovered: false` (`trimmed`) and get
//! exactly what follows their join. Real sockets (the chat door over TCP); rounds, not a clock.

mod common;

use std::sync::Arc;

use chinwag_hub::{Hub, RoomHistory};
use chinwag_queue::{HistoryConfig, MemoryHistory};
use common::*;
use serde_json::json;

const ROOMS: usize = 20;
const PER_ROOM: usize = 10;
const ROUNDS: usize = 20;
/// Publishes per room per round, half before the drops and half while the dropped are away.
const PUBLISHES: usize = 4;
/// What each room keeps: a member away for more than this many publishes cannot recover.
const KEEP: u64 = 60;

struct Member {
    user: String,
    room: String,
    client: Option<Client>,
    /// Every seq received, in order.
    seen: Vec<u64>,
    epoch: u64,
    /// Kept out for many rounds (past the window).
    long_away: bool,
    /// The join's seq when a recovery was refused (it then gets what follows it).
    not_recovered_at: Option<u64>,
}

impl Member {
    /// Takes the room notifications received so far, without waiting.
    fn drain(&mut self) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        while let Ok(n) = c.notes.try_recv() {
            if n.name == "room" && n.body["room"] == self.room.as_str() {
                assert_eq!(n.body["epoch"], self.epoch, "{}: one epoch", self.user);
                self.seen.push(n.body["seq"].as_u64().unwrap());
            }
        }
    }

    fn drop_connection(&mut self) {
        self.drain();
        if let Some(c) = self.client.take() {
            c.peer.close();
        }
    }

    async fn come_back(&mut self, addr: std::net::SocketAddr) {
        let c = Client::tcp(addr, Some(&token(&self.user, "d"))).await;
        let since = self.seen.last().copied().unwrap_or(0);
        let r = c
            .req(
                "join",
                json!({"room": self.room, "since": {"epoch": self.epoch, "seq": since}}),
            )
            .await
            .unwrap();
        if self.long_away {
            assert_eq!(r["recovered"], false, "{}: {r}", self.user);
            assert_eq!(r["reason"], "trimmed", "{}: {r}", self.user);
            self.not_recovered_at = Some(r["seq"].as_u64().unwrap());
        } else {
            assert_eq!(r["recovered"], true, "{}: {r}", self.user);
        }
        self.client = Some(c);
    }

    /// Reads until `last` (the room's last seq) has come.
    async fn read_to(&mut self, last: u64) {
        while self.seen.last() != Some(&last) {
            let c = self.client.as_mut().unwrap();
            let n = c.note_named("room").await;
            if n.body["room"] == self.room.as_str() {
                self.seen.push(n.body["seq"].as_u64().unwrap());
            }
        }
    }
}

/// A deterministic choice of `k` distinct indices below `n` (an LCG: no dependency, no clock).
fn pick(state: &mut u64, n: usize, k: usize, exclude: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = (*state >> 33) as usize % n;
        if !out.contains(&i) && !exclude.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Each room's publisher publishes half a round's publishes; the rooms' last seqs.
async fn publish_round(publishers: &[Client], round: usize, half: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(ROOMS);
    for (r, p) in publishers.iter().enumerate() {
        let mut s = 0;
        for i in 0..PUBLISHES / 2 {
            let body = format!("{round}.{half}.{i}");
            let res = p
                .req(
                    "publish",
                    json!({"room": format!("room-{r}"), "body": body}),
                )
                .await
                .unwrap();
            s = res["seq"].as_u64().unwrap();
        }
        seqs.push(s);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_blink_end_with_exactly_their_rooms_sequence() {
    let history = Arc::new(MemoryHistory::new(HistoryConfig::default()));
    let hub = Hub::builder()
        .config(config().with_history(RoomHistory::default().with_max_len(KEEP)))
        .authenticator(authenticator())
        .history(history)
        .build();
    let (door, addr) = chat_tcp(&hub);
    let mut publishers = Vec::with_capacity(ROOMS);
    let mut epochs = Vec::with_capacity(ROOMS);
    for r in 0..ROOMS {
        let p = Client::tcp(addr, Some(&token(&format!("pub-{r}"), "d"))).await;
        let joined = p
            .req("join", json!({"room": format!("room-{r}")}))
            .await
            .unwrap();
        epochs.push(joined["epoch"].as_u64().unwrap());
        publishers.push(p);
    }
    let mut members = Vec::with_capacity(ROOMS * PER_ROOM);
    for (r, &epoch) in epochs.iter().enumerate() {
        for m in 0..PER_ROOM {
            let user = format!("m-{r}-{m}");
            let c = Client::tcp(addr, Some(&token(&user, "d"))).await;
            c.req("join", json!({"room": format!("room-{r}")}))
                .await
                .unwrap();
            members.push(Member {
                user,
                room: format!("room-{r}"),
                client: Some(c),
                seen: Vec::new(),
                epoch,
                long_away: false,
                not_recovered_at: None,
            });
        }
    }
    let mut rng = 0x5eed_u64;
    // Five members leave at round 2 and come back at round 18: 16 rounds × 4 publishes = 64
    // missed, more than the 60 their room keeps.
    let long_away = pick(&mut rng, members.len(), 5, &[]);
    for &i in &long_away {
        members[i].long_away = true;
    }
    let mut last = Vec::new();
    let mut recoveries = 0;
    for round in 0..ROUNDS {
        publish_round(&publishers, round, 0).await;
        if round == 2 {
            for &i in &long_away {
                members[i].drop_connection();
            }
        }
        // 5% of the members blink (not those kept out).
        let blinking = pick(&mut rng, members.len(), members.len() / 20, &long_away);
        for &i in &blinking {
            members[i].drop_connection();
        }
        last = publish_round(&publishers, round, 1).await;
        for &i in &blinking {
            members[i].come_back(addr).await;
            recoveries += 1;
        }
        if round == ROUNDS - 2 {
            for &i in &long_away {
                members[i].come_back(addr).await;
            }
        }
        for m in members.iter_mut() {
            m.drain();
        }
    }
    assert!(recoveries >= ROUNDS * 10, "{recoveries} recoveries");
    for m in members.iter_mut() {
        let r: usize = m.room["room-".len()..].parse().unwrap();
        m.read_to(last[r]).await;
        match m.not_recovered_at {
            None => assert_eq!(
                m.seen,
                (1..=last[r]).collect::<Vec<u64>>(),
                "{}: exactly the room's sequence",
                m.user
            ),
            Some(at) => {
                // What it saw before it left, then exactly what followed its join.
                let before: Vec<u64> = m.seen.iter().copied().take_while(|s| *s < at).collect();
                assert_eq!(
                    before,
                    (1..=before.len() as u64).collect::<Vec<u64>>(),
                    "{}",
                    m.user
                );
                let after = &m.seen[before.len()..];
                assert_eq!(
                    after,
                    (at + 1..=last[r]).collect::<Vec<u64>>(),
                    "{}",
                    m.user
                );
            }
        }
    }
    door.shutdown(DEADLINE).await;
    hub.shutdown(DEADLINE).await;
}
