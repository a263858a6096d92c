//! Connections coming and going: the connection rate, authentication, sign-on (the directory
//! decides, the core marks the connections it replaces), sign-off, token expiry and refresh,
//! closes and kicks, shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chinwag_transport::{ConnectInfo, Refusal};

use super::conn::{Attach, Conn};
use super::fanout::Outgoing;
use super::{Hub, Inner, lock, unix_micros};
use crate::auth::{AuthContext, AuthError, Authenticated, TokenSource, find_token};
use crate::close::{Close, CloseCode};
use crate::core::expiry::expiry_at;
use crate::core::identity::{DEFAULT_DEVICE, Device};
use crate::core::ids;
use crate::core::message::{DirectMessage, Event};
use crate::core::rate::KeyedRefusal;
use crate::core::signon::{ConnId, ConnRef};
use crate::error::SignOnError;
use crate::metrics as m;

impl Hub {
    /// The connection rate check for a new connection from `ip` (doors call it first).
    ///
    /// # Errors
    ///
    /// `429` with `Retry-After` past [`HubLimits::connection_rate`](crate::HubLimits::connection_rate)
    /// (or when too many addresses are tracked).
    pub fn check_connection_rate(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let (Some(rates), Some(ip)) = (&self.inner.conn_rates, ip) else {
            return Ok(());
        };
        let now = self.inner.now();
        let r = lock(rates).take(&ip, now);
        r.map_err(|why| {
            m::refusal("connection_rate");
            let text = match why {
                KeyedRefusal::TooManyKeys => "too many clients; retry later",
                KeyedRefusal::TooFast => "too many connections from this address; retry later",
            };
            Refusal::new(429, text).with_retry_after(Duration::from_secs(1))
        })
    }

    /// Authenticates a connection from what it presented at connect (see
    /// [`HubConfig::tokens`](crate::HubConfig::tokens)). `Ok(None)`: no token was presented
    /// (a door that accepts a first-message login then waits for it; the others refuse with
    /// [`AuthError::Missing`]). Anonymous connections, when enabled, are let in here. The
    /// authenticator learns the `door` and the client's address
    /// ([`AuthContext`](crate::auth::AuthContext)).
    ///
    /// # Errors
    ///
    /// Why the token was refused (counted in `chinwag_hub_refusals_total`).
    pub async fn authenticate_connect(
        &self,
        info: &ConnectInfo,
        door: &'static str,
    ) -> Result<Option<(Authenticated, TokenSource)>, AuthError> {
        let found = find_token(info, &self.inner.config.tokens).inspect_err(|e| {
            m::auth_refusal(e.reason());
        })?;
        match found {
            Some((token, source)) => {
                let ctx = AuthContext::new()
                    .with_door(door)
                    .with_ip(match info.peer() {
                        chinwag_transport::PeerAddr::Ip(a) => Some(a.ip()),
                        _ => None,
                    });
                let auth = self.authenticate_bytes(token.as_bytes(), ctx).await?;
                Ok(Some((auth, source)))
            }
            None if self.inner.config.anonymous => Ok(Some((
                Authenticated::new(Device::new(
                    format!("anon-{:016x}", rand::random::<u64>()),
                    DEFAULT_DEVICE,
                )),
                TokenSource::Anonymous,
            ))),
            None => Ok(None),
        }
    }

    /// Checks a token (a first-message login or a refresh).
    ///
    /// # Errors
    ///
    /// Why it was refused (counted in `chinwag_hub_refusals_total`).
    pub async fn authenticate_token(&self, token: &str) -> Result<Authenticated, AuthError> {
        self.authenticate_bytes(token.as_bytes(), AuthContext::new())
            .await
    }

    /// Checks a token of any bytes presented through `ctx` (the door and the client's
    /// address): the tok door's first frame, a first-message login. A token that is not
    /// UTF-8 reaches the authenticator's
    /// [`authenticate_bytes`](crate::auth::Authenticator::authenticate_bytes).
    ///
    /// # Errors
    ///
    /// Why it was refused (counted in `chinwag_hub_refusals_total`).
    pub async fn authenticate_bytes(
        &self,
        token: &[u8],
        ctx: AuthContext,
    ) -> Result<Authenticated, AuthError> {
        let r = async {
            self.inner.config.tokens.check_len(token)?;
            let Some(a) = &self.inner.authenticator else {
                return Err(AuthError::Refused("no authenticator configured".into()));
            };
            a.authenticate_bytes(token, ctx).await
        }
        .await;
        if let Err(e) = &r {
            m::auth_refusal(e.reason());
            tracing::debug!(reason = e.reason(), error = %e, "token refused");
        }
        r
    }

    /// Counts a first-message login that did not arrive in time.
    pub fn count_auth_timeout(&self) {
        m::auth_refusal("timeout");
    }

