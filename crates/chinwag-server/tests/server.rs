//! The real `chinwag-server` binary, as users run it: its command line (help, print-config,
//! precedence, errors with exit code 2), its HTTP side (health, readiness, metrics, dev
//! tokens), SIGTERM (exit 0) and the durable queue across a restart. Every wait is for an
//! event (a line, an answer, an exit) under a deadline; nothing sleeps.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use chinwag::client::{Client, Event, Events};
use chinwag_server::config::{default_table, env_name, flag_name, keys, lookup, shown};
use serde_json::{Value, json};

mod common;

use common::*;

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

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_key_with_its_default_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(server(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    let defaults = default_table();
    let squeezed: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let keys = keys();
    assert!(keys.len() > 100, "{} keys", keys.len());
    for key in &keys {
        assert!(
            out.contains(&format!("--{}", flag_name(key))),
            "--help names --{}",
            flag_name(key)
        );
        assert!(
            squeezed.contains(&env_name(key)),
            "--help names {}",
            env_name(key)
        );
        let shown = shown(lookup(&defaults, key).unwrap(), false);
        assert!(
            squeezed.contains(&format!("[default: {shown}]")),
            "--help shows the default of {key} ({shown})"
        );
    }
    // The help texts are the reference's (docs/server.md).
    assert!(
        squeezed.contains("rooms one connection is in"),
        "the meaning of hub.limits.max_rooms_per_connection"
    );
}

#[test]
fn print_config_applies_flags_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chinwag.toml");
    std::fs::write(
        &file,
        "[hub.limits]\nmax_rooms = 10\nmax_page = 11\nmax_unacked = 12\n\n[auth]\nsecret = \"s3cret\"\n",
    )
    .unwrap();
    let (code, out, err) = run(server(dir.path())
        .arg("--config")
        .arg(&file)
        .env("CHINWAG_HUB_LIMITS_MAX_PAGE", "21")
        .env("CHINWAG_HUB_LIMITS_MAX_UNACKED", "22")
        .env("CHINWAG_QUEUE_REDB_CACHE_SIZE", "1048576")
        .args(["--hub-limits-max-unacked", "33", "--print-config"])
        .args(["--queue-limits-max-total-bytes", "5000000"])
        .args(["--hub-sign-on", "{ multi = 3 }"]));
    assert_eq!(code, 0, "{err}");
    let t: toml::Table = toml::from_str(&out).unwrap();
    let limits = t["hub"]["limits"].as_table().unwrap();
    assert_eq!(limits["max_rooms"].as_integer(), Some(10), "file");
    assert_eq!(limits["max_page"].as_integer(), Some(21), "env over file");
    assert_eq!(
        limits["max_unacked"].as_integer(),
        Some(33),
        "flag over env"
    );
    assert_eq!(
        t["auth"]["secret"].as_str(),
        Some("<redacted>"),
        "secrets are not printed"
    );
    assert_eq!(t["server"]["listen"].as_str(), Some("127.0.0.1:0"));
    // Library settings the server has no code for, and the one bound two layers share.
    assert_eq!(t["queue"]["redb"]["cache_size"].as_integer(), Some(1 << 20));
    assert_eq!(t["hub"]["sign_on"]["multi"].as_integer(), Some(3));
    assert_eq!(
        t["hub"]["limits"]["offline"]["total_bytes"].as_integer(),
        Some(5_000_000),
        "the hub's offline bound is the queue's"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (text, key) in [
        ("[hub.limits]\nmax_roomz = 3\n", "hub.limits.max_roomz"),
        (
            "[hub.limits]\nmax_rooms = \"many\"\n",
            "hub.limits.max_rooms",
        ),
        ("[hub]\nsign_on = \"twice\"\n", "hub.sign_on"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = run(server(dir.path()).arg("--config").arg(&file));
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(err.contains(key), "{text:?}: {err}");
    }
    let (code, _, err) = run(server(dir.path()).env("CHINWAG_HUB_LIMITS_MAX_ROOMZ", "3"));
    assert_eq!(code, 2);
    assert!(err.contains("CHINWAG_HUB_LIMITS_MAX_ROOMZ"), "{err}");
    let (code, _, err) = run(server(dir.path()).args(["--hub-max-ttl", "forever"]));
    assert_eq!(code, 2);
    assert!(err.contains("hub.max_ttl"), "{err}");
    // clap's own errors (an unknown flag) are exit code 2 too.
    let (code, _, _) = run(server(dir.path()).arg("--no-such-flag"));
    assert_eq!(code, 2);
}

/// A chat client (`chinwag::client`) over TCP that does not reconnect (these tests stop the
/// server under it).
async fn chat(addr: SocketAddr, token: &str) -> (Client, Events) {
    tokio::time::timeout(
        DEADLINE,
        Client::builder(format!("tcp://{addr}"))
            .token(token)
            .reconnect(false)
            .connect(),
    )
    .await
    .expect("signed in within the deadline")
    .expect("signs in")
}

fn token(http: SocketAddr, user: &str) -> String {
    let (status, body) = get(http, &format!("/dev/token?user={user}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["user"], user);
    assert_eq!(v["device"], "web");
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_pages_metrics_dev_tokens_and_keeps_the_queue_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = Running::start(server(dir.path()));
    assert_eq!(s.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(s.get("/readyz"), (200, "ready\n".into()));
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    let (status, js) = s.get("/chinwag.js");
    assert_eq!(status, 200);
    assert!(js.contains("export"), "the JS client");
    assert_eq!(s.get("/nope").0, 404);
    assert_eq!(s.get("/dev/token").0, 400, "a name is needed");
    assert_eq!(s.get("/dev/token?user=a%0Db").0, 400, "the id grammar");
    // Dev sign-in answers loopback names only: a page on a rebinding domain gets nothing.
    let port = s.http.port();
    assert_eq!(
        get_as(s.http, &format!("localhost:{port}"), "/dev/token?user=x").0,
        200
    );
    for host in ["evil.example", "localhost.evil.example"] {
        let (status, _) = get_as(s.http, &format!("{host}:{port}"), "/dev/token?user=x");
        assert_eq!(status, 403, "{host}");
        let (status, _) = get_as(s.http, host, "/");
        assert_eq!(status, 403, "{host}: every request on the port");
    }

    // alice sends to bob, who is offline: queued in the durable queue.
    let (alice, _alice_events) = chat(s.chat_tcp, &token(s.http, "alice")).await;
    for i in 0..3 {
        let r = alice.send("bob", format!("hi {i}")).await.unwrap();
        assert!(r.queued, "{r:?}");
    }
    // A publish to a room records the fan-out histogram, in fixed buckets.
    alice.join("lobby").await.unwrap();
    alice.publish("lobby", "hello room").await.unwrap();
    let (_, metrics) = s.get("/metrics");
    for name in [
        "chinwag_hub_connections",
        "chinwag_hub_queued_total",
        "chinwag_hub_messages_in_total",
        "chinwag_hub_fanout_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }
    drop(alice);
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");

    // A new start on the same data directory delivers them to bob, in order.
    let s = Running::start(server(dir.path()));
    let (bob, mut bob_events) = chat(s.chat_tcp, &token(s.http, "bob")).await;
    for i in 0..3 {
        let m = loop {
            let ev = tokio::time::timeout(DEADLINE, bob_events.next())
                .await
                .expect("a queued message")
                .expect("events go on");
            if let Event::Message(m) = ev {
                break m;
            }
        };
        assert_eq!(m.from.as_ref().unwrap().user, "alice");
        assert_eq!(m.text(), Some(format!("hi {i}").as_str()));
    }
    drop(bob);
    assert_eq!(s.terminate().code(), Some(0));
}

#[test]
fn no_dev_tokens_with_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = server(dir.path());
    cmd.args(["--auth-secret", "a-real-secret-for-this-test"]);
    let s = Running::start(cmd);
    assert_eq!(s.get("/dev/token?user=x").0, 404);
    assert_eq!(s.get("/healthz").0, 200);
}

#[test]
fn bare_boolean_flags_and_host_names_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let print = |args: &[&str]| {
        let (code, out, err) = run(command()
            .current_dir(dir.path())
            .args(args)
            .arg("--print-config"));
        assert_eq!(code, 0, "{args:?}: {err}");
        toml::from_str::<toml::Table>(&out).unwrap()
    };
    let t = print(&["--hub-anonymous", "--listen", "localhost:8080"]);
    assert_eq!(
        t["hub"]["anonymous"].as_bool(),
        Some(true),
        "a bare flag is true"
    );
    assert_eq!(t["server"]["listen"].as_str(), Some("localhost:8080"));
    let t = print(&["--hub-anonymous", "false"]);
    assert_eq!(
        t["hub"]["anonymous"].as_bool(),
        Some(false),
        "a value still counts"
    );
    let (code, _, err) = run(command()
        .current_dir(dir.path())
        .args(["--listen", "no-such-host.invalid:8080"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn a_busy_port_names_the_flag_that_moves_its_door_once() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    for (door, flag) in [
        ("--listen", "--listen HOST:PORT"),
        ("--tcp-listen", "--tcp-listen HOST:PORT"),
        ("--tok-listen", "--tok-listen HOST:PORT"),
    ] {
        let mut cmd = command();
        cmd.current_dir(dir.path())
            .args(["--queue-backend", "memory"]);
        for d in ["--listen", "--tcp-listen", "--tok-listen"] {
            cmd.args([d, if d == door { &busy } else { "127.0.0.1:0" }]);
        }
        let (code, _, err) = run(&mut cmd);
        assert_eq!(code, 1, "{door}: {err}");
        assert!(err.contains(flag), "{door}: {err}");
        assert_eq!(
            err.matches("cannot listen").count(),
            1,
            "printed once: {err}"
        );
    }
}

#[test]
fn a_data_directory_in_use_says_so_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let first = Running::start(server(dir.path()));
    let (code, _, err) = run(&mut server(dir.path()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--data-dir DIR"), "{err}");
    assert!(err.contains("chinwag-data"), "the directory: {err}");
    assert_eq!(
        err.matches("already open").count(),
        1,
        "printed once: {err}"
    );
    first.terminate();
}

/// At the default level (info) the log has one line per sign-in, join and disconnect, with the
/// user, the device and the door, and never a message's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_joins_and_disconnects_are_logged_at_info_without_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = server(dir.path());
    cmd.env("CHINWAG_LOG_FILTER", "info").arg("--log-json");
    let (s, log) = Running::start_logged(cmd);
    let (alice, _alice_events) = chat(s.chat_tcp, &token(s.http, "alice")).await;
    alice.join("lobby").await.unwrap();
    alice.publish("lobby", "a very private body").await.unwrap();
    alice.close().await;
    let mut seen = Vec::new();
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let line = log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("a `disconnected` line within {DEADLINE:?}: {seen:#?}"));
        assert!(
            !line.contains("a very private body"),
            "a body in the log: {line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("JSON: {line}"));
        let f = &v["fields"];
        if f["user"] == "alice" {
            assert_eq!(v["level"], "INFO", "{line}");
            assert_eq!(f["device"], "web", "{line}");
            assert_eq!(f["door"], "chat", "{line}");
            let what = f["message"].as_str().unwrap_or_default().to_owned();
            if what == "joined" {
                assert_eq!(f["room"], "lobby", "{line}");
            }
            seen.push(what);
            if seen.last().is_some_and(|w| w == "disconnected") {
                break;
            }
        }
    }
    assert_eq!(
        seen,
        ["signed in", "joined", "disconnected"],
        "one line each"
    );
    s.terminate();
}

/// Rooms declared in the configuration (`rooms.declared`) exist from the start, before anyone
/// joins: a protected one refuses a join with a wrong or missing password (`wrong_password`),
/// takes the right one, and `--print-config` does not show its password. The default declares
/// the demo's `lobby`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_rooms_exist_from_the_start_and_keep_their_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rooms.toml");
    std::fs::write(
        &file,
        "[rooms]\ndeclared = [\n  { name = \"vault\", password = \"open sesame\" },\n  \
         { name = \"hall\", presence_events = true },\n]\n",
    )
    .unwrap();
    let (code, out, _) = run(server(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("--print-config"));
    assert_eq!(code, 0);
    assert!(
        out.contains("vault") && !out.contains("open sesame") && out.contains("<redacted>"),
        "{out}"
    );
    let s = Running::start({
        let mut c = server(dir.path());
        c.arg("--config").arg(&file);
        c
    });
    let (alice, _alice_events) = chat(s.chat_tcp, &token(s.http, "alice")).await;
    let rooms = alice.request("rooms", json!({})).await.unwrap();
    let listed: Vec<(String, bool, u64)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["room"].as_str().unwrap().to_owned(),
                r["protected"].as_bool().unwrap(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("hall".to_owned(), false, 0), ("vault".to_owned(), true, 0)],
        "made at start, before any join; the file's list replaces the default lobby"
    );
    for join in [
        json!({ "room": "vault" }),
        json!({ "room": "vault", "password": "open" }),
    ] {
        match alice.request("join", join.clone()).await {
            Err(e) => assert_eq!(e.code(), "wrong_password", "{join}: {e}"),
            other => panic!("{join}: {other:?}"),
        }
    }
    let r = alice
        .request(
            "join",
            json!({ "room": "vault", "password": "open sesame" }),
        )
        .await
        .unwrap();
    assert_eq!(
        (r["protected"].as_bool(), r["members"].as_u64()),
        (Some(true), Some(1))
    );
    drop(alice);
    s.terminate();

    // With no configuration: the demo's lobby, open.
    let s = Running::start(server(dir.path()));
    let (bob, _bob_events) = chat(s.chat_tcp, &token(s.http, "bob")).await;
    let rooms = bob.request("rooms", json!({})).await.unwrap();
    assert_eq!(rooms["rooms"][0]["room"], "lobby", "{rooms}");
    assert_eq!(rooms["rooms"][0]["protected"], false, "{rooms}");
    drop(bob);
    s.terminate();
}
