//! Rooms: create and remove, join (with the password checks: one per connection at a time,
//! rates per connection and per address, a strike-out, a bounded number of Argon2 runs),
//! leave, publish (sequenced in the room's shard, fanned out off the publisher's task),
//! broadcast.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::conn::Conn;
use super::fanout::{Job, Outgoing, Work};
use super::history::{CatchingUp, Recovery};
use super::{Hub, Inner};
use crate::core::ids;
use crate::core::message::Event;
use crate::core::recovery::{KeepHistory, Since};
use crate::core::registry::RoomRecord;
use crate::core::rooms::{Member, PresenceJob, Recover, RoomInfo, RoomOptions, RoomRefusal};
use crate::core::signon::ConnRef;
use crate::error::RoomError;
use crate::hooks::{JoinDecision, first_poll_under};
use crate::metrics as m;

impl Hub {
    /// Creates a room (kept when empty, unlike rooms made by a join). With a password, it is
    /// hashed (Argon2id) off the async threads.
    ///
    /// # Errors
    ///
    /// Bad name, bad password, exists, too many rooms.
    pub async fn create_room(&self, name: &str, opts: RoomOptions) -> Result<RoomInfo, RoomError> {
        let inner = &self.inner;
        let limits = &inner.config.limits;
        ids::check_room(name, limits.max_room_name_bytes).map_err(RoomError::BadName)?;
        let hash = match &opts.password {
            Some(p) if p.len() > limits.max_password_bytes => return Err(RoomError::BadPassword),
            Some(p) => {
                let p = p.clone();
                let h = tokio::task::spawn_blocking(move || super::passwords::hash_password(&p))
                    .await
                    .map_err(|_| RoomError::Busy)?
                    .map_err(|_| RoomError::BadPassword)?;
                Some(Arc::from(h))
            }
            None => None,
        };
        if !inner.reserve_room() {
            m::refusal("rooms");
            return Err(RoomError::TooManyRoomsOnServer);
        }
        let max_members = opts
            .max_members
            .unwrap_or(limits.max_members_per_room)
            .min(limits.max_members_per_room);
        let new = match inner
            .new_room(name, inner.keep_for(opts.history), max_members)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                inner.room_count.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        let clustered = inner.clustered();
        if clustered {
            // One room of this name for the whole cluster, made alike on every node.
            let record = RoomRecord::new(
                hash.as_deref().map(str::to_owned),
                max_members,
                opts.presence_events,
                new.keep,
            );
            let registered = inner.directory.register_room(name, &record).await;
            let refusal = match registered {
                Ok(true) => None,
                Ok(false) => Some(RoomError::Exists),
                Err(e) => {
                    tracing::warn!(room = name, error = %e, "the cluster's room registry is unavailable");
                    Some(RoomError::Busy)
                }
            };
            if let Some(e) = refusal {
                inner.room_count.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        }
        let r =
            inner
                .rooms(inner.room_shard(name))
                .core
                .create(name, new, hash, opts.presence_events);
        match r {
            Ok(info) => {
                inner.rooms_gauge();
                Ok(info)
            }
            Err(_) => {
                inner.room_count.fetch_sub(1, Ordering::AcqRel);
                if clustered {
                    inner.directory.unregister_room(name).await;
                }
                Err(RoomError::Exists)
            }
        }
    }

    /// Removes a room: its members leave it (they get no event); later publishes fail. Returns
    /// whether it existed.
    pub fn remove_room(&self, name: &str) -> bool {
        let inner = &self.inner;
        let members = {
            let mut sh = inner.rooms(inner.room_shard(name));
            sh.fanout.remove(name);
            sh.core.remove(name)
        };
        let Some(members) = members else {
            return false;
        };
        if inner.clustered() {
            let directory = inner.directory.clone();
            let name = name.to_owned();
            inner
                .tasks
                .spawn(async move { directory.unregister_room(&name).await });
        }
        if let Some(history) = inner.history.clone() {
            // A room made again under this name starts a new epoch.
            let name = name.to_owned();
            inner.tasks.spawn(async move {
                if let Err(e) = history.remove(&name).await {
                    tracing::warn!(room = name, error = %e, "room history not removed");
                }
            });
        }
        inner.room_count.fetch_sub(1, Ordering::AcqRel);
        inner.rooms_gauge();
        for (id, c) in members {
            inner.users(c.0.shard).core.remove_room(id, name);
            inner.room_member_left(name, &c);
        }
        inner.changed();
        true
    }

    /// `conn` joins `room` (created on the way when [`HubConfig::auto_create_rooms`](crate::HubConfig::auto_create_rooms)
    /// and it does not exist), giving `password` if the room has one.
    ///
    /// # Errors
    ///
    /// [`RoomError`]: bad name, no such room, wrong password, full, too many rooms, busy (a
    /// password check of this connection is already running, or no check slot came in time),
    /// guessing too fast.
    pub async fn join(
        &self,
        conn: &Conn,
        room: &str,
        password: Option<&str>,
    ) -> Result<RoomInfo, RoomError> {
        Ok(self.join_checked(conn, room, password, None, None).await?.0)
    }

    /// A [`join`](Self::join) of a member that saw the room up to `seq` of `epoch` (from the
    /// `epoch` and `seq` of the last publication it got): when the room's history still holds
    /// everything after it, the member is written exactly what it missed, then what was
    /// published meanwhile, then the live publications, and the [`Recovery`] says
    /// `recovered`; otherwise it says why not, and the member gets the publications after the
    /// returned [`RoomInfo::seq`]. See `docs/chat-protocol.md` ("Recovery").
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub async fn join_since(
        &self,
        conn: &Conn,
        room: &str,
        password: Option<&str>,
        epoch: u64,
        seq: u64,
    ) -> Result<(RoomInfo, Recovery), RoomError> {
        let since = Since { epoch, seq };
        let (info, recovery) = self
            .join_checked(conn, room, password, None, Some(since))
            .await?;
        Ok((info, recovery.unwrap_or(Recovery::already())))
    }

    /// A join; `verified`: the epoch of the room whose password was checked already;
    /// `since`: where the member says it was (a recovery). Logged at info when it succeeds.
    pub(crate) async fn join_checked(
        &self,
        conn: &Conn,
        room: &str,
        password: Option<&str>,
        verified: Option<u64>,
        since: Option<Since>,
    ) -> Result<(RoomInfo, Option<Recovery>), RoomError> {
        // The application's join hook, in the connection's lane (held until the join has
        // started, as a join without a hook would have: so requests keep their order, and a
        // join that waits, e.g. for a password check, holds up no other request).
        let lane = conn.0.lane.lock().await;
        let (room, verified) = match self.inner.app.before_join(conn, room).await {
            Ok(JoinDecision::Allow) => (std::borrow::Cow::Borrowed(room), verified),
            // Another room: a password checked beforehand was the asked room's.
            Ok(JoinDecision::Room(other)) => (std::borrow::Cow::Owned(other), None),
            Err(why) => return Err(RoomError::Refused(why)),
        };
        let room = &*room;
        let r = first_poll_under(
            lane,
            self.join_unlogged(conn, room, password, verified, since),
        )
        .await;
        if r.is_ok() {
            let d = conn.device();
            tracing::info!(user = %d.user, device = %d.device, door = conn.door(), conn = conn.id().0, room, "joined");
        }
        r
    }

    async fn join_unlogged(
        &self,
        conn: &Conn,
        room: &str,
        password: Option<&str>,
        verified: Option<u64>,
        since: Option<Since>,
    ) -> Result<(RoomInfo, Option<Recovery>), RoomError> {
        let inner = &self.inner;
        let limits = &inner.config.limits;
        ids::check_room(room, limits.max_room_name_bytes).map_err(RoomError::BadName)?;
        if password.is_some_and(|p| p.len() > limits.max_password_bytes) {
            return Err(RoomError::BadPassword);
        }
        {
            let sh = inner.users(conn.0.shard);
            let Some(rooms) = sh.core.rooms_of(conn.id()) else {
                return Err(RoomError::NoSuchRoom);
            };
            if rooms.iter().any(|r| &**r == room) {
                drop(sh);
                // Already a member: it has been getting the room's publications.
                let info = self.room(room).ok_or(RoomError::NoSuchRoom)?;
                return Ok((info, since.map(|_| Recovery::already())));
            }
            if rooms.len() >= limits.max_rooms_per_connection {
                m::refusal("rooms_per_connection");
                return Err(RoomError::TooManyRooms);
            }
        }
        let shard = inner.room_shard(room);
        // A cluster lists the member on every node, and follows the room's publications there
        // before its state is read here (both taken back if the join fails).
        let shared = inner.config.shared_history && inner.history.is_some();
        let clustered = inner.clustered();
        if clustered {
            let me = ConnRef {
                node: inner.config.node,
                conn: conn.id(),
            };
            inner
                .directory
                .room_member(room, me, conn.device(), true)
                .await;
        }
        let mut interest = Interest {
            inner,
            room,
            conn,
            armed: clustered,
        };
        // A room made with options on another node is made alike here (never without its
        // password: an unreadable registry refuses the join).
        let record = if inner.clustered() && inner.rooms(shard).core.info(room).is_none() {
            match inner.directory.room_record(room).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(room, error = %e, "the cluster's room registry is unavailable");
                    return Err(RoomError::Busy);
                }
            }
        } else {
            None
        };
        loop {
            let reserved =
                (inner.config.auto_create_rooms || record.is_some()) && inner.reserve_room();
            let create = if reserved {
                let keep = inner.keep_for(KeepHistory::HubDefault);
                let max = limits.max_members_per_room;
                match inner.new_room(room, keep, max).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        inner.room_count.fetch_sub(1, Ordering::AcqRel);
                        return Err(e);
                    }
                }
            } else {
                None
            };
            let adopted = match (create, &record) {
                (Some(new), Some(rec)) => inner.rooms(shard).core.adopt(room, new, rec),
                _ => false,
            };
            let door = inner
                .rooms(shard)
                .core
                .door(room, create, inner.config.presence_on_join);
            let door = match door {
                Ok(mut d) => {
                    d.created |= adopted;
                    if reserved && !d.created {
                        inner.room_count.fetch_sub(1, Ordering::AcqRel);
                    } else if d.created {
                        inner.rooms_gauge();
                    }
                    d
                }
                Err(_) if inner.config.auto_create_rooms && !reserved => {
                    m::refusal("rooms");
                    return Err(RoomError::TooManyRoomsOnServer);
                }
                Err(_) => return Err(RoomError::NoSuchRoom),
            };
            if let Some(hash) = door.password
                && verified != Some(door.epoch)
            {
                let Some(given) = password else {
                    m::refusal("room_password");
                    return Err(RoomError::WrongPassword);
                };
                self.check_password(conn, hash, given).await?;
            }
            let member = Member {
                device: conn.device().clone(),
                handle: conn.clone(),
            };
            let h = &inner.config.history;
            let recover = Recover {
                max_missed: h.max_recover,
                max_held: h.max_held.max(1),
            };
            let added = inner.rooms(shard).core.add_member(
                room,
                door.epoch,
                conn.id(),
                member,
                since.map(|s| (s, recover)),
            );
            let (info, presence, recovery) = match added {
                Ok(a) => (a.info, a.presence, a.recovery),
                // The room was removed and made again since: look again.
                Err(RoomRefusal::NoSuchRoom) => continue,
                Err(_) => {
                    if door.created && inner.rooms(shard).core.forget_if_empty(room, door.epoch) {
                        inner.room_count.fetch_sub(1, Ordering::AcqRel);
                        inner.rooms_gauge();
                    }
                    m::refusal("room_full");
                    return Err(RoomError::Full);
                }
            };
            if !inner
                .users(conn.0.shard)
                .core
                .add_room(conn.id(), Arc::from(room))
            {
                // The connection left meanwhile: take the membership back.
                interest.armed = false;
                inner.leave_room(conn, room);
                return Err(RoomError::NoSuchRoom);
            }
            if let Some(p) = presence {
                inner.presence(shard, p, Some(conn.id()));
                inner.presence_to_others(room, conn.device(), true);
            }
            interest.armed = false;
            if shared && info.members == 1 {
                // The first member here: what other hubs published while nobody here followed.
                inner.queue_remote(room, 0, 0, None);
            }
            inner.changed();
            let recovery = match recovery {
                None => None,
                Some(Err(why)) => Some(Recovery::not(why)),
                Some(Ok(missed)) if missed.len() == 0 => Some(Recovery::done(0)),
                Some(Ok(missed)) => {
                    let name: Arc<str> = Arc::from(room);
                    let guard = CatchingUp {
                        inner,
                        conn,
                        room: &name,
                        done: false,
                    };
                    let r = inner.catch_up(conn, &name, info.epoch, missed).await;
                    guard.finish();
                    Some(r)
                }
            };
            let mut info = info;
            if clustered && let Some(n) = self.room_connections(room).await {
                // The room's members on every node.
                info.members = usize::try_from(n).unwrap_or(usize::MAX);
            }
            return Ok((info, recovery));
        }
    }

    /// `conn` leaves `room`; returns whether it was a member.
    pub fn leave(&self, conn: &Conn, room: &str) -> bool {
        let inner = &self.inner;
        if !inner.users(conn.0.shard).core.remove_room(conn.id(), room) {
            return false;
        }
        inner.leave_room(conn, room);
        inner.changed();
        true
    }
}

