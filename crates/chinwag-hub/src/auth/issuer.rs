//! [`JwtIssuer`]: signs tokens for tests, development sign-in and examples.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::jwt::{JwtConfigError, algorithm_name};

/// Signs tokens, for tests, development sign-in and examples: HS256 with a shared secret
/// ([`JwtIssuer::hs256`]) or any `jsonwebtoken` key ([`JwtIssuer::with_key`]). Production
/// tokens normally come from an identity provider.
///
/// ```
/// use std::time::Duration;
/// use chinwag::hub::auth::{JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey};
///
/// let issuer = JwtIssuer::hs256("dev secret").with_audience("chat");
/// let token = issuer.issue("bob", None, Duration::from_secs(60));
/// let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256("dev secret")).with_audience("chat"));
/// assert_eq!(auth.verify(&token).unwrap().device.to_string(), "bob/default");
/// ```
#[derive(Clone)]
pub struct JwtIssuer {
    key: EncodingKey,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtIssuer {
    /// Signs with HMAC-SHA256 and `secret`.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        JwtIssuer {
            key: EncodingKey::from_secret(secret.as_ref()),
            algorithm: Algorithm::HS256,
            issuer: None,
            audience: None,
        }
    }

    /// Signs with `key` and `algorithm` (e.g. `EncodingKey::from_rsa_pem` and
    /// `Algorithm::RS256`). The pair is tried once here.
    ///
    /// # Errors
    ///
    /// The key cannot sign with `algorithm`.
    pub fn with_key(key: EncodingKey, algorithm: Algorithm) -> Result<Self, JwtConfigError> {
        jsonwebtoken::encode(&Header::new(algorithm), &Value::Object(Map::new()), &key)
            .map_err(|e| JwtConfigError::new(algorithm_name(algorithm), e))?;
        Ok(JwtIssuer {
            key,
            algorithm,
            issuer: None,
            audience: None,
        })
    }

    /// Sets the `iss` of the tokens [`issue`](Self::issue) makes.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the `aud` of the tokens [`issue`](Self::issue) makes.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A token for `user` (`sub`) and `device` (the `device` claim, left out when `None`),
    /// issued now (`iat`) and valid for `ttl` (`exp`, whole seconds), with `iss` and `aud`
    /// when set.
    pub fn issue(&self, user: &str, device: Option<&str>, ttl: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = Map::new();
        claims.insert("sub".into(), user.into());
        if let Some(device) = device {
            claims.insert("device".into(), device.into());
        }
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
        if let Some(issuer) = &self.issuer {
            claims.insert("iss".into(), issuer.as_str().into());
        }
        if let Some(audience) = &self.audience {
            claims.insert("aud".into(), audience.as_str().into());
        }
        self.issue_claims(&Value::Object(claims))
    }

    /// A token with exactly `claims` (nothing added, not even `iss` or `aud`).
    ///
    /// # Panics
    ///
    /// Only if signing fails, which the key was checked against when the issuer was made.
    pub fn issue_claims(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(self.algorithm), claims, &self.key)
            .expect("signing with a key checked when the issuer was made")
    }
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}
