//! Where a connection's token is found: [`TokenSources`] and [`find_token`].

use chinwag_transport::ConnectInfo;

use super::AuthError;

/// The prefix of a token carried as a WebSocket subprotocol.
///
/// A browser cannot set an `Authorization` header on a WebSocket, but it can offer
/// subprotocols: it offers e.g. `["chinwag.v1", "bearer.<jwt>"]`. The server must then confirm
/// a *different* offered protocol (`chinwag.v1`), never the token one: the confirmed protocol
/// is echoed in the response and may be logged.
pub const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";

/// The default of [`TokenSources::max_token_len`] (and of the JWT authenticator's limit).
pub(crate) const DEFAULT_MAX_TOKEN_LEN: usize = 8192;

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// The `Authorization: Bearer <token>` request header.
    Bearer,
    /// An offered WebSocket subprotocol `bearer.<token>` ([`SUBPROTOCOL_TOKEN_PREFIX`]).
    Subprotocol,
    /// A query parameter of the request ([`TokenSources::query`]).
    Query,
    /// The first message on the connection, for doors that allow it.
    FirstMessage,
    /// No token: an anonymous connection ([`HubConfig::anonymous`](crate::HubConfig::anonymous)).
    Anonymous,
}

impl TokenSource {
    /// A short label for logs and metrics: `bearer`, `subprotocol`, `query`,
    /// `first_message`, `anonymous`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenSource::Bearer => "bearer",
            TokenSource::Subprotocol => "subprotocol",
            TokenSource::Query => "query",
            TokenSource::FirstMessage => "first_message",
            TokenSource::Anonymous => "anonymous",
        }
    }
}

/// Where a connection's token is looked for, in this order: the `Authorization` header, the
/// offered subprotocols, the query string; and whether doors that support it may wait for it
/// as the first message. Tokens longer than `max_token_len` are refused before they are
/// parsed.
///
/// | field | default |
/// |---|---|
/// | `bearer` | `true` |
/// | `subprotocol` | `true` |
/// | `query` | `None` (off) |
/// | `first_message` | `true` |
/// | `max_token_len` | 8192 bytes |
///
/// ```
/// use chinwag::hub::auth::TokenSources;
/// let sources = TokenSources::default().with_query(Some("token".into()));
/// assert!(sources.bearer && sources.subprotocol && sources.first_message);
/// assert_eq!(sources.query.as_deref(), Some("token"));
/// assert!(sources.check_len(&"x".repeat(8193)).is_err());
/// ```
///
/// With the `serde` feature it reads from a table of these fields, `query = ""` for `None`;
/// a missing field keeps its default and an unknown one is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct TokenSources {
    /// Look in the `Authorization` header for `Bearer <token>` (the scheme is matched without
    /// regard to case). When on, an `Authorization` header that is anything else refuses the
    /// connection ([`AuthError::Malformed`]). Default `true`.
    pub bearer: bool,
    /// Look among the offered WebSocket subprotocols for `bearer.<token>`
    /// ([`SUBPROTOCOL_TOKEN_PREFIX`]; the first one offered is used). Default `true`.
    pub subprotocol: bool,
    /// The query parameter that carries a token (e.g. `Some("token")` reads `?token=...`; name and
    /// value are percent-decoded, as by [`ConnectInfo::query_param`]). Default `None`: off, since
    /// URLs, and so tokens in them, end up in access logs and proxies.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::empty_is_none"))]
    pub query: Option<String>,
    /// Doors that support it wait for the token as the connection's first message (under an
    /// auth timeout) when none came with the connection. Default `true`.
    pub first_message: bool,
    /// The longest token accepted, in bytes; longer ones are refused with
    /// [`AuthError::TooLarge`] before anything else is done with them. Default 8192.
    pub max_token_len: usize,
}

