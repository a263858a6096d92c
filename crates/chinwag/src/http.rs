//! What extra HTTP routes on the HTTP listener are written with
//! ([`ServerBuilder::http_fallback`](crate::ServerBuilder::http_fallback), synchronous, from
//! the request head; [`ServerBuilder::http_handler`](crate::ServerBuilder::http_handler),
//! asynchronous, with the body): the request and response types, [`HttpFallback`],
//! [`HttpHandler`] and [`read_body`] (a body within a size limit and a deadline),
//! [`StaticAsset`] (a file with ETag, gzip and 304), and small response helpers.
//!
//! ```
//! use std::sync::Arc;
//! use chinwag::http::{self, HttpFallback, StaticAsset};
//!
//! let page = Arc::new(StaticAsset::new("<h1>hi</h1>\n", "text/html; charset=utf-8"));
//! let routes: HttpFallback = Arc::new(move |req| match req.uri().path() {
//!     "/" => Some(page.respond(req)),
//!     "/healthz" => Some(http::text(200, "ok\n")),
//!     _ => None, // 404
//! });
//! # let _ = routes;
//! ```

pub use ::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
pub use bytes::Bytes;
pub use chinwag_ws::{
    BodyError, HttpFallback, HttpFuture, HttpHandler, HttpRoutes, StaticAsset, read_body,
};
pub use http_body_util::Full;
/// The body of the requests a fallback sees (it is not read: fallbacks answer from the head)
/// and that an [`HttpHandler`] reads ([`read_body`]).
pub use hyper::body::Incoming;

/// A response with `status` and a `text/plain; charset=utf-8` body.
///
/// ```
/// let r = chinwag::http::text(503, "stopping\n");
/// assert_eq!(r.status(), 503);
/// ```
pub fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", body)
}

/// A response with `status`, `content_type` and `body`. A status that is not a valid HTTP
/// status becomes 500.
///
/// ```
/// let r = chinwag::http::with_type(200, "application/json", r#"{"ok":true}"#);
/// assert_eq!(r.headers()["content-type"], "application/json");
/// ```
pub fn with_type(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
