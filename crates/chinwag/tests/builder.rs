//! The builder on loopback: every door answers, the HTTP routes are served next to the
//! WebSocket paths, shutdown closes with 1001 and keeps what was not delivered, setup errors are
//! clear. Real sockets, every engine; no sleeps (every wait is bounded by `DEADLINE`).
//!
//! The crate's dev-dependency on itself turns on the features these tests use; a copy built
//! without them (from the packaged crate, which drops that path-only dependency) skips them.
#![cfg(all(
    any(feature = "ws-fastwebsockets", feature = "ws-yawc"),
    feature = "queue-redb",
    feature = "queue-redis",
    feature = "tls"
))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chinwag::client::{Client, Event, Events};
use chinwag::hub::auth::JwtIssuer;
use chinwag::hub::{Body, HubLimits, OfflineShares, SendOptions, SignOn};
use chinwag::queue::QueueConfig;
use chinwag::queue::redb::RedbOptions;
use chinwag::rpc::{Handlers, RpcConfig};
use chinwag::transport::{Frame, FrameRead, FrameWrite, Transport};
use chinwag::ws::{ConnectOptions, Engine, OriginPolicy, WsConfig};
use chinwag::{Server, ServerBuilder, WsEngine, http};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &[u8] = b"the facade tests' HS256 secret, long enough";
const DEADLINE: Duration = Duration::from_secs(20);

/// The engine of the tests that want one other than tungstenite: fastwebsockets when it is
/// compiled in (`cargo test --workspace`, where chinwag-server turns every engine on), else
/// yawc (the dev-dependency on this crate turns on yawc but not fastwebsockets, so that the
/// facade with only `ws-yawc` pulls no fastwebsockets crate, dev-dependencies included).
#[cfg(feature = "ws-fastwebsockets")]
const OTHER_ENGINE: WsEngine = WsEngine::FastWebSockets;
#[cfg(not(feature = "ws-fastwebsockets"))]
const OTHER_ENGINE: WsEngine = WsEngine::Yawc;

fn token(user: &str) -> String {
    JwtIssuer::hs256(SECRET).issue(user, Some("d"), Duration::from_secs(3600))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// All three listeners on loopback, no rate limits (loopback load must not trip them).
fn builder(engine: WsEngine) -> ServerBuilder {
    let routes: http::HttpFallback = Arc::new(|req| match req.uri().path() {
        "/healthz" => Some(http::text(200, "ok\n")),
        _ => None,
    });
    Server::builder()
        .http(loopback())
        .chat_tcp(loopback())
        .tok_tcp(loopback())
        .engine(engine)
        .ws_config(WsConfig::default().with_origin(OriginPolicy::any()))
        .jwt_secret(SECRET)
        .sign_on(SignOn::PerDevice)
        .limits(
            HubLimits::default()
                .with_connection_rate(None)
                .with_message_rate(None),
        )
        .http_fallback(routes)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"))
}

/// A chat client (`chinwag::client`) that does not reconnect (these tests watch the closes).
async fn chat(url: &str, user: &str, in_header: bool) -> (Client, Events) {
    within(
        "chat connect",
        Client::builder(url)
            .token(token(user))
            .token_in_header(in_header)
            .reconnect(false)
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("{user} signs in at {url}: {e}"))
}

/// The next event `pick` takes, skipping the others.
async fn event<T>(events: &mut Events, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    within(what, async {
        loop {
            let ev = events
                .next()
                .await
                .unwrap_or_else(|| panic!("events ended before {what}"));
            if let Some(t) = pick(ev) {
                return t;
            }
        }
    })
    .await
}

async fn message(events: &mut Events) -> String {
    event(events, "a message", |e| match e {
        Event::Message(m) => m.text().map(str::to_owned),
        _ => None,
    })
    .await
}

/// A plain HTTP/1.1 GET; the status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    within(&format!("GET {path}"), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
}

/// One length-prefixed tok frame.
async fn tok_write(s: &mut tokio::net::TcpStream, payload: &[u8]) {
    s.write_all(&(payload.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(payload).await.unwrap();
}

async fn tok_read(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    within("a tok frame", async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).await.unwrap();
        b
    })
    .await
}

