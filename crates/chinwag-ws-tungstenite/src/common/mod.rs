//! Engine-independent WebSocket glue shared by both chinwag engines: [`WsConfig`] and
//! [`OriginPolicy`], the hyper [`upgrade`] and [`WsAcceptor`], client dialing ([`connect`]),
//! and the connection itself ([`WsConnection`] with its owned halves, keepalive and close
//! handshake), generic over an [`Engine`].
//!
//! `chinwag-ws-fastwebsockets` uses this module too, so both engines behave identically
//! outside the RFC 6455 framing, which each engine does itself.

mod client;
mod config;
mod conn;
mod engine;
mod server;
mod stream;

pub use client::{ConnectOptions, connect, connect_with, tls_config_with_roots};
pub use config::{OriginPolicy, WsConfig};
pub use conn::{WsConnection, WsReader, WsWriter};
pub use engine::{Engine, Incoming, Outgoing, RawRead, RawWrite, ReadError, Role, truncate_reason};
pub use server::{HttpFallback, UpgradeError, WsAcceptor, is_upgrade_request, upgrade};
pub use stream::{CoalescingWriter, ReadAhead, WsStream};
