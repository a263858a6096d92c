//! `auth`, `whoami`, `refresh`: signing in and staying signed in.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use chinwag_rpc::Handlers;
use serde::{Deserialize, Serialize};

use super::super::{MAX_AUTH_FAILURES, sign_on};
use super::{ChatError, Empty, auth_error, op, signed_in, state_of};
use crate::close::{Close, CloseCode};
use crate::driver::{Conn, Hub};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthReq {
    token: String,
}

#[derive(Serialize)]
pub(crate) struct WhoAmI {
    user: String,
    device: String,
    conn: u64,
    seq: u64,
}

#[derive(Serialize)]
pub(crate) struct ExpiresJson {
    pub(crate) expires_at: Option<u64>,
}

pub(crate) fn whoami_of(conn: &Conn) -> WhoAmI {
    WhoAmI {
        user: conn.device().user.to_string(),
        device: conn.device().device.to_string(),
        conn: conn.id().0,
        seq: conn.sign_on_seq(),
    }
}

#[cfg(test)]
pub(crate) fn sample_whoami() -> WhoAmI {
    WhoAmI {
        user: String::new(),
        device: String::new(),
        conn: 0,
        seq: 0,
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn auth(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: AuthReq| async move {
        let state = state_of(&peer)?;
        // One `auth` at a time per connection; an anonymous connection may sign in once.
        let _one = state.auth_lock.lock().await;
        if state.current().is_some() && !state.anonymous.load(Ordering::Acquire) {
            return Err(ChatError::new("already_signed_in", "already signed in"));
        }
        let ctx = crate::auth::AuthContext::new()
            .with_door("chat")
            .with_ip(state.ip);
        match hub.authenticate_bytes(r.token.as_bytes(), ctx).await {
            Ok(auth) => {
                let conn = sign_on(&hub, &peer, &state, auth, false)
                    .await
                    .map_err(|e| ChatError::new(e.code(), e.to_string()))?;
                Ok(whoami_of(&conn))
            }
            Err(e) => {
                let n = state.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= MAX_AUTH_FAILURES {
                    state.door.close(
                        peer.session(),
                        &state.format,
                        &Close::new(CloseCode::AUTH_FAILED, e.to_string()),
                    );
                }
                Err(auth_error(&e))
            }
        }
    });
}

pub(super) fn whoami(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |_hub, peer, _: Empty| async move {
        let conn = signed_in(&peer)?;
        Ok(whoami_of(&conn))
    });
}

pub(super) fn refresh(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: AuthReq| async move {
        let conn = signed_in(&peer)?;
        let exp = hub
            .refresh(&conn, &r.token)
            .await
            .map_err(|e| auth_error(&e))?;
        Ok(ExpiresJson {
            expires_at: exp.map(unix_secs),
        })
    });
}
