//! Plain HTTP requests on a [`WsAcceptor`](crate::WsAcceptor)'s port that need more than the
//! request head: [`HttpHandler`]s, asynchronous and given the whole request (body included),
//! mounted under path prefixes with [`HttpRoutes`], and [`read_body`], which reads a body
//! within a size limit and a deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use crate::server::HttpFallback;

/// What an [`HttpHandler`] returns: its response, later.
pub type HttpFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send + 'static>>;

/// Answers the plain HTTP requests (not WebSocket upgrades) under a path prefix of an
/// [`HttpRoutes`], asynchronously, with the whole request: it may read the body (bound it:
/// [`read_body`]). Each request runs on its connection's task, so a slow handler holds only
/// its own connection.
pub type HttpHandler =
    Arc<dyn Fn(Request<hyper::body::Incoming>) -> HttpFuture + Send + Sync + 'static>;

/// The plain HTTP requests of a listener: asynchronous [`HttpHandler`]s under path prefixes
/// (tried first, in the order they were added; the first whose prefix the path starts with
/// answers), then the synchronous [`HttpFallback`] (which sees only the head), then 404.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use chinwag::ws::{HttpHandler, HttpRoutes, read_body};
///
/// let echo: HttpHandler = Arc::new(|req| {
///     Box::pin(async move {
///         let (_, body) = req.into_parts();
///         let answer = match read_body(body, 1024, Duration::from_secs(5)).await {
///             Ok(bytes) => bytes,
///             Err(e) => return e.to_response(),
///         };
///         http::Response::new(http_body_util::Full::new(answer))
///     })
/// });
/// let routes = HttpRoutes::new().handler("/echo/", echo);
/// assert!(routes.has_handlers());
/// ```
#[derive(Clone, Default)]
pub struct HttpRoutes {
    handlers: Vec<(Arc<str>, HttpHandler)>,
    fallback: Option<HttpFallback>,
}

impl std::fmt::Debug for HttpRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRoutes")
            .field(
                "prefixes",
                &self.handlers.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl HttpRoutes {
    /// No handler, no fallback: every plain request gets 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `fallback` (what [`WsAcceptor::bind_routes`](crate::WsAcceptor::bind_routes)
    /// takes).
    pub fn from_fallback(fallback: Option<HttpFallback>) -> Self {
        HttpRoutes {
            handlers: Vec::new(),
            fallback,
        }
    }

    /// Adds `handler` for the paths that start with `prefix` (`"/api/"`: `/api/send`, ...).
    pub fn handler(mut self, prefix: impl Into<Arc<str>>, handler: HttpHandler) -> Self {
        self.handlers.push((prefix.into(), handler));
        self
    }

    /// Sets the synchronous fallback for the requests no handler takes.
    pub fn fallback(mut self, fallback: Option<HttpFallback>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Whether any asynchronous handler is mounted.
    pub fn has_handlers(&self) -> bool {
        !self.handlers.is_empty()
    }

    /// The synchronous fallback, if any.
    pub fn fallback_ref(&self) -> Option<&HttpFallback> {
        self.fallback.as_ref()
    }

    /// The handler for `path`, if a prefix matches.
    pub fn handler_for(&self, path: &str) -> Option<&HttpHandler> {
        self.handlers
            .iter()
            .find(|(p, _)| path.starts_with(&**p))
            .map(|(_, h)| h)
    }
}

/// Why [`read_body`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body (or its announced `Content-Length`) is over the limit: `413`.
    #[error("request body over the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive within the deadline: `408`.
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    /// The connection failed while the body was read: `400`.
    #[error("request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    /// The HTTP status for it: 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A `text/plain` response with its status and message.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(format!("{self}\n"))));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// Reads a request body of at most `limit` bytes within `timeout` (all of it: a body that
/// trickles in slower is cut off). Memory held is bounded by `limit` (http-body-util's
/// [`Limited`]); over it the read stops at once.
///
/// # Errors
///
/// [`BodyError`]: over the limit, too slow, or the connection failed.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if hyper::body::Body::size_hint(&body)
        .exact()
        .is_some_and(|n| n > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_at_the_limit_is_read_and_one_byte_more_is_refused() {
        let ten = Full::new(Bytes::from_static(b"0123456789"));
        let got = read_body(ten.clone(), 10, Duration::from_secs(1)).await;
        assert_eq!(got.unwrap(), Bytes::from_static(b"0123456789"));
        let got = read_body(ten, 9, Duration::from_secs(1)).await;
        assert_eq!(got, Err(BodyError::TooLarge { limit: 9 }));
        assert_eq!(
            BodyError::TooLarge { limit: 9 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn a_body_without_a_length_is_cut_at_the_limit() {
        // A stream of chunks (no exact size hint): the limit applies as data arrives.
        let chunks = futures_stream(vec![Bytes::from_static(b"01234"); 3]);
        let got = read_body(chunks, 12, Duration::from_secs(1)).await;
        assert_eq!(got, Err(BodyError::TooLarge { limit: 12 }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let body = ChannelBody(rx);
        let got = read_body(body, 10, Duration::from_secs(3)).await;
        assert_eq!(got, Err(BodyError::Timeout(Duration::from_secs(3))));
    }

    fn futures_stream(chunks: Vec<Bytes>) -> ChannelBody {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.try_send(c).unwrap();
        }
        ChannelBody(rx)
    }

    /// A body fed by a channel: no size hint, ends when the sender is dropped.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }
}
