//! Shared by the directory tests: hub nodes with JWT sign-in, a chat door on loopback TCP and a
//! `RedisDirectory` each; a chat-protocol client (a small copy of the hub tests' one).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chinwag_cluster_redis::{DirectoryConfig, Listener, ListenerStatus, RedisDirectory};
use chinwag_hub::auth::{JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey};
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::chat::ChatDoor;
use chinwag_hub::{ConnId, Hub, HubConfig, HubLimits, NodeId, SignOn};
use chinwag_rpc::{Handlers, Peer, RpcConfig, RpcError};
use chinwag_transport::PeerAddr;
use chinwag_transport::tcp::{self, TcpAcceptor};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use chinwag_queue::{HistoryConfig, QueueConfig};
pub use chinwag_queue_redis::test_server::RedisServer;
use chinwag_queue_redis::{RedisOptions, RedisQueue};

/// A private redis-server (the helper retries on another port when the one it picked was taken
/// in between).
pub fn redis_server() -> RedisServer {
    RedisServer::start()
}

const SECRET: &[u8] = b"the cluster tests' HS256 secret, long enough";
/// How long any awaited event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn token(user: &str, device: &str) -> String {
    JwtIssuer::hs256(SECRET).issue(user, Some(device), Duration::from_secs(3600))
}

/// Reconnects quickly, so the reconnect test does not wait on the default backoff.
pub fn directory_config() -> DirectoryConfig {
    DirectoryConfig::default().with_reconnect(Duration::from_millis(20), Duration::from_millis(200))
}

/// Short leases for the lease tests (no timing is asserted: they poll Redis with a deadline).
pub fn lease_config(ttl_ms: u64) -> DirectoryConfig {
    directory_config().with_lease_ttl(Duration::from_millis(ttl_ms))
}

/// The lease of the nodes that must outlive the one a test lets die: long enough that the
/// test process starved of CPU for a moment (CI runs every test on two cores) does not fence
/// them as well, which would leave no node to sweep the dead one. They sweep every third of
/// it.
pub const SURVIVOR_LEASE_MS: u64 = 3_000;

/// Polls `f` every 20 ms until it returns true, failing after [`DEADLINE`] (for state changes
/// in Redis, which signal nothing).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < until,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Redis ACL user `name` (password `secret`, every right) and the URL connecting as it, so a
/// test can cut that node off Redis (`ACL SETUSER name off` and `CLIENT KILL USER name`).
pub async fn acl_user(server: &RedisServer, name: &str) -> String {
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", name, "on", ">secret", "~*", "&*", "+@all"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let port = server
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    format!("redis://{name}:secret@127.0.0.1:{port}/")
}

/// Cuts ACL user `name` off Redis: disabled, every connection of it killed. Its node can no
/// longer renew its lease or sign anything off, as if it had died (or been partitioned).
pub async fn cut_off(server: &RedisServer, name: &str) {
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", name, "off"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", name])
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// Cuts the listener of `node`'s node off Redis (`name` is the node's ACL user, from
/// [`acl_user`]): the user is disabled and its pub/sub connection killed, so the listener
/// drops and cannot subscribe again until [`let_listener_back`]; the node's other connections
/// stay up. Returns once the listener counted a failed attempt.
pub async fn cut_listener(server: &RedisServer, name: &str, node: &Node) {
    let mut admin = admin(server).await;
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", name, "off"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub", "USER", name])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "one pub/sub connection of {name}");
    node.status_until("failing to subscribe again", |s| {
        !s.subscribed && s.failed_attempts >= 1
    })
    .await;
}

/// Enables ACL user `name` again: its node's listener subscribes again (and catches up).
pub async fn let_listener_back(server: &RedisServer, name: &str) {
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", name, "on"])
        .query_async(&mut admin(server).await)
        .await
        .unwrap();
}

/// A connection to `server` as its default user.
pub async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One node: a hub with its own node id, a `RedisDirectory` and its listener, a chat door.
pub struct Node {
    pub hub: Hub,
    pub directory: Arc<RedisDirectory>,
    pub listener: Listener,
    pub door: DoorHandle,
    pub addr: SocketAddr,
}

