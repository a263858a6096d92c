//! Fair shares under abuse, at their boundaries, through the chat door on real sockets: one
//! account cannot fill the offline store and make another user's send to an offline friend
//! fail; room passwords cannot be guessed without limit, nor can one guesser keep others out.

mod common;

use std::sync::Arc;

use chinwag_hub::{HubLimits, OfflineShares, Rate, RoomOptions};
use chinwag_queue::{MemoryQueue, Queue, QueueConfig};
use common::*;
use serde_json::json;

const KIB: u64 = 1024;

/// A store of 1 MiB whose shares are: 256 KiB per sender, the last 128 KiB for senders holding
/// at most 16 KiB.
fn small_store() -> (HubLimits, Arc<dyn Queue>) {
    let shares = OfflineShares::default()
        .with_per_sender_bytes(256 * KIB)
        .with_per_sender_messages(1_000)
        .with_total_bytes(1024 * KIB)
        .with_reserve_bytes(128 * KIB)
        .with_light_sender_bytes(16 * KIB);
    let limits = HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None)
        .with_offline(shares);
    let queue = MemoryQueue::new(
        QueueConfig::default()
            .with_max_total_bytes(1024 * KIB)
            .with_max_bytes_per_recipient(1024 * KIB),
    );
    (limits, Arc::new(queue))
}

