//! The server API (`docs/server-api.md`) on the real `chinwag-server` binary: every `curl`
//! example of the page runs with the real `curl`, in order (from the first `online` example on
//! with [`ONLINE`]'s users connected, as the page says), and its answer is compared with the
//! block that follows it; then the API's door (off by default, the key, the body, batch and
//! rate bounds) and what its calls do to real chat clients (a send and a publish reach them, a
//! kick closes one, a room made with a password refuses a wrong one). Every wait is for an
//! event under a deadline; nothing sleeps.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use chinwag::rpc::{Handlers, Peer, RpcConfig, RpcError};
use serde_json::{Value, json};

mod common;

use common::*;

const KEY: &str = "test-key-0123456789abcdef";
const PAGE: &str = include_str!("../../../docs/server-api.md");

fn server(dir: &Path) -> Command {
    let mut c = command();
    c.current_dir(dir).env_remove("CHINWAG_CONFIG").args([
        "--listen",
        "127.0.0.1:0",
        "--tcp-listen",
        "127.0.0.1:0",
        "--tok-listen",
        "127.0.0.1:0",
    ]);
    c
}

fn with_api(dir: &Path) -> Command {
    let mut c = server(dir);
    c.env("CHINWAG_API_KEY", KEY);
    c
}

// ---- the page's examples ------------------------------------------------------------------

/// One example: the shell command and the answer the page shows (status and JSON).
struct Example {
    line: usize,
    command: String,
    status: u16,
    answer: Value,
}

/// The fenced blocks of the page: (line, info string, text).
fn blocks(page: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in page.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((n + 1, info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => out.push(open.take().unwrap()),
            (Some((_, _, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    out
}

/// Every `sh` block that runs `curl` against `$API`, with the `http` block right after it.
fn examples(page: &str) -> Vec<Example> {
    let blocks = blocks(page);
    let mut out = Vec::new();
    for (i, (line, info, text)) in blocks.iter().enumerate() {
        if info != "sh" || !text.contains("curl ") || !text.contains("$API") {
            continue;
        }
        let (_, next_info, answer) = blocks.get(i + 1).unwrap_or_else(|| {
            panic!("the curl example at line {line} has no answer block after it")
        });
        assert_eq!(
            next_info, "http",
            "the curl example at line {line} must be followed by its answer (an http block)"
        );
        let (head, body) = answer.split_once("\n\n").unwrap_or_else(|| {
            panic!("line {line}: the answer is `HTTP/1.1 STATUS`, a blank line, JSON")
        });
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("line {line}: no status in `{head}`"));
        let answer = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("line {line}: the answer is not JSON ({e}): {body}"));
        out.push(Example {
            line: *line,
            command: text.trim_end().to_owned(),
            status,
            answer,
        });
    }
    out
}

/// The users connected over the chat protocol from the page's first `online` example on (the
/// page says so), so that its list is not empty.
const ONLINE: &[&str] = &["dana", "bob"];

/// Fields whose values differ from run to run: only their type is compared.
const VARYING: &[&str] = &["epoch", "id", "sent_at", "node", "conn"];

/// Whether `got` is `want`, fields of [`VARYING`] compared by type only.
fn same(want: &Value, got: &Value, key: Option<&str>) -> bool {
    if key.is_some_and(|k| VARYING.contains(&k)) {
        return std::mem::discriminant(want) == std::mem::discriminant(got)
            && (want.is_number() == got.is_number());
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| same(v, gv, Some(k))))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| same(a, b, None))
        }
        _ => want == got,
    }
}

#[test]
fn every_curl_example_of_the_page_gets_the_answer_the_page_shows() {
    let examples = examples(PAGE);
    assert!(
        examples.len() >= 15,
        "the page has {} curl examples; one per method at least",
        examples.len()
    );
    for m in chinwag::api::METHODS {
        assert!(
            examples
                .iter()
                .any(|e| e.command.contains(&format!("$API/{m} "))),
            "no curl example of `{m}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(with_api(dir.path()));
    let api = format!("http://{}/api", s.http);
    let curl = Command::new("curl").arg("--version").output();
    assert!(curl.is_ok_and(|o| o.status.success()), "curl runs");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut online = Vec::new();
    for e in &examples {
        if online.is_empty() && e.command.contains("$API/online ") {
            for user in ONLINE {
                // Signed on once `auth` is answered.
                online.push(rt.block_on(chat(s.chat_tcp, &token(s.http, user))));
            }
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} --max-time {} -w '\\n%{{http_code}}'",
                e.command,
                DEADLINE.as_secs()
            ))
            .env("API", &api)
            // No ~/.curlrc of the user's: the command as the page shows it.
            .env("CURL_HOME", dir.path())
            .env("KEY", KEY)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "line {}: curl failed: {}",
            e.line,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.trim_end().rsplit_once('\n').unwrap();
        let got: Value = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("line {}: not JSON ({err}): {body}", e.line));
        assert_eq!(
            status.parse::<u16>().unwrap(),
            e.status,
            "line {}: {}\n{body}",
            e.line,
            e.command
        );
        assert!(
            same(&e.answer, &got, None),
            "line {}: {}\nthe page shows {}\nthe server said {got}",
            e.line,
            e.command,
            e.answer
        );
    }
    assert_eq!(
        online.len(),
        ONLINE.len(),
        "the page has an `online` example"
    );
    s.terminate();
}

