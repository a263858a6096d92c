//! The close-code table every door and transport shares: [`CloseCode`] (RFC 6455's codes and
//! chinwag's own 4000–4999 codes), each with a short [name](CloseCode::name) and the
//! [`Reconnect`] advice a client should follow, and [`CloseReason`] (a code and a reason).
//!
//! WebSocket connections carry the code in their close frame; byte streams carry none (a hub
//! door tells it in a message of its protocol before closing). The table is documented in
//! `docs/transports.md` (and, with when the hub sends each code, in `docs/chat-protocol.md`).

use std::fmt;

/// What a client should do after its connection was closed with a code
/// ([`CloseCode::reconnect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// `at_once`, `backoff`, `after_refresh`, `never` (as in the protocol documents).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reconnect::AtOnce => "at_once",
            Reconnect::Backoff => "backoff",
            Reconnect::AfterRefresh => "after_refresh",
            Reconnect::Never => "never",
        }
    }
}

impl fmt::Display for Reconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A close code: RFC 6455 §7.4's (1000–1015) and chinwag's own (4000–4999), one table for
/// every door and transport, with a [name](Self::name) and [reconnect advice](Self::reconnect)
/// per code ([`CloseCode::ALL`] lists them). Byte-stream transports have no close frame and
/// report [`CloseCode::NORMAL`] for an orderly end of stream.
///
/// | code | name | reconnect |
/// |---|---|---|
/// | 1000 | `normal` | `never` |
/// | 1001 | `going_away` | `backoff` |
/// | 1002 | `protocol_error` | `backoff` |
/// | 1003 | `unsupported_data` | `backoff` |
/// | 1007 | `invalid_payload` | `backoff` |
/// | 1008 | `policy` | `backoff` |
/// | 1009 | `too_big` | `backoff` |
/// | 1011 | `internal_error` | `backoff` |
/// | 1013 | `try_again_later` | `backoff` |
/// | 4001 | `auth_failed` | `never` |
/// | 4002 | `token_expired` | `after_refresh` |
/// | 4003 | `replaced` | `never` |
/// | 4004 | `kicked` | `never` |
/// | 4008 | `rate_limited` | `backoff` |
/// | 4009 | `auth_timeout` | `backoff` |
/// | 4010 | `too_many_guesses` | `backoff` |
///
/// Any other code (and 1006, a connection that broke without a close frame) is named `other`
/// and means [`Reconnect::Backoff`].
///
/// ```
/// use chinwag::transport::{CloseCode, Reconnect};
/// assert_eq!(CloseCode::REPLACED.name(), "replaced");
/// assert_eq!(CloseCode::REPLACED.reconnect(), Reconnect::Never);
/// assert_eq!(CloseCode(1006).reconnect(), Reconnect::Backoff);
/// assert_eq!(CloseCode::TOO_MANY_GUESSES.to_string(), "4010 (too_many_guesses)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: closed normally (the peer asked, or the server ended the conversation).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away: the server is shutting down or restarting, the
    /// connection was idle too long, or a keepalive ping got no answer.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error (gotalk framing, WebSocket framing).
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1007: invalid payload data (e.g. a text message that is not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation: the peer's send queue overflowed (it does not read), a message
    /// took too long to arrive, a write timed out.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message was larger than the limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the server hit an unexpected condition (a handler panicked, an internal error).
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1013: the server is overloaded, or made room for others (a connection evicted before
    /// signing in); try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4001: authentication failed (bad or missing token, or refused by the application).
    pub const AUTH_FAILED: CloseCode = CloseCode(4001);
    /// 4002: the token expired and no fresh one was presented.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4002);
    /// 4003: a newer sign-on of the same user (or device) replaced this connection.
    pub const REPLACED: CloseCode = CloseCode(4003);
    /// 4004: kicked by the server's operator or application.
    pub const KICKED: CloseCode = CloseCode(4004);
    /// 4008: the peer went over a rate limit repeatedly (messages, room-password guesses).
    pub const RATE_LIMITED: CloseCode = CloseCode(4008);
    /// 4009: no sign-in arrived within the auth timeout (first-message logins).
    pub const AUTH_TIMEOUT: CloseCode = CloseCode(4009);
    /// 4010: too many wrong room passwords.
    pub const TOO_MANY_GUESSES: CloseCode = CloseCode(4010);

    /// Every code of the table, in ascending order.
    pub const ALL: [CloseCode; 16] = [
        CloseCode::NORMAL,
        CloseCode::GOING_AWAY,
        CloseCode::PROTOCOL,
        CloseCode::UNSUPPORTED,
        CloseCode::INVALID_PAYLOAD,
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

    /// The short name used in protocol messages (a hub's `bye`) and the documents; `other`
    /// for codes not in the table.
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal",
            1001 => "going_away",
            1002 => "protocol_error",
            1003 => "unsupported_data",
            1007 => "invalid_payload",
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

    /// What a client should do after this code. Codes not in the table (and 1006, a
    /// connection that broke without a close) mean [`Reconnect::Backoff`].
    pub fn reconnect(self) -> Reconnect {
        match self.0 {
            1000 | 4001 | 4003 | 4004 => Reconnect::Never,
            4002 => Reconnect::AfterRefresh,
            _ => Reconnect::Backoff,
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// A close code and a human-readable reason (at most 123 bytes go on a WebSocket wire; longer
/// reasons are truncated at a character boundary by the engines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The close code.
    pub code: CloseCode,
    /// Free text for logs; may be empty.
    pub reason: String,
}

impl CloseReason {
    /// A close with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseReason {
            code,
            reason: reason.into(),
        }
    }

    /// The orderly close: 1000 with no reason.
    pub fn normal() -> Self {
        CloseReason::new(CloseCode::NORMAL, "")
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code.0)
        } else {
            write!(f, "{} ({})", self.code.0, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        // Every constant is in `ALL`, once, in ascending order, with a name of its own.
        let constants = [
            CloseCode::NORMAL,
            CloseCode::GOING_AWAY,
            CloseCode::PROTOCOL,
            CloseCode::UNSUPPORTED,
            CloseCode::INVALID_PAYLOAD,
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
        for c in constants {
            assert!(CloseCode::ALL.contains(&c), "{c:?} is in ALL");
        }
        assert_eq!(constants.len(), CloseCode::ALL.len());
        assert!(
            CloseCode::ALL.windows(2).all(|w| w[0].0 < w[1].0),
            "ascending"
        );
        let mut names: Vec<_> = CloseCode::ALL.iter().map(|c| c.name()).collect();
        assert!(!names.contains(&"other"), "every code has a name");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CloseCode::ALL.len(), "names are distinct");
        // RFC 6455's codes are 1000–1015; chinwag's own are 4000–4999.
        assert!(
            CloseCode::ALL
                .iter()
                .all(|c| (1000..=1015).contains(&c.0) || (4000..=4999).contains(&c.0))
        );
        // The advice.
        for c in [
            CloseCode::NORMAL,
            CloseCode::AUTH_FAILED,
            CloseCode::REPLACED,
            CloseCode::KICKED,
        ] {
            assert_eq!(c.reconnect(), Reconnect::Never, "{c}");
        }
        assert_eq!(
            CloseCode::TOKEN_EXPIRED.reconnect(),
            Reconnect::AfterRefresh
        );
        for c in [
            CloseCode::GOING_AWAY,
            CloseCode::TRY_AGAIN_LATER,
            CloseCode::RATE_LIMITED,
            CloseCode::AUTH_TIMEOUT,
            CloseCode::TOO_MANY_GUESSES,
            CloseCode(1006),
            CloseCode(4999),
        ] {
            assert_eq!(c.reconnect(), Reconnect::Backoff, "{c}");
        }
        assert_eq!(CloseCode(1006).name(), "other");
        assert_eq!(CloseCode::TOO_MANY_GUESSES.name(), "too_many_guesses");
        assert_eq!(Reconnect::AfterRefresh.to_string(), "after_refresh");
    }
}