impl Node {
    /// Node `id` on the Redis at `url`, under `policy`; returns once its listener subscribed.
    pub async fn start(url: &str, id: u64, policy: SignOn) -> Node {
        Node::start_with(url, id, policy, directory_config()).await
    }

    /// [`start`](Self::start) with the directory's `config`.
    pub async fn start_with(url: &str, id: u64, policy: SignOn, config: DirectoryConfig) -> Node {
        Node::build(url, url, id, policy, config, false, limits()).await
    }

    /// A node of a cluster sharing its offline queue: the Redis queue on `url` with push
    /// notices, the hub with `shared_queue` (what the facade's `redis_cluster` sets up).
    /// `directory_url` may connect as another Redis user (to cut the listener off).
    pub async fn start_shared(url: &str, directory_url: &str, id: u64, policy: SignOn) -> Node {
        Node::start_shared_with(url, directory_url, id, policy, limits(), directory_config()).await
    }

    /// [`start_shared`](Self::start_shared) with the hub's `limits` and the directory's
    /// `config`.
    pub async fn start_shared_with(
        url: &str,
        directory_url: &str,
        id: u64,
        policy: SignOn,
        limits: HubLimits,
        config: DirectoryConfig,
    ) -> Node {
        Node::build(url, directory_url, id, policy, config, true, limits).await
    }

    async fn build(
        url: &str,
        directory_url: &str,
        id: u64,
        policy: SignOn,
        config: DirectoryConfig,
        shared: bool,
        limits: HubLimits,
    ) -> Node {
        let directory = Arc::new(
            RedisDirectory::connect_with(
                directory_url,
                chinwag_cluster_redis::DEFAULT_PREFIX,
                config,
            )
            .await
            .expect("directory"),
        );
        let queue = RedisQueue::connect_with(
            url,
            QueueConfig::default(),
            RedisOptions::default().notices(directory.notices_prefix()),
        )
        .await
        .expect("queue");
        // As the facade sets them up: the queue keeps the history (one connection; a direct
        // message is queued and kept in its conversation by one script).
        let history = queue
            .history(HistoryConfig::default())
            .with_notices(directory.rooms_prefix());
        let queue = queue.keeping(history.clone()).expect("the queue's prefix");
        let config = HubConfig::default()
            .with_shared_queue(shared)
            .with_shared_history(shared)
            .with_node(NodeId(id))
            .with_sign_on(policy)
            .with_limits(limits);
        let mut hub = Hub::builder().config(config);
        if shared {
            hub = hub.queue(Arc::new(queue)).history(Arc::new(history));
        }
        let hub = hub
            .authenticator(Arc::new(JwtAuthenticator::new(JwtConfig::new(
                JwtKey::hs256(SECRET),
            ))))
            .directory(directory.clone())
            .build();
        let listener = directory.serve(&hub);
        let acc = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
        let door = ChatDoor::new(hub.clone()).serve(acc);
        let addr = match door.local_addr() {
            Some(PeerAddr::Ip(a)) => *a,
            other => panic!("door without an IP address: {other:?}"),
        };
        let node = Node {
            hub,
            directory,
            listener,
            door,
            addr,
        };
        node.status_until("subscribed and registered", |s| {
            s.subscribed && s.registered
        })
        .await;
        node
    }

    /// Waits until the listener's status satisfies `f` (woken by its changes).
    pub async fn status_until(
        &self,
        what: &str,
        f: impl Fn(&ListenerStatus) -> bool,
    ) -> ListenerStatus {
        let mut rx = self.listener.status();
        let r = tokio::time::timeout(DEADLINE, async {
            rx.wait_for(|s| f(s)).await.map(|s| s.clone())
        })
        .await;
        match r {
            Ok(Ok(s)) => s,
            _ => panic!(
                "listener not {what} within {DEADLINE:?}: {:?}",
                *self.listener.status().borrow()
            ),
        }
    }

    /// Waits until `f(hub)` holds, woken by the hub's changes.
    pub async fn until(&self, what: &str, f: impl Fn(&Hub) -> bool) {
        let mut changes = self.hub.changes();
        let r = tokio::time::timeout(DEADLINE, async {
            while !f(&self.hub) {
                changes.changed().await.expect("the hub is alive");
            }
        })
        .await;
        assert!(r.is_ok(), "not within {DEADLINE:?}: {what}");
    }

