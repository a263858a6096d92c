//! Every kind of bad token, presented at a real WebSocket door: refused before the upgrade
//! with 401 (so no session ever starts) and counted in `chinwag_hub_refusals_total` under its
//! reason.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chinwag_hub::Hub;
use chinwag_hub::auth::jsonwebtoken::{Algorithm, EncodingKey};
use chinwag_hub::auth::{JwtAuthenticator, JwtConfig, JwtIssuer, JwtKey};
use chinwag_ws::ConnectOptions;
use chinwag_ws_tungstenite::Tungstenite;
use common::*;
use serde_json::{Value, json};

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-test-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa-test-public.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_before_the_upgrade_and_counted_by_reason() {
    let _ = metrics();
    // The server verifies RS256 with its public key, and wants issuer and audience.
    let jwt = JwtAuthenticator::new(
        JwtConfig::new(JwtKey::rs256_pem(RSA_PUBLIC).unwrap())
            .with_issuer("chinwag-tests")
            .with_audience("chat"),
    );
    let hub = Hub::builder()
        .config(config())
        .authenticator(Arc::new(jwt))
        .build();
    let (door, url) = chat_ws::<Tungstenite>(&hub).await;
    let rsa = JwtIssuer::with_key(
        EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        Algorithm::RS256,
    )
    .unwrap();
    let claims = |extra: Value| {
        let mut c =
            json!({ "sub": "mallory", "exp": now() + 3600, "iss": "chinwag-tests", "aud": "chat" });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = rsa.issue_claims(&claims(json!({})));
    let (head, rest) = good.split_once('.').unwrap();
    let (body, sig) = rest.split_once('.').unwrap();
    let mut flipped = sig.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!("{head}.{body}.{}", String::from_utf8(flipped).unwrap());
    let cases: Vec<(&str, String)> = vec![
        (
            "auth_algorithm",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT" })),
                b64(&claims(json!({})))
            ),
        ),
        (
            // Key confusion: HS256 with the server's RSA public key as the secret.
            "auth_algorithm",
            JwtIssuer::hs256(RSA_PUBLIC).issue_claims(&claims(json!({}))),
        ),
        (
            "auth_expired",
            rsa.issue_claims(&claims(json!({ "exp": now() - 3600 }))),
        ),
        (
            "auth_not_yet_valid",
            rsa.issue_claims(&claims(json!({ "nbf": now() + 3600 }))),
        ),
        (
            "auth_audience",
            rsa.issue_claims(&claims(json!({ "aud": "admin" }))),
        ),
        (
            "auth_issuer",
            rsa.issue_claims(&claims(json!({ "iss": "someone-else" }))),
        ),
        ("auth_bad_signature", bad_signature),
        // Two parts, not three. (Not a token cut at an arbitrary byte: a cut signature may
        // still decode as base64, depending on the signature's bytes, which change with `exp`
        // every second, and then it is a bad signature, not a malformed token.)
        ("auth_malformed", format!("{head}.{body}")),
        ("auth_malformed", "not-a-token".to_owned()),
        ("auth_too_large", "a".repeat(8 * 1024 + 1)),
    ];
    for (reason, token) in cases {
        let series = format!("chinwag_hub_refusals_total{{reason=\"{reason}\"}}");
        let before = counter(&series);
        let opts =
            ConnectOptions::default().with_header("authorization", format!("Bearer {token}"));
        let err = Client::ws::<Tungstenite>(&url, opts)
            .await
            .err()
            .unwrap_or_else(|| panic!("{reason}: the upgrade succeeded"));
        assert!(err.to_string().contains("401"), "{reason}: {err}");
        let after = counter(&series);
        assert_eq!(after, before + 1.0, "{reason} counted once");
    }
    assert_eq!(hub.connection_count(), 0, "no bad token got a session");
    // And the good one gets in.
    let opts = ConnectOptions::default().with_header("authorization", format!("Bearer {good}"));
    let c = Client::ws::<Tungstenite>(&url, opts).await.unwrap();
    assert_eq!(c.req("whoami", json!({})).await.unwrap()["user"], "mallory");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}
