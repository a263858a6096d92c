//! The loopback test suite shared by both engines (feature `test-suite`): every test is generic
//! over the engine and instantiated by [`engine_tests!`](crate::engine_tests) in each engine
//! crate's `tests/loopback.rs`.
//!
//! Hostile inputs are crafted with raw `TcpStream`s. No test asserts on timing: waits for
//! events are bounded by generous deadlines (`within`) so a bug fails instead of hanging.

#![allow(missing_docs, clippy::missing_panics_doc)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    ConnectOptions, Engine, OriginPolicy, WsAcceptor, WsConfig, WsConnection, connect,
    connect_with, tls_config_with_roots, upgrade,
};
use bytes::Bytes;
use chinwag_transport::{
    Acceptor, CloseCode, CloseReason, Frame, FrameRead, FrameWrite, Framing, Offer, PeerAddr,
    Transport, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fails the test instead of hanging when `fut` does not finish in 20 s.
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within 20 s"),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn bind<E: Engine>(cfg: WsConfig) -> (WsAcceptor<E>, String) {
    let acc = WsAcceptor::<E>::bind(loopback(), cfg).await.unwrap();
    let url = format!("ws://{}/", acc.local_addr());
    (acc, url)
}

/// A server that echoes every message and then finishes the close handshake.
async fn echo_server<E: Engine>(
    cfg: WsConfig,
) -> (String, tokio::task::JoinHandle<Result<(), TransportError>>) {
    let (mut acc, url) = bind::<E>(cfg).await;
    let task = tokio::spawn(async move {
        let conn = acc.accept().await?;
        assert_eq!(conn.framing(), Framing::Message);
        let (mut r, mut w) = conn.split();
        while let Some(f) = r.read_frame().await? {
            w.feed(f).await?;
            w.flush().await?;
        }
        Ok(())
    });
    (url, task)
}

pub async fn round_trip<E: Engine>() {
    let (url, server) = echo_server::<E>(WsConfig::default()).await;
    // Small fragments on the client so the 1 MiB messages are really fragmented.
    let ccfg = WsConfig::default().with_fragment_size(64 << 10);
    let (mut r, mut w) = within("connect", connect::<E>(&url, &ccfg))
        .await
        .unwrap()
        .split();
    let big: Bytes = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let big_text: Bytes = "héllo wörld ".repeat(90_000).into_bytes().into();
    let frames = vec![
        Frame::Text("hi".into()),
        Frame::Binary(Bytes::from_static(&[0, 1, 2, 255])),
        Frame::Text(Bytes::new()),
        Frame::Binary(big.clone()),
        Frame::Text(big_text.clone()),
    ];
    for f in &frames {
        w.send(f.clone()).await.unwrap();
        let got = within("echo", r.read_frame()).await.unwrap().unwrap();
        assert_eq!(&got, f);
    }
    // Coalescing: many frames fed, one flush; all arrive in order.
    for i in 0..100u32 {
        w.feed(Frame::Binary(Bytes::from(i.to_be_bytes().to_vec())))
            .await
            .unwrap();
    }
    w.flush().await.unwrap();
    for i in 0..100u32 {
        let got = within("batch", r.read_frame()).await.unwrap().unwrap();
        assert_eq!(got.payload().as_ref(), i.to_be_bytes());
    }
    within("close", w.close(CloseReason::normal()))
        .await
        .unwrap();
    assert_eq!(within("end", r.read_frame()).await.unwrap(), None);
    within("server", server).await.unwrap().unwrap();
}

