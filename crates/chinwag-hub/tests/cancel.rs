//! Futures of the hub's API dropped half-way (a request whose connection went away, an
//! admission that timed out) leave nothing half-done: a user's pipeline of sends keeps going, a
//! password guess is no longer in flight, a connection whose sign-on was not decided is not
//! registered. With one thread, a guess can be held in its check exactly while the test acts:
//! the rules about checks in flight are tested here too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chinwag_hub::auth::{Authenticated, BoxFuture};
use chinwag_hub::{
    Attach, Body, Close, CloseCode, ConnRef, Device, Directory, DirectoryError, Event, Format, Hub,
    HubConfig, HubLimits, Link, LocalDirectory, RoomError, RoomOptions, SendOptions, SignOn,
    SignOnOutcome, SignedOn,
};
use chinwag_queue::{Entry, EntryId, MemoryQueue, Queue, QueueConfig, QueueError};
use chinwag_session::SendError as SessionSendError;
use chinwag_session::codec::Encoded;
use tokio::sync::{Notify, Semaphore};

const DEADLINE: Duration = Duration::from_secs(20);

/// A memory queue whose pushes wait until the test opens the gate.
struct GatedQueue {
    inner: MemoryQueue,
    gate: Arc<Semaphore>,
    waiting: Arc<Notify>,
}

impl Queue for GatedQueue {
    fn push<'a>(
        &'a self,
        recipient: &'a str,
        payload: bytes::Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<EntryId, QueueError>> {
        Box::pin(async move {
            self.waiting.notify_one();
            let _p = self.gate.acquire().await.expect("the gate stays");
            self.inner.push(recipient, payload, ttl).await
        })
    }
    fn read<'a>(
        &'a self,
        recipient: &'a str,
        after: EntryId,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, QueueError>> {
        self.inner.read(recipient, after, max)
    }
    fn ack<'a>(
        &'a self,
        recipient: &'a str,
        up_to: EntryId,
    ) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.ack(recipient, up_to)
    }
    fn len<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.len(recipient)
    }
    fn remove<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, QueueError>> {
        self.inner.remove(recipient)
    }
    fn sweep(&self) -> BoxFuture<'_, Result<u64, QueueError>> {
        self.inner.sweep()
    }
}

#[tokio::test]
async fn a_sender_that_goes_away_mid_push_does_not_stall_the_users_pipeline() {
    let gate = Arc::new(Semaphore::new(0));
    let waiting = Arc::new(Notify::new());
    let queue = Arc::new(GatedQueue {
        inner: MemoryQueue::new(QueueConfig::default()),
        gate: gate.clone(),
        waiting: waiting.clone(),
    });
    let hub = Hub::builder().queue(queue.clone()).build();
    // The first send waits in the queue's push; its sender gives up (the future is dropped).
    let first = tokio::spawn({
        let hub = hub.clone();
        async move {
            hub.send("bob", Body::text("one"), SendOptions::default())
                .await
        }
    });
    tokio::time::timeout(DEADLINE, waiting.notified())
        .await
        .unwrap();
    first.abort();
    let _ = first.await;
    // The push goes on without it; a second send to the same user completes.
    gate.add_permits(2);
    let r = tokio::time::timeout(
        DEADLINE,
        hub.send("bob", Body::text("two"), SendOptions::default()),
    )
    .await
    .expect("the pipeline is not stalled")
    .unwrap();
    assert!(r.queued);
    assert_eq!(
        queue.len("bob").await.unwrap(),
        2,
        "the first was stored too"
    );
    hub.shutdown(DEADLINE).await;
}

/// A link that takes everything and never closes.
struct NullLink;

impl Link for NullLink {
    fn try_send(&self, _: Encoded) -> Result<(), SessionSendError> {
        Ok(())
    }
    fn send(&self, _: Encoded, _: Duration) -> BoxFuture<'_, Result<(), SessionSendError>> {
        Box::pin(async { Ok(()) })
    }
    fn close(&self, _: &Close, _: Option<Encoded>) {}
    fn queue_len(&self) -> usize {
        0
    }
    fn is_closed(&self) -> bool {
        false
    }
}

struct NoFormat;

impl Format for NoFormat {
    fn encode(&self, _: &Event) -> Option<Encoded> {
        None
    }
}

fn attach_of(hub: &Hub) -> Attach {
    Attach::new(
        Arc::new(NullLink),
        hub.register_format(Arc::new(NoFormat)),
        "test",
    )
}

