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
/// Its `Display` is the message, prefixed with the code unless the message already starts
/// with it (the server's `refused` errors say `refused: <why>`), so a code is never shown twice:
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

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.message;
        let has_code = m
            .strip_prefix(self.code.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ', ',', ';']));
        if has_code || self.code.is_empty() {
            f.write_str(m)
        } else if m.is_empty() {
            f.write_str(&self.code)
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
        let e = ChatError::from_remote(r#"{"code":"refused","message":"refused: spam"}"#);
        assert_eq!(e.code(), "refused");
        assert_eq!(e.to_string(), "refused: spam");
        let e = ChatError::from_remote(r#"{"code":"room_full","message":"room is full"}"#);
        assert_eq!(e.to_string(), "room_full: room is full");
        // a message that only begins with the code's letters still gets the prefix
        let e = ChatError::new("busy", "busyness");
        assert_eq!(e.to_string(), "busy: busyness");
        let e = ChatError::from_remote("unknown operation \"nope\"");
        assert_eq!(e.code(), "internal");
        assert_eq!(e.to_string(), "internal: unknown operation \"nope\"");
        assert_eq!(ChatError::new("closed", "").to_string(), "closed");
    }
}
