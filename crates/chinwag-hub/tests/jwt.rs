//! The JWT authenticator and the token sources, with real signatures (HS256, RS256, ES256,
//! EdDSA): every refusal is asserted by its variant and its metric label. Time is
//! `SystemTime::now()` plus fixed offsets; nothing sleeps.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chinwag_hub::auth::jsonwebtoken::{Algorithm, EncodingKey};
use chinwag_hub::auth::{
    AuthError, Authenticator, JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey, TokenSource,
    TokenSources, find_token,
};
use chinwag_hub::{DEFAULT_DEVICE, Meta};
use chinwag_transport::{ConnectInfo, HttpInfo, PeerAddr};
use serde_json::{Value, json};

const SECRET: &[u8] = b"chinwag test secret, thirty-two bytes or more";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-test-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa-test-public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs_auth() -> JwtAuthenticator {
    JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)))
}

fn hs_issuer() -> JwtIssuer {
    JwtIssuer::hs256(SECRET)
}

fn rsa_auth() -> JwtAuthenticator {
    JwtAuthenticator::new(JwtConfig::new(JwtKey::rs256_pem(RSA_PUBLIC).unwrap()))
}

fn rsa_issuer() -> JwtIssuer {
    JwtIssuer::with_key(
        EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        Algorithm::RS256,
    )
    .unwrap()
}

/// `sub` alice, valid for an hour.
fn good_claims() -> Value {
    json!({ "sub": "alice", "exp": now() + 3600 })
}

/// Asserts that `auth` refuses `token` with `expected` (compared whole) and its label.
#[track_caller]
fn assert_refused(auth: &JwtAuthenticator, token: &str, expected: AuthError) {
    let err = auth.verify(token).expect_err("the token was accepted");
    assert_eq!(err, expected);
    assert_eq!(err.reason(), expected.reason());
}

/// Asserts that `auth` refuses `token` as malformed.
#[track_caller]
fn assert_malformed(auth: &JwtAuthenticator, token: &str) {
    let err = auth.verify(token).expect_err("the token was accepted");
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    assert_eq!(err.reason(), "malformed");
}

/// Asserts that `auth` refuses `token` for its claims, with a message containing `what`.
#[track_caller]
fn assert_claims(auth: &JwtAuthenticator, token: &str, what: &str) {
    let err = auth.verify(token).expect_err("the token was accepted");
    match &err {
        AuthError::Claims(message) => assert!(message.contains(what), "{message}"),
        other => panic!("expected Claims({what}), got {other:?}"),
    }
    assert_eq!(err.reason(), "claims");
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// An HS256 token of exactly `len` bytes (a `pad` claim makes up the length).
fn hs_token_of_len(len: usize) -> String {
    let make = |n: usize| {
        hs_issuer().issue_claims(&json!({
            "sub": "alice",
            "exp": now() + 3600,
            "pad": "x".repeat(n),
        }))
    };
    let mut n = (len - make(0).len()) * 3 / 4 - 4;
    loop {
        let token = make(n);
        match token.len().cmp(&len) {
            std::cmp::Ordering::Equal => return token,
            std::cmp::Ordering::Greater => panic!("no token of exactly {len} bytes"),
            std::cmp::Ordering::Less => n += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Accepted tokens

#[tokio::test]
async fn hs256_token_names_user_device_and_meta() {
    let auth: Arc<dyn Authenticator> = Arc::new(JwtAuthenticator::new(
        JwtConfig::new(JwtKey::hs256(SECRET)).with_meta_claims(["name", "platform"]),
    ));
    let exp = now() + 3600;
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice",
        "device": "phone",
        "exp": exp,
        "name": "Alice",
        "roles": ["admin"],
    }));
    let who = auth.authenticate(&token).await.unwrap();
    assert_eq!(&*who.device.user, "alice");
    assert_eq!(&*who.device.device, "phone");
    let mut meta = Meta::new();
    meta.insert("name".into(), json!("Alice"));
    assert_eq!(
        *who.device.meta, meta,
        "only the listed claims that are present"
    );
    assert_eq!(who.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
}

#[test]
fn issuer_issue_round_trips_with_default_device() {
    let auth = JwtAuthenticator::new(
        JwtConfig::new(JwtKey::hs256(SECRET))
            .with_issuer("https://login.test")
            .with_audience("chat"),
    );
    let issuer = hs_issuer()
        .with_issuer("https://login.test")
        .with_audience("chat");
    let who = auth
        .verify(&issuer.issue("bob", None, Duration::from_secs(600)))
        .unwrap();
    assert_eq!(who.device.to_string(), format!("bob/{DEFAULT_DEVICE}"));
    let exp = who.expires_at.unwrap().duration_since(UNIX_EPOCH).unwrap();
    assert!(exp.as_secs().abs_diff(now() + 600) <= 2, "{exp:?}");

    let who = auth
        .verify(&issuer.issue("bob", Some("laptop"), Duration::from_secs(600)))
        .unwrap();
    assert_eq!(who.device.to_string(), "bob/laptop");
}

#[test]
fn device_claim_name_is_configurable() {
    let auth =
        JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_device_claim("did"));
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "did": "tablet", "device": "ignored",
    }));
    assert_eq!(
        auth.verify(&token).unwrap().device.to_string(),
        "alice/tablet"
    );
    let token =
        hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": now() + 60, "did": null }));
    assert_eq!(
        auth.verify(&token).unwrap().device.to_string(),
        "alice/default"
    );
}

