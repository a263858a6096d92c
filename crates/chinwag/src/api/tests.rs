//! The API's door without sockets: key, method, rate and batch bounds at their boundaries
//! (the HTTP side, bodies over the limit and real clients, is in chinwag-server's
//! `tests/server_api.rs`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{Api, ApiConfig};
use crate::hub::{Hub, Rate};

fn api(config: ApiConfig) -> Api {
    Api::new(Hub::builder().build(), config).unwrap()
}

fn key(k: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("apikey {k}")).unwrap(),
    );
    h
}

async fn post(api: &Api, headers: &HeaderMap, method: &str, body: Value) -> (u16, Value) {
    let r = api
        .answer(
            &Method::POST,
            &format!("/api/{method}"),
            headers,
            Bytes::from(body.to_string()),
        )
        .await;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_key_is_required_and_must_match_exactly() {
    let api = api(ApiConfig::new("s3cret"));
    for headers in [
        HeaderMap::new(),
        key("s3cre"),
        key("s3cret2"),
        key("S3CRET"),
    ] {
        let (status, body) = post(&api, &headers, "stats", json!({})).await;
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let mut bearer = HeaderMap::new();
    bearer.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer s3cret"),
    );
    assert_eq!(post(&api, &bearer, "stats", json!({})).await.0, 401);
    // The scheme is case-insensitive, the key is not.
    let mut upper = HeaderMap::new();
    upper.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("APIKEY s3cret"),
    );
    let (status, body) = post(&api, &upper, "stats", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["connections"], 0);
}

#[tokio::test]
async fn an_empty_key_or_a_batch_larger_than_the_burst_is_refused() {
    assert!(Api::new(Hub::builder().build(), ApiConfig::default()).is_err());
    let mut c = ApiConfig::new("k");
    c.max_batch = 11;
    c.rate = Rate::new(10, 10);
    assert!(c.check().is_err());
    c.max_batch = 10;
    assert!(c.check().is_ok());
}