    /// Signs a connection on: applies the sign-on policy (closing the connections it
    /// replaces, which stop being recipients at once), starts the replay of its user's queued
    /// messages, and schedules its close at token expiry. The door must call
    /// [`detach`](Self::detach) when the connection ends.
    ///
    /// # Errors
    ///
    /// The identity breaks the id grammar, the hub is full or stopping, or the directory
    /// failed; the connection should be refused.
    pub async fn attach(&self, auth: Authenticated, a: Attach) -> Result<Conn, SignOnError> {
        let inner = &self.inner;
        let device = auth.device;
        let span = tracing::debug_span!("sign_on", user = %device.user, device = %device.device, door = a.door);
        let _e = span.enter();
        if self.is_stopping() {
            m::refusal("shutting_down");
            return Err(SignOnError::ShuttingDown);
        }
        ids::check_user(&device.user).map_err(SignOnError::BadIdentity)?;
        ids::check_device(&device.device).map_err(SignOnError::BadIdentity)?;
        let max = inner.config.limits.max_connections;
        if inner
            .attached
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            m::refusal("connections");
            return Err(SignOnError::Full);
        }
        let id = ConnId(inner.next_conn.fetch_add(1, Ordering::Relaxed));
        let shard = inner.user_shard(&device.user);
        let conn = Conn::new(id, device.clone(), shard, a);
        // Registered before the directory decides, so a newer sign-on racing with this one
        // finds it to close.
        let first = inner.users(shard).core.attach(
            id,
            conn.clone(),
            device.user.clone(),
            conn.0.acknowledges,
        );
        if first {
            inner.users_online.fetch_add(1, Ordering::AcqRel);
        }
        inner.gauges();
        // Taken back if this future is dropped before the sign-on is decided (an admission
        // that timed out, a connection that went away): never registered for good by mistake.
        let mut registered = Registered {
            inner,
            conn: conn.clone(),
            kept: false,
        };
        let me = ConnRef {
            node: inner.config.node,
            conn: id,
        };
        drop(_e);
        let outcome = match inner
            .directory
            .sign_on(&device, me, inner.config.sign_on)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                m::refusal("directory");
                return Err(e.into());
            }
        };
        registered.kept = true;
        conn.0.seq.store(outcome.seq, Ordering::Release);
        let local: Vec<ConnId> = outcome
            .replaced
            .iter()
            .filter(|r| r.conn.node == inner.config.node)
            .map(|r| r.conn.conn)
            .collect();
        // Another node's connections: a cluster directory closes them there
        // (`Hub::close_replaced` on that node).
        inner.replace(shard, &local);
        if let Some(exp) = auth.expires_at {
            inner.schedule_expiry(&conn, exp);
        }
        conn.0.link.establish();
        metrics::counter!(m::CONNECTS, "door" => conn.door()).increment(1);
        tracing::info!(user = %device.user, device = %device.device, door = conn.door(), conn = id.0, "signed in");
        inner.start_replay(conn.clone());
        inner.app.on_connect(self, &conn);
        inner.changed();
        Ok(conn)
    }

    /// The connection ended: removes it from its rooms and the hub's tables, and tells the
    /// directory and the application. Idempotent.
    pub fn detach(&self, conn: &Conn) {
        let inner = &self.inner;
        let Some(d) = inner.users(conn.0.shard).core.detach(conn.id()) else {
            return;
        };
        inner.attached.fetch_sub(1, Ordering::AcqRel);
        if d.user_gone {
            inner.users_online.fetch_sub(1, Ordering::AcqRel);
        }
        if !d.recipient {
            inner.closing.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(at) = d.expires_at {
            lock(&inner.deadlines).remove(at, (conn.id(), conn.0.shard));
        }
        for r in &d.rooms {
            inner.leave_room(conn, r);
        }
        inner.gauges();
        let directory = inner.directory.clone();
        let me = ConnRef {
            node: inner.config.node,
            conn: conn.id(),
        };
        let user = d.user;
        inner.tasks.spawn(async move {
            directory.sign_off(&user, me).await;
        });
        let closed_by = conn.closed_by();
        let reason = closed_by.as_ref().map_or("closed", |c| c.code.name());
        metrics::counter!(m::DISCONNECTS, "reason" => reason).increment(1);
        tracing::info!(user = %conn.device().user, device = %conn.device().device, door = conn.door(), conn = conn.id().0, reason, "disconnected");
        inner.app.on_close(conn, closed_by.as_ref());
        inner.changed();
    }

    /// A fresh token for a live connection: it must name the same user; the connection's expiry
    /// moves to the new token's.
    ///
    /// # Errors
    ///
    /// The token is refused, or names another user ([`AuthError::OtherUser`]).
    pub async fn refresh(&self, conn: &Conn, token: &str) -> Result<Option<SystemTime>, AuthError> {
        let auth = self.authenticate_token(token).await?;
        if auth.device.user != conn.device().user {
            m::auth_refusal("other_user");
            return Err(AuthError::OtherUser);
        }
        match auth.expires_at {
            Some(exp) => self.inner.schedule_expiry(conn, exp),
            None => {
                self.inner
                    .users(conn.0.shard)
                    .core
                    .set_expiry(conn.id(), None);
            }
        }
        Ok(auth.expires_at)
    }

    /// Closes `conn` with `close` (its door's goodbye, then the code). It stops being a
    /// recipient at once.
    pub fn close(&self, conn: &Conn, close: Close) {
        self.inner.close(conn, close);
    }

    /// Closes the connections of `user` (only those of `device`, when given) with close code
    /// 4004 and `reason`. Returns how many.
    pub fn kick(&self, user: &str, device: Option<&str>, reason: &str) -> usize {
        let inner = &self.inner;
        let conns = inner.users(inner.user_shard(user)).core.recipients(user);
        let mut n = 0;
        for (_, c) in conns {
            if device.is_some_and(|d| *c.device().device != *d) {
                continue;
            }
            tracing::info!(user, device = %c.device().device, door = c.door(), conn = c.id().0, reason, "kicked");
            inner.close(&c, Close::new(CloseCode::KICKED, reason));
            n += 1;
        }
        n
    }

    /// Graceful shutdown: refuses new sign-ons, closes every connection with 1001 (each gets
    /// what was queued for it first, then its door's goodbye), and waits up to `deadline` for
    /// them to end. Direct messages with a TTL that were not acknowledged stay in the offline
    /// queue (they were stored before they were sent), so a durable queue delivers them after
    /// a restart. Returns how many connections were still open at the deadline.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        let until = tokio::time::Instant::now() + deadline;
        let mut changes = self.changes();
        for shard in 0..super::SHARDS {
            let conns = inner.users(shard).core.all_recipients();
            for (_, c) in conns {
                inner.close(
                    &c,
                    Close::new(CloseCode::GOING_AWAY, "server shutting down"),
                );
            }
        }
        while inner.attached.load(Ordering::Acquire) > 0 {
            if tokio::time::timeout_at(until, changes.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        inner.stop.cancel();
        inner.tasks.close();
        let _ = tokio::time::timeout_at(until, inner.tasks.wait()).await;
        inner.attached.load(Ordering::Acquire)
    }
}

/// A connection registered by [`Hub::attach`] before its sign-on is decided.
struct Registered<'a> {
    inner: &'a Inner,
    conn: Conn,
    kept: bool,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.inner.forget(&self.conn);
        }
    }
}

