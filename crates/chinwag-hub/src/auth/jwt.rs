//! The built-in JWT authenticator ([`JwtAuthenticator`]) and a token issuer for tests and
//! development ([`JwtIssuer`]), on the `jsonwebtoken` crate (ring backend).

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::source::DEFAULT_MAX_TOKEN_LEN;
use super::{AuthError, Authenticated, Authenticator, BoxFuture};
use crate::core::ids::{self, IdError};
use crate::identity::{DEFAULT_DEVICE, Device, Meta};

// A user id is an offline queue's recipient: the grammar's limit is the queues' one.
const _: () = assert!(ids::MAX_USER_BYTES == chinwag_queue::MAX_RECIPIENT_LEN);

/// The largest leeway applied (more is taken as this): a day.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);

/// A key that verifies tokens, with the one algorithm it accepts: the algorithm is **pinned to
/// the key**, so a token whose header names another one (`none`, or `HS256` against an RSA
/// key: key confusion) is refused with [`AuthError::Algorithm`] before its signature is
/// looked at.
///
/// `Debug` shows the algorithm only, never key material.
///
/// ```
/// use chinwag::hub::auth::JwtKey;
/// let key = JwtKey::hs256("a long random secret");
/// assert_eq!(format!("{key:?}"), "JwtKey { algorithm: HS256 }");
/// ```
#[derive(Clone)]
pub struct JwtKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl JwtKey {
    /// An HMAC-SHA256 shared secret (use 32 random bytes or more).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::hmac(secret.as_ref(), Algorithm::HS256)
    }

    /// An HMAC-SHA384 shared secret.
    pub fn hs384(secret: impl AsRef<[u8]>) -> Self {
        Self::hmac(secret.as_ref(), Algorithm::HS384)
    }

    /// An HMAC-SHA512 shared secret.
    pub fn hs512(secret: impl AsRef<[u8]>) -> Self {
        Self::hmac(secret.as_ref(), Algorithm::HS512)
    }

    fn hmac(secret: &[u8], algorithm: Algorithm) -> Self {
        JwtKey {
            key: DecodingKey::from_secret(secret),
            algorithm,
        }
    }

    /// An RSA public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), for RS256 (RSASSA-PKCS1
    /// v1.5 with SHA-256; 2048 to 8192-bit keys).
    ///
    /// # Errors
    ///
    /// The PEM is not an RSA public key (a private key is refused too).
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        check_public_pem(pem, "RSA", &["PUBLIC KEY", "RSA PUBLIC KEY"])?;
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| JwtConfigError::new("RSA", e))?;
        Ok(JwtKey {
            key,
            algorithm: Algorithm::RS256,
        })
    }

    /// An EC P-256 public key in PEM (`PUBLIC KEY`), for ES256.
    ///
    /// # Errors
    ///
    /// The PEM is not an EC public key (a private key is refused too).
    pub fn es256_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        check_public_pem(pem, "EC", &["PUBLIC KEY"])?;
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| JwtConfigError::new("EC", e))?;
        Ok(JwtKey {
            key,
            algorithm: Algorithm::ES256,
        })
    }

    /// An Ed25519 public key in PEM (`PUBLIC KEY`), for EdDSA.
    ///
    /// # Errors
    ///
    /// The PEM is not an Ed25519 public key (a private key is refused too).
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        check_public_pem(pem, "Ed25519", &["PUBLIC KEY"])?;
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| JwtConfigError::new("Ed25519", e))?;
        Ok(JwtKey {
            key,
            algorithm: Algorithm::EdDSA,
        })
    }

    /// The one algorithm this key accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Refuses a PEM whose first block is not labelled as one of `labels` (so that a private key
/// or a certificate given by mistake fails at configuration, not as a bad signature on every
/// token).
fn check_public_pem(pem: &[u8], kind: &'static str, labels: &[&str]) -> Result<(), JwtConfigError> {
    let text = std::str::from_utf8(pem).unwrap_or("");
    let label = text
        .split_once("-----BEGIN ")
        .and_then(|(_, rest)| rest.split_once("-----"))
        .map(|(label, _)| label);
    match label {
        Some(label) if labels.contains(&label) => Ok(()),
        Some(label) => Err(JwtConfigError {
            kind,
            message: format!("expected a public key PEM, found {label}"),
        }),
        None => Err(JwtConfigError {
            kind,
            message: "not a PEM".into(),
        }),
    }
}

