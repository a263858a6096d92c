//! `docs/server.md` lists every configuration key with its default: checked here against the
//! real configuration type, so the page cannot drift from the code.

use std::collections::BTreeMap;

use chinwag_server::config::{KEYS, default_table, lookup};

fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[test]
fn every_key_and_default_is_in_the_reference() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/server.md"))
            .expect("docs/server.md");
    let mut documented = BTreeMap::new();
    for line in page.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `section.key` | `default` | meaning |
        if cells.len() >= 5
            && cells[1].starts_with('`')
            && cells[1].contains('.')
            && !cells[1].contains('/')
        {
            let key = cells[1].trim_matches('`').to_owned();
            let default = cells[2].trim_matches('`').to_owned();
            assert!(!cells[3].is_empty(), "{key} has a meaning");
            assert!(
                documented.insert(key.clone(), default).is_none(),
                "{key} is documented twice"
            );
        }
    }
    let defaults = default_table();
    let mut expected = BTreeMap::new();
    for (key, _) in KEYS {
        expected.insert(
            (*key).to_owned(),
            shown(lookup(&defaults, key).expect("a default")),
        );
    }
    assert_eq!(documented, expected, "docs/server.md's key table");
}
