//! The grammar of user ids, device ids and room names: which strings the hub accepts as
//! names of people, devices and rooms. Pure: no I/O, no clock, nothing but `std`.
//!
//! # The grammar
//!
//! All three are UTF-8 strings (JSON strings on the wire, after JSON unescaping), measured in
//! **bytes of UTF-8**, not characters:
//!
//! | id | length | also refused |
//! |---|---|---|
//! | user id (a JWT's `sub`, a `send` recipient) | 1 to 1 024 bytes ([`MAX_USER_BYTES`], the offline queues' recipient limit) | — |
//! | device id (the JWT's device claim) | 1 to 256 bytes ([`MAX_DEVICE_BYTES`]) | — |
//! | room name | 1 to the configured maximum (`HubLimits::max_room_name_bytes`, default 128, [`DEFAULT_MAX_ROOM_BYTES`]) | exactly `*` ([`BROADCAST_ROOM`], reserved for broadcasts) |
//!
//! Anywhere in any of them, these characters are refused:
//!
//! - **control characters**, general category Cc: U+0000–U+001F and U+007F–U+009F (NUL, tab,
//!   CR, LF, ESC, DEL, NEL, ...); reason `control`;
//! - **format characters**, general category Cf, Unicode 18.0 (170 code points): U+00AD (soft
//!   hyphen), U+0600–U+0605, U+061C (Arabic letter mark), U+06DD, U+070F, U+0890–U+0891,
//!   U+08E2, U+180E, U+200B–U+200F (zero-width space, non-joiner and joiner; left-to-right and
//!   right-to-left marks), U+202A–U+202E (bidirectional embeddings and overrides, U+202E the
//!   right-to-left override among them), U+2060–U+2064 (word joiner, invisible operators),
//!   U+2066–U+206F (bidirectional isolates and deprecated format characters), U+FEFF (byte
//!   order mark, zero-width no-break space), U+FFF9–U+FFFB (interlinear annotation),
//!   U+110BD, U+110CD, U+13430–U+1343F, U+1BCA0–U+1BCA3, U+1D173–U+1D17A, U+E0001 and
//!   U+E0020–U+E007F (tags); reason `format`;
//! - the **line and paragraph separators** U+2028 and U+2029 (categories Zl, Zp); reason
//!   `separator`.
//!
//! And a **space separator** (general category Zs: U+0020, U+00A0, U+1680, U+2000–U+200A,
//! U+202F, U+205F, U+3000) may not be the first or the last character; reason `edge_space`.
//! Together with the rules above, no id begins or ends with Unicode white space
//! (`White_Space`), and none contains white space other than Zs. Spaces inside are allowed:
//! `"Alice Smith"` is a valid user id.
//!
//! Everything else is allowed, including letters and marks of every script, digits,
//! punctuation, symbols, emoji, private-use and unassigned code points. Two consequences of
//! refusing all of Cf: emoji sequences joined with U+200D (e.g. 👨‍👩‍👧) and flag emoji made
//! with tag characters (e.g. 🏴󠁧󠁢󠁳󠁣󠁴󠁿) are refused; single emoji, with or without a
//! variation selector (U+FE0F, a nonspacing mark), are allowed. Ids are compared byte for
//! byte: no case folding and no Unicode normalization, so `é` precomposed and `é` decomposed
//! are two different ids.
//!
//! A refused id is reported with a short, stable reason ([`IdError::reason`]): `empty`,
//! `too_long`, `control`, `format`, `separator`, `edge_space`, `reserved`; the checks run in
//! that order of kind (length first), and among characters the first offending one in the
//! string is reported, with its code point and byte offset.
//!
//! # The Unicode data
//!
//! Cc is `char::is_control` (it has been the same 65 code points since Unicode 1.1). The Cf
//! table below was generated from ICU4X's `icu_properties_data` 2.4.0 (Unicode 18.0.0) by
//! listing every code point whose `GeneralCategory` is `Format`; Python's Unicode 14.0 tables
//! give the same list less U+13439–U+1343F (added in 15.0). Regenerate it when moving to a
//! Unicode version that adds format characters.

