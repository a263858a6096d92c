//! The load of the permessage-deflate rows (issue 20) against a real hub (`chinwag::hub`, JWT
//! sign-in, the raw room door on yawc) in this process: chat-like text fanned out to members
//! that offer deflate, and the bytes the server's sockets sent per delivery, which show
//! whether deflate was negotiated. Options that do not fit a run are refused with an error. No
//! timing is asserted.

use std::sync::Arc;

use chinwag::hub::auth::{JwtAuthenticator, JwtConfig, JwtKey};
use chinwag::hub::doors::DoorHandle;
use chinwag::hub::doors::rooms::RoomsDoor;
use chinwag::hub::{Hub, HubConfig, HubLimits};
use chinwag::queue::{MemoryQueue, QueueConfig};
use chinwag::ws::yawc::Yawc;
use chinwag::ws::{DeflateConfig, OriginPolicy, WsAcceptor, WsConfig};
use chinwag_load::hub::Mode;
use chinwag_load::load::{self, LoadSpec, RunOptions};
use chinwag_load::payload::{MIN_CHAT_PAYLOAD, Payload};
use chinwag_load::{ClientEngine, RunReport};

const SECRET: &str = "chinwag-load deflate test secret";

/// The hub's room door on yawc, accepting deflate (no context takeover) when `deflate`.
async fn room_door(deflate: bool) -> (Hub, DoorHandle, String) {
    let limits = HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None);
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET.as_bytes())));
    let hub = Hub::builder()
        .config(HubConfig::default().with_limits(limits))
        .authenticator(Arc::new(jwt))
        .queue(Arc::new(MemoryQueue::new(QueueConfig::default())))
        .build();
    let mut cfg = WsConfig::default().with_origin(OriginPolicy::any());
    if deflate {
        cfg = cfg.with_deflate(Some(
            DeflateConfig::default()
                .with_server_no_context_takeover(true)
                .with_client_no_context_takeover(true),
        ));
    }
    let acc = WsAcceptor::<Yawc>::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let url = format!("ws://{}/ws?room=bench", acc.local_addr());
    let door = RoomsDoor::new(hub.clone()).serve(acc);
    (hub, door, url)
}

fn spec(target: String) -> LoadSpec {
    LoadSpec {
        target,
        mode: Mode::Fanout,
        conns: 20,
        size: 1024,
        rate: Some(50.0),
        warmup: 0.2,
        duration: 0.6,
        source_ips: 2,
        client_engine: ClientEngine::Yawc,
        deflate: true,
        payload: Payload::Chat,
        wire_bytes: true,
        secret: Some(SECRET.into()),
        ..LoadSpec::default()
    }
}

fn opts() -> RunOptions {
    RunOptions {
        // This process serves, so its own /proc entry stands in for the server's.
        server_pid: Some(std::process::id()),
        worker_exe: Some(env!("CARGO_BIN_EXE_chinwag-load").into()),
        ..RunOptions::default()
    }
}

/// Runs a chat fan-out against a door and returns the bytes its sockets sent per delivery.
async fn bytes_per_delivery(server_deflate: bool) -> f64 {
    let (_hub, _door, url) = room_door(server_deflate).await;
    let report: RunReport = load::run(&spec(url), &opts()).await.unwrap();
    assert_eq!(report.errors, 0, "errors: {:?}", report.first_errors);
    assert_eq!(report.connected, 20);
    let hub = report.hub.expect("hub figures");
    assert!(hub.publishes > 0 && hub.delivered > 0, "{hub:?}");
    assert_eq!(hub.duplicates, 0);
    let wire = hub.wire_bytes.expect("wire bytes counted");
    wire as f64 / hub.delivered as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_fanout_goes_compressed_when_the_server_agrees_to_deflate() {
    // Without deflate a delivery is the 1 024-byte text and its frame header; with it the text
    // compresses about 2-3x (members and the publisher offer deflate either way).
    let plain = bytes_per_delivery(false).await;
    assert!(
        plain > 900.0,
        "without deflate: {plain:.0} bytes per delivery"
    );
    let deflated = bytes_per_delivery(true).await;
    eprintln!("bytes per delivery: {plain:.0} without deflate, {deflated:.0} with");
    assert!(
        deflated < 0.7 * plain,
        "with deflate: {deflated:.0} bytes per delivery, without: {plain:.0}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smallest_chat_payload_is_delivered() {
    let (_hub, _door, url) = room_door(true).await;
    let s = LoadSpec {
        size: MIN_CHAT_PAYLOAD,
        conns: 4,
        ..spec(url)
    };
    let report = load::run(&s, &opts()).await.unwrap();
    assert_eq!(report.errors, 0, "errors: {:?}", report.first_errors);
    assert!(report.hub.expect("hub figures").delivered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_that_do_not_fit_the_run_are_refused() {
    let target = "ws://127.0.0.1:9/ws?room=bench".to_owned();
    let refused = |s: LoadSpec| async move {
        load::run(&s, &opts())
            .await
            .expect_err("refused before connecting")
            .to_string()
    };
    let e = refused(LoadSpec {
        client_engine: ClientEngine::Fastwebsockets,
        ..spec(target.clone())
    })
    .await;
    assert!(e.contains("--client-engine yawc"), "{e}");
    let e = refused(LoadSpec {
        mode: Mode::Send,
        deflate: false,
        payload: Payload::Bytes,
        wire_bytes: true,
        target: "gotalk+ws://127.0.0.1:9/gotalk/".into(),
        ..spec(target.clone())
    })
    .await;
    assert!(e.contains("--wire-bytes is for fan-out runs"), "{e}");
    // One byte under the smallest chat payload is refused; the smallest is accepted (below).
    let e = refused(LoadSpec {
        size: MIN_CHAT_PAYLOAD - 1,
        ..spec(target.clone())
    })
    .await;
    assert!(e.contains(&format!("--size {MIN_CHAT_PAYLOAD}")), "{e}");
    // Echo runs take none of them.
    let e = refused(LoadSpec {
        mode: Mode::Echo,
        target: "ws://127.0.0.1:9/".into(),
        ..spec(target)
    })
    .await;
    assert!(e.contains("are for fan-out runs"), "{e}");
}