#[test]
fn hs384_and_hs512_keys() {
    for (key, alg) in [
        (JwtKey::hs384(SECRET), Algorithm::HS384),
        (JwtKey::hs512(SECRET), Algorithm::HS512),
    ] {
        assert_eq!(key.algorithm(), alg);
        let auth = JwtAuthenticator::new(JwtConfig::new(key));
        let issuer = JwtIssuer::with_key(EncodingKey::from_secret(SECRET), alg).unwrap();
        auth.verify(&issuer.issue_claims(&good_claims())).unwrap();
        // An HS256 token with the same secret is still another algorithm.
        assert_refused(
            &auth,
            &hs_issuer().issue_claims(&good_claims()),
            AuthError::Algorithm,
        );
    }
}

#[test]
fn rs256_token_signed_with_the_private_key() {
    let auth = rsa_auth();
    assert_eq!(auth.config().key().algorithm(), Algorithm::RS256);
    let token = rsa_issuer().issue("alice", Some("web"), Duration::from_secs(60));
    assert_eq!(auth.verify(&token).unwrap().device.to_string(), "alice/web");
}

#[test]
fn es256_token() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let auth = JwtAuthenticator::new(JwtConfig::new(
        JwtKey::es256_pem(pair.public_key_pem().as_bytes()).unwrap(),
    ));
    let issuer = JwtIssuer::with_key(
        EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    let token = issuer.issue("carol", Some("watch"), Duration::from_secs(60));
    assert_eq!(
        auth.verify(&token).unwrap().device.to_string(),
        "carol/watch"
    );

    // Another P-256 key's signature does not verify.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forged = JwtIssuer::with_key(
        EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap()
    .issue("carol", None, Duration::from_secs(60));
    assert_refused(&auth, &forged, AuthError::BadSignature);
    // And an RS256 token is another algorithm.
    assert_refused(
        &auth,
        &rsa_issuer().issue_claims(&good_claims()),
        AuthError::Algorithm,
    );
}

#[test]
fn ed25519_token() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let auth = JwtAuthenticator::new(JwtConfig::new(
        JwtKey::ed25519_pem(pair.public_key_pem().as_bytes()).unwrap(),
    ));
    assert_eq!(auth.config().key().algorithm(), Algorithm::EdDSA);
    let issuer = JwtIssuer::with_key(
        EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        Algorithm::EdDSA,
    )
    .unwrap();
    let token = issuer.issue("dave", None, Duration::from_secs(60));
    assert_eq!(
        auth.verify(&token).unwrap().device.to_string(),
        "dave/default"
    );

    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let forged = JwtIssuer::with_key(
        EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap(),
        Algorithm::EdDSA,
    )
    .unwrap()
    .issue("dave", None, Duration::from_secs(60));
    assert_refused(&auth, &forged, AuthError::BadSignature);
}

#[test]
fn leeway_is_honoured() {
    let expired_10s_ago = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": now() - 10 }));
    let nbf_in_10s = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "nbf": now() + 10,
    }));
    // Default leeway: 30 s.
    hs_auth().verify(&expired_10s_ago).unwrap();
    hs_auth().verify(&nbf_in_10s).unwrap();
    // No leeway.
    let strict =
        JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_leeway(Duration::ZERO));
    assert_refused(&strict, &expired_10s_ago, AuthError::Expired);
    assert_refused(&strict, &nbf_in_10s, AuthError::NotYetValid);
}