async fn every_door_answers<E: Engine>(engine: WsEngine) {
    let server = builder(engine).start().await.expect("server starts");
    assert_eq!(server.engine(), Some(engine));
    assert_eq!(server.doors().len(), 4, "{:?}", server.doors());
    let http_addr = server.http_addr().unwrap();
    let hub = server.hub().clone();

    // Chat over WebSocket at /gotalk/.
    let chat_url = server.chat_url().unwrap();
    assert_eq!(chat_url, format!("ws://{http_addr}/gotalk/"));
    // (the token in the upgrade's Authorization header, on this engine as the client)
    let (ws, mut ws_ev) = within(
        "chat connect",
        Client::builder(&chat_url)
            .token(token("alice"))
            .token_in_header(true)
            .engine(engine)
            .reconnect(false)
            .connect(),
    )
    .await
    .expect("alice signs in over WebSocket");
    assert_eq!(ws.whoami().await.unwrap().user, "alice");

    // Chat over TCP, signing in with `auth`.
    let tcp_url = format!("tcp://{}", server.chat_tcp_addr().unwrap());
    let (tcp, mut tcp_ev) = chat(&tcp_url, "bob", false).await;
    assert_eq!(tcp.whoami().await.unwrap().user, "bob");

    // A direct message between them.
    tcp.send("alice", "hi alice").await.unwrap();
    assert_eq!(message(&mut ws_ev).await, "hi alice");

    // The room door at /ws: a publish of the hub reaches the raw member.
    let rooms_url = format!("{}?room=lobby", server.rooms_url().unwrap());
    let opts = ConnectOptions::default()
        .with_header("authorization", format!("Bearer {}", token("carol")));
    let (mut raw, mut raw_w) = within(
        "rooms connect",
        chinwag::ws::connect_with::<E>(&rooms_url, &WsConfig::default(), &opts),
    )
    .await
    .expect("room door connect")
    .split();
    hub.publish("lobby", Body::text("hello room"))
        .await
        .unwrap();
    assert_eq!(
        within("room message", raw.read_frame()).await.unwrap(),
        Some(Frame::Text("hello room".into()))
    );
    // ... and what the raw member sends is published to the room (the chat client joins it).
    ws.join("lobby").await.unwrap();
    raw_w.send(Frame::Text("from carol".into())).await.unwrap();
    let room_note = event(&mut ws_ev, "a publish", |e| match e {
        Event::Room(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(room_note.text(), Some("from carol"), "{room_note:?}");

    // The tok door: the first frame is the token; a direct message arrives as its body (queued
    // first if the sign-on is not done yet: the replay delivers it).
    let mut tok = within(
        "tok connect",
        tokio::net::TcpStream::connect(server.tok_addr().unwrap()),
    )
    .await
    .unwrap();
    tok_write(&mut tok, token("dave").as_bytes()).await;
    hub.send("dave", Body::text("hello dave"), SendOptions::default())
        .await
        .unwrap();
    assert_eq!(tok_read(&mut tok).await, b"hello dave");

    // Plain HTTP on the same port: the fallback, the JS client, 404.
    assert_eq!(get(http_addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, js) = get(http_addr, chinwag::JS_CLIENT_PATH).await;
    assert_eq!(status, 200);
    assert_eq!(js, chinwag::rpc::CHINWAG_JS);
    assert_eq!(get(http_addr, "/nothing-here").await.0, 404);

    // Shutdown: 1001 with a bye for the chat clients; the raw member gets a close frame. (It
    // reads meanwhile, as a client does: the close handshake needs its answer.)
    let raw_closed = tokio::spawn(async move {
        // its own publish came back to it first
        while let Some(f) = raw.read_frame().await.unwrap() {
            assert_eq!(f, Frame::Text("from carol".into()));
        }
        raw.close_reason().map(|r| r.code.0)
    });
    let summary = within("shutdown", server.shutdown(DEADLINE)).await;
    assert_eq!(summary.connections_left, 0, "{summary:?}");
    for ev in [&mut ws_ev, &mut tcp_ev] {
        let bye = event(ev, "bye", |e| match e {
            Event::Bye(b) => Some(b),
            _ => None,
        })
        .await;
        assert_eq!(bye.code, 1001);
        let closed = event(ev, "closed", |e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
        .await;
        assert_eq!(closed.code, 1001);
    }
    assert!(ws.is_closed() && tcp.is_closed());
    assert_eq!(within("room close", raw_closed).await.unwrap(), Some(1001));
    // The tok client's socket is closed.
    let mut rest = Vec::new();
    within("tok close", tok.read_to_end(&mut rest))
        .await
        .unwrap();
    // Nothing listens any more: the address can be bound again. (Not `connect().is_err()`: a
    // connect to a free loopback port in the ephemeral range can, rarely, connect to itself.)
    let addr = server.chat_tcp_addr().unwrap();
    assert!(
        std::net::TcpListener::bind(addr).is_ok(),
        "the chat TCP listener at {addr} is closed"
    );
}

#[cfg(feature = "ws-tungstenite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_answers_on_tungstenite() {
    every_door_answers::<chinwag::ws::tungstenite::Tungstenite>(WsEngine::Tungstenite).await;
}

/// Without fastwebsockets compiled in (a plain `cargo test -p chinwag`), on yawc, like
/// [`OTHER_ENGINE`], rather than not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_answers_on_fastwebsockets() {
    #[cfg(feature = "ws-fastwebsockets")]
    every_door_answers::<chinwag::ws::fastwebsockets::FastWebSockets>(WsEngine::FastWebSockets)
        .await;
    #[cfg(not(feature = "ws-fastwebsockets"))]
    every_door_answers::<chinwag::ws::yawc::Yawc>(WsEngine::Yawc).await;
}

#[cfg(feature = "ws-yawc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_answers_on_yawc() {
    every_door_answers::<chinwag::ws::yawc::Yawc>(WsEngine::Yawc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_messages_survive_a_restart_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offline.redb");
    let start = || {
        Server::builder()
            .chat_tcp(loopback())
            .jwt_secret(SECRET)
            .redb_queue(&path)
            .start()
    };
    let server = start().await.expect("first start");
    let report = server
        .hub()
        .send(
            "erin",
            Body::text("while you were away"),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert!(report.queued);
    server.shutdown(DEADLINE).await;
    drop(server);

    let server = start().await.expect("second start on the same file");
    let url = format!("tcp://{}", server.chat_tcp_addr().unwrap());
    let (_erin, mut erin_ev) = chat(&url, "erin", false).await;
    assert_eq!(message(&mut erin_ev).await, "while you were away");
    server.shutdown(DEADLINE).await;
}

/// The hub's fair shares are shares of the queue's own bound: the builder sets one from the
/// other, and opens redb with the options given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_store_bound_is_the_queue_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .chat_tcp(loopback())
        .jwt_secret(SECRET)
        .limits(HubLimits::default().with_offline(OfflineShares::default().with_total_bytes(7)))
        .queue_config(QueueConfig::default().with_max_total_bytes(5 << 20))
        .redb_queue_with(
            dir.path().join("q.redb"),
            RedbOptions::default().with_cache_size(1 << 20),
        )
        .start()
        .await
        .expect("starts on redb");
    assert_eq!(server.hub().config().limits.offline.total_bytes, 5 << 20);
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_queue_keeps_messages_for_offline_users() {
    let redis = chinwag_queue_redis::test_server::RedisServer::start();
    let server = Server::builder()
        .chat_tcp(loopback())
        .jwt_secret(SECRET)
        .redis_queue(redis.url())
        .start()
        .await
        .expect("starts on Redis");
    let report = server
        .hub()
        .send(
            "gina",
            Body::text("queued in redis"),
            SendOptions::default(),
        )
        .await
        .unwrap();
    assert!(report.queued);
    assert_eq!(server.hub().queue().len("gina").await.unwrap(), 1);
    let url = format!("tcp://{}", server.chat_tcp_addr().unwrap());
    let (_gina, mut gina_ev) = chat(&url, "gina", false).await;
    assert_eq!(message(&mut gina_ev).await, "queued in redis");
    server.shutdown(DEADLINE).await;
}

/// A server as a cluster node (feature `cluster-redis`): the directory is connected at start,
/// its listener and lease run (the status watch says registered), a sign-on goes through
/// Redis, and shutdown stops them. Node 0 is refused.
#[cfg(feature = "cluster-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_serves_its_directory_until_shutdown() {
    use chinwag::cluster::redis::DirectoryConfig;
    use chinwag::hub::{HubConfig, NodeId};

    let redis = chinwag_queue_redis::test_server::RedisServer::start();
    let e = Server::builder()
        .chat_tcp(loopback())
        .jwt_secret(SECRET)
        .redis_cluster(redis.url())
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("node id"), "{e}");

    let config = DirectoryConfig::default().with_lease_ttl(Duration::from_secs(2));
    let server = Server::builder()
        .chat_tcp(loopback())
        .jwt_secret(SECRET)
        .config(HubConfig::default().with_node(NodeId(41)))
        .redis_cluster_with(redis.url(), "facade:", config)
        .start()
        .await
        .expect("starts as a cluster node");
    let mut status = server.cluster_status().expect("a cluster node");
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.registered && s.subscribed))
        .await
        .expect("registered within the deadline")
        .unwrap();
    let directory = server.cluster_directory().unwrap().clone();
    assert_eq!(directory.lease_key(NodeId(41)), "facade:{node:41}:lease");
    let url = format!("tcp://{}", server.chat_tcp_addr().unwrap());
    let hana = chat(&url, "hana", false).await;
    let listed = chinwag::hub::Directory::connections(&*directory, "hana")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].conn.node, NodeId(41));
    assert_eq!(server.hub().online_users().await.unwrap(), 1);

    server.shutdown(DEADLINE).await;
    // The listener and lease task are stopped: the watch's sender is gone.
    tokio::time::timeout(DEADLINE, async { while status.changed().await.is_ok() {} })
        .await
        .expect("the listener ended with the shutdown");
    let _ = hana;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_fallback_can_use_the_hub() {
    let server = Server::builder()
        .http(loopback())
        .anonymous(true)
        .js_client(false)
        .rooms_path(None)
        .http_fallback_with(|hub| {
            let hub = hub.clone();
            Arc::new(move |req| {
                (req.uri().path() == "/readyz").then(|| match hub.is_stopping() {
                    false => http::text(200, "ready\n"),
                    true => http::text(503, "stopping\n"),
                })
            })
        })
        .start()
        .await
        .unwrap();
    let addr = server.http_addr().unwrap();
    assert_eq!(server.doors().len(), 1, "no room door");
    assert_eq!(server.rooms_url(), None);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(
        get(addr, chinwag::JS_CLIENT_PATH).await.0,
        404,
        "JS client off"
    );
    server.hub().shutdown(DEADLINE).await;
    assert_eq!(get(addr, "/readyz").await.0, 503);
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_every_listener() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = chinwag::tls::server_config(
        cert.cert.pem().as_bytes(),
        cert.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = Server::builder()
        .http(loopback())
        .chat_tcp(loopback())
        .engine(OTHER_ENGINE)
        .jwt_secret(SECRET)
        .tls(tls)
        .start()
        .await
        .unwrap();
    let url = server.chat_url().unwrap();
    assert!(url.starts_with("wss://"), "{url}");

    use chinwag::transport::tls::{TlsClientConfig, TlsConfig};
    let client = TlsClientConfig::from_pem_roots(cert.cert.pem().as_bytes())
        .unwrap()
        .with_server_name("localhost")
        .unwrap();
    let addr = server.chat_tcp_addr().unwrap().to_string();
    let t = within(
        "TLS connect",
        chinwag::transport::tls::connect(&addr, &client, &TlsConfig::default()),
    )
    .await
    .expect("TLS handshake");
    // (chinwag::client speaks TLS only as wss://: the TLS TCP door with a bare RPC peer)
    let c = chinwag::rpc::connect(t, Arc::new(Handlers::new()), RpcConfig::client());
    let me: Value = c
        .request("auth", &json!({ "token": token("frank") }))
        .await
        .unwrap();
    assert_eq!(me["user"], "frank");
    server.shutdown(DEADLINE).await;
}

#[tokio::test]
async fn setup_errors_are_clear() {
    let e = Server::builder()
        .jwt_secret(SECRET)
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(e.to_string().contains("no listener"), "{e}");

    let e = Server::builder()
        .chat_tcp(loopback())
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("sign in"), "{e}");

    let e = Server::builder()
        .http(loopback())
        .anonymous(true)
        .chat_path("/x")
        .rooms_path(Some("/x"))
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");

    let taken = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Server::builder()
        .chat_tcp(loopback())
        .tok_tcp(addr)
        .anonymous(true)
        .start()
        .await
        .unwrap_err();
    assert!(e.is_bind(), "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");

    assert!("nope".parse::<WsEngine>().unwrap_err().is_config());
}