/// Sends `n` messages of 8 KiB from `c` to made-up recipients; the results' error codes (`""`
/// for a success).
async fn flood(c: &Client, n: usize, tag: &str) -> Vec<String> {
    let body = "x".repeat(8 * KIB as usize);
    let mut out = Vec::new();
    for i in 0..n {
        let r = c
            .req(
                "send",
                json!({ "to": format!("nobody-{tag}-{i}"), "body": body }),
            )
            .await;
        out.push(r.err().map(|e| e.code).unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_cannot_make_another_users_offline_send_fail() {
    let (limits, queue) = small_store();
    let hub = hub(config().with_limits(limits), Some(queue.clone()));
    let (door, addr) = chat_tcp(&hub);
    let mallory = Client::tcp(addr, Some(&token("mallory", "d"))).await;
    let alice = Client::tcp(addr, Some(&token("alice", "d"))).await;

    // 256 KiB of 8 KiB messages is 32: the 33rd is over mallory's share.
    let before = counter("chinwag_hub_refusals_total{reason=\"offline_share\"}");
    let codes = flood(&mallory, 40, "m").await;
    assert!(codes[..32].iter().all(String::is_empty), "{codes:?}");
    assert!(codes[32..].iter().all(|c| c == "quota"), "{codes:?}");
    assert!(counter("chinwag_hub_refusals_total{reason=\"offline_share\"}") >= before + 8.0);
    assert!(
        counter("chinwag_hub_offline_bytes") >= (256 * KIB) as f64,
        "the gauge shows what senders hold"
    );

    // Alice still reaches her offline friend.
    let r = alice
        .req("send", json!({ "to": "bob", "body": "see you" }))
        .await
        .expect("alice's send is not refused");
    assert_eq!(r["queued"], true);

    // When mallory's messages leave the queue, the share comes back: a recipient that signs
    // in and acknowledges frees it.
    let mut nobody = Client::tcp(addr, Some(&token("nobody-m-0", "d"))).await;
    let m = nobody.note_named("message").await;
    nobody
        .req("ack", json!({ "id": m.body["id"] }))
        .await
        .unwrap();
    let codes = flood(&mallory, 2, "again").await;
    assert_eq!(codes, ["", "quota"], "one message's worth came back");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_reserve_is_kept_for_light_senders() {
    let (limits, queue) = small_store();
    let hub = hub(config().with_limits(limits), Some(queue));
    let (door, addr) = chat_tcp(&hub);
    // Several accounts, each within its share, fill the store up to its reserve: 896 KiB.
    let mut filled = 0;
    for n in 0..4 {
        let c = Client::tcp(addr, Some(&token(&format!("heavy{n}"), "d"))).await;
        let codes = flood(&c, 32, &format!("h{n}")).await;
        filled += codes.iter().filter(|c| c.is_empty()).count();
        if let Some(c) = codes.iter().find(|c| !c.is_empty()) {
            assert_eq!(c, "quota");
        }
    }
    assert_eq!(filled, 112, "896 KiB of 8 KiB messages, then the reserve");
    // A light sender (it holds nothing yet) still reaches an offline friend; up to 16 KiB.
    let light = Client::tcp(addr, Some(&token("light", "d"))).await;
    let codes = flood(&light, 3, "l").await;
    assert_eq!(codes, ["", "", "quota"]);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nth_wrong_room_password_closes_the_connection_with_4010() {
    let limits = HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None)
        .with_password_guess_rate(Rate::new(1_000, 1_000))
        .with_password_guess_rate_per_ip(Rate::new(1_000, 1_000))
        .with_password_strikes(3);
    let hub = hub(config().with_limits(limits), None);
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let mut c = Client::tcp(addr, Some(&token("guesser", "d"))).await;
    for guess in ["a", "b"] {
        let e = c
            .req("join", json!({ "room": "vault", "password": guess }))
            .await
            .unwrap_err();
        assert_eq!(e.code, "wrong_password");
    }
    // A right password does not wipe the count.
    let right = c
        .req(
            "join",
            json!({ "room": "vault", "password": "open sesame" }),
        )
        .await
        .unwrap();
    assert_eq!(right["members"], 1);
    c.req("leave", json!({ "room": "vault" })).await.unwrap();
    let third = c
        .req("join", json!({ "room": "vault", "password": "c" }))
        .await;
    // The third wrong one: refused, then the goodbye and the close (its answer may be lost to
    // the close).
    if let Err(e) = third {
        assert!(e.code == "wrong_password" || e.code == "transport", "{e:?}");
    }
    let bye = c.bye().await;
    assert_eq!(
        (bye["code"].as_u64(), bye["name"].as_str()),
        (Some(4010), Some("too_many_guesses"))
    );
    assert_eq!(
        c.closed().await,
        None,
        "TCP has no close code; the bye carries it"
    );
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_password_check_at_a_time_per_connection() {
    let hub = hub(config(), None);
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    let c = Client::tcp(addr, Some(&token("eager", "d"))).await;
    // Two guesses at once on one connection: one is checked, the other is `busy` at once.
    let (a, b) = tokio::join!(
        c.req("join", json!({ "room": "vault", "password": "x" })),
        c.req("join", json!({ "room": "vault", "password": "y" })),
    );
    let mut codes = vec![a.unwrap_err().code, b.unwrap_err().code];
    codes.sort();
    assert_eq!(codes, ["busy", "wrong_password"]);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_is_rate_limited_and_does_not_keep_others_out() {
    let hub = hub(
        config().with_limits(
            HubLimits::default()
                .with_connection_rate(None)
                .with_message_rate(None)
                .with_password_guess_rate_per_ip(Rate::new(1, 4))
                // an address's share is half the slots: 6, so no guess of the six is `busy`
                .with_password_checks(12),
        ),
        None,
    );
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let (door, addr) = chat_tcp(&hub);
    // Six connections from 127.0.0.2 guess at once: four fit the address's burst and are
    // checked, the other two are refused before any check runs. (At once, not one after the
    // other: Argon2 checks on a loaded machine can take long enough for the 1-a-second refill
    // to let a fifth through; at once, all six are counted within milliseconds.)
    let mut guessers = Vec::new();
    for n in 0..6 {
        let t = token(&format!("g{n}"), "d");
        guessers.push(Client::tcp_from(addr, "127.0.0.2", Some(&t)).await);
    }
    let joins = guessers
        .iter()
        .map(|c| c.req("join", json!({ "room": "vault", "password": "nope" })));
    let mut codes: Vec<String> = futures_util::future::join_all(joins)
        .await
        .into_iter()
        .map(|r| r.unwrap_err().code)
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "guessing_too_fast",
            "guessing_too_fast",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
        ]
    );
    // Another address's right password gets in meanwhile.
    let friend = Client::tcp(addr, Some(&token("friend", "d"))).await;
    let r = friend
        .req(
            "join",
            json!({ "room": "vault", "password": "open sesame" }),
        )
        .await
        .unwrap();
    assert_eq!(r["room"], "vault");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_sign_in_cannot_keep_a_user_out_of_any_door() {
    use chinwag_hub::doors::chat::ChatDoor;
    use chinwag_hub::doors::tok::TokDoor;
    use chinwag_transport::budget::ConnectionBudget;
    use chinwag_transport::tcp::TcpAcceptor;

    // The chat door and the tok door on TCP share one budget of 20 sockets, of which 5 may be
    // held by connections that have not signed in.
    let budget = ConnectionBudget::new(20).with_pending_share(5);
    let hub = hub(config(), None);
    let bind = || {
        TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default())
            .unwrap()
            .with_budget(budget.clone())
    };
    let chat = ChatDoor::new(hub.clone()).serve(bind());
    let tok = TokDoor::new(hub.clone()).serve(bind());
    let (chat_addr, tok_addr) = (addr_of(&chat), addr_of(&tok));
    // A flood of sockets that never send a token, on both doors.
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(tokio::net::TcpStream::connect(chat_addr).await.unwrap());
        flood.push(tokio::net::TcpStream::connect(tok_addr).await.unwrap());
    }
    // `connect` returns once the kernel has the connection; the doors accept (and evict) on
    // their own tasks: wait for the 75 evictions (80 sockets, 5 pending places), bounded.
    let deadline = std::time::Instant::now() + DEADLINE;
    while budget.evicted() < 75 {
        assert!(
            std::time::Instant::now() < deadline,
            "evicted {} of 75",
            budget.evicted()
        );
        assert!(budget.pending() <= 5, "pending {}", budget.pending());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(budget.pending() <= 5, "pending {}", budget.pending());
    // A user who signs in promptly gets in...
    let c = Client::tcp(chat_addr, Some(&token("legit", "d"))).await;
    assert_eq!(c.whoami().await["user"], "legit");
    // ...and once signed in, no flood evicts it.
    for _ in 0..40 {
        flood.push(tokio::net::TcpStream::connect(tok_addr).await.unwrap());
    }
    assert_eq!(c.whoami().await["user"], "legit");
    assert_eq!(hub.connections_of("legit").len(), 1);
    drop(flood);
    hub.shutdown(DEADLINE).await;
    chat.shutdown(DEADLINE).await;
    tok.shutdown(DEADLINE).await;
}
