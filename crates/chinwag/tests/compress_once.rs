//! Compress once through the hub: a room's publish on the yawc engine with permessage-deflate
//! (`server_no_context_takeover`) is compressed once for all members of the room door, whatever
//! their number (once per worker thread at most, when two writers reach it at the same moment),
//! and each member reads the message. Alone in its own test binary: the yawc
//! engine's counters are process-wide.
#![cfg(feature = "ws-yawc")]

use std::net::SocketAddr;
use std::time::Duration;

use chinwag::hub::auth::JwtIssuer;
use chinwag::hub::{Body, HubLimits};
use chinwag::transport::{Frame, FrameRead, Transport};
use chinwag::ws::yawc::{Yawc, deflate_stats};
use chinwag::ws::{ConnectOptions, DeflateConfig, OriginPolicy, WsConfig};
use chinwag::{Server, WsEngine};

const SECRET: &[u8] = b"the facade tests' HS256 secret, long enough";
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_publish_is_compressed_once_for_every_member() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let deflate = DeflateConfig::default().with_server_no_context_takeover(true);
    let server = Server::builder()
        .http(loopback)
        .engine(WsEngine::Yawc)
        .ws_config(
            WsConfig::default()
                .with_origin(OriginPolicy::any())
                .with_deflate(Some(deflate)),
        )
        .jwt_secret(SECRET)
        .limits(
            HubLimits::default()
                .with_connection_rate(None)
                .with_message_rate(None),
        )
        .start()
        .await
        .expect("server starts");
    let url = format!("{}?room=lobby", server.rooms_url().unwrap());
    let client_cfg = WsConfig::default().with_deflate(Some(DeflateConfig::default()));
    let mut members = Vec::new();
    for i in 0..4 {
        let token = JwtIssuer::hs256(SECRET).issue(&format!("m{i}"), None, DEADLINE * 10);
        let opts =
            ConnectOptions::default().with_header("authorization", format!("Bearer {token}"));
        let (r, w) = within(
            "member connects",
            chinwag::ws::connect_with::<Yawc>(&url, &client_cfg, &opts),
        )
        .await
        .expect("room door connect")
        .split();
        members.push((r, w));
    }
    // About 1 KiB of chat-like text, over the 256-byte threshold.
    let text: String = (0..90)
        .map(|i| ["hello ", "room ", "lunch ", "at ", "noon? "][i % 5])
        .collect::<String>()
        + &"ok, see you there ".repeat(20);
    assert!(text.len() > 700);
    let before = deflate_stats();
    server
        .hub()
        .publish("lobby", Body::text(text.clone()))
        .await
        .unwrap();
    for (r, _) in &mut members {
        assert_eq!(
            within("room message", r.read_frame()).await.unwrap(),
            Some(Frame::Text(text.clone().into()))
        );
    }
    // Compressing runs outside the cache's lock: connections whose writers reach the message at
    // the same moment on different worker threads (2 here) may each compress it once.
    let after = deflate_stats();
    let prepared = after.prepared - before.prepared;
    assert!((1..=2).contains(&prepared), "{before:?} -> {after:?}");
    assert_eq!(
        prepared + after.shared - before.shared,
        4,
        "every member's send either compressed or shared: {before:?} -> {after:?}"
    );
}
