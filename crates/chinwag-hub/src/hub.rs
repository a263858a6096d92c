//! The hub: who is connected, rooms, sends to users with the offline queue, presence, kicks and
//! shutdown. Doors (`crate::doors`) bring connections in and call it; applications call it to
//! send and to ask who is online.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chinwag_queue::{EntryId, MemoryQueue, Queue, QueueConfig};
use chinwag_session::SendError as SessionSendError;
use chinwag_transport::{ConnectInfo, Refusal};
use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Authenticated, Authenticator, TokenSource, find_token};
use crate::close::{Close, CloseCode};
use crate::config::{HubConfig, PartialDelivery, Rate};
use crate::conn::{Conn, Mode};
use crate::directory::{self, Directory};
use crate::error::{RoomError, SendError, SignOnError};
use crate::hooks::{App, BeforeSend, Delivered, Incoming, NoApp};
use crate::identity::{DEFAULT_DEVICE, Device};
use crate::link::Link;
use crate::mailbox::Mailboxes;
use crate::message::{
    Body, DirectMessage, Event, IdSource, MessageId, Outgoing, PresenceEvent, RoomMessage,
    decode_envelope, encode_envelope, unix_micros, unix_millis,
};
use crate::metrics as m;
use crate::policy::{ConnId, SignedOn};
use crate::rates::{IpRates, RateRefusal};
use crate::room::{self, Room, RoomInfo, RoomOptions};

/// The IM hub. Cheap to clone (a handle); every clone is the same hub.
///
/// Make one with [`Hub::builder`] inside a Tokio runtime (it runs two background tasks: token
/// expiry and the queue sweep), then bring connections in through the doors in
/// [`doors`](crate::doors).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    queue: Arc<dyn Queue>,
    directory: Arc<dyn Directory>,
    app: Arc<dyn App>,
    authenticator: Option<Arc<dyn Authenticator>>,
    ids: IdSource,
    next_conn: AtomicU64,
    registry: Mutex<Registry>,
    mailboxes: Mailboxes,
    password_checks: Arc<Semaphore>,
    ip_limiter: Option<IpRates>,
    expiry: Mutex<BTreeSet<(Instant, ConnId)>>,
    expiry_changed: Arc<Notify>,
    broadcast_seq: AtomicU64,
    stopping: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
    detached: Notify,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnId, Arc<Conn>>,
    users: HashMap<Arc<str>, Vec<Arc<Conn>>>,
    rooms: HashMap<Arc<str>, Arc<Room>>,
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    config: HubConfig,
    queue: Option<Arc<dyn Queue>>,
    directory: Option<Arc<dyn Directory>>,
    app: Arc<dyn App>,
    authenticator: Option<Arc<dyn Authenticator>>,
}

impl HubBuilder {
    /// The settings (default [`HubConfig::default`]).
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// The offline queue (default: a [`MemoryQueue`] with default bounds).
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The directory (default: [`LocalDirectory`](crate::LocalDirectory)).
    pub fn directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The application's hooks (default: [`NoApp`]).
    pub fn app(mut self, app: Arc<dyn App>) -> Self {
        self.app = app;
        self
    }

    /// Who checks tokens. Without one, only anonymous connections (when enabled) get in.
    pub fn authenticator(mut self, a: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(a);
        self
    }

    /// Builds the hub and starts its background tasks.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn build(self) -> Hub {
        m::describe();
        let limits = &self.config.limits;
        let ip_limiter = limits
            .connection_rate
            .map(|r| IpRates::new(quota(r), limits.max_tracked_ips));
        let inner = Arc::new(Inner {
            queue: self
                .queue
                .unwrap_or_else(|| Arc::new(MemoryQueue::new(QueueConfig::default()))),
            directory: self.directory.unwrap_or_else(directory::local),
            app: self.app,
            authenticator: self.authenticator,
            ids: IdSource::default(),
            next_conn: AtomicU64::new(1),
            registry: Mutex::new(Registry::default()),
            mailboxes: Mailboxes::default(),
            password_checks: Arc::new(Semaphore::new(limits.password_checks.max(1))),
            ip_limiter,
            expiry: Mutex::new(BTreeSet::new()),
            expiry_changed: Arc::new(Notify::new()),
            broadcast_seq: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            detached: Notify::new(),
            config: self.config,
        });
        let hub = Hub { inner };
        hub.inner
            .tasks
            .spawn(expiry_loop(Arc::downgrade(&hub.inner)));
        hub.inner
            .tasks
            .spawn(sweep_loop(Arc::downgrade(&hub.inner)));
        hub
    }
}

fn quota(r: Rate) -> Quota {
    let per = NonZeroU32::new(r.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(r.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per).allow_burst(burst)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of a send to a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The message's id.
    pub id: MessageId,
    /// Connections it was queued on now, or that get it from the offline queue as they catch
    /// up (they are replaying).
    pub delivered: usize,
    /// Connections of the user that could not take it now (full or closing). With a TTL they
    /// get it from the offline queue.
    pub failed: usize,
    /// Whether it is in the offline queue (until acknowledged or expired).
    pub queued: bool,
}

/// What became of a room publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PublishReport {
    /// The publish's sequence number in the room.
    pub seq: u64,
    /// Members it was queued on.
    pub delivered: usize,
    /// Members whose overflow policy dropped it (or closed them).
    pub dropped: usize,
    /// Members a before-send hook filtered out.
    pub filtered: usize,
}

/// A page of room members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MembersPage {
    /// Members, in order of connection id.
    pub members: Vec<Member>,
    /// The cursor for the next page (`None`: this was the last).
    pub next: Option<ConnId>,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Member {
    /// Its connection.
    pub conn: ConnId,
    /// Its user.
    pub user: String,
    /// Its device.
    pub device: String,
}

/// One device of an online user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Presence {
    /// The device id.
    pub device: String,
    /// The node it is connected to.
    pub node: u64,
    /// Its connection there.
    pub conn: ConnId,
}

/// How a direct message is sent.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// How long it may wait in the offline queue; `Some(ZERO)`: live only (an offline user is an
    /// error); `None`: the hub's [`default_ttl`](HubConfig::default_ttl). Cut to
    /// [`max_ttl`](HubConfig::max_ttl).
    pub ttl: Option<Duration>,
}

