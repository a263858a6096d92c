//! The application's async hooks on real sockets: `on_receive`'s answer back to the client
//! (the chat door's `app` result, a frame on the tok door) and its refusal; `before_join`
//! refusing and redirecting a join; `before_receive_async` transforming and refusing
//! publishes, and keeping a connection's publishes in order while one of them waits.

mod common;

use std::sync::{Arc, Mutex};

use chinwag_hub::auth::BoxFuture;
use chinwag_hub::doors::tok::TokDoor;
use chinwag_hub::{App, Body, Conn, Hub, Incoming, JoinDecision, Rejection};
use chinwag_transport::tcp::TcpAcceptor;
use common::*;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

/// Answers app messages in upper case (refuses `no`), refuses the room `secret`, sends joins
/// of `lobby` to `tenant-lobby`; publishes: `bad` refused, `slow` held until released, every
/// body upper-cased; each publish hook call reported.
struct Hooks {
    release: Arc<Notify>,
    entered: mpsc::UnboundedSender<String>,
    answered: Mutex<u32>,
}

impl App for Hooks {
    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        _conn: &'a Conn,
        body: Body,
    ) -> BoxFuture<'a, Result<Option<Body>, Rejection>> {
        Box::pin(async move {
            *self.answered.lock().unwrap() += 1;
            match body.as_text() {
                Some("no") => Err(Rejection::new("not that")),
                Some("quiet") => Ok(None),
                Some(t) => Ok(Some(Body::text(t.to_uppercase()))),
                None => Ok(Some(Body::binary(
                    body.bytes().iter().rev().copied().collect::<Vec<u8>>(),
                ))),
            }
        })
    }

    fn before_join<'a>(
        &'a self,
        _conn: &'a Conn,
        room: &'a str,
    ) -> BoxFuture<'a, Result<JoinDecision, Rejection>> {
        Box::pin(async move {
            match room {
                "secret" => Err(Rejection::new("members only")),
                "lobby" => Ok(JoinDecision::Room("tenant-lobby".into())),
                _ => Ok(JoinDecision::Allow),
            }
        })
    }

    fn before_receive_async<'a>(
        &'a self,
        _conn: &'a Conn,
        msg: Incoming,
    ) -> BoxFuture<'a, Result<Incoming, Rejection>> {
        Box::pin(async move {
            let Incoming::Publish { room, body } = msg else {
                return Ok(msg);
            };
            let text = body.as_text().unwrap_or_default().to_owned();
            let _ = self.entered.send(text.clone());
            match text.as_str() {
                "bad" => return Err(Rejection::new("no bad words")),
                "slow" => self.release.notified().await,
                _ => {}
            }
            Ok(Incoming::Publish {
                room,
                body: Body::text(text.to_uppercase()),
            })
        })
    }
}

fn hooked() -> (Hub, Arc<Notify>, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let hooks = Hooks {
        release: release.clone(),
        entered: tx,
        answered: Mutex::new(0),
    };
    let hub = Hub::builder()
        .config(config())
        .authenticator(authenticator())
        .app(Arc::new(hooks))
        .build();
    (hub, release, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_answers_go_back_to_the_client_on_the_chat_and_tok_doors() {
    let (hub, _release, _entered) = hooked();
    let (door, addr) = chat_tcp(&hub);
    let a = Client::tcp(addr, Some(&token("ann", "d"))).await;
    let r = a.req("app", json!({ "body": "hello" })).await.unwrap();
    assert_eq!(r, json!({ "body": "HELLO" }));
    let r = a
        .req("app", json!({ "body_base64": "AQID" }))
        .await
        .unwrap();
    assert_eq!(r, json!({ "body_base64": "AwIB" }));
    let r = a.req("app", json!({ "body": "quiet" })).await.unwrap();
    assert_eq!(r, json!({}));
    let e = a.req("app", json!({ "body": "no" })).await.unwrap_err();
    assert_eq!(e.code, "refused");
    assert!(e.message.contains("not that"), "{e:?}");

    // The tok door (its frames are binary bodies: answered reversed): each frame answered
    // with a frame, in order.
    let acc = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let tok = TokDoor::new(hub.clone()).serve(acc);
    let mut s = TcpStream::connect(addr_of(&tok)).await.unwrap();
    write_frame(&mut s, token("tim", "d").as_bytes()).await;
    for f in ["one", "two", "three"] {
        write_frame(&mut s, f.as_bytes()).await;
    }
    for want in ["eno", "owt", "eerht"] {
        assert_eq!(read_frame(&mut s).await.expect("a frame"), want.as_bytes());
    }
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    tok.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_hook_refuses_and_redirects() {
    let (hub, _release, _entered) = hooked();
    let (door, addr) = chat_tcp(&hub);
    let a = Client::tcp(addr, Some(&token("ann", "d"))).await;
    let e = a
        .req("join", json!({ "room": "secret" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "refused");
    assert!(e.message.contains("members only"), "{e:?}");
    assert!(
        hub.room("secret").is_none(),
        "a refused join creates no room"
    );
    a.req("join", json!({ "room": "lobby" })).await.unwrap();
    assert!(hub.room("lobby").is_none());
    assert_eq!(hub.room("tenant-lobby").unwrap().members, 1);
    a.req("join", json!({ "room": "open" })).await.unwrap();
    assert_eq!(hub.room("open").unwrap().members, 1);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_transformed_refused_and_kept_in_order_while_a_hook_waits() {
    let (hub, release, mut entered) = hooked();
    let (door, addr) = chat_tcp(&hub);
    let a = Client::tcp(addr, Some(&token("ann", "d"))).await;
    let mut b = Client::tcp(addr, Some(&token("ben", "d"))).await;
    b.req("join", json!({ "room": "desk" })).await.unwrap();
    a.req("join", json!({ "room": "desk" })).await.unwrap();
    let e = a
        .req("publish", json!({ "room": "desk", "body": "bad" }))
        .await
        .unwrap_err();
    assert_eq!(e.code, "refused");
    assert!(e.message.contains("no bad words"), "{e:?}");
    assert_eq!(entered.recv().await.unwrap(), "bad");

    // `slow` waits in its hook; `fast`, sent after it, must not overtake it.
    let slow = a.req("publish", json!({ "room": "desk", "body": "slow" }));
    let fast = a.req("publish", json!({ "room": "desk", "body": "fast" }));
    let later = async {
        assert_eq!(entered.recv().await.unwrap(), "slow");
        // A request after `fast` was answered: `fast` has reached the hub (requests of a
        // connection reach it in order) while `slow` still waits.
        a.req("whoami", json!({})).await.unwrap();
        release.notify_one();
        assert_eq!(entered.recv().await.unwrap(), "fast");
    };
    let (slow, fast, ()) = tokio::join!(slow, fast, later);
    assert_eq!(slow.unwrap()["seq"], 1);
    assert_eq!(fast.unwrap()["seq"], 2);
    for want in ["SLOW", "FAST"] {
        let m = b.note_named("room").await;
        assert_eq!(m.body["body"], want);
    }
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}
