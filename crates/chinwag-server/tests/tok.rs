//! tok clients unchanged: the real `chinwag-server` binary under the "tok profile" of
//! `docs/server.md` (its TOML block, read from the page, so the page cannot drift), driven by a
//! client written here from tok's wire format — over TCP a `u32` big-endian length and that many
//! bytes per frame, the first frame the token; over WebSocket one binary message per frame, the
//! token in the `Authorization` header as tok's example client sends it. Each signs in with a
//! static token, receives a direct message another (chat) client sends to its user, receives the
//! server's pings at the configured period, gets a 4 MiB frame accepted and 4 MiB + 1 refused;
//! a wrong token is refused. Every wait is for an event under a deadline; nothing sleeps.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use chinwag::rpc::{Handlers, Peer, RpcConfig};
use chinwag::transport::{Frame, FrameRead, FrameWrite, Transport};
use chinwag::ws::tungstenite::Tungstenite;
use chinwag::ws::{ConnectOptions, WsConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::*;

/// tok's frame limit (`TCPMaxPackLen`).
const TOK_MAX: usize = 4 * 1024 * 1024;
/// The profile's static tokens.
const ALICE: &str = "opaque-token-of-alice";

/// The TOML block of docs/server.md's tok profile.
fn profile() -> String {
    let page = chinwag_server::config::REFERENCE;
    let start = page
        .find("```toml\n# chinwag.toml: tok clients unchanged")
        .expect("the tok profile's TOML block in docs/server.md");
    let block = &page[start + "```toml\n".len()..];
    block[..block.find("```").expect("the block ends")].to_owned()
}

/// The server under the tok profile, with a short ping period (the profile says tok's 30 s).
fn tok_server(dir: &Path) -> Command {
    let file = dir.join("tok.toml");
    std::fs::write(&file, profile()).unwrap();
    let mut c = command();
    c.current_dir(dir).env_remove("CHINWAG_CONFIG").args([
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        "--tok-listen",
        "127.0.0.1:0",
        "--tok-ping-interval",
        "100ms",
    ]);
    c
}

// ---- tok's wire format over TCP ---------------------------------------------------------------

async fn write_frame(s: &mut TcpStream, body: &[u8]) {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(body);
    s.write_all(&b).await.unwrap();
}

/// The next frame; `None` at the end of the stream (or a reset).
async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    tokio::time::timeout(DEADLINE, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).await.ok()?;
        Some(b)
    })
    .await
    .expect("a frame or the end within the deadline")
}

/// Frames until one that is not the ping; `None` at the end of the stream.
async fn read_past_pings(s: &mut TcpStream) -> Option<Vec<u8>> {
    loop {
        match read_frame(s).await {
            Some(f) if f == b"ping" => continue,
            other => return other,
        }
    }
}

// ---- a chat client that sends the direct messages -----------------------------------------------

async fn chat(addr: SocketAddr, token: &str) -> Peer {
    let t = chinwag::transport::tcp::connect(addr, &Default::default())
        .await
        .unwrap();
    let peer = chinwag::rpc::connect(t, Arc::new(Handlers::new()), RpcConfig::client());
    let _: Value = peer
        .request("auth", &json!({ "token": token }))
        .await
        .expect("auth");
    peer
}

