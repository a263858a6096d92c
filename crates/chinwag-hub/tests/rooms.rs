//! Rooms through the raw WebSocket door (plumego style) and the chat door: a room of 1 000
//! members of which one never reads, passwords (Argon2id) refused before the upgrade, member
//! and room limits at their boundaries, presence events.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::{Hub, HubLimits, RoomOptions};
use chinwag_session::{OverflowPolicy, ServerConfig, SessionConfig};
use chinwag_transport::{Frame, FrameRead, Transport};
use chinwag_ws::{ConnectOptions, Engine, WsAcceptor};
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

async fn rooms_door<E: Engine>(
    hub: &Hub,
    queue: usize,
) -> (chinwag_hub::doors::DoorHandle, String) {
    let acc = WsAcceptor::<E>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
        .await
        .unwrap();
    let base = format!("ws://{}/ws", acc.local_addr());
    let session = SessionConfig::default()
        .with_queue_max_messages(queue)
        .with_overflow(OverflowPolicy::Close);
    let door = RoomsDoor::new(hub.clone())
        .with_server_config(ServerConfig::default().with_session(session))
        .serve(acc);
    (door, base)
}

fn bearer(user: &str) -> ConnectOptions {
    ConnectOptions::default().with_header("authorization", format!("Bearer {}", token(user, "web")))
}

/// A member that reads every frame and reports it.
async fn reader<E: Engine>(
    url: &str,
    user: &str,
    tx: mpsc::UnboundedSender<(usize, Frame)>,
    n: usize,
) {
    let conn = chinwag_ws::connect_with::<E>(url, &ws_config(), &bearer(user))
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    tokio::spawn(async move {
        let (mut r, _w) = conn.split();
        while let Ok(Some(f)) = r.read_frame().await {
            if tx.send((n, f)).is_err() {
                break;
            }
        }
    });
}

