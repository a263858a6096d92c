//! `chinwag-load`: the load generator and baseline echo servers behind `cargo xtask bench`.
//!
//! * [`proto`]: the protocols the generator speaks ([`Protocol`]) and the [`Target`] URL
//!   (`ws://127.0.0.1:9001/`, `tcp://127.0.0.1:9002`). Only loopback targets are accepted.
//! * [`load`]: one load run ([`LoadSpec`] → [`RunReport`]): N connections, payload size S,
//!   closed loop (K messages in flight per connection) or open loop (a target rate), a warm-up
//!   then a measured window, latency in an HDR histogram, errors, and the server's CPU time per
//!   message and RSS from `/proc/<pid>` when its pid is known. Connections are spread over
//!   several `127.0.0.x` source addresses and, on request, over several worker processes.
//! * [`procfs`]: the server figures read from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//! * [`wire`]: the bytes a server's TCP sockets sent (the kernel's `tcp_info`, read with `ss`):
//!   bytes on the wire per delivery in the permessage-deflate fan-out rows.
//! * [`payload`]: what a fan-out publish carries: bytes, or chat-like JSON text (words from a
//!   vocabulary, different in every message) that compresses like chat.
//! * [`baselines`]: minimal echo servers on the raw engines (fastwebsockets with a hyper
//!   upgrade, async-tungstenite, tokio TCP) that chinwag's servers are divided by.
//! * [`hub`]: the hub scenarios (fan-out to a room, send to users, offline replay, idle
//!   signed-in connections): members and users signed in with HS256 JWTs.
//!   Chat-door users are `chinwag::client` clients (`src/chat.rs`): the facade's chat client,
//!   the one applications use, not one of this crate's own.
//! * [`guess`]: the room-password guessing scenario (a legitimate join's latency, alone and
//!   while other connections guess the room's password as fast as the hub lets them).
//! * [`recover`]: recovering a room's missed publications (a member that was away joins with
//!   `since`), against a plain join, on a hub whose rooms keep a history.
//! * [`redis_monitor`]: the Redis commands of a run's measured window (`MONITOR`): those the
//!   clients sent and those scripts ran, for the cluster scenario's round trips per message.
//! * [`count`]: fixed-count runs (`chinwag-load count`): a known number of echoes,
//!   publishes or direct messages, one at a time, for instruction counts under callgrind.
//! * [`report`]: turns a directory of run results into `report.md`, `report.json` and SVG
//!   charts.
//!
//! The binary (`chinwag-load run|report`) is driven by `cargo xtask bench`; see
//! `docs/BENCHMARKS.md`.

pub mod baselines;
mod chat;
pub mod count;
pub mod guess;
pub mod hub;
pub mod load;
pub mod payload;
pub mod procfs;
pub mod proto;
pub mod recover;
pub mod redis_monitor;
pub mod report;
pub mod wire;
mod workers;

pub use load::{LoadSpec, RunReport};
pub use proto::{ClientEngine, Protocol, Target};

/// The error type of this crate: load runs report a message, not a structured error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
