//! [`ChatError`]: the server's `{code, message}` errors and the client's own.

use std::fmt;

use crate::rpc::{Disconnect, RpcError};

/// A failed call of the chat [`Client`](super::Client): the server's error (its stable
/// [`code`](Self::code), e.g. `wrong_password`, `not_member`, `offline`: the table of
/// `docs/chat-protocol.md` §3) or one of the client's own codes:
///
/// | code | when |
/// |---|---|
/// | `closed` | the client is closed for good, or the connection broke before the answer came (the call may or may not have happened: it is not resent) |
/// | `timeout` | no answer (or no signed-in connection to send it on) within the call timeout |
/// | `overloaded` | the server kept answering "retry later" |
/// | `internal` | an error text that is not the protocol's JSON (e.g. `unknown operation "x"`) |
/// | `bad_response` | an answer that is not the JSON the operation returns |
/// | `connect` | the connection could not be opened (refused, unreachable, handshake failed) |
/// | `token` | the token function failed |
///
/// Its `Display` is the message, prefixed with the code unless the message already says it
/// (the server's `refused` and `auth_refused` errors say `refused: <why>`, its
/// `rate_limited` errors `rate limited`), so a code is never shown twice:
///
/// ```
/// use chinwag::client::ChatError;
///
/// let e = ChatError::new("refused", "refused: no links please");
/// assert_eq!(e.to_string(), "refused: no links please");
/// let e = ChatError::new("room_full", "room is full");
/// assert_eq!(e.to_string(), "room_full: room is full");
/// assert_eq!(e.code(), "room_full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    code: String,
    message: String,
}

impl ChatError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ChatError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The stable code (the server's, or one of the client's own: see the type's docs).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The text for people (it may change; act on [`code`](Self::code)).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the client is closed for good or the connection broke before the answer.
    pub fn is_closed(&self) -> bool {
        self.code == "closed"
    }

    /// Whether it is a refused token (`auth_*`).
    pub fn is_auth(&self) -> bool {
        self.code.starts_with("auth_")
    }

    pub(crate) fn closed(message: impl Into<String>) -> Self {
        ChatError::new("closed", message)
    }

    /// The error text of an `E` result: the protocol's JSON `{code, message}`, else `internal`.
    pub(crate) fn from_remote(text: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Wire {
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_str::<Wire>(text) {
            Ok(w) => ChatError::new(w.code, w.message),
            Err(_) => ChatError::new("internal", text),
        }
    }

    pub(crate) fn from_rpc(e: RpcError) -> Self {
        match e {
            RpcError::Remote { message } => ChatError::from_remote(&message),
            RpcError::Timeout(d) => ChatError::new("timeout", format!("no answer within {d:?}")),
            RpcError::Closed(Disconnect::Clean) => ChatError::closed("the client was closed"),
            RpcError::Closed(why) => ChatError::closed(format!(
                "the connection closed before the answer ({why}); the call may or may not have happened"
            )),
            RpcError::Overloaded { .. } => ChatError::new("overloaded", e.to_string()),
            RpcError::Json(_) => ChatError::new("bad_response", e.to_string()),
            other => ChatError::new("internal", other.to_string()),
        }
    }
}

/// Whether `message` already says `code`: it starts with the code's words (`rate_limited`:
/// "rate limited", `auth_refused`: "refused"), in any case, followed by its end or a
/// non-alphanumeric character.
fn says_code(code: &str, message: &str) -> bool {
    let words = code.strip_prefix("auth_").unwrap_or(code).replace('_', " ");
    if words.is_empty() || message.len() < words.len() || !message.is_char_boundary(words.len()) {
        return false;
    }
    let (head, rest) = message.split_at(words.len());
    head.eq_ignore_ascii_case(&words) && rest.chars().next().is_none_or(|c| !c.is_alphanumeric())
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        if m.is_empty() {
            f.write_str(&self.code)
        } else if self.code.is_empty() || says_code(&self.code, m) {
            f.write_str(m)
        } else {
            write!(f, "{}: {m}", self.code)
        }
    }
}

impl std::error::Error for ChatError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_repeats_the_code() {
        // the server's messages (chinwag-hub's errors) for codes whose words they repeat
        for (code, message, shown) in [
            ("refused", "refused: spam", "refused: spam"),
            (
                "auth_refused",
                "refused: no such user",
                "refused: no such user",
            ),
            ("rate_limited", "rate limited", "rate limited"),
            ("shutting_down", "shutting down", "shutting down"),
            ("busy", "busy; try again", "busy; try again"),
            ("room_exists", "room exists", "room exists"),
            ("room_full", "room is full", "room_full: room is full"),
            (
                "auth_expired",
                "token expired",
                "auth_expired: token expired",
            ),
            // a message that only begins with the code's letters still gets the prefix
            ("busy", "busyness", "busy: busyness"),
            ("closed", "", "closed"),
        ] {
            let json = serde_json::json!({ "code": code, "message": message }).to_string();
            let e = ChatError::from_remote(&json);
            assert_eq!((e.code(), e.message()), (code, message));
            assert_eq!(e.to_string(), shown);
        }
        let e = ChatError::from_remote("unknown operation \"nope\"");
        assert_eq!(e.code(), "internal");
        assert_eq!(e.to_string(), "internal: unknown operation \"nope\"");
    }
}
