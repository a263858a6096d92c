//! The real `chinwag-server` binary with the `proxy.*` keys: a backend of the test's own (a
//! small hyper HTTP server on 127.0.0.1:0) signs a connection in with a token that is no JWT,
//! answers its `app` messages in order, refuses a join, changes a publish, and is told of the
//! disconnect. (Each event's details and failure policies: `crates/chinwag/tests/proxy.rs`.)
//! Every wait is for an event under a deadline; nothing sleeps.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use chinwag::rpc::{Handlers, Peer, RpcConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod common;

use common::*;

/// The backend: records (path, request) and answers by `answer`.
async fn backend(
    answer: fn(&str, &Value) -> Value,
) -> (SocketAddr, mpsc::UnboundedReceiver<(String, Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let out = answer(&path, &v);
                            let _ = tx.send((path, v));
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                out.to_string(),
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn answer(path: &str, v: &Value) -> Value {
    match path {
        "/connect" => match v["token"].as_str() {
            Some("opaque-ann-7f3a") => json!({ "user": "ann", "device": "laptop" }),
            _ => json!({ "refuse": "unknown token" }),
        },
        "/app" => json!({ "answer": format!("got {}", v["body"].as_str().unwrap()) }),
        "/join" if v["room"] == "staff" => json!({ "refuse": "staff only" }),
        "/publish" => json!({ "body": format!("{} (checked)", v["body"].as_str().unwrap()) }),
        _ => json!({}),
    }
}

fn server(dir: &Path, backend: SocketAddr) -> Command {
    let mut c = command();
    let url = |p: &str| format!("http://{backend}/{p}");
    c.current_dir(dir)
        .env_remove("CHINWAG_CONFIG")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tcp-listen",
            "127.0.0.1:0",
            "--tok-listen",
            "127.0.0.1:0",
            "--queue-backend",
            "memory",
        ])
        .args(["--proxy-connect-url", &url("connect")])
        .args(["--proxy-app-url", &url("app")])
        .args(["--proxy-join-url", &url("join")])
        .args(["--proxy-publish-url", &url("publish")])
        .args(["--proxy-disconnect-url", &url("disconnect")]);
    c
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Value)>, path: &str) -> Value {
    loop {
        let (p, v) = within(path, rx.recv()).await.unwrap();
        if p == path {
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_signs_in_answers_decides_and_hears_of_disconnects() {
    let (addr, mut seen) = backend(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(server(dir.path(), addr));
    assert_eq!(
        s.get("/dev/token?user=x").0,
        404,
        "no dev sign-in: the backend signs in"
    );
    let (tx, mut rooms) = mpsc::unbounded_channel();
    let mut h = Handlers::new();
    h.handle_notification("room", move |_peer, payload| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(serde_json::from_slice::<Value>(&payload).unwrap());
        }
    });
    let t = chinwag::transport::tcp::connect(s.chat_tcp, &Default::default())
        .await
        .unwrap();
    let peer: Peer = chinwag::rpc::connect(t, Arc::new(h), RpcConfig::client());
    let req = |op: &'static str, body: Value| {
        let peer = peer.clone();
        async move { within(op, peer.request::<_, Value>(op, &body)).await }
    };
    let e = req("auth", json!({ "token": "forged" })).await.unwrap_err();
    assert!(e.to_string().contains("unknown token"), "{e}");
    let who = req("auth", json!({ "token": "opaque-ann-7f3a" }))
        .await
        .unwrap();
    assert_eq!(
        (who["user"].clone(), who["device"].clone()),
        (json!("ann"), json!("laptop"))
    );
    for i in 0..3 {
        let a = req("app", json!({ "body": format!("m{i}") }))
            .await
            .unwrap();
        assert_eq!(a, json!({ "body": format!("got m{i}") }));
    }
    for i in 0..3 {
        assert_eq!(next(&mut seen, "/app").await["body"], format!("m{i}"));
    }
    let e = req("join", json!({ "room": "staff" })).await.unwrap_err();
    assert!(e.to_string().contains("staff only"), "{e}");
    req("join", json!({ "room": "desk" })).await.unwrap();
    req("publish", json!({ "room": "desk", "body": "hi" }))
        .await
        .unwrap();
    let m = within("the publication", rooms.recv()).await.unwrap();
    assert_eq!(m["body"], "hi (checked)");
    peer.close();
    let gone = next(&mut seen, "/disconnect").await;
    assert_eq!(gone["conn"]["user"], "ann");
    assert_eq!(gone["conn"]["door"], "chat");
    assert!(s.terminate().success());
}
