//! `chinwag::client` against a real server (`chinwag::Server::builder()` on loopback), over
//! TCP and WebSocket: sign-in, direct messages with automatic acknowledgements, rooms,
//! history, presence, the server's error codes, reconnects by the close-code table, recovery
//! with `since` and the gap when there is none, and the client's bounds (events not read,
//! calls in flight). No sleeps: every wait is for an event or a bounded poll under `DEADLINE`.
#![cfg(any(feature = "ws-fastwebsockets", feature = "ws-yawc"))]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chinwag::client::{ChatError, Client, Event, Events, History};
use chinwag::hub::auth::JwtIssuer;
use chinwag::hub::{
    App, Body, Close, CloseCode, Device, Hub, HubLimits, Incoming, KeepHistory, Rejection,
    RoomOptions,
};
use chinwag::ws::{OriginPolicy, WsConfig};
use chinwag::{Server, WsEngine};
use tokio::sync::Semaphore;

const SECRET: &[u8] = b"the client tests' HS256 secret, long enough";
const DEADLINE: Duration = Duration::from_secs(20);

/// The server's engine: fastwebsockets when it is compiled in (`cargo test --workspace`, where
/// chinwag-server turns every engine on), else yawc (the dev-dependency on this crate turns on
/// yawc but not fastwebsockets, so that the facade with only `ws-yawc` pulls no fastwebsockets
/// crate, dev-dependencies included).
#[cfg(feature = "ws-fastwebsockets")]
const ENGINE: WsEngine = WsEngine::FastWebSockets;
#[cfg(not(feature = "ws-fastwebsockets"))]
const ENGINE: WsEngine = WsEngine::Yawc;

fn token(user: &str) -> String {
    JwtIssuer::hs256(SECRET).issue(user, Some("d"), Duration::from_secs(3600))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(app: Option<Arc<dyn App>>) -> Server {
    let mut b = Server::builder()
        .http(loopback())
        .chat_tcp(loopback())
        .engine(ENGINE)
        .ws_config(WsConfig::default().with_origin(OriginPolicy::any()))
        .jwt_secret(SECRET)
        .limits(
            HubLimits::default()
                .with_connection_rate(None)
                .with_message_rate(None),
        );
    if let Some(app) = app {
        b = b.app(app);
    }
    b.start().await.expect("server starts")
}

/// The server's chat door over TCP and over WebSocket.
fn urls(server: &Server) -> [String; 2] {
    [
        format!("tcp://{}", server.chat_tcp_addr().unwrap()),
        server.chat_url().unwrap(),
    ]
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"))
}

async fn connect(url: &str, user: &str) -> (Client, Events) {
    within(
        "connect",
        Client::builder(url)
            .token(token(user))
            .backoff(Duration::from_millis(1), Duration::from_millis(20))
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("{user} signs in at {url}: {e}"))
}

/// The next event `pick` takes, skipping the others.
async fn wait_for<T>(
    events: &mut Events,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let ev = events
                .next()
                .await
                .unwrap_or_else(|| panic!("events ended before {what}"));
            if let Some(t) = pick(ev) {
                return t;
            }
        }
    })
    .await
}

/// Polls `cond` until it holds, within the deadline.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

