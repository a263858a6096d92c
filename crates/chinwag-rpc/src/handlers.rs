//! Operation and notification handlers, registered per server or per connection.

use rustc_hash::FxHashMap as HashMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::HandlerError;
use crate::peer::Peer;
use crate::stream::{RequestStream, ResultSink};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type BytesFn = dyn Fn(Peer, Bytes) -> BoxFuture<Result<Bytes, HandlerError>> + Send + Sync;
type StreamFn =
    dyn Fn(Peer, RequestStream, ResultSink) -> BoxFuture<Result<(), HandlerError>> + Send + Sync;
type NoteFn = dyn Fn(Peer, Bytes) -> BoxFuture<()> + Send + Sync;
type FallbackFn =
    dyn Fn(Peer, String, Bytes) -> BoxFuture<Result<Bytes, HandlerError>> + Send + Sync;
type HeartbeatFn = dyn Fn(&Peer, Heartbeat) + Send + Sync;

/// A heartbeat the peer sent: its load and its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The peer's load, 0 (idle) ..= 0xffff (fully loaded).
    pub load: u16,
    /// The peer's UTC UNIX time in seconds.
    pub time: u32,
}

#[derive(Clone)]
pub(crate) enum OpHandler {
    /// Takes the whole request payload, returns the whole result.
    Bytes(Arc<BytesFn>),
    /// Takes a stream of request chunks and writes a stream of result chunks.
    Stream(Arc<StreamFn>),
}

/// The operations and notifications one side serves.
///
/// Build one per server (shared by every connection) and, for per-connection extras such as
/// operations only available after sign-in, a child with [`with_parent`](Self::with_parent)
/// installed on that connection with [`Peer::set_handlers`]. Lookups try the child first,
/// then its parents.
///
/// Every handler gets the [`Peer`] it serves, so it can call the other side back.
///
/// ```
/// use chinwag::rpc::{Handlers, HandlerError};
///
/// let mut h = Handlers::new();
/// h.handle("add", |_peer, (a, b): (i64, i64)| async move { Ok::<_, HandlerError>(a + b) });
/// h.handle_bytes("echo", |_peer, payload| async move { Ok::<_, HandlerError>(payload) });
/// h.handle_notification("log", |_peer, payload| async move {
///     println!("{}", String::from_utf8_lossy(&payload));
/// });
/// ```
#[derive(Clone, Default)]
pub struct Handlers {
    ops: HashMap<String, OpHandler>,
    notes: HashMap<String, Arc<NoteFn>>,
    fallback: Option<Arc<FallbackFn>>,
    on_heartbeat: Option<Arc<HeartbeatFn>>,
    parent: Option<Arc<Handlers>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ops: Vec<_> = self.ops.keys().collect();
        ops.sort();
        let mut notes: Vec<_> = self.notes.keys().collect();
        notes.sort();
        f.debug_struct("Handlers")
            .field("ops", &ops)
            .field("notifications", &notes)
            .field("fallback", &self.fallback.is_some())
            .field("parent", &self.parent)
            .finish()
    }
}

impl Handlers {
    /// No handlers: every request is answered "unknown operation".
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that falls back to `parent` for what it does not define itself.
    pub fn with_parent(parent: Arc<Handlers>) -> Self {
        Handlers {
            parent: Some(parent),
            ..Self::default()
        }
    }