/// The tok door over WebSocket on the HTTP port beside the other doors: static tokens first,
/// JWTs (the builder's other sign-in) for the rest; one frame per binary message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tok_door_over_websocket_with_static_tokens() {
    use chinwag::hub::auth::StaticTokens;
    use chinwag::ws::tungstenite::Tungstenite;

    let tokens = StaticTokens::new()
        .with_token("opaque-alice", "alice", Some("phone"))
        .unwrap();
    let server = builder(WsEngine::Tungstenite)
        .tok_ws_path(Some("/tok"))
        .static_tokens(tokens)
        .start()
        .await
        .unwrap();
    let url = server.tok_ws_url().expect("the tok WebSocket door");
    assert!(url.ends_with("/tok"), "{url}");
    let cfg = WsConfig::default();
    let connect = |auth: String| {
        let opts = ConnectOptions::default().with_header("authorization", auth);
        let (url, cfg) = (url.clone(), cfg.clone());
        async move {
            chinwag::ws::connect_with::<Tungstenite>(&url, &cfg, &opts)
                .await
                .unwrap()
                .split()
        }
    };
    let (mut ar, _aw) = connect("opaque-alice".into()).await;
    let (mut br, _bw) = connect(format!("Bearer {}", token("bob"))).await;
    let hub = server.hub();
    assert_eq!(
        hub.connections_of("alice")[0].device().to_string(),
        "alice/phone"
    );
    for (user, r) in [("alice", &mut ar), ("bob", &mut br)] {
        hub.send(
            user,
            Body::text(format!("hi {user}")),
            SendOptions::live_only(),
        )
        .await
        .unwrap();
        let f = within("a frame", r.read_frame()).await.unwrap().unwrap();
        assert_eq!(f, Frame::Binary(format!("hi {user}").into()));
    }
    server.shutdown(DEADLINE).await;
}