impl SendOptions {
    /// With `ttl` (see [`ttl`](Self::ttl)).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Live only: TTL 0.
    pub fn live_only() -> Self {
        SendOptions {
            ttl: Some(Duration::ZERO),
        }
    }
}

impl Hub {
    /// Starts building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            config: HubConfig::default(),
            queue: None,
            directory: None,
            app: Arc::new(NoApp),
            authenticator: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The offline queue.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    /// Whether the hub is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    // ---- admission and authentication -----------------------------------------------------

    /// The connection rate check for a new connection from `ip` (doors call it first).
    ///
    /// # Errors
    ///
    /// `429` with `Retry-After` past [`HubLimits::connection_rate`](crate::HubLimits::connection_rate)
    /// (or when too many IPs are tracked).
    pub fn check_connection_rate(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let (Some(l), Some(ip)) = (&self.inner.ip_limiter, ip) else {
            return Ok(());
        };
        match l.check(ip) {
            Ok(()) => Ok(()),
            Err(RateRefusal::TooManyClients) => {
                m::refusal("connection_rate");
                Err(Refusal::new(429, "too many clients; retry later")
                    .with_retry_after(Duration::from_secs(1)))
            }
            Err(RateRefusal::TooFast) => {
                m::refusal("connection_rate");
                Err(
                    Refusal::new(429, "too many connections from this address; retry later")
                        .with_retry_after(Duration::from_secs(1)),
                )
            }
        }
    }

    /// Authenticates a connection from what it presented at connect (see
    /// [`HubConfig::tokens`]). `Ok(None)`: no token was presented (a door that accepts a
    /// first-message login then waits for it; the others refuse with
    /// [`AuthError::Missing`]). Anonymous connections, when enabled, are let in here.
    ///
    /// # Errors
    ///
    /// Why the token was refused (counted in `chinwag_hub_refusals_total`).
    pub async fn authenticate_connect(
        &self,
        info: &ConnectInfo,
    ) -> Result<Option<(Authenticated, TokenSource)>, AuthError> {
        let found = find_token(info, &self.inner.config.tokens).inspect_err(|e| {
            m::auth_refusal(e.reason());
        })?;
        match found {
            Some((token, source)) => Ok(Some((self.authenticate_token(&token).await?, source))),
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
        let r = async {
            self.inner.config.tokens.check_len(token)?;
            let Some(a) = &self.inner.authenticator else {
                return Err(AuthError::Refused("no authenticator configured".into()));
            };
            a.authenticate(token).await
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

    // ---- sign-on and sign-off -------------------------------------------------------------

    /// Signs a connection on: applies the sign-on policy (closing the connections it
    /// replaces), starts the replay of its user's queued messages, and schedules its close at
    /// token expiry. The door must call [`detach`](Self::detach) when the connection ends.
    ///
    /// # Errors
    ///
    /// The hub is full or stopping, or the directory failed; the connection should be refused
    /// (503).
    pub async fn attach(
        &self,
        auth: Authenticated,
        link: Arc<dyn Link>,
        door: &'static str,
        ip: Option<IpAddr>,
    ) -> Result<Arc<Conn>, SignOnError> {
        let span = tracing::debug_span!("sign_on", user = %auth.device.user, device = %auth.device.device, door);
        let _e = span.enter();
        let inner = &*self.inner;
        if self.is_stopping() {
            m::refusal("shutting_down");
            return Err(SignOnError::ShuttingDown);
        }
        let id = ConnId(inner.next_conn.fetch_add(1, Ordering::Relaxed));
        let limiter = inner
            .config
            .limits
            .message_rate
            .map(|r| RateLimiter::direct(quota(r)));
        let conn = Arc::new(Conn::new(id, auth.device.clone(), door, link, ip, limiter));
        {
            // Registered before the directory decides, so a newer sign-on racing with this one
            // finds it to close.
            let mut reg = lock(&inner.registry);
            if reg.conns.len() >= inner.config.limits.max_connections {
                drop(reg);
                m::refusal("connections");
                return Err(SignOnError::Full);
            }
            reg.conns.insert(id, conn.clone());
            reg.users
                .entry(conn.device.user.clone())
                .or_default()
                .push(conn.clone());
            metrics::gauge!(m::CONNECTIONS).set(reg.conns.len() as f64);
            metrics::gauge!(m::USERS_ONLINE).set(reg.users.len() as f64);
        }
        let me = directory::conn_ref(inner.config.node, id);
        drop(_e);
        let outcome = match inner
            .directory
            .sign_on(&conn.device, me, inner.config.sign_on)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                self.unregister(&conn);
                m::refusal("directory");
                return Err(e.into());
            }
        };
        conn.seq.store(outcome.seq, Ordering::Release);
        for r in &outcome.replaced {
            self.close_replaced(r);
        }
        if let Some(exp) = auth.expires_at {
            self.schedule_expiry(&conn, exp);
        }
        metrics::counter!(m::CONNECTS, "door" => door).increment(1);
        tracing::debug!(conn = id.0, seq = outcome.seq, replaced = outcome.replaced.len(), user = %conn.device.user, "signed on");
        // Queued messages first: the replay sends them, then switches the connection to live.
        let hub = self.clone();
        let c = conn.clone();
        inner.tasks.spawn(async move { hub.replay(c).await });
        inner.app.on_connect(self, &conn);
        Ok(conn)
    }

    fn close_replaced(&self, r: &SignedOn) {
        if r.conn.node != self.inner.config.node {
            // Another node's connection: a cluster directory closes it there.
            return;
        }
        let old = lock(&self.inner.registry).conns.get(&r.conn.conn).cloned();
        if let Some(old) = old {
            tracing::debug!(conn = old.id.0, user = %old.device.user, "replaced by a newer sign-on");
            old.close(Close::new(
                CloseCode::REPLACED,
                "replaced by a newer sign-on",
            ));
        }
    }

    /// The connection ended: removes it from its rooms and the hub's tables, and tells the
    /// directory and the application. Idempotent.
    pub fn detach(&self, conn: &Arc<Conn>) {
        let (rooms, closed_by) = {
            let mut st = conn.state();
            if st.detached {
                return;
            }
            st.detached = true;
            st.held.clear();
            (std::mem::take(&mut st.rooms), st.closed_by.clone())
        };
        for r in rooms {
            self.remove_member(&r, conn);
        }
        self.unregister(conn);
        let hub = self.clone();
        let me = directory::conn_ref(self.inner.config.node, conn.id);
        let user = conn.device.user.clone();
        self.inner.tasks.spawn(async move {
            hub.inner.directory.sign_off(&user, me).await;
        });
        let reason = closed_by.as_ref().map_or("closed", |c| c.code.name());
        metrics::counter!(m::DISCONNECTS, "reason" => reason).increment(1);
        tracing::debug!(conn = conn.id.0, user = %conn.device.user, reason, "signed off");
        self.inner.app.on_close(conn, closed_by.as_ref());
        self.inner.detached.notify_waiters();
    }

    fn unregister(&self, conn: &Arc<Conn>) {
        let mut reg = lock(&self.inner.registry);
        if reg.conns.remove(&conn.id).is_some()
            && let Some(list) = reg.users.get_mut(&conn.device.user)
        {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                reg.users.remove(&conn.device.user);
            }
        }
        metrics::gauge!(m::CONNECTIONS).set(reg.conns.len() as f64);
        metrics::gauge!(m::USERS_ONLINE).set(reg.users.len() as f64);
    }