#[test]
fn audience_in_an_array_and_unchecked_audience() {
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "aud": ["other", "chat"],
    }));
    let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_audience("chat"));
    auth.verify(&token).unwrap();
    // No audience configured: `aud` is not looked at.
    hs_auth().verify(&token).unwrap();
}

#[test]
fn token_of_exactly_the_limit_is_not_too_large() {
    let token = hs_token_of_len(8192);
    assert_eq!(token.len(), 8192);
    hs_auth().verify(&token).unwrap();
    let info = with_headers(&[("authorization", &format!("Bearer {token}"))]);
    let (found, _) = find_token(&info, &TokenSources::default())
        .unwrap()
        .unwrap();
    assert_eq!(found, token);
}

// ---------------------------------------------------------------------------------------
// Refused tokens

#[test]
fn alg_none_is_refused_as_algorithm() {
    let auth = hs_auth();
    let claims = b64(&good_claims());
    let header = b64(&json!({ "alg": "none", "typ": "JWT" }));
    assert_refused(&auth, &format!("{header}.{claims}."), AuthError::Algorithm);
    // Spelled otherwise, or with a signature attached, or against an RSA key: the same.
    let header = b64(&json!({ "alg": "None", "typ": "JWT" }));
    assert_refused(&auth, &format!("{header}.{claims}."), AuthError::Algorithm);
    let valid = hs_issuer().issue_claims(&good_claims());
    let signature = valid.rsplit('.').next().unwrap();
    let header = b64(&json!({ "alg": "none" }));
    assert_refused(
        &auth,
        &format!("{header}.{claims}.{signature}"),
        AuthError::Algorithm,
    );
    assert_refused(
        &rsa_auth(),
        &format!("{header}.{claims}."),
        AuthError::Algorithm,
    );
    // A header without `alg`, or with an unknown one.
    let header = b64(&json!({ "typ": "JWT" }));
    assert_refused(&auth, &format!("{header}.{claims}."), AuthError::Algorithm);
    let header = b64(&json!({ "alg": "XS256" }));
    assert_refused(
        &auth,
        &format!("{header}.{claims}.{signature}"),
        AuthError::Algorithm,
    );
}

#[test]
fn key_confusion_hs256_with_the_rsa_public_key_is_refused() {
    // The attacker knows the public key and uses its PEM bytes as an HMAC secret.
    let forged = JwtIssuer::hs256(RSA_PUBLIC).issue("admin", None, Duration::from_secs(3600));
    assert_refused(&rsa_auth(), &forged, AuthError::Algorithm);
    // Its claims decode fine: only the algorithm gives it away.
    let claims = forged.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["sub"], "admin");
}

#[test]
fn other_algorithm_on_an_hmac_key_is_refused() {
    assert_refused(
        &hs_auth(),
        &rsa_issuer().issue_claims(&good_claims()),
        AuthError::Algorithm,
    );
    let hs512 = JwtIssuer::with_key(EncodingKey::from_secret(SECRET), Algorithm::HS512).unwrap();
    assert_refused(
        &hs_auth(),
        &hs512.issue_claims(&good_claims()),
        AuthError::Algorithm,
    );
}

#[test]
fn expired_token_is_refused() {
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": now() - 3600 }));
    assert_refused(&hs_auth(), &token, AuthError::Expired);
    // 31 s ago: just beyond the default 30 s leeway.
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": now() - 31 }));
    assert_refused(&hs_auth(), &token, AuthError::Expired);
}

#[test]
fn not_yet_valid_token_is_refused() {
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 7200, "nbf": now() + 3600,
    }));
    assert_refused(&hs_auth(), &token, AuthError::NotYetValid);
}

#[test]
fn wrong_audience_is_refused() {
    let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_audience("chat"));
    let token = hs_issuer()
        .with_audience("billing")
        .issue("alice", None, Duration::from_secs(60));
    assert_refused(&auth, &token, AuthError::Audience);
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "aud": ["billing", "mail"],
    }));
    assert_refused(&auth, &token, AuthError::Audience);
    // Missing altogether: a missing claim.
    let token = hs_issuer().issue("alice", None, Duration::from_secs(60));
    assert_claims(&auth, &token, "missing aud");
}

#[test]
fn wrong_issuer_is_refused() {
    let auth = JwtAuthenticator::new(
        JwtConfig::new(JwtKey::hs256(SECRET)).with_issuer("https://login.test"),
    );
    let token =
        hs_issuer()
            .with_issuer("https://evil.test")
            .issue("alice", None, Duration::from_secs(60));
    assert_refused(&auth, &token, AuthError::Issuer);
    let token = hs_issuer().issue("alice", None, Duration::from_secs(60));
    assert_claims(&auth, &token, "missing iss");
}

