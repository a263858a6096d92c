//! Each front door end to end on real loopback sockets: the chat door over WebSocket (both
//! engines; the token in the `Authorization` header, in the subprotocol list, in the query),
//! over TCP (first-message `auth`, its timeout and its failures) and over TLS; direct messages
//! with text and binary bodies; the raw room door (both engines); the tok-style TCP door with
//! hand-made length-delimited frames.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chinwag_hub::auth::{BoxFuture, JwtIssuer, TokenSources};
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::chat::ChatDoor;
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::doors::tok::{ByeFn, TokDoor};
use chinwag_hub::{App, Body, Close, Hub, SendOptions};
use chinwag_transport::tcp::TcpAcceptor;
use chinwag_transport::tls;
use chinwag_transport::{Frame, FrameRead, FrameWrite, Transport};
use chinwag_ws::{ConnectOptions, Engine, WsAcceptor};
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

async fn stop(hub: &Hub, door: &DoorHandle) {
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

// ---- the chat door over WebSocket -------------------------------------------------------------

async fn ws_bearer<E: Engine>() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<E>(&hub).await;
    let c = Client::ws_bearer::<E>(&url, &token("ada", "laptop")).await;
    let me = c.whoami().await;
    assert_eq!(
        (me["user"].as_str(), me["device"].as_str()),
        (Some("ada"), Some("laptop"))
    );
    assert_eq!(hub.connections_of("ada").len(), 1);
    assert_eq!(hub.connections_of("ada")[0].door(), "chat");
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_bearer_header_on_tungstenite() {
    ws_bearer::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_bearer_header_on_fastwebsockets() {
    ws_bearer::<FastWebSockets>().await;
}

async fn ws_subprotocol<E: Engine>() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<E>(&hub).await;
    let t = token("bea", "browser");
    let opts = ConnectOptions::default()
        .with_subprotocol("chinwag.v1")
        .with_subprotocol(format!("bearer.{t}"));
    let c = Client::ws::<E>(&url, opts)
        .await
        .unwrap_or_else(|e| panic!("the client engine refused the server's answer: {e}"));
    let me = c.whoami().await;
    assert_eq!(me["user"], "bea");
    assert_eq!(me["device"], "browser");
    // On the wire: the answer confirms `chinwag.v1` and never echoes the token.
    let a = raw_request(
        &url,
        &[("Sec-WebSocket-Protocol", format!("chinwag.v1, bearer.{t}"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 101, "{}", a.head);
    assert_eq!(a.header("sec-websocket-protocol"), Some("chinwag.v1"));
    assert!(!a.head.contains(&t), "the token is not echoed: {}", a.head);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_token_in_subprotocol_on_tungstenite() {
    ws_subprotocol::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_token_in_subprotocol_on_fastwebsockets() {
    ws_subprotocol::<FastWebSockets>().await;
}

async fn ws_query<E: Engine>() {
    let t = token("quinn", "kiosk");
    // Default sources: the query is not looked at. The chat door then waits for a
    // first-message `auth` (its default), so the upgrade succeeds but nobody is signed in...
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<E>(&hub).await;
    let c = Client::ws::<E>(&format!("{url}?token={t}"), ConnectOptions::default())
        .await
        .unwrap();
    let e = c.req("whoami", json!({})).await.unwrap_err();
    assert_eq!(e.code, "not_signed_in");
    assert!(hub.connections_of("quinn").is_empty());
    stop(&hub, &door).await;
    // ...and without first-message logins the upgrade is refused: 401 with the reason.
    let hub = common::hub(
        config().with_tokens(TokenSources::default().with_first_message(false)),
        None,
    );
    let (door, url) = chat_ws::<E>(&hub).await;
    let a = raw_request(&format!("{url}?token={t}"), &[], RawOpts::default()).await;
    assert_eq!(a.status, 401, "{}", a.head);
    assert!(a.body.contains("no token"), "{}", a.body);
    stop(&hub, &door).await;
    // With the query enabled, it signs in.
    let hub = common::hub(
        config().with_tokens(TokenSources::default().with_query(Some("token".into()))),
        None,
    );
    let (door, url) = chat_ws::<E>(&hub).await;
    let c = Client::ws::<E>(&format!("{url}?token={t}"), ConnectOptions::default())
        .await
        .unwrap();
    let me = c.whoami().await;
    assert_eq!(me["user"], "quinn");
    assert_eq!(me["device"], "kiosk");
    // A bad token in the query is refused like any other: 401 before the upgrade.
    let a = raw_request(&format!("{url}?token=not.a.jwt"), &[], RawOpts::default()).await;
    assert_eq!(a.status, 401, "{}", a.head);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_token_in_query_on_tungstenite() {
    ws_query::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_token_in_query_on_fastwebsockets() {
    ws_query::<FastWebSockets>().await;
}

async fn ws_refusals<E: Engine>() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<E>(&hub).await;
    let other = JwtIssuer::hs256(b"not the hub's secret, but as long as it").issue(
        "mallory",
        None,
        Duration::from_secs(3600),
    );
    for (token, reason) in [
        ("not.a.jwt".to_owned(), "malformed"),
        (other, "bad signature"),
        (expired_token("old", "d"), "token expired"),
    ] {
        let a = raw_request(&url, &[bearer_header(&token)], RawOpts::default()).await;
        assert_eq!(a.status, 401, "{reason}: {}", a.head);
        assert!(a.body.contains(reason), "{reason}: {}", a.body);
        // The real client sees a failed handshake, not a connection.
        let r = Client::ws::<E>(
            &url,
            ConnectOptions::default().with_header("authorization", format!("Bearer {token}")),
        )
        .await;
        assert!(r.is_err(), "{reason}: the upgrade is refused");
    }
    // A subprotocol token is checked the same way.
    let a = raw_request(
        &url,
        &[(
            "Sec-WebSocket-Protocol",
            format!("chinwag.v1, bearer.{}", expired_token("old", "d")),
        )],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.head);
    assert!(a.body.contains("token expired"), "{}", a.body);
    assert_eq!(hub.connection_count(), 0);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_bad_and_expired_tokens_are_401_on_tungstenite() {
    ws_refusals::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_bad_and_expired_tokens_are_401_on_fastwebsockets() {
    ws_refusals::<FastWebSockets>().await;
}

// ---- the chat door over TCP: first-message auth -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tcp_first_message_auth() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, None).await;
    for (op, body) in [
        ("whoami", json!({})),
        ("send", json!({ "to": "bob", "body": "hi" })),
        ("join", json!({ "room": "r" })),
    ] {
        let e = c.req(op, body).await.unwrap_err();
        assert_eq!(e.code, "not_signed_in", "{op}");
    }
    assert_eq!(hub.connection_count(), 0);
    let me = c
        .req("auth", json!({ "token": token("tia", "tcp") }))
        .await
        .unwrap();
    assert_eq!(me["user"], "tia");
    assert_eq!(me["device"], "tcp");
    assert_eq!(c.whoami().await["conn"], me["conn"]);
    let e = c
        .req("auth", json!({ "token": token("tia", "tcp") }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "already_signed_in");
    assert_eq!(hub.connections_of("tia").len(), 1);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tcp_no_auth_within_the_timeout_is_bye_4009() {
    let hub = hub(config().with_auth_timeout(Duration::from_millis(300)), None);
    let (door, addr) = chat_tcp(&hub);
    // One that signs in in time, then one that never does.
    let signed = Client::tcp(addr, Some(&token("sam", "d"))).await;
    let mut silent = Client::tcp(addr, None).await;
    let bye = silent.bye().await;
    assert_eq!(bye["code"], 4009, "{bye}");
    assert_eq!(bye["name"], "auth_timeout");
    silent.closed().await;
    // The signed-in one connected first: its timer, had it not been stopped, fired already.
    assert!(signed.peer.close_reason().is_none());
    assert_eq!(signed.whoami().await["user"], "sam");
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tcp_three_failed_auths_are_bye_4001() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let mut c = Client::tcp(addr, None).await;
    let forged = JwtIssuer::hs256(b"not the hub's secret, but as long as it").issue(
        "eve",
        None,
        Duration::from_secs(3600),
    );
    for i in 0..2 {
        let e = c.req("auth", json!({ "token": forged })).await.unwrap_err();
        assert_eq!(e.code, "auth_bad_signature", "attempt {i}");
    }
    assert!(c.peer.close_reason().is_none(), "two failures are allowed");
    // The third: the connection is closed (its answer may or may not make it out first).
    let third = c
        .req("auth", json!({ "token": "not.a.jwt" }))
        .await
        .unwrap_err();
    assert!(
        third.code == "auth_malformed" || third.code == "transport",
        "{third:?}"
    );
    let bye = c.bye().await;
    assert_eq!(bye["code"], 4001, "{bye}");
    assert_eq!(bye["name"], "auth_failed");
    assert_eq!(bye["reconnect"], "never");
    c.closed().await;
    assert_eq!(hub.connection_count(), 0);
    stop(&hub, &door).await;
}

// ---- the chat door over TLS -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_tls_round_trip() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let server = tls::TlsServerConfig::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let acc =
        tls::TlsAcceptor::bind("127.0.0.1:0".parse().unwrap(), server, Default::default()).unwrap();
    let port = acc.local_socket_addr().unwrap().port();
    let hub = hub(config(), None);
    let door = ChatDoor::new(hub.clone()).serve(acc);
    let client_cfg = tls::TlsClientConfig::from_pem_roots(cert_pem.as_bytes()).unwrap();
    let dial = || async {
        let t = tls::connect(
            &format!("localhost:{port}"),
            &client_cfg,
            &Default::default(),
        )
        .await
        .unwrap();
        Client::over(t)
    };
    let alice = dial().await;
    let mut bob = dial().await;
    alice
        .req("auth", json!({ "token": token("alice", "tls") }))
        .await
        .unwrap();
    bob.req("auth", json!({ "token": token("bob", "tls") }))
        .await
        .unwrap();
    let r = alice
        .req("send", json!({ "to": "bob", "body": "over TLS" }))
        .await
        .unwrap();
    assert_eq!(r["delivered"], 1, "{r}");
    let m = bob.note_named("message").await;
    assert_eq!(m.body["body"], "over TLS");
    assert_eq!(m.body["from"]["user"], "alice");
    bob.req("send", json!({ "to": "alice", "body": "and back" }))
        .await
        .unwrap();
    let mut alice = alice;
    assert_eq!(alice.note_named("message").await.body["body"], "and back");
    stop(&hub, &door).await;
}

// ---- direct messages over WebSocket -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_over_ws_text_and_binary() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let (door2, url2) = chat_ws::<FastWebSockets>(&hub).await;
    let mut alice = Client::ws_bearer::<Tungstenite>(&url, &token("alice", "a")).await;
    let mut bob = Client::ws_bearer::<FastWebSockets>(&url2, &token("bob", "b")).await;

    let r = alice
        .req("send", json!({ "to": "bob", "body": "hé, bob" }))
        .await
        .unwrap();
    assert_eq!(
        (r["delivered"].as_u64(), r["failed"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(
        r["queued"], true,
        "a default TTL: stored until acknowledged"
    );
    let m = bob.note_named("message").await;
    assert_eq!(m.body["body"], "hé, bob");
    assert!(m.body.get("body_base64").is_none());
    assert_eq!(m.body["id"], r["id"]);
    assert_eq!(m.body["from"], json!({ "user": "alice", "device": "a" }));

    // Binary: every byte value, both ways.
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let r = alice
        .req("send", json!({ "to": "bob", "body_base64": b64 }))
        .await
        .unwrap();
    assert_eq!(r["delivered"], 1);
    let m = bob.note_named("message").await;
    assert!(m.body.get("body").is_none(), "{}", m.body);
    let back = base64::engine::general_purpose::STANDARD
        .decode(m.body["body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(back, bytes);
    bob.req("send", json!({ "to": "alice", "body_base64": b64 }))
        .await
        .unwrap();
    let m = alice.note_named("message").await;
    assert_eq!(m.body["body_base64"], b64);

    // Live only to an online user: delivered, not queued; to an offline one with a TTL:
    // queued, delivered nowhere.
    let r = alice
        .req("send", json!({ "to": "bob", "body": "now", "ttl_ms": 0 }))
        .await
        .unwrap();
    assert_eq!(
        (r["delivered"].as_u64(), r["queued"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(bob.note_named("message").await.body["body"], "now");
    let r = alice
        .req("send", json!({ "to": "carol", "body": "later" }))
        .await
        .unwrap();
    assert_eq!(
        (r["delivered"].as_u64(), r["queued"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(hub.queue().len("carol").await.unwrap(), 1);
    // Both or neither of body / body_base64, or bad base64: bad_request.
    for bad in [
        json!({ "to": "bob" }),
        json!({ "to": "bob", "body": "x", "body_base64": "eA==" }),
        json!({ "to": "bob", "body_base64": "***" }),
    ] {
        let e = alice.req("send", bad.clone()).await.unwrap_err();
        assert_eq!(e.code, "bad_request", "{bad}");
    }
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    door2.shutdown(DEADLINE).await;
}

// ---- the raw room door ------------------------------------------------------------------------

async fn rooms_door<E: Engine>(hub: &Hub) -> (DoorHandle, String) {
    let acc = WsAcceptor::<E>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
        .await
        .unwrap();
    let base = format!("ws://{}/ws", acc.local_addr());
    (RoomsDoor::new(hub.clone()).serve(acc), base)
}

type Member<E> = (
    <chinwag_ws::WsConnection<E> as Transport>::Reader,
    <chinwag_ws::WsConnection<E> as Transport>::Writer,
);

async fn member<E: Engine>(base: &str, room: &str, user: &str) -> Member<E> {
    let opts = ConnectOptions::default()
        .with_header("authorization", format!("Bearer {}", token(user, "web")));
    chinwag_ws::connect_with::<E>(&format!("{base}?room={room}"), &ws_config(), &opts)
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"))
        .split()
}

async fn next_frame<R: FrameRead>(r: &mut R) -> Frame {
    tokio::time::timeout(DEADLINE, r.read_frame())
        .await
        .expect("a frame within the deadline")
        .unwrap()
        .expect("the connection is open")
}

async fn raw_rooms<E: Engine>() {
    let hub = hub(config(), None);
    let (door, base) = rooms_door::<E>(&hub).await;
    let (mut ar, mut aw) = member::<E>(&base, "x", "ann").await;
    let (mut br, _bw) = member::<E>(&base, "x", "ben").await;
    let (mut cr, _cw) = member::<E>(&base, "y", "cyd").await;
    assert_eq!(hub.room("x").unwrap().members, 2);
    assert_eq!(hub.room("y").unwrap().members, 1);
    assert_eq!(hub.connections_of("ann")[0].door(), "rooms");

    aw.send(Frame::Text(Bytes::from_static(b"hello, x")))
        .await
        .unwrap();
    for r in [&mut ar, &mut br] {
        match next_frame(r).await {
            Frame::Text(b) => assert_eq!(&b[..], b"hello, x"),
            f => panic!("text expected, got {f:?}"),
        }
    }
    let bin = Bytes::from(vec![0u8, 159, 146, 150, 255]);
    aw.send(Frame::Binary(bin.clone())).await.unwrap();
    for r in [&mut ar, &mut br] {
        match next_frame(r).await {
            Frame::Binary(b) => assert_eq!(b, bin),
            f => panic!("binary expected, got {f:?}"),
        }
    }
    // Room y got neither: the first thing it reads is what is published there next.
    hub.publish("y", Body::text("only for y")).await.unwrap();
    match next_frame(&mut cr).await {
        Frame::Text(b) => assert_eq!(&b[..], b"only for y"),
        f => panic!("text expected, got {f:?}"),
    }
    // A direct message to a member arrives as its body.
    hub.send("ben", Body::text("psst"), SendOptions::live_only())
        .await
        .unwrap();
    match next_frame(&mut br).await {
        Frame::Text(b) => assert_eq!(&b[..], b"psst"),
        f => panic!("text expected, got {f:?}"),
    }
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_room_door_on_tungstenite() {
    raw_rooms::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_room_door_on_fastwebsockets() {
    raw_rooms::<FastWebSockets>().await;
}

// ---- the tok-style TCP door -------------------------------------------------------------------

/// Forwards every application message into a channel.
struct Forward(mpsc::UnboundedSender<(String, Bytes)>);

impl App for Forward {
    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        conn: &'a chinwag_hub::Conn,
        body: Body,
    ) -> BoxFuture<'a, Result<Option<Body>, chinwag_hub::Rejection>> {
        let _ = self
            .0
            .send((conn.device().to_string(), body.bytes().clone()));
        Box::pin(async { Ok(None) })
    }
}

fn tok_hub(config: chinwag_hub::HubConfig) -> (Hub, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .config(config)
        .authenticator(authenticator())
        .app(Arc::new(Forward(tx)))
        .build();
    (hub, rx)
}

fn tok_door(hub: &Hub, bye: Option<ByeFn>) -> (DoorHandle, std::net::SocketAddr) {
    let acc = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let mut d = TokDoor::new(hub.clone());
    if let Some(b) = bye {
        d = d.with_bye(b);
    }
    let door = d.serve(acc);
    let addr = addr_of(&door);
    (door, addr)
}

fn bye_fn() -> ByeFn {
    Arc::new(|c: &Close| Some(Bytes::from(format!("bye {} {}", c.code.0, c.reason))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_door_frames_in_order_both_ways() {
    let (hub, mut rx) = tok_hub(config());
    let (door, addr) = tok_door(&hub, None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut s, token("toko", "dev1").as_bytes()).await;
    for i in 0..100 {
        write_frame(&mut s, format!("frame {i}").as_bytes()).await;
    }
    for i in 0..100 {
        let (from, body) = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from, "toko/dev1");
        assert_eq!(
            &body[..],
            format!("frame {i}").as_bytes(),
            "frame {i} in order"
        );
    }
    assert_eq!(hub.connections_of("toko")[0].door(), "tok");
    let r = hub
        .send(
            "toko",
            Body::text("from the server"),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.delivered, 1);
    assert_eq!(
        read_frame(&mut s).await.as_deref(),
        Some(&b"from the server"[..])
    );
    let bin = vec![0u8, 1, 2, 255];
    hub.send("toko", Body::binary(bin.clone()), SendOptions::live_only())
        .await
        .unwrap();
    assert_eq!(read_frame(&mut s).await, Some(bin));
    // It cannot acknowledge: written counts as delivered, and the hub acknowledges it (in its
    // next batch of acks), so nothing stays queued.
    queue_empties(&hub, "toko").await;
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_door_bad_token_closes_the_connection() {
    let (hub, _rx) = tok_hub(config());
    let (door, addr) = tok_door(&hub, None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut s, b"not.a.jwt").await;
    assert_eq!(read_frame(&mut s).await, None, "closed without a word");
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut s, expired_token("toko", "d").as_bytes()).await;
    assert_eq!(read_frame(&mut s).await, None);
    assert_eq!(hub.connection_count(), 0);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_door_bad_token_with_a_bye_frame() {
    let (hub, _rx) = tok_hub(config());
    let (door, addr) = tok_door(&hub, Some(bye_fn()));
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut s, b"not.a.jwt").await;
    let bye = String::from_utf8(read_frame(&mut s).await.expect("the bye frame")).unwrap();
    assert!(bye.starts_with("bye 4001 "), "{bye}");
    assert!(bye.contains("malformed"), "{bye}");
    assert_eq!(read_frame(&mut s).await, None);
    // A kick says bye too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut s, token("toko", "d").as_bytes()).await;
    until(&hub, "toko signs on", |hub| {
        hub.connections_of("toko").len() == 1
    })
    .await;
    assert_eq!(hub.kick("toko", None, "out you go"), 1);
    let bye = String::from_utf8(read_frame(&mut s).await.expect("the bye frame")).unwrap();
    assert_eq!(bye, "bye 4004 out you go");
    assert_eq!(read_frame(&mut s).await, None);
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_door_no_token_within_the_auth_timeout_closes() {
    let (hub, _rx) = tok_hub(config().with_auth_timeout(Duration::from_millis(300)));
    let (door, addr) = tok_door(&hub, Some(bye_fn()));
    // One that sends its token in time stays.
    let mut ok = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut ok, token("early", "d").as_bytes()).await;
    until(&hub, "early signs on", |hub| {
        hub.connections_of("early").len() == 1
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The stream ends. (The door sends no goodbye on this path, unlike for a refused token;
    // at most one is allowed here, and it must say 4009.)
    let mut frames = Vec::new();
    while let Some(f) = read_frame(&mut s).await {
        frames.push(String::from_utf8_lossy(&f).into_owned());
        assert!(
            frames.len() < 2,
            "at most a goodbye before the end: {frames:?}"
        );
    }
    if let Some(f) = frames.first() {
        assert!(f.starts_with("bye 4009"), "{f}");
    }
    assert_eq!(hub.connections_of("early").len(), 1);
    hub.send("early", Body::text("still here"), SendOptions::live_only())
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut ok).await.as_deref(),
        Some(&b"still here"[..])
    );
    stop(&hub, &door).await;
}

// ---- more of the chat door's sign-in --------------------------------------------------------------

async fn ws_bearer_subprotocol_only<E: Engine>() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<E>(&hub).await;
    // A client offering only the token protocol: the server signs it in but must not echo the
    // token, so it confirms no protocol. (Strict clients — browsers, tungstenite — then fail
    // the connection: clients offer a second protocol such as `chinwag.v1`.)
    let t = token("solo", "d");
    let a = raw_request(
        &url,
        &[("Sec-WebSocket-Protocol", format!("bearer.{t}"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 101, "{}", a.head);
    assert_eq!(a.header("sec-websocket-protocol"), None, "{}", a.head);
    assert!(!a.head.contains(&t), "the token is not echoed: {}", a.head);
    until(&hub, "solo is signed in", |hub| {
        hub.connections_of("solo").len() == 1
    })
    .await;
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_only_the_token_subprotocol_on_tungstenite() {
    ws_bearer_subprotocol_only::<Tungstenite>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_ws_only_the_token_subprotocol_on_fastwebsockets() {
    ws_bearer_subprotocol_only::<FastWebSockets>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tcp_two_concurrent_auths_sign_in_once() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    for round in 0..20 {
        let user = format!("twice{round}");
        let c = Client::tcp(addr, None).await;
        let t = token(&user, "d");
        let (a, b) = tokio::join!(
            c.req("auth", json!({ "token": t })),
            c.req("auth", json!({ "token": t }))
        );
        let oks = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "round {round}: exactly one signs in: {a:?} / {b:?}");
        for r in [&a, &b] {
            if let Err(e) = r {
                assert_eq!(e.code, "already_signed_in", "round {round}: {e:?}");
            }
        }
        assert!(c.peer.close_reason().is_none(), "round {round}: still open");
        assert_eq!(c.whoami().await["user"], user.as_str());
        assert_eq!(hub.connections_of(&user).len(), 1);
    }
    stop(&hub, &door).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_and_first_message_logins_together() {
    let hub = hub(config().with_anonymous(true), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let (tcp, addr) = chat_tcp(&hub);
    // No token at all: a fresh anonymous user.
    let anon = Client::ws::<Tungstenite>(&url, ConnectOptions::default())
        .await
        .unwrap();
    let me = anon.whoami().await;
    assert!(me["user"].as_str().unwrap().starts_with("anon-"), "{me}");
    // A token at connect still counts.
    let named = Client::ws_bearer::<Tungstenite>(&url, &token("named", "d")).await;
    assert_eq!(named.whoami().await["user"], "named");
    // A TCP client cannot present one at connect: it starts anonymous, and its `auth` signs
    // it in as the user; the anonymous user signs off.
    let c = Client::tcp(addr, None).await;
    let was = c.whoami().await["user"].as_str().unwrap().to_owned();
    assert!(was.starts_with("anon-"), "{was}");
    assert!(hub.is_online(&was).await.unwrap());
    let r = c
        .req("auth", json!({ "token": token("tcp-user", "d") }))
        .await;
    assert!(r.is_ok(), "first-message login with anonymous on: {r:?}");
    assert_eq!(c.whoami().await["user"], "tcp-user");
    // The directory's sign-off runs on a task of its own and signals nothing: a bounded poll.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hub.is_online(&was).await.unwrap() {
        assert!(
            std::time::Instant::now() < until,
            "the anonymous user signed off"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(hub.connections_of("tcp-user").len(), 1);
    // Once a user, a second `auth` is refused; a refused token keeps the user.
    let again = c.req("auth", json!({ "token": token("other", "d") })).await;
    assert_eq!(again.unwrap_err().code, "already_signed_in");
    assert_eq!(c.whoami().await["user"], "tcp-user");
    // An anonymous connection whose token is refused stays anonymous.
    let d = Client::tcp(addr, None).await;
    let anon_d = d.whoami().await["user"].as_str().unwrap().to_owned();
    let bad = d.req("auth", json!({ "token": "not.a.token" })).await;
    assert!(bad.unwrap_err().code.starts_with("auth_"));
    assert_eq!(d.whoami().await["user"], anon_d.as_str());
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    tcp.shutdown(DEADLINE).await;
}

// ---- the id grammar at the doors --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_break_the_grammar_are_refused_at_every_entry() {
    let hub = hub(config(), None);
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("alice", "d"))).await;
    for bad in [
        "a\r\nb",
        "evil\u{202e}gnp.exe",
        "zero\u{200b}width",
        " padded",
    ] {
        let e = c
            .req("send", json!({ "to": bad, "body": "x" }))
            .await
            .unwrap_err();
        assert_eq!(e.code, "bad_recipient", "{bad:?}");
        let e = c.req("join", json!({ "room": bad })).await.unwrap_err();
        assert_eq!(e.code, "bad_room", "{bad:?}");
    }
    // A token naming such a user is refused as bad claims.
    let fresh = Client::tcp(addr, None).await;
    let e = fresh
        .req("auth", json!({ "token": token("mallory\u{202e}", "d") }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "auth_claims");
    // Spaces inside, other scripts and emoji are fine.
    for good in ["Alice Smith", "Ærøskøbing", "用户", "🦀"] {
        c.req("send", json!({ "to": good, "body": "x" }))
            .await
            .unwrap_or_else(|e| panic!("{good:?}: {e:?}"));
    }
    stop(&hub, &door).await;
}
