//! **chinwag**: real-time messaging for Rust — an IM hub that addresses people and rooms, not
//! sockets, with gotalk RPC, WebSocket, TCP and TLS doors. This is the crate to depend on: it
//! re-exports every layer and assembles a server from parts in a few lines.
//!
//! A complete chat server: JWT sign-in, the gotalk chat protocol over WebSocket (what
//! `chinwag.js` speaks) at `/gotalk/`, raw WebSocket rooms at `/ws?room=NAME`, the JS client at
//! `/chinwag.js`, tok-style TCP clients on a second port, offline delivery, and a graceful
//! shutdown:
//!
//! ```no_run
//! use std::time::Duration;
//! use chinwag::prelude::*;
//!
//! const SECRET: &str = "a long random secret that signs the users' tokens";
//!
//! #[chinwag::tokio::main(crate = "chinwag::tokio")]
//! async fn main() -> chinwag::Result<()> {
//!     let server = Server::builder()
//!         .http("127.0.0.1:8080".parse()?) // chat at /gotalk/, rooms at /ws, /chinwag.js
//!         .tok_tcp("127.0.0.1:4200".parse()?) // tok-style TCP clients
//!         .jwt_secret(SECRET)
//!         .sign_on(SignOn::PerDevice) // a new sign-on replaces the same device's old one
//!         .start()
//!         .await?;
//!     println!("chat on {}", server.chat_url().unwrap_or_default());
//!
//!     // Clients sign in with a JWT signed with SECRET (your login service makes them): one
//!     // for alice's phone, valid for an hour.
//!     let issuer = chinwag::hub::auth::JwtIssuer::hs256(SECRET);
//!     let token = issuer.issue("alice", Some("phone"), Duration::from_secs(3600));
//!     println!("alice's token: {token}");
//!
//!     // The server can talk to users itself; offline ones get it when they connect.
//!     let hello = Body::text("welcome to chinwag");
//!     server.hub().send("alice", hello, SendOptions::default()).await?;
//!
//!     chinwag::tokio::signal::ctrl_c().await?;
//!     // Everyone gets 1001; what was not delivered stays in the offline queue.
//!     server.shutdown(Duration::from_secs(5)).await;
//!     Ok(())
//! }
//! ```
//!
//! Clients sign in with a JWT whose `sub` is the user (and `device` the device): in an
//! `Authorization: Bearer` header, the `bearer.<token>` WebSocket subprotocol, or the chat
//! protocol's `auth` request. [`hub::auth::JwtIssuer`] makes such tokens. The chat protocol is
//! in `docs/chat-protocol.md`; the limits and their defaults in `docs/limits.md`.
//!
//! # The layers
//!
//! | module | crate | what it does |
//! |---|---|---|
//! | [`wire`] | `chinwag-wire` | sans-IO gotalk v1 codec, limits checked before allocation |
//! | [`transport`] | `chinwag-transport` | the transport seam; TCP, TLS, Unix, UDP, in-process pipes |
//! | [`ws`] | `chinwag-ws` (+ an engine) | WebSocket: config, Origin policy, acceptor, client; the engines in `ws::tungstenite` / `ws::fastwebsockets` / `ws::yawc` |
//! | [`session`] | `chinwag-session` | one connection's life: codecs, bounded send queues, timers, servers, client pools |
//! | [`rpc`] | `chinwag-rpc` | bidirectional gotalk RPC: both ends call and serve, streams, limits |
//! | [`queue`] | `chinwag-queue` (+ backends) | the offline queue: memory; `queue::redb`, `queue::redis` |
//! | [`hub`] | `chinwag-hub` | users, devices, sign-on policies, send-to-user, rooms, presence, hooks, JWT, the doors |
//!
//! Besides them: [`Server`] and [`ServerBuilder`] (the builder), [`client`] (a chat client:
//! the chat protocol over TCP or WebSocket, with reconnects and recovery, as `chinwag.js`),
//! [`Error`] (one error for all layers), [`http`] (what extra HTTP routes are written with),
//! [`api`] (the server API: the hub's operations as JSON over HTTP, `docs/server-api.md`),
//! [`proxy`] (the event proxy to an application's backend), [`prelude`], and with
//! feature `tls` the `tls` helpers. [`tokio`] is re-exported so a program can depend on
//! `chinwag` alone.
//!
//! # Features
//!
//! | feature | default | brings | gives |
//! |---|---|---|---|
//! | `ws-tungstenite` | yes | `chinwag-ws-tungstenite` (tungstenite, async-tungstenite) | `ws::tungstenite`, `WsEngine::Tungstenite` |
//! | `ws-fastwebsockets` | no | `chinwag-ws-fastwebsockets` (fastwebsockets) | `ws::fastwebsockets`, `WsEngine::FastWebSockets` |
//! | `ws-yawc` | no | `chinwag-ws-yawc` (yawc 0.5.0, MPL-2.0, with a small patch: `vendor/yawc`) | `ws::yawc`, `WsEngine::Yawc` |
//! | `tls` | no | nothing new (rustls with ring is in the transports already) | `chinwag::tls`, `ServerBuilder::tls` |
//! | `queue-redb` | no | `chinwag-queue-redb` (redb) | `queue::redb`, `ServerBuilder::redb_queue`, `redb_queue_with` |
//! | `queue-redis` | no | `chinwag-queue-redis` (redis) | `queue::redis`, `ServerBuilder::redis_queue` |
//! | `cluster-redis` | no | `chinwag-cluster-redis` (redis); turns on `queue-redis` | `cluster::redis`, `ServerBuilder::redis_cluster`, `Server::cluster_status` |
//! | `serde` | no | serde on the layers' configuration types | `HubConfig`, `WsConfig`, `QueueConfig`, `RedbOptions`, `session::ServerConfig` read from and written to files (durations as `"10s"`: `transport::duration`) |
//!
//! The engine crates are independent: `--no-default-features --features
//! ws-fastwebsockets` builds without any tungstenite code, and `--features ws-yawc` without
//! tungstenite or fastwebsockets (`cargo xtask tidy` checks both).
//! Without any engine the HTTP listener is unavailable and the TCP doors still work.
//!
//! # Errors
//!
//! Layers that have an error of the same name keep it in their module
//! (`chinwag::session::SendError` is about one connection's send queue,
//! `chinwag::hub::SendError` about a send to a user). [`Error`] wraps every layer's error,
//! converts from each (so `?` works across layers) and answers the common questions with
//! `is_*` helpers: [`is_closed`](Error::is_closed), [`is_timeout`](Error::is_timeout),
//! [`is_busy`](Error::is_busy), [`is_peer_fault`](Error::is_peer_fault), and
//! [`code`](Error::code) for the hub's stable codes.
//!
//! # Documents
//!
//! In the repository's `docs/`: `ARCHITECTURE.md` (layers and invariants), `chat-protocol.md`,
//! `limits.md` (every bound and its default), `wire.md`, `transports.md`, `websocket.md`,
//! `session.md`, `rpc.md`, `queues.md`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
mod error;
mod history;
mod server;