// One thread: the spawned join runs, up to its wait for the check on a blocking thread, exactly
// when the test yields; then it is dropped with its guess in flight.
#[tokio::test]
async fn a_join_dropped_during_its_password_check_leaves_no_guess_in_flight() {
    let hub = Hub::builder().build();
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let conn = hub
        .attach(Authenticated::new(Device::new("ada", "d")), attach_of(&hub))
        .await
        .unwrap();
    // A guess starts, and is dropped while its check runs.
    let join = tokio::spawn({
        let (hub, conn) = (hub.clone(), conn.clone());
        async move { hub.join(&conn, "vault", Some("wrong")).await }
    });
    tokio::task::yield_now().await;
    join.abort();
    let _ = join.await;
    // The next guess of the same connection is not refused as one already in flight.
    let info = hub.join(&conn, "vault", Some("open sesame")).await.unwrap();
    assert_eq!(info.members, 1);
    hub.detach(&conn);
    hub.shutdown(DEADLINE).await;
}

// One thread, as above: a guess from 127.0.0.2 is held in its check while others arrive. With
// the default two Argon2 slots an address holds one: its next guess is `busy` before anything
// runs and another address's right password is checked in the other slot; a guess dropped
// while its check runs holds the share until the check ends.
#[tokio::test]
async fn one_address_holds_half_the_password_checks_until_its_checks_end() {
    let hub = Hub::builder().build();
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let attach = |user: &str, ip: &str| {
        let mut a = attach_of(&hub);
        a.ip = Some(ip.parse().unwrap());
        hub.attach(Authenticated::new(Device::new(user, "d")), a)
    };
    let (g1, g2) = (
        attach("g1", "127.0.0.2").await.unwrap(),
        attach("g2", "127.0.0.2").await.unwrap(),
    );
    let friend = attach("friend", "127.0.0.3").await.unwrap();
    let held = tokio::spawn({
        let (hub, g1) = (hub.clone(), g1.clone());
        async move { hub.join(&g1, "vault", Some("wrong")).await }
    });
    tokio::task::yield_now().await;
    assert!(!held.is_finished(), "the first guess is in its check");
    assert_eq!(
        hub.join(&g2, "vault", Some("open sesame"))
            .await
            .unwrap_err(),
        RoomError::Busy,
        "the address holds its share"
    );
    let info = hub
        .join(&friend, "vault", Some("open sesame"))
        .await
        .unwrap();
    assert_eq!(info.members, 1, "another address is checked meanwhile");
    assert_eq!(held.await.unwrap().unwrap_err(), RoomError::WrongPassword);
    // Now a guess dropped while its check runs: the check runs on (Argon2 on the blocking
    // pool cannot be stopped), and holds its address's share until it ends, then gives it back.
    let held = tokio::spawn({
        let (hub, g1) = (hub.clone(), g1.clone());
        async move { hub.join(&g1, "vault", Some("wrong again")).await }
    });
    tokio::task::yield_now().await;
    held.abort();
    assert!(held.await.unwrap_err().is_cancelled());
    assert_eq!(
        hub.join(&g2, "vault", Some("open sesame"))
            .await
            .unwrap_err(),
        RoomError::Busy,
        "the dropped guess's check still holds the share"
    );
    // The check ends on a blocking thread the test cannot await: bounded polling, one new
    // connection per try (a `busy` costs an address nothing, and no connection guesses twice).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut tries = 0;
    let joined = loop {
        tries += 1;
        let c = attach(&format!("g-{tries}"), "127.0.0.2").await.unwrap();
        match hub.join(&c, "vault", Some("open sesame")).await {
            Ok(info) => break (c, info),
            Err(RoomError::Busy) if std::time::Instant::now() < deadline => {
                hub.detach(&c);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("the share never came back: {e:?} after {tries} tries"),
        }
    };
    assert_eq!(joined.1.members, 2, "the ended check gave its share back");
    hub.detach(&joined.0);
    for c in [g1, g2, friend] {
        hub.detach(&c);
    }
    hub.shutdown(DEADLINE).await;
}

/// A link that takes everything and records the code it was closed with.
#[derive(Default)]
struct ClosingLink(Mutex<Option<u16>>);

impl ClosingLink {
    fn closed_with(&self) -> Option<u16> {
        *self.0.lock().unwrap()
    }
}

impl Link for ClosingLink {
    fn try_send(&self, _: Encoded) -> Result<(), SessionSendError> {
        Ok(())
    }
    fn send(&self, _: Encoded, _: Duration) -> BoxFuture<'_, Result<(), SessionSendError>> {
        Box::pin(async { Ok(()) })
    }
    fn close(&self, close: &Close, _: Option<Encoded>) {
        self.0.lock().unwrap().get_or_insert(close.code.0);
    }
    fn queue_len(&self) -> usize {
        0
    }
    fn is_closed(&self) -> bool {
        self.closed_with().is_some()
    }
}