#[test]
fn bad_signature_is_refused() {
    let token = JwtIssuer::hs256("another secret").issue("alice", None, Duration::from_secs(60));
    assert_refused(&hs_auth(), &token, AuthError::BadSignature);
    // Claims altered after signing.
    let good = hs_issuer().issue_claims(&good_claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let altered = b64(&json!({ "sub": "admin", "exp": now() + 3600 }));
    parts[1] = &altered;
    assert_refused(&hs_auth(), &parts.join("."), AuthError::BadSignature);
    // An RS256 token carrying another key's (ES256) signature.
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let es = JwtIssuer::with_key(
        EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap()
    .issue_claims(&good_claims());
    let es_sig = es.rsplit('.').next().unwrap();
    let rs = rsa_issuer().issue_claims(&good_claims());
    let (rs_message, _) = rs.rsplit_once('.').unwrap();
    assert_refused(
        &rsa_auth(),
        &format!("{rs_message}.{es_sig}"),
        AuthError::BadSignature,
    );
}

#[test]
fn truncated_tokens_are_refused() {
    let hs = hs_issuer().issue_claims(&good_claims());
    // HS256 signatures are compared as text: any cut of the signature is a bad signature,
    // down to an empty one.
    for cut in [1, 2, 5, 42] {
        assert_refused(&hs_auth(), &hs[..hs.len() - cut], AuthError::BadSignature);
    }
    assert_refused(&hs_auth(), &hs[..hs.len() - 43], AuthError::BadSignature);
    assert!(hs[..hs.len() - 43].ends_with('.'));
    // Cut inside the payload: two parts, not a JWT.
    let header_len = hs.find('.').unwrap();
    assert_malformed(&hs_auth(), &hs[..header_len + 10]);
    assert_malformed(&hs_auth(), &hs[..header_len]);

    // RS256 signatures are decoded first: 256 bytes are 342 base64url characters. Cut by 1,
    // 341 is no valid base64 length (malformed); cut by 2, 340 decode to a 255-byte
    // signature that does not verify.
    let rs = rsa_issuer().issue_claims(&good_claims());
    assert_eq!(rs.rsplit('.').next().unwrap().len(), 342);
    assert_malformed(&rsa_auth(), &rs[..rs.len() - 1]);
    assert_refused(&rsa_auth(), &rs[..rs.len() - 2], AuthError::BadSignature);
    let header_len = rs.find('.').unwrap();
    assert_malformed(&rsa_auth(), &rs[..header_len + 10]);
}

#[test]
fn over_size_token_is_refused_before_parsing() {
    let token = hs_token_of_len(8193);
    assert_refused(
        &hs_auth(),
        &token,
        AuthError::TooLarge {
            len: 8193,
            limit: 8192,
        },
    );
    // Not even looked at: garbage of that size is refused the same way.
    assert_refused(
        &hs_auth(),
        &"!".repeat(8193),
        AuthError::TooLarge {
            len: 8193,
            limit: 8192,
        },
    );
    // A configured limit.
    let auth = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_max_token_len(100));
    let token = hs_issuer().issue_claims(&good_claims());
    assert_refused(
        &auth,
        &token,
        AuthError::TooLarge {
            len: token.len(),
            limit: 100,
        },
    );
}

#[test]
fn garbage_is_malformed() {
    let auth = hs_auth();
    for token in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "....", "%%%.%%%.%%%"] {
        assert_malformed(&auth, token);
    }
    let claims = b64(&good_claims());
    // A header that is base64url but not JSON, or JSON but not an object.
    let not_json = URL_SAFE_NO_PAD.encode(b"not json");
    assert_malformed(&auth, &format!("{not_json}.{claims}.sig"));
    let array = b64(&json!(["HS256"]));
    assert_malformed(&auth, &format!("{array}.{claims}.sig"));
    // Claims that are not an object, correctly signed.
    let token = hs_issuer().issue_claims(&json!(["sub", "alice"]));
    assert_malformed(&auth, &token);
}

