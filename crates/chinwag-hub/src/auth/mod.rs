//! Authentication at connect: the [`Authenticator`] trait, where a token is looked for
//! ([`TokenSources`]), and the built-in JWT authenticator ([`JwtAuthenticator`]).
//!
//! A connection presents one token. Where it is looked for, in this order, is configured by
//! [`TokenSources`]: the `Authorization: Bearer` header, the WebSocket subprotocol list (what a
//! browser can set), the query string (off by default: it leaks into logs), and — for doors
//! that allow it — the first message, under an auth timeout. A token longer than
//! [`TokenSources::max_token_len`] (default 8 KiB) is refused before it is parsed.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::identity::Device;

mod issuer;
mod jwt;
mod source;
mod static_tokens;

pub use issuer::JwtIssuer;
pub use jwt::{JwtAuthenticator, JwtConfig, JwtConfigError, JwtKey};
pub use source::{SUBPROTOCOL_TOKEN_PREFIX, TokenSource, TokenSources, find_token};
pub use static_tokens::{StaticTokenError, StaticTokens};

/// The `jsonwebtoken` crate the JWT types are built on (its `Algorithm` and `EncodingKey`
/// appear in [`JwtKey::algorithm`] and [`JwtIssuer::with_key`]), at the version they use.
pub use jsonwebtoken;

/// A boxed, `Send` future (what [`Authenticator::authenticate`] returns, so that
/// `Arc<dyn Authenticator>` works): `futures_core`'s, the one every chinwag trait uses.
pub use futures_core::future::BoxFuture;

/// Who a token says the connection is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated {
    /// The device the connection belongs to.
    pub device: Device,
    /// When the token stops being valid (`exp`); the hub closes the connection then, plus its
    /// grace period, unless the client refreshed. `None`: never.
    pub expires_at: Option<SystemTime>,
}

impl Authenticated {
    /// A device whose credential never expires.
    pub fn new(device: Device) -> Self {
        Authenticated {
            device,
            expires_at: None,
        }
    }

    /// Sets when the credential expires.
    pub fn with_expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Where a token was presented (for an authenticator that wants to know, e.g. one that asks
/// the application's backend): the door and the client's address, when known.
///
/// ```
/// use chinwag::hub::auth::AuthContext;
/// let ctx = AuthContext::new().with_door("tok");
/// assert_eq!(ctx.door, Some("tok"));
/// assert_eq!(ctx.ip, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthContext {
    /// The door (`chat`, `rooms`, `tok`, ...): `None` for a refresh or a check made outside a
    /// door.
    pub door: Option<&'static str>,
    /// The client's IP address.
    pub ip: Option<IpAddr>,
}

impl AuthContext {
    /// Nothing known.
    pub fn new() -> Self {
        AuthContext::default()
    }

    /// Sets [`door`](Self::door).
    pub fn with_door(mut self, door: &'static str) -> Self {
        self.door = Some(door);
        self
    }

    /// Sets [`ip`](Self::ip).
    pub fn with_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }
}

/// Decides who a token belongs to. Called at connect (WebSocket: before the upgrade is
/// answered), for first-message logins and for refreshes. Runs on the async threads: an
/// implementation that does heavy or blocking work moves it off them.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks `token` and returns the device it names.
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>>;

    /// What the hub calls: `token` as the client sent it — any bytes on the tok door, whose
    /// first frame is the token — and where it came from. The default refuses a token that
    /// is not UTF-8 ([`AuthError::Malformed`]) and calls
    /// [`authenticate`](Self::authenticate) with it; an authenticator for opaque binary
    /// tokens (the event proxy's) overrides this.
    fn authenticate_bytes<'a>(
        &'a self,
        token: &'a [u8],
        ctx: AuthContext,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        let _ = ctx;
        match std::str::from_utf8(token) {
            Ok(t) => self.authenticate(t),
            Err(e) => Box::pin(std::future::ready(Err(AuthError::Malformed(format!(
                "the token is not UTF-8 (byte {} of {})",
                e.valid_up_to(),
                token.len()
            ))))),
        }
    }
}

/// Why a connection was not authenticated. [`reason`](Self::reason) is the label the hub's
/// refusal metric counts it under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (and anonymous connections are not enabled).
    #[error("no token presented")]
    Missing,
    /// The token is longer than the configured limit; it was not parsed.
    #[error("token of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The token is not a well-formed JWT (or not valid for its source), or its header uses
    /// an extension chinwag does not understand (`crit`, or `b64` other than `true`; the
    /// message names the header member).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token's algorithm is not the one pinned to the key (including `none`).
    #[error("token algorithm not accepted")]
    Algorithm,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway). A token without `exp` is [`AuthError::Claims`].
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `aud` does not match the configured audience.
    #[error("wrong audience")]
    Audience,
    /// `iss` does not match the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// A required claim is missing or has the wrong type (e.g. `sub`), or `sub` or the device
    /// claim is not a valid id (the message names the claim and the rule, e.g. `sub has the
    /// control character U+000D at byte 5 (control)`).
    #[error("bad claims: {0}")]
    Claims(String),
    /// A refresh named a different user than the connection's.
    #[error("token is for another user")]
    OtherUser,
    /// A custom authenticator refused (its message).
    #[error("refused: {0}")]
    Refused(String),
    /// The authenticator could not decide (e.g. its backend is down): retry later.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The metric label of this refusal: `missing`, `too_large`, `malformed`, `algorithm`,
    /// `bad_signature`, `expired`, `not_yet_valid`, `audience`, `issuer`, `claims`,
    /// `other_user`, `refused`, `unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge { .. } => "too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Audience => "audience",
            AuthError::Issuer => "issuer",
            AuthError::Claims(_) => "claims",
            AuthError::OtherUser => "other_user",
            AuthError::Refused(_) => "refused",
            AuthError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status a WebSocket upgrade is refused with: 401 when a (new) token could fix
    /// it, 403 when this identity is not let in, 503 when the authenticator is unavailable.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Refused(_) | AuthError::OtherUser => 403,
            AuthError::Unavailable(_) => 503,
            _ => 401,
        }
    }
}
