//! RPC servers and client connections on any transport.

use std::sync::Arc;
use std::time::Duration;

use chinwag_session::codec::WireCodec;
use chinwag_session::{Server, ServerConfig, ServerHandle, ShutdownReport, spawn_session};
use chinwag_transport::{Acceptor, PeerAddr, Transport};

use crate::config::RpcConfig;
use crate::handlers::Handlers;
use crate::peer::{Admit, Peer, RpcHandler};

/// A running RPC server: every accepted connection is a [`Peer`] served by the server's
/// [`Handlers`] (replaceable per connection), and the server can call each peer back.
#[derive(Clone, Debug)]
pub struct RpcServer {
    handle: ServerHandle<WireCodec>,
}

impl RpcServer {
    /// Serves `handlers` on every connection `acceptor` accepts (any transport: TCP, TLS,
    /// Unix, WebSocket through either engine, pipes). `on_connect` is called with each new
    /// peer before its first message is read.
    pub fn spawn<A: Acceptor>(
        acceptor: A,
        handlers: Arc<Handlers>,
        config: RpcConfig,
        on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    ) -> Self {
        let server_config = ServerConfig::default();
        Self::spawn_with(acceptor, handlers, config, server_config, on_connect)
    }

    /// As [`spawn`](Self::spawn) with explicit server settings (connection limit, accept
    /// backoff, admission). `server.session` is replaced by
    /// [`config.session_config()`](RpcConfig::session_config).
    pub fn spawn_with<A: Acceptor>(
        acceptor: A,
        handlers: Arc<Handlers>,
        config: RpcConfig,
        mut server: ServerConfig,
        on_connect: Option<Arc<dyn Fn(Peer) + Send + Sync>>,
    ) -> Self {
        server.session = config.session_config();
        let codec = WireCodec::new(config.wire);
        let handler = RpcHandler::new(handlers, Arc::new(config), on_connect);
        RpcServer {
            handle: Server::spawn(acceptor, codec, handler, server),
        }
    }

    /// As [`spawn_with`](Self::spawn_with), with `admit` deciding for every connection
    /// whether it may start (authentication; see [`Admit`]).
    pub fn spawn_admitting<A: Acceptor>(
        acceptor: A,
        handlers: Arc<Handlers>,
        config: RpcConfig,
        mut server: ServerConfig,
        admit: Arc<dyn Admit>,
    ) -> Self {
        server.session = config.session_config();
        let codec = WireCodec::new(config.wire);
        let mut handler = RpcHandler::new(handlers, Arc::new(config), None);
        handler.admit = Some(admit);
        RpcServer {
            handle: Server::spawn(acceptor, codec, handler, server),
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Option<&PeerAddr> {
        self.handle.local_addr()
    }

    /// The peers connected now.
    pub fn peers(&self) -> Vec<Peer> {
        self.handle
            .sessions()
            .iter()
            .filter_map(|s| s.attr::<Peer>())
            .collect()
    }

    /// The session-level server (stats, broadcast of pre-encoded messages).
    pub fn sessions(&self) -> &ServerHandle<WireCodec> {
        &self.handle
    }

    /// Graceful shutdown: stop accepting, let every connection write what it has queued
    /// (bounded by `deadline`), close, and wait.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.handle.shutdown(deadline).await
    }
}

/// Runs RPC on a connection you opened (a client, or a pipe end in tests) and returns its
/// [`Peer`] once the connection is set up (its version is queued; requests can be made at
/// once).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use chinwag::rpc::{Handlers, HandlerError, RpcConfig, connect};
///
/// let (a, b) = chinwag::transport::pipe::pair(&Default::default());
/// let mut served = Handlers::new();
/// served.handle("add", |_peer, (x, y): (i64, i64)| async move { Ok::<_, HandlerError>(x + y) });
/// let _server = connect(a, Arc::new(served), RpcConfig::default());
/// let client = connect(b, Arc::new(Handlers::new()), RpcConfig::client());
/// let sum: i64 = client.request("add", &(2, 3)).await.unwrap();
/// assert_eq!(sum, 5);
/// # }
/// ```
pub fn connect<T: Transport>(transport: T, handlers: Arc<Handlers>, config: RpcConfig) -> Peer {
    let codec = Arc::new(WireCodec::new(config.wire));
    let session_config = Arc::new(config.session_config());
    let handler = Arc::new(RpcHandler::new(handlers, Arc::new(config), None));
    let session = spawn_session(transport, codec, handler.clone(), session_config);
    handler.peer(&session)
}
