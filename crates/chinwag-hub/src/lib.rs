//! The chinwag IM hub: address **people and rooms, not sockets**.
//!
//! A [`Hub`] knows which devices of which users are connected ([`Device`], one per
//! connection), applies a sign-on policy ([`SignOn`]: one connection per user, per device, or
//! up to N), sends to users — live to their connections and, with a TTL, through the offline
//! queue (`chinwag-queue`: memory, redb or Redis), replayed in order on the next connect and
//! removed when acknowledged — and runs rooms (join with an optional Argon2id password, publish
//! serialized once and sent without waiting on anyone, presence events). Applications hook in
//! through [`App`]. Connections arrive through the [`doors`]: the gotalk chat protocol, raw
//! WebSocket rooms, tok-style TCP.
//!
//! The core is testable without sockets; the doors drive it. Where users are connected and the
//! sign-on decision sit behind [`Directory`], the seam a cluster fills.
//!
//! # Example: a chat server on TCP with JWT sign-in
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use chinwag_hub::{Body, Hub, SendOptions, auth::{JwtAuthenticator, JwtConfig, JwtKey}};
//! use chinwag_hub::doors::chat::ChatDoor;
//! use chinwag_transport::tcp::TcpAcceptor;
//!
//! let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(b"a long random secret")));
//! let hub = Hub::builder().authenticator(Arc::new(jwt)).build();
//! let tcp = TcpAcceptor::bind("127.0.0.1:0".parse()?, Default::default())?;
//! let door = ChatDoor::new(hub.clone()).serve(tcp);
//!
//! // The server itself can send to users; offline ones get it when they connect.
//! let report = hub.send("alice", Body::text("welcome"), SendOptions::default()).await?;
//! assert!(report.queued);
//!
//! hub.shutdown(Duration::from_secs(1)).await;
//! door.shutdown(Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```

pub mod auth;
mod close;
mod config;
mod conn;
mod core;
mod directory;
pub mod doors;
mod error;
mod hooks;
mod hub;
mod identity;
mod link;
mod mailbox;
mod message;
pub mod metrics;
mod policy;
mod rates;
mod room;

pub use close::{Close, CloseCode, Reconnect};
pub use config::{HubConfig, HubLimits, PartialDelivery, Rate};
pub use conn::Conn;
pub use directory::{Directory, DirectoryError, LocalDirectory};
pub use error::{RoomError, SendError, SignOnError};
pub use hooks::{App, BeforeSend, Delivered, Incoming, NoApp};
pub use hub::{
    DeliveryReport, Hub, HubBuilder, Member, MembersPage, Presence, PublishReport, SendOptions,
};
pub use identity::{DEFAULT_DEVICE, Device, Meta};
pub use link::{Format, Link, SessionLink};
pub use message::{
    Body, DirectMessage, ENCODING_SLOTS, Event, MessageId, Outgoing, PresenceEvent, RoomMessage,
};
pub use policy::{ConnId, ConnRef, NodeId, SignOn, SignOnOutcome, SignOnTable, SignedOn};
pub use room::{RoomInfo, RoomOptions};