/// A key that could not be used (a bad PEM, a key that does not fit its algorithm).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} key: {message}")]
pub struct JwtConfigError {
    kind: &'static str,
    message: String,
}

impl JwtConfigError {
    pub(super) fn new(kind: &'static str, error: jsonwebtoken::errors::Error) -> Self {
        JwtConfigError {
            kind,
            message: error.to_string(),
        }
    }
}

/// What a [`JwtAuthenticator`] accepts.
///
/// | field | default |
/// |---|---|
/// | key | given to [`JwtConfig::new`] |
/// | `issuer` | `None` (`iss` not checked) |
/// | `audience` | `None` (`aud` not checked) |
/// | `leeway` | 30 s |
/// | `device_claim` | `"device"` |
/// | `meta_claims` | none |
/// | `max_token_len` | 8192 bytes |
///
/// Always: the algorithm is the key's, `exp` and `sub` are required, `nbf` is checked when
/// present, and a header with `crit` or with `b64` other than `true` is refused.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwtConfig {
    key: JwtKey,
    /// The required `iss`. Default `None`: not checked. When set, a token without `iss` is
    /// refused ([`AuthError::Claims`]) and one with another is refused
    /// ([`AuthError::Issuer`]).
    pub issuer: Option<String>,
    /// The required `aud` (the token's `aud`, a string or an array, must contain it).
    /// Default `None`: not checked. When set, a token without `aud` is refused
    /// ([`AuthError::Claims`]) and one for another audience is refused
    /// ([`AuthError::Audience`]).
    pub audience: Option<String>,
    /// How far `exp` and `nbf` may be off, for clock skew (whole seconds; at most a day is
    /// applied). Default 30 s.
    pub leeway: Duration,
    /// The claim that names the device (a device id: a string of 1 to 256 bytes without
    /// control or invisible format characters, see [`JwtAuthenticator`]); a token without it
    /// (or with `null`) is for [`DEFAULT_DEVICE`]. Default `"device"`.
    pub device_claim: String,
    /// Claims copied, when present, into the device's [`Meta`] (e.g. `name`, `platform`).
    /// Default: none.
    pub meta_claims: Vec<String>,
    /// The longest token accepted, in bytes; longer ones are refused with
    /// [`AuthError::TooLarge`] before they are parsed. Default 8192.
    pub max_token_len: usize,
}