fn dev_token(http: SocketAddr, user: &str) -> String {
    let (status, body) = get(http, &format!("/dev/token?user={user}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// A direct message (kept in the offline queue until delivered: whether the recipient's
/// sign-in or the message comes first, it arrives).
async fn send(peer: &Peer, to: &str, body: &str) {
    let _: Value = peer
        .request("send", &json!({ "to": to, "body": body }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_client_unchanged_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(tok_server(dir.path()));
    let tok = s.tok_tcp.expect("the tok door");
    let carol = chat(s.chat_tcp, &dev_token(s.http, "carol")).await;

    // A wrong token: the connection is closed.
    let mut w = TcpStream::connect(tok).await.unwrap();
    write_frame(&mut w, b"opaque-token-of-mallory").await;
    assert_eq!(read_past_pings(&mut w).await, None, "refused: closed");

    // The static token signs alice in.
    let mut a = TcpStream::connect(tok).await.unwrap();
    write_frame(&mut a, ALICE.as_bytes()).await;
    // The pings come, at the configured period, on a connection that sends nothing.
    for _ in 0..3 {
        assert_eq!(read_frame(&mut a).await.as_deref(), Some(&b"ping"[..]));
    }
    // A direct message to alice.
    send(&carol, "alice", "hello from carol").await;
    assert_eq!(
        read_past_pings(&mut a).await.as_deref(),
        Some(&b"hello from carol"[..])
    );
    // A 4 MiB frame is accepted: the connection goes on.
    write_frame(&mut a, &vec![b'x'; TOK_MAX]).await;
    send(&carol, "alice", "after 4 MiB").await;
    assert_eq!(
        read_past_pings(&mut a).await.as_deref(),
        Some(&b"after 4 MiB"[..])
    );
    // 4 MiB + 1 is refused: the connection ends (as tok's own reader does). The server closes
    // on the length prefix, so writing the rest may fail.
    let mut over = ((TOK_MAX + 1) as u32).to_be_bytes().to_vec();
    over.resize(4 + TOK_MAX + 1, b'x');
    let _ = a.write_all(&over).await;
    assert_eq!(read_past_pings(&mut a).await, None, "closed");
    drop(carol);
    assert_eq!(s.terminate().code(), Some(0));
}

// ---- one frame per WebSocket message ------------------------------------------------------------

/// The status of a WebSocket upgrade of `url` with `headers`, sent by hand.
fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    let rest = url.strip_prefix("ws://").unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

type Ws = (
    <chinwag::ws::WsConnection<Tungstenite> as Transport>::Reader,
    <chinwag::ws::WsConnection<Tungstenite> as Transport>::Writer,
);

/// What tok's example client does: the token as the `Authorization` header.
async fn ws_client(url: &str, token: &str) -> Ws {
    let cfg = WsConfig::default()
        .with_max_message_size(2 * TOK_MAX)
        .with_max_frame_size(2 * TOK_MAX);
    let opts = ConnectOptions::default().with_header("authorization", token);
    chinwag::ws::connect_with::<Tungstenite>(url, &cfg, &opts)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .split()
}

/// The next message that is not the ping; `None` once closed.
async fn next_past_pings<R: FrameRead>(r: &mut R) -> Option<Bytes> {
    loop {
        let f = tokio::time::timeout(DEADLINE, r.read_frame())
            .await
            .expect("a message or the close within the deadline")
            .ok()
            .flatten()?;
        match f {
            Frame::Binary(b) if &b[..] == b"ping" => continue,
            Frame::Binary(b) => return Some(b),
            Frame::Text(t) => panic!("binary messages only, got text {t:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_client_unchanged_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(tok_server(dir.path()));
    let url = s.tok_ws.clone().expect("the tok WebSocket door");
    assert!(url.ends_with("/tok"), "{url}");
    let carol = chat(s.chat_tcp, &dev_token(s.http, "carol")).await;

    // A wrong token, and none: refused before the upgrade.
    assert_eq!(
        upgrade_status(&url, &[("Authorization", "opaque-token-of-mallory")]),
        401
    );
    assert_eq!(upgrade_status(&url, &[]), 401);

    let (mut r, mut w) = ws_client(&url, ALICE).await;
    // The pings: one binary message each, at the configured period.
    for _ in 0..3 {
        let f = tokio::time::timeout(DEADLINE, r.read_frame())
            .await
            .expect("a ping within the deadline")
            .unwrap()
            .expect("open");
        assert_eq!(f, Frame::Binary(Bytes::from_static(b"ping")));
    }
    send(&carol, "alice", "hello over ws").await;
    assert_eq!(
        next_past_pings(&mut r).await.as_deref(),
        Some(&b"hello over ws"[..])
    );
    // A 4 MiB message is accepted: the connection goes on.
    w.send(Frame::Binary(Bytes::from(vec![b'x'; TOK_MAX])))
        .await
        .unwrap();
    send(&carol, "alice", "after 4 MiB").await;
    assert_eq!(
        next_past_pings(&mut r).await.as_deref(),
        Some(&b"after 4 MiB"[..])
    );
    // 4 MiB + 1 is refused: closed with 1009 (sending the rest may fail once it is).
    let _ = w
        .send(Frame::Binary(Bytes::from(vec![b'x'; TOK_MAX + 1])))
        .await;
    assert_eq!(next_past_pings(&mut r).await, None);
    assert_eq!(r.close_reason().map(|c| c.code.0), Some(1009));
    drop(carol);
    assert_eq!(s.terminate().code(), Some(0));
}