    /// A fresh token for a live connection: it must name the same user; the connection's expiry
    /// moves to the new token's.
    ///
    /// # Errors
    ///
    /// The token is refused, or names another user ([`AuthError::OtherUser`]).
    pub async fn refresh(
        &self,
        conn: &Arc<Conn>,
        token: &str,
    ) -> Result<Option<SystemTime>, AuthError> {
        let auth = self.authenticate_token(token).await?;
        if auth.device.user != conn.device.user {
            m::auth_refusal("other_user");
            return Err(AuthError::OtherUser);
        }
        match auth.expires_at {
            Some(exp) => self.schedule_expiry(conn, exp),
            None => conn.state().expires_at = None,
        }
        Ok(auth.expires_at)
    }

    fn schedule_expiry(&self, conn: &Arc<Conn>, exp: SystemTime) {
        let left = exp
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let at = Instant::now() + left + self.inner.config.token_grace;
        conn.state().expires_at = Some(at);
        lock(&self.inner.expiry).insert((at, conn.id));
        self.inner.expiry_changed.notify_one();
    }

    // ---- direct messages ------------------------------------------------------------------

    /// Sends `body` to every connection of `user` (from the server itself). See
    /// [`send_as`](Self::send_as).
    ///
    /// # Errors
    ///
    /// As [`send_as`](Self::send_as).
    pub async fn send(
        &self,
        user: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        self.send_as(None, user, body, opts).await
    }

