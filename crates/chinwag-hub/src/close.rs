//! Why the hub closes a connection ([`Close`]): a code of the one close-code table every door
//! and transport shares ([`CloseCode`], with its [`Reconnect`] advice; it lives in
//! `chinwag-transport`) and a short reason.
//!
//! WebSocket connections are closed with the code; gotalk-door connections first get a `bye`
//! notification carrying the same code and reason (so TCP clients, which see no close code, know
//! it too). The codes the hub sends, and when, are in `docs/chat-protocol.md`.

use std::fmt;

pub use chinwag_transport::{CloseCode, Reconnect};

/// Why the hub closes a connection: a code of the table and a short reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The code.
    pub code: CloseCode,
    /// A short, human-readable reason (at most 123 bytes go into a WebSocket close frame).
    pub reason: String,
}

impl Close {
    /// A close with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Close {
            code,
            reason: reason.into(),
        }
    }

    /// The transport-level close reason (code and reason, the reason cut to what fits a
    /// WebSocket close frame at a character boundary).
    pub fn to_transport(&self) -> chinwag_transport::CloseReason {
        let mut end = self.reason.len().min(123);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        chinwag_transport::CloseReason::new(self.code, &self.reason[..end])
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let c = Close::new(CloseCode::KICKED, "é".repeat(100));
        let t = c.to_transport();
        assert!(t.reason.len() <= 123);
        assert!(t.reason.chars().all(|ch| ch == 'é'));
    }
}
