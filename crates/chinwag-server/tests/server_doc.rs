//! `docs/server.md` lists every configuration key with its default and meaning: checked here
//! against the real configuration (the serialized defaults of the libraries' configuration
//! types), so the page cannot drift from the code. Its rows are also the help texts of
//! `--help`, so a setting added to a library is caught here until the page documents it.

use std::collections::BTreeMap;

use chinwag_server::config::{REFERENCE, default_table, keys, lookup, reference_rows, shown};

#[test]
fn every_key_and_default_is_in_the_reference() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server.md"))
            .expect("docs/server.md");
    assert_eq!(
        page, REFERENCE,
        "the server embeds docs/server.md (crates/chinwag-server/docs/server.md links to it)"
    );
    let mut documented = BTreeMap::new();
    for row in reference_rows(&page) {
        assert!(!row.meaning.is_empty(), "{} has a meaning", row.key);
        assert!(
            documented.insert(row.key.clone(), row.default).is_none(),
            "{} is documented twice",
            row.key
        );
    }
    let defaults = default_table();
    let expected: BTreeMap<String, String> = keys()
        .into_iter()
        .map(|k| {
            let d = shown(lookup(&defaults, &k).expect("a default"), true);
            (k, d)
        })
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|(k, d)| documented.get(*k) != Some(*d))
        .map(|(k, d)| format!("| `{k}` | `{d}` | ... |"))
        .collect();
    let stale: Vec<&String> = documented
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/server.md's key tables: rows to add or fix:\n{}\nrows of no key: {stale:?}",
        missing.join("\n")
    );
}

/// Whether the ready server compresses by default is one constant; the page says which.
#[test]
fn the_reference_says_whether_the_server_compresses_by_default() {
    let page = REFERENCE.split_whitespace().collect::<Vec<_>>().join(" ");
    let on =
        "The ready server compresses WebSocket messages by default, **on the yawc engine only**";
    let off = "The ready server does not compress WebSocket messages by default";
    if chinwag_server::config::DEFLATE_BY_DEFAULT {
        assert!(
            page.contains(on) && !page.contains(off),
            "docs/server.md: {on}"
        );
    } else {
        assert!(
            page.contains(off) && !page.contains(on),
            "docs/server.md: {off}"
        );
    }
}

/// `docs/chat-protocol.md` (checked against the library by chinwag-hub's `protocol_doc.rs`)
/// also states what the ready server changes or keeps: checked here against its settings.
#[test]
fn the_chat_protocol_page_states_the_ready_servers_defaults() {
    use chinwag::session::ServerConfig;
    use chinwag::ws::WsConfig;
    use chinwag_server::config::Settings;

    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/chat-protocol.md"
    ))
    .expect("docs/chat-protocol.md");
    let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = Settings::default();
    // The WebSocket message limit is the one setting the ready server changes that the page
    // quotes (besides compression, docs/server.md's); pings, pong waits and the rest are the
    // library's, which the page quotes.
    let ready = s.websocket.max_message_size;
    assert_eq!(
        s.websocket,
        WsConfig::default()
            .with_max_message_size(ready)
            .with_max_frame_size(ready)
            .with_deflate(
                chinwag_server::config::DEFLATE_BY_DEFAULT
                    .then(chinwag_server::config::server_deflate)
            )
    );
    assert_eq!(s.ws_config().max_message_size, ready);
    let quoted = format!("**{} MiB on the ready server**", ready >> 20);
    assert!(ready % (1 << 20) == 0 && page.contains(&quoted), "{quoted}");
    assert!(page.contains(&format!("{} MiB on the ready server;", ready >> 20)));
    // Its sessions are the library's defaults (the page's idle timeout and send queue).
    assert_eq!(s.sessions, ServerConfig::default());
    // Where it serves the tok door.
    assert!(page.contains(&format!(
        "`server.tok_listen`, default `{}`",
        s.server.tok_listen
    )));
}
