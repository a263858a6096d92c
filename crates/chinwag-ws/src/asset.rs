//! Serving a static file (a page, the JavaScript client) over HTTP with an ETag, gzip and 304s,
//! next to the WebSocket endpoint (see [`HttpFallback`](crate::HttpFallback)).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::Write;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;

/// A file prepared once for serving: its bytes, its gzip-compressed bytes and its ETag.
///
/// [`respond`](Self::respond) answers a request with `304 Not Modified` when its
/// `If-None-Match` names the ETag, with the gzip body when `Accept-Encoding` allows gzip, and
/// with the plain body otherwise.
///
/// ```
/// use chinwag::ws::StaticAsset;
/// let js = StaticAsset::new("export const x = 1;\n", "text/javascript; charset=utf-8");
/// let req = http::Request::get("/x.js").header("if-none-match", js.etag()).body(()).unwrap();
/// assert_eq!(js.respond(&req).status(), 304);
/// ```
#[derive(Debug, Clone)]
pub struct StaticAsset {
    plain: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
    content_type: HeaderValue,
}

impl StaticAsset {
    /// Prepares `content` (compresses it and computes its ETag from its bytes).
    pub fn new(content: &'static str, content_type: &'static str) -> Self {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(content.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        let gzip = gz
            .write_all(content.as_bytes())
            .and_then(|()| gz.finish())
            .unwrap_or_default();
        StaticAsset {
            plain: Bytes::from_static(content.as_bytes()),
            gzip: Bytes::from(gzip),
            etag: HeaderValue::from_str(&format!("\"{hash:016x}-{}\"", content.len()))
                .unwrap_or(HeaderValue::from_static("\"0\"")),
            content_type: HeaderValue::from_static(content_type),
        }
    }

    /// The ETag (quoted, as sent in the header).
    pub fn etag(&self) -> &HeaderValue {
        &self.etag
    }

    /// The uncompressed bytes.
    pub fn content(&self) -> &Bytes {
        &self.plain
    }

    /// Answers `req` (its method should be GET or HEAD; others get 405).
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::new()));
        let h = req.headers();
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let headers = resp.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        let matches = h
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == self.etag.to_str().unwrap_or("")
            });
        if matches {
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return resp;
        }
        let gzip_ok = h
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|e| {
                let mut parts = e.split(';');
                let name = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| {
                    let p = p.trim();
                    p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
                });
                (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
            });
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        let body = if gzip_ok {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            self.gzip.clone()
        } else {
            self.plain.clone()
        };
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if req.method() == http::Method::GET {
            *resp.body_mut() = Full::new(body);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_served_with_etag_gzip_and_304() {
        let js = StaticAsset::new(
            "export const answer = 42;\n".repeat(50).leak(),
            "text/javascript",
        );
        assert!(
            std::str::from_utf8(js.content())
                .unwrap()
                .contains("export")
        );
        let plain = js.respond(&http::Request::get("/x.js").body(()).unwrap());
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.headers()["etag"], js.etag());
        assert!(plain.headers().get("content-encoding").is_none());
        let gz = js.respond(
            &http::Request::get("/x.js")
                .header("accept-encoding", "br, gzip;q=0.8")
                .body(())
                .unwrap(),
        );
        assert_eq!(gz.headers()["content-encoding"], "gzip");
        let refused = js.respond(
            &http::Request::get("/x.js")
                .header("accept-encoding", "gzip;q=0")
                .body(())
                .unwrap(),
        );
        assert!(refused.headers().get("content-encoding").is_none());
        let cached = js.respond(
            &http::Request::get("/x.js")
                .header("if-none-match", js.etag())
                .body(())
                .unwrap(),
        );
        assert_eq!(cached.status(), 304);
        let other = js.respond(
            &http::Request::get("/x.js")
                .header("if-none-match", "\"something-else\"")
                .body(())
                .unwrap(),
        );
        assert_eq!(other.status(), 200);
    }
}