    /// Serves `op` with a typed JSON handler: the payload is decoded as `Req` (a payload that
    /// is not valid JSON for `Req` gets an error result saying so), the `Ok` value is encoded as
    /// JSON, an `Err` becomes an error result with its text.
    pub fn handle<Req, Res, E, F, Fut>(&mut self, op: impl Into<String>, f: F) -> &mut Self
    where
        Req: DeserializeOwned + Send + 'static,
        Res: Serialize + Send + 'static,
        E: Display + Send + 'static,
        F: Fn(Peer, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, E>> + Send + 'static,
    {
        let op = op.into();
        let name = op.clone();
        let f = Arc::new(f);
        self.ops.insert(
            op,
            OpHandler::Bytes(Arc::new(move |peer, payload| {
                let f = f.clone();
                let name = name.clone();
                Box::pin(async move {
                    let req: Req = serde_json::from_slice(&payload).map_err(|e| {
                        HandlerError::new(format!("invalid JSON for operation \"{name}\": {e}"))
                    })?;
                    let res = f(peer, req).await.map_err(HandlerError::new)?;
                    serde_json::to_vec(&res)
                        .map(Bytes::from)
                        .map_err(|e| HandlerError::new(format!("cannot encode the result: {e}")))
                })
            })),
        );
        self
    }

    /// Serves `op` with a raw-bytes handler: the payload in, the result payload out.
    pub fn handle_bytes<E, F, Fut>(&mut self, op: impl Into<String>, f: F) -> &mut Self
    where
        E: Display + Send + 'static,
        F: Fn(Peer, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.ops.insert(
            op.into(),
            OpHandler::Bytes(Arc::new(move |peer, payload| {
                let fut = f(peer, payload);
                Box::pin(async move { fut.await.map_err(HandlerError::new) })
            })),
        );
        self
    }

    /// Serves `op` with a streaming handler: it reads the request's chunks from a
    /// [`RequestStream`] (a single request is a stream of one chunk) and writes result chunks
    /// to a [`ResultSink`]. When it returns `Ok` the result stream is ended; an `Err` becomes an
    /// error result.
    pub fn handle_stream<E, F, Fut>(&mut self, op: impl Into<String>, f: F) -> &mut Self
    where
        E: Display + Send + 'static,
        F: Fn(Peer, RequestStream, ResultSink) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.ops.insert(
            op.into(),
            OpHandler::Stream(Arc::new(move |peer, input, output| {
                let fut = f(peer, input, output);
                Box::pin(async move { fut.await.map_err(HandlerError::new) })
            })),
        );
        self
    }

    /// Handles notification `name` (never answered). Notifications of one connection are
    /// handled one at a time, in the order they arrived.
    pub fn handle_notification<F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(Peer, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.notes.insert(
            name.into(),
            Arc::new(move |peer, payload| Box::pin(f(peer, payload))),
        );
        self
    }

    /// Answers requests for operations no handler (here or in a parent) serves. Without a
    /// fallback they get an error result naming the operation.
    pub fn fallback<E, F, Fut>(&mut self, f: F) -> &mut Self
    where
        E: Display + Send + 'static,
        F: Fn(Peer, String, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    {
        self.fallback = Some(Arc::new(move |peer, op, payload| {
            let fut = f(peer, op, payload);
            Box::pin(async move { fut.await.map_err(HandlerError::new) })
        }));
        self
    }

    /// Called with every heartbeat the peer sends (its load and time). Runs on the
    /// connection's reader: keep it quick.
    pub fn on_heartbeat<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&Peer, Heartbeat) + Send + Sync + 'static,
    {
        self.on_heartbeat = Some(Arc::new(f));
        self
    }

    pub(crate) fn op(&self, name: &str) -> Option<OpHandler> {
        match self.ops.get(name) {
            Some(h) => Some(h.clone()),
            None => self.parent.as_ref().and_then(|p| p.op(name)),
        }
    }

    pub(crate) fn note(&self, name: &str) -> Option<Arc<NoteFn>> {
        match self.notes.get(name) {
            Some(h) => Some(h.clone()),
            None => self.parent.as_ref().and_then(|p| p.note(name)),
        }
    }

    pub(crate) fn fallback_fn(&self) -> Option<Arc<FallbackFn>> {
        match &self.fallback {
            Some(f) => Some(f.clone()),
            None => self.parent.as_ref().and_then(|p| p.fallback_fn()),
        }
    }

    pub(crate) fn heartbeat_fn(&self) -> Option<Arc<HeartbeatFn>> {
        match &self.on_heartbeat {
            Some(f) => Some(f.clone()),
            None => self.parent.as_ref().and_then(|p| p.heartbeat_fn()),
        }
    }
}