async fn queued(hub: &Hub, user: &str) -> u64 {
    hub.queue().len(user).await.unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_are_received_and_acknowledged_by_themselves() {
    let server = start(None).await;
    for (i, url) in urls(&server).iter().enumerate() {
        let (ada, bob) = (format!("ada{i}"), format!("bob{i}"));
        let (a, mut a_ev) = connect(url, &ada).await;
        let (b, _b_ev) = connect(url, &bob).await;
        assert_eq!(a.whoami().await.unwrap().user, ada);
        assert_eq!(a.me().unwrap().user, ada);

        let sent = b.send(&ada, "hello").await.unwrap();
        assert!(sent.queued);
        let m = wait_for(&mut a_ev, "the message", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
        assert_eq!((m.id, m.text()), (sent.id, Some("hello")));
        assert_eq!(m.from.as_ref().unwrap().user, bob);
        assert_eq!(a.last_message_id(), sent.id);
        // handed out: acknowledged, so the server's offline queue is empty again
        let hub = server.hub().clone();
        within("the ack", async {
            while queued(&hub, &ada).await > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;

        // a binary body goes as base64 and comes back as bytes
        b.send(&ada, vec![0u8, 159, 255]).await.unwrap();
        let m = wait_for(&mut a_ev, "binary", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
        assert!(m.body.is_binary());
        assert_eq!(&m.body.bytes()[..], &[0u8, 159, 255]);

        // live only to an offline user: the server's code
        let e = b
            .send_with("nobody-here", "x", Some(Duration::ZERO))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "offline", "{e}");
        a.close().await;
        b.close().await;
    }
    server.shutdown(DEADLINE).await;
}

/// The chat client on the yawc engine (`ChatOptions`' engine choice), against the server on
/// [`ENGINE`]: a direct message both ways.
#[cfg(feature = "ws-yawc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_runs_on_yawc() {
    let server = start(None).await;
    let url = server.chat_url().unwrap();
    let yawc_client = |user: &'static str| {
        Client::builder(&url)
            .token(token(user))
            .engine(WsEngine::Yawc)
            .connect()
    };
    let (a, mut a_ev) = within("connect", yawc_client("ada-y")).await.unwrap();
    let (b, _b_ev) = within("connect", yawc_client("bob-y")).await.unwrap();
    let sent = b.send("ada-y", "over yawc").await.unwrap();
    let m = wait_for(&mut a_ev, "the message", |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!((m.id, m.text()), (sent.id, Some("over yawc")));
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_acks_leave_messages_queued_until_acknowledged() {
    let server = start(None).await;
    let url = &urls(&server)[0];
    let (a, mut a_ev) = within(
        "connect",
        Client::builder(url)
            .token(token("cara"))
            .auto_ack(false)
            .connect(),
    )
    .await
    .unwrap();
    let (b, _b_ev) = connect(url, "dan").await;
    let sent = b.send("cara", "keep me").await.unwrap();
    let m = wait_for(&mut a_ev, "message", |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(m.id, sent.id);
    assert_eq!(
        queued(server.hub(), "cara").await,
        1,
        "not acknowledged yet"
    );
    assert_eq!(a.ack(m.id).await.unwrap(), 1);
    assert_eq!(queued(server.hub(), "cara").await, 0);
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_history_members_and_presence() {
    let server = start(None).await;
    let hub = server.hub().clone();
    hub.create_room("desk", RoomOptions::new().with_presence_events(true))
        .await
        .unwrap();
    for (i, url) in urls(&server).iter().enumerate() {
        let (eve, fay) = (format!("eve{i}"), format!("fay{i}"));
        let (e, mut e_ev) = connect(url, &eve).await;
        let (f, mut f_ev) = connect(url, &fay).await;
        let room = format!("lobby{i}");
        let j = e.join(&room).await.unwrap();
        assert_eq!((j.seq, j.members), (0, 1));
        f.join(&room).await.unwrap();
        assert_eq!(e.joined(), vec![room.clone()]);

        let p = f.publish(&room, "hi all").await.unwrap();
        assert_eq!((p.seq, p.delivered), (1, 2));
        for ev in [&mut e_ev, &mut f_ev] {
            let m = wait_for(ev, "publish", |e| match e {
                Event::Room(m) => Some(m),
                _ => None,
            })
            .await;
            assert_eq!(
                (m.room.as_str(), m.seq, m.text()),
                (room.as_str(), 1, Some("hi all"))
            );
        }
        assert_eq!(e.position(&room), Some((j.epoch, 1)));

        let page = e.history(History::room(&room)).await.unwrap();
        assert_eq!(page.last, 1);
        assert_eq!(page.publications.len(), 1);
        assert_eq!(page.publications[0].text(), Some("hi all"));

        // the conversation's history: both directions, from either side
        f.send(&eve, "psst").await.unwrap();
        let conv = e.history(History::with(&fay)).await.unwrap();
        assert_eq!(conv.messages.len(), 1);
        assert_eq!(conv.messages[0].body.as_text(), Some("psst"));

        let members = e.members(&room, None, None).await.unwrap();
        let mut users: Vec<_> = members.members.iter().map(|m| m.user.clone()).collect();
        users.sort();
        assert_eq!(users, vec![eve.clone(), fay.clone()]);
        assert!(e.rooms().await.unwrap().iter().any(|r| r.room == room));
        let online = e.online(&[&fay, "nobody"]).await.unwrap();
        assert_eq!(online.users[&fay], vec!["d".to_owned()]);
        assert!(online.users["nobody"].is_empty());
        assert_eq!(
            e.app("for the application").await.unwrap(),
            None,
            "no application: no answer"
        );

        // presence: only rooms made with presence events have them
        e.join("desk").await.unwrap();
        f.join("desk").await.unwrap();
        let p = wait_for(&mut e_ev, "presence join", |e| match e {
            Event::Presence(p) => Some(p),
            _ => None,
        })
        .await;
        assert_eq!(
            (p.room.as_str(), p.user.as_str(), p.event.as_str()),
            ("desk", fay.as_str(), "join")
        );
        assert!(f.leave("desk").await.unwrap());
        let p = wait_for(&mut e_ev, "presence leave", |e| match e {
            Event::Presence(p) => Some(p),
            _ => None,
        })
        .await;
        assert_eq!((p.user.as_str(), p.event.as_str()), (fay.as_str(), "leave"));

        // an error carries the server's code
        let err = f.publish("desk", "not in it any more").await.unwrap_err();
        assert_eq!(err.code(), "not_member", "{err}");
        e.leave("desk").await.unwrap();
        e.close().await;
        f.close().await;
    }
    server.shutdown(DEADLINE).await;
}

/// Refuses bodies that contain "spam"; holds app messages at a gate, counting how many are
/// inside at once.
struct Gatekeeper {
    gate: Arc<Semaphore>,
    inside: AtomicUsize,
    most: AtomicUsize,
    entered: AtomicUsize,
}

impl Default for Gatekeeper {
    fn default() -> Self {
        Gatekeeper {
            gate: Arc::new(Semaphore::new(0)),
            inside: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            entered: AtomicUsize::new(0),
        }
    }
}

impl App for Gatekeeper {
    fn before_receive(&self, _from: &Device, msg: Incoming) -> Result<Incoming, Rejection> {
        match &msg {
            Incoming::Direct { body, .. } | Incoming::Publish { body, .. }
                if body.as_text().is_some_and(|t| t.contains("spam")) =>
            {
                Err(Rejection::new("no spam here"))
            }
            _ => Ok(msg),
        }
    }

    /// Answers `ask:X` with `answer:X`, after the gate lets it through.
    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        _conn: &'a chinwag::hub::Conn,
        body: Body,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<Body>, Rejection>> + Send + 'a>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            self.inside.fetch_sub(1, Ordering::SeqCst);
            Ok(body
                .as_text()
                .and_then(|t| t.strip_prefix("ask:"))
                .map(|x| Body::text(format!("answer:{x}"))))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reads_once_and_calls_in_flight_are_bounded() {
    let app = Arc::new(Gatekeeper::default());
    let server = start(Some(app.clone())).await;
    let url = &urls(&server)[1];
    let (c, _ev) = within(
        "connect",
        Client::builder(url)
            .token(token("gil"))
            .max_in_flight(2)
            .connect(),
    )
    .await
    .unwrap();

    // The server's message is "refused: <why>": shown once, not "refused: refused: ...".
    let e: ChatError = c.send("gil", "buy spam").await.unwrap_err();
    assert_eq!(e.code(), "refused");
    assert!(e.message().contains("no spam here"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("refused"), "{shown}");
    assert_eq!(shown.matches("refused").count(), 1, "{shown}");

    // Four app messages, two slots in the client. The server hands one connection's app
    // messages to the application one at a time, in order: one at the gate, one waiting
    // behind it, two waiting for a slot in the client.
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.app(format!("job {i}")).await })
        })
        .collect();
    until("one call at the gate, two in flight", || {
        app.entered.load(Ordering::SeqCst) == 1 && c.in_flight() == 2
    })
    .await;
    for n in 1..=3 {
        app.gate.add_permits(1);
        until("the next one at the gate", || {
            app.entered.load(Ordering::SeqCst) == n + 1 && c.in_flight() == (4 - n).min(2)
        })
        .await;
    }
    app.gate.add_permits(1);
    for call in calls {
        within("app call", call).await.unwrap().unwrap();
    }
    assert_eq!(app.entered.load(Ordering::SeqCst), 4);
    assert_eq!(
        app.most.load(Ordering::SeqCst),
        1,
        "one connection's app messages reach the application one at a time"
    );
    assert_eq!(c.in_flight(), 0);
    // The application's answer comes back as the call's result.
    app.gate.add_permits(1);
    let answer = within("app answer", c.app("ask:why")).await.unwrap();
    assert_eq!(
        answer.as_ref().and_then(|b| b.as_text()),
        Some("answer:why")
    );
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_buffer_holds_the_connection_and_loses_nothing() {
    let server = start(None).await;
    let url = &urls(&server)[0];
    let (_a, mut a_ev) = within(
        "connect",
        Client::builder(url)
            .token(token("hal"))
            .event_buffer(4)
            .connect(),
    )
    .await
    .unwrap();
    let (b, _b_ev) = connect(url, "ivy").await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(b.send("hal", format!("m{i}")).await.unwrap().id);
    }
    // Nobody reads: the buffer fills to its bound and no further.
    until("the buffer is full", || a_ev.len() == 4).await;
    assert_eq!(a_ev.len(), 4);
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let m = wait_for(&mut a_ev, "the next message", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
        assert!(a_ev.len() <= 4);
        got.push(m.id);
    }
    assert_eq!(got, ids, "every message once, in order");
    let hub = server.hub().clone();
    within("all acknowledged", async {
        while queued(&hub, "hal").await > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.shutdown(DEADLINE).await;
}

/// Closes `user`'s connections with `code`.
fn close_all(hub: &Hub, user: &str, code: CloseCode) -> usize {
    let conns = hub.connections_of(user);
    for c in &conns {
        hub.close(c, Close::new(code, "test close"));
    }
    conns.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_backoff_code_and_rejoins() {
    let server = start(None).await;
    let hub = server.hub().clone();
    for (i, url) in urls(&server).iter().enumerate() {
        let user = format!("jo{i}");
        let room = format!("club{i}");
        let (c, mut ev) = connect(url, &user).await;
        c.join(&room).await.unwrap();
        let first = c.me().unwrap();
        assert_eq!(close_all(&hub, &user, CloseCode::TRY_AGAIN_LATER), 1);
        let bye = wait_for(&mut ev, "bye", |e| match e {
            Event::Bye(b) => Some(b),
            _ => None,
        })
        .await;
        assert_eq!((bye.code, bye.reconnect.as_str()), (1013, "backoff"));
        let d = wait_for(&mut ev, "disconnected", |e| match e {
            Event::Disconnected(d) => Some(d),
            _ => None,
        })
        .await;
        assert!(d.will_reconnect);
        assert_eq!((d.close.code, d.close.reconnect), (1013, "backoff"));
        let r = wait_for(&mut ev, "reconnected", |e| match e {
            Event::Reconnected(r) => Some(r),
            _ => None,
        })
        .await;
        assert_eq!(r.me.user, user);
        assert_ne!(r.me.conn, first.conn, "a new connection");
        assert_eq!(r.rooms.len(), 1);
        assert_eq!(r.rooms[0].room, room);
        // the room was joined again: a publish reaches it
        c.publish(&room, "back").await.unwrap();
        let m = wait_for(&mut ev, "publish", |e| match e {
            Event::Room(m) => Some(m),
            _ => None,
        })
        .await;
        assert_eq!(m.text(), Some("back"));
        assert!(!c.is_closed());
        c.close().await;
        let info = wait_for(&mut ev, "closed", |e| match e {
            Event::Closed(i) => Some(i),
            _ => None,
        })
        .await;
        assert_eq!(info.code, 1000);
        assert!(ev.next().await.is_none(), "nothing after Closed");
    }
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_and_replaced_clients_do_not_reconnect() {
    let server = start(None).await;
    let hub = server.hub().clone();
    for (i, url) in urls(&server).iter().enumerate() {
        // kicked: 4004, never
        let user = format!("kim{i}");
        let (c, mut ev) = connect(url, &user).await;
        assert_eq!(hub.kick(&user, None, "bye now"), 1);
        let d = wait_for(&mut ev, "disconnected", |e| match e {
            Event::Disconnected(d) => Some(d),
            _ => None,
        })
        .await;
        assert!(!d.will_reconnect);
        assert_eq!((d.close.code, d.close.reason.as_str()), (4004, "bye now"));
        let info = wait_for(&mut ev, "closed", |e| match e {
            Event::Closed(i) => Some(i),
            _ => None,
        })
        .await;
        assert_eq!(
            (info.code, info.name, info.reconnect),
            (4004, "kicked", "never")
        );
        assert!(ev.next().await.is_none());
        assert!(c.is_closed());
        let e = c.whoami().await.unwrap_err();
        assert!(e.is_closed(), "{e}");
        assert!(hub.connections_of(&user).is_empty(), "it did not come back");

        // replaced: 4003, never (a reconnect would replace the newer sign-on in turn)
        let user = format!("lee{i}");
        let (old, mut old_ev) = connect(url, &user).await;
        let (new, _new_ev) = connect(url, &user).await;
        let info = wait_for(&mut old_ev, "closed", |e| match e {
            Event::Closed(i) => Some(i),
            _ => None,
        })
        .await;
        assert_eq!((info.code, info.name), (4003, "replaced"));
        assert!(old.is_closed());
        assert_eq!(new.whoami().await.unwrap().user, user);
        assert_eq!(hub.connections_of(&user).len(), 1);
    }
    server.shutdown(DEADLINE).await;
}

/// A client whose reconnect waits for `gate` (its token function), so the test decides what
/// happens while it is away.
async fn gated(url: &str, user: &str, gate: Arc<Semaphore>) -> (Client, Events) {
    let user = user.to_owned();
    within(
        "connect",
        Client::builder(url)
            .token_fn(move |req| {
                let (gate, user) = (gate.clone(), user.clone());
                async move {
                    if req.reconnect {
                        gate.acquire().await.unwrap().forget();
                    }
                    Ok::<_, String>(token(&user))
                }
            })
            .backoff(Duration::from_millis(1), Duration::from_millis(20))
            .connect(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_recovers_what_was_published_meanwhile() {
    let server = start(None).await;
    let hub = server.hub().clone();
    for (i, url) in urls(&server).iter().enumerate() {
        let room = format!("stream{i}");
        let (pub_user, user) = (format!("pat{i}"), format!("quin{i}"));
        let gate = Arc::new(Semaphore::new(0));
        let (c, mut ev) = gated(url, &user, gate.clone()).await;
        let (p, _p_ev) = connect(url, &pub_user).await;
        let j = c.join(&room).await.unwrap();
        p.join(&room).await.unwrap();
        p.publish(&room, "one").await.unwrap();
        wait_for(&mut ev, "seq 1", |e| match e {
            Event::Room(m) if m.seq == 1 => Some(()),
            _ => None,
        })
        .await;

        close_all(&hub, &user, CloseCode::GOING_AWAY);
        wait_for(&mut ev, "disconnected", |e| match e {
            Event::Disconnected(d) => Some(d),
            _ => None,
        })
        .await;
        until("gone", || hub.connections_of(&user).is_empty()).await;
        p.publish(&room, "two").await.unwrap();
        p.publish(&room, "three").await.unwrap();
        gate.add_permits(1);

        let mut seen = Vec::new();
        let r = wait_for(&mut ev, "reconnected", |e| match e {
            Event::Room(m) => {
                seen.push((m.seq, m.text().unwrap().to_owned()));
                None
            }
            Event::Gap(g) => panic!("{g:?}"),
            Event::Reconnected(r) => Some(r),
            _ => None,
        })
        .await;
        assert_eq!(r.rooms.len(), 1);
        assert_eq!(r.rooms[0].recovered, Some(true), "{:?}", r.rooms[0]);
        assert_eq!(r.rooms[0].missed, Some(2));
        // The recovered publishes come before the join result on the wire; their events may
        // be handed out just after Reconnected.
        while seen.len() < 2 {
            let m = wait_for(&mut ev, "recovered", |e| match e {
                Event::Room(m) => Some(m),
                _ => None,
            })
            .await;
            seen.push((m.seq, m.text().unwrap().to_owned()));
        }
        assert_eq!(seen, vec![(2, "two".to_owned()), (3, "three".to_owned())]);
        assert_eq!(c.position(&room), Some((j.epoch, 3)));
    }
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_without_history_reports_the_gap() {
    let server = start(None).await;
    let hub = server.hub().clone();
    hub.create_room("nohist", RoomOptions::new().with_history(KeepHistory::Off))
        .await
        .unwrap();
    let url = &urls(&server)[0];
    let gate = Arc::new(Semaphore::new(0));
    let (c, mut ev) = gated(url, "ray", gate.clone()).await;
    let (p, _p_ev) = connect(url, "sam").await;
    c.join("nohist").await.unwrap();
    p.join("nohist").await.unwrap();
    p.publish("nohist", "one").await.unwrap();
    let first = wait_for(&mut ev, "seq 1", |e| match e {
        Event::Room(m) => Some(m),
        _ => None,
    })
    .await;
    close_all(&hub, "ray", CloseCode::GOING_AWAY);
    wait_for(&mut ev, "disconnected", |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    until("gone", || hub.connections_of("ray").is_empty()).await;
    p.publish("nohist", "two").await.unwrap();
    gate.add_permits(1);
    let g = wait_for(&mut ev, "the gap", |e| match e {
        Event::Gap(g) => Some(g),
        Event::Room(m) => panic!("nothing is recovered without history: {m:?}"),
        _ => None,
    })
    .await;
    assert_eq!(g.room, "nohist");
    assert_eq!(g.reason, "no_history");
    assert_eq!(g.since, (first.epoch, 1));
    assert_eq!(g.now.1, 2);
    let r = wait_for(&mut ev, "reconnected", |e| match e {
        Event::Reconnected(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(r.rooms[0].recovered, Some(false));
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_have_codes() {
    let server = start(None).await;
    let url = &urls(&server)[0];
    let e = Client::builder(url)
        .token("garbage")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "auth_malformed", "{e}");
    let e = Client::builder("http://x")
        .token("t")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "connect");
    let e = Client::builder(url).connect().await.unwrap_err();
    assert_eq!(e.code(), "connect", "no token: {e}");
    server.shutdown(DEADLINE).await;
}

/// `local_ip`: the server sees the connection come from that address, over TCP and over
/// WebSocket (a plain listener stands in for the server and hangs up).
#[tokio::test]
async fn connects_from_the_local_address_given() {
    let ip: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    for scheme in ["tcp", "ws"] {
        let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = match scheme {
            "tcp" => format!("tcp://{addr}"),
            _ => format!("ws://{addr}/gotalk/"),
        };
        let connecting = tokio::spawn(Client::builder(&url).token("t").local_ip(ip).connect());
        let (socket, from) = within("accept", listener.accept()).await.unwrap();
        assert_eq!(from.ip(), ip, "{scheme}");
        drop(socket);
        let r = within("the sign-in fails", connecting).await.unwrap();
        assert!(r.is_err(), "{scheme}: signed in without a server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_and_refused_tokens_follow_the_table() {
    let server = start(None).await;
    let hub = server.hub().clone();
    let url = &urls(&server)[0];

    // 4002 with a fixed token: nothing fresh to present, so closed.
    let (c, mut ev) = connect(url, "tess").await;
    close_all(&hub, "tess", CloseCode::TOKEN_EXPIRED);
    let info = wait_for(&mut ev, "closed", |e| match e {
        Event::Closed(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!((info.code, info.reconnect), (4002, "after_refresh"));
    assert!(c.is_closed());

    // 4002 with a token function: a fresh token, at once. Then a function that hands out
    // refused tokens gets one more try, told why, and the client ends with 4001.
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let good = Arc::new(AtomicUsize::new(2));
    let (c, mut ev) = {
        let (asked, good) = (asked.clone(), good.clone());
        within(
            "connect",
            Client::builder(url)
                .token_fn(move |req| {
                    asked.lock().unwrap().push(req.clone());
                    let ok = good
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    async move { Ok::<_, String>(if ok { token("uma") } else { "not.a.jwt".into() }) }
                })
                .backoff(Duration::from_millis(1), Duration::from_millis(20))
                .connect(),
        )
        .await
        .unwrap()
    };
    close_all(&hub, "uma", CloseCode::TOKEN_EXPIRED);
    let d = wait_for(&mut ev, "disconnected", |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    assert!(d.will_reconnect);
    assert_eq!(d.delay, Duration::ZERO, "after_refresh: at once");
    wait_for(&mut ev, "reconnected", |e| match e {
        Event::Reconnected(r) => Some(r),
        _ => None,
    })
    .await;
    close_all(&hub, "uma", CloseCode::GOING_AWAY);
    let info = wait_for(&mut ev, "closed", |e| match e {
        Event::Closed(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!((info.code, info.name), (4001, "auth_failed"), "{info:?}");
    assert!(info.reason.contains("malformed"), "{info:?}");
    assert!(c.is_closed());
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(!asked[0].reconnect && asked[1].reconnect);
    assert_eq!(asked[2].refused, None);
    assert_eq!(asked[3].refused.as_deref(), Some("auth_malformed"));
    server.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_attempts_are_bounded() {
    let server = start(None).await;
    let url = urls(&server)[0].clone();
    let (c, mut ev) = within(
        "connect",
        Client::builder(&url)
            .token(token("vic"))
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .reconnect_attempts(Some(3))
            .connect(),
    )
    .await
    .unwrap();
    // The server goes away for good: 1001 (backoff), then three refused connects.
    server.shutdown(DEADLINE).await;
    drop(server);
    let d = wait_for(&mut ev, "disconnected", |e| match e {
        Event::Disconnected(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!((d.close.code, d.will_reconnect), (1001, true));
    let info = wait_for(&mut ev, "closed", |e| match e {
        Event::Closed(i) => Some(i),
        _ => None,
    })
    .await;
    assert_eq!(info.reason, "gave up after 3 reconnect attempts");
    let e = c.whoami().await.unwrap_err();
    assert!(e.is_closed(), "{e}");
}

/// An application that stopped reading can still close the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_does_not_wait_for_the_application_to_read() {
    let server = start(None).await;
    let url = &urls(&server)[1];
    let (a, a_ev) = within(
        "connect",
        Client::builder(url)
            .token(token("wes"))
            .event_buffer(1)
            .connect(),
    )
    .await
    .unwrap();
    let (b, _b_ev) = connect(url, "xia").await;
    for i in 0..10 {
        b.send("wes", format!("m{i}")).await.unwrap();
    }
    until("the buffer is full", || a_ev.len() == 1).await;
    within("close", a.close()).await;
    assert!(a.is_closed());
    until("the server saw it go", || {
        server.hub().connections_of("wes").is_empty()
    })
    .await;
    // nothing was acknowledged: all ten wait in the offline queue
    assert_eq!(queued(server.hub(), "wes").await, 10);
    server.shutdown(DEADLINE).await;
}

/// A member that does not read loses publishes on the server's side (its send queue is
/// full); once it reads again, the jump in `seq` is reported as a gap just before the
/// publish after it, and every other publish comes once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_dropped_for_a_slow_member_are_reported_as_a_gap() {
    let server = start(None).await;
    let url = &urls(&server)[0];
    let (slow, mut slow_ev) = within(
        "connect",
        Client::builder(url)
            .token(token("yan"))
            .event_buffer(1)
            .connect(),
    )
    .await
    .unwrap();
    let (p, mut p_ev) = connect(url, "zed").await;
    slow.join("flood").await.unwrap();
    p.join("flood").await.unwrap();
    // The publisher reads its own copies all along.
    let drain = tokio::spawn(async move { while p_ev.next().await.is_some() {} });
    let body = "x".repeat(60_000);
    let mut published = 0u64;
    let mut dropped = false;
    while !dropped {
        assert!(
            published < 5_000,
            "no publish was ever dropped for the slow member"
        );
        let r = within("publish", p.publish("flood", body.as_str()))
            .await
            .unwrap();
        published = r.seq;
        dropped = r.dropped > 0;
    }
    let last = within("publish", p.publish("flood", "the end"))
        .await
        .unwrap()
        .seq;

    let mut seqs = Vec::new();
    let mut gaps = Vec::new();
    within("the slow member catches up", async {
        loop {
            match slow_ev.next().await.expect("events go on") {
                Event::Room(m) => {
                    seqs.push(m.seq);
                    if m.seq == last {
                        break;
                    }
                }
                Event::Gap(g) => gaps.push((g, seqs.len())),
                _ => {}
            }
        }
    })
    .await;
    assert!(!gaps.is_empty(), "the jump is reported");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {seqs:?}"
    );
    for (g, at) in &gaps {
        assert_eq!(g.reason, "missed");
        // just before the publish after the hole, and it spans exactly the missing seqs
        assert_eq!(seqs[*at - 1], g.since.1, "{g:?}");
        assert_eq!(seqs[*at], g.now.1 + 1, "{g:?}");
    }
    let missing: u64 = gaps.iter().map(|(g, _)| g.now.1 - g.since.1).sum();
    assert_eq!(
        seqs.len() as u64 + missing,
        last,
        "every seq either came or is in a gap"
    );
    drain.abort();
    server.shutdown(DEADLINE).await;
}

/// The client and its events move between tasks.
#[test]
fn the_client_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Client>();
    send::<Events>();
    send_sync::<ChatError>();
}

/// Messages that wait in the event buffer when the connection drops come again after the
/// reconnect; those duplicates are not acknowledged beyond what the application was handed,
/// so nothing it has not seen leaves the server's offline queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_duplicates_are_not_acknowledged_before_the_application_has_them() {
    let server = start(None).await;
    let hub = server.hub().clone();
    let url = &urls(&server)[0];
    let (a, mut a_ev) = within(
        "connect",
        Client::builder(url)
            .token(token("abe"))
            .event_buffer(4)
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .connect(),
    )
    .await
    .unwrap();
    let (b, _b_ev) = connect(url, "bea").await;
    let first = a.me().unwrap().conn;
    b.send("abe", "m1").await.unwrap();
    b.send("abe", "m2").await.unwrap();
    until("both buffered", || a_ev.len() == 2).await;
    close_all(&hub, "abe", CloseCode::TRY_AGAIN_LATER);
    // m1, m2, the bye and the disconnect fill the buffer; the client reconnects meanwhile and
    // the server replays m1 and m2 (unacknowledged) on the new connection.
    until("reconnected", || {
        hub.connections_of("abe").iter().any(|c| c.id().0 != first)
    })
    .await;
    b.send("abe", "m3").await.unwrap();
    assert_eq!(queued(&hub, "abe").await, 3);
    let m = wait_for(&mut a_ev, "m1", |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(m.text(), Some("m1"));
    // m1 is acknowledged (on the new connection); m2 and m3 are not, until handed out.
    within("m1 acknowledged", async {
        while queued(&hub, "abe").await != 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let m = wait_for(&mut a_ev, "m2, m3", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await;
        texts.push(m.text().unwrap().to_owned());
    }
    assert_eq!(texts, ["m2", "m3"], "each once, in order");
    within("all acknowledged", async {
        while queued(&hub, "abe").await > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    server.shutdown(DEADLINE).await;
}

/// With a token function, a fresh token is presented (`refresh`) ahead of the JWT's expiry:
/// the connection stays, no reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_function_refreshes_before_the_expiry() {
    let server = start(None).await;
    let url = &urls(&server)[1];
    let (tx, mut refreshes) = tokio::sync::mpsc::unbounded_channel();
    let (c, mut ev) = within(
        "connect",
        Client::builder(url)
            .token_fn(move |req| {
                let _ = tx.send(req.clone());
                async move {
                    // valid for an hour; refreshed "30 s before" a 3600 s expiry is far off, so
                    // the test asks for it almost at once (refresh_before below)
                    Ok::<_, String>(JwtIssuer::hs256(SECRET).issue(
                        "ona",
                        Some("d"),
                        Duration::from_secs(3600),
                    ))
                }
            })
            .refresh_before(Duration::from_secs(3600 - 1))
            .connect(),
    )
    .await
    .unwrap();
    let conn = c.me().unwrap().conn;
    let first = within("the first token", refreshes.recv()).await.unwrap();
    assert!(!first.refresh && !first.reconnect);
    let again = within("a refresh", refreshes.recv()).await.unwrap();
    assert!(again.refresh && !again.reconnect, "{again:?}");
    // the server took it: it answered with the new expiry, so the next refresh is scheduled
    let third = within("the next refresh", refreshes.recv()).await.unwrap();
    assert!(third.refresh, "{third:?}");
    // the same connection, signed in all along
    assert_eq!(c.whoami().await.unwrap().conn, conn);
    assert!(ev.is_empty(), "no disconnect: {:?}", ev.next().await);
    server.shutdown(DEADLINE).await;
}