/// The upgrade request of a WebSocket client that then never reads, on a socket with a tiny
/// receive buffer. Returns the socket (kept open) after the `101`.
async fn stalled_member(url: &str, user: &str) -> tokio::net::TcpStream {
    let rest = url.strip_prefix("ws://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(host.parse().unwrap()).await.unwrap();
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        token(user, "web")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_1000_with_one_stalled_member() {
    const MEMBERS: usize = 999;
    const PUBLISHES: usize = 300;
    const WINDOW: usize = 20;
    const QUEUE: usize = 64;
    let hub = hub(config(), None);
    let (door, base) = rooms_door::<Tungstenite>(&hub, QUEUE).await;
    let url = format!("{base}?room=lobby");
    let (tx, mut rx) = mpsc::unbounded_channel();
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(100) {
        let mut joins = Vec::new();
        for &n in chunk {
            let (url, tx) = (url.clone(), tx.clone());
            joins.push(tokio::spawn(async move {
                reader::<Tungstenite>(&url, &format!("u{n}"), tx, n).await
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
    }
    let stalled = stalled_member(&url, "stalled").await;
    until(&hub, "all 1000 joined", |hub| {
        hub.room("lobby").is_some_and(|r| r.members == MEMBERS + 1)
    })
    .await;
    let stalled_conn = hub.connections_of("stalled").pop().unwrap();

    let mut next = vec![0usize; MEMBERS];
    for w in 0..PUBLISHES / WINDOW {
        for i in w * WINDOW..(w + 1) * WINDOW {
            let mut body = format!("{i:08}");
            body.push_str(&"x".repeat(4096));
            let r = hub
                .publish("lobby", chinwag_hub::Body::text(body))
                .await
                .unwrap();
            assert!(r.delivered >= MEMBERS, "publish {i}: {r:?}");
        }
        // The 999 keep up with every window; nobody waits for the stalled one.
        let mut missing = MEMBERS * WINDOW;
        while missing > 0 {
            let (n, f) = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .unwrap()
                .unwrap();
            let Frame::Text(b) = f else {
                panic!("text expected")
            };
            let seq: usize = std::str::from_utf8(&b[..8]).unwrap().parse().unwrap();
            assert_eq!(seq, next[n], "member {n} gets every publish in order");
            next[n] += 1;
            missing -= 1;
        }
    }
    assert!(next.iter().all(|&k| k == PUBLISHES));
    // 1.2 MB fit in the kernel's buffers on loopback; what goes to the stalled member beyond
    // them fills its send queue, and its policy (Close) cuts it off.
    let big = chinwag_hub::Body::binary(vec![7u8; 60_000]);
    let mut sent = 0;
    while !stalled_conn.is_closed() {
        assert!(sent < 2_000, "the stalled member was never cut off");
        let _ = hub
            .send(
                "stalled",
                big.clone(),
                chinwag_hub::SendOptions::live_only(),
            )
            .await;
        sent += 1;
    }
    assert!(sent > 1);
    until(&hub, "and out of the room", |hub| {
        hub.room("lobby").is_some_and(|r| r.members == MEMBERS)
    })
    .await;
    drop(stalled);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// Sends an upgrade request by hand and returns the status and body of the answer (the body
/// carries the refusal's reason).
async fn raw_upgrade(url: &str, headers: &[(&str, String)]) -> (u16, String) {
    let rest = url.strip_prefix("ws://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn auth(user: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {}", token(user, "web")))
}

async fn passwords<E: Engine>() {
    let hub = hub(config(), None);
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, base) = rooms_door::<E>(&hub, 64).await;
    let url = format!("{base}?room=vault");
    // No password, a wrong one: 403 before the upgrade, with the reason.
    let (st, body) = raw_upgrade(&url, &[auth("a")]).await;
    assert_eq!(
        (st, body.contains("wrong room password")),
        (403, true),
        "{body}"
    );
    let (st, _) = raw_upgrade(&url, &[auth("a"), ("X-Room-Password", "open sesam".into())]).await;
    assert_eq!(st, 403);
    // Not from the query unless enabled.
    let (st, _) = raw_upgrade(&format!("{url}&password=open%20sesame"), &[auth("a")]).await;
    assert_eq!(st, 403);
    // The right one gets in, through the real client too.
    let (st, _) = raw_upgrade(
        &url,
        &[auth("a"), ("X-Room-Password", "open sesame".into())],
    )
    .await;
    assert_eq!(st, 101);
    chinwag_ws::connect_with::<E>(
        &url,
        &ws_config(),
        &bearer("b").with_header("x-room-password", "open sesame"),
    )
    .await
    .unwrap();
    // No token, a bad token: 401 with the reason; no room: 400.
    let (st, body) = raw_upgrade(&url, &[]).await;
    assert_eq!((st, body.contains("no token")), (401, true), "{body}");
    let (st, body) = raw_upgrade(&url, &[("Authorization", "Bearer not.a.jwt".into())]).await;
    assert_eq!(st, 401, "{body}");
    let (st, body) = raw_upgrade(&base, &[auth("a")]).await;
    assert_eq!((st, body.contains("missing room")), (400, true), "{body}");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    let hub = common::hub(config(), None);
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let acc = WsAcceptor::<E>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
        .await
        .unwrap();
    let acc_addr = acc.local_addr();
    let url = format!("ws://{acc_addr}/ws?room=vault&password=open%20sesame");
    let door = RoomsDoor::new(hub.clone())
        .with_password_in_query(true)
        .serve(acc);
    let (st, _) = raw_upgrade(&url, &[auth("c")]).await;
    assert_eq!(st, 101, "the query password counts once enabled");
    // plumego's parameter, `room_password`: right in, wrong or missing refused with 403.
    let base = format!("ws://{}/ws?room=vault", acc_addr);
    let (st, _) = raw_upgrade(&format!("{base}&room_password=open%20sesame"), &[auth("d")]).await;
    assert_eq!(st, 101, "plumego's room_password counts");
    let (st, body) = raw_upgrade(&format!("{base}&room_password=open"), &[auth("e")]).await;
    assert_eq!(
        (st, body.contains("wrong room password")),
        (403, true),
        "{body}"
    );
    let (st, _) = raw_upgrade(&base, &[auth("e")]).await;
    assert_eq!(st, 403, "no password at all");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_passwords_on_tungstenite() {
    passwords::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_passwords_on_fastwebsockets() {
    passwords::<FastWebSockets>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_per_room_and_rooms_per_connection_at_their_limits() {
    let limits = HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None)
        .with_max_members_per_room(3)
        .with_max_rooms_per_connection(2)
        .with_max_rooms(3);
    let hub = hub(config().with_limits(limits), None);
    let (door, addr) = chat_tcp(&hub);
    let mut clients = Vec::new();
    for n in 0..4 {
        clients.push(Client::tcp(addr, Some(&token(&format!("m{n}"), "d"))).await);
    }
    for c in &clients[..3] {
        c.req("join", json!({ "room": "small" })).await.unwrap();
    }
    let e = clients[3]
        .req("join", json!({ "room": "small" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "room_full");
    // Two rooms per connection; the third is refused.
    clients[0]
        .req("join", json!({ "room": "second" }))
        .await
        .unwrap();
    let e = clients[0]
        .req("join", json!({ "room": "third" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "too_many_rooms");
    // Three rooms on the server: `small`, `second`, then one more, then no more.
    clients[3]
        .req("join", json!({ "room": "third" }))
        .await
        .unwrap();
    let e = clients[3]
        .req("join", json!({ "room": "fourth" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "too_many_rooms_on_server");
    // Leaving frees the place.
    clients[2]
        .req("leave", json!({ "room": "small" }))
        .await
        .unwrap();
    clients[3]
        .req("join", json!({ "room": "small" }))
        .await
        .unwrap();
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// Rooms made by joining send presence events when the hub says so (`presence_on_join`), and
/// none by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_made_by_joining_have_presence_events_when_configured() {
    for on in [true, false] {
        let hub = hub(config().with_presence_on_join(on), None);
        let (door, addr) = chat_tcp(&hub);
        let mut a = Client::tcp(addr, Some(&token("ann", "d"))).await;
        let b = Client::tcp(addr, Some(&token("ben", "d"))).await;
        a.req("join", json!({ "room": "made" })).await.unwrap();
        b.req("join", json!({ "room": "made" })).await.unwrap();
        b.req("publish", json!({ "room": "made", "body": "hi" }))
            .await
            .unwrap();
        b.req("leave", json!({ "room": "made" })).await.unwrap();
        b.req("join", json!({ "room": "made" })).await.unwrap();
        b.req("publish", json!({ "room": "made", "body": "again" }))
            .await
            .unwrap();
        // What ann gets, in order, up to ben's second publish.
        let mut got = Vec::new();
        loop {
            let n = a.note().await;
            let done = n.name == "room" && n.body["body"] == "again";
            got.push(match n.name.as_str() {
                "presence" => format!("presence {}", n.body["event"].as_str().unwrap()),
                other => format!("{other} {}", n.body["body"].as_str().unwrap_or("")),
            });
            if done {
                break;
            }
        }
        let expected: &[&str] = if on {
            &[
                "presence join",
                "room hi",
                "presence leave",
                "presence join",
                "room again",
            ]
        } else {
            &["room hi", "room again"]
        };
        assert_eq!(got, expected, "presence_on_join = {on}");
        hub.shutdown(DEADLINE).await;
        door.shutdown(DEADLINE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_carry_room_epoch_and_sequence_and_presence_when_asked() {
    let hub = hub(config(), None);
    hub.create_room("desk", RoomOptions::new().with_presence_events(true))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let mut a = Client::tcp(addr, Some(&token("ann", "d"))).await;
    let b = Client::tcp(addr, Some(&token("ben", "d"))).await;
    let info = a.req("join", json!({ "room": "desk" })).await.unwrap();
    let epoch = info["epoch"].as_u64().unwrap();
    assert!(epoch > 0);
    b.req("join", json!({ "room": "desk" })).await.unwrap();
    let p = a.note_named("presence").await;
    assert_eq!(
        p.body,
        json!({ "room": "desk", "user": "ben", "device": "d", "event": "join" })
    );
    for i in 1..=3 {
        let r = b
            .req(
                "publish",
                json!({ "room": "desk", "body": format!("p{i}") }),
            )
            .await
            .unwrap();
        assert_eq!(r["seq"], i);
    }
    for i in 1..=3 {
        let m = a.note_named("room").await;
        assert_eq!(m.body["seq"], i);
        assert_eq!(m.body["epoch"], epoch);
        assert_eq!(m.body["body"], format!("p{i}"));
        assert_eq!(m.body["from"]["user"], "ben");
    }
    // Members, in pages.
    let page = a
        .req("members", json!({ "room": "desk", "limit": 1 }))
        .await
        .unwrap();
    assert_eq!(page["members"].as_array().unwrap().len(), 1);
    let next = page["next"].as_u64().unwrap();
    let page2 = a
        .req(
            "members",
            json!({ "room": "desk", "after": next, "limit": 10 }),
        )
        .await
        .unwrap();
    assert_eq!(page2["members"].as_array().unwrap().len(), 1);
    assert!(page2["next"].is_null());
    // A non-member cannot publish; leaving tells the others.
    let c = Client::tcp(addr, Some(&token("cy", "d"))).await;
    let e = c
        .req("publish", json!({ "room": "desk", "body": "x" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_member");
    b.req("leave", json!({ "room": "desk" })).await.unwrap();
    let p = a.note_named("presence").await;
    assert_eq!(p.body["event"], "leave");
    // A room made by a join goes when its last member leaves; `desk` was created: it stays.
    c.req("join", json!({ "room": "tmp" })).await.unwrap();
    c.req("leave", json!({ "room": "tmp" })).await.unwrap();
    assert!(hub.room("tmp").is_none());
    a.req("leave", json!({ "room": "desk" })).await.unwrap();
    assert!(hub.room("desk").is_some());
    let _ = Arc::new(());
    let _ = Duration::ZERO;
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}