// ---- the door ------------------------------------------------------------------------------

/// A plain HTTP/1.1 POST: status, head and body.
fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = key
        .map(|k| format!("Authorization: apikey {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("JSON: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_api_is_off_by_default_and_asks_for_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let off = Running::start(server(dir.path()));
    let (status, _, body) = post(off.http, "/api/stats", Some(KEY), "{}");
    assert_eq!(status, 404, "no key configured: no API ({body})");
    off.terminate();

    let dir = tempfile::tempdir().unwrap();
    let on = Running::start(with_api(dir.path()));
    let (status, head, body) = post(on.http, "/api/stats", None, "{}");
    assert_eq!((status, code(&body).as_str()), (401, "unauthorized"));
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: apikey"),
        "{head}"
    );
    for wrong in ["", "test-key", &format!("{KEY}x"), &KEY.to_uppercase()] {
        let (status, _, body) = post(on.http, "/api/stats", Some(wrong), "{}");
        assert_eq!(status, 401, "key `{wrong}`: {body}");
    }
    let (status, _, body) = post(on.http, "/api/stats", Some(KEY), "{}");
    assert_eq!(status, 200, "{body}");
    // The pages of the server are still there.
    assert_eq!(on.get("/healthz"), (200, "ok\n".into()));
    on.terminate();
}

#[test]
fn a_body_over_the_limit_is_413_one_at_the_limit_is_read_and_a_stalled_one_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = with_api(dir.path());
    cmd.env("CHINWAG_API_MAX_BODY_BYTES", "64")
        .env("CHINWAG_API_BODY_TIMEOUT", "200ms");
    let s = Running::start(cmd);
    // 64 bytes of JSON exactly: read and answered.
    let pad = 64 - r#"{"room":""}"#.len();
    let at = format!(r#"{{"room":"{}"}}"#, "r".repeat(pad));
    assert_eq!(at.len(), 64);
    let (status, _, body) = post(s.http, "/api/create_room", Some(KEY), &at);
    assert_eq!(status, 200, "{body}");
    let over = format!(r#"{{"room":"{}"}}"#, "r".repeat(pad + 1));
    let (status, _, body) = post(s.http, "/api/create_room", Some(KEY), &over);
    assert_eq!((status, code(&body).as_str()), (413, "too_large"), "{body}");
    // Without the key the body is not even read: 401.
    let (status, _, _) = post(s.http, "/api/create_room", None, &over);
    assert_eq!(status, 401);
    // A body that stops arriving: 408 once api.body_timeout has passed.
    let mut tcp = TcpStream::connect(s.http).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        tcp,
        "POST /api/stats HTTP/1.1\r\nHost: {}\r\nAuthorization: apikey {KEY}\r\n\
         Content-Length: 10\r\n\r\n{{}}",
        s.http
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = tcp.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert_eq!(code(resp.split_once("\r\n\r\n").unwrap().1), "body_timeout");
    s.terminate();
}

#[test]
fn a_batch_over_the_limit_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = with_api(dir.path());
    cmd.env("CHINWAG_API_MAX_BATCH", "2");
    let s = Running::start(cmd);
    let batch = |n: usize| json!({ "commands": vec![json!({"method": "stats"}); n] }).to_string();
    let (status, _, body) = post(s.http, "/api/batch", Some(KEY), &batch(2));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["replies"].as_array().unwrap().len(), 2);
    let (status, _, body) = post(s.http, "/api/batch", Some(KEY), &batch(3));
    assert_eq!((status, code(&body).as_str()), (413, "batch_too_large"));
    s.terminate();
}

#[test]
fn calls_past_the_rate_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = with_api(dir.path());
    cmd.env("CHINWAG_API_RATE_PER_SECOND", "1")
        .env("CHINWAG_API_RATE_BURST", "5")
        .env("CHINWAG_API_MAX_BATCH", "5");
    let s = Running::start(cmd);
    let start = std::time::Instant::now();
    let mut ok = 0;
    let mut refused = None;
    for _ in 0..40 {
        let (status, head, body) = post(s.http, "/api/stats", Some(KEY), "{}");
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(code(&body), "rate_limited");
                refused = Some(head);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let head = refused.expect("a call past the burst is refused");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // The burst, plus what came back meanwhile (one a second).
    let back = start.elapsed().as_secs() as usize + 1;
    assert!((5..=5 + back).contains(&ok), "{ok} calls passed");
    s.terminate();
}

// ---- what the calls do to real clients ---------------------------------------------------