impl JwtConfig {
    /// The defaults, verifying with `key`.
    pub fn new(key: JwtKey) -> Self {
        JwtConfig {
            key,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            device_claim: "device".into(),
            meta_claims: Vec::new(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// The key tokens are verified with.
    pub fn key(&self) -> &JwtKey {
        &self.key
    }

    /// Sets [`issuer`](Self::issuer).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets [`audience`](Self::audience).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets [`leeway`](Self::leeway).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets [`device_claim`](Self::device_claim).
    pub fn with_device_claim(mut self, device_claim: impl Into<String>) -> Self {
        self.device_claim = device_claim.into();
        self
    }

    /// Sets [`meta_claims`](Self::meta_claims).
    pub fn with_meta_claims<I, S>(mut self, meta_claims: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.meta_claims = meta_claims.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`max_token_len`](Self::max_token_len).
    pub fn with_max_token_len(mut self, max_token_len: usize) -> Self {
        self.max_token_len = max_token_len;
        self
    }
}

/// Authenticates JSON Web Tokens (JWS compact form) signed with one key ([`JwtConfig`]).
///
/// A token is accepted when, in this order: it is at most
/// [`max_token_len`](JwtConfig::max_token_len) bytes ([`AuthError::TooLarge`], checked before
/// any parsing); its header uses no extension ([`AuthError::Malformed`], naming the header
/// member): it has no `crit` member, whatever its value (RFC 7515 §4.1.11: a recipient must
/// refuse critical extensions it does not understand, and chinwag understands none), and no
/// `b64` other than `true` (RFC 7797 unencoded payloads; `b64: true` means the usual encoded
/// payload and is accepted, as RFC 7515 lets a recipient ignore a header parameter it is not
/// told is critical); its header names the key's algorithm ([`AuthError::Algorithm`], also
/// for `none`); its signature verifies ([`AuthError::BadSignature`]); it has `exp` and `sub`
/// ([`AuthError::Claims`]); `exp` has not passed ([`AuthError::Expired`]) and `nbf`, if
/// any, has come ([`AuthError::NotYetValid`]), both give or take the leeway; `iss` and `aud`
/// are the configured ones, when configured ([`AuthError::Issuer`], [`AuthError::Audience`]);
/// `sub` and the device claim are valid ids ([`AuthError::Claims`], naming the claim and the
/// rule). Anything that is not a JWT is [`AuthError::Malformed`].
///
/// The device is `sub`'s user with the device named by
/// [`device_claim`](JwtConfig::device_claim) (else [`DEFAULT_DEVICE`]) and the
/// [`meta_claims`](JwtConfig::meta_claims) found; the credential expires at `exp`. A user id
/// is 1 to 1 024 bytes and a device id 1 to 256 bytes of UTF-8, neither with control
/// characters (Unicode category Cc: NUL, CR, LF, ESC, ...), format characters (Cf: the
/// bidirectional controls such as U+202E, zero-width characters such as U+200B, the soft
/// hyphen, U+FEFF, ...) or the line and paragraph separators U+2028 and U+2029, and neither
/// begins or ends with a space; the grammar in full is in `docs/chat-protocol.md`
/// ("Identifiers").
///
/// Verification is CPU work done inline on the calling task: a few µs for HS256, about
/// 50–100 µs for RS256 and ES256 — small enough not to need a blocking thread.
///
/// ```
/// use std::time::Duration;
/// use chinwag::hub::auth::{Authenticator, JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), chinwag::hub::auth::AuthError> {
/// let secret = b"a long random secret, 32 bytes or more";
/// let auth = JwtAuthenticator::new(
///     JwtConfig::new(JwtKey::hs256(secret)).with_issuer("https://login.example"),
/// );
/// let issuer = JwtIssuer::hs256(secret).with_issuer("https://login.example");
///
/// let token = issuer.issue("alice", Some("phone"), Duration::from_secs(3600));
/// let who = auth.authenticate(&token).await?;
/// assert_eq!(who.device.to_string(), "alice/phone");
/// assert!(who.expires_at.is_some());
///
/// // Another issuer's token is refused.
/// let other = JwtIssuer::hs256(secret).with_issuer("https://elsewhere.example");
/// let refused = auth.authenticate(&other.issue("alice", None, Duration::from_secs(60))).await;
/// assert_eq!(refused.unwrap_err().reason(), "issuer");
/// # Ok(())
/// # }
/// ```
pub struct JwtAuthenticator {
    config: JwtConfig,
    validation: Validation,
    algorithm_name: &'static str,
}

impl JwtAuthenticator {
    /// An authenticator for `config`.
    pub fn new(config: JwtConfig) -> Self {
        let algorithm = config.key.algorithm;
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        // jsonwebtoken 9 lets a token *without* `iss`/`aud` through the issuer/audience check:
        // require them when they are configured.
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = config.leeway.min(MAX_LEEWAY).as_secs();
        match &config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => {
                validation.aud = None;
                validation.validate_aud = false;
            }
        }
        JwtAuthenticator {
            config,
            validation,
            algorithm_name: algorithm_name(algorithm),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Checks `token` at once (what [`Authenticator::authenticate`] does, without the future).
    ///
    /// # Errors
    ///
    /// Why the token is refused; see the [type docs](Self).
    pub fn verify(&self, token: &str) -> Result<Authenticated, AuthError> {
        if token.len() > self.config.max_token_len {
            return Err(AuthError::TooLarge {
                len: token.len(),
                limit: self.config.max_token_len,
            });
        }
        check_header_extensions(token)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &self.config.key.key,
            &self.validation,
        )
        .map_err(|e| self.map_error(token, e))?;
        self.to_authenticated(data.claims)
    }

    /// Maps a `jsonwebtoken` error to why the token is refused.
    fn map_error(&self, token: &str, error: jsonwebtoken::errors::Error) -> AuthError {
        match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::InvalidIssuer => AuthError::Issuer,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::Claims(format!("missing {claim}")),
            ErrorKind::InvalidSubject => AuthError::Claims("unexpected sub".into()),
            ErrorKind::InvalidToken => AuthError::Malformed("not three dot-separated parts".into()),
            // A header whose `alg` jsonwebtoken does not know (`none`, say) fails as JSON:
            // tell that apart from a header that is not JSON at all.
            ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                match header_alg(token, self.algorithm_name) {
                    HeaderAlg::Other => AuthError::Algorithm,
                    HeaderAlg::Pinned | HeaderAlg::NotJson => {
                        AuthError::Malformed(error.to_string())
                    }
                }
            }
            _ => AuthError::Malformed(error.to_string()),
        }
    }

    /// Turns verified claims into who the token is for.
    fn to_authenticated(&self, claims: Map<String, Value>) -> Result<Authenticated, AuthError> {
        let user = match claims.get("sub") {
            Some(Value::String(sub)) => {
                ids::check_user(sub).map_err(|e| bad_id("sub", e))?;
                sub.as_str()
            }
            _ => return Err(AuthError::Claims("sub is not a string".into())),
        };
        let claim = &self.config.device_claim;
        let device = match claims.get(claim) {
            None | Some(Value::Null) => DEFAULT_DEVICE,
            Some(Value::String(d)) => {
                ids::check_device(d).map_err(|e| bad_id(claim, e))?;
                d.as_str()
            }
            Some(_) => return Err(AuthError::Claims(format!("{claim} is not a string"))),
        };
        // jsonwebtoken skips an `nbf` it cannot read as a timestamp: refuse it instead.
        if claims
            .get("nbf")
            .is_some_and(|nbf| numeric_date(nbf).is_none())
        {
            return Err(AuthError::Claims("nbf is not a timestamp".into()));
        }
        let expires_at = claims
            .get("exp")
            .and_then(numeric_date)
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)))
            .ok_or_else(|| AuthError::Claims("exp is not a timestamp".into()))?;
        let meta: Meta = self
            .config
            .meta_claims
            .iter()
            .filter_map(|name| Some((name.clone(), claims.get(name)?.clone())))
            .collect();
        let device = Device::new(user, device).with_meta(meta);
        Ok(Authenticated::new(device).with_expires_at(expires_at))
    }
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        Box::pin(async move { self.verify(token) })
    }
}