    pub async fn stop(self) {
        self.hub.shutdown(DEADLINE).await;
        self.door.shutdown(DEADLINE).await;
        tokio::time::timeout(DEADLINE, self.listener.stopped())
            .await
            .expect("the listener ends with its hub");
    }
}

/// The hub limits of the test nodes: the defaults without connection and message rates (the
/// tests connect and send in bursts from one address).
pub fn limits() -> HubLimits {
    HubLimits::default()
        .with_connection_rate(None)
        .with_message_rate(None)
}

/// Three nodes (ids 1, 2, 3) on one Redis.
pub async fn three(url: &str, policy: SignOn) -> [Node; 3] {
    [
        Node::start(url, 1, policy).await,
        Node::start(url, 2, policy).await,
        Node::start(url, 3, policy).await,
    ]
}

/// A notification the server sent.
#[derive(Debug, Clone)]
pub struct Note {
    pub name: String,
    pub body: Value,
}

/// A chat-protocol client over TCP.
pub struct Client {
    pub peer: Peer,
    pub notes: mpsc::UnboundedReceiver<Note>,
}

impl Client {
    /// Connects to `addr` without signing in.
    pub async fn connect(addr: SocketAddr) -> Client {
        let t = tcp::connect(addr, &Default::default()).await.unwrap();
        let (tx, notes) = mpsc::unbounded_channel();
        let mut h = Handlers::new();
        for name in ["message", "room", "presence", "bye"] {
            let tx = tx.clone();
            h.handle_notification(name, move |_peer, payload| {
                let tx = tx.clone();
                async move {
                    let body: Value =
                        serde_json::from_slice(&payload).expect("notifications are JSON");
                    let _ = tx.send(Note {
                        name: name.to_owned(),
                        body,
                    });
                }
            });
        }
        Client {
            peer: chinwag_rpc::connect(t, Arc::new(h), RpcConfig::client()),
            notes,
        }
    }

    /// Connects and signs in with `token` (panics if refused).
    pub async fn signed_in(addr: SocketAddr, token: &str) -> Client {
        let c = Client::connect(addr).await;
        c.req("auth", json!({ "token": token }))
            .await
            .expect("auth");
        c
    }

    /// A request; `Err` with the error text.
    pub async fn req(&self, op: &str, body: Value) -> Result<Value, String> {
        match tokio::time::timeout(DEADLINE, self.peer.request::<_, Value>(op, &body)).await {
            Err(_) => panic!("{op}: no answer within {DEADLINE:?}"),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(RpcError::Remote { message, .. })) => Err(message),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }

    /// This connection's id on its node (`whoami`).
    pub async fn conn_id(&self) -> ConnId {
        let me = self.req("whoami", json!({})).await.expect("whoami");
        ConnId(me["conn"].as_u64().expect("conn"))
    }

    /// The next notification named `bye` (skipping others), within the deadline.
    pub async fn bye(&mut self) -> Value {
        loop {
            let n = tokio::time::timeout(DEADLINE, self.notes.recv())
                .await
                .expect("a bye within the deadline")
                .expect("a bye before the connection ended");
            if n.name == "bye" {
                return n.body;
            }
        }
    }

    /// Waits for the connection to end.
    pub async fn closed(&self) {
        tokio::time::timeout(DEADLINE, self.peer.closed())
            .await
            .expect("closed within the deadline");
    }

    /// Closes it and waits until it ended.
    pub async fn close(self) {
        self.peer.close();
        self.closed().await;
    }

    /// Whether it has ended.
    pub fn is_closed(&self) -> bool {
        self.peer.close_reason().is_some()
    }
}

/// Asserts a replaced connection's bye: code 4003, `replaced`, never reconnect.
pub fn assert_replaced(bye: &Value) {
    assert_eq!(bye["code"], 4003, "{bye}");
    assert_eq!(bye["name"], "replaced", "{bye}");
    assert_eq!(bye["reconnect"], "never", "{bye}");
}