impl Inner {
    /// The hub closes `conn`: it stops being a recipient now; the door's goodbye and the code
    /// follow. Nothing happens for a connection already closing or gone.
    pub(crate) fn close(&self, conn: &Conn, close: Close) {
        let closing = self.users(conn.0.shard).core.close(conn.id());
        if let Some(c) = closing {
            self.ended(conn, &c.held, close);
        }
    }

    /// Closes the connections `conns` of user shard `shard` that a newer sign-on replaced
    /// (those still recipients there): they stop being recipients now, then get the bye and
    /// close code 4003. Returns how many it closed. Shared by [`Hub::attach`] (this node's
    /// replacements) and [`Hub::close_replaced`] (another node's).
    pub(crate) fn replace(&self, shard: usize, conns: &[ConnId]) -> usize {
        if conns.is_empty() {
            return 0;
        }
        let replaced = self.users(shard).core.replace(conns);
        let n = replaced.len();
        for (_, old) in replaced {
            tracing::debug!(conn = old.handle.id().0, user = %old.handle.device().user, "replaced by a newer sign-on");
            self.ended(
                &old.handle,
                &old.held,
                Close::new(CloseCode::REPLACED, "replaced by a newer sign-on"),
            );
        }
        n
    }

    /// `conn` was just marked closing by the core: count it, hand it the live-only messages
    /// held for it (they were reported delivered), say goodbye.
    fn ended(&self, conn: &Conn, held: &[Arc<DirectMessage>], close: Close) {
        self.closing.fetch_add(1, Ordering::AcqRel);
        self.gauges();
        for m in held {
            self.deliver(conn, &Outgoing::new(Event::Direct(m.clone())));
        }
        conn.end(&close);
        self.changed();
    }

    /// Undoes an attach whose sign-on failed.
    fn forget(&self, conn: &Conn) {
        if let Some(d) = self.users(conn.0.shard).core.detach(conn.id()) {
            self.attached.fetch_sub(1, Ordering::AcqRel);
            if d.user_gone {
                self.users_online.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.gauges();
    }

    /// Closes `conn` when its token `exp`ires, plus the grace period.
    pub(crate) fn schedule_expiry(&self, conn: &Conn, exp: SystemTime) {
        let exp_ms = exp
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let at = expiry_at(
            self.now(),
            unix_micros() / 1000,
            exp_ms,
            self.config.token_grace,
        );
        if self
            .users(conn.0.shard)
            .core
            .set_expiry(conn.id(), Some(at))
        {
            lock(&self.deadlines).insert(at, (conn.id(), conn.0.shard));
            self.deadlines_changed.notify_one();
        }
    }

    /// The connection and user gauges.
    pub(crate) fn gauges(&self) {
        let attached = self.attached.load(Ordering::Acquire);
        let closing = self.closing.load(Ordering::Acquire);
        metrics::gauge!(m::CONNECTIONS).set(attached.saturating_sub(closing) as f64);
        metrics::gauge!(m::USERS_ONLINE).set(self.users_online.load(Ordering::Acquire) as f64);
    }
}
