//! Fan-out payloads: opaque bytes (the default) or chat-like JSON text.
//!
//! A fan-out publish must carry its send time and sequence number, which the members read
//! back. [`Payload::Bytes`] puts them in the first 16 bytes (little endian) of a binary message
//! padded with `0x5a`; that pads with one repeated byte, which a compressor shrinks to almost
//! nothing, so it says nothing about compression. [`Payload::Chat`] is a text message shaped
//! like a chat protocol's message, for the permessage-deflate rows (issue 20): a batch of
//! chat lines, each with its sender and time, as a room's history or a burst would carry them:
//!
//! ```text
//! {"ts":1765093000123456789,"seq":42,"room":"bench","type":"chat","messages":[
//!   {"id":4200,"from":"ivan","at":1765093000,"text":"so i think the deploy is ..."},
//!   {"id":4201,"from":"peggy","at":1765093001,"text":"yeah the build ..."}, ... ]}
//! ```
//!
//! (one line on the wire). Each line has 3 to 20 words drawn from [`VOCABULARY`] with Zipf
//! frequencies (the `k`-th word about `1/k` as often as the first, as in English), senders
//! from [`USERS`], all different in every message; the last line's text is padded with spaces
//! to exactly the asked size. One such 1 KiB message compresses about 2.2-2.7x on its own (a
//! fresh compressor per message, as with `no_context_takeover`, at zlib's default level); one
//! long line of the same words, without the repeated keys, about 2x. The test
//! `chat_text_compresses_like_chat` checks the range.

use std::sync::OnceLock;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What a fan-out publish carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// A binary message: send time and sequence number, then `0x5a` bytes.
    #[default]
    Bytes,
    /// A chat-like JSON text message (see the module docs).
    Chat,
}

/// The words of the chat text, most frequent first (the first ones are drawn most often).
pub const VOCABULARY: &[&str] = &[
    "the",
    "i",
    "to",
    "you",
    "a",
    "and",
    "it",
    "is",
    "that",
    "of",
    "in",
    "we",
    "for",
    "on",
    "this",
    "be",
    "so",
    "but",
    "not",
    "have",
    "just",
    "with",
    "are",
    "do",
    "was",
    "can",
    "my",
    "if",
    "what",
    "me",
    "at",
    "like",
    "yeah",
    "no",
    "think",
    "all",
    "get",
    "will",
    "one",
    "there",
    "know",
    "they",
    "about",
    "out",
    "up",
    "ok",
    "now",
    "your",
    "how",
    "would",
    "good",
    "or",
    "time",
    "should",
    "from",
    "lol",
    "then",
    "also",
    "still",
    "some",
    "going",
    "see",
    "did",
    "need",
    "right",
    "could",
    "thanks",
    "sure",
    "make",
    "when",
    "work",
    "yes",
    "want",
    "really",
    "today",
    "new",
    "maybe",
    "them",
    "back",
    "where",
    "who",
    "more",
    "why",
    "which",
    "been",
    "tomorrow",
    "meeting",
    "because",
    "here",
    "let",
    "us",
    "after",
    "something",
    "again",
    "people",
    "thing",
    "last",
    "first",
    "day",
    "way",
    "look",
    "well",
    "said",
    "much",
    "only",
    "morning",
    "lunch",
    "deploy",
    "build",
    "test",
    "broken",
    "fixed",
    "release",
    "branch",
    "merge",
    "review",
    "ticket",
    "issue",
    "server",
    "client",
    "room",
    "message",
    "please",
    "sorry",
    "great",
    "nice",
    "cool",
    "awesome",
    "weird",
    "probably",
    "actually",
    "already",
    "never",
    "always",
    "later",
    "soon",
    "tonight",
    "weekend",
    "coffee",
    "tea",
    "home",
    "office",
    "call",
    "team",
    "plan",
    "idea",
    "question",
    "answer",
    "problem",
    "change",
    "update",
    "version",
    "config",
    "docs",
    "link",
    "share",
    "screen",
    "laptop",
    "phone",
    "network",
    "wifi",
    "slow",
    "fast",
    "memory",
    "latency",
    "queue",
    "cache",
    "database",
    "backup",
    "restart",
    "logs",
    "error",
    "warning",
    "crash",
    "bug",
    "feature",
    "design",
    "customer",
    "support",
    "sales",
    "numbers",
    "chart",
    "report",
    "friday",
    "monday",
    "week",
    "month",
    "year",
    "hour",
    "minute",
    "second",
    "yesterday",
    "happy",
    "tired",
    "busy",
    "free",
    "ready",
    "done",
    "waiting",
    "sounds",
    "agree",
    "exactly",
    "true",
    "false",
    "nothing",
    "everything",
    "anyone",
    "someone",
    "everyone",
    "hello",
    "hi",
    "bye",
    "cheers",
    "haha",
    "wow",
    "hmm",
    "oh",
    "btw",
    "afaik",
    "imo",
    "fyi",
    "asap",
    "pizza",
    "train",
    "traffic",
    "weather",
    "rain",
    "sunny",
    "snow",
    "cold",
    "hot",
    "holiday",
    "vacation",
    "birthday",
    "party",
    "dinner",
    "movie",
    "music",
    "game",
    "score",
    "match",
    "football",
    "book",
    "article",
    "video",
    "photo",
    "picture",
];

