//! The close codes the hub uses, and what a client should do after each ([`Reconnect`]).
//!
//! One table, used by every door and documented in `docs/chat-protocol.md`: WebSocket
//! connections are closed with the code; gotalk-door connections first get a `bye`
//! notification carrying the same code and reason (so TCP clients, which see no close code,
//! know it too). Codes 1000–1015 are RFC 6455's; 4000–4999 are the hub's own.

use std::fmt;

/// What a client should do after its connection was closed with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reconnect {
    /// Reconnect now (the close was not about this client).
    AtOnce,
    /// Reconnect after a delay, growing with each failure (exponential backoff with full
    /// jitter).
    Backoff,
    /// Get a fresh token, then reconnect.
    AfterRefresh,
    /// Do not reconnect on your own: a person or a newer sign-on decided this connection ends.
    Never,
}

impl Reconnect {
    /// `at_once`, `backoff`, `after_refresh`, `never` (as in the protocol document).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reconnect::AtOnce => "at_once",
            Reconnect::Backoff => "backoff",
            Reconnect::AfterRefresh => "after_refresh",
            Reconnect::Never => "never",
        }
    }
}

/// A close code of the hub's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: closed normally (the client asked, or the server ended the conversation).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is shutting down or restarting, or the connection was idle too long.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the client broke the protocol (gotalk framing, WebSocket framing).
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1008: the client broke a policy: its send queue overflowed (it does not read), a message
    /// took too long to arrive, a write timed out.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message was larger than the limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server failed (a handler panicked, an internal error).
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1013: the server is overloaded; try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4001: authentication failed (bad or missing token, or refused by the application).
    pub const AUTH_FAILED: CloseCode = CloseCode(4001);
    /// 4002: the token expired and no fresh one was presented (`refresh`).
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4002);
    /// 4003: a newer sign-on of the same user (or device) replaced this connection.
    pub const REPLACED: CloseCode = CloseCode(4003);
    /// 4004: kicked by the server's operator or application.
    pub const KICKED: CloseCode = CloseCode(4004);
    /// 4008: the client sent messages faster than its rate limit, repeatedly.
    pub const RATE_LIMITED: CloseCode = CloseCode(4008);
    /// 4009: no token arrived within the auth timeout (first-message logins).
    pub const AUTH_TIMEOUT: CloseCode = CloseCode(4009);
    /// 4010: too many wrong room passwords on this connection.
    pub const TOO_MANY_GUESSES: CloseCode = CloseCode(4010);

    /// Every code of the table, in order.
    pub const ALL: [CloseCode; 14] = [
        CloseCode::NORMAL,
        CloseCode::GOING_AWAY,
        CloseCode::PROTOCOL,
        CloseCode::POLICY,
        CloseCode::TOO_BIG,
        CloseCode::INTERNAL,
        CloseCode::TRY_AGAIN_LATER,
        CloseCode::AUTH_FAILED,
        CloseCode::TOKEN_EXPIRED,
        CloseCode::REPLACED,
        CloseCode::KICKED,
        CloseCode::RATE_LIMITED,
        CloseCode::AUTH_TIMEOUT,
        CloseCode::TOO_MANY_GUESSES,
    ];

    /// What a client should do after this code. Codes not in the table (and 1006, a
    /// connection that broke without a close) mean [`Reconnect::Backoff`].
    pub fn reconnect(self) -> Reconnect {
        match self.0 {
            1000 | 4001 | 4003 | 4004 => Reconnect::Never,
            4002 => Reconnect::AfterRefresh,
            1001 => Reconnect::Backoff,
            _ => Reconnect::Backoff,
        }
    }

    /// The short name used in `bye` notifications and the protocol document.
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal",
            1001 => "going_away",
            1002 => "protocol_error",
            1008 => "policy",
            1009 => "too_big",
            1011 => "internal_error",
            1013 => "try_again_later",
            4001 => "auth_failed",
            4002 => "token_expired",
            4003 => "replaced",
            4004 => "kicked",
            4008 => "rate_limited",
            4009 => "auth_timeout",
            4010 => "too_many_guesses",
            _ => "other",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

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
        chinwag_transport::CloseReason::new(
            chinwag_transport::CloseCode(self.code.0),
            &self.reason[..end],
        )
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
    fn the_table_is_consistent() {
        for c in CloseCode::ALL {
            assert_ne!(c.name(), "other", "{c:?} has a name");
        }
        assert_eq!(CloseCode::REPLACED.reconnect(), Reconnect::Never);
        assert_eq!(CloseCode::KICKED.reconnect(), Reconnect::Never);
        assert_eq!(CloseCode::AUTH_FAILED.reconnect(), Reconnect::Never);
        assert_eq!(
            CloseCode::TOKEN_EXPIRED.reconnect(),
            Reconnect::AfterRefresh
        );
        assert_eq!(CloseCode::GOING_AWAY.reconnect(), Reconnect::Backoff);
        assert_eq!(CloseCode(1006).reconnect(), Reconnect::Backoff);
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let c = Close::new(CloseCode::KICKED, "é".repeat(100));
        let t = c.to_transport();
        assert!(t.reason.len() <= 123);
        assert!(t.reason.chars().all(|ch| ch == 'é'));
    }
}
