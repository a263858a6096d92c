//! Bidirectional, multiplexed RPC with **gotalk v1** semantics, on chinwag sessions.
//!
//! Any connection, server or client side, is a [`Peer`]: both ends call the other's
//! operations ([`Peer::request`], [`Peer::request_bytes`], [`Peer::notify`], streaming
//! requests with [`Peer::stream_request`] and streamed results with [`Peer::request_stream`])
//! and serve their own ([`Handlers`]). Requests, notifications and streams share the one
//! connection and never wait for each other. The bytes on the wire are gotalk's, so Go gotalk
//! peers and `gotalk.js` interoperate; the browser client in `clients/js/chinwag.js` is
//! embedded as [`CHINWAG_JS`].
//!
//! What chinwag does differently from gotalk's Go library, and why, is in `docs/rpc.md`:
//! bounded payloads (checked before allocation), heartbeats on both sides by default with an
//! idle timeout longer than the peer's heartbeat interval, request limits answered with
//! RetryResults whose wait range is validated, and requestors that honour RetryResults.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use chinwag::rpc::{Handlers, HandlerError, RpcConfig, RpcServer, connect};
//! use chinwag::transport::tcp::{self, TcpAcceptor};
//!
//! // A server on TCP that greets, and calls the client back to ask its name.
//! let mut h = Handlers::new();
//! h.handle("greet", |peer, greeting: String| async move {
//!     let name: String = peer.request("name", &()).await.map_err(|e| e.to_string())?;
//!     Ok::<_, String>(format!("{greeting}, {name}!"))
//! });
//! let acceptor = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
//! let addr = acceptor.local_socket_addr().unwrap();
//! let server = RpcServer::spawn(acceptor, Arc::new(h), RpcConfig::default(), None);
//!
//! // A client that serves "name".
//! let mut mine = Handlers::new();
//! mine.handle("name", |_peer, (): ()| async { Ok::<_, HandlerError>("Ada".to_string()) });
//! let tcp = tcp::connect(addr, &Default::default()).await.unwrap();
//! let client = connect(tcp, Arc::new(mine), RpcConfig::client());
//! let answer: String = client.request("greet", "Hello").await.unwrap();
//! assert_eq!(answer, "Hello, Ada!");
//! server.shutdown(std::time::Duration::from_secs(1)).await;
//! # }
//! ```

mod config;
mod endpoint;
mod error;
mod handlers;
mod peer;
mod stream;

pub use config::{RetryWait, RpcConfig};
pub use endpoint::{RpcServer, connect};
pub use error::{Disconnect, HandlerError, RpcError};
pub use handlers::{Handlers, Heartbeat};
pub use peer::{Admit, Peer, RpcStats};
pub use stream::{RequestStream, ResultSink, ResultStream, StreamWriter};

/// The browser/Node client `chinwag.js` (an ES module speaking gotalk v1 over WebSocket),
/// embedded in the binary. Serve it at `<mount path>/chinwag.js` next to the WebSocket endpoint,
/// e.g. as a `chinwag_ws::StaticAsset` (ETag, gzip, 304) from
/// `chinwag_ws::WsAcceptor::bind_with_fallback`; this crate itself knows no HTTP.
// `js/chinwag.js` is a symlink to `clients/js/chinwag.js` (the one source): `cargo package`
// stores the file it points to, so the published crate carries the client too.
pub const CHINWAG_JS: &str = include_str!("../js/chinwag.js");
