//! The hub's two background tasks: token expiry (closes connections whose token expired and
//! was not refreshed) and the periodic sweep (expired queue entries, their shares, idle
//! rate-limiter state).

use std::sync::Weak;
use std::time::Duration;

use super::{Inner, lock};
use crate::close::{Close, CloseCode};
use crate::metrics as m;

/// Closes connections whose token expired (plus grace) and did not refresh.
pub(crate) async fn expiry_loop(inner: Weak<Inner>) {
    loop {
        let Some(hub) = inner.upgrade() else { return };
        let notify = hub.deadlines_changed.clone();
        let changed = notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = hub.now();
        let (due, next) = {
            let mut d = lock(&hub.deadlines);
            (d.due(now), d.next())
        };
        for (_, (id, shard)) in due {
            let conn = {
                let sh = hub.users(shard);
                sh.core
                    .expired(id, now)
                    .then(|| sh.core.conn(id).map(|c| c.handle.clone()))
                    .flatten()
            };
            if let Some(c) = conn {
                tracing::debug!(conn = id.0, user = %c.device().user, "token expired");
                hub.close(&c, Close::new(CloseCode::TOKEN_EXPIRED, "token expired"));
            }
        }
        let stop = hub.stop.clone();
        let sleep_until = next.map(|t| hub.instant(t));
        drop(hub);
        let sleep = async {
            match sleep_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = changed => {}
            _ = sleep => {}
        }
    }
}

/// Sweeps expired queue entries, aged history, and idle rate-limiter state, every
/// `sweep_interval`.
pub(crate) async fn sweep_loop(inner: Weak<Inner>) {
    let (interval, stop) = match inner.upgrade() {
        Some(h) => (h.config.sweep_interval, h.stop.clone()),
        None => return,
    };
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(hub) = inner.upgrade() else { return };
        match hub.queue.sweep().await {
            Ok(n) => metrics::counter!(m::EXPIRED).increment(n),
            Err(e) => tracing::warn!(error = %e, "offline queue sweep failed"),
        }
        if let Some(h) = &hub.history {
            match h.sweep().await {
                Ok(n) => metrics::counter!(m::HISTORY_TRIMMED).increment(n),
                Err(e) => tracing::warn!(error = %e, "history sweep failed"),
            }
        }
        let now = hub.now();
        hub.shares(|s| s.expire(now));
        if let Some(r) = &hub.conn_rates {
            lock(r).prune(now);
        }
        lock(&hub.guess_rates).prune(now);
    }
}
