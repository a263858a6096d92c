//! Compress once for many connections (permessage-deflate, issue 20). A message a server sends
//! to many connections (a room's broadcast: the session layer encodes it once and hands every
//! connection the same [`Bytes`]) is compressed by the first connection that sends it, and the
//! compressed frame is shared with every other connection that agreed the same parameters,
//! Gorilla's `PreparedMessage` idea.
//!
//! yawc does the compressing (`Streaming::prepare`, a small patch of ours to yawc, see
//! `vendor/yawc/CHINWAG.md`); it prepares only for connections whose compressor starts every
//! message with a fresh window (`server_no_context_takeover`), where a message's compressed
//! form depends on nothing but the message and the agreed parameters. Which connections agreed
//! the same parameters: the same `Sec-WebSocket-Extensions` answer (equal parameters written in
//! another order only cost one more compression).
//!
//! The shared frames live in one small process-wide cache keyed by the payload's identity
//! (address and length of the shared bytes, which the entry keeps alive so the address cannot
//! be reused while it is cached), the frame's opcode and the agreed parameters. It is bounded:
//! at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] bytes (payloads and their compressed forms),
//! the oldest dropped first; payloads over [`MAX_PAYLOAD`] are not cached (each connection then
//! compresses its own). A message sent to one connection costs one cache entry, evicted in turn.
//!
//! Compressing runs outside the cache's lock, so connections whose writers reach a message at the
//! same moment on different threads may each compress it: once per message, or at most once per
//! runtime worker thread that gets there before the first compression is cached.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use yawc::OpCode;

/// The most entries the cache holds (the oldest is dropped first).
pub const MAX_ENTRIES: usize = 64;
/// The most bytes the cache holds: the shared payloads and their compressed forms.
pub const MAX_BYTES: usize = 4 << 20;
/// Payloads larger than this are not cached: every connection compresses its own copy.
pub const MAX_PAYLOAD: usize = 256 << 10;

struct Entry {
    params: Arc<str>,
    opcode: OpCode,
    payload: Bytes,
    prepared: yawc::Frame,
}

impl Entry {
    fn size(&self) -> usize {
        self.payload.len() + self.prepared.payload().len()
    }
}

struct Cache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: VecDeque::new(),
    bytes: 0,
});
static PREPARED: AtomicU64 = AtomicU64::new(0);
static SHARED: AtomicU64 = AtomicU64::new(0);

/// Process-wide counts of compress-once sends on the yawc engine ([`deflate_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeflateStats {
    /// Messages compressed to be shared (one compression each).
    pub prepared: u64,
    /// Sends that used a frame another send compressed (no compression of their own).
    pub shared: u64,
}

/// How often compress-once compressed a message and how often a send reused one, since the
/// process started (every yawc connection of the process counts here).
///
/// ```
/// let s = chinwag::ws::yawc::deflate_stats();
/// println!("{} messages compressed once, {} sends shared them", s.prepared, s.shared);
/// ```
pub fn deflate_stats() -> DeflateStats {
    DeflateStats {
        prepared: PREPARED.load(Ordering::Relaxed),
        shared: SHARED.load(Ordering::Relaxed),
    }
}

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The frame prepared for `payload` (sent as `opcode`) on a connection that agreed `params`.
pub(crate) fn lookup(params: &Arc<str>, opcode: OpCode, payload: &Bytes) -> Option<yawc::Frame> {
    let c = cache();
    let found = c.entries.iter().rev().find(|e| {
        e.payload.as_ptr() == payload.as_ptr()
            && e.payload.len() == payload.len()
            && e.opcode == opcode
            && (Arc::ptr_eq(&e.params, params) || e.params == *params)
    })?;
    SHARED.fetch_add(1, Ordering::Relaxed);
    Some(found.prepared.clone())
}

/// Keeps `prepared`, the compressed form of `payload`, for the next connections.
pub(crate) fn insert(params: &Arc<str>, payload: Bytes, prepared: &yawc::Frame) {
    PREPARED.fetch_add(1, Ordering::Relaxed);
    if payload.len() > MAX_PAYLOAD {
        return;
    }
    let entry = Entry {
        params: params.clone(),
        opcode: prepared.opcode(),
        payload,
        prepared: prepared.clone(),
    };
    let mut c = cache();
    c.bytes += entry.size();
    c.entries.push_back(entry);
    while c.entries.len() > MAX_ENTRIES || c.bytes > MAX_BYTES {
        let Some(old) = c.entries.pop_front() else {
            break;
        };
        c.bytes -= old.size();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache stays within its entry and byte bounds, keeps the newest, and finds a payload by
    /// identity (the same bytes at another address are another message).
    #[test]
    fn bounded_and_keyed_by_identity() {
        let params: Arc<str> = Arc::from("permessage-deflate; server_no_context_takeover");
        let frame = |b: &Bytes| yawc::Frame::text(b.clone());
        let payloads: Vec<Bytes> = (0..MAX_ENTRIES + 5)
            .map(|i| Bytes::from(format!("message {i}")))
            .collect();
        for p in &payloads {
            insert(&params, p.clone(), &frame(p));
        }
        let c = cache();
        assert!(c.entries.len() <= MAX_ENTRIES);
        drop(c);
        let newest = payloads.last().unwrap();
        assert!(lookup(&params, OpCode::Text, newest).is_some());
        assert!(
            lookup(&params, OpCode::Binary, newest).is_none(),
            "opcode is part of the key"
        );
        assert!(
            lookup(&params, OpCode::Text, &payloads[0]).is_none(),
            "the oldest went first"
        );
        let copy = Bytes::from(newest.to_vec());
        assert!(
            lookup(&params, OpCode::Text, &copy).is_none(),
            "identity, not contents"
        );
        let other: Arc<str> =
            Arc::from("permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
        assert!(
            lookup(&other, OpCode::Text, newest).is_none(),
            "parameters are part of the key"
        );

        let big = Bytes::from(vec![b'x'; MAX_PAYLOAD + 1]);
        insert(&params, big.clone(), &frame(&big));
        assert!(
            lookup(&params, OpCode::Text, &big).is_none(),
            "too large to cache"
        );
        for _ in 0..3 {
            let p = Bytes::from(vec![b'y'; MAX_PAYLOAD]);
            insert(&params, p.clone(), &frame(&p));
        }
        let c = cache();
        assert!(c.bytes <= MAX_BYTES, "{} bytes", c.bytes);
        assert_eq!(c.bytes, c.entries.iter().map(Entry::size).sum::<usize>());
    }
}
