//! A connection's life on real loopback sockets: token expiry and refresh, kicks, graceful
//! shutdown (and queued messages surviving a restart on redb), the application's hooks, and
//! what a partially delivered live-only send reports under each policy.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::{
    App, BeforeSend, Body, Close, Conn, Delivered, Device, Event, Hub, Incoming, PartialDelivery,
    Rejection, SendOptions, SignOn,
};
use chinwag_queue::{Queue, QueueConfig};
use chinwag_queue_redb::RedbQueue;
use chinwag_session::{OverflowPolicy, ServerConfig, SessionConfig};
use chinwag_ws::WsAcceptor;
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::json;
use tokio::sync::mpsc;

async fn stop(hub: &Hub, doors: &[&DoorHandle]) {
    hub.shutdown(DEADLINE).await;
    for d in doors {
        d.shutdown(DEADLINE).await;
    }
}

fn short_token(user: &str, device: &str) -> String {
    issuer().issue(user, Some(device), Duration::from_secs(2))
}

// ---- token expiry and refresh (on the hub's clock, paused) -----------------------------------------

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_bye_4002() {
    let hub = hub(config().with_token_grace(Duration::ZERO), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let mut c = Client::ws_bearer::<Tungstenite>(&url, &short_token("exp", "d")).await;
    assert_eq!(c.whoami().await["user"], "exp");
    let bye = c.bye().await;
    assert_eq!(bye["code"], 4002, "{bye}");
    assert_eq!(bye["name"], "token_expired");
    assert_eq!(bye["reconnect"], "after_refresh");
    assert_eq!(c.closed().await, Some(4002));
    until(&hub, "it leaves the hub", |hub| hub.connection_count() == 0).await;
    stop(&hub, &[&door]).await;
}

#[tokio::test(start_paused = true)]
async fn a_refresh_keeps_the_connection_past_the_old_expiry() {
    let hub = hub(config().with_token_grace(Duration::ZERO), None);
    let (door, addr) = chat_tcp(&hub);
    // The refreshed one's token is issued first: it expires no later than the control's.
    let fresh = Client::tcp(addr, Some(&short_token("fresh", "d"))).await;
    let mut control = Client::tcp(addr, Some(&short_token("control", "d"))).await;
    let r = fresh
        .req(
            "refresh",
            json!({ "token": issuer().issue("fresh", Some("d"), Duration::from_secs(3600)) }),
        )
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = r["expires_at"].as_u64().unwrap();
    assert!(exp > now + 3000, "{r}");
    let bye = control.bye().await;
    assert_eq!(bye["code"], 4002, "{bye}");
    control.closed().await;
    // Its old expiry has passed too: it is still open and working.
    assert!(fresh.peer.close_reason().is_none());
    assert_eq!(fresh.whoami().await["user"], "fresh");
    assert_eq!(hub.connections_of("fresh").len(), 1);
    stop(&hub, &[&door]).await;
}

/// A token whose `exp` has passed but is inside the authenticator's leeway is accepted; the
/// connection then ends at the later of `exp` and now, plus the grace period: now + grace.
#[tokio::test(start_paused = true)]
async fn a_token_already_past_exp_gets_the_whole_grace_period() {
    let grace = Duration::from_secs(20);
    let hub = hub(config().with_token_grace(grace), None);
    let (door, addr) = chat_tcp(&hub);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // `exp` 10 s ago: inside the default 30 s leeway.
    let t = issuer().issue_claims(&json!({ "sub": "late", "device": "d", "exp": now - 10 }));
    let mut c = Client::tcp(addr, Some(&t)).await;
    tokio::time::sleep(grace - Duration::from_secs(1)).await;
    assert_eq!(
        c.whoami().await["user"],
        "late",
        "still there inside the grace period"
    );
    let bye = c.bye().await;
    assert_eq!(bye["code"], 4002, "{bye}");
    stop(&hub, &[&door]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_must_name_the_same_user() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("ada", "d"))).await;
    let e = c
        .req("refresh", json!({ "token": token("bob", "d") }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "auth_other_user", "{e:?}");
    let e = c
        .req("refresh", json!({ "token": expired_token("ada", "d") }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "auth_expired", "{e:?}");
    // Refused refreshes leave the connection as it was.
    assert_eq!(c.whoami().await["user"], "ada");
    // Not before signing in.
    let anon = Client::tcp(addr, None).await;
    let e = anon
        .req("refresh", json!({ "token": token("ada", "d") }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_signed_in");
    stop(&hub, &[&door]).await;
}

// ---- kicks --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_is_bye_4004_with_the_reason() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<FastWebSockets>(&hub).await;
    let mut c = Client::ws_bearer::<FastWebSockets>(&url, &token("u", "d")).await;
    let other = Client::ws_bearer::<FastWebSockets>(&url, &token("v", "d")).await;
    assert_eq!(hub.kick("u", None, "bye bye"), 1);
    let bye = c.bye().await;
    assert_eq!(bye["code"], 4004, "{bye}");
    assert_eq!(bye["name"], "kicked");
    assert_eq!(bye["reason"], "bye bye");
    assert_eq!(bye["reconnect"], "never");
    assert_eq!(c.closed().await, Some(4004));
    until(&hub, "u leaves the hub", |hub| {
        hub.connections_of("u").is_empty()
    })
    .await;
    assert_eq!(hub.kick("u", None, "again"), 0);
    assert_eq!(other.whoami().await["user"], "v");
    stop(&hub, &[&door]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_of_one_device_under_per_device() {
    let hub = hub(config().with_sign_on(SignOn::PerDevice), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let mut phone = Client::ws_bearer::<Tungstenite>(&url, &token("u", "phone")).await;
    let laptop = Client::ws_bearer::<Tungstenite>(&url, &token("u", "laptop")).await;
    assert_eq!(hub.connections_of("u").len(), 2);
    assert_eq!(hub.kick("u", Some("tablet"), "no such device"), 0);
    assert_eq!(hub.kick("u", Some("phone"), "lost phone"), 1);
    let bye = phone.bye().await;
    assert_eq!(
        (bye["code"].as_u64(), bye["reason"].as_str()),
        (Some(4004), Some("lost phone"))
    );
    assert_eq!(phone.closed().await, Some(4004));
    until(&hub, "only the phone leaves", |hub| {
        hub.connections_of("u").len() == 1
    })
    .await;
    assert_eq!(&*hub.connections_of("u")[0].device().device, "laptop");
    assert!(laptop.peer.close_reason().is_none());
    assert_eq!(laptop.whoami().await["device"], "laptop");
    stop(&hub, &[&door]).await;
}

// ---- graceful shutdown --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_1001_to_everyone() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let (tcp, addr) = chat_tcp(&hub);
    let mut ws = Client::ws_bearer::<Tungstenite>(&url, &token("w", "d")).await;
    let mut plain = Client::tcp(addr, Some(&token("t", "d"))).await;
    // What was queued for them goes out before the goodbye.
    for user in ["w", "t"] {
        for i in 0..5 {
            hub.send(
                user,
                Body::text(format!("last {i}")),
                SendOptions::live_only(),
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(
        hub.shutdown(DEADLINE).await,
        0,
        "every connection ended in time"
    );
    assert!(hub.is_stopping());
    for c in [&mut ws, &mut plain] {
        for i in 0..5 {
            let n = c.note().await;
            assert_eq!(n.name, "message", "{n:?}");
            assert_eq!(n.body["body"], format!("last {i}"));
        }
        let bye = c.note().await;
        assert_eq!(bye.name, "bye");
        let bye = bye.body;
        assert_eq!(bye["code"], 1001, "{bye}");
        assert_eq!(bye["name"], "going_away");
        assert_eq!(bye["reconnect"], "backoff");
    }
    assert_eq!(ws.closed().await, Some(1001));
    plain.closed().await;
    // No new sign-ons, no sends.
    let a = raw_request(
        &url,
        &[bearer_header(&token("late", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.head);
    let e = hub
        .send("w", Body::text("x"), SendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "shutting_down");
    door.shutdown(DEADLINE).await;
    tcp.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_survive_a_restart_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let queue: Arc<dyn Queue> = Arc::new(RedbQueue::open(&path, QueueConfig::default()).unwrap());
    let hub1 = hub(config(), Some(queue.clone()));
    let (door, addr) = chat_tcp(&hub1);
    let mut alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = alice
            .req(
                "send",
                json!({ "to": "bob", "body": format!("m{i}"), "ttl_ms": 3_600_000 }),
            )
            .await
            .unwrap();
        assert_eq!(r["queued"], true);
        ids.push(r["id"].as_u64().unwrap());
    }
    assert_eq!(hub1.shutdown(DEADLINE).await, 0);
    assert_eq!(alice.bye().await["code"], 1001);
    alice.closed().await;
    assert_eq!(hub1.queue().len("bob").await.unwrap(), 3, "still queued");
    door.shutdown(DEADLINE).await;
    drop((door, alice, hub1));
    // Once the hub and its door are shut down and dropped, nothing holds the queue any more
    // (shutdown waits for the hub's tasks): the file can be opened again.
    assert_eq!(
        Arc::strong_count(&queue),
        1,
        "the first hub let go of its queue"
    );
    drop(queue);
    let queue: Arc<dyn Queue> = Arc::new(
        RedbQueue::open(&path, QueueConfig::default())
            .expect("reopening after every handle dropped"),
    );
    assert_eq!(queue.len("bob").await.unwrap(), 3);
    let hub2 = hub(config(), Some(queue.clone()));
    let (door, addr) = chat_tcp(&hub2);
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    for (i, id) in ids.iter().enumerate() {
        let m = bob.note_named("message").await;
        assert_eq!(m.body["body"], format!("m{i}"));
        assert_eq!(
            m.body["id"].as_u64(),
            Some(*id),
            "same id after the restart"
        );
        assert_eq!(m.body["from"]["user"], "alice");
    }
    let r = bob.req("ack", json!({ "id": ids[2] })).await.unwrap();
    assert_eq!(r["removed"], 3);
    assert_eq!(queue.len("bob").await.unwrap(), 0);
    stop(&hub2, &[&door]).await;
}

// ---- hooks --------------------------------------------------------------------------------------

/// Where `on_close` reports: (device, the hub's reason).
type Closes = mpsc::UnboundedSender<(String, Option<Close>)>;

#[derive(Default)]
struct Hooks {
    connects: Mutex<Vec<(String, &'static str, u64)>>,
    /// (device, outcome) of every direct message's delivery attempt.
    outcomes: Mutex<HashMap<(String, String), usize>>,
    /// Told of every outcome recorded.
    outcome_seen: tokio::sync::Notify,
    closes: Mutex<Option<Closes>>,
}

impl App for Hooks {
    fn on_connect(&self, _hub: &Hub, conn: &Conn) {
        self.connects
            .lock()
            .unwrap()
            .push((conn.device().to_string(), conn.door(), conn.id().0));
    }

    fn before_receive(&self, _from: &Device, msg: Incoming) -> Result<Incoming, Rejection> {
        match msg {
            Incoming::Direct { to, body } => match body.as_text() {
                Some(t) if t.contains("spam") => Err("no spam, thanks".into()),
                Some(t) => Ok(Incoming::Direct {
                    to,
                    body: Body::text(t.to_uppercase()),
                }),
                None => Ok(Incoming::Direct { to, body }),
            },
            other => Ok(other),
        }
    }

    fn before_send(&self, to: &Device, event: &Event) -> BeforeSend {
        let Event::Direct(m) = event else {
            return BeforeSend::Keep;
        };
        match &*to.device {
            "muted" => BeforeSend::Drop,
            "loud" => BeforeSend::Replace(Body::text(format!(
                "LOUD: {}",
                m.body.as_text().unwrap_or_default()
            ))),
            _ => BeforeSend::Keep,
        }
    }

    fn after_send(&self, to: &Device, event: &Event, outcome: Delivered) {
        if let Event::Direct(_) = event {
            *self
                .outcomes
                .lock()
                .unwrap()
                .entry((to.device.to_string(), format!("{outcome:?}")))
                .or_default() += 1;
            self.outcome_seen.notify_waiters();
        }
    }

    fn on_close(&self, conn: &Conn, close: Option<&Close>) {
        if let Some(tx) = &*self.closes.lock().unwrap() {
            let _ = tx.send((conn.device().to_string(), close.cloned()));
        }
    }
}

impl Hooks {
    /// Waits until `f` holds, woken by each recorded outcome.
    async fn until(&self, what: &str, f: impl Fn(&Hooks) -> bool) {
        let r = tokio::time::timeout(DEADLINE, async {
            loop {
                let seen = self.outcome_seen.notified();
                tokio::pin!(seen);
                seen.as_mut().enable();
                if f(self) {
                    return;
                }
                seen.await;
            }
        })
        .await;
        assert!(r.is_ok(), "not within {DEADLINE:?}: {what}");
    }

    fn outcome(&self, device: &str, outcome: &str) -> usize {
        self.outcomes
            .lock()
            .unwrap()
            .get(&(device.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_change_and_refuse_messages() {
    let hooks = Arc::new(Hooks::default());
    let (tx, mut closes) = mpsc::unbounded_channel();
    *hooks.closes.lock().unwrap() = Some(tx);
    let hub = Hub::builder()
        .config(config().with_sign_on(SignOn::PerDevice))
        .authenticator(authenticator())
        .app(hooks.clone())
        .build();
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "a"))).await;
    let mut plain = Client::tcp(addr, Some(&token("bob", "plain"))).await;
    let mut loud = Client::tcp(addr, Some(&token("bob", "loud"))).await;
    let mut muted = Client::tcp(addr, Some(&token("bob", "muted"))).await;

    // on_connect saw each connection as it is.
    let me = plain.whoami().await;
    let connects = hooks.connects.lock().unwrap().clone();
    assert_eq!(connects.len(), 4, "{connects:?}");
    assert!(
        connects.contains(&("bob/plain".into(), "chat", me["conn"].as_u64().unwrap())),
        "{connects:?}"
    );

    // before_receive uppercases; before_send keeps, replaces, drops per device.
    alice
        .req("send", json!({ "to": "bob", "body": "hello" }))
        .await
        .unwrap();
    assert_eq!(plain.note_named("message").await.body["body"], "HELLO");
    let m = loud.note_named("message").await;
    assert_eq!(m.body["body"], "LOUD: HELLO");
    assert_eq!(m.body["from"]["user"], "alice", "only the body is replaced");
    // The muted device got nothing: the next thing it sees is a room publish.
    muted.req("join", json!({ "room": "side" })).await.unwrap();
    hub.publish("side", Body::text("marker")).await.unwrap();
    let n = muted.note().await;
    assert_eq!(
        (n.name.as_str(), &n.body["body"]),
        ("room", &json!("marker"))
    );
    hooks
        .until("after_send saw all three", |h| {
            h.outcome("plain", "Sent") == 1
                && h.outcome("loud", "Sent") == 1
                && h.outcome("muted", "Filtered") == 1
        })
        .await;

    // A refused message reaches nobody; the sender gets `refused` with the hook's reason.
    let e = alice
        .req("send", json!({ "to": "bob", "body": "buy spam" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "refused");
    // The reason alone: the code already says refused (no "refused refused: ..." on screen).
    assert_eq!(e.message, "no spam, thanks", "{e:?}");
    alice
        .req("send", json!({ "to": "bob", "body": "after" }))
        .await
        .unwrap();
    assert_eq!(plain.note_named("message").await.body["body"], "AFTER");
    // Binary bodies pass through unchanged.
    alice
        .req("send", json!({ "to": "bob", "body_base64": "AAEC" }))
        .await
        .unwrap();
    assert_eq!(
        plain.note_named("message").await.body["body_base64"],
        "AAEC"
    );
    assert_eq!(hooks.outcome("plain", "Sent"), 3);

    // on_close: the hub's reason for a kick, none for a client that went away itself.
    hub.kick("bob", Some("loud"), "too loud");
    let (who, close) = tokio::time::timeout(DEADLINE, closes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "bob/loud");
    let close = close.expect("the hub closed it");
    assert_eq!((close.code.0, close.reason.as_str()), (4004, "too loud"));
    assert_eq!(loud.bye().await["code"], 4004);
    plain.peer.close();
    let (who, close) = tokio::time::timeout(DEADLINE, closes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((who.as_str(), close), ("bob/plain", None));
    stop(&hub, &[&door]).await;
}

// ---- partial delivery ---------------------------------------------------------------------------

/// A hub whose user `p` has two connections: `a`, a chat client that reads, and a raw room door
/// member that never reads and whose send queue (one message, newest dropped when full) is
/// full. Returns the hub, the doors, alice (a sender), `a`, and the stalled socket.
async fn half_stalled(
    partial: PartialDelivery,
) -> (Hub, DoorHandle, DoorHandle, Client, Client, RawAnswer) {
    let hub = hub(
        config()
            .with_sign_on(SignOn::Multi { max: 2 })
            .with_partial(partial),
        None,
    );
    let (chat, addr) = chat_tcp(&hub);
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=stall", acc.local_addr());
    let session = SessionConfig::default()
        .with_queue_max_messages(1)
        .with_overflow(OverflowPolicy::DropNewest)
        .with_write_timeout(Duration::from_secs(120));
    let rooms = RoomsDoor::new(hub.clone())
        .with_server_config(ServerConfig::default().with_session(session))
        .serve(acc);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let mut a = Client::tcp(addr, Some(&token("p", "chat"))).await;
    let mut b = raw_request(
        &url,
        &[bearer_header(&token("p", "web"))],
        RawOpts {
            recv_buffer: Some(4096),
            ..RawOpts::default()
        },
    )
    .await;
    assert_eq!(b.status, 101, "{}", b.head);
    assert_eq!(hub.connections_of("p").len(), 2);
    // Once b reads a live-only message it is live (it is sent straight or when its replay
    // ends).
    hub.send("p", Body::text("ping"), SendOptions::live_only())
        .await
        .unwrap();
    assert_eq!(
        read_ws_message(&mut b.socket).await,
        Some((1, b"ping".to_vec()))
    );
    assert_eq!(a.note_named("message").await.body["body"], "ping");
    fill(&hub, &a).await;
    (hub, chat, rooms, alice, a, b)
}

/// Fills b: publishes to its room until its queue refuses them, and keeps refusing while
/// other connections make round trips (its writer has had every chance to drain).
async fn fill(hub: &Hub, a: &Client) {
    let big = Body::text("x".repeat(60_000));
    let mut refusals_in_a_row = 0;
    let mut publishes = 0;
    while refusals_in_a_row < 5 {
        assert!(publishes < 5_000, "b's queue never filled");
        let r = hub.publish("stall", big.clone()).await.unwrap();
        publishes += 1;
        if r.dropped == 1 {
            refusals_in_a_row += 1;
            a.whoami().await;
        } else {
            refusals_in_a_row = 0;
        }
    }
}

/// A live-only send from alice to p that b's full queue refuses: `a` gets it each time; when
/// b took it after all (the kernel made room under its stuck write, which a busy machine can
/// do late), b is filled again and the send repeated.
async fn send_while_stalled(
    hub: &Hub,
    alice: &Client,
    a: &mut Client,
    body: &str,
) -> Result<serde_json::Value, ChatErr> {
    for _ in 0..20 {
        let r = send_live(alice, body).await;
        assert_eq!(a.note_named("message").await.body["body"], body);
        if !matches!(&r, Ok(v) if v["failed"] == 0) {
            return r;
        }
        fill(hub, a).await;
    }
    panic!("b never stayed full");
}

async fn send_live(alice: &Client, body: &str) -> Result<serde_json::Value, ChatErr> {
    alice
        .req("send", json!({ "to": "p", "body": body, "ttl_ms": 0 }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_any_delivered() {
    let (hub, chat, rooms, alice, mut a, b) = half_stalled(PartialDelivery::AnyDelivered).await;
    let r = send_while_stalled(&hub, &alice, &mut a, "some")
        .await
        .unwrap();
    assert_eq!(
        (
            r["delivered"].as_u64(),
            r["failed"].as_u64(),
            r["queued"].as_bool()
        ),
        (Some(1), Some(1), Some(false)),
        "{r}"
    );
    // With only the stalled one left, nothing is delivered: an error.
    a.peer.close();
    a.closed().await;
    until(&hub, "a leaves", |hub| hub.connections_of("p").len() == 1).await;
    let e = send_live(&alice, "none").await.unwrap_err();
    assert_eq!(e.code, "undelivered", "{e:?}");
    drop(b);
    stop(&hub, &[&chat, &rooms]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_all_or_error() {
    let (hub, chat, rooms, alice, mut a, b) = half_stalled(PartialDelivery::AllOrError).await;
    let e = send_while_stalled(&hub, &alice, &mut a, "all or nothing")
        .await
        .unwrap_err();
    assert_eq!(e.code, "partial", "{e:?}");
    assert!(e.message.contains("1 of 2"), "{e:?}");
    // The others did get it (send_while_stalled saw it reach a).
    assert_eq!(hub.queue().len("p").await.unwrap(), 0);
    drop(b);
    stop(&hub, &[&chat, &rooms]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_queue_for_user() {
    let (hub, chat, rooms, alice, mut a, b) = half_stalled(PartialDelivery::QueueForUser {
        ttl: Duration::from_secs(3600),
    })
    .await;
    let r = send_while_stalled(&hub, &alice, &mut a, "again later")
        .await
        .unwrap();
    assert_eq!(
        (
            r["delivered"].as_u64(),
            r["failed"].as_u64(),
            r["queued"].as_bool()
        ),
        (Some(1), Some(1), Some(true)),
        "{r}"
    );
    let id = r["id"].clone();
    assert_eq!(hub.queue().len("p").await.unwrap(), 1);
    // The next connect of the user gets it again, same id (clients drop the duplicate).
    a.peer.close();
    a.closed().await;
    until(&hub, "a leaves", |hub| hub.connections_of("p").len() == 1).await;
    let (_, addr) = (&chat, addr_of(&chat));
    let mut again = Client::tcp(addr, Some(&token("p", "chat"))).await;
    let m = again.note_named("message").await;
    assert_eq!(m.body["id"], id);
    assert_eq!(m.body["body"], "again later");
    drop(b);
    stop(&hub, &[&chat, &rooms]).await;
}
