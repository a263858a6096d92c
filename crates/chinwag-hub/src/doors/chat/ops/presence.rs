//! `online`: who is connected, anywhere in the cluster.

use std::collections::BTreeMap;

use chinwag_rpc::Handlers;
use serde::{Deserialize, Serialize};

use super::{ChatError, op, signed_in};
use crate::directory::DirectoryError;
use crate::driver::Hub;

/// Users one `online` request may ask about.
pub const MAX_ONLINE_QUERY: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnlineReq {
    #[serde(default)]
    pub(crate) users: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(crate) struct OnlineJson {
    users: BTreeMap<String, Vec<String>>,
    online: u64,
}

#[cfg(test)]
pub(crate) fn sample_online() -> OnlineJson {
    OnlineJson {
        users: BTreeMap::new(),
        online: 0,
    }
}

pub(super) fn online(h: &mut Handlers, hub: &Hub, name: &'static str) {
    op(h, hub, name, |hub, peer, r: OnlineReq| async move {
        signed_in(&peer)?;
        let asked = r.users.unwrap_or_default();
        if asked.len() > MAX_ONLINE_QUERY {
            return Err(ChatError::new(
                "too_many",
                format!("at most {MAX_ONLINE_QUERY} users per request"),
            ));
        }
        let unavailable = |e: DirectoryError| ChatError::new("unavailable", e.to_string());
        let mut users = BTreeMap::new();
        for u in asked {
            let devices = hub.devices(&u).await.map_err(unavailable)?;
            users.insert(u, devices.into_iter().map(|p| p.device).collect::<Vec<_>>());
        }
        let online = hub.online_users().await.map_err(unavailable)?;
        Ok(OnlineJson { users, online })
    });
}
