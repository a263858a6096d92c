//! `send`, `ack`, `app`: messages to users, their acknowledgements, and messages for the
//! application.

use std::time::Duration;

use base64::Engine as _;
use chinwag_rpc::Handlers;
use serde::{Deserialize, Serialize};

use super::{ChatError, op, send_error, signed_in};
use crate::core::message::{Body, MessageId};
use crate::driver::{Hub, SendOptions};

/// A body in a request: `body` (text) or `body_base64` (binary), exactly one.
pub(super) fn body_of(
    body: Option<String>,
    body_base64: Option<String>,
) -> Result<Body, ChatError> {
    match (body, body_base64) {
        (Some(t), None) => Ok(Body::text(t)),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(Body::binary)
            .map_err(|e| ChatError::new("bad_request", format!("body_base64: {e}"))),
        _ => Err(ChatError::new(
            "bad_request",
            "exactly one of body and body_base64",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendReq {
    to: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckReq {
    id: u64,
}

#[derive(Serialize)]
pub(crate) struct AckJson {
    pub(crate) removed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppReq {
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

#[cfg(test)]
pub(crate) fn sample_report() -> serde_json::Value {
    serde_json::json!({"id": 1, "delivered": 0, "failed": 0, "queued": true, "seq": 1})
}

pub(super) fn send(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: SendReq| async move {
        let conn = signed_in(&peer)?;
        let body = body_of(r.body, r.body_base64)?;
        let mut opts = SendOptions::default();
        if let Some(ms) = r.ttl_ms {
            opts = opts.with_ttl(Duration::from_millis(ms));
        }
        hub.send_from(&conn, &r.to, body, opts)
            .await
            .map_err(|e| send_error(&e))
    });
}

pub(super) fn ack(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: AckReq| async move {
        let conn = signed_in(&peer)?;
        let removed = hub
            .ack(&conn, MessageId(r.id))
            .await
            .map_err(|e| send_error(&e))?;
        Ok(AckJson { removed })
    });
}

pub(super) fn app(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: AppReq| async move {
        let conn = signed_in(&peer)?;
        let body = body_of(r.body, r.body_base64)?;
        let answer = hub
            .receive_app(&conn, body)
            .await
            .map_err(|e| send_error(&e))?;
        Ok(AppJson::of(answer))
    });
}

/// The `app` result: `{}`, or the application's answer as `body` (text) or `body_base64`
/// (binary).
#[derive(Serialize)]
pub(crate) struct AppJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base64: Option<String>,
}

impl AppJson {
    fn of(answer: Option<Body>) -> Self {
        match answer {
            None => AppJson {
                body: None,
                body_base64: None,
            },
            Some(b) => match b.as_text() {
                Some(t) => AppJson {
                    body: Some(t.to_owned()),
                    body_base64: None,
                },
                None => AppJson {
                    body: None,
                    body_base64: Some(base64::engine::general_purpose::STANDARD.encode(b.bytes())),
                },
            },
        }
    }
}
