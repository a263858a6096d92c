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
//! Three rings, arrows inward only: the **doors** translate a transport into hub operations;
//! the **driver** ([`Hub`]) keeps the state behind sharded locks and does every await, spawn,
//! write and clock read; the **core** (`src/core/`) holds the rules as plain data and functions
//! of time, proven by unit and property tests without sockets. Where users are connected and
//! the sign-on decision sit behind [`Directory`], the seam a cluster fills.
//!
//! # Example: a chat server on TCP with JWT sign-in
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use chinwag::hub::{Body, Hub, SendOptions, auth::{JwtAuthenticator, JwtConfig, JwtKey}};
//! use chinwag::hub::doors::chat::ChatDoor;
//! use chinwag::transport::tcp::TcpAcceptor;
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
mod core;
mod directory;
pub mod doors;
mod driver;
mod error;
mod history;
mod hooks;
mod link;
pub mod metrics;

// The auth module names the identity types by this path.
use core::identity;

pub use close::{Close, CloseCode, Reconnect};
pub use config::{HubConfig, HubLimits, OfflineShares, PartialDelivery, Rate};
pub use core::conversation::ConversationEntry;
pub use core::identity::{DEFAULT_DEVICE, Device, Meta};
/// The grammar of user ids, device ids and room names.
pub use core::ids;
pub use core::message::{
    Body, Delivered, DirectMessage, Event, MessageId, PresenceEvent, RoomMessage,
};
pub use core::recovery::{Keep, KeepHistory};
pub use core::registry::RoomRecord;
pub use core::rooms::{RoomChanges, RoomInfo, RoomOptions};
pub use core::signon::{ConnId, ConnRef, NodeId, SignOn, SignOnOutcome, SignOnTable, SignedOn};
pub use directory::{ClusterMembers, Directory, DirectoryError, LocalDirectory};
pub use driver::{
    Attach, Conn, ConversationPage, DeliveryReport, HistoryFrom, HistoryPage, Hub, HubBuilder,
    JoinPass, Member, MembersPage, OnlinePage, Presence, PublishReport, Recovery, SendOptions,
    WeakHub,
};
pub use error::{
    ConversationError, HistoryFailure, Rejection, RoomError, SendError, ShareLimit, SignOnError,
};
pub use history::RoomHistory;
pub use hooks::{App, BeforeSend, Incoming, JoinDecision, NoApp};
pub use link::{DoorFormat, Format, Link, SessionLink};