/// Message limit exactly at and one over the boundary, with fragmented input.
pub async fn message_limit<E: Engine>() {
    let limit = 1000;
    let scfg = WsConfig::default().with_max_message_size(limit);
    let (mut acc, url) = bind::<E>(scfg).await;
    let ccfg = WsConfig::default().with_fragment_size(300);

    // Exactly at the limit: accepted.
    let (client, server) = dial::<E>(&mut acc, &url, &ccfg).await;
    let (mut sr, _sw) = server.split();
    let (mut cr, mut cw) = client.split();
    cw.send(Frame::Binary(vec![7u8; limit].into()))
        .await
        .unwrap();
    let got = within("at limit", sr.read_frame()).await.unwrap().unwrap();
    assert_eq!(got.len(), limit);

    // One over: the server's reader gets TooLarge and the client sees 1009.
    cw.send(Frame::Text("x".repeat(limit + 1).into()))
        .await
        .unwrap();
    match within("over limit", sr.read_frame()).await {
        Err(TransportError::TooLarge { size, limit: l, .. }) => {
            assert_eq!(l, limit as u64);
            assert!(size > limit as u64);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(within("client end", cr.read_frame()).await.unwrap(), None);
    assert_eq!(cr.close_reason().unwrap().code, CloseCode::TOO_BIG);
}

/// Frame limit exactly at and one over, unfragmented.
pub async fn frame_limit<E: Engine>() {
    let limit = 4096;
    let scfg = WsConfig::default().with_max_frame_size(limit);
    let (mut acc, url) = bind::<E>(scfg).await;
    let (client, server) = dial::<E>(&mut acc, &url, &WsConfig::default()).await;
    let (mut sr, _sw) = server.split();
    let (mut cr, mut cw) = client.split();
    cw.send(Frame::Binary(vec![1u8; limit].into()))
        .await
        .unwrap();
    assert_eq!(
        within("at", sr.read_frame()).await.unwrap().unwrap().len(),
        limit
    );
    cw.send(Frame::Binary(vec![1u8; limit + 1].into()))
        .await
        .unwrap();
    assert!(matches!(
        within("over", sr.read_frame()).await,
        Err(TransportError::TooLarge { .. })
    ));
    assert_eq!(within("client end", cr.read_frame()).await.unwrap(), None);
    assert_eq!(cr.close_reason().unwrap().code, CloseCode::TOO_BIG);
}

// Raw-socket helpers: what a hostile or minimal peer writes and reads byte by byte, for the
// suite and for engine crates' own tests (the engine under test does its framing itself).

/// Reads an HTTP head (a request's or a response's) byte by byte up to and including its blank
/// line, or up to the end of the stream; never past it, so frames that follow stay unread.
pub async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The status code of a response head (0 when it has none).
pub fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The value of the header `name` (case-insensitive) in an HTTP head, trimmed.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends a raw opening handshake to `addr` with `extra` header lines (each ending in `\r\n`);
/// returns the socket and the response head (see [`status`] and [`header`]).
pub async fn raw_handshake(addr: SocketAddr, extra: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    (tcp, head)
}

/// A raw server's `101 Switching Protocols` answer to the request head `request` (read with
/// [`read_head`]), its `Sec-WebSocket-Accept` computed by engine `E`.
pub fn switching_protocols<E: Engine>(request: &str) -> Vec<u8> {
    let key = header(request, "sec-websocket-key").expect("a Sec-WebSocket-Key");
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        E::accept_key(key.as_bytes())
    )
    .into_bytes()
}

/// A client frame as a raw peer writes it: FIN set, RSV1 when `rsv1` (a compressed message),
/// `opcode`, masked with the key 0 (so the payload stands as it is), any length.
pub fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        f.push(0x80 | 126);
        f.extend_from_slice(&len.to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Reads one frame of any length, masked (a client's: the payload is unmasked) or not: its
/// first header byte (FIN, RSV bits, opcode in the low four bits) and its payload. `None` when
/// the stream ends or fails first.
pub async fn read_raw_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => tcp.read_u16().await.ok()? as usize,
        127 => usize::try_from(tcp.read_u64().await.ok()?).ok()?,
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        tcp.read_exact(&mut mask).await.ok()?;
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some((head[0], payload))
}

/// Reads the next frame with [`read_raw_frame`], which must be a close frame (a control frame:
/// at most 125 bytes of payload), and returns its code (0 when it has none).
pub async fn read_close_code(tcp: &mut TcpStream) -> u16 {
    let (b0, payload) = read_raw_frame(tcp).await.expect("a close frame");
    assert_eq!(b0 & 0x0f, 0x8, "a close frame, not opcode {:#x}", b0 & 0x0f);
    assert!(
        payload.len() <= 125,
        "a control frame's payload: {}",
        payload.len()
    );
    match payload[..] {
        [a, b, ..] => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

pub async fn origin_policy<E: Engine>() {
    // An allow-list, no Origin refused.
    let policy = OriginPolicy::allow(["https://good.example"]).with_allow_missing(false);
    let (acc, url) = bind::<E>(WsConfig::default().with_origin(policy)).await;
    let addr = acc.local_addr();
    let acc = admit_all(acc);
    let (_, head) = within(
        "evil",
        raw_handshake(addr, "Origin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(status(&head), 403);
    let (_, head) = within("missing", raw_handshake(addr, "")).await;
    assert_eq!(status(&head), 403);
    let (_, head) = within(
        "good",
        raw_handshake(addr, "Origin: https://good.example\r\n"),
    )
    .await;
    assert_eq!(status(&head), 101);
    // Through the client API: refused is a handshake error, allowed connects.
    let opts = ConnectOptions::default().with_origin("https://evil.example");
    assert!(matches!(
        connect_with::<E>(&url, &WsConfig::default(), &opts).await,
        Err(TransportError::Handshake(_))
    ));
    let opts = ConnectOptions::default().with_origin("https://good.example");
    connect_with::<E>(&url, &WsConfig::default(), &opts)
        .await
        .unwrap();
    acc.abort();

    // The default: no Origin allowed, same-host allowed, other sites refused.
    let (acc, url) = bind::<E>(WsConfig::default()).await;
    let addr = acc.local_addr();
    let _acc = admit_all(acc);
    connect::<E>(&url, &WsConfig::default()).await.unwrap();
    let (_, head) = raw_handshake(addr, &format!("Origin: http://{addr}\r\n")).await;
    assert_eq!(status(&head), 101);
    let (_, head) = raw_handshake(addr, "Origin: http://other.example\r\n").await;
    assert_eq!(status(&head), 403);
}

/// Sends a request head for `path` with `host` as its `Host` (none when `None`), as a
/// WebSocket upgrade or a plain GET; returns the status and, for answers other than 101, the
/// body (read by its `Content-Length`).
async fn raw_request(
    addr: SocketAddr,
    path: &str,
    host: Option<&str>,
    upgrade: bool,
) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if let Some(h) = host {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    if upgrade {
        req.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await.to_ascii_lowercase();
    let status = status(&head);
    if status == 101 {
        return (status, String::new());
    }
    let len = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The Host policy at its boundary: under `HostPolicy::loopback()`, loopback names (with or
/// without a port) are upgraded and served; other names, names that merely start with
/// `localhost`, and a missing `Host` get `403` with the reason as the body — upgrades and
/// plain pages alike. The default policy refuses nothing.
pub async fn host_policy<E: Engine>() {
    let pages: crate::HttpFallback = Arc::new(|req| {
        (req.uri().path() == "/page").then(|| {
            http::Response::new(http_body_util::Full::new(Bytes::from_static(b"page body")))
        })
    });
    let cfg = WsConfig::default().with_host(crate::HostPolicy::loopback());
    let acc = WsAcceptor::<E>::bind_with_fallback(loopback(), Some("/ws"), cfg.clone(), pages)
        .await
        .unwrap();
    let addr = acc.local_addr();
    let _acc = admit_all(acc);
    for host in ["localhost:8080", "127.0.0.1:1", "localhost", "[::1]:80"] {
        let (status, _) = within(host, raw_request(addr, "/ws", Some(host), true)).await;
        assert_eq!(status, 101, "{host}");
        let (status, body) = within(host, raw_request(addr, "/page", Some(host), false)).await;
        assert_eq!((status, body.as_str()), (200, "page body"), "{host}");
    }
    for host in [Some("evil.example"), Some("localhost.evil.example"), None] {
        for (path, upgrade) in [("/ws", true), ("/page", false), ("/nowhere", false)] {
            let (status, body) = within("refused", raw_request(addr, path, host, upgrade)).await;
            assert_eq!(status, 403, "{host:?} {path}");
            assert!(body.contains("host refused"), "{host:?} {path}: {body:?}");
            if let Some(h) = host {
                assert!(body.contains(h), "the body names the host: {body:?}");
            }
        }
    }
    // The client sends the URL's host: a loopback URL passes.
    within(
        "client",
        connect::<E>(&format!("ws://{addr}/ws"), &WsConfig::default()),
    )
    .await
    .unwrap();

    // The default refuses no Host (today's behaviour).
    let (acc, _) = bind::<E>(WsConfig::default()).await;
    let addr = acc.local_addr();
    let _acc = admit_all(acc);
    for host in [Some("evil.example"), None] {
        let (status, _) = within("default", raw_request(addr, "/", host, true)).await;
        assert_eq!(status, 101, "{host:?}");
    }
}

/// chinwag's client sends an `Origin` derived from the URL by default, so a server whose policy
/// requires one (as gotalk's Go server does) lets it in; without it the server refuses (403).
pub async fn client_sends_an_origin_by_default<E: Engine>() {
    let policy = OriginPolicy::default().with_allow_missing(false);
    let (acc, url) = bind::<E>(WsConfig::default().with_origin(policy)).await;
    let _acc = admit_all(acc);
    within("default origin", connect::<E>(&url, &WsConfig::default()))
        .await
        .unwrap();
    let opts = ConnectOptions::default().without_origin();
    match within(
        "no origin",
        connect_with::<E>(&url, &WsConfig::default(), &opts),
    )
    .await
    {
        Err(TransportError::Handshake(m)) => assert!(m.contains("403"), "{m}"),
        other => panic!("expected 403, got {other:?}"),
    }
}

/// A client with [`ConnectOptions::local_ip`] connects from that address.
pub async fn client_local_ip<E: Engine>() {
    let (mut acc, url) = bind::<E>(WsConfig::default()).await;
    let second: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let opts = ConnectOptions::default().with_local_ip(second);
    let cfg = WsConfig::default();
    let (client, server) = within("dial from 127.0.0.2", async {
        tokio::join!(connect_with::<E>(&url, &cfg, &opts), acc.accept())
    })
    .await;
    let (_client, server) = (client.unwrap(), server.unwrap());
    match server.peer_addr() {
        PeerAddr::Ip(a) => assert_eq!(a.ip(), second),
        other => panic!("{other:?}"),
    }
}

pub async fn not_websocket<E: Engine>() {
    let acc = WsAcceptor::<E>::bind_path(loopback(), "/ws", WsConfig::default())
        .await
        .unwrap();
    let addr = acc.local_addr();
    // Wrong path: 404.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 12];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 404");
    // Right path, plain GET (a browser opening the endpoint as a page): 426 with a reason.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    within("426", tcp.read_to_end(&mut resp)).await.unwrap();
    let resp = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert!(resp.starts_with("http/1.1 426"), "{resp}");
    assert!(resp.contains("upgrade: websocket"), "{resp}");
    assert!(resp.contains("websocket endpoint"), "{resp}");
    // Half a handshake (Upgrade without Connection: upgrade): 400.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 400");
    // Right path, wrong version: 426.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await
    .unwrap();
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 426");
}

/// One port serves plain HTTP through the fallback and upgrades WebSockets on its path.
pub async fn http_fallback<E: Engine>() {
    let pages: crate::HttpFallback = Arc::new(|req| {
        (req.uri().path() == "/page").then(|| {
            http::Response::new(http_body_util::Full::new(Bytes::from_static(b"page body")))
        })
    });
    let mut acc =
        WsAcceptor::<E>::bind_with_fallback(loopback(), Some("/ws"), WsConfig::default(), pages)
            .await
            .unwrap();
    let addr = acc.local_addr();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    within("page", tcp.read_to_end(&mut resp)).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("page body"), "{text}");
    // Unknown pages are 404.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 12];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 404");
    // The WebSocket path still upgrades.
    let url = format!("ws://{addr}/ws");
    let client = tokio::spawn(async move {
        connect::<E>(&url, &WsConfig::default())
            .await
            .map(|c| c.peer_addr().clone())
    });
    let server = within("accept", acc.accept()).await.unwrap();
    assert_eq!(server.framing(), Framing::Message);
    within("connect", client).await.unwrap().unwrap();
}

/// An asynchronous handler under a prefix reads POST bodies (echoed), refuses one over its
/// limit with 413, and leaves the fallback and the upgrades their own requests.
pub async fn http_handler<E: Engine>() {
    let echo: crate::HttpHandler = Arc::new(|req| {
        Box::pin(async move {
            match crate::read_body(req.into_body(), 8, Duration::from_secs(5)).await {
                Ok(body) => http::Response::new(http_body_util::Full::new(body)),
                Err(e) => e.to_response(),
            }
        })
    });
    let pages: crate::HttpFallback = Arc::new(|req| {
        (req.uri().path() == "/page").then(|| {
            http::Response::new(http_body_util::Full::new(Bytes::from_static(b"page body")))
        })
    });
    let routes = crate::HttpRoutes::new()
        .handler("/echo/", echo)
        .fallback(Some(pages));
    let mut accs =
        WsAcceptor::<E>::bind_routes_with(loopback(), &["/ws"], WsConfig::default(), None, routes)
            .await
            .unwrap();
    let mut acc = accs.pop().unwrap();
    let addr = acc.local_addr();
    async fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut resp = Vec::new();
        within("answer", tcp.read_to_end(&mut resp)).await.unwrap();
        String::from_utf8_lossy(&resp).into_owned()
    }
    // At the limit: read whole and echoed.
    let text = ask(
        addr,
        b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n12345678",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n12345678"), "{text}");
    // One byte over (announced, and chunked without a length): 413.
    let text = ask(
        addr,
        b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\n123456789",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let text = ask(
        addr,
        b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // The fallback answers the rest; unknown paths are 404.
    let text = ask(
        addr,
        b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.ends_with("page body"), "{text}");
    let text = ask(
        addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 404"),
        "not under the prefix: {text}"
    );
    // The WebSocket path still upgrades.
    let url = format!("ws://{addr}/ws");
    let client =
        tokio::spawn(async move { connect::<E>(&url, &WsConfig::default()).await.map(|_| ()) });
    within("accept", acc.accept()).await.unwrap();
    within("connect", client).await.unwrap().unwrap();
}

/// One listener, two upgrade paths: each upgrade reaches the acceptor of its path, plain HTTP
/// the fallback, other paths 404; dropping one acceptor leaves the other serving.
pub async fn routes<E: Engine>() {
    let pages: crate::HttpFallback = Arc::new(|req| {
        (req.uri().path() == "/page").then(|| {
            http::Response::new(http_body_util::Full::new(Bytes::from_static(b"page body")))
        })
    });
    let mut accs = WsAcceptor::<E>::bind_routes(
        loopback(),
        &["/a", "/b"],
        WsConfig::default(),
        None,
        Some(pages),
    )
    .await
    .unwrap();
    assert!(
        WsAcceptor::<E>::bind_routes(loopback(), &["/x", "/x"], WsConfig::default(), None, None)
            .await
            .is_err(),
        "a path named twice is refused"
    );
    let mut b = accs.pop().unwrap();
    let mut a = accs.pop().unwrap();
    assert_eq!((a.path(), b.path()), (Some("/a"), Some("/b")));
    let addr = a.local_addr();
    assert_eq!(addr, b.local_addr());
    for (path, acc) in [("/b", &mut b), ("/a", &mut a)] {
        let url = format!("ws://{addr}{path}");
        let client = tokio::spawn(async move { connect::<E>(&url, &WsConfig::default()).await });
        let offer = within("offer", acc.offer()).await.unwrap();
        assert_eq!(offer.info().http().unwrap().uri.path(), path);
        within("admit", offer.admit(None)).await.unwrap();
        within("connect", client).await.unwrap().unwrap();
    }
    // Plain HTTP goes to the fallback; an upgrade elsewhere is 404.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    within("page", tcp.read_to_end(&mut resp)).await.unwrap();
    assert!(String::from_utf8_lossy(&resp).ends_with("page body"));
    let err = connect::<E>(&format!("ws://{addr}/c"), &WsConfig::default()).await;
    assert!(err.is_err(), "no route for /c");
    // The other route keeps serving without the first acceptor.
    drop(a);
    let url = format!("ws://{addr}/b");
    let client = tokio::spawn(async move { connect::<E>(&url, &WsConfig::default()).await });
    within("accept", b.accept()).await.unwrap();
    within("connect", client).await.unwrap().unwrap();
}

pub async fn close_codes<E: Engine>() {
    let (mut acc, url) = bind::<E>(WsConfig::default()).await;

    // Client closes with a code and reason; the server reads them.
    let (client, server) = dial::<E>(&mut acc, &url, &WsConfig::default()).await;
    let (mut sr, _sw) = server.split();
    let (mut cr, mut cw) = client.split();
    let (closed, read) = tokio::join!(
        cw.close(CloseReason::new(CloseCode(4000), "bye now")),
        sr.read_frame()
    );
    closed.unwrap();
    assert_eq!(read.unwrap(), None);
    assert_eq!(
        sr.close_reason(),
        Some(&CloseReason::new(CloseCode(4000), "bye now"))
    );
    assert_eq!(within("client end", cr.read_frame()).await.unwrap(), None);
    assert!(matches!(
        cw.send(Frame::Text("late".into())).await,
        Err(TransportError::Closed)
    ));

    // Server closes; the client reads the code and reason, and the server's close completes
    // because the client's reader answers.
    let (client, server) = dial::<E>(&mut acc, &url, &WsConfig::default()).await;
    let (mut sr, mut sw) = server.split();
    let (mut cr, _cw) = client.split();
    let (closed, read) = within("server close", async {
        tokio::join!(
            sw.close(CloseReason::new(CloseCode::GOING_AWAY, "shutting down")),
            cr.read_frame()
        )
    })
    .await;
    closed.unwrap();
    assert_eq!(read.unwrap(), None);
    assert_eq!(
        cr.close_reason(),
        Some(&CloseReason::new(CloseCode::GOING_AWAY, "shutting down"))
    );
    assert_eq!(within("server end", sr.read_frame()).await.unwrap(), None);

    // Close without anyone reading on our side: `close` reads the answer itself.
    let (client, server) = dial::<E>(&mut acc, &url, &WsConfig::default()).await;
    let (sr, sw) = server.split();
    let server = tokio::spawn(echo_halves(sr, sw));
    let (_cr, mut cw) = client.split();
    within("close alone", cw.close(CloseReason::normal()))
        .await
        .unwrap();
    within("server", server).await.unwrap().unwrap();

    // A peer that never answers our close: bounded by the close timeout.
    let cfg = WsConfig::default().with_close_timeout(Duration::from_millis(300));
    let (client, server) = dial::<E>(&mut acc, &url, &cfg).await;
    let (_sr, _sw) = server.split(); // never reads
    let (_cr, mut cw) = client.split();
    let res = within("unanswered close", cw.close(CloseReason::normal())).await;
    assert!(matches!(res, Err(TransportError::Timeout(_))), "{res:?}");
}

async fn echo_halves<R: FrameRead, W: FrameWrite>(
    mut r: R,
    mut w: W,
) -> Result<(), TransportError> {
    while let Some(f) = r.read_frame().await? {
        w.send(f).await?;
    }
    Ok(())
}

/// Keepalive: a client that answers pings stays connected; one that does not is dropped with
/// a timeout error.
pub async fn keepalive<E: Engine>() {
    let scfg = WsConfig::default()
        .with_ping_interval(Some(Duration::from_millis(20)))
        .with_pong_wait(Duration::from_secs(5));
    let (mut acc, url) = bind::<E>(scfg).await;
    let (client, server) = dial::<E>(
        &mut acc,
        &url,
        &WsConfig::default().with_ping_interval(None),
    )
    .await;
    let (mut sr, mut sw) = server.split();
    let (mut cr, mut cw) = client.split();
    // The client reads (and so answers pings) while the server pings every 20 ms; the server
    // gets ten echoes spread over the pings and never a timeout.
    let client_task = tokio::spawn(async move {
        while let Some(f) = cr.read_frame().await? {
            cw.send(f).await?;
        }
        Ok::<_, TransportError>(cr.close_reason().cloned())
    });
    for i in 0..10u8 {
        sw.send(Frame::Binary(vec![i].into())).await.unwrap();
        let f = within("echo under keepalive", sr.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.payload().as_ref(), [i]);
        // Let a few pings go by (an observation window, not an assertion on timing).
        let _ = tokio::time::timeout(Duration::from_millis(30), sr.read_frame()).await;
    }
    within("close", sw.close(CloseReason::normal()))
        .await
        .unwrap();
    within("client", client_task).await.unwrap().unwrap();

    // A client that never reads never answers: the server's reader times out.
    let scfg = WsConfig::default()
        .with_ping_interval(Some(Duration::from_millis(20)))
        .with_pong_wait(Duration::from_millis(100))
        .with_close_timeout(Duration::from_millis(200));
    let (mut acc, url) = bind::<E>(scfg).await;
    let (_client, server) = dial::<E>(
        &mut acc,
        &url,
        &WsConfig::default().with_ping_interval(None),
    )
    .await;
    let (mut sr, _sw) = server.split();
    let res = within("pong timeout", sr.read_frame()).await;
    assert!(matches!(res, Err(TransportError::Timeout(_))), "{res:?}");
}

/// Keepalive under paused time: with no client reading, the server's reader gives up after
/// ping interval + pong wait of virtual time.
pub async fn keepalive_paused<E: Engine>() {
    let scfg = WsConfig::default()
        .with_ping_interval(Some(Duration::from_secs(30)))
        .with_pong_wait(Duration::from_secs(10))
        .with_close_timeout(Duration::from_secs(1));
    let (mut acc, url) = bind::<E>(scfg).await;
    let (_client, server) = dial::<E>(
        &mut acc,
        &url,
        &WsConfig::default().with_ping_interval(None),
    )
    .await;
    let (mut sr, _sw) = server.split();
    tokio::time::pause();
    let res = sr.read_frame().await;
    assert!(matches!(res, Err(TransportError::Timeout(_))), "{res:?}");
}

/// Completes a raw WebSocket handshake as a client (the acceptor admitting it meanwhile);
/// returns the socket and the server's connection.
async fn raw_dial<E: Engine>(acc: &mut WsAcceptor<E>) -> (TcpStream, WsConnection<E>) {
    let addr = acc.local_addr();
    let ((tcp, head), server) = within("raw dial", async {
        tokio::join!(raw_handshake(addr, ""), acc.accept())
    })
    .await;
    assert_eq!(status(&head), 101);
    (tcp, server.unwrap())
}

/// Admits every connection `acc` offers, holding them open, until the task is aborted (for
/// tests about the handshake, whose server side does nothing).
pub fn admit_all<E: Engine>(mut acc: WsAcceptor<E>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(conn) = acc.accept().await {
            held.push(conn);
        }
    })
}

/// Dials `url` while the acceptor admits the connection (the handshake finishes only once it
/// is admitted); returns the client's and the server's connection.
pub async fn dial<E: Engine>(
    acc: &mut WsAcceptor<E>,
    url: &str,
    cfg: &WsConfig,
) -> (WsConnection<E>, WsConnection<E>) {
    let (client, server) = within("dial", async {
        tokio::join!(connect::<E>(url, cfg), acc.accept())
    })
    .await;
    (client.unwrap(), server.unwrap())
}

/// Keepalive seen on the wire: the server pings a silent peer, a pong re-arms it (another
/// ping follows), and when pongs stop the server closes with 1001 and its reader times out.
/// Pings from the peer are answered with the same payload.
pub async fn keepalive_on_the_wire<E: Engine>() {
    let scfg = WsConfig::default()
        .with_ping_interval(Some(Duration::from_millis(30)))
        // Generous, so a loaded machine cannot make our prompt pongs look late.
        .with_pong_wait(Duration::from_secs(2));
    let (mut acc, _) = bind::<E>(scfg).await;
    let (mut tcp, server) = raw_dial::<E>(&mut acc).await;
    let (mut sr, _sw) = server.split();
    // The reader's record of control frames (a session's idle timer reads it).
    let activity = sr
        .activity()
        .expect("WebSocket readers report control frames");
    assert!(activity.last_control_frame().is_none());
    let reader = tokio::spawn(async move { sr.read_frame().await });

    // Our ping is answered with the same payload.
    tcp.write_all(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .await
        .unwrap();
    let mut pings = 0;
    loop {
        let (b0, payload) = within("a frame", read_raw_frame(&mut tcp))
            .await
            .expect("a frame");
        match b0 & 0x0f {
            0xA => assert_eq!(payload, b"hi"),
            0x9 => {
                pings += 1;
                if pings == 3 {
                    break;
                }
                // An empty masked pong.
                tcp.write_all(&[0x8A, 0x80, 0, 0, 0, 0]).await.unwrap();
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    // Our ping and pongs were seen, although `read_frame` returned none of them.
    assert!(activity.last_control_frame().is_some());
    // We stop answering: the next frame is a close with 1001.
    assert_eq!(within("close", read_close_code(&mut tcp)).await, 1001);
    let res = within("reader", reader).await.unwrap();
    assert!(matches!(res, Err(TransportError::Timeout(_))), "{res:?}");
}

pub async fn huge_declared_frame<E: Engine>() {
    let (mut acc, _) = bind::<E>(WsConfig::default()).await;
    let (mut tcp, server) = raw_dial::<E>(&mut acc).await;
    let (mut sr, _sw) = server.split();
    // FIN + binary, masked, 64-bit length = 2 GiB, a mask key, and no payload.
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(2u64 << 30).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&hdr).await.unwrap();
    match within("2 GiB frame", sr.read_frame()).await {
        Err(TransportError::TooLarge { limit, .. }) => assert_eq!(limit, 16 << 20),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The peer gets a close frame with 1009, then the connection ends.
    assert_eq!(within("close frame", read_close_code(&mut tcp)).await, 1009);
    let mut rest = Vec::new();
    let _ = within("eof", tcp.read_to_end(&mut rest)).await;
}

/// RFC 6455 §5.1: a server closes the connection (1002) on an unmasked client frame, and a
/// client (1002) on a masked server frame.
pub async fn masking_is_enforced<E: Engine>() {
    // Server side: a raw client sends an unmasked text frame "hi".
    let (mut acc, _) = bind::<E>(WsConfig::default()).await;
    let (mut tcp, server) = raw_dial::<E>(&mut acc).await;
    let (mut sr, _sw) = server.split();
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    match within("unmasked frame", sr.read_frame()).await {
        Err(TransportError::Protocol(_)) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(within("close frame", read_close_code(&mut tcp)).await, 1002);

    // Client side: a raw server answers the handshake, then sends a masked frame.
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        tcp.write_all(&switching_protocols::<E>(&head))
            .await
            .unwrap();
        // FIN + text, masked (key 0), payload "hi".
        tcp.write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
            .await
            .unwrap();
        // The client's answer: a masked close frame with 1002.
        read_close_code(&mut tcp).await
    });
    let (mut cr, _cw) = within("connect", connect::<E>(&url, &WsConfig::default()))
        .await
        .unwrap()
        .split();
    match within("masked frame", cr.read_frame()).await {
        Err(TransportError::Protocol(_)) => {}
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert_eq!(within("client close", server).await.unwrap(), 1002);
}

/// The server process's resident memory in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Hostile peers cost bounded memory: 32 connections each declaring a 2 GiB frame and 32 each
/// sending 100 KiB of handshake headers are refused, and the process grows by far less than
/// one of those claims. Run alone in its own test binary (`tests/memory.rs`) so other tests'
/// allocations do not blur the figure.
pub async fn hostile_peers_cost_bounded_memory<E: Engine>() {
    let (mut acc, _) = bind::<E>(WsConfig::default()).await;
    let addr = acc.local_addr();
    // Warm up: one normal connection, so lazily built state is already counted.
    let (warm, server) = raw_dial::<E>(&mut acc).await;
    drop((warm, server));
    let before = rss_kib();
    let mut readers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (mut tcp, server) = raw_dial::<E>(&mut acc).await;
        let (sr, _sw) = server.split();
        let mut hdr = vec![0x82, 0x80 | 127];
        hdr.extend_from_slice(&(2u64 << 30).to_be_bytes());
        hdr.extend_from_slice(&[1, 2, 3, 4]);
        tcp.write_all(&hdr).await.unwrap();
        readers.push(sr);
        clients.push(tcp);
    }
    for sr in &mut readers {
        match within("2 GiB frame", sr.read_frame()).await {
            Err(TransportError::TooLarge { .. }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
    for _ in 0..32 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..1024 {
            req.extend_from_slice(format!("X-Filler-{i:04}: {}\r\n", "a".repeat(84)).as_bytes());
        }
        let _ = tcp.write_all(&req).await;
        clients.push(tcp);
    }
    // Every header flood is answered (431) or dropped by the server.
    for tcp in clients.iter_mut().skip(32) {
        let mut buf = [0u8; 1024];
        let _ = within("header flood refused", async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    let grown = rss_kib().saturating_sub(before);
    // The default limits are 16 MiB per message and 64 KiB of headers: honouring even one
    // 2 GiB claim would show here as gigabytes.
    eprintln!(
        "{}: RSS grew by {grown} KiB under 64 hostile peers",
        E::NAME
    );
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}

pub async fn vanishing_peer<E: Engine>() {
    let (mut acc, _) = bind::<E>(WsConfig::default()).await;
    let (mut tcp, server) = raw_dial::<E>(&mut acc).await;
    let (mut sr, _sw) = server.split();
    // Announce 100 payload bytes, send 10, vanish.
    let mut data = vec![0x82, 0x80 | 100, 9, 9, 9, 9];
    data.extend_from_slice(&[0u8; 10]);
    tcp.write_all(&data).await.unwrap();
    drop(tcp);
    let res = within("vanished peer", sr.read_frame()).await;
    assert!(res.is_err(), "{res:?}");
    // Reading again is an error too, not a hang or a panic.
    assert!(within("again", sr.read_frame()).await.is_err());
}

pub async fn huge_headers<E: Engine>() {
    let (acc, _) = bind::<E>(WsConfig::default()).await;
    let mut tcp = TcpStream::connect(acc.local_addr()).await.unwrap();
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1024 {
        req.extend_from_slice(format!("X-Filler-{i:04}: {}\r\n", "a".repeat(84)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert!(req.len() >= 100 << 10);
    // The server may stop reading (and reset) before we finish writing.
    let _ = tcp.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = within("431", async {
        let mut buf = [0u8; 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => resp.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&resp);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "unexpected response {text:?}"
    );
}

/// A client that opens a TCP connection and never finishes its request head is dropped after
/// the handshake timeout; a server that never answers makes `connect` time out.
pub async fn handshake_timeouts<E: Engine>() {
    let cfg = WsConfig::default().with_handshake_timeout(Duration::from_millis(200));
    let (acc, _) = bind::<E>(cfg.clone()).await;
    let mut tcp = TcpStream::connect(acc.local_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // hyper answers 408 or just closes; either way the connection ends.
    let _ = within("slow head", tcp.read_to_end(&mut rest)).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );

    let silent = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let res = within("silent server", connect::<E>(&url, &cfg)).await;
    assert!(matches!(res, Err(TransportError::Timeout(_))), "{res:?}");
    drop(silent);
}

/// A client trickling its request head one byte at a time is cut at the handshake timeout,
/// although bytes keep arriving.
pub async fn trickled_handshake_is_cut<E: Engine>() {
    let cfg = WsConfig::default().with_handshake_timeout(Duration::from_millis(300));
    let (acc, _) = bind::<E>(cfg).await;
    let mut tcp = TcpStream::connect(acc.local_addr()).await.unwrap();
    // Far longer than the timeout allows at this pace (pacing the attacker, not waiting).
    let head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}",
        "X-Slow: y\r\n".repeat(200)
    );
    let cut = within("trickled head cut", async {
        for b in head.bytes() {
            if tcp.write_all(&[b]).await.is_err() {
                return true;
            }
            // The server closing shows as EOF (or a 408) on our side.
            let mut one = [0u8; 64];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut one)).await
            {
                return true;
            }
        }
        false
    })
    .await;
    assert!(cut, "the whole trickled head was accepted");
}

/// The connection budget at its boundary: `max_connections` sockets are held; past it every
/// request gets `503` with `Retry-After` before any upgrade, and `connect` fails with that
/// status; a place freed by a close is reused.
pub async fn connection_budget<E: Engine>() {
    let cfg = WsConfig::default().with_max_connections(3);
    let (mut acc, url) = bind::<E>(cfg.clone()).await;
    let addr = acc.local_addr();
    let budget = acc.budget().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(conn) = acc.accept().await {
            if tx.send(conn).is_err() {
                break;
            }
        }
    });
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        clients.push(within("connect", connect::<E>(&url, &cfg)).await.unwrap());
        servers.push(within("accept", rx.recv()).await.unwrap());
    }
    assert_eq!(budget.open(), 3);
    for _ in 0..40 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut resp = Vec::new();
        within("503", tcp.read_to_end(&mut resp)).await.unwrap();
        let resp = String::from_utf8_lossy(&resp).to_ascii_lowercase();
        assert!(resp.starts_with("http/1.1 503"), "{resp}");
        assert!(resp.contains("retry-after: 5"), "{resp}");
    }
    let refused = within("refused connect", connect::<E>(&url, &cfg)).await;
    assert!(
        matches!(&refused, Err(TransportError::Handshake(m)) if m.contains("503")),
        "{refused:?}"
    );
    assert_eq!(budget.refused(), 41);
    assert!(rx.try_recv().is_err(), "no connection past the cap");
    assert_eq!(budget.open(), 3);
    // Close one connection (both ends): its place comes back and is reused.
    let (r, mut w) = clients.pop().unwrap().split();
    drop(servers.pop());
    let _ = within("close", w.close(CloseReason::normal())).await;
    drop((r, w));
    within("place freed", async {
        while budget.open() > 2 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let _again = within("connect again", connect::<E>(&url, &cfg))
        .await
        .unwrap();
    let _s = within("accept again", rx.recv()).await.unwrap();
    assert_eq!(budget.open(), 3);
}

/// Polls `cond` (yielding, with short pauses) until it holds, within the suite's deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// The pending share at its boundary: sockets still sending their request head are pending;
/// with a share of 2, a third one evicts the oldest (its socket is closed long before the
/// handshake timeout) and the pending count stays 2. A WebSocket connection taken with
/// `accept` (established) is never evicted.
pub async fn pending_share_evicts_a_stalled_handshake<E: Engine>() {
    let cfg = WsConfig::default().with_handshake_timeout(Duration::from_secs(60));
    let (mut acc, url) = bind::<E>(cfg.clone()).await;
    let addr = acc.local_addr();
    let budget = acc.budget().clone().with_pending_share(2);
    let (client, server) = dial::<E>(&mut acc, &url, &WsConfig::default()).await;
    assert_eq!(budget.pending(), 0, "accept establishes");
    let (sr, sw) = server.split();
    let echo = tokio::spawn(echo_halves(sr, sw));

    let mut stalled = Vec::new();
    for i in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(tcp);
        if i < 2 {
            eventually("pending", || budget.pending() == i + 1).await;
        }
    }
    // The oldest stalled socket is closed.
    let mut rest = Vec::new();
    let _ = within("evicted", stalled[0].read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no answer, just closed: {rest:?}");
    assert_eq!((budget.pending(), budget.evicted()), (2, 1));
    let mut buf = [0u8; 8];
    for tcp in &stalled[1..] {
        assert!(
            matches!(tcp.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the newer ones are still open"
        );
    }
    // The established connection still works.
    let (mut cr, mut cw) = client.split();
    cw.send(Frame::Text("still here".into())).await.unwrap();
    assert_eq!(
        within("echo", cr.read_frame()).await.unwrap(),
        Some(Frame::Text("still here".into()))
    );
    within("close", cw.close(CloseReason::normal()))
        .await
        .unwrap();
    within("echo end", echo).await.unwrap().unwrap();
}

/// A self-made CA and a server configuration for `localhost` signed by it.
fn test_pki() -> (
    rustls_pki_types::CertificateDer<'static>,
    rustls::ServerConfig,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.clone().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();

    let provider = chinwag_transport::tls::ring_provider();
    let server_tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.der().clone(), server_tls)
}

/// `wss://` through `WsAcceptor::bind_tls`.
pub async fn wss_acceptor<E: Engine>() {
    let (ca, mut server_tls) = test_pki();
    server_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut acc = WsAcceptor::<E>::bind_tls(
        loopback(),
        Some("/chat"),
        WsConfig::default(),
        Arc::new(server_tls),
    )
    .await
    .unwrap();
    let url = format!("wss://localhost:{}/chat", acc.local_addr().port());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let opts = ConnectOptions::default().with_tls(tls_config_with_roots(roots));
    let ccfg = WsConfig::default();
    let (client, server) = within("wss connect", async {
        tokio::join!(connect_with::<E>(&url, &ccfg, &opts), acc.accept())
    })
    .await;
    let (sr, sw) = server.unwrap().split();
    let echo = tokio::spawn(echo_halves(sr, sw));
    let (mut cr, mut cw) = client.unwrap().split();
    cw.send(Frame::Binary(vec![9; 70_000].into()))
        .await
        .unwrap();
    assert_eq!(
        within("wss echo", cr.read_frame())
            .await
            .unwrap()
            .unwrap()
            .len(),
        70_000
    );
    within("close", cw.close(CloseReason::normal()))
        .await
        .unwrap();
    within("echo end", echo).await.unwrap().unwrap();
    // A plain-TCP client cannot talk to it.
    let res = connect::<E>(
        &format!("ws://127.0.0.1:{}/chat", acc.local_addr().port()),
        &WsConfig::default().with_handshake_timeout(Duration::from_secs(2)),
    )
    .await;
    assert!(res.is_err());
}

/// `wss://` against a hyper server of our own that serves a page and upgrades `/ws` on the same
/// port, over TLS with a certificate from a self-made CA; the default roots refuse it.
pub async fn wss_and_shared_port<E: Engine>() {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let (ca, server_tls) = test_pki();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WsConnection<E>>(4);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        if req.uri().path() != "/ws" {
                            return Ok::<_, std::convert::Infallible>(http::Response::new(
                                Full::new(Bytes::from_static(b"a page")),
                            ));
                        }
                        match upgrade::<E, _>(&mut req, &WsConfig::default()) {
                            Ok((resp, fut)) => {
                                tokio::spawn(async move {
                                    if let Ok(c) = fut.await {
                                        let _ = tx.send(c).await;
                                    }
                                });
                                Ok(resp.map(|_| Full::new(Bytes::new())))
                            }
                            Err(e) => Ok(e.to_response()),
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });

    let url = format!("wss://localhost:{port}/ws");
    // Default roots: the self-made CA is not trusted.
    let res = within("untrusted", connect::<E>(&url, &WsConfig::default())).await;
    assert!(matches!(res, Err(TransportError::Handshake(_))), "{res:?}");
    // With the CA as a root: works.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let opts = ConnectOptions::default().with_tls(tls_config_with_roots(roots));
    let client = within(
        "trusted",
        connect_with::<E>(&url, &WsConfig::default(), &opts),
    )
    .await
    .unwrap();
    let server = within("accept", rx.recv()).await.unwrap();
    let (sr, sw) = server.split();
    let echo = tokio::spawn(echo_halves(sr, sw));
    let (mut cr, mut cw) = client.split();
    cw.send(Frame::Text("over tls".into())).await.unwrap();
    assert_eq!(
        within("tls echo", cr.read_frame()).await.unwrap(),
        Some(Frame::Text("over tls".into()))
    );
    within("close", cw.close(CloseReason::normal()))
        .await
        .unwrap();
    within("echo end", echo).await.unwrap().unwrap();

    // The page on the same port.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_config_with_roots(roots));
    let mut tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    let _ = within("page", tls.read_to_end(&mut page)).await;
    assert!(String::from_utf8_lossy(&page).ends_with("a page"));
}

/// Instantiates the suite for one engine.
#[macro_export]
macro_rules! engine_tests {
    ($engine:ty) => {
        #[tokio::test]
        async fn round_trip() {
            $crate::suite::round_trip::<$engine>().await
        }
        #[tokio::test]
        async fn message_limit() {
            $crate::suite::message_limit::<$engine>().await
        }
        #[tokio::test]
        async fn frame_limit() {
            $crate::suite::frame_limit::<$engine>().await
        }
        #[tokio::test]
        async fn origin_policy() {
            $crate::suite::origin_policy::<$engine>().await
        }
        #[tokio::test]
        async fn host_policy() {
            $crate::suite::host_policy::<$engine>().await
        }
        #[tokio::test]
        async fn client_sends_an_origin_by_default() {
            $crate::suite::client_sends_an_origin_by_default::<$engine>().await
        }
        #[tokio::test]
        async fn client_local_ip() {
            $crate::suite::client_local_ip::<$engine>().await
        }
        #[tokio::test]
        async fn not_websocket() {
            $crate::suite::not_websocket::<$engine>().await
        }
        #[tokio::test]
        async fn http_fallback() {
            $crate::suite::http_fallback::<$engine>().await
        }
        #[tokio::test]
        async fn http_handler() {
            $crate::suite::http_handler::<$engine>().await
        }
        #[tokio::test]
        async fn routes() {
            $crate::suite::routes::<$engine>().await
        }
        #[tokio::test]
        async fn close_codes() {
            $crate::suite::close_codes::<$engine>().await
        }
        #[tokio::test]
        async fn keepalive() {
            $crate::suite::keepalive::<$engine>().await
        }
        #[tokio::test]
        async fn keepalive_paused() {
            $crate::suite::keepalive_paused::<$engine>().await
        }
        #[tokio::test]
        async fn keepalive_on_the_wire() {
            $crate::suite::keepalive_on_the_wire::<$engine>().await
        }
        #[tokio::test]
        async fn huge_declared_frame() {
            $crate::suite::huge_declared_frame::<$engine>().await
        }
        #[tokio::test]
        async fn vanishing_peer() {
            $crate::suite::vanishing_peer::<$engine>().await
        }
        #[tokio::test]
        async fn huge_headers() {
            $crate::suite::huge_headers::<$engine>().await
        }
        #[tokio::test]
        async fn masking_is_enforced() {
            $crate::suite::masking_is_enforced::<$engine>().await
        }
        #[tokio::test]
        async fn trickled_handshake_is_cut() {
            $crate::suite::trickled_handshake_is_cut::<$engine>().await
        }
        #[tokio::test]
        async fn connection_budget() {
            $crate::suite::connection_budget::<$engine>().await
        }
        #[tokio::test]
        async fn pending_share_evicts_a_stalled_handshake() {
            $crate::suite::pending_share_evicts_a_stalled_handshake::<$engine>().await
        }
        #[tokio::test]
        async fn handshake_timeouts() {
            $crate::suite::handshake_timeouts::<$engine>().await
        }
        #[tokio::test]
        async fn wss_acceptor() {
            $crate::suite::wss_acceptor::<$engine>().await
        }
        #[tokio::test]
        async fn wss_and_shared_port() {
            $crate::suite::wss_and_shared_port::<$engine>().await
        }
    };
}
