//! A configured table of opaque tokens, each naming a user and device (tok's "the token is any
//! bytes the application checks", without an application).

use std::sync::Arc;

use super::{AuthError, Authenticated, Authenticator, BoxFuture};
use crate::core::identity::{DEFAULT_DEVICE, Device};
use crate::core::ids::{check_device, check_user};

/// Signs in with opaque tokens from a fixed table: each token names a user and a device.
/// Tokens that are not in the table go to the `fallback` authenticator when one is set (e.g.
/// JWTs, or the application's), and are refused (`403`, `refused: unknown token`) otherwise.
///
/// Every configured token is compared with the presented one in time that does not depend on
/// where they differ (the table is scanned whole), so a wrong token teaches nothing about a
/// right one. Tokens are text (what an [`Authenticator`] gets); a door whose clients send
/// bytes (the tok door) refuses a token that is not UTF-8 before asking. The credential never
/// expires: remove it from the table and restart to revoke it.
///
/// ```
/// use std::sync::Arc;
/// use chinwag::hub::auth::StaticTokens;
///
/// let tokens = StaticTokens::new()
///     .with_token("s3cret-alice-phone", "alice", Some("phone"))
///     .unwrap()
///     .with_token("s3cret-bob", "bob", None) // device `default`
///     .unwrap();
/// let builder = chinwag::Server::builder().authenticator(Arc::new(tokens));
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    entries: Vec<(Box<[u8]>, Device)>,
    fallback: Option<Arc<dyn Authenticator>>,
}

/// Why a token could not be added to a [`StaticTokens`] table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StaticTokenError {
    /// The token is empty.
    #[error("a static token may not be empty")]
    Empty,
    /// The same token twice.
    #[error("the static token of {0} is given twice")]
    Duplicate(String),
    /// The user or device breaks the id grammar.
    #[error("the static token of {who}: {why}")]
    BadIdentity {
        /// `user` or `user/device`.
        who: String,
        /// The rule it breaks.
        why: String,
    },
}

impl StaticTokens {
    /// An empty table (every token refused, or handed to the fallback).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token` for `user` on `device` ([`DEFAULT_DEVICE`] when `None`).
    ///
    /// # Errors
    ///
    /// The token is empty or already in the table, or the user or device breaks the
    /// [id grammar](crate::ids).
    pub fn with_token(
        mut self,
        token: &str,
        user: &str,
        device: Option<&str>,
    ) -> Result<Self, StaticTokenError> {
        let device = device.unwrap_or(DEFAULT_DEVICE);
        let who = format!("{user}/{device}");
        if token.is_empty() {
            return Err(StaticTokenError::Empty);
        }
        let bad = |what: &str, e: crate::core::ids::IdError| StaticTokenError::BadIdentity {
            who: who.clone(),
            why: format!("the {what} {e}"),
        };
        check_user(user).map_err(|e| bad("user", e))?;
        check_device(device).map_err(|e| bad("device", e))?;
        if self.entries.iter().any(|(t, _)| &t[..] == token.as_bytes()) {
            return Err(StaticTokenError::Duplicate(who));
        }
        self.entries
            .push((token.as_bytes().into(), Device::new(user, device)));
        Ok(self)
    }

    /// Asks `fallback` about tokens that are not in the table.
    pub fn with_fallback(mut self, fallback: Arc<dyn Authenticator>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// How many tokens the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The device of `token`, comparing it with every entry.
    fn find(&self, token: &[u8]) -> Option<&Device> {
        let mut found = None;
        for (t, d) in &self.entries {
            if ct_eq(t, token) {
                found = Some(d);
            }
        }
        found
    }
}

/// Equality in time that depends only on the lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Authenticator for StaticTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        Box::pin(async move {
            if let Some(d) = self.find(token.as_bytes()) {
                return Ok(Authenticated::new(d.clone()));
            }
            match &self.fallback {
                Some(f) => f.authenticate(token).await,
                None => Err(AuthError::Refused("unknown token".into())),
            }
        })
    }

    /// Any bytes: a token of the table signs in; any other goes to the fallback's
    /// `authenticate_bytes` as it is (so an event proxy behind the table still gets tok's
    /// opaque binary tokens).
    fn authenticate_bytes<'a>(
        &'a self,
        token: &'a [u8],
        ctx: super::AuthContext,
    ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
        Box::pin(async move {
            if let Some(d) = self.find(token) {
                return Ok(Authenticated::new(d.clone()));
            }
            match &self.fallback {
                Some(f) => f.authenticate_bytes(token, ctx).await,
                None => Err(AuthError::Refused("unknown token".into())),
            }
        })
    }
}

impl std::fmt::Debug for StaticTokens {
    /// The devices, never the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field(
                "devices",
                &self
                    .entries
                    .iter()
                    .map(|(_, d)| d.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Yes;
    impl Authenticator for Yes {
        fn authenticate<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Authenticated, AuthError>> {
            Box::pin(async move { Ok(Authenticated::new(Device::new(token, "fb"))) })
        }
    }

    #[tokio::test]
    async fn table_then_fallback() {
        let t = StaticTokens::new()
            .with_token("tA", "alice", Some("phone"))
            .unwrap()
            .with_token("tB", "bob", None)
            .unwrap();
        let a = t.authenticate("tA").await.unwrap();
        assert_eq!(a.device.to_string(), "alice/phone");
        assert!(a.expires_at.is_none());
        assert_eq!(
            t.authenticate("tB").await.unwrap().device.to_string(),
            "bob/default"
        );
        for wrong in ["tC", "t", "tA ", ""] {
            let e = t.authenticate(wrong).await.unwrap_err();
            assert_eq!(e, AuthError::Refused("unknown token".into()), "{wrong:?}");
            assert_eq!(e.status(), 403);
        }
        let t = t.with_fallback(Arc::new(Yes));
        assert_eq!(
            t.authenticate("carol").await.unwrap().device.to_string(),
            "carol/fb"
        );
        assert_eq!(
            t.authenticate("tA").await.unwrap().device.to_string(),
            "alice/phone",
            "the table first"
        );
        assert!(!format!("{t:?}").contains("tA"), "no token in Debug");
    }

    #[test]
    fn bad_entries_are_refused() {
        let t = StaticTokens::new().with_token("x", "alice", None).unwrap();
        assert_eq!(
            t.clone().with_token("x", "bob", None).unwrap_err(),
            StaticTokenError::Duplicate("bob/default".into())
        );
        assert_eq!(
            t.clone().with_token("", "bob", None).unwrap_err(),
            StaticTokenError::Empty
        );
        let e = t.clone().with_token("y", "bo\nb", None).unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
        let e = t.with_token("y", "bob", Some(" d")).unwrap_err();
        assert!(e.to_string().contains("the device"), "{e}");
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