/// A claim that is not a valid id: [`AuthError::Claims`] naming the claim, what is wrong and
/// the rule's label, e.g. `sub has the control character U+000D at byte 5 (control)`.
fn bad_id(claim: &str, error: IdError) -> AuthError {
    AuthError::Claims(format!("{claim} {error} ({})", error.reason()))
}

/// Refuses a header that uses an extension: `crit` (any value) or `b64` other than `true`.
/// A header that is not base64url JSON of an object passes here: jsonwebtoken says why it is
/// malformed.
fn check_header_extensions(token: &str) -> Result<(), AuthError> {
    let Some(header) = header_object(token) else {
        return Ok(());
    };
    match header.get("b64") {
        None | Some(Value::Bool(true)) => {}
        Some(_) => {
            return Err(AuthError::Malformed(
                "header b64 is not true: unencoded payloads (RFC 7797) are not accepted".into(),
            ));
        }
    }
    if header.contains_key("crit") {
        return Err(AuthError::Malformed(
            "header crit: no critical header extension is understood (RFC 7515 §4.1.11)".into(),
        ));
    }
    Ok(())
}

/// `token`'s JOSE header, when it is base64url JSON of an object.
fn header_object(token: &str) -> Option<Map<String, Value>> {
    let encoded = token.split('.').next().unwrap_or("");
    let json = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Object(header)) => Some(header),
        _ => None,
    }
}

/// What a token's header says about its algorithm.
enum HeaderAlg {
    /// The header is not base64url JSON of an object.
    NotJson,
    /// It names the pinned algorithm.
    Pinned,
    /// It names another (or none, or not as a string).
    Other,
}

/// A NumericDate (RFC 7519: seconds since the epoch, possibly fractional) in whole seconds,
/// rounded as jsonwebtoken does.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let secs = value.as_f64()?;
        (secs.is_finite() && secs >= 0.0).then_some(secs.round() as u64)
    })
}

/// Reads the `alg` of `token`'s header (only on the error path: jsonwebtoken reads the header
/// itself on the way in).
fn header_alg(token: &str, pinned: &str) -> HeaderAlg {
    match header_object(token) {
        Some(header) => match header.get("alg") {
            Some(Value::String(alg)) if alg == pinned => HeaderAlg::Pinned,
            _ => HeaderAlg::Other,
        },
        None => HeaderAlg::NotJson,
    }
}

/// The name of `algorithm` in a JWT header.
pub(super) fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}