/// A join's interest in a shared room, taken back if the join does not end with a member.
struct Interest<'a> {
    inner: &'a Arc<Inner>,
    room: &'a str,
    conn: &'a Conn,
    armed: bool,
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.room_member_left(self.room, self.conn);
        }
    }
}

impl Inner {
    /// This hub is a node of a cluster (its queue or room history is shared): rooms made with
    /// options are recorded in its directory.
    pub(crate) fn clustered(&self) -> bool {
        self.config.shared_queue || self.config.shared_history
    }

    /// `conn` is no longer a member of `room` here: the directory may stop following the
    /// room's publications on other hubs (shared history).
    pub(crate) fn room_member_left(&self, room: &str, conn: &Conn) {
        if !self.clustered() {
            return;
        }
        let directory = self.directory.clone();
        let room = room.to_owned();
        let me = ConnRef {
            node: self.config.node,
            conn: conn.id(),
        };
        let device = conn.device().clone();
        self.tasks.spawn(async move {
            directory.room_member(&room, me, &device, false).await;
        });
    }

    /// Takes a place under `max_rooms`.
    fn reserve_room(&self) -> bool {
        let max = self.config.limits.max_rooms;
        self.room_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn rooms_gauge(&self) {
        metrics::gauge!(m::ROOMS).set(self.room_count.load(Ordering::Acquire) as f64);
    }

    /// `conn` is no longer a member of `room` (it left, or it is gone): presence to the others,
    /// and a room made by a join goes with its last member.
    pub(crate) fn leave_room(self: &Arc<Self>, conn: &Conn, room: &str) {
        let shard = self.room_shard(room);
        let left = {
            let mut sh = self.rooms(shard);
            let left = sh.core.remove_member(room, conn.id());
            if left.as_ref().is_some_and(|l| l.removed) {
                sh.fanout.remove(room);
            }
            left
        };
        let Some(left) = left else { return };
        self.room_member_left(room, conn);
        if left.removed {
            self.room_count.fetch_sub(1, Ordering::AcqRel);
            self.rooms_gauge();
        }
        if let Some(p) = left.presence {
            self.presence(shard, p, None);
            self.presence_to_others(room, conn.device(), false);
        }
    }

    /// A member here joined or left a room with presence events: the other nodes of a cluster
    /// tell their members.
    fn presence_to_others(&self, room: &str, device: &crate::Device, joined: bool) {
        if !self.clustered() {
            return;
        }
        let (directory, node) = (self.directory.clone(), self.config.node);
        let (room, device) = (room.to_owned(), device.clone());
        self.tasks.spawn(async move {
            directory.room_presence(&room, node, &device, joined).await;
        });
    }

    /// Queues a presence event on its room's fan-out queue (in order with the publishes).
    pub(crate) fn presence(
        self: &Arc<Self>,
        shard: usize,
        p: PresenceJob<Conn>,
        skip: Option<crate::ConnId>,
    ) {
        if p.to.iter().all(|(id, _)| Some(*id) == skip) {
            return;
        }
        let max = self.config.limits.max_pending_publishes;
        let (f, start) = {
            let mut sh = self.rooms(shard);
            let f = sh.fanout.entry(p.event.room.clone()).or_default().clone();
            if !f.has_room(max) {
                m::dropped("overflow");
                return;
            }
            let job = Job {
                out: Outgoing::new(Event::Presence(p.event)),
                to: p.to,
                skip,
                reply: None,
            };
            let start = f.push(Work::Send(job));
            (f, start)
        };
        if start {
            self.drain(f);
        }
    }
}