/// The senders of the chat lines.
pub const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar", "peggy", "trent", "victor", "wendy",
];

/// Words per chat line, at least and at most.
const WORDS_PER_LINE: (usize, usize) = (3, 20);

/// What closes the last line, the batch and the message.
const CLOSING: &str = r#""}]}"#;

/// The message's start, with `ts` and `seq` (at most 20 digits each).
fn head(ts: u64, seq: u64) -> String {
    format!(r#"{{"ts":{ts},"seq":{seq},"room":"bench","type":"chat","messages":["#)
}

/// The start of chat line `k` (up to its text's opening quote).
fn line_head(id: u64, from: &str, at: u64) -> String {
    format!(r#"{{"id":{id},"from":"{from}","at":{at},"text":""#)
}

/// Smallest chat payload: the message's start and one line with empty text, every number at
/// its longest.
pub const MIN_CHAT_PAYLOAD: usize = r#"{"ts":18446744073709551615,"seq":18446744073709551615,"room":"bench","type":"chat","messages":["#
    .len()
    + r#"{"id":18446744073709551615,"from":"mallory","at":18446744073709551615,"text":""#.len()
    + CLOSING.len();

/// Cumulative Zipf weights of [`VOCABULARY`] (word `k` weighs `1/(k+1)`).
fn zipf() -> &'static [f64] {
    static CUM: OnceLock<Vec<f64>> = OnceLock::new();
    CUM.get_or_init(|| {
        let mut total = 0.0;
        (0..VOCABULARY.len())
            .map(|k| {
                total += 1.0 / (k + 1) as f64;
                total
            })
            .collect()
    })
}

/// A word of [`VOCABULARY`], drawn with Zipf frequencies.
fn word(rng: &mut impl Rng) -> &'static str {
    let cum = zipf();
    let x = rng.random::<f64>() * cum[cum.len() - 1];
    VOCABULARY[cum.partition_point(|&c| c < x).min(VOCABULARY.len() - 1)]
}

