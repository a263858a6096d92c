//! RPC semantics over in-process pipes (real sessions, real codec; no sockets needed for
//! these). Transports are covered in `transports.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chinwag_rpc::{
    Disconnect, HandlerError, Handlers, Peer, RetryWait, RpcConfig, RpcError, connect,
};
use chinwag_transport::pipe;
use tokio::sync::{Notify, mpsc};

/// Fails instead of hanging.
async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("did not finish within 30 s")
}

/// Polls `cond` until it holds, failing after a deadline (no fixed sleeps).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pair(server: Handlers, sc: RpcConfig, client: Handlers, cc: RpcConfig) -> (Peer, Peer) {
    let (a, b) = pipe::pair(&pipe::PipeConfig::default());
    let s = connect(a, Arc::new(server), sc);
    let c = connect(b, Arc::new(client), cc);
    (s, c)
}

fn echo_handlers() -> Handlers {
    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    h.handle("echo.json", |_p, v: serde_json::Value| async move {
        Ok::<_, HandlerError>(v)
    });
    h
}

#[tokio::test]
async fn calls_in_both_directions_on_one_connection() {
    let mut server = echo_handlers();
    // The server asks the client for its name while serving "hello".
    server.handle("hello", |peer: Peer, (): ()| async move {
        let name: String = peer
            .request("whoami", &())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(format!("hello, {name}"))
    });
    let mut client = Handlers::new();
    client.handle("whoami", |_p, (): ()| async {
        Ok::<_, HandlerError>("ada")
    });
    let (s, c) = pair(server, RpcConfig::default(), client, RpcConfig::client());
    let got: String = within(c.request("hello", &())).await.unwrap();
    assert_eq!(got, "hello, ada");
    // And the server calls the client directly.
    let name: String = within(s.request("whoami", &())).await.unwrap();
    assert_eq!(name, "ada");
    let raw = within(c.request_bytes("echo", &b"\x00\xffbytes"[..]))
        .await
        .unwrap();
    assert_eq!(&raw[..], b"\x00\xffbytes");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_complete_out_of_order() {
    let mut server = Handlers::new();
    // Each request waits a different (short) time, so answers come back out of order.
    server.handle_bytes("delayed", |_p, b: Bytes| async move {
        let d = u64::from(b.first().copied().unwrap_or(0) % 7);
        tokio::time::sleep(Duration::from_millis(d)).await;
        Ok::<_, HandlerError>(b)
    });
    let sc = RpcConfig::default().with_max_requests(2000);
    let (_s, c) = pair(server, sc, Handlers::new(), RpcConfig::client());
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            // Sizes from 1 byte to 64 KiB.
            let len = [1, 10, 100, 1000, 10_000, 65_536][i % 6];
            let mut payload = vec![(i % 251) as u8; len];
            payload[0] = (i % 256) as u8;
            let got = c.request_bytes("delayed", payload.clone()).await.unwrap();
            assert_eq!(&got[..], &payload[..], "request {i}");
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    assert_eq!(c.stats().pending, 0);
    assert_eq!(c.stats().requests_sent, 1000);
}

#[tokio::test]
async fn streams_interleave_with_single_requests() {
    let mut server = echo_handlers();
    server.handle_stream("stream.echo", |_p, mut input, mut out| async move {
        while let Some(chunk) = input.next().await {
            out.send(chunk).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    server.handle_stream("count", |_p, mut input, mut out| async move {
        let n: u32 = serde_json::from_slice(&input.next().await.unwrap_or_default())
            .map_err(|e| e.to_string())?;
        for k in 1..=n {
            out.send_json(&k).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    let (_s, c) = pair(
        server,
        RpcConfig::default(),
        Handlers::new(),
        RpcConfig::client(),
    );

    let (mut writer, mut results) = within(c.stream_request("stream.echo", "first"))
        .await
        .unwrap();
    assert_eq!(within(results.next()).await.unwrap().unwrap(), "first");
    for i in 0..20 {
        // A single request between every part of the stream.
        let v: u32 = within(c.request("echo.json", &i)).await.unwrap();
        assert_eq!(v, i);
        writer.write(format!("part {i}")).await.unwrap();
        let got = within(results.next()).await.unwrap().unwrap();
        assert_eq!(got, format!("part {i}").as_bytes());
    }
    writer.end().await.unwrap();
    assert!(
        within(results.next()).await.is_none(),
        "the result stream ends"
    );

    // A streamed result for a single request, read as a stream and collected.
    let mut counted = within(c.request_stream("count", "5")).await.unwrap();
    let mut seen = Vec::new();
    while let Some(chunk) = within(counted.next()).await {
        seen.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    let all = within(c.request_bytes("count", "3")).await.unwrap();
    assert_eq!(&all[..], b"123");
    // A single result read as a stream is one chunk.
    let mut one = within(c.request_stream("echo", "x")).await.unwrap();
    assert_eq!(within(one.next()).await.unwrap().unwrap(), "x");
    assert!(within(one.next()).await.is_none());
}

/// A server with one request slot: "hold" occupies it until `gate` is notified (counting its
/// entries in `entered`), "quick" answers at once. RetryResults ask for `wait` exactly.
fn one_slot_server(
    gate: Arc<Notify>,
    entered: Arc<AtomicUsize>,
    wait: Duration,
    client: RpcConfig,
) -> (Peer, Peer) {
    let mut server = Handlers::new();
    server.handle("hold", move |_p, (): ()| {
        let (gate, entered) = (gate.clone(), entered.clone());
        async move {
            entered.fetch_add(1, Ordering::SeqCst);
            gate.notified().await;
            Ok::<_, HandlerError>("held")
        }
    });
    server.handle("quick", |_p, (): ()| async {
        Ok::<_, HandlerError>("quick")
    });
    let sc = RpcConfig::default()
        .with_max_requests(1)
        .with_retry_wait(RetryWait::new(wait, wait).unwrap());
    pair(server, sc, Handlers::new(), client)
}

#[tokio::test]
async fn over_the_limit_requests_get_a_retry_result_and_are_retried() {
    let fixed = Duration::from_millis(5);
    // A client that does not retry sees the RetryResult as an error.
    let (gate, entered) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let no_retries = RpcConfig::client().with_max_retries(0);
    let (_s, c) = one_slot_server(gate.clone(), entered.clone(), fixed, no_retries);
    let held = tokio::spawn({
        let c = c.clone();
        async move { c.request::<_, String>("hold", &()).await }
    });
    until("hold entered", || entered.load(Ordering::SeqCst) == 1).await;
    match within(c.request::<_, String>("quick", &())).await {
        Err(RpcError::Overloaded {
            attempts: 1,
            wait,
            message: text,
            ..
        }) => {
            assert_eq!(wait, fixed);
            assert!(text.contains("too many"), "{text}");
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    gate.notify_one();
    assert_eq!(within(held).await.unwrap().unwrap(), "held");

    // With retries, the second request waits its turn and succeeds.
    let (gate, entered) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
    let retries = RpcConfig::client().with_max_retries(1000);
    let (s, c) = one_slot_server(gate.clone(), entered.clone(), fixed, retries);
    let held = tokio::spawn({
        let c = c.clone();
        async move { c.request::<_, String>("hold", &()).await }
    });
    until("hold entered", || entered.load(Ordering::SeqCst) == 1).await;
    let quick = tokio::spawn({
        let c = c.clone();
        async move { c.request::<_, String>("quick", &()).await }
    });
    until("a retry was sent", || s.stats().retries_sent >= 1).await;
    gate.notify_one();
    assert_eq!(within(held).await.unwrap().unwrap(), "held");
    assert_eq!(within(quick).await.unwrap().unwrap(), "quick");
    assert!(c.stats().retries_received >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_times_out_and_frees_its_slot() {
    let mut server = Handlers::new();
    server.handle("never", |_p, (): ()| async {
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    let cc = RpcConfig::client().with_request_timeout(Some(Duration::from_secs(2)));
    let (_s, c) = pair(server, RpcConfig::default(), Handlers::new(), cc);
    match c.request::<_, ()>("never", &()).await {
        Err(RpcError::Timeout(t)) => assert_eq!(t, Duration::from_secs(2)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(c.stats().pending, 0, "the timed-out request was forgotten");
    // Dropping a request future forgets it too.
    let fut = c.request::<_, ()>("never", &());
    let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
    assert_eq!(c.stats().pending, 0);
}

#[tokio::test]
async fn handler_errors_panics_and_unknown_operations_are_error_results() {
    let mut server = Handlers::new();
    server.handle("fail", |_p, text: String| async move { Err::<(), _>(text) });
    server.handle("panic", |_p, (): ()| async move {
        if true {
            panic!("boom");
        }
        Ok::<_, HandlerError>(())
    });
    server.handle("typed", |_p, n: u8| async move { Ok::<_, HandlerError>(n) });
    let (_s, c) = pair(
        server,
        RpcConfig::default(),
        Handlers::new(),
        RpcConfig::client(),
    );
    match within(c.request::<_, ()>("fail", "nope")).await {
        Err(RpcError::Remote { message }) => assert_eq!(message, "nope"),
        other => panic!("{other:?}"),
    }
    match within(c.request::<_, ()>("panic", &())).await {
        Err(RpcError::Remote { message: t }) => assert!(t.contains("panicked"), "{t}"),
        other => panic!("{other:?}"),
    }
    // The connection survived the panic.
    match within(c.request::<_, ()>("no.such.op", &())).await {
        Err(RpcError::Remote { message: t }) => assert_eq!(t, "unknown operation \"no.such.op\""),
        other => panic!("{other:?}"),
    }
    match within(c.request::<_, u8>("typed", "not a number")).await {
        Err(RpcError::Remote { message: t }) => assert!(t.contains("invalid JSON"), "{t}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(within(c.request::<_, u8>("typed", &7)).await.unwrap(), 7);
}

#[tokio::test]
async fn notifications_arrive_in_order_and_handlers_can_be_layered() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut server = Handlers::new();
    server.handle_notification("note", move |_p, payload: Bytes| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(payload);
        }
    });
    // "login" installs extra operations for this connection only.
    server.handle("login", |peer: Peer, (): ()| async move {
        let mut extra = Handlers::with_parent(peer.handlers());
        extra.handle("secret", |_p, (): ()| async { Ok::<_, HandlerError>(42) });
        peer.set_handlers(Arc::new(extra));
        Ok::<_, HandlerError>(())
    });
    let (_s, c) = pair(
        server,
        RpcConfig::default(),
        Handlers::new(),
        RpcConfig::client(),
    );
    for i in 0..100 {
        c.notify("note", &i).await.unwrap();
    }
    for i in 0..100 {
        let got = within(rx.recv()).await.unwrap();
        assert_eq!(got, i.to_string().as_bytes());
    }
    assert!(matches!(
        within(c.request::<_, u32>("secret", &())).await,
        Err(RpcError::Remote { .. })
    ));
    within(c.request::<_, ()>("login", &())).await.unwrap();
    assert_eq!(
        within(c.request::<_, u32>("secret", &())).await.unwrap(),
        42
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_idle_peers_alive_and_silence_times_out() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut server = echo_handlers();
    {
        let seen = seen.clone();
        server.on_heartbeat(move |_p, hb| {
            assert_eq!(hb.load, 0);
            seen.fetch_add(1, Ordering::SeqCst);
        });
    }
    // Both sides on defaults (client: 20 s heartbeats; server: 65 s idle timeout).
    let (s, c) = pair(
        server,
        RpcConfig::default(),
        Handlers::new(),
        RpcConfig::client(),
    );
    // Ten idle minutes pass (in paused time).
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        seen.load(Ordering::SeqCst) >= 25,
        "heartbeats: {}",
        seen.load(Ordering::SeqCst)
    );
    let v: u32 = c.request("echo.json", &1).await.unwrap();
    assert_eq!(v, 1);
    assert!(s.close_reason().is_none());
    assert!(s.last_heartbeat().is_some());

    // A client that sends no heartbeats is cut off by the server's idle timeout.
    let mut silent = RpcConfig::client();
    silent.session.heartbeat_interval = None;
    let (s, c) = pair(
        echo_handlers(),
        RpcConfig::default(),
        Handlers::new(),
        silent,
    );
    assert_eq!(s.closed().await, Disconnect::Timeout);
    assert!(matches!(
        c.request::<_, u32>("echo.json", &1).await,
        Err(RpcError::Closed(_))
    ));
}

#[tokio::test]
async fn pending_requests_fail_with_the_reason_when_the_connection_closes() {
    let mut server = Handlers::new();
    server.handle("never", |_p, (): ()| async {
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    let (s, c) = pair(
        server,
        RpcConfig::default(),
        Handlers::new(),
        RpcConfig::client(),
    );
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { c.request::<_, ()>("never", &()).await }
    });
    until("request in flight", || c.stats().pending == 1).await;
    s.close();
    match within(waiting).await.unwrap() {
        Err(RpcError::Closed(reason)) => assert_eq!(reason, Disconnect::Clean),
        other => panic!("{other:?}"),
    }
    assert_eq!(within(c.closed()).await, Disconnect::Clean);
    // New requests fail at once.
    assert!(matches!(
        c.request::<_, ()>("never", &()).await,
        Err(RpcError::Closed(_))
    ));
}

#[tokio::test]
async fn over_limit_stream_requests_are_refused_with_a_retry() {
    let gate = Arc::new(Notify::new());
    let mut server = Handlers::new();
    {
        let gate = gate.clone();
        server.handle_stream("slow", move |_p, mut input, _out| {
            let gate = gate.clone();
            async move {
                while input.next().await.is_some() {}
                gate.notified().await;
                Ok::<_, HandlerError>(())
            }
        });
    }
    let fixed = Duration::from_millis(1);
    let sc = RpcConfig::default()
        .with_max_streams(1)
        .with_retry_wait(RetryWait::new(fixed, fixed).unwrap());
    let (s, c) = pair(server, sc, Handlers::new(), RpcConfig::client());
    let (w1, mut r1) = within(c.stream_request("slow", "a")).await.unwrap();
    until("first stream served", || s.stats().requests_served == 1).await;
    let (_w2, mut r2) = within(c.stream_request("slow", "b")).await.unwrap();
    assert!(matches!(
        within(r2.next()).await,
        Some(Err(RpcError::Overloaded { .. }))
    ));
    w1.end().await.unwrap();
    gate.notify_one();
    assert!(within(r1.next()).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_carry_the_share_of_request_slots_in_use() {
    let gate = Arc::new(Notify::new());
    let mut server = Handlers::new();
    {
        let gate = gate.clone();
        server.handle("hold", move |_p, (): ()| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok::<_, HandlerError>(())
            }
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut client = Handlers::new();
    client.on_heartbeat(move |_p, hb| {
        let _ = tx.send(hb.load);
    });
    let sc = RpcConfig::default().with_max_requests(2);
    let (s, c) = pair(server, sc, client, RpcConfig::client());
    let held = tokio::spawn({
        let c = c.clone();
        async move { c.request::<_, ()>("hold", &()).await }
    });
    until("request held", || s.stats().requests_served == 1).await;
    assert_eq!(s.load(), 0x7fff);
    // The next heartbeat the server sends (within 20 s of paused time) says half loaded.
    loop {
        let load = within(rx.recv()).await.unwrap();
        if load == 0x7fff {
            break;
        }
        assert_eq!(load, 0, "before the request was held");
    }
    gate.notify_one();
    within(held).await.unwrap().unwrap();
}

/// `closed` can resolve while the peer's last notification still waits for its handler;
/// `notifications_drained` resolves only once it has been handled.
#[tokio::test]
async fn notifications_drained_waits_for_the_last_notification() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let mut client = Handlers::new();
    {
        let (gate, seen) = (gate.clone(), seen.clone());
        client.handle_notification("bye", move |_p, _payload| {
            let (gate, seen) = (gate.clone(), seen.clone());
            async move {
                gate.acquire().await.unwrap().forget();
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let (server, client) = pair(
        Handlers::new(),
        RpcConfig::default(),
        client,
        RpcConfig::client(),
    );
    server.notify("bye", &"goodbye").await.unwrap();
    server.close();
    within(client.closed()).await;
    // The bye is queued or held at the gate: polled now, drained is not ready (a zero
    // timeout polls the future once).
    let early = tokio::time::timeout(Duration::ZERO, client.notifications_drained()).await;
    assert!(early.is_err(), "resolved before the bye was handled");
    let drained = tokio::spawn({
        let client = client.clone();
        async move { client.notifications_drained().await }
    });
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    gate.add_permits(1);
    assert_eq!(within(drained).await.unwrap(), Disconnect::Clean);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