    /// Sends `body` from `from` (`None`: the server) to every connection of `user`.
    ///
    /// With a TTL the message goes into the offline queue first (returning once it is stored:
    /// for a durable queue, once it would survive a crash) and then straight to the user's
    /// connections that are live; connections still replaying, or whose send queue is full,
    /// get it from the queue, in order. It stays queued until a connection acknowledges it or
    /// its TTL passes. With TTL 0 it goes only to live connections and an offline user is
    /// [`SendError::Offline`].
    ///
    /// Sends to one user are ordered: ids increase in the order the sends reach the user's
    /// lock, and every connection sees them in id order.
    ///
    /// # Errors
    ///
    /// [`SendError`]: offline (TTL 0), too large, bad recipient, queue refused or failed,
    /// partial (under [`PartialDelivery::AllOrError`]), shutting down.
    pub async fn send_as(
        &self,
        from: Option<&Device>,
        user: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        let inner = &*self.inner;
        if self.is_stopping() {
            return Err(SendError::ShuttingDown);
        }
        if user.is_empty() || user.len() > chinwag_queue::MAX_RECIPIENT_LEN {
            return Err(SendError::BadRecipient);
        }
        let limit = inner.config.limits.max_body_bytes;
        if body.len() > limit {
            return Err(SendError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        let ttl = opts
            .ttl
            .unwrap_or(inner.config.default_ttl)
            .min(inner.config.max_ttl);
        let to: Arc<str> = self.user_key(user);
        let _mailbox = inner.mailboxes.lock(&to).await;
        let msg = Arc::new(DirectMessage {
            id: inner.ids.next(),
            to: to.clone(),
            from: from.cloned(),
            sent_at: unix_millis(),
            body,
        });
        let conns = self.user_conns(&to);
        if ttl.is_zero() {
            if conns.is_empty() {
                return Err(SendError::Offline(user.to_owned()));
            }
            let out = Arc::new(Outgoing::new(Event::Direct(msg.clone())));
            let (delivered, failed) = self.deliver_live(&conns, &out, None).await;
            let report = DeliveryReport {
                id: msg.id,
                delivered,
                failed,
                queued: false,
            };
            return self.partial(report, &msg, conns.len()).await;
        }
        let entry = inner
            .queue
            .push(&to, encode_envelope(&msg), Some(ttl))
            .await?;
        metrics::counter!(m::QUEUED).increment(1);
        let out = Arc::new(Outgoing::new(Event::Direct(msg.clone())));
        let (delivered, failed) = self.deliver_live(&conns, &out, Some(entry)).await;
        Ok(DeliveryReport {
            id: msg.id,
            delivered,
            failed,
            queued: true,
        })
    }

    async fn partial(
        &self,
        report: DeliveryReport,
        msg: &DirectMessage,
        total: usize,
    ) -> Result<DeliveryReport, SendError> {
        if report.failed == 0 {
            return Ok(report);
        }
        match self.inner.config.partial {
            PartialDelivery::AnyDelivered if report.delivered > 0 => Ok(report),
            PartialDelivery::AnyDelivered => Err(SendError::Undelivered),
            PartialDelivery::AllOrError => Err(SendError::Partial {
                delivered: report.delivered,
                total,
            }),
            PartialDelivery::QueueForUser { ttl } => {
                self.inner
                    .queue
                    .push(&msg.to, encode_envelope(msg), Some(ttl))
                    .await?;
                metrics::counter!(m::QUEUED).increment(1);
                Ok(DeliveryReport {
                    queued: true,
                    ..report
                })
            }
        }
    }

    /// A send from a connection: its message rate and the before-receive hook first.
    ///
    /// # Errors
    ///
    /// As [`send_as`](Self::send_as), plus [`SendError::RateLimited`] and
    /// [`SendError::Refused`].
    pub async fn send_from(
        &self,
        conn: &Arc<Conn>,
        to: &str,
        body: Body,
        opts: SendOptions,
    ) -> Result<DeliveryReport, SendError> {
        self.permit(conn).map_err(|()| SendError::RateLimited)?;
        metrics::counter!(m::MESSAGES_IN, "kind" => "direct").increment(1);
        let (to, body) = match self.inner.app.before_receive(
            &conn.device,
            Incoming::Direct {
                to: to.to_owned(),
                body,
            },
        ) {
            Ok(Incoming::Direct { to, body }) => (to, body),
            Ok(_) => return Err(SendError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(SendError::Refused(why)),
        };
        self.send_as(Some(&conn.device), &to, body, opts).await
    }

    fn permit(&self, conn: &Conn) -> Result<(), ()> {
        match conn.take_message_permit(self.inner.config.limits.rate_limit_strikes) {
            Ok(()) => Ok(()),
            Err(close) => {
                m::refusal("message_rate");
                if close {
                    conn.close(Close::new(
                        CloseCode::RATE_LIMITED,
                        "message rate exceeded repeatedly",
                    ));
                }
                Err(())
            }
        }
    }

    fn user_key(&self, user: &str) -> Arc<str> {
        // Reuse the registry's shared string for online users (no allocation per send).
        lock(&self.inner.registry)
            .users
            .get_key_value(user)
            .map_or_else(|| Arc::from(user), |(k, _)| k.clone())
    }

    fn user_conns(&self, user: &str) -> Vec<Arc<Conn>> {
        lock(&self.inner.registry)
            .users
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Live delivery of a direct message to `conns` (the user's mailbox is held). With `entry`
    /// (queued), replaying connections are left to their replay and a full send queue turns the
    /// connection back to replaying; without, replaying connections hold it.
    async fn deliver_live(
        &self,
        conns: &[Arc<Conn>],
        out: &Arc<Outgoing>,
        entry: Option<EntryId>,
    ) -> (usize, usize) {
        let Event::Direct(msg) = out.event() else {
            return (0, 0);
        };
        let mut delivered = 0;
        let mut failed = 0;
        let mut sent_upto: Option<EntryId> = None;
        for conn in conns {
            {
                let mut st = conn.state();
                if st.detached {
                    failed += 1;
                    continue;
                }
                if st.mode == Mode::Replaying {
                    if entry.is_some() {
                        // The replay will send it (it is in the queue, after the cursor).
                        delivered += 1;
                    } else if st.held.len() < self.inner.config.limits.max_held_live {
                        st.held.push_back(out.clone());
                        delivered += 1;
                    } else {
                        m::dropped("overflow");
                        failed += 1;
                    }
                    continue;
                }
                if entry.is_some_and(|e| e <= st.cursor) {
                    delivered += 1;
                    continue;
                }
            }
            // Live. Only the holder of the user's mailbox (us) changes a live connection's
            // mode and cursor, so the lock need not be held across the send (nor the hooks).
            match self.deliver(conn, out) {
                Delivered::Sent => {
                    delivered += 1;
                    if let Some(e) = entry {
                        let mut st = conn.state();
                        st.cursor = e;
                        if conn.link.acknowledges() {
                            self.remember_unacked(&mut st.window, msg.id, e);
                        }
                        sent_upto = Some(e);
                    }
                }
                Delivered::Filtered => delivered += 1,
                Delivered::Dropped if entry.is_some() && !conn.link.is_closed() => {
                    // Its send queue is full: it catches up from the queue when it has room,
                    // in order, instead of losing the message.
                    conn.state().mode = Mode::Replaying;
                    let hub = self.clone();
                    let c = conn.clone();
                    self.inner.tasks.spawn(async move { hub.replay(c).await });
                    delivered += 1;
                }
                Delivered::Dropped | Delivered::Closed => failed += 1,
            }
        }
        if let Some(e) = sent_upto
            && conns.iter().all(|c| !c.link.acknowledges())
        {
            // Doors whose clients cannot acknowledge: written counts as delivered. Only when
            // no connection of the user acknowledges (an ack is for the whole user's queue).
            self.ack_entries(&msg.to, e).await;
        }
        (delivered, failed)
    }

    fn remember_unacked(
        &self,
        window: &mut std::collections::VecDeque<(MessageId, EntryId)>,
        id: MessageId,
        e: EntryId,
    ) {
        if window.len() >= self.inner.config.limits.max_unacked {
            // Acks are cumulative: forgetting the oldest loses nothing a later ack covers.
            window.pop_front();
        }
        window.push_back((id, e));
    }

    /// Hands one event to one connection: the before-send hook, the shared encoding, the
    /// non-blocking send, the after-send hook.
    fn deliver(&self, conn: &Conn, out: &Outgoing) -> Delivered {
        let app = &self.inner.app;
        let encoded = match app.before_send(&conn.device, out.event()) {
            BeforeSend::Keep => out.encoded(conn.link.slot(), |ev| conn.link.encode(ev)),
            BeforeSend::Drop => {
                m::dropped("filtered");
                app.after_send(&conn.device, out.event(), Delivered::Filtered);
                return Delivered::Filtered;
            }
            BeforeSend::Replace(body) => conn.link.encode(&out.event().with_body(body)),
        };
        let Some(encoded) = encoded else {
            // Not carried by this door (e.g. presence on the raw room door).
            return Delivered::Filtered;
        };
        let outcome = match conn.link.try_send(encoded) {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT, "kind" => out.event().kind()).increment(1);
                Delivered::Sent
            }
            Err(SessionSendError::Closed) => {
                m::dropped("closed");
                Delivered::Closed
            }
            Err(_) => {
                m::dropped("overflow");
                Delivered::Dropped
            }
        };
        app.after_send(&conn.device, out.event(), outcome);
        outcome
    }

    /// Sends `conn`'s user's queued messages from its cursor on, then switches it to live
    /// (under the user's mailbox, so no send slips between the last read and the switch).
    async fn replay(&self, conn: Arc<Conn>) {
        let inner = &*self.inner;
        let user = conn.device.user.clone();
        let page = inner.config.replay_page.max(1);
        loop {
            let cursor = conn.state().cursor;
            let mut entries = match inner.queue.read(&user, cursor, page).await {
                Ok(e) => e,
                Err(e) => return self.replay_failed(&conn, &e.to_string()),
            };
            if entries.is_empty() {
                // Held live-only messages go out with the waiting send, outside the mailbox
                // (a slow reader must not hold up the user's senders); more may be held
                // meanwhile, so the switch below only happens with none left.
                if !self.flush_held_before(&conn, MessageId(u64::MAX)).await {
                    return;
                }
                let _mailbox = inner.mailboxes.lock(&user).await;
                let cursor = conn.state().cursor;
                entries = match inner.queue.read(&user, cursor, page).await {
                    Ok(e) => e,
                    Err(e) => return self.replay_failed(&conn, &e.to_string()),
                };
                if entries.is_empty() {
                    let mut st = conn.state();
                    if st.detached {
                        return;
                    }
                    if st.held.is_empty() {
                        st.mode = Mode::Live;
                        return;
                    }
                    // Held since the flush: another round.
                    continue;
                }
            }
            let mut auto_ack = None;
            for e in entries {
                if conn.is_closed() {
                    return;
                }
                let Some(msg) = decode_envelope(&user, e.payload.clone()) else {
                    tracing::warn!(user = %user, entry = e.id, "skipping a queue entry this hub did not write");
                    conn.state().cursor = e.id;
                    continue;
                };
                // Live-only messages held during the replay go out in id order with it.
                if !self.flush_held_before(&conn, msg.id).await {
                    return;
                }
                let id = msg.id;
                let out = Outgoing::new(Event::Direct(Arc::new(msg)));
                if !self.send_waiting(&conn, &out).await {
                    return;
                }
                metrics::counter!(m::REPLAYED).increment(1);
                let mut st = conn.state();
                st.cursor = e.id;
                if conn.link.acknowledges() {
                    self.remember_unacked(&mut st.window, id, e.id);
                } else {
                    auto_ack = Some(e.id);
                }
            }
            if let Some(e) = auto_ack
                && self
                    .user_conns(&user)
                    .iter()
                    .all(|c| !c.link.acknowledges())
            {
                self.ack_entries(&user, e).await;
            }
        }
    }

    /// Sends the held live-only messages older than `id`, each waiting for room in the send
    /// queue (they were reported delivered: a full queue must not drop them). False when the
    /// connection is gone or was closed for not reading.
    async fn flush_held_before(&self, conn: &Arc<Conn>, id: MessageId) -> bool {
        loop {
            let next = {
                let mut st = conn.state();
                match st.held.front() {
                    Some(o) if matches!(o.event(), Event::Direct(d) if d.id < id) => {
                        st.held.pop_front()
                    }
                    _ => None,
                }
            };
            match next {
                Some(o) => {
                    if !self.send_waiting(conn, &o).await {
                        return false;
                    }
                }
                None => return true,
            }
        }
    }

    /// One replayed (or held) message to one connection: the before-send hook, then the send
    /// that waits for room up to the replay timeout (a connection that does not read in that
    /// time is closed with 1008). False when the connection is gone.
    async fn send_waiting(&self, conn: &Conn, out: &Outgoing) -> bool {
        let inner = &*self.inner;
        let app = &inner.app;
        let encoded = match app.before_send(&conn.device, out.event()) {
            BeforeSend::Keep => conn.link.encode(out.event()),
            BeforeSend::Drop => {
                m::dropped("filtered");
                app.after_send(&conn.device, out.event(), Delivered::Filtered);
                return true;
            }
            BeforeSend::Replace(body) => conn.link.encode(&out.event().with_body(body)),
        };
        let Some(encoded) = encoded else {
            return true;
        };
        match conn.link.send(encoded, inner.config.replay_timeout).await {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT, "kind" => out.event().kind()).increment(1);
                app.after_send(&conn.device, out.event(), Delivered::Sent);
                true
            }
            Err(SessionSendError::Timeout) => {
                conn.close(Close::new(
                    CloseCode::POLICY,
                    "not reading its queued messages",
                ));
                false
            }
            Err(_) => false,
        }
    }

    fn replay_failed(&self, conn: &Conn, e: &str) {
        tracing::warn!(conn = conn.id.0, user = %conn.device.user, error = e, "offline queue read failed; closing");
        conn.close(Close::new(
            CloseCode::TRY_AGAIN_LATER,
            "offline queue unavailable",
        ));
    }

    /// The client acknowledges every direct message up to `id`: they are removed from the
    /// offline queue and never sent to this user again. Returns how many queue entries were
    /// removed. An ack is applied when this returns (the chat door answers the `ack` request
    /// then).
    ///
    /// # Errors
    ///
    /// The queue failed.
    pub async fn ack(&self, conn: &Arc<Conn>, id: MessageId) -> Result<u64, SendError> {
        let upto = {
            let mut st = conn.state();
            let mut last = None;
            while let Some(&(mid, e)) = st.window.front() {
                if mid > id {
                    break;
                }
                last = Some(e);
                st.window.pop_front();
            }
            last
        };
        let Some(e) = upto else {
            return Ok(0);
        };
        let n = self.inner.queue.ack(&conn.device.user, e).await?;
        metrics::counter!(m::ACKED).increment(n);
        Ok(n)
    }

    async fn ack_entries(&self, user: &str, upto: EntryId) {
        match self.inner.queue.ack(user, upto).await {
            Ok(n) => metrics::counter!(m::ACKED).increment(n),
            Err(e) => tracing::warn!(user, error = %e, "offline queue ack failed"),
        }
    }

    // ---- application messages -------------------------------------------------------------

    /// A message from `conn` for the application: its rate, the before-receive hook, then
    /// [`App::on_receive`], awaited (so a connection's app messages are handled in order).
    ///
    /// # Errors
    ///
    /// Rate limited, or refused by the hook.
    pub async fn receive_app(&self, conn: &Arc<Conn>, body: Body) -> Result<(), SendError> {
        self.permit(conn).map_err(|()| SendError::RateLimited)?;
        let limit = self.inner.config.limits.max_body_bytes;
        if body.len() > limit {
            return Err(SendError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        metrics::counter!(m::MESSAGES_IN, "kind" => "app").increment(1);
        let body = match self
            .inner
            .app
            .before_receive(&conn.device, Incoming::App { body })
        {
            Ok(Incoming::App { body }) => body,
            Ok(_) => return Err(SendError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(SendError::Refused(why)),
        };
        self.inner.app.on_receive(self, &conn.device, body).await;
        Ok(())
    }

    // ---- rooms ----------------------------------------------------------------------------

    /// Creates a room (kept when empty, unlike rooms made by a join). With a password, it is
    /// hashed (Argon2id) off the async threads.
    ///
    /// # Errors
    ///
    /// Bad name, bad password, exists, too many rooms.
    pub async fn create_room(&self, name: &str, opts: RoomOptions) -> Result<RoomInfo, RoomError> {
        let limits = &self.inner.config.limits;
        if !room::valid_name(name, limits.max_room_name_bytes) {
            return Err(RoomError::BadName);
        }
        let hash = match &opts.password {
            Some(p) if p.len() > limits.max_password_bytes => return Err(RoomError::BadPassword),
            Some(p) => {
                let p = p.clone();
                Some(
                    tokio::task::spawn_blocking(move || room::hash_password(&p))
                        .await
                        .map_err(|_| RoomError::Busy)?
                        .map_err(|_| RoomError::BadPassword)?,
                )
            }
            None => None,
        };
        let mut reg = lock(&self.inner.registry);
        if reg.rooms.contains_key(name) {
            return Err(RoomError::Exists);
        }
        if reg.rooms.len() >= limits.max_rooms {
            m::refusal("rooms");
            return Err(RoomError::TooManyRoomsOnServer);
        }
        let r = Arc::new(Room::new(
            name.into(),
            new_epoch(),
            hash,
            opts.presence_events,
            opts.max_members
                .unwrap_or(limits.max_members_per_room)
                .min(limits.max_members_per_room),
            true,
        ));
        reg.rooms.insert(r.name.clone(), r.clone());
        metrics::gauge!(m::ROOMS).set(reg.rooms.len() as f64);
        Ok(r.info())
    }

    /// Removes a room: its members leave it (they get no event); later publishes fail. Returns
    /// whether it existed.
    pub fn remove_room(&self, name: &str) -> bool {
        let r = {
            let mut reg = lock(&self.inner.registry);
            let r = reg.rooms.remove(name);
            metrics::gauge!(m::ROOMS).set(reg.rooms.len() as f64);
            r
        };
        let Some(r) = r else {
            return false;
        };
        let members: Vec<Arc<Conn>> = std::mem::take(&mut *r.members_mut())
            .into_values()
            .collect();
        for c in members {
            c.state().rooms.retain(|x| !Arc::ptr_eq(x, &r));
        }
        true
    }

    /// `conn` joins `room` (created on the way when [`HubConfig::auto_create_rooms`] and it
    /// does not exist), giving `password` if the room has one.
    ///
    /// # Errors
    ///
    /// [`RoomError`]: bad name, no such room, wrong password, full, too many rooms, busy.
    pub async fn join(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        password: Option<&str>,
    ) -> Result<RoomInfo, RoomError> {
        let inner = &*self.inner;
        let limits = &inner.config.limits;
        if !room::valid_name(room, limits.max_room_name_bytes) {
            return Err(RoomError::BadName);
        }
        if password.is_some_and(|p| p.len() > limits.max_password_bytes) {
            return Err(RoomError::BadPassword);
        }
        {
            let st = conn.state();
            if let Some(r) = st.rooms.iter().find(|r| &*r.name == room).cloned() {
                drop(st);
                return Ok(r.info());
            }
            if st.rooms.len() >= limits.max_rooms_per_connection {
                m::refusal("rooms_per_connection");
                return Err(RoomError::TooManyRooms);
            }
        }
        loop {
            let r = {
                let mut reg = lock(&inner.registry);
                match reg.rooms.get(room) {
                    Some(r) => r.clone(),
                    None if inner.config.auto_create_rooms => {
                        if reg.rooms.len() >= limits.max_rooms {
                            m::refusal("rooms");
                            return Err(RoomError::TooManyRoomsOnServer);
                        }
                        let r = Arc::new(Room::new(
                            room.into(),
                            new_epoch(),
                            None,
                            false,
                            limits.max_members_per_room,
                            false,
                        ));
                        reg.rooms.insert(r.name.clone(), r.clone());
                        metrics::gauge!(m::ROOMS).set(reg.rooms.len() as f64);
                        r
                    }
                    None => return Err(RoomError::NoSuchRoom),
                }
            };
            if let Some(hash) = &r.password_hash {
                let Some(given) = password else {
                    m::refusal("room_password");
                    return Err(RoomError::WrongPassword);
                };
                if !self.verify(hash, given).await? {
                    m::refusal("room_password");
                    return Err(RoomError::WrongPassword);
                }
            }
            {
                let mut members = r.members_mut();
                if members.len() >= r.max_members {
                    m::refusal("room_full");
                    return Err(RoomError::Full);
                }
                // A room made by a join goes when its last member leaves; if that happened
                // between our lookup and now, look again.
                if !r.persistent && !self.room_is_current(&r) {
                    continue;
                }
                members.insert(conn.id, conn.clone());
            }
            {
                let mut st = conn.state();
                if st.detached {
                    drop(st);
                    self.remove_member(&r, conn);
                    return Err(RoomError::NoSuchRoom);
                }
                st.rooms.push(r.clone());
            }
            if r.presence_events {
                self.presence(&r, conn, true);
            }
            return Ok(r.info());
        }
    }

    fn room_is_current(&self, r: &Arc<Room>) -> bool {
        lock(&self.inner.registry)
            .rooms
            .get(&r.name)
            .is_some_and(|x| Arc::ptr_eq(x, r))
    }

    async fn verify(&self, hash: &str, given: &str) -> Result<bool, RoomError> {
        let permit = tokio::time::timeout(
            self.inner.config.limits.password_wait,
            self.inner.password_checks.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            m::refusal("password_busy");
            RoomError::Busy
        })?
        .map_err(|_| RoomError::Busy)?;
        let (hash, given) = (hash.to_owned(), given.to_owned());
        tokio::task::spawn_blocking(move || {
            let ok = room::verify_password(&hash, &given);
            drop(permit);
            ok
        })
        .await
        .map_err(|_| RoomError::Busy)
    }

    /// `conn` leaves `room`; returns whether it was a member.
    pub fn leave(&self, conn: &Arc<Conn>, room: &str) -> bool {
        let r = {
            let mut st = conn.state();
            let Some(i) = st.rooms.iter().position(|r| &*r.name == room) else {
                return false;
            };
            st.rooms.swap_remove(i)
        };
        self.remove_member(&r, conn);
        true
    }

    fn remove_member(&self, r: &Arc<Room>, conn: &Arc<Conn>) {
        let empty = {
            let mut members = r.members_mut();
            if members.remove(&conn.id).is_none() {
                return;
            }
            members.is_empty()
        };
        if r.presence_events {
            self.presence(r, conn, false);
        }
        if empty && !r.persistent {
            let mut reg = lock(&self.inner.registry);
            if reg.rooms.get(&r.name).is_some_and(|x| Arc::ptr_eq(x, r)) && r.members().is_empty() {
                reg.rooms.remove(&r.name);
                metrics::gauge!(m::ROOMS).set(reg.rooms.len() as f64);
            }
        }
    }

    /// Tells the other members of `r` that `subject` joined or left.
    fn presence(&self, r: &Arc<Room>, subject: &Conn, joined: bool) {
        let out = Outgoing::new(Event::Presence(Arc::new(PresenceEvent {
            room: r.name.clone(),
            device: subject.device.clone(),
            joined,
        })));
        for c in r.members().values() {
            if c.id != subject.id {
                self.deliver(c, &out);
            }
        }
    }

    /// Publishes `body` to `room` from the server. See [`publish_as`](Self::publish_as).
    ///
    /// # Errors
    ///
    /// As [`publish_as`](Self::publish_as).
    pub fn publish(&self, room: &str, body: Body) -> Result<PublishReport, RoomError> {
        self.publish_as(None, room, body)
    }

    /// Publishes `body` to every member of `room` (the publisher too, if it is a member):
    /// encoded once per door format, queued on each member without waiting — a member that
    /// does not read is handled by its overflow policy and never slows the others. Room
    /// publishes are not queued for offline users.
    ///
    /// # Errors
    ///
    /// No such room, too large.
    pub fn publish_as(
        &self,
        from: Option<&Device>,
        room: &str,
        body: Body,
    ) -> Result<PublishReport, RoomError> {
        let limit = self.inner.config.limits.max_body_bytes;
        if body.len() > limit {
            return Err(RoomError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        let r = lock(&self.inner.registry)
            .rooms
            .get(room)
            .cloned()
            .ok_or(RoomError::NoSuchRoom)?;
        Ok(self.fan_out(&r, from, body))
    }

    fn fan_out(&self, r: &Arc<Room>, from: Option<&Device>, body: Body) -> PublishReport {
        let started = std::time::Instant::now();
        let members = r.members();
        // The sequence number is taken under the members lock, so publishes reach every
        // member in sequence order.
        let seq = r.next_seq();
        let out = Outgoing::new(Event::Room(Arc::new(RoomMessage {
            room: r.name.clone(),
            epoch: r.epoch,
            seq,
            from: from.cloned(),
            sent_at: unix_millis(),
            body,
        })));
        let mut report = PublishReport {
            seq,
            delivered: 0,
            dropped: 0,
            filtered: 0,
        };
        let sample = members.len().div_ceil(64).max(1);
        for (i, c) in members.values().enumerate() {
            match self.deliver(c, &out) {
                Delivered::Sent => report.delivered += 1,
                Delivered::Filtered => report.filtered += 1,
                Delivered::Dropped | Delivered::Closed => report.dropped += 1,
            }
            if i % sample == 0 {
                metrics::histogram!(m::SEND_QUEUE_DEPTH).record(c.link.queue_len() as f64);
            }
        }
        drop(members);
        metrics::counter!(m::FANOUT_DELIVERIES).increment(report.delivered as u64);
        metrics::histogram!(m::FANOUT_SECONDS).record(started.elapsed().as_secs_f64());
        report
    }

    /// A publish from a member: its rate, the before-receive hook, membership, then
    /// [`publish_as`](Self::publish_as).
    ///
    /// # Errors
    ///
    /// Rate limited, refused, not a member, too large.
    pub fn publish_from(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        body: Body,
    ) -> Result<PublishReport, RoomError> {
        self.permit(conn).map_err(|()| RoomError::RateLimited)?;
        metrics::counter!(m::MESSAGES_IN, "kind" => "publish").increment(1);
        let (room, body) = match self.inner.app.before_receive(
            &conn.device,
            Incoming::Publish {
                room: room.to_owned(),
                body,
            },
        ) {
            Ok(Incoming::Publish { room, body }) => (room, body),
            Ok(_) => return Err(RoomError::Refused("hook changed the message kind".into())),
            Err(why) => return Err(RoomError::Refused(why)),
        };
        let limit = self.inner.config.limits.max_body_bytes;
        if body.len() > limit {
            return Err(RoomError::TooLarge {
                len: body.len(),
                limit,
            });
        }
        let r = conn
            .state()
            .rooms
            .iter()
            .find(|r| *r.name == *room)
            .cloned()
            .ok_or(RoomError::NotMember)?;
        Ok(self.fan_out(&r, Some(&conn.device), body))
    }

    /// Sends `body` to every connection of the hub, as a room message of the reserved room
    /// `*` (epoch 0, its own sequence).
    pub fn broadcast(&self, body: Body) -> PublishReport {
        let conns: Vec<Arc<Conn>> = lock(&self.inner.registry).conns.values().cloned().collect();
        let seq = self.inner.broadcast_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let out = Outgoing::new(Event::Room(Arc::new(RoomMessage {
            room: "*".into(),
            epoch: 0,
            seq,
            from: None,
            sent_at: unix_millis(),
            body,
        })));
        let mut report = PublishReport {
            seq,
            delivered: 0,
            dropped: 0,
            filtered: 0,
        };
        for c in &conns {
            match self.deliver(c, &out) {
                Delivered::Sent => report.delivered += 1,
                Delivered::Filtered => report.filtered += 1,
                Delivered::Dropped | Delivered::Closed => report.dropped += 1,
            }
        }
        metrics::counter!(m::FANOUT_DELIVERIES).increment(report.delivered as u64);
        report
    }

    /// A room as it is now.
    pub fn room(&self, name: &str) -> Option<RoomInfo> {
        lock(&self.inner.registry).rooms.get(name).map(|r| r.info())
    }

    /// Every room's name, sorted (at most `max_page`).
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = lock(&self.inner.registry).rooms.values().cloned().collect();
        let mut v: Vec<RoomInfo> = rooms.iter().map(|r| r.info()).collect();
        v.sort_by(|a, b| a.room.cmp(&b.room));
        v.truncate(self.inner.config.limits.max_page.max(1));
        v
    }

    /// A page of `room`'s members after connection `after`, at most `limit` (cut to
    /// [`HubLimits::max_page`](crate::HubLimits::max_page)).
    ///
    /// # Errors
    ///
    /// No such room.
    pub fn members(
        &self,
        room: &str,
        after: Option<ConnId>,
        limit: usize,
    ) -> Result<MembersPage, RoomError> {
        let r = lock(&self.inner.registry)
            .rooms
            .get(room)
            .cloned()
            .ok_or(RoomError::NoSuchRoom)?;
        let limit = limit.clamp(1, self.inner.config.limits.max_page.max(1));
        let members = r.members();
        let range = match after {
            Some(a) => members.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => members.range(..),
        };
        let mut out: Vec<Member> = Vec::with_capacity(limit.min(members.len()));
        let mut more = false;
        for (id, c) in range {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(Member {
                conn: *id,
                user: c.device.user.to_string(),
                device: c.device.device.to_string(),
            });
        }
        let next = if more {
            out.last().map(|m| m.conn)
        } else {
            None
        };
        Ok(MembersPage { members: out, next })
    }

    // ---- presence and control -------------------------------------------------------------

    /// The devices `user` is connected with, oldest first (from the directory: every node of a
    /// cluster).
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn devices(&self, user: &str) -> Result<Vec<Presence>, crate::DirectoryError> {
        Ok(self
            .inner
            .directory
            .connections(user)
            .await?
            .into_iter()
            .map(|s| Presence {
                device: s.device.to_string(),
                node: s.conn.node.0,
                conn: s.conn.conn,
            })
            .collect())
    }

    /// Whether `user` has a connection anywhere.
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn is_online(&self, user: &str) -> Result<bool, crate::DirectoryError> {
        Ok(!self.inner.directory.connections(user).await?.is_empty())
    }

    /// How many users are online.
    ///
    /// # Errors
    ///
    /// The directory failed.
    pub async fn online_users(&self) -> Result<u64, crate::DirectoryError> {
        self.inner.directory.online_users().await
    }

    /// How many connections this node has signed on.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.registry).conns.len()
    }

    /// The connections of `user` on this node, oldest first.
    pub fn connections_of(&self, user: &str) -> Vec<Arc<Conn>> {
        self.user_conns(user)
    }

    /// Closes the connections of `user` (only those of `device`, when given) with close code
    /// 4004 and `reason`. Returns how many.
    pub fn kick(&self, user: &str, device: Option<&str>, reason: &str) -> usize {
        let conns = self.user_conns(user);
        let mut n = 0;
        for c in conns {
            if device.is_some_and(|d| *c.device.device != *d) {
                continue;
            }
            c.close(Close::new(CloseCode::KICKED, reason));
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
        self.inner.stopping.store(true, Ordering::Release);
        let conns: Vec<Arc<Conn>> = lock(&self.inner.registry).conns.values().cloned().collect();
        for c in &conns {
            c.close(Close::new(CloseCode::GOING_AWAY, "server shutting down"));
        }
        let until = Instant::now() + deadline;
        loop {
            let notified = self.inner.detached.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.connection_count();
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break;
            }
        }
        self.inner.stop.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout_at(until, self.inner.tasks.wait()).await;
        self.connection_count()
    }
}

/// A room's epoch: unix microseconds at creation (a new room of the same name gets a later
/// one).
fn new_epoch() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_micros();
    let prev = LAST
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
            Some(now.max(l + 1))
        })
        .unwrap_or_else(|v| v);
    now.max(prev + 1)
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish()
    }
}

/// Closes connections whose token expired (plus grace) and did not refresh.
async fn expiry_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(hub) = inner.upgrade() else { return };
        let notify = hub.expiry_changed.clone();
        let changed = notify.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = Instant::now();
        let mut due = Vec::new();
        let next = {
            let mut set = lock(&hub.expiry);
            while let Some(&(at, id)) = set.first() {
                if at > now {
                    break;
                }
                set.pop_first();
                due.push((at, id));
            }
            set.first().map(|&(at, _)| at)
        };
        for (at, id) in due {
            let conn = lock(&hub.registry).conns.get(&id).cloned();
            if let Some(c) = conn {
                let expired = c.state().expires_at.is_some_and(|e| e <= at);
                if expired {
                    tracing::debug!(conn = id.0, user = %c.device.user, "token expired");
                    c.close(Close::new(CloseCode::TOKEN_EXPIRED, "token expired"));
                }
            }
        }
        let stop = hub.stop.clone();
        drop(hub);
        let sleep = async {
            match next {
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

/// Sweeps expired queue entries and idle rate-limiter state.
async fn sweep_loop(inner: std::sync::Weak<Inner>) {
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
        if let Some(l) = &hub.ip_limiter {
            l.prune();
        }
    }
}