// One thread, as above: while a guess of a connection is in its check, the same connection's
// further guesses are refused (`busy`) at once; the `rate_limit_strikes`-th refusal in a row
// closes it with 4008, as for messages, so a client pipelining guesses costs the server one
// answer per refusal for a bounded while, then a reconnect under the connection rate.
#[tokio::test]
async fn a_connection_that_keeps_guessing_into_refusals_is_closed_with_4008() {
    let hub = Hub::builder()
        .config(HubConfig::default().with_limits(HubLimits::default().with_rate_limit_strikes(3)))
        .build();
    hub.create_room("vault", RoomOptions::new().with_password("open sesame"))
        .await
        .unwrap();
    let link = Arc::new(ClosingLink::default());
    let attach = Attach::new(
        link.clone(),
        hub.register_format(Arc::new(NoFormat)),
        "test",
    );
    let conn = hub
        .attach(Authenticated::new(Device::new("eve", "d")), attach)
        .await
        .unwrap();
    let held = tokio::spawn({
        let (hub, conn) = (hub.clone(), conn.clone());
        async move { hub.join(&conn, "vault", Some("guess")).await }
    });
    tokio::task::yield_now().await;
    for n in 1..=3 {
        assert_eq!(
            hub.join(&conn, "vault", Some("another")).await.unwrap_err(),
            RoomError::Busy
        );
        let closed = link.closed_with();
        if n < 3 {
            assert_eq!(closed, None, "refusal {n} of 3");
        } else {
            assert_eq!(closed, Some(CloseCode::RATE_LIMITED.0), "the 3rd in a row");
        }
    }
    let _ = held.await;
    hub.detach(&conn);
    hub.shutdown(DEADLINE).await;
}

/// A directory whose sign-on decisions wait until the test lets them through.
struct SlowDirectory {
    inner: LocalDirectory,
    waiting: Arc<Notify>,
    seen: Mutex<u32>,
}

impl Directory for SlowDirectory {
    fn sign_on<'a>(
        &'a self,
        device: &'a Device,
        conn: ConnRef,
        policy: SignOn,
    ) -> BoxFuture<'a, Result<SignOnOutcome, DirectoryError>> {
        Box::pin(async move {
            *self.seen.lock().unwrap() += 1;
            self.waiting.notify_one();
            std::future::pending::<()>().await;
            self.inner.sign_on(device, conn, policy).await
        })
    }
    fn sign_off<'a>(&'a self, user: &'a str, conn: ConnRef) -> BoxFuture<'a, bool> {
        self.inner.sign_off(user, conn)
    }
    fn connections<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SignedOn>, DirectoryError>> {
        self.inner.connections(user)
    }
    fn online_users(&self) -> BoxFuture<'_, Result<u64, DirectoryError>> {
        self.inner.online_users()
    }
    fn online_page<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, DirectoryError>> {
        self.inner.online_page(after, limit)
    }
}

#[tokio::test]
async fn an_attach_dropped_before_its_sign_on_is_decided_registers_nothing() {
    let waiting = Arc::new(Notify::new());
    let dir = Arc::new(SlowDirectory {
        inner: LocalDirectory::new(),
        waiting: waiting.clone(),
        seen: Mutex::new(0),
    });
    let hub = Hub::builder()
        .config(HubConfig::default())
        .directory(dir.clone())
        .build();
    let attach = tokio::spawn({
        let hub = hub.clone();
        let a = attach_of(&hub);
        async move {
            hub.attach(Authenticated::new(Device::new("ada", "d")), a)
                .await
                .map(|_| ())
        }
    });
    tokio::time::timeout(DEADLINE, waiting.notified())
        .await
        .unwrap();
    assert_eq!(
        hub.connection_count(),
        1,
        "registered while the directory decides"
    );
    attach.abort();
    let _ = attach.await;
    assert_eq!(hub.connection_count(), 0, "taken back");
    assert!(hub.connections_of("ada").is_empty());
    assert_eq!(*dir.seen.lock().unwrap(), 1);
    hub.shutdown(DEADLINE).await;
}