use std::fmt;

/// The longest user id, in bytes (the offline queues' `MAX_RECIPIENT_LEN`).
pub const MAX_USER_BYTES: usize = 1024;
/// The longest device id, in bytes.
pub const MAX_DEVICE_BYTES: usize = 256;
/// The default longest room name, in bytes (`HubLimits::max_room_name_bytes`).
pub const DEFAULT_MAX_ROOM_BYTES: usize = 128;
/// The room name reserved for broadcasts.
pub const BROADCAST_ROOM: &str = "*";

/// General category Cf (format), Unicode 18.0: inclusive ranges, sorted, disjoint.
const FORMAT: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a format character (general category Cf).
fn is_format(c: char) -> bool {
    c >= '\u{00AD}'
        && FORMAT
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// Why a string is not a valid id (see the [module docs](self) for the grammar).
/// [`reason`](Self::reason) is a short, stable label; `Display` says what was wrong, with
/// the offending character's code point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// No bytes.
    Empty,
    /// More bytes than allowed.
    TooLong {
        /// The id's length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A control character (Cc).
    Control {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A format character (Cf): bidirectional controls, zero-width characters, the soft
    /// hyphen, ...
    Format {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// U+2028 (line separator) or U+2029 (paragraph separator).
    Separator {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A space (Zs) as the first or the last character.
    EdgeSpace {
        /// The character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// A room name that is reserved ([`BROADCAST_ROOM`]).
    Reserved,
}

impl IdError {
    /// The rule that failed, as a short, stable label: `empty`, `too_long`, `control`,
    /// `format`, `separator`, `edge_space`, `reserved`.
    pub fn reason(&self) -> &'static str {
        match self {
            IdError::Empty => "empty",
            IdError::TooLong { .. } => "too_long",
            IdError::Control { .. } => "control",
            IdError::Format { .. } => "format",
            IdError::Separator { .. } => "separator",
            IdError::EdgeSpace { .. } => "edge_space",
            IdError::Reserved => "reserved",
        }
    }

    /// The offending character's code point, for the rules about characters.
    pub fn code_point(&self) -> Option<u32> {
        match self {
            IdError::Control { ch, .. }
            | IdError::Format { ch, .. }
            | IdError::Separator { ch, .. }
            | IdError::EdgeSpace { ch, .. } => Some(u32::from(*ch)),
            IdError::Empty | IdError::TooLong { .. } | IdError::Reserved => None,
        }
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("is empty"),
            IdError::TooLong { len, max } => write!(f, "is {len} bytes, over the limit of {max}"),
            IdError::Control { ch, at } => write!(
                f,
                "has the control character U+{:04X} at byte {at}",
                u32::from(*ch)
            ),
            IdError::Format { ch, at } => write!(
                f,
                "has the invisible format character U+{:04X} at byte {at}",
                u32::from(*ch)
            ),
            IdError::Separator { ch, at } => write!(
                f,
                "has the line or paragraph separator U+{:04X} at byte {at}",
                u32::from(*ch)
            ),
            IdError::EdgeSpace { ch, at } => write!(
                f,
                "begins or ends with the space U+{:04X} (at byte {at})",
                u32::from(*ch)
            ),
            IdError::Reserved => write!(f, "is {BROADCAST_ROOM:?}, reserved for broadcasts"),
        }
    }
}

impl std::error::Error for IdError {}

/// Checks a user id: 1 to [`MAX_USER_BYTES`] bytes, and the characters of the
/// [grammar](self).
pub fn check_user(user: &str) -> Result<(), IdError> {
    check(user, MAX_USER_BYTES)
}

/// Checks a device id: 1 to [`MAX_DEVICE_BYTES`] bytes, and the characters of the
/// [grammar](self).
pub fn check_device(device: &str) -> Result<(), IdError> {
    check(device, MAX_DEVICE_BYTES)
}

/// Checks a room name: 1 to `max` bytes (the configured `max_room_name_bytes`), the
/// characters of the [grammar](self), and not [`BROADCAST_ROOM`].
pub fn check_room(room: &str, max: usize) -> Result<(), IdError> {
    check(room, max)?;
    if room == BROADCAST_ROOM {
        return Err(IdError::Reserved);
    }
    Ok(())
}

/// The rules common to every id.
fn check(id: &str, max: usize) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > max {
        return Err(IdError::TooLong { len: id.len(), max });
    }
    for (at, ch) in id.char_indices() {
        if ch.is_control() {
            return Err(IdError::Control { ch, at });
        }
        if is_format(ch) {
            return Err(IdError::Format { ch, at });
        }
        if matches!(ch, '\u{2028}' | '\u{2029}') {
            return Err(IdError::Separator { ch, at });
        }
        // What is left of White_Space is Zs: refused at either end.
        if ch.is_whitespace() && (at == 0 || at + ch.len_utf8() == id.len()) {
            return Err(IdError::EdgeSpace { ch, at });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every code point of general category Zs.
    const ZS: [char; 17] = [
        '\u{0020}', '\u{00A0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}',
        '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200A}',
        '\u{202F}', '\u{205F}', '\u{3000}',
    ];

    fn all_chars() -> impl Iterator<Item = char> {
        (0..=0x10FFFF).filter_map(char::from_u32)
    }

    #[test]
    fn format_table_is_sorted_disjoint_and_170_code_points() {
        for pair in FORMAT.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
        assert!(FORMAT.iter().all(|(lo, hi)| lo <= hi));
        assert_eq!(all_chars().filter(|&c| is_format(c)).count(), 170);
        // The lookup agrees with a plain scan of the table.
        for c in all_chars() {
            let scan = FORMAT.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            assert_eq!(is_format(c), scan, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn white_space_is_cc_zl_zp_or_zs() {
        // What the edge rule relies on: White_Space outside Cc and U+2028/2029 is exactly Zs.
        let ws: Vec<char> = all_chars()
            .filter(|c| {
                c.is_whitespace() && !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')
            })
            .collect();
        assert_eq!(ws, ZS);
        assert!(!ZS.iter().any(|&c| is_format(c)));
    }

    #[test]
    fn lengths_at_their_boundaries() {
        assert_eq!(check_user(""), Err(IdError::Empty));
        assert_eq!(check_user("a"), Ok(()));
        assert_eq!(check_user(&"u".repeat(1024)), Ok(()));
        assert_eq!(
            check_user(&"u".repeat(1025)),
            Err(IdError::TooLong {
                len: 1025,
                max: 1024
            })
        );
        // Bytes, not characters: 341 × 3 bytes + 1 = 1024; one more 3-byte character is 1027.
        let wide = format!("{}x", "€".repeat(341));
        assert_eq!(wide.len(), 1024);
        assert_eq!(check_user(&wide), Ok(()));
        assert_eq!(
            check_user(&format!("{wide}€")),
            Err(IdError::TooLong {
                len: 1027,
                max: 1024
            })
        );

        assert_eq!(check_device(""), Err(IdError::Empty));
        assert_eq!(check_device(&"d".repeat(256)), Ok(()));
        assert_eq!(
            check_device(&"d".repeat(257)),
            Err(IdError::TooLong { len: 257, max: 256 })
        );

        let max = DEFAULT_MAX_ROOM_BYTES;
        assert_eq!(check_room("", max), Err(IdError::Empty));
        assert_eq!(check_room(&"r".repeat(128), max), Ok(()));
        assert_eq!(
            check_room(&"r".repeat(129), max),
            Err(IdError::TooLong { len: 129, max: 128 })
        );
        assert_eq!(check_room("abc", 3), Ok(()));
        assert_eq!(
            check_room("abcd", 3),
            Err(IdError::TooLong { len: 4, max: 3 })
        );
        // A maximum of 0 refuses every name.
        assert_eq!(check_room("a", 0), Err(IdError::TooLong { len: 1, max: 0 }));
    }

    #[test]
    fn broadcast_room_is_reserved() {
        assert_eq!(check_room("*", 128), Err(IdError::Reserved));
        assert_eq!(IdError::Reserved.reason(), "reserved");
        assert_eq!(check_room("**", 128), Ok(()));
        assert_eq!(check_room("news*", 128), Ok(()));
        // Only rooms: `*` is a valid user and device id.
        assert_eq!(check_user("*"), Ok(()));
        assert_eq!(check_device("*"), Ok(()));
    }

    /// Asserts that `c`, at the start, inside and at the end of an id, is refused by every
    /// check with `reason`.
    #[track_caller]
    fn refused_anywhere(c: char, reason: &str) {
        let cp = u32::from(c);
        for (id, at) in [
            (format!("{c}bob"), 0),
            (format!("bo{c}b"), 2),
            (format!("bob{c}"), 3),
        ] {
            for result in [check_user(&id), check_device(&id), check_room(&id, 128)] {
                let e = result.expect_err(&format!("U+{cp:04X} in {id:?} was accepted"));
                assert_eq!(e.reason(), reason, "U+{cp:04X}");
                assert_eq!(e.code_point(), Some(cp));
                let shown = e.to_string();
                assert!(shown.contains(&format!("U+{cp:04X}")), "{shown}");
                assert!(shown.contains(&format!("byte {at}")), "{shown}");
            }
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for c in [
            '\0', '\t', '\n', '\r', '\u{1B}', '\u{7F}', '\u{80}', '\u{85}', '\u{9F}',
        ] {
            refused_anywhere(c, "control");
        }
        // All 65 of them.
        let cc: Vec<char> = all_chars().filter(|c| c.is_control()).collect();
        assert_eq!(cc.len(), 65);
        for c in cc {
            refused_anywhere(c, "control");
        }
        // CRLF: the first one is reported.
        assert_eq!(
            check_user("alice\r\nbob"),
            Err(IdError::Control { ch: '\r', at: 5 })
        );
    }

    #[test]
    fn format_characters_are_refused() {
        // The ones the grammar names, then all of Cf.
        let named = [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200B}', '\u{200C}',
            '\u{200D}', '\u{2060}', '\u{2061}', '\u{2062}', '\u{2063}', '\u{2064}', '\u{FEFF}',
            '\u{00AD}',
        ];
        for c in named {
            assert!(is_format(c), "U+{:04X}", u32::from(c));
            refused_anywhere(c, "format");
        }
        for c in all_chars().filter(|&c| is_format(c)) {
            refused_anywhere(c, "format");
        }
        assert_eq!(
            check_user("alice\u{202E}txt.exe"),
            Err(IdError::Format {
                ch: '\u{202E}',
                at: 5
            })
        );
    }

    #[test]
    fn line_and_paragraph_separators_are_refused() {
        refused_anywhere('\u{2028}', "separator");
        refused_anywhere('\u{2029}', "separator");
    }

    #[test]
    fn spaces_are_refused_only_at_the_ends() {
        for c in ZS {
            let cp = u32::from(c);
            let e = check_user(&format!("{c}bob")).unwrap_err();
            assert_eq!(e, IdError::EdgeSpace { ch: c, at: 0 });
            assert_eq!(e.code_point(), Some(cp));
            assert_eq!(e.reason(), "edge_space");
            assert!(e.to_string().contains(&format!("U+{cp:04X}")), "{e}");
            assert_eq!(
                check_device(&format!("bob{c}")),
                Err(IdError::EdgeSpace { ch: c, at: 3 })
            );
            assert_eq!(
                check_room(&c.to_string(), 128),
                Err(IdError::EdgeSpace { ch: c, at: 0 })
            );
            assert_eq!(check_user(&format!("bo{c}b")), Ok(()), "U+{cp:04X} inside");
        }
        assert_eq!(check_user("Alice Smith"), Ok(()));
    }

    #[test]
    fn other_scripts_symbols_and_emoji_are_accepted() {
        for id in [
            "alice",
            "Ålesund",
            "名前",
            "مرحبا",
            "שלום",
            "Ελένη",
            "नमस्ते",
            "e\u{301}",
            "🙂",
            "❤\u{FE0F}",
            "user@example.com",
            "a/b:c#d",
            "\u{E000}",
            "\u{10FFFF}",
        ] {
            assert_eq!(check_user(id), Ok(()), "{id:?}");
            assert_eq!(check_device(id), Ok(()), "{id:?}");
            assert_eq!(check_room(id, 128), Ok(()), "{id:?}");
        }
        // Joined and tag emoji use format characters.
        assert_eq!(check_user("👨\u{200D}👩").unwrap_err().reason(), "format");
    }

    #[test]
    fn reasons_and_messages() {
        let cases = [
            (IdError::Empty, "empty", None, "is empty"),
            (
                IdError::TooLong { len: 9, max: 8 },
                "too_long",
                None,
                "is 9 bytes, over the limit of 8",
            ),
            (
                IdError::Control { ch: '\r', at: 1 },
                "control",
                Some(0x0D),
                "has the control character U+000D at byte 1",
            ),
            (
                IdError::Format {
                    ch: '\u{202E}',
                    at: 0,
                },
                "format",
                Some(0x202E),
                "has the invisible format character U+202E at byte 0",
            ),
            (
                IdError::Separator {
                    ch: '\u{2028}',
                    at: 2,
                },
                "separator",
                Some(0x2028),
                "has the line or paragraph separator U+2028 at byte 2",
            ),
            (
                IdError::EdgeSpace { ch: ' ', at: 0 },
                "edge_space",
                Some(0x20),
                "begins or ends with the space U+0020 (at byte 0)",
            ),
            (
                IdError::Reserved,
                "reserved",
                None,
                "is \"*\", reserved for broadcasts",
            ),
        ];
        for (e, reason, cp, shown) in cases {
            assert_eq!(e.reason(), reason);
            assert_eq!(e.code_point(), cp);
            assert_eq!(e.to_string(), shown);
        }
        // Astral code points print with all their digits.
        let e = check_user("a\u{E0041}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "has the invisible format character U+E0041 at byte 1"
        );
    }

    /// Whether `c` may appear somewhere in an id (the model the property test compares with).
    fn refused_anywhere_model(c: char) -> bool {
        c.is_control() || is_format(c) || c == '\u{2028}' || c == '\u{2029}'
    }

    /// Characters: any, plus a good share of the refused ones, spaces and ASCII.
    fn id_char() -> impl Strategy<Value = char> {
        let refused: Vec<char> = (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|&c| refused_anywhere_model(c))
            .collect();
        prop_oneof![
            3 => any::<char>(),
            2 => proptest::sample::select(refused),
            1 => proptest::sample::select(ZS.to_vec()),
            3 => proptest::char::range('!', '~'),
        ]
    }

    proptest! {
        #[test]
        fn accepted_ids_contain_no_refused_character(
            chars in proptest::collection::vec(id_char(), 0..48),
            max in 0usize..200,
        ) {
            let id: String = chars.into_iter().collect();
            let results = [
                (check_user(&id), MAX_USER_BYTES),
                (check_device(&id), MAX_DEVICE_BYTES),
                (check_room(&id, max), max),
            ];
            for (result, limit) in results {
                let clean = !id.is_empty()
                    && id.len() <= limit
                    && !id.chars().any(refused_anywhere_model)
                    && !id.starts_with(char::is_whitespace)
                    && !id.ends_with(char::is_whitespace);
                if result.is_ok() {
                    // Accepted: none of the refused characters, no white space at the ends,
                    // the length within bounds.
                    prop_assert!(clean, "accepted {:?}", id);
                } else {
                    // Refused: for one of the rules (or the reserved room name).
                    prop_assert!(!clean || id == BROADCAST_ROOM, "refused {:?}: {:?}", id, result);
                }
            }
        }
    }
}
