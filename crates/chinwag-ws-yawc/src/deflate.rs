//! permessage-deflate (RFC 7692) on yawc: the options from [`WsConfig::deflate`] and the server's
//! side of the negotiation. yawc agrees the parameters itself (its `upgrade_with_options`, run
//! on a request that carries one offer); this module only picks the offer and the preferences.

use std::sync::OnceLock;

use chinwag_ws::WsConfig;
use http::header;
use yawc::{DeflatePool, Options, WebSocket};

/// Idle deflate states kept per window size (compressors and decompressors counted apart) in
/// the process-wide pool.
pub const DEFLATE_POOL_CAPACITY: usize = 16;

/// The process's pool of deflate state for connections that agreed no context takeover in a
/// direction: such a direction borrows its compressor or decompressor for one message and
/// returns it, so an idle connection holds no zlib state (about 300 KiB otherwise, kept from its
/// first compressed message on). At most [`DEFLATE_POOL_CAPACITY`] idle states are kept per window size;
/// a message that finds none builds one (yawc's `DeflatePool`).
fn pool() -> DeflatePool {
    static POOL: OnceLock<DeflatePool> = OnceLock::new();
    POOL.get_or_init(|| DeflatePool::new(DEFLATE_POOL_CAPACITY))
        .clone()
}

/// yawc's options for `cfg` with deflate enabled as [`WsConfig::deflate`] says (the client's
/// offer, and what a server uses after agreeing). The window bits are set explicitly: without
/// a preference yawc answers a bare `client_max_window_bits` offer with 9.
pub(crate) fn options(cfg: &WsConfig) -> Options {
    options_for(cfg, true, true)
}

/// As [`options`], with the window-bits preferences only when asked for (a server must not
/// answer `client_max_window_bits` to an offer without it; yawc would).
fn options_for(cfg: &WsConfig, client_bits: bool, server_bits: bool) -> Options {
    let base = crate::options(cfg);
    let Some(d) = &cfg.deflate else {
        return base;
    };
    let mut o = base
        .with_balanced_compression()
        .with_compression_threshold(d.threshold)
        .with_deflate_pool(pool());
    if client_bits {
        o = o.with_client_max_window_bits(d.client_max_window_bits.clamp(9, 15));
    }
    if server_bits {
        o = o.with_server_max_window_bits(d.server_max_window_bits.clamp(9, 15));
    }
    if d.server_no_context_takeover {
        o = o.server_no_context_takeover();
    }
    if d.client_no_context_takeover {
        o = o.client_no_context_takeover();
    }
    if d.max_inflate_ratio > 0 {
        o = o.with_max_inflate_ratio(d.max_inflate_ratio);
    }
    o
}

/// The server's answer to the client's `Sec-WebSocket-Extensions` values: the first
/// permessage-deflate offer yawc agrees to, in the client's order. yawc reads a header as one
/// offer, so a list (several offers, or several header lines) is split here; the parameters are
/// yawc's to check and agree.
pub(crate) fn negotiate(offers: &[&str], cfg: &WsConfig) -> Option<String> {
    let d = cfg.deflate.as_ref()?;
    offers
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .find_map(|offer| {
            let names = |p: &str| {
                offer
                    .split(';')
                    .any(|x| x.trim().split('=').next() == Some(p))
            };
            let client_bits = names("client_max_window_bits");
            let server_bits = names("server_max_window_bits") || d.server_max_window_bits < 15;
            agree(offer, options_for(cfg, client_bits, server_bits))
        })
}

/// What yawc answers to one offer (its `upgrade_with_options` on a request that carries only
/// the handshake headers and that offer).
fn agree(offer: &str, options: Options) -> Option<String> {
    let mut req = http::Request::new(());
    let h = req.headers_mut();
    h.insert(
        header::SEC_WEBSOCKET_KEY,
        http::HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        http::HeaderValue::from_static("13"),
    );
    h.insert(
        header::SEC_WEBSOCKET_EXTENSIONS,
        http::HeaderValue::from_str(offer).ok()?,
    );
    let (resp, _) = WebSocket::<yawc::HttpStream>::upgrade_with_options(&mut req, options).ok()?;
    resp.headers()
        .get(header::SEC_WEBSOCKET_EXTENSIONS)?
        .to_str()
        .ok()
        .map(str::to_owned)
}