#[tokio::test]
async fn unknown_methods_and_other_http_methods_are_refused() {
    let api = api(ApiConfig::new("k"));
    let (status, body) = post(&api, &key("k"), "nope", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_method"))
    );
    let r = api
        .answer(&Method::GET, "/api/stats", &key("k"), Bytes::new())
        .await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()[header::ALLOW], "POST");
    let (status, body) = post(&api, &key("k"), "send", json!({"user": "ada"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = post(&api, &key("k"), "stats", json!({"extra": 1})).await;
    assert_eq!(status, 400);
    let r = api
        .answer(
            &Method::POST,
            "/api/stats",
            &key("k"),
            Bytes::from_static(b"{nope"),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(start_paused = true)]
async fn the_rate_allows_its_burst_then_429_until_a_unit_comes_back() {
    let mut c = ApiConfig::new("k");
    c.rate = Rate::new(2, 3);
    c.max_batch = 3;
    let api = api(c);
    for _ in 0..3 {
        assert_eq!(post(&api, &key("k"), "stats", json!({})).await.0, 200);
    }
    let r = api
        .answer(&Method::POST, "/api/stats", &key("k"), Bytes::new())
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    // One unit every 500 ms.
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(post(&api, &key("k"), "stats", json!({})).await.0, 429);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(post(&api, &key("k"), "stats", json!({})).await.0, 200);
    // A batch takes one unit per command: three need the whole burst back.
    tokio::time::advance(Duration::from_millis(1000)).await;
    let three =
        json!({"commands": [{"method": "stats"}, {"method": "stats"}, {"method": "stats"}]});
    assert_eq!(post(&api, &key("k"), "batch", three.clone()).await.0, 429);
    tokio::time::advance(Duration::from_millis(500)).await;
    let (status, body) = post(&api, &key("k"), "batch", three).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["replies"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_batch_at_the_limit_runs_and_one_more_is_refused() {
    let mut c = ApiConfig::new("k");
    c.max_batch = 4;
    let api = api(c);
    let command = json!({"method": "create_room", "params": {"room": "r"}});
    let (status, body) = post(
        &api,
        &key("k"),
        "batch",
        json!({"commands": vec![command.clone(); 4]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let replies = body["result"]["replies"].as_array().unwrap();
    // In order, each answered on its own: the first makes the room, the others find it.
    assert_eq!(replies[0]["result"]["room"], "r");
    for r in &replies[1..] {
        assert_eq!(r["error"]["code"], "exists");
        assert_eq!(r["status"], 409);
    }
    let (status, body) = post(
        &api,
        &key("k"),
        "batch",
        json!({"commands": vec![command; 5]}),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "batch_too_large");
    let nested = json!({"commands": [{"method": "batch", "params": {"commands": []}}]});
    let (_, body) = post(&api, &key("k"), "batch", nested).await;
    assert_eq!(body["result"]["replies"][0]["status"], 400);
}

#[tokio::test]
async fn change_room_tells_a_missing_password_from_a_null_one() {
    let api = api(ApiConfig::new("k"));
    let k = key("k");
    let (s, b) = post(
        &api,
        &k,
        "create_room",
        json!({"room": "r", "password": "pw"}),
    )
    .await;
    assert_eq!((s, &b["result"]["protected"]), (200, &json!(true)));
    let (s, b) = post(
        &api,
        &k,
        "change_room",
        json!({"room": "r", "max_members": 5}),
    )
    .await;
    assert_eq!((s, &b["result"]["protected"]), (200, &json!(true)), "{b}");
    let (s, b) = post(
        &api,
        &k,
        "change_room",
        json!({"room": "r", "password": null}),
    )
    .await;
    assert_eq!((s, &b["result"]["protected"]), (200, &json!(false)), "{b}");
    let (s, b) = post(&api, &k, "change_room", json!({"room": "x"})).await;
    assert_eq!((s, &b["error"]["code"]), (404, &json!("not_found")));
    let (s, _) = post(&api, &k, "change_room", json!({"room": "r", "password": 7})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn pages_are_cut_to_max_page() {
    let mut c = ApiConfig::new("k");
    c.max_page = 2;
    let api = api(c);
    for r in ["a", "b", "c"] {
        api.call("create_room", json!({"room": r})).await.unwrap();
    }
    let rooms = api.call("rooms", json!({"limit": 50})).await.unwrap();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 2);
    let rooms = api.call("rooms", json!({"limit": 1})).await.unwrap();
    assert_eq!(rooms["rooms"][0]["room"], "a");
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn online_lists_users_in_pages_cut_to_max_page() {
    use crate::hub::{ConnId, ConnRef, Device, Directory, LocalDirectory, NodeId, SignOn};
    let directory = std::sync::Arc::new(LocalDirectory::new());
    let mut c = ApiConfig::new("k");
    c.max_page = 2;
    let api = Api::new(Hub::builder().directory(directory.clone()).build(), c).unwrap();
    let empty = api.call("online", json!({})).await.unwrap();
    assert_eq!(
        empty,
        json!({"users": 0, "connections": 0, "list": [], "next": null})
    );
    for (n, user) in ["dee", "bob", "ada", "cy"].into_iter().enumerate() {
        let conn = ConnRef {
            node: NodeId(0),
            conn: ConnId(n as u64),
        };
        directory
            .sign_on(&Device::new(user, "d"), conn, SignOn::Single)
            .await
            .unwrap();
    }
    // No limit: max_page; a larger one is cut to it; 0 counts as 1.
    for params in [json!({}), json!({"limit": 50}), json!({"limit": 2})] {
        let page = api.call("online", params).await.unwrap();
        assert_eq!(page["users"], 4);
        assert_eq!(page["list"], json!(["ada", "bob"]), "{page}");
        assert_eq!(page["next"], "bob");
    }
    let page = api.call("online", json!({"limit": 0})).await.unwrap();
    assert_eq!(
        (&page["list"], &page["next"]),
        (&json!(["ada"]), &json!("ada"))
    );
    // The last page has no cursor; after the last, or past everyone: empty.
    let page = api.call("online", json!({"after": "bob"})).await.unwrap();
    assert_eq!(
        (&page["list"], &page["next"]),
        (&json!(["cy", "dee"]), &Value::Null)
    );
    for after in ["dee", "zz"] {
        let page = api.call("online", json!({"after": after})).await.unwrap();
        assert_eq!((&page["list"], &page["next"]), (&json!([]), &Value::Null));
    }
    // After a name nobody has: from the next one.
    let page = api
        .call("online", json!({"after": "b", "limit": 1}))
        .await
        .unwrap();
    assert_eq!(
        (&page["list"], &page["next"]),
        (&json!(["bob"]), &json!("bob"))
    );
    // Bad cursors and fields are refused.
    for bad in [
        json!({"after": ""}),
        json!({"after": "a\nb"}),
        json!({"after": 7}),
        json!({"limit": -1}),
        json!({"users": true}),
    ] {
        let (status, body) = post(&api, &key("k"), "online", bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {body}"
        );
    }
}