impl Default for TokenSources {
    fn default() -> Self {
        TokenSources {
            bearer: true,
            subprotocol: true,
            query: None,
            first_message: true,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

impl TokenSources {
    /// Sets [`bearer`](Self::bearer).
    pub fn with_bearer(mut self, bearer: bool) -> Self {
        self.bearer = bearer;
        self
    }

    /// Sets [`subprotocol`](Self::subprotocol).
    pub fn with_subprotocol(mut self, subprotocol: bool) -> Self {
        self.subprotocol = subprotocol;
        self
    }

    /// Sets [`query`](Self::query).
    pub fn with_query(mut self, query: Option<String>) -> Self {
        self.query = query;
        self
    }

    /// Sets [`first_message`](Self::first_message).
    pub fn with_first_message(mut self, first_message: bool) -> Self {
        self.first_message = first_message;
        self
    }

    /// Sets [`max_token_len`](Self::max_token_len).
    pub fn with_max_token_len(mut self, max_token_len: usize) -> Self {
        self.max_token_len = max_token_len;
        self
    }

    /// Refuses a token longer than [`max_token_len`](Self::max_token_len) (for tokens that
    /// arrive as a first message; [`find_token`] checks the ones it finds).
    ///
    /// # Errors
    ///
    /// [`AuthError::TooLarge`].
    pub fn check_len(&self, token: &(impl AsRef<[u8]> + ?Sized)) -> Result<(), AuthError> {
        let token = token.as_ref();
        if token.len() > self.max_token_len {
            return Err(AuthError::TooLarge {
                len: token.len(),
                limit: self.max_token_len,
            });
        }
        Ok(())
    }

    /// The length check, then: non-empty, visible ASCII only.
    fn check(&self, token: &str, source: TokenSource) -> Result<(), AuthError> {
        self.check_len(token)?;
        if token.is_empty() {
            return Err(AuthError::Malformed(format!(
                "empty token ({})",
                source.as_str()
            )));
        }
        if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(AuthError::Malformed(format!(
                "token ({}) is not visible ASCII",
                source.as_str()
            )));
        }
        Ok(())
    }
}

/// Finds the token a connection presented at connect: the `Authorization: Bearer` header,
/// then an offered `bearer.<token>` subprotocol, then the query parameter (when enabled),
/// each only when enabled in `sources`. The first source that has one wins; the others are
/// not looked at.
///
/// A token must be non-empty visible ASCII (`0x21..=0x7e`) of at most
/// [`TokenSources::max_token_len`] bytes; its length is checked before anything else.
///
/// ```
/// use chinwag::hub::auth::{TokenSource, TokenSources, find_token};
/// use chinwag::transport::{ConnectInfo, HttpInfo, PeerAddr};
///
/// let mut http = HttpInfo::new(http::Method::GET, "/ws".parse().unwrap());
/// http.subprotocols = vec!["chinwag.v1".into(), "bearer.abc.def.ghi".into()];
/// let info = ConnectInfo::new(PeerAddr::Local).with_http(http);
/// let found = find_token(&info, &TokenSources::default()).unwrap();
/// assert_eq!(found, Some(("abc.def.ghi".to_string(), TokenSource::Subprotocol)));
/// ```
///
/// # Errors
///
/// - [`AuthError::TooLarge`]: the token found is longer than the limit.
/// - [`AuthError::Malformed`]: an `Authorization` header is present (and `bearer` is on) but
///   is not a single `Bearer <token>`, or the token found is empty or not visible ASCII.
///
/// `Ok(None)` when no enabled source has a token.
pub fn find_token(
    info: &ConnectInfo,
    sources: &TokenSources,
) -> Result<Option<(String, TokenSource)>, AuthError> {
    if sources.bearer
        && let Some(token) = bearer_token(info, sources)?
    {
        return Ok(Some((token.to_owned(), TokenSource::Bearer)));
    }
    if sources.subprotocol {
        let offered = info
            .subprotocols()
            .iter()
            .find_map(|p| p.strip_prefix(SUBPROTOCOL_TOKEN_PREFIX));
        if let Some(token) = offered {
            sources.check(token, TokenSource::Subprotocol)?;
            return Ok(Some((token.to_owned(), TokenSource::Subprotocol)));
        }
    }
    if let Some(name) = &sources.query
        && let Some(token) = query_token(info, name, sources)?
    {
        return Ok(Some((token, TokenSource::Query)));
    }
    Ok(None)
}

/// The token of the `Authorization` header, if there is one.
fn bearer_token<'a>(
    info: &'a ConnectInfo,
    sources: &TokenSources,
) -> Result<Option<&'a str>, AuthError> {
    let Some(http) = info.http() else {
        return Ok(None);
    };
    let mut values = http.headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "more than one Authorization header".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("Authorization header is not visible ASCII".into()))?;
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "Authorization header is not a Bearer token".into(),
        ));
    }
    let token = rest.trim_matches([' ', '\t']);
    sources.check(token, TokenSource::Bearer)?;
    Ok(Some(token))
}

/// The token of query parameter `name`, if there is one. (The request line was bounded by the
/// HTTP parser: decoding it is cheap; the token's length is checked before it is parsed.)
fn query_token(
    info: &ConnectInfo,
    name: &str,
    sources: &TokenSources,
) -> Result<Option<String>, AuthError> {
    let Some(token) = info.query_param(name) else {
        return Ok(None);
    };
    sources.check(&token, TokenSource::Query)?;
    Ok(Some(token))
}