/// A chat-like JSON text of exactly `size` bytes carrying `ts` and `seq` (see the module
/// docs); the lines come from `rng`. Errors when `size` is below [`MIN_CHAT_PAYLOAD`].
pub fn chat_text(ts: u64, seq: u64, size: usize, rng: &mut impl Rng) -> Result<String, String> {
    if size < MIN_CHAT_PAYLOAD {
        return Err(format!(
            "chat payloads need at least {MIN_CHAT_PAYLOAD} bytes (asked {size})"
        ));
    }
    let secs = ts / 1_000_000_000;
    let id = |k: u64| seq.wrapping_mul(100).wrapping_add(k);
    let from = |rng: &mut _| USERS[Rng::random_range(rng, 0..USERS.len())];
    let mut s = head(ts, seq);
    s.reserve(size);
    s.push_str(&line_head(id(0), from(rng), secs));
    // Always inside a line's text; room is kept for closing it.
    let room = size - CLOSING.len();
    let (mut line, mut in_line) = (0u64, 0);
    let mut words = rng.random_range(WORDS_PER_LINE.0..=WORDS_PER_LINE.1);
    loop {
        if in_line == words {
            let next = format!(
                r#""}},{}"#,
                line_head(id(line + 1), from(rng), secs + line + 1)
            );
            if s.len() + next.len() > room {
                break;
            }
            s.push_str(&next);
            line += 1;
            in_line = 0;
            words = rng.random_range(WORDS_PER_LINE.0..=WORDS_PER_LINE.1);
            continue;
        }
        let w = word(rng);
        let sep = usize::from(in_line > 0);
        if s.len() + sep + w.len() > room {
            break;
        }
        if sep == 1 {
            s.push(' ');
        }
        s.push_str(w);
        in_line += 1;
    }
    while s.len() < room {
        s.push(' ');
    }
    s.push_str(CLOSING);
    Ok(s)
}

/// The send time and sequence number at the start of a [`chat_text`].
pub fn parse_chat(text: &[u8]) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(br#"{"ts":"#)?;
    let (ts, rest) = number(rest)?;
    let rest = rest.strip_prefix(br#","seq":"#)?;
    let (seq, _) = number(rest)?;
    Some((ts, seq))
}

/// A decimal number at the start of `b`, and what follows it.
fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = std::str::from_utf8(&b[..digits]).ok()?.parse().ok()?;
    Some((n, &b[digits..]))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rand::SeedableRng;

    use super::*;

    fn deflated_len(data: &[u8]) -> usize {
        // What permessage-deflate does with a fresh compressor per message (no context
        // takeover): raw deflate at the default level.
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap().len()
    }

    #[test]
    fn chat_text_is_json_of_the_asked_size_and_parses_back() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        for size in [MIN_CHAT_PAYLOAD, MIN_CHAT_PAYLOAD + 1, 200, 1024, 16384] {
            let t = chat_text(u64::MAX, u64::MAX, size, &mut rng).unwrap();
            assert_eq!(t.len(), size);
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "chat");
            assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()));
            assert_eq!(parse_chat(t.as_bytes()), Some((u64::MAX, u64::MAX)));
        }
        let t = chat_text(1_765_093_000_123_456_789, 42, 1024, &mut rng).unwrap();
        assert_eq!(
            parse_chat(t.as_bytes()),
            Some((1_765_093_000_123_456_789, 42))
        );
        assert_eq!(parse_chat(b"{\"ts\":x"), None);
        assert_eq!(parse_chat(&[0x5a; 64]), None);
    }

    #[test]
    fn below_the_smallest_size_is_refused() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        let e = chat_text(1, 1, MIN_CHAT_PAYLOAD - 1, &mut rng).unwrap_err();
        assert!(e.contains(&MIN_CHAT_PAYLOAD.to_string()), "{e}");
    }

    #[test]
    fn chat_text_varies_per_message() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let a = chat_text(1, 1, 1024, &mut rng).unwrap();
        let b = chat_text(1, 1, 1024, &mut rng).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn chat_text_compresses_like_chat() {
        // Roughly 2-4x on its own, like chat (not like repeated bytes, which shrink 50x).
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        for _ in 0..20 {
            let t = chat_text(1_765_093_000_123_456_789, 7, 1024, &mut rng).unwrap();
            let ratio = t.len() as f64 / deflated_len(t.as_bytes()) as f64;
            assert!((2.0..=4.0).contains(&ratio), "ratio {ratio:.2}: {t}");
        }
        let ratio = 1024.0 / deflated_len(&[0x5a; 1024]) as f64;
        assert!(ratio > 50.0, "repeated bytes: {ratio:.1}");
    }
}