#[test]
fn missing_or_bad_sub_is_refused_as_claims() {
    let auth = hs_auth();
    let token = hs_issuer().issue_claims(&json!({ "exp": now() + 60 }));
    assert_claims(&auth, &token, "missing sub");
    let token = hs_issuer().issue_claims(&json!({ "sub": 42, "exp": now() + 60 }));
    assert_claims(&auth, &token, "sub");
    let token = hs_issuer().issue_claims(&json!({ "sub": "", "exp": now() + 60 }));
    assert_claims(&auth, &token, "sub is empty (empty)");
    let token = hs_issuer().issue_claims(&json!({ "sub": "u".repeat(1025), "exp": now() + 60 }));
    assert_claims(
        &auth,
        &token,
        "sub is 1025 bytes, over the limit of 1024 (too_long)",
    );
    let token = hs_issuer().issue_claims(&json!({ "sub": "u".repeat(1024), "exp": now() + 60 }));
    auth.verify(&token).unwrap();
}

#[test]
fn missing_or_bad_exp_is_refused_as_claims() {
    // Mapped from jsonwebtoken's MissingRequiredClaim("exp"): Claims, not Expired.
    let auth = hs_auth();
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice" }));
    assert_claims(&auth, &token, "missing exp");
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": "tomorrow" }));
    assert_claims(&auth, &token, "missing exp");
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": -5 }));
    assert_claims(&auth, &token, "missing exp");
    // A fractional NumericDate is fine (RFC 7519), rounded to the second.
    let exp = now() + 60;
    let token = hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": exp as f64 + 0.25 }));
    let who = auth.verify(&token).unwrap();
    assert_eq!(who.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
}

#[test]
fn bad_nbf_and_device_are_refused_as_claims() {
    let auth = hs_auth();
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "nbf": "later",
    }));
    assert_claims(&auth, &token, "nbf");
    for device in [
        json!(7),
        json!(""),
        json!("d".repeat(257)),
        json!(["phone"]),
    ] {
        let token = hs_issuer().issue_claims(&json!({
            "sub": "alice", "exp": now() + 60, "device": device,
        }));
        assert_claims(&auth, &token, "device");
    }
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "device": "d".repeat(256),
    }));
    auth.verify(&token).unwrap();
}

#[test]
fn sub_outside_the_id_grammar_is_refused_as_claims() {
    let auth = hs_auth();
    let sub = |sub: &str| hs_issuer().issue_claims(&json!({ "sub": sub, "exp": now() + 60 }));
    // CR LF (header or log injection): the first one is named, with the rule.
    assert_claims(
        &auth,
        &sub("alice\r\nadmin"),
        "sub has the control character U+000D at byte 5 (control)",
    );
    // U+202E RIGHT-TO-LEFT OVERRIDE: "alice\u{202E}nimda" shows as "aliceadmin".
    assert_claims(
        &auth,
        &sub("alice\u{202E}nimda"),
        "sub has the invisible format character U+202E at byte 5 (format)",
    );
    // U+200B ZERO WIDTH SPACE: looks like "alice".
    assert_claims(
        &auth,
        &sub("ali\u{200B}ce"),
        "sub has the invisible format character U+200B at byte 3 (format)",
    );
    assert_claims(&auth, &sub("\0"), "U+0000 at byte 0 (control)");
    assert_claims(&auth, &sub("a\u{1B}[31m"), "U+001B at byte 1 (control)");
    assert_claims(&auth, &sub("a\u{2028}b"), "U+2028 at byte 1 (separator)");
    assert_claims(&auth, &sub(" alice"), "U+0020 (at byte 0) (edge_space)");
    assert_claims(
        &auth,
        &sub("alice\u{3000}"),
        "U+3000 (at byte 5) (edge_space)",
    );
    // Spaces inside, other scripts and emoji are fine.
    for good in ["Alice Smith", "名前", "🙂", "e\u{301}"] {
        let who = auth.verify(&sub(good)).unwrap();
        assert_eq!(&*who.device.user, good);
    }
}

#[test]
fn device_outside_the_id_grammar_is_refused_as_claims() {
    let token = |device: &str| {
        hs_issuer().issue_claims(&json!({ "sub": "alice", "exp": now() + 60, "device": device }))
    };
    let auth = hs_auth();
    assert_claims(
        &auth,
        &token("phone\n"),
        "device has the control character U+000A at byte 5 (control)",
    );
    assert_claims(
        &auth,
        &token("\u{FEFF}phone"),
        "device has the invisible format character U+FEFF at byte 0 (format)",
    );
    assert_claims(
        &auth,
        &token("phone "),
        "device begins or ends with the space",
    );
    // The claim is named by its configured name.
    let auth =
        JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(SECRET)).with_device_claim("did"));
    let token = hs_issuer().issue_claims(&json!({
        "sub": "alice", "exp": now() + 60, "did": "tab\u{200D}let",
    }));
    assert_claims(
        &auth,
        &token,
        "did has the invisible format character U+200D",
    );
}

