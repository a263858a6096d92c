//! The event proxy against a backend of the test's own (a small hyper HTTP server on
//! 127.0.0.1:0 that records every request and answers as each test scripts): connect accepted
//! and refused, an opaque binary token on the tok door, app messages and tok frames answered in
//! order, join refused and redirected, publish changed and refused, disconnect told (and
//! retried, then dropped), the backend down or too slow (each event's failure policy), the
//! in-flight bound. Real sockets; no sleeps (every wait is bounded by `DEADLINE`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chinwag::hub::{HubLimits, SignOn};
use chinwag::proxy::{EventProxy, FailurePolicy, ProxyConfig};
use chinwag::rpc::{Handlers, Peer, RpcConfig};
use chinwag::{Server, ServerBuilder};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"))
}

// ---- the test backend -------------------------------------------------------------------------

/// How the backend answers one request: status and JSON (or it may wait first).
type Script = Arc<dyn Fn(&str, Value) -> BoxFuture<'static, (u16, Value)> + Send + Sync>;

/// A backend on loopback: every request (path, JSON) comes out of `seen`.
struct Backend {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Backend {
    async fn start(script: Script) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (tx, script) = (tx.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (tx, script) = (tx.clone(), script.clone());
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let v: Value =
                                    serde_json::from_slice(&body).expect("the proxy posts JSON");
                                let _ = tx.send((path.clone(), v.clone()));
                                let (status, answer) = script(&path, v).await;
                                let resp = hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Backend { addr, seen }
    }

    fn url(&self, path: &str) -> chinwag::http::Uri {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    /// The next request to `path` (others are skipped).
    async fn next(&mut self, path: &str) -> Value {
        loop {
            let (p, v) = within(path, self.seen.recv())
                .await
                .expect("backend running");
            if p == path {
                return v;
            }
        }
    }
}

/// A script from a plain function of (path, request).
fn script(f: impl Fn(&str, &Value) -> (u16, Value) + Send + Sync + 'static) -> Script {
    Arc::new(move |p, v| {
        let r = f(p, &v);
        Box::pin(async move { r })
    })
}

/// The connect answer every script shares: `good-NAME` is NAME on device `d` (with a meta
/// fact), anything else is refused.
fn connect_answer(req: &Value) -> Value {
    match req["token"].as_str() {
        Some(t) if t.starts_with("good-") => {
            json!({ "user": &t[5..], "device": "d", "meta": { "plan": "gold" } })
        }
        _ => json!({ "refuse": "unknown token" }),
    }
}

/// An address nothing listens on.
async fn dead_url(path: &str) -> chinwag::http::Uri {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    format!("http://{a}{path}").parse().unwrap()
}

// ---- the server and its clients ---------------------------------------------------------------

fn builder(proxy: ProxyConfig) -> ServerBuilder {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Server::builder()
        .chat_tcp(loopback)
        .tok_tcp(loopback)
        .sign_on(SignOn::PerDevice)
        .limits(
            HubLimits::default()
                .with_connection_rate(None)
                .with_message_rate(None),
        )
        .event_proxy(EventProxy::new(proxy).unwrap())
}

/// A chat-protocol client over TCP; room publications arrive on `rooms`.
struct Chat {
    peer: Peer,
    rooms: mpsc::UnboundedReceiver<Value>,
}

impl Chat {
    async fn connect(server: &Server) -> Chat {
        let t = within(
            "TCP connect",
            chinwag::transport::tcp::connect(server.chat_tcp_addr().unwrap(), &Default::default()),
        )
        .await
        .unwrap();
        let (tx, rooms) = mpsc::unbounded_channel();
        let mut h = Handlers::new();
        h.handle_notification("room", move |_peer, payload| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_slice(&payload).unwrap());
            }
        });
        Chat {
            peer: chinwag::rpc::connect(t, Arc::new(h), RpcConfig::client()),
            rooms,
        }
    }

    /// Connected and signed in with `token`.
    async fn signed_in(server: &Server, token: &str) -> Chat {
        let c = Chat::connect(server).await;
        c.req("auth", json!({ "token": token })).await.unwrap();
        c
    }

    /// The result, or the error's text (`code: message`).
    async fn req(&self, op: &str, body: Value) -> Result<Value, String> {
        within(op, self.peer.request::<_, Value>(op, &body))
            .await
            .map_err(|e| e.to_string())
    }
}

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

fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("installing the metrics recorder")
    })
}

fn counter(series: &str) -> f64 {
    metrics()
        .render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

// ---- the tests --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_names_the_user_or_refuses() {
    let mut b = Backend::start(script(|_, v| (200, connect_answer(v)))).await;
    let server = builder(ProxyConfig::default().with_connect(b.url("/connect")))
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let c = Chat::connect(&server).await;
    let e = c
        .req("auth", json!({ "token": "nobody-knows" }))
        .await
        .unwrap_err();
    assert!(e.contains("unknown token"), "{e}");
    let req = b.next("/connect").await;
    assert_eq!(
        req,
        json!({ "event": "connect", "token": "nobody-knows", "door": "chat", "ip": "127.0.0.1" })
    );
    let who = c.req("auth", json!({ "token": "good-ann" })).await.unwrap();
    assert_eq!(who["user"], "ann");
    assert_eq!(who["device"], "d");
    let conns = server.hub().connections_of("ann");
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].device().meta.get("plan"), Some(&json!("gold")));
    let req = b.next("/connect").await;
    assert_eq!(
        req,
        json!({ "event": "connect", "token": "good-ann", "door": "chat", "ip": "127.0.0.1" })
    );
    // A token at connect (the WebSocket request's header): the event names the door and the
    // address too.
    let (_bo, _bo_events) = tokio::time::timeout(
        DEADLINE,
        chinwag::client::Client::builder(server.chat_url().unwrap())
            .token("good-bo")
            .token_in_header(true)
            .connect(),
    )
    .await
    .expect("connect in time")
    .unwrap();
    let req = b.next("/connect").await;
    assert_eq!(
        req,
        json!({ "event": "connect", "token": "good-bo", "door": "chat", "ip": "127.0.0.1" })
    );
    assert_eq!(server.hub().connections_of("bo").len(), 1);
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_tok_token_signs_in_and_frames_are_answered_in_order() {
    let mut b = Backend::start(script(|path, v| match path {
        "/connect" => match v["token_base64"].as_str() {
            Some("/wABAg==") => (200, json!({ "user": "tina" })),
            _ => (200, json!({ "refuse": "no" })),
        },
        // Each frame answered with "re: " and the frame.
        _ => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let frame = b64.decode(v["body_base64"].as_str().unwrap()).unwrap();
            let mut answer = b"re: ".to_vec();
            answer.extend_from_slice(&frame);
            (200, json!({ "answer_base64": b64.encode(answer) }))
        }
    }))
    .await;
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_app(b.url("/app")),
    )
    .start()
    .await
    .unwrap();
    let mut s = tokio::net::TcpStream::connect(server.tok_addr().unwrap())
        .await
        .unwrap();
    // Not UTF-8, not a JWT: tok's tokens are whatever the application says.
    tok_write(&mut s, &[0xff, 0x00, 0x01, 0x02]).await;
    let req = b.next("/connect").await;
    assert_eq!(req["token_base64"], "/wABAg==");
    assert_eq!(req["door"], "tok");
    assert_eq!(req["ip"], "127.0.0.1");
    assert!(req.get("token").is_none(), "{req}");
    for i in 0..20 {
        tok_write(&mut s, format!("frame {i}").as_bytes()).await;
    }
    for i in 0..20 {
        assert_eq!(tok_read(&mut s).await, format!("re: frame {i}").as_bytes());
        let req = b.next("/app").await;
        assert_eq!(req["conn"]["user"], "tina");
        assert_eq!(req["conn"]["door"], "tok");
    }
    assert_eq!(server.hub().connections_of("tina")[0].door(), "tok");
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_app_messages_reach_the_backend_in_order_and_carry_its_answer() {
    let mut b = Backend::start(script(|path, v| match path {
        "/connect" => (200, connect_answer(v)),
        _ => match v["body"].as_str().unwrap() {
            "forbidden" => (200, json!({ "refuse": "not for you" })),
            "silent" => (200, json!({})),
            t => (200, json!({ "answer": t.to_uppercase() })),
        },
    }))
    .await;
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_app(b.url("/app")),
    )
    .start()
    .await
    .unwrap();
    let c = Chat::signed_in(&server, "good-ann").await;
    // Ten requests at once: the backend sees them in the order sent, each gets its answer.
    let asks = (0..10).map(|i| c.req("app", json!({ "body": format!("m{i}") })));
    let answers = futures_util::future::join_all(asks).await;
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.unwrap(), json!({ "body": format!("M{i}") }));
    }
    b.next("/connect").await;
    for i in 0..10 {
        let req = b.next("/app").await;
        assert_eq!(req["body"], format!("m{i}"), "in order");
        assert_eq!(req["conn"]["user"], "ann");
        assert_eq!(req["conn"]["door"], "chat");
    }
    assert_eq!(
        c.req("app", json!({ "body": "silent" })).await.unwrap(),
        json!({})
    );
    let e = c
        .req("app", json!({ "body": "forbidden" }))
        .await
        .unwrap_err();
    assert!(
        e.contains(r#""code":"refused""#) && e.contains("not for you"),
        "{e}"
    );
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_refused_and_publishes_changed_or_refused() {
    let mut b = Backend::start(script(|path, v| match path {
        "/connect" => (200, connect_answer(v)),
        "/join" => match v["room"].as_str().unwrap() {
            "vip" => (200, json!({ "refuse": "vip only" })),
            _ => (200, json!({})),
        },
        _ => match v["body"].as_str().unwrap() {
            "spam" => (200, json!({ "refuse": "no spam" })),
            "as is" => (200, json!({})),
            t => (
                200,
                json!({ "body": format!("[{}] {t}", v["conn"]["user"].as_str().unwrap()) }),
            ),
        },
    }))
    .await;
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_join(b.url("/join"))
            .with_publish(b.url("/publish")),
    )
    .start()
    .await
    .unwrap();
    let a = Chat::signed_in(&server, "good-ann").await;
    let mut z = Chat::signed_in(&server, "good-zed").await;
    let e = a.req("join", json!({ "room": "vip" })).await.unwrap_err();
    assert!(
        e.contains(r#""code":"refused""#) && e.contains("vip only"),
        "{e}"
    );
    assert!(server.hub().room("vip").is_none());
    a.req("join", json!({ "room": "desk" })).await.unwrap();
    z.req("join", json!({ "room": "desk" })).await.unwrap();
    let e = a
        .req("publish", json!({ "room": "desk", "body": "spam" }))
        .await
        .unwrap_err();
    assert!(
        e.contains(r#""code":"refused""#) && e.contains("no spam"),
        "{e}"
    );
    a.req("publish", json!({ "room": "desk", "body": "hello" }))
        .await
        .unwrap();
    a.req("publish", json!({ "room": "desk", "body": "as is" }))
        .await
        .unwrap();
    let m = within("a publication", z.rooms.recv()).await.unwrap();
    assert_eq!(m["body"], "[ann] hello", "changed by the backend");
    let m = within("a publication", z.rooms.recv()).await.unwrap();
    assert_eq!(m["body"], "as is");
    let req = b.next("/publish").await;
    assert_eq!(req["room"], "desk");
    assert_eq!(req["body"], "spam");
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_are_told_and_retried_then_dropped() {
    let mut b = Backend::start(script(|path, v| match path {
        "/connect" => (200, connect_answer(v)),
        "/gone" => (200, json!({})),
        // `/flaky` always fails.
        _ => (500, json!({})),
    }))
    .await;
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_disconnect(b.url("/gone")),
    )
    .start()
    .await
    .unwrap();
    let c = Chat::signed_in(&server, "good-ann").await;
    let conn = server.hub().connections_of("ann")[0].id().0;
    server.hub().kick("ann", None, "bye now");
    let req = b.next("/gone").await;
    assert_eq!(req["event"], "disconnect");
    assert_eq!(req["conn"]["id"], conn);
    assert_eq!(req["conn"]["user"], "ann");
    assert_eq!(req["conn"]["door"], "chat");
    assert_eq!(req["reason"]["code"], 4004);
    assert!(req["id"].is_string());
    drop(c);
    server.shutdown(DEADLINE).await;

    // A backend that keeps failing: the first attempt and two retries, then dropped.
    let before = counter("chinwag_proxy_disconnects_dropped_total{reason=\"retries\"}");
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_disconnect(b.url("/flaky"))
            .with_disconnect_retries(2),
    )
    .start()
    .await
    .unwrap();
    let c = Chat::signed_in(&server, "good-bob").await;
    c.peer.close();
    let first = b.next("/flaky").await;
    assert_eq!(first["conn"]["user"], "bob");
    assert_eq!(first["reason"], Value::Null, "the client went away");
    for _ in 0..2 {
        assert_eq!(
            b.next("/flaky").await["id"],
            first["id"],
            "the same notification"
        );
    }
    within("the drop counted", async {
        while counter("chinwag_proxy_disconnects_dropped_total{reason=\"retries\"}") < before + 1.0
        {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.shutdown(DEADLINE).await;
    assert!(b.seen.try_recv().is_err(), "no fourth attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_applies_each_events_policy() {
    // connect: refused while the backend is down.
    let server = builder(ProxyConfig::default().with_connect(dead_url("/connect").await))
        .start()
        .await
        .unwrap();
    let c = Chat::connect(&server).await;
    let e = c
        .req("auth", json!({ "token": "good-ann" }))
        .await
        .unwrap_err();
    assert!(e.contains("unavailable"), "{e}");
    assert!(server.hub().connections_of("ann").is_empty());
    server.shutdown(DEADLINE).await;

    // join allowed (configured), publish and app refused (the default).
    let b = Backend::start(script(|_, v| (200, connect_answer(v)))).await;
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_join(dead_url("/join").await)
            .with_join_failure(FailurePolicy::Allow)
            .with_publish(dead_url("/publish").await)
            .with_app(dead_url("/app").await),
    )
    .start()
    .await
    .unwrap();
    let c = Chat::signed_in(&server, "good-ann").await;
    c.req("join", json!({ "room": "desk" })).await.unwrap();
    let e = c
        .req("publish", json!({ "room": "desk", "body": "x" }))
        .await
        .unwrap_err();
    assert!(e.contains("backend unavailable"), "{e}");
    let e = c.req("app", json!({ "body": "x" })).await.unwrap_err();
    assert!(e.contains("backend unavailable"), "{e}");
    server.shutdown(DEADLINE).await;

    // publish and app allowed (configured): the publish goes out as sent, the app message
    // gets no answer.
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_publish(dead_url("/publish").await)
            .with_publish_failure(FailurePolicy::Allow)
            .with_app(dead_url("/app").await)
            .with_app_failure(FailurePolicy::Allow),
    )
    .start()
    .await
    .unwrap();
    let mut c = Chat::signed_in(&server, "good-ann").await;
    c.req("join", json!({ "room": "desk" })).await.unwrap();
    c.req("publish", json!({ "room": "desk", "body": "as sent" }))
        .await
        .unwrap();
    let m = within("the publication", c.rooms.recv()).await.unwrap();
    assert_eq!(m["body"], "as sent", "{m}");
    assert_eq!(
        c.req("app", json!({ "body": "x" })).await.unwrap(),
        json!({})
    );
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_and_the_in_flight_bound_refuses_at_once() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let mut b = Backend::start(Arc::new(move |path: &str, v: Value| {
        let path = path.to_owned();
        let r = r.clone();
        Box::pin(async move {
            match path.as_str() {
                "/connect" => (200, connect_answer(&v)),
                "/join" => (200, json!({})),
                // `/app` answers once released; `/slow` never in time.
                "/app" => {
                    r.notified().await;
                    (200, json!({ "answer": "late but there" }))
                }
                _ => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            }
        })
    }))
    .await;
    // A timeout: the app message is refused (the default policy); publish allowed.
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_app(b.url("/slow"))
            .with_timeout(Duration::from_millis(300)),
    )
    .start()
    .await
    .unwrap();
    let c = Chat::signed_in(&server, "good-ann").await;
    let e = c.req("app", json!({ "body": "x" })).await.unwrap_err();
    assert!(e.contains("no answer within"), "{e}");
    server.shutdown(DEADLINE).await;

    // One call at a time: while ann's app message waits for the backend, bob's join is
    // refused at once as busy (no second call is made), then ann gets her answer.
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_app(b.url("/app"))
            .with_join(b.url("/join"))
            .with_max_in_flight(1),
    )
    .start()
    .await
    .unwrap();
    let ann = Chat::signed_in(&server, "good-ann").await;
    let bob = Chat::signed_in(&server, "good-bob").await;
    let waiting = ann.req("app", json!({ "body": "hi" }));
    let rest = async {
        b.next("/app").await;
        let e = bob
            .req("join", json!({ "room": "desk" }))
            .await
            .unwrap_err();
        assert!(e.contains("busy"), "{e}");
        release.notify_one();
    };
    let (answer, ()) = tokio::join!(waiting, rest);
    assert_eq!(answer.unwrap(), json!({ "body": "late but there" }));
    // Once the slot is free, joins are asked again.
    bob.req("join", json!({ "room": "desk" })).await.unwrap();
    let req = b.next("/join").await;
    assert_eq!(req["room"], "desk");
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_max_answer_bytes_is_a_failure() {
    // `{"answer":"xxxxxxxxxx"}`: 23 bytes; the connect answer is shorter.
    let b = Backend::start(script(|path, _| match path {
        "/connect" => (200, json!({ "user": "ann" })),
        _ => (200, json!({ "answer": "xxxxxxxxxx" })),
    }))
    .await;
    let len = json!({ "answer": "xxxxxxxxxx" }).to_string().len();
    assert_eq!(len, 23);
    for (limit, ok) in [(len, true), (len - 1, false)] {
        let server = builder(
            ProxyConfig::default()
                .with_connect(b.url("/connect"))
                .with_app(b.url("/app"))
                .with_max_answer_bytes(limit),
        )
        .start()
        .await
        .unwrap();
        let c = Chat::signed_in(&server, "good-ann").await;
        let r = c.req("app", json!({ "body": "x" })).await;
        if ok {
            assert_eq!(r.unwrap(), json!({ "body": "xxxxxxxxxx" }), "at the limit");
        } else {
            let e = r.unwrap_err();
            assert!(e.contains("backend unavailable"), "over the limit: {e}");
        }
        server.shutdown(DEADLINE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_past_their_queue_are_dropped_and_counted() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let r = release.clone();
    let mut b = Backend::start(Arc::new(move |path: &str, v: Value| {
        let path = path.to_owned();
        let r = r.clone();
        Box::pin(async move {
            if path == "/connect" {
                return (200, connect_answer(&v));
            }
            r.acquire().await.unwrap().forget();
            (200, json!({}))
        })
    }))
    .await;
    let label = "chinwag_proxy_disconnects_dropped_total{reason=\"queue_full\"}";
    let before = counter(label);
    // One call at a time, one notification waiting: of four closes while the first is held,
    // at least one is dropped.
    let server = builder(
        ProxyConfig::default()
            .with_connect(b.url("/connect"))
            .with_disconnect(b.url("/gone"))
            .with_max_in_flight(1)
            .with_disconnect_queue(1),
    )
    .start()
    .await
    .unwrap();
    let mut clients = Vec::new();
    for u in ["a", "b", "c", "d"] {
        clients.push(Chat::signed_in(&server, &format!("good-{u}")).await);
    }
    clients[0].peer.close();
    assert_eq!(b.next("/gone").await["conn"]["user"], "a");
    for c in &clients[1..] {
        c.peer.close();
    }
    // While the first is held, at most two of the other three can wait (one taken by the
    // sender, one in the queue): at least one is dropped.
    within("a drop", async {
        while counter(label) - before < 1.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    release.add_permits(10);
    // Each of the three is delivered or dropped, and no other way.
    let mut delivered = 0.0;
    within("every notification delivered or dropped", async {
        while delivered + (counter(label) - before) < 3.0 {
            match b.seen.try_recv() {
                Ok((p, v)) => {
                    assert_eq!(p, "/gone");
                    assert_ne!(v["conn"]["user"], "a");
                    delivered += 1.0;
                }
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    let dropped = counter(label) - before;
    assert!((1.0..=2.0).contains(&dropped), "{dropped} dropped");
    assert_eq!(delivered + dropped, 3.0);
    server.shutdown(DEADLINE).await;
}