#[tokio::test]
async fn tok_setup_errors_are_clear() {
    // A frame limit over the hub's body limit (the hub would refuse such frames).
    let e = Server::builder()
        .tok_tcp(loopback())
        .anonymous(true)
        .tok_max_frame(64 * 1024 + 1)
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("body limit"), "{e}");
    // Over WebSocket, a frame limit over the WebSocket message limit.
    let e = Server::builder()
        .http(loopback())
        .anonymous(true)
        .limits(HubLimits::default().with_max_body_bytes(4 << 20))
        .tok_max_frame(4 << 20)
        .ws_config(WsConfig::default().with_max_message_size(1 << 20))
        .tok_ws_path(Some("/tok"))
        .start()
        .await
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("max_message_size"),
        "{e}"
    );
    // A path another door has.
    let e = Server::builder()
        .http(loopback())
        .anonymous(true)
        .tok_ws_path(Some("/ws"))
        .start()
        .await
        .unwrap_err();
    assert!(e.is_config() && e.to_string().contains("/ws"), "{e}");
    // Static tokens alone are a sign-in.
    let tokens = chinwag::hub::auth::StaticTokens::new()
        .with_token("t", "u", None)
        .unwrap();
    let s = Server::builder()
        .tok_tcp(loopback())
        .static_tokens(tokens)
        .start()
        .await
        .unwrap();
    s.shutdown(DEADLINE).await;
}