/// A chat client over TCP that collects its notifications as `(name, payload)`.
struct Chat {
    peer: Peer,
    notes: tokio::sync::mpsc::UnboundedReceiver<(&'static str, Value)>,
}

async fn chat(addr: SocketAddr, token: &str) -> Chat {
    let (tx, notes) = tokio::sync::mpsc::unbounded_channel();
    let mut h = Handlers::new();
    for name in ["message", "room", "bye"] {
        let tx = tx.clone();
        h.handle_notification(name, move |_peer, payload| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((name, serde_json::from_slice(&payload).unwrap()));
            }
        });
    }
    let t = chinwag::transport::tcp::connect(addr, &Default::default())
        .await
        .unwrap();
    let peer = chinwag::rpc::connect(t, Arc::new(h), RpcConfig::client());
    let _: Value = peer
        .request("auth", &json!({ "token": token }))
        .await
        .expect("auth");
    Chat { peer, notes }
}

impl Chat {
    async fn next(&mut self, name: &str) -> Value {
        let wait = async {
            loop {
                let (n, v) = self.notes.recv().await.expect("the connection is open");
                if n == name {
                    return v;
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("a `{name}` notification within {DEADLINE:?}"))
    }
}

fn token(http: SocketAddr, user: &str) -> String {
    let (status, body) = get(http, &format!("/dev/token?user={user}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The API through the test's HTTP client, off the async threads.
async fn call(http: SocketAddr, method: &str, params: Value) -> (u16, Value) {
    let method = method.to_owned();
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        post(
            http,
            &format!("/api/{method}"),
            Some(KEY),
            &params.to_string(),
        )
    })
    .await
    .unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_publish_and_kick_reach_connected_clients() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(with_api(dir.path()));
    let mut alice = chat(s.chat_tcp, &token(s.http, "alice")).await;

    // send: alice gets it as a `message` from the sender named.
    let (status, v) = call(
        s.http,
        "send",
        json!({"user": "alice", "body": "hello from the backend", "from": "shop"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["delivered"], 1);
    let m = alice.next("message").await;
    assert_eq!(m["body"], "hello from the backend");
    assert_eq!(m["from"]["user"], "shop");
    assert_eq!(m["id"], v["result"]["id"]);
    let (_, v) = call(s.http, "devices", json!({"user": "alice"})).await;
    assert_eq!(v["result"]["devices"][0]["device"], "web");

    // publish: a member of the room gets it as a `room` notification.
    let (status, v) = call(s.http, "create_room", json!({"room": "desk"})).await;
    assert_eq!(status, 200, "{v}");
    let _: Value = alice
        .peer
        .request("join", &json!({"room": "desk"}))
        .await
        .unwrap();
    let (status, v) = call(
        s.http,
        "publish",
        json!({"room": "desk", "body": "to the desk"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["delivered"], 1);
    let r = alice.next("room").await;
    assert_eq!(
        (r["room"].as_str(), r["body"].as_str()),
        (Some("desk"), Some("to the desk"))
    );
    assert_eq!(r["from"], Value::Null);
    let (_, v) = call(s.http, "room_members", json!({"room": "desk"})).await;
    assert_eq!(v["result"]["members"][0]["user"], "alice");

    // kick: a `bye` with 4004 and the reason, then the connection closes.
    let (status, v) = call(
        s.http,
        "kick",
        json!({"user": "alice", "reason": "suspended"}),
    )
    .await;
    assert_eq!((status, &v["result"]["closed"]), (200, &json!(1)), "{v}");
    let bye = alice.next("bye").await;
    assert_eq!(
        (bye["code"].as_u64(), bye["reason"].as_str()),
        (Some(4004), Some("suspended"))
    );
    tokio::time::timeout(DEADLINE, alice.peer.closed())
        .await
        .expect("the kicked connection closes");
    s.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_made_with_a_password_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(with_api(dir.path()));
    let (status, v) = call(
        s.http,
        "create_room",
        json!({"room": "vault", "password": "open sesame"}),
    )
    .await;
    assert_eq!(
        (status, &v["result"]["protected"]),
        (200, &json!(true)),
        "{v}"
    );
    let bob = chat(s.chat_tcp, &token(s.http, "bob")).await;
    for wrong in [
        json!({"room": "vault", "password": "guess"}),
        json!({"room": "vault"}),
    ] {
        let refused = bob.peer.request::<_, Value>("join", &wrong).await;
        match refused {
            Err(RpcError::Remote { message }) => {
                assert!(message.contains("password"), "{message}")
            }
            other => panic!("a wrong password is refused: {other:?}"),
        }
    }
    let joined: Value = bob
        .peer
        .request("join", &json!({"room": "vault", "password": "open sesame"}))
        .await
        .unwrap();
    assert_eq!(joined["members"], 1, "{joined}");
    // Removing the password through the API opens the room.
    let (status, _) = call(
        s.http,
        "change_room",
        json!({"room": "vault", "password": null}),
    )
    .await;
    assert_eq!(status, 200);
    let carol = chat(s.chat_tcp, &token(s.http, "carol")).await;
    let joined: Value = carol
        .peer
        .request("join", &json!({"room": "vault"}))
        .await
        .unwrap();
    assert_eq!(joined["members"], 2, "{joined}");
    s.terminate();
}
