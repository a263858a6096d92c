//! **Engine-neutral WebSocket** for chinwag: everything about a WebSocket connection except the
//! RFC 6455 framing, written once and shared by the engine crates
//! (`chinwag-ws-tungstenite`, `chinwag-ws-fastwebsockets`, `chinwag-ws-yawc`), which depend on
//! this crate and never on each other.
//!
//! * [`WsConfig`] (limits, timers, keepalive, with documented defaults), [`OriginPolicy`] and
//!   [`HostPolicy`];
//! * the server side: the opening-handshake checks and the hyper [`upgrade`], and
//!   [`WsAcceptor`], a small hyper server that turns upgrades into accepted connections (with an
//!   [`HttpFallback`] for the other requests on the same port, and [`HttpRoutes`] with
//!   asynchronous [`HttpHandler`]s that read request bodies, bounded by [`read_body`]);
//! * the client side: [`connect`] / [`connect_with`] for `ws://` and `wss://`;
//! * the connection behind the transport seam: [`WsConnection`] with its owned halves, keepalive
//!   pings, the close handshake and the mapping of errors to close codes;
//! * the [`Engine`] trait an engine crate implements (a reader, a writer, the client handshake),
//!   and [`engine_api!`], which gives an engine crate its public aliases and functions;
//! * [`Reassembler`]: whole messages out of data frames (size limit, UTF-8 of text) for the
//!   engines whose library hands over single frames;
//! * [`StaticAsset`]: a file prepared for serving on the same port (ETag, gzip, 304).
//!
//! Behind the `test-suite` feature, `suite` holds the loopback tests every engine must pass
//! (instantiated with `engine_tests!` in each engine crate's tests), as `chinwag-queue` does
//! for queue backends.

mod api;
mod asset;
mod client;
mod config;
mod conn;
mod engine;
mod http;
mod lock;
mod reassemble;
mod server;
mod stream;

#[doc(hidden)]
pub use api::__engine_api;
pub use asset::StaticAsset;
pub use client::{ClientOrigin, ConnectOptions, connect, connect_with, tls_config_with_roots};
pub use config::{DeflateConfig, HostPolicy, OriginPolicy, WsConfig};
pub use conn::{WsConnection, WsReader, WsWriter};
pub use engine::{Engine, Incoming, Outgoing, RawRead, RawWrite, ReadError, Role, truncate_reason};
pub use http::{BodyError, HttpFuture, HttpHandler, HttpRoutes, read_body};
pub use reassemble::Reassembler;
pub use server::{
    HttpFallback, REFUSALS_IN_FLIGHT, UpgradeError, WsAcceptor, WsOffer, is_upgrade_request,
    refusal_response, upgrade, upgrade_with,
};
pub use stream::{CoalescingWriter, ReadAhead, WsStream};

#[cfg(feature = "test-suite")]
#[doc(hidden)]
pub mod suite;