pub use error::{Error, Result};
pub use history::HistoryBackend;
pub use server::{
    DEFAULT_CHAT_PATH, DEFAULT_ROOMS_PATH, JS_CLIENT_PATH, QueueBackend, Server, ServerBuilder,
    ShutdownSummary, WsEngine,
};

/// The runtime chinwag runs on, re-exported so a program can depend on `chinwag` alone
/// (`#[chinwag::tokio::main(crate = "chinwag::tokio")]`).
pub use tokio;

#[doc(inline)]
pub use chinwag_wire as wire;

#[doc(inline)]
pub use chinwag_transport as transport;

#[doc(inline)]
pub use chinwag_session as session;

#[doc(inline)]
pub use chinwag_rpc as rpc;

#[doc(inline)]
pub use chinwag_hub as hub;

pub mod queue {
    //! Offline queues: the [`Queue`] trait, the [`MemoryQueue`], and the backends compiled in
    //! (`redb` with feature `queue-redb`, `redis` with `queue-redis`). Semantics
    //! (per-recipient FIFO, TTL, bounds, overflow) are those of `chinwag-queue`, and every
    //! backend passes its conformance suite.

    pub use chinwag_queue::*;

    /// The durable, embedded queue on redb (`chinwag-queue-redb`): one file, fsync per
    /// commit, group commit. Feature `queue-redb`.
    #[cfg(feature = "queue-redb")]
    #[doc(inline)]
    pub use chinwag_queue_redb as redb;

