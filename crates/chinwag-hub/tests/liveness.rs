//! Liveness is one rule on every door: a connection that answers pings (or sends anything) is
//! alive; idle closing is for peers that answer nothing. Each test runs ten minutes of the
//! hub's clock, paused (Tokio's auto-advance moves it from timer to timer, with the sockets'
//! traffic in between): a listen-only member stays through many idle timeouts.

mod common;

use std::time::Duration;

use bytes::Bytes;
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::doors::tok::TokDoor;
use chinwag_hub::{Body, SendOptions};
use chinwag_rpc::RpcConfig;
use chinwag_transport::tcp::TcpAcceptor;
use chinwag_transport::{Frame, FrameRead, Transport};
use chinwag_ws::{ConnectOptions, WsAcceptor};
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ten minutes: two idle timeouts of the room door (300 s), nine of the chat door (65 s).
const QUIET: Duration = Duration::from_secs(600);

#[tokio::test(start_paused = true)]
async fn a_listen_only_room_member_that_answers_pings_stays() {
    let hub = hub(config(), None);
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=dash", acc.local_addr());
    let door = RoomsDoor::new(hub.clone()).serve(acc);
    let opts = ConnectOptions::default()
        .with_header("authorization", format!("Bearer {}", token("dash", "tv")));
    // The client sends nothing of its own (no pings either); it only reads, which answers the
    // server's pings.
    let client_cfg = ws_config().with_ping_interval(None);
    let (mut r, _w) = chinwag_ws::connect_with::<Tungstenite>(&url, &client_cfg, &opts)
        .await
        .unwrap()
        .split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(Some(f)) = r.read_frame().await {
            got.push(f);
        }
        (got, r.close_reason().cloned())
    });
    tokio::time::sleep(QUIET).await;
    assert_eq!(hub.connections_of("dash").len(), 1, "still a member");
    hub.publish("dash", Body::text("still there?"))
        .await
        .unwrap();
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    let (got, reason) = reader.await.unwrap();
    assert_eq!(got, [Frame::Text(Bytes::from("still there?"))]);
    assert_eq!(
        reason.map(|r| r.code.0),
        Some(1001),
        "closed by the shutdown, not idleness"
    );
}

#[tokio::test(start_paused = true)]
async fn a_room_member_that_answers_nothing_is_closed_as_idle() {
    let hub = hub(config(), None);
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/ws?room=dash", acc.local_addr());
    let door = RoomsDoor::new(hub.clone()).serve(acc);
    // Upgraded by hand, then never read: no pong ever comes back.
    let a = raw_request(
        &url,
        &[bearer_header(&token("ghost", "d"))],
        RawOpts::default(),
    )
    .await;
    assert_eq!(a.status, 101, "{}", a.head);
    until(&hub, "the ghost is a member", |h| {
        h.connections_of("ghost").len() == 1
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert!(
        hub.connections_of("ghost").is_empty(),
        "closed for answering nothing"
    );
    drop(a);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(start_paused = true)]
async fn a_listen_only_chat_client_that_answers_pings_stays() {
    let hub = hub(config(), None);
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    // A chat client that sends no heartbeats and no pings of its own: it signs in, then only
    // reads (answering the server's WebSocket pings).
    let mut rpc = RpcConfig::client();
    rpc.session.heartbeat_interval = None;
    let opts = ConnectOptions::default()
        .with_header("authorization", format!("Bearer {}", token("quiet", "d")));
    let t =
        chinwag_ws::connect_with::<Tungstenite>(&url, &ws_config().with_ping_interval(None), &opts)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut h = chinwag_rpc::Handlers::new();
    h.handle_notification("message", move |_peer, payload: Bytes| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(payload);
        }
    });
    let peer = chinwag_rpc::connect(t, std::sync::Arc::new(h), rpc);
    tokio::time::sleep(QUIET).await;
    assert!(peer.close_reason().is_none(), "still open");
    hub.send("quiet", Body::text("ping?"), SendOptions::live_only())
        .await
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
    assert_eq!(m["body"], "ping?");
    let me: serde_json::Value = peer.request("whoami", &json!({})).await.unwrap();
    assert_eq!(me["user"], "quiet");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(start_paused = true)]
async fn a_tok_client_that_sends_nothing_after_its_token_stays() {
    let hub = hub(config(), None);
    let tcp = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let door = TokDoor::new(hub.clone()).serve(tcp);
    let mut s = tokio::net::TcpStream::connect(addr_of(&door))
        .await
        .unwrap();
    let t = token("tokker", "d");
    let mut frame = (t.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(t.as_bytes());
    s.write_all(&frame).await.unwrap();
    until(&hub, "signed on", |h| h.connections_of("tokker").len() == 1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        hub.connections_of("tokker").len(),
        1,
        "a quiet tok client is not idle"
    );
    hub.send("tokker", Body::text("hello"), SendOptions::live_only())
        .await
        .unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(body, b"hello");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}