// ---------------------------------------------------------------------------------------
// Header extensions (RFC 7515 §4.1.11 crit, RFC 7797 b64)

/// A token with exactly `header` as its JOSE header, signed with `key` and `algorithm` over
/// the usual signing input (`header.claims`, both base64url).
fn signed_with_header(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature =
        chinwag_hub::auth::jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

fn hs_signed_with_header(header: Value) -> String {
    signed_with_header(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
}

/// Asserts a `Malformed` refusal whose message names `member`.
#[track_caller]
fn assert_header_refused(auth: &JwtAuthenticator, token: &str, member: &str) {
    let err = auth.verify(token).expect_err("the token was accepted");
    match &err {
        AuthError::Malformed(message) => {
            assert!(
                message.starts_with(&format!("header {member}")),
                "{message}"
            );
        }
        other => panic!("expected Malformed(header {member}), got {other:?}"),
    }
    assert_eq!(err.reason(), "malformed");
    assert_eq!(err.status(), 401);
}

#[test]
fn header_helper_signs_tokens_that_are_accepted() {
    // The helper is right: without extensions its tokens verify, with `typ` or without.
    let auth = hs_auth();
    auth.verify(&hs_signed_with_header(
        json!({ "alg": "HS256", "typ": "JWT" }),
    ))
    .unwrap();
    auth.verify(&hs_signed_with_header(json!({ "alg": "HS256" })))
        .unwrap();
}

#[test]
fn crit_header_is_refused_whatever_its_value() {
    let auth = hs_auth();
    for crit in [
        json!(["exp"]),
        json!([]),
        json!(["b64"]),
        json!(["x-unknown"]),
        json!("exp"),
        json!(null),
        json!({}),
    ] {
        let token = hs_signed_with_header(json!({ "alg": "HS256", "typ": "JWT", "crit": crit }));
        assert_header_refused(&auth, &token, "crit");
    }
    // An escaped member name is the same member.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","cr\u0069t":["exp"]}"#);
    let input = format!("{header}.{}", b64(&good_claims()));
    let signature = chinwag_hub::auth::jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    assert_header_refused(&auth, &format!("{input}.{signature}"), "crit");
    // RS256 too: checked before any signature.
    let pem = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let token = signed_with_header(
        &json!({ "alg": "RS256", "crit": ["exp"] }),
        &good_claims(),
        &pem,
        Algorithm::RS256,
    );
    assert_header_refused(&rsa_auth(), &token, "crit");
}

#[test]
fn b64_false_is_refused() {
    let auth = hs_auth();
    // As RFC 7797 wants it (b64 listed in crit), and without crit.
    for header in [
        json!({ "alg": "HS256", "b64": false, "crit": ["b64"] }),
        json!({ "alg": "HS256", "b64": false }),
    ] {
        assert_header_refused(&auth, &hs_signed_with_header(header), "b64");
    }
    // The confusion it prevents: the issuer signed the *text* of the payload segment,
    // unencoded, and that text happens to be base64url of claims. jsonwebtoken alone would
    // decode it and accept the token.
    let header = b64(&json!({ "alg": "HS256", "b64": false, "crit": ["b64"] }));
    let payload_text = b64(&good_claims());
    let input = format!("{header}.{payload_text}");
    let signature = chinwag_hub::auth::jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    assert_header_refused(&auth, &format!("{input}.{signature}"), "b64");
    // An unencoded JSON payload (dots and all bytes as they are) is refused by the same rule.
    let raw = format!(r#"{header}.{{"sub":"alice","exp":{}}}"#, now() + 60);
    let signature = chinwag_hub::auth::jsonwebtoken::crypto::sign(
        raw.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    assert_header_refused(&auth, &format!("{raw}.{signature}"), "b64");
    // Any value other than true.
    for b64_value in [json!("false"), json!(0), json!(null), json!("true")] {
        let token = hs_signed_with_header(json!({ "alg": "HS256", "b64": b64_value }));
        assert_header_refused(&auth, &token, "b64");
    }
}

#[test]
fn b64_true_without_crit_is_accepted() {
    // `b64: true` is the usual encoded payload: nothing to understand, so it is accepted
    // (RFC 7515 lets a recipient ignore a header parameter not listed in crit). With crit it
    // is refused for the crit.
    let auth = hs_auth();
    let who = auth
        .verify(&hs_signed_with_header(
            json!({ "alg": "HS256", "b64": true }),
        ))
        .unwrap();
    assert_eq!(who.device.to_string(), "alice/default");
    let token = hs_signed_with_header(json!({ "alg": "HS256", "b64": true, "crit": ["b64"] }));
    assert_header_refused(&auth, &token, "crit");
}

#[test]
fn header_extensions_are_refused_before_the_signature_is_checked() {
    // Signed with another secret: still refused for the header, not the signature.
    let token = signed_with_header(
        &json!({ "alg": "HS256", "crit": ["exp"] }),
        &good_claims(),
        &EncodingKey::from_secret(b"another secret"),
        Algorithm::HS256,
    );
    assert_header_refused(&hs_auth(), &token, "crit");
}

// ---------------------------------------------------------------------------------------
// Keys

#[test]
fn key_debug_shows_no_key_material() {
    let key = JwtKey::hs256("super-secret-value");
    let shown = format!("{key:?} {:?}", JwtConfig::new(key.clone()));
    assert!(!shown.contains("super-secret"), "{shown}");
    assert!(shown.contains("HS256"), "{shown}");
    let issuer = format!("{:?}", JwtIssuer::hs256("super-secret-value"));
    assert!(!issuer.contains("super-secret"), "{issuer}");
    let auth = format!("{:?}", JwtAuthenticator::new(JwtConfig::new(key)));
    assert!(!auth.contains("super-secret"), "{auth}");
}

#[test]
fn bad_pems_are_refused() {
    assert!(JwtKey::rs256_pem(b"not a pem").is_err());
    // A private key where a public one is expected.
    let err = JwtKey::rs256_pem(RSA_PRIVATE).unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(JwtKey::es256_pem(pair.serialize_pem().as_bytes()).is_err());
    // A key of another kind.
    assert!(JwtKey::es256_pem(RSA_PUBLIC).is_err());
    assert!(JwtKey::ed25519_pem(RSA_PUBLIC).is_err());
    assert!(JwtKey::rs256_pem(pair.public_key_pem().as_bytes()).is_err());
    // An issuer key that does not fit its algorithm.
    let ec = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    assert!(JwtIssuer::with_key(ec, Algorithm::RS256).is_err());
}

// ---------------------------------------------------------------------------------------
// Token sources

fn with_http(uri: &str, headers: &[(&str, &str)], subprotocols: &[&str]) -> ConnectInfo {
    let mut http = HttpInfo::new(http::Method::GET, uri.parse().unwrap());
    for (name, value) in headers {
        http.headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    http.subprotocols = subprotocols.iter().map(|p| p.to_string()).collect();
    ConnectInfo::new(PeerAddr::Local).with_http(http)
}

fn with_headers(headers: &[(&str, &str)]) -> ConnectInfo {
    with_http("/ws", headers, &[])
}

fn found(info: &ConnectInfo, sources: &TokenSources) -> Option<(String, TokenSource)> {
    find_token(info, sources).unwrap()
}

#[track_caller]
fn assert_source_malformed(info: &ConnectInfo, sources: &TokenSources) {
    let err = find_token(info, sources).unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    assert_eq!(err.reason(), "malformed");
}

#[test]
fn token_source_defaults_and_labels() {
    let s = TokenSources::default();
    assert!(s.bearer && s.subprotocol && s.first_message);
    assert_eq!(s.query, None);
    assert_eq!(s.max_token_len, 8192);
    let labels = [
        TokenSource::Bearer,
        TokenSource::Subprotocol,
        TokenSource::Query,
        TokenSource::FirstMessage,
        TokenSource::Anonymous,
    ]
    .map(|s| s.as_str());
    assert_eq!(
        labels,
        [
            "bearer",
            "subprotocol",
            "query",
            "first_message",
            "anonymous"
        ]
    );
    assert_eq!(s.check_len(&"x".repeat(8192)), Ok(()));
    assert_eq!(
        s.check_len(&"x".repeat(8193)),
        Err(AuthError::TooLarge {
            len: 8193,
            limit: 8192
        })
    );
}

#[test]
fn bearer_header_is_found() {
    let s = TokenSources::default();
    for value in [
        "Bearer a.b.c",
        "bearer a.b.c",
        "BEARER   a.b.c ",
        " Bearer\ta.b.c",
    ] {
        let info = with_headers(&[("authorization", value)]);
        assert_eq!(
            found(&info, &s),
            Some(("a.b.c".into(), TokenSource::Bearer)),
            "{value}"
        );
    }
    // It wins over a subprotocol and a query token.
    let info = with_http(
        "/ws?token=q",
        &[("authorization", "Bearer h")],
        &["bearer.p"],
    );
    let s = s.with_query(Some("token".into()));
    assert_eq!(found(&info, &s), Some(("h".into(), TokenSource::Bearer)));
}

#[test]
fn subprotocol_token_is_found() {
    let info = with_http("/ws", &[], &["chinwag.v1", "bearer.x.y.z", "bearer.second"]);
    let s = TokenSources::default();
    assert_eq!(
        found(&info, &s),
        Some(("x.y.z".into(), TokenSource::Subprotocol))
    );
    assert_eq!(found(&info, &s.clone().with_subprotocol(false)), None);
    // `bearer.` with nothing after it.
    let info = with_http("/ws", &[], &["chinwag.v1", "bearer."]);
    assert_source_malformed(&info, &s);
    // It wins over the query.
    let info = with_http("/ws?token=q", &[], &["bearer.p"]);
    let s = s.with_query(Some("token".into()));
    assert_eq!(
        found(&info, &s),
        Some(("p".into(), TokenSource::Subprotocol))
    );
}

#[test]
fn query_token_only_when_enabled() {
    let info = with_http("/ws?room=1&token=a.b.c", &[], &[]);
    assert_eq!(found(&info, &TokenSources::default()), None);
    let s = TokenSources::default().with_query(Some("token".into()));
    assert_eq!(found(&info, &s), Some(("a.b.c".into(), TokenSource::Query)));
    let s = TokenSources::default().with_query(Some("access_token".into()));
    assert_eq!(found(&info, &s), None);
    // Present but empty.
    let info = with_http("/ws?token=", &[], &[]);
    let s = TokenSources::default().with_query(Some("token".into()));
    assert_source_malformed(&info, &s);
}

#[test]
fn over_size_tokens_are_refused_in_every_source() {
    let big = "a".repeat(8193);
    let too_large = Err(AuthError::TooLarge {
        len: 8193,
        limit: 8192,
    });
    let s = TokenSources::default().with_query(Some("token".into()));
    let info = with_headers(&[("authorization", &format!("Bearer {big}"))]);
    assert_eq!(find_token(&info, &s), too_large);
    let info = with_http("/ws", &[], &[&format!("bearer.{big}")]);
    assert_eq!(find_token(&info, &s), too_large);
    let info = with_http(&format!("/ws?token={big}"), &[], &[]);
    assert_eq!(find_token(&info, &s), too_large);
    // The limit is the configured one, and its boundary is accepted.
    let s = s.with_max_token_len(10);
    let info = with_headers(&[("authorization", "Bearer 0123456789")]);
    assert_eq!(
        found(&info, &s),
        Some(("0123456789".into(), TokenSource::Bearer))
    );
    let info = with_headers(&[("authorization", "Bearer 0123456789a")]);
    assert_eq!(
        find_token(&info, &s),
        Err(AuthError::TooLarge { len: 11, limit: 10 })
    );
}

#[test]
fn bad_authorization_header_is_malformed() {
    let s = TokenSources::default();
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  ",
        "Bearertoken",
        "token",
        "Bearer a b",
    ] {
        let info = with_headers(&[("authorization", value)]);
        assert_source_malformed(&info, &s);
    }
    // Not visible ASCII.
    let mut http = HttpInfo::new(http::Method::GET, "/ws".parse().unwrap());
    http.headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_bytes(b"Bearer caf\xc3\xa9").unwrap(),
    );
    let info = ConnectInfo::new(PeerAddr::Local).with_http(http);
    assert_source_malformed(&info, &s);
    // Two of them.
    let info = with_headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
    assert_source_malformed(&info, &s);
    // Malformed even when a subprotocol has a token: the header is not silently skipped.
    let info = with_http("/ws", &[("authorization", "Basic x")], &["bearer.t"]);
    assert_source_malformed(&info, &s);
    // With the header source off, it is ignored.
    let s = s.with_bearer(false);
    assert_eq!(
        found(&info, &s),
        Some(("t".into(), TokenSource::Subprotocol))
    );
}

#[test]
fn no_token_is_none() {
    let s = TokenSources::default().with_query(Some("token".into()));
    assert_eq!(found(&ConnectInfo::new(PeerAddr::Local), &s), None);
    let info = with_http("/ws?room=1", &[("x-other", "1")], &["chinwag.v1"]);
    assert_eq!(found(&info, &s), None);
}