    /// The Redis queue (`chinwag-queue-redis`): atomic Lua scripts, a reconnecting
    /// connection. Feature `queue-redis`.
    #[cfg(feature = "queue-redis")]
    #[doc(inline)]
    pub use chinwag_queue_redis as redis;
}

#[cfg(feature = "cluster-redis")]
pub mod cluster {
    //! Several servers as one hub through Redis (feature `cluster-redis`):
    //! [`redis::RedisDirectory`] and its listener and node leases. Use it through
    //! [`ServerBuilder::redis_cluster`](crate::ServerBuilder::redis_cluster). Shared
    //! cluster-wide today: sign-on policies (replaced connections closed on their node), online
    //! counts, direct messages (through the shared Redis queue, one order per user) and rooms
    //! that keep history (through the shared Redis history), with their passwords and presence
    //! events and member lists (`docs/cluster.md`).

    /// The Redis cluster (`chinwag-cluster-redis`). Feature `cluster-redis`.
    #[doc(inline)]
    pub use chinwag_cluster_redis as redis;
}

pub mod ws {
    //! WebSocket: the engine-neutral part (`chinwag-ws`: [`WsConfig`], [`OriginPolicy`],
    //! [`WsAcceptor`], [`connect`], [`StaticAsset`], ...) and the engines compiled in —
    //! `tungstenite` (feature `ws-tungstenite`, default), `fastwebsockets` (feature
    //! `ws-fastwebsockets`) and `yawc` (feature `ws-yawc`). The generic types take the engine as a parameter:
    //! `WsAcceptor<ws::tungstenite::Tungstenite>`.

    pub use chinwag_ws::*;

    /// The tungstenite engine (`chinwag-ws-tungstenite`). Feature `ws-tungstenite`.
    #[cfg(feature = "ws-tungstenite")]
    #[doc(inline)]
    pub use chinwag_ws_tungstenite as tungstenite;

    /// The fastwebsockets engine (`chinwag-ws-fastwebsockets`). Feature `ws-fastwebsockets`.
    #[cfg(feature = "ws-fastwebsockets")]
    #[doc(inline)]
    pub use chinwag_ws_fastwebsockets as fastwebsockets;

    /// The yawc engine (`chinwag-ws-yawc`). Feature `ws-yawc`.
    #[cfg(feature = "ws-yawc")]
    #[doc(inline)]
    pub use chinwag_ws_yawc as yawc;
}

pub mod http;

pub mod api;
pub mod proxy;

#[cfg(feature = "tls")]
pub mod tls;

/// The names most programs use: the builder and its server, the hub's everyday types, RPC
/// handlers and peers, and the transport traits (for their methods).
///
/// ```
/// use chinwag::prelude::*;
///
/// let builder: ServerBuilder = Server::builder().sign_on(SignOn::Single);
/// let body = Body::text("hi");
/// # let _ = (builder, body);
/// ```
pub mod prelude {
    pub use crate::hub::{App, Body, Hub, HubConfig, HubLimits, SendOptions, SignOn};
    pub use crate::queue::{Queue, QueueConfig};
    pub use crate::rpc::{Handlers, Peer, RpcConfig};
    pub use crate::transport::{Acceptor, Frame, FrameRead, FrameWrite, Offer, Transport};
    pub use crate::{HistoryBackend, QueueBackend, Server, ServerBuilder, WsEngine};
}
