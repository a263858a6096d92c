//! Every hub limit of `HubLimits` at its boundary, through the doors on real loopback sockets:
//! N allowed, N+1 refused.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chinwag_hub::auth::BoxFuture;
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::doors::tok::TokDoor;
use chinwag_hub::{App, Body, Hub, HubLimits, Rate, RoomOptions, SendOptions};
use chinwag_session::{ServerConfig, SessionConfig};
use chinwag_transport::tcp::TcpAcceptor;
use chinwag_transport::{Frame, FrameRead, FrameWrite, Transport};
use chinwag_ws::{ConnectOptions, WsAcceptor};
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Limits that loopback load does not trip, to change one at a time.
fn limits() -> HubLimits {
    HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None)
}

async fn stop(hub: &Hub, doors: &[&DoorHandle]) {
    hub.shutdown(DEADLINE).await;
    for d in doors {
        d.shutdown(DEADLINE).await;
    }
}

// ---- max_connections ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_on_websocket_is_503_before_the_upgrade() {
    let hub = hub(config().with_limits(limits().with_max_connections(3)), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = Client::ws_bearer::<Tungstenite>(&url, &token(&format!("c{i}"), "d")).await;
        assert_eq!(c.whoami().await["user"], format!("c{i}"));
        clients.push(c);
    }
    assert_eq!(hub.connection_count(), 3);
    let a = raw_request(
        &url,
        &[bearer_header(&token("c3", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.head);
    assert!(a.header("retry-after").is_some(), "{}", a.head);
    assert!(a.body.contains("server full"), "{}", a.body);
    assert_eq!(hub.connection_count(), 3);
    // One leaves: a fourth gets in again.
    let gone = clients.remove(0);
    gone.peer.close();
    gone.closed().await;
    until(&hub, "the hub lets it go", |hub| {
        hub.connection_count() == 2
    })
    .await;
    let c = Client::ws_bearer::<Tungstenite>(&url, &token("c3", "d")).await;
    assert_eq!(c.whoami().await["user"], "c3");
    assert_eq!(hub.connection_count(), 3);
    stop(&hub, &[&door]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_on_tcp_refuses_the_fourth_auth() {
    let hub = hub(config().with_limits(limits().with_max_connections(3)), None);
    let (door, addr) = chat_tcp(&hub);
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(Client::tcp(addr, Some(&token(&format!("t{i}"), "d"))).await);
    }
    // Connections waiting for their `auth` do not count; the fourth sign-on does.
    let fourth = Client::tcp(addr, None).await;
    let t = token("t3", "d");
    let e = fourth.req("auth", json!({ "token": t })).await.unwrap_err();
    assert_eq!(e.code, "connections", "{e:?}");
    assert_eq!(hub.connection_count(), 3);
    assert!(fourth.peer.close_reason().is_none(), "not an auth failure");
    let gone = clients.remove(1);
    gone.peer.close();
    gone.closed().await;
    until(&hub, "the hub lets it go", |hub| {
        hub.connection_count() == 2
    })
    .await;
    let me = fourth.req("auth", json!({ "token": t })).await.unwrap();
    assert_eq!(me["user"], "t3");
    assert_eq!(hub.connection_count(), 3);
    stop(&hub, &[&door]).await;
}

// ---- connection_rate ----------------------------------------------------------------------------

/// The hub's rates run on its clock (Tokio's): paused here, so no bucket refills while the
/// test runs and the boundary is exact.
#[tokio::test(start_paused = true)]
async fn connection_rate_per_source_ip_is_429_with_retry_after() {
    let hub = hub(
        config().with_limits(limits().with_connection_rate(Some(Rate::new(1, 3)))),
        None,
    );
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let mut answers = Vec::new();
    for i in 0..4 {
        let t = token(&format!("ip{i}"), "d");
        answers.push(raw_request(&url, &[bearer_header(&t)], RawOpts::default()).await);
    }
    let other_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let other = raw_request(
        &url,
        &[bearer_header(&token("elsewhere", "d"))],
        RawOpts {
            from: Some(other_ip),
            ..RawOpts::default()
        },
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [101, 101, 101, 429], "{:?}", answers[3].head);
    let refused = &answers[3];
    assert_eq!(refused.header("retry-after"), Some("1"), "{}", refused.head);
    assert!(
        refused.body.contains("too many connections"),
        "{}",
        refused.body
    );
    // Per source IP: another address still gets in.
    assert_eq!(other.status, 101, "{}", other.head);
    let conns = hub.connections_of("elsewhere");
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].ip(), Some(other_ip));
    assert_eq!(hub.connection_count(), 4);
    // A second later (on the hub's clock) the address has a unit again.
    tokio::time::advance(Duration::from_secs(1)).await;
    let again = raw_request(
        &url,
        &[bearer_header(&token("later", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(again.status, 101, "{}", again.head);
    stop(&hub, &[&door]).await;
}

// ---- message_rate and rate_limit_strikes --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn message_rate_and_strikes_at_their_boundaries() {
    let n = 0;
    let hub = hub(
        config().with_limits(
            limits()
                .with_message_rate(Some(Rate::new(1, 5)))
                .with_rate_limit_strikes(3),
        ),
        None,
    );
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let mut c = Client::ws_bearer::<Tungstenite>(&url, &token(&format!("fast{n}"), "d")).await;
    let mut results = Vec::new();
    let mut open_after_two_strikes = false;
    for i in 0..8 {
        results.push(
            c.req("send", json!({ "to": "sink", "body": format!("m{i}") }))
                .await,
        );
        if i == 6 {
            open_after_two_strikes = c.peer.close_reason().is_none();
        }
    }
    for (i, r) in results.iter().enumerate().take(5) {
        assert!(r.is_ok(), "send {i} within the burst: {r:?}");
    }
    for (i, r) in results.iter().enumerate().skip(5).take(2) {
        assert_eq!(
            r.as_ref().unwrap_err().code,
            "rate_limited",
            "send {i} past the burst"
        );
    }
    assert!(open_after_two_strikes, "two refusals in a row are allowed");
    // The third refusal in a row closes the connection (its answer may be lost to the close).
    let third = results[7].as_ref().unwrap_err();
    assert!(
        third.code == "rate_limited" || third.code == "transport",
        "{third:?}"
    );
    let bye = c.bye().await;
    assert_eq!(bye["code"], 4008, "{bye}");
    assert_eq!(bye["name"], "rate_limited");
    assert_eq!(c.closed().await, Some(4008));
    assert_eq!(hub.queue().len("sink").await.unwrap(), 5);
    stop(&hub, &[&door]).await;
}

// ---- max_body_bytes ---------------------------------------------------------------------------

struct Forward(mpsc::UnboundedSender<Bytes>);

impl App for Forward {
    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        _conn: &'a chinwag_hub::Conn,
        body: Body,
    ) -> BoxFuture<'a, Result<Option<Body>, chinwag_hub::Rejection>> {
        let _ = self.0.send(body.bytes().clone());
        Box::pin(async { Ok(None) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_bytes_for_send_publish_app_and_every_door() {
    let (tx, mut app_rx) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .config(config().with_limits(limits().with_max_body_bytes(1000)))
        .authenticator(authenticator())
        .app(Arc::new(Forward(tx)))
        .build();
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    alice.req("join", json!({ "room": "big" })).await.unwrap();
    bob.req("join", json!({ "room": "big" })).await.unwrap();
    let at = "x".repeat(1000);
    let over = "x".repeat(1001);
    // Bytes, not characters: 500 × "é" is 1000 bytes.
    let accents = "é".repeat(500);
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);

    for body in [
        json!({ "body": at }),
        json!({ "body": accents }),
        json!({ "body_base64": b64(1000) }),
    ] {
        let mut req = body.clone();
        req["to"] = json!("bob");
        alice.req("send", req).await.unwrap();
        let m = bob.note_named("message").await;
        assert!(m.body.get("body").or(m.body.get("body_base64")).is_some());
        let mut req = body.clone();
        req["room"] = json!("big");
        alice.req("publish", req).await.unwrap();
        bob.note_named("room").await;
        let mut req = body;
        assert!(alice.req("app", req.take()).await.is_ok());
        assert_eq!(app_rx.recv().await.unwrap().len(), 1000);
    }
    for body in [
        json!({ "body": over }),
        json!({ "body": format!("{accents}x") }),
        json!({ "body_base64": b64(1001) }),
    ] {
        let mut req = body.clone();
        req["to"] = json!("bob");
        let e = alice.req("send", req).await.unwrap_err();
        assert_eq!(e.code, "too_large", "send");
        let mut req = body.clone();
        req["room"] = json!("big");
        let e = alice.req("publish", req).await.unwrap_err();
        assert_eq!(e.code, "too_large", "publish");
        let e = alice.req("app", body).await.unwrap_err();
        assert_eq!(e.code, "too_large", "app");
    }
    // From the server too.
    assert!(
        hub.send("bob", Body::text(at.clone()), SendOptions::default())
            .await
            .is_ok()
    );
    let e = hub
        .send("bob", Body::text(over.clone()), SendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "too_large");
    assert!(hub.publish("big", Body::text(at.clone())).await.is_ok());
    assert_eq!(
        hub.publish("big", Body::text(over.clone()))
            .await
            .unwrap_err()
            .code(),
        "too_large"
    );

    // The raw room door: a frame at the limit is published; one over it is answered with a
    // close (1009), never dropped in silence, and not published.
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let base = format!("ws://{}/ws?room=raw", acc.local_addr());
    let rooms = RoomsDoor::new(hub.clone()).serve(acc);
    let opts = |u: &str| {
        ConnectOptions::default().with_header("authorization", format!("Bearer {}", token(u, "w")))
    };
    let (mut r1, mut w1) =
        chinwag_ws::connect_with::<Tungstenite>(&base, &ws_config(), &opts("w1"))
            .await
            .unwrap()
            .split();
    let (mut r2, _w2) = chinwag_ws::connect_with::<Tungstenite>(&base, &ws_config(), &opts("w2"))
        .await
        .unwrap()
        .split();
    w1.send(Frame::Text(Bytes::from("y".repeat(1000))))
        .await
        .unwrap();
    w1.send(Frame::Text(Bytes::from(over.clone())))
        .await
        .unwrap();
    let f = tokio::time::timeout(DEADLINE, r2.read_frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f, Frame::Text(Bytes::from("y".repeat(1000))));
    // The sender gets its own publish, then the close for the one over the limit.
    let own = tokio::time::timeout(DEADLINE, r1.read_frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(own, Frame::Text(Bytes::from("y".repeat(1000))));
    let end = tokio::time::timeout(DEADLINE, r1.read_frame())
        .await
        .unwrap();
    assert!(
        matches!(end, Ok(None)),
        "the over-limit message is answered with a close: {end:?}"
    );
    let reason = r1.close_reason().expect("a close frame").clone();
    assert_eq!(reason.code.0, 1009, "{reason:?}");
    assert!(reason.reason.contains("over the limit"), "{reason:?}");
    // The other member got nothing more: the next frame it reads is a later publish.
    hub.publish("raw", Body::text("later")).await.unwrap();
    let f = tokio::time::timeout(DEADLINE, r2.read_frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f, Frame::Text(Bytes::from("later")));

    // The tok door: a frame over the limit does not reach the application; one at it does.
    let tcp = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let tok = TokDoor::new(hub.clone()).serve(tcp);
    let mut s = tokio::net::TcpStream::connect(addr_of(&tok)).await.unwrap();
    for frame in [
        token("tok", "d").into_bytes(),
        vec![1u8; 1001],
        vec![2u8; 1000],
    ] {
        let mut b = (frame.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(&frame);
        s.write_all(&b).await.unwrap();
    }
    let got = tokio::time::timeout(DEADLINE, app_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], &[2u8; 1000][..], "only the one at the limit");
    stop(&hub, &[&door, &rooms, &tok]).await;
}

// ---- max_held_live ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_held_live_during_a_replay() {
    held_live(SessionConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_live_messages_are_not_lost_to_a_small_send_queue() {
    // The replay fills a one-message send queue (it waits for room); the held messages must
    // wait for room too, not be dropped (or close the connection) because it is full.
    held_live(SessionConfig::default().with_queue_max_messages(1)).await;
}

async fn held_live(session: SessionConfig) {
    const QUEUED: usize = 250;
    let hub = hub(
        config()
            .with_limits(limits().with_max_held_live(2))
            .with_replay_timeout(Duration::from_secs(120)),
        None,
    );
    // Queued while bob is offline: 15 MB, far more than the socket buffers hold.
    for i in 0..QUEUED {
        let mut body = format!("q{i:04}");
        body.push_str(&"x".repeat(60_000));
        hub.send("bob", Body::text(body), SendOptions::default())
            .await
            .unwrap();
    }
    let (chat, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=lobby", acc.local_addr());
    let session = session.with_write_timeout(Duration::from_secs(120));
    let rooms = RoomsDoor::new(hub.clone())
        .with_server_config(ServerConfig::default().with_session(session))
        .serve(acc);
    // Bob connects and does not read: his replay cannot finish, so he stays replaying.
    let mut bob = raw_request(
        &url,
        &[bearer_header(&token("bob", "web"))],
        RawOpts {
            recv_buffer: Some(4096),
            ..RawOpts::default()
        },
    )
    .await;
    assert_eq!(bob.status, 101, "{}", bob.head);
    // Live-only messages meanwhile are held for him: two, and no more.
    for i in 1..=2 {
        let r = alice
            .req(
                "send",
                json!({ "to": "bob", "body": format!("held {i}"), "ttl_ms": 0 }),
            )
            .await
            .unwrap();
        assert_eq!(
            (r["delivered"].as_u64(), r["failed"].as_u64()),
            (Some(1), Some(0)),
            "{r}"
        );
    }
    let e = alice
        .req(
            "send",
            json!({ "to": "bob", "body": "held 3", "ttl_ms": 0 }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "undelivered", "{e:?}");
    // Bob reads: the queued ones in order, then the two held ones.
    for i in 0..QUEUED {
        let (op, m) = read_ws_message(&mut bob.socket)
            .await
            .unwrap_or_else(|| panic!("queued message {i}: the connection ended"));
        assert_eq!(op, 1);
        assert_eq!(&m[..5], format!("q{i:04}").as_bytes());
    }
    for i in 1..=2 {
        let m = read_ws_message(&mut bob.socket)
            .await
            .unwrap_or_else(|| panic!("held {i}: the connection ended"));
        assert_eq!(m, (1, format!("held {i}").into_bytes()));
    }
    // Now live: a live-only message goes straight out.
    hub.send("bob", Body::text("live"), SendOptions::live_only())
        .await
        .unwrap();
    assert_eq!(
        read_ws_message(&mut bob.socket).await,
        Some((1, b"live".to_vec()))
    );
    stop(&hub, &[&chat, &rooms]).await;
}

// ---- max_unacked --------------------------------------------------------------------------------

/// Alice sends `n` messages to bob; bob's ids of them.
async fn send_and_receive(alice: &Client, bob: &mut Client, n: usize) -> Vec<u64> {
    for i in 0..n {
        alice
            .req("send", json!({ "to": "bob", "body": format!("m{i}") }))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(bob.note_named("message").await.body["id"].as_u64().unwrap());
    }
    ids
}

async fn ack(c: &Client, id: u64) -> u64 {
    c.req("ack", json!({ "id": id })).await.unwrap()["removed"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unacked_forgets_the_oldest_ids() {
    let hub = hub(config().with_limits(limits().with_max_unacked(3)), None);
    let (door, addr) = chat_tcp(&hub);
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;
    let mut bob = Client::tcp(addr, Some(&token("bob", "d"))).await;
    // Three unacknowledged: all remembered; an ack of the oldest removes exactly it.
    let ids = send_and_receive(&alice, &mut bob, 3).await;
    assert_eq!(ack(&bob, ids[0]).await, 1);
    assert_eq!(hub.queue().len("bob").await.unwrap(), 2);
    assert_eq!(ack(&bob, ids[2]).await, 2);
    assert_eq!(hub.queue().len("bob").await.unwrap(), 0);
    // Four: the oldest id is forgotten, so its ack removes nothing; the next ack, cumulative,
    // removes it with the second.
    let ids = send_and_receive(&alice, &mut bob, 4).await;
    assert_eq!(ack(&bob, ids[0]).await, 0);
    assert_eq!(hub.queue().len("bob").await.unwrap(), 4);
    assert_eq!(ack(&bob, ids[1]).await, 2);
    assert_eq!(hub.queue().len("bob").await.unwrap(), 2);
    assert_eq!(ack(&bob, ids[3]).await, 2);
    assert_eq!(hub.queue().len("bob").await.unwrap(), 0);
    stop(&hub, &[&door]).await;
}

// ---- max_page -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_page_cuts_pages_of_members_rooms_and_online_users() {
    let hub = hub(config().with_limits(limits().with_max_page(2)), None);
    let (door, addr) = chat_tcp(&hub);
    let mut clients = Vec::new();
    for i in 0..3 {
        let c = Client::tcp(addr, Some(&token(&format!("p{i}"), "d"))).await;
        c.req("join", json!({ "room": "p" })).await.unwrap();
        clients.push(c);
    }
    let c = &clients[0];
    let page = c
        .req("members", json!({ "room": "p", "limit": 5000 }))
        .await
        .unwrap();
    let members = page["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{page}");
    assert_eq!(members[0]["user"], "p0");
    assert_eq!(members[1]["user"], "p1");
    assert_eq!(page["next"], members[1]["conn"]);
    let page = c
        .req(
            "members",
            json!({ "room": "p", "after": page["next"], "limit": 5000 }),
        )
        .await
        .unwrap();
    let members = page["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{page}");
    assert_eq!(members[0]["user"], "p2");
    assert!(page["next"].is_null());
    // The online list is cut there too (0 counts as 1).
    let online = hub.online_list(None, 5000).await.unwrap();
    assert_eq!(online.users, ["p0", "p1"]);
    assert_eq!(online.next.as_deref(), Some("p1"));
    let online = hub.online_list(Some("p1"), 5000).await.unwrap();
    assert_eq!((online.users, online.next), (vec!["p2".to_owned()], None));
    assert_eq!(hub.online_list(None, 0).await.unwrap().users, ["p0"]);
    // Exactly max_page members: one page, no cursor.
    clients[2].peer.close();
    clients[2].closed().await;
    until(&hub, "p2 left", |hub| {
        hub.room("p").is_some_and(|r| r.members == 2)
    })
    .await;
    let page = c
        .req("members", json!({ "room": "p", "limit": 5000 }))
        .await
        .unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 2);
    assert!(page["next"].is_null(), "{page}");
    // The room list is cut there too.
    c.req("join", json!({ "room": "q" })).await.unwrap();
    let rooms = c.req("rooms", json!({})).await.unwrap();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 2, "{rooms}");
    c.req("join", json!({ "room": "r" })).await.unwrap();
    let rooms = c.req("rooms", json!({})).await.unwrap();
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p", "q"], "{rooms}");
    stop(&hub, &[&door]).await;
}

// ---- password_checks and password_wait ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_are_bounded_and_a_long_wait_refuses_none() {
    // One check at a time, waiting 1 ms for it: of 20 concurrent wrong joins each is refused
    // as wrong or busy — never let in, never a panic — and the first check always runs.
    let hub = hub(
        config().with_limits(
            limits()
                .with_password_checks(1)
                .with_password_wait(Duration::from_millis(1))
                // Twenty clients guess from one address here: not what this test is about.
                .with_password_guess_rate_per_ip(Rate::new(1_000, 1_000)),
        ),
        None,
    );
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(Client::tcp(addr, Some(&token(&format!("j{i}"), "d"))).await);
    }
    let results = futures_util::future::join_all(
        clients
            .iter()
            .map(|c| c.req("join", json!({ "room": "vault", "password": "open sesam" }))),
    )
    .await;
    let mut wrong = 0;
    let mut busy = 0;
    for r in &results {
        match r {
            Err(e) if e.code == "wrong_password" => wrong += 1,
            Err(e) if e.code == "busy" => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(wrong >= 1, "the first check finds the slot free");
    eprintln!("password checks: {wrong} wrong_password, {busy} busy");
    assert_eq!(hub.room("vault").unwrap().members, 0);
    // Every check has ended (all answered): the right password gets in.
    let info = clients[0]
        .req(
            "join",
            json!({ "room": "vault", "password": "open sesame" }),
        )
        .await
        .unwrap();
    assert_eq!(info["members"], 1);
    stop(&hub, &[&door]).await;

    // One check at a time with a long wait: concurrent joins (from addresses of their own, or
    // an address's share of the slot would make them busy) queue for the slot, none is busy.
    let hub = common::hub(
        config().with_limits(
            limits()
                .with_password_checks(1)
                .with_password_wait(Duration::from_secs(60))
                .with_password_guess_rate_per_ip(Rate::new(1_000, 1_000)),
        ),
        None,
    );
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let mut clients = Vec::new();
    for i in 0..3 {
        let (ip, t) = (format!("127.0.0.{}", i + 2), token(&format!("k{i}"), "d"));
        clients.push(Client::tcp_from(addr, &ip, Some(&t)).await);
    }
    let results = futures_util::future::join_all(clients.iter().enumerate().map(|(i, c)| {
        let pw = if i == 0 { "open sesame" } else { "nope" };
        c.req("join", json!({ "room": "vault", "password": pw }))
    }))
    .await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    for r in &results[1..] {
        assert_eq!(r.as_ref().unwrap_err().code, "wrong_password");
    }
    stop(&hub, &[&door]).await;
}

// ---- max_tracked_ips ----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn max_tracked_ips_refuses_new_addresses_only() {
    let hub = hub(
        config().with_limits(
            limits()
                .with_connection_rate(Some(Rate::new(1, 3)))
                .with_max_tracked_ips(2),
        ),
        None,
    );
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let from = |ip: &str| RawOpts {
        from: Some(ip.parse().unwrap()),
        ..RawOpts::default()
    };
    let mut answers = Vec::new();
    for (n, ip) in [
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.1",
        "127.0.0.2",
    ]
    .iter()
    .enumerate()
    {
        let t = token(&format!("ip{n}"), "d");
        answers.push(raw_request(&url, &[bearer_header(&t)], from(ip)).await);
    }
    // Two addresses tracked: a third is refused until one ages out...
    assert_eq!(answers[0].status, 101, "{}", answers[0].head);
    assert_eq!(answers[1].status, 101, "{}", answers[1].head);
    assert_eq!(answers[2].status, 429, "{}", answers[2].head);
    assert!(answers[2].header("retry-after").is_some());
    assert!(
        answers[2].body.contains("too many clients"),
        "{}",
        answers[2].body
    );
    // ...but the tracked ones, each within its own rate, still get in.
    assert_eq!(
        (answers[3].status, answers[4].status),
        (101, 101),
        "a tracked address is refused because the table is full: {} / {}",
        answers[3].body,
        answers[4].body
    );
    // Once the tracked addresses' buckets have refilled (3 s), a new address gets in.
    tokio::time::advance(Duration::from_secs(3)).await;
    let late = raw_request(
        &url,
        &[bearer_header(&token("late", "d"))],
        from("127.0.0.4"),
    )
    .await;
    assert_eq!(late.status, 101, "{}", late.head);
    stop(&hub, &[&door]).await;
}

// ---- max_room_name_bytes, max_password_bytes ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_name_and_password_lengths_at_their_limits() {
    let hub = hub(
        config().with_limits(
            limits()
                .with_max_room_name_bytes(8)
                .with_max_password_bytes(8),
        ),
        None,
    );
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("n", "d"))).await;
    c.req("join", json!({ "room": "12345678" })).await.unwrap();
    // Bytes, not characters: four "é" are 8 bytes, a fifth makes 10.
    c.req("join", json!({ "room": "éééé" })).await.unwrap();
    for bad in ["123456789", "ééééé", ""] {
        let e = c.req("join", json!({ "room": bad })).await.unwrap_err();
        assert_eq!(e.code, "bad_room", "{bad:?}");
    }
    let e = c
        .req("publish", json!({ "room": "123456789", "body": "x" }))
        .await
        .unwrap_err();
    assert_ne!(e.code, "internal", "{e:?}");
    // Passwords: 8 bytes can be set and given; 9 cannot.
    hub.create_room("vault", RoomOptions::new().with_password("12345678"))
        .await
        .unwrap();
    let e = hub
        .create_room("vault2", RoomOptions::new().with_password("123456789"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "bad_password");
    let e = c
        .req("join", json!({ "room": "vault", "password": "123456789" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "bad_password");
    c.req("join", json!({ "room": "vault", "password": "12345678" }))
        .await
        .unwrap();
    stop(&hub, &[&door]).await;
}

// ---- max_token_len (TokenSources) ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_token_len_at_its_boundary() {
    let t = token("long", "d");
    for (limit, ok) in [(t.len(), true), (t.len() - 1, false)] {
        let hub = hub(
            config()
                .with_tokens(chinwag_hub::auth::TokenSources::default().with_max_token_len(limit)),
            None,
        );
        let (door, url) = chat_ws::<Tungstenite>(&hub).await;
        let (tcp, addr) = chat_tcp(&hub);
        let a = raw_request(&url, &[bearer_header(&t)], RawOpts::default()).await;
        let c = Client::tcp(addr, None).await;
        let r = c.req("auth", json!({ "token": t })).await;
        if ok {
            assert_eq!(a.status, 101, "{}", a.head);
            assert!(r.is_ok(), "{r:?}");
        } else {
            assert_eq!(a.status, 401, "{}", a.head);
            assert!(a.body.contains("over the limit"), "{}", a.body);
            assert_eq!(r.unwrap_err().code, "auth_too_large");
        }
        stop(&hub, &[&door, &tcp]).await;
    }
}

// ---- the chat door's own bound: users per `online` request --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_asks_about_at_most_100_users() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("u0", "phone"))).await;
    let users: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let r = c.req("online", json!({ "users": users })).await.unwrap();
    assert_eq!(r["users"]["u0"], json!(["phone"]));
    assert_eq!(r["users"]["u1"], json!([]));
    assert_eq!(r["online"], 1);
    let users: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let e = c
        .req("online", json!({ "users": users }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "too_many");
    stop(&hub, &[&door]).await;
}

// ---- degenerate limits ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_page_of_zero_answers_instead_of_panicking() {
    let hub = hub(config().with_limits(limits().with_max_page(0)), None);
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("z", "d"))).await;
    c.req("join", json!({ "room": "z" })).await.unwrap();
    // An answer of the chat protocol: a page of at most one member, or a JSON error object.
    let r = tokio::time::timeout(
        DEADLINE,
        c.peer
            .request::<_, serde_json::Value>("members", &json!({ "room": "z", "limit": 10 })),
    )
    .await
    .expect("an answer within the deadline");
    match &r {
        Ok(page) => assert!(
            page["members"].as_array().is_some_and(|m| m.len() <= 1),
            "{page}"
        ),
        Err(chinwag_rpc::RpcError::Remote { message, .. }) => assert!(
            serde_json::from_str::<serde_json::Value>(message).is_ok(),
            "the error is not a chat error: {message}"
        ),
        Err(e) => panic!("{e}"),
    }
    assert!(c.peer.close_reason().is_none(), "the connection survives");
    assert_eq!(c.whoami().await["user"], "z");
    stop(&hub, &[&door]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_on_the_room_and_tok_doors() {
    let hub = hub(config().with_limits(limits().with_max_connections(1)), None);
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=r", acc.local_addr());
    let rooms = RoomsDoor::new(hub.clone()).serve(acc);
    let tcp = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let bye: chinwag_hub::doors::tok::ByeFn =
        Arc::new(|c: &chinwag_hub::Close| Some(Bytes::from(format!("bye {}", c.code.0))));
    let tok = TokDoor::new(hub.clone()).with_bye(bye).serve(tcp);
    let first = raw_request(
        &url,
        &[bearer_header(&token("one", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(first.status, 101);
    // The room door: 503 before the upgrade.
    let a = raw_request(
        &url,
        &[bearer_header(&token("two", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.head);
    assert!(a.header("retry-after").is_some());
    // The tok door: its goodbye (1013, try again later), then the end.
    let mut s = tokio::net::TcpStream::connect(addr_of(&tok)).await.unwrap();
    let t = token("three", "d");
    let mut b = (t.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(t.as_bytes());
    s.write_all(&b).await.unwrap();
    let mut frames = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        let mut rest = &all[..];
        while rest.len() >= 4 {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            frames.push(String::from_utf8_lossy(&rest[4..4 + n]).into_owned());
            rest = &rest[4 + n..];
        }
    })
    .await
    .unwrap();
    assert_eq!(frames, ["bye 1013"]);
    assert_eq!(hub.connection_count(), 1);
    drop(first);
    stop(&hub, &[&rooms, &tok]).await;
}
