//! One shard of rooms: members, the per-room epoch and sequence, passwords (as Argon2id hashes;
//! the driver verifies them off the async threads), presence. `M` is the driver's handle of a
//! member; the core never looks inside it.
//!
//! A publish takes the room's next sequence number and the members at that instant (a
//! snapshot, shared until membership changes), so each publish reaches exactly the members it
//! was sequenced for, in sequence order when the driver hands snapshots out in the order it
//! got them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::identity::Device;
use super::message::{Body, PresenceEvent, RoomMessage};
use super::recovery::{Catchup, Keep, KeepHistory, Missed, NotRecovered, Since};
use super::signon::ConnId;

/// How a room is made.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomOptions {
    /// A password members must give to join (stored as an Argon2id hash, never in clear).
    pub password: Option<String>,
    /// Whether members get `presence` events when others join or leave.
    pub presence_events: bool,
    /// A smaller member limit than the hub's (`None`: the hub's).
    pub max_members: Option<usize>,
    /// What the room keeps of its publications (the hub's default unless said).
    pub history: KeepHistory,
}

impl RoomOptions {
    /// A room with no password, no presence events, the hub's member limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a password.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Turns presence events on or off.
    pub fn with_presence_events(mut self, on: bool) -> Self {
        self.presence_events = on;
        self
    }

    /// Sets a member limit for this room.
    pub fn with_max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max);
        self
    }

    /// Sets what the room keeps of its publications.
    pub fn with_history(mut self, history: KeepHistory) -> Self {
        self.history = history;
        self
    }
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomOptions")
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("presence_events", &self.presence_events)
            .field("max_members", &self.max_members)
            .field("history", &self.history)
            .finish()
    }
}

mod changes;
pub use changes::RoomChanges;

/// What a room looks like now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RoomInfo {
    /// Its name.
    pub room: String,
    /// Its epoch (new each time a room of this name is created).
    pub epoch: u64,
    /// The sequence number of its last publish (0: none yet).
    pub seq: u64,
    /// Members now.
    pub members: usize,
    /// Whether it has a password.
    pub protected: bool,
}

/// A room member as the core keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Member<M> {
    pub(crate) device: Device,
    pub(crate) handle: M,
}

/// The members a publish or presence event goes to, shared between publishes.
pub(crate) type Snapshot<M> = Arc<[(ConnId, M)]>;

#[derive(Debug)]
pub(super) struct Room<M> {
    pub(super) name: Arc<str>,
    pub(super) epoch: u64,
    pub(super) seq: u64,
    password: Option<Arc<str>>,
    pub(super) presence_events: bool,
    max_members: usize,
    /// Made by `create`: kept when empty. Rooms made by a join go with their last member.
    persistent: bool,
    members: BTreeMap<ConnId, Member<M>>,
    pub(super) snapshot: Option<Snapshot<M>>,
    /// What it keeps of its publications (`None`: no history).
    pub(super) keep: Option<Keep>,
    /// The oldest `seq` its history held after the last append (for the trims metric).
    pub(super) held_from: u64,
    /// Members catching up (`core::recovery`): not in the snapshot; publications are held.
    pub(super) catchups: BTreeMap<ConnId, Catchup<Arc<RoomMessage>>>,
}

/// A room to make: its epoch and last sequence number (from its history, when it has one),
/// its member limit and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewRoom {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    /// The oldest `seq` its history holds (`seq + 1`: none).
    pub(crate) held_from: u64,
    pub(crate) max_members: usize,
    pub(crate) keep: Option<Keep>,
}

impl<M: Clone> Room<M> {
    fn info(&self) -> RoomInfo {
        RoomInfo {
            room: self.name.to_string(),
            epoch: self.epoch,
            seq: self.seq,
            members: self.members.len(),
            protected: self.password.is_some(),
        }
    }

    pub(super) fn snapshot(&mut self) -> Snapshot<M> {
        let catchups = &self.catchups;
        self.snapshot
            .get_or_insert_with(|| {
                self.members
                    .iter()
                    .filter(|(id, _)| !catchups.contains_key(id))
                    .map(|(id, m)| (*id, m.handle.clone()))
                    .collect()
            })
            .clone()
    }
}

impl<M> Room<M> {
    pub(super) fn new(
        name: &str,
        new: NewRoom,
        password: Option<Arc<str>>,
        presence_events: bool,
        persistent: bool,
    ) -> Self {
        Room {
            name: name.into(),
            epoch: new.epoch,
            seq: new.seq,
            held_from: new.held_from,
            password,
            presence_events,
            max_members: new.max_members,
            persistent,
            members: BTreeMap::new(),
            snapshot: None,
            keep: new.keep,
            catchups: BTreeMap::new(),
        }
    }
}

/// The bounds of a join's recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recover {
    /// Publications a join recovers at most.
    pub(crate) max_missed: u64,
    /// Publications held while it catches up.
    pub(crate) max_held: usize,
}

/// A member was added.
#[derive(Debug)]
pub(crate) struct Added<M> {
    pub(crate) info: RoomInfo,
    /// Presence for the others.
    pub(crate) presence: Option<PresenceJob<M>>,
    /// For a join with `since`: what it missed (read it from the history; an empty range:
    /// nothing), or why it does not recover.
    pub(crate) recovery: Option<Result<Missed, NotRecovered>>,
}

/// What a join must do about the room's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Door {
    /// The room's epoch (so that a join that verified a password joins that very room).
    pub(crate) epoch: u64,
    /// Its password hash, if it has one.
    pub(crate) password: Option<Arc<str>>,
    /// A room made by a join; the driver counts it.
    pub(crate) created: bool,
    /// It has as many members as it may.
    pub(crate) full: bool,
}

/// Why a room operation of the core failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomRefusal {
    NoSuchRoom,
    Exists,
    Full,
}

/// A presence event and who gets it.
#[derive(Debug)]
pub(crate) struct PresenceJob<M> {
    pub(crate) event: Arc<PresenceEvent>,
    pub(crate) to: Snapshot<M>,
}

/// A member left.
#[derive(Debug)]
pub(crate) struct Left<M> {
    pub(crate) presence: Option<PresenceJob<M>>,
    /// The room went with its last member.
    pub(crate) removed: bool,
}

/// A shard of rooms.
#[derive(Debug)]
pub(crate) struct Rooms<M> {
    pub(super) rooms: std::collections::HashMap<Arc<str>, Room<M>>,
}

impl<M: Clone> Default for Rooms<M> {
    fn default() -> Self {
        Rooms {
            rooms: std::collections::HashMap::new(),
        }
    }
}

impl<M: Clone> Rooms<M> {
    /// Creates a persistent room (its password already hashed).
    pub(crate) fn create(
        &mut self,
        name: &str,
        new: NewRoom,
        password: Option<Arc<str>>,
        presence_events: bool,
    ) -> Result<RoomInfo, RoomRefusal> {
        if self.rooms.contains_key(name) {
            return Err(RoomRefusal::Exists);
        }
        let r = Room::new(name, new, password, presence_events, true);
        let info = r.info();
        self.rooms.insert(r.name.clone(), r);
        Ok(info)
    }

    /// The first half of a join: the room's door. With `create` (a new room's epoch, when rooms
    /// are made by joining), an unknown room is made: open, removed with its last member.
    pub(crate) fn door(
        &mut self,
        name: &str,
        create: Option<NewRoom>,
        presence_events: bool,
    ) -> Result<Door, RoomRefusal> {
        if let Some(r) = self.rooms.get(name) {
            return Ok(Door {
                epoch: r.epoch,
                password: r.password.clone(),
                created: false,
                full: r.members.len() >= r.max_members,
            });
        }
        let Some(new) = create else {
            return Err(RoomRefusal::NoSuchRoom);
        };
        let r = Room::new(name, new, None, presence_events, false);
        self.rooms.insert(r.name.clone(), r);
        Ok(Door {
            epoch: new.epoch,
            password: None,
            created: true,
            full: new.max_members == 0,
        })
    }

    /// The second half of a join: `conn` becomes a member of the room of `epoch` (a room of the
    /// same name made since is another room: [`RoomRefusal::NoSuchRoom`], try again).
    pub(crate) fn add_member(
        &mut self,
        name: &str,
        epoch: u64,
        conn: ConnId,
        member: Member<M>,
        since: Option<(Since, Recover)>,
    ) -> Result<Added<M>, RoomRefusal> {
        let Some(r) = self.rooms.get_mut(name) else {
            return Err(RoomRefusal::NoSuchRoom);
        };
        if r.epoch != epoch {
            return Err(RoomRefusal::NoSuchRoom);
        }
        if r.members.contains_key(&conn) {
            // Already a member: it has been getting the room's publications.
            let recovery = since.map(|_| {
                Ok(Missed {
                    after: r.seq,
                    up_to: r.seq,
                })
            });
            return Ok(Added {
                info: r.info(),
                presence: None,
                recovery,
            });
        }
        if r.members.len() >= r.max_members {
            return Err(RoomRefusal::Full);
        }
        let device = member.device.clone();
        // Presence goes to the others: those there before this join.
        let presence = r.presence_events.then(|| PresenceJob {
            event: Arc::new(PresenceEvent {
                room: r.name.clone(),
                device,
                joined: true,
            }),
            to: r.snapshot(),
        });
        r.members.insert(conn, member);
        r.snapshot = None;
        let recovery = since.map(|(since, limits)| {
            let decided =
                super::recovery::decide(r.keep.is_some(), r.epoch, r.seq, since, limits.max_missed);
            if let Ok(missed) = decided
                && missed.len() > 0
            {
                r.catchups
                    .insert(conn, Catchup::new(missed.up_to, limits.max_held));
            }
            decided
        });
        Ok(Added {
            info: r.info(),
            presence,
            recovery,
        })
    }

    /// A room made by a join that nobody could enter (the join failed after `door`): removed
    /// again if it is still empty. Whether it went.
    pub(crate) fn forget_if_empty(&mut self, name: &str, epoch: u64) -> bool {
        let gone = self
            .rooms
            .get(name)
            .is_some_and(|r| r.epoch == epoch && !r.persistent && r.members.is_empty());
        if gone {
            self.rooms.remove(name);
        }
        gone
    }

    /// `conn` leaves `name`. `None` when it was not a member.
    pub(crate) fn remove_member(&mut self, name: &str, conn: ConnId) -> Option<Left<M>> {
        let r = self.rooms.get_mut(name)?;
        let m = r.members.remove(&conn)?;
        r.catchups.remove(&conn);
        r.snapshot = None;
        let presence = r.presence_events.then(|| PresenceJob {
            event: Arc::new(PresenceEvent {
                room: r.name.clone(),
                device: m.device,
                joined: false,
            }),
            to: r.snapshot(),
        });
        let removed = !r.persistent && r.members.is_empty();
        if removed {
            self.rooms.remove(name);
        }
        Some(Left { presence, removed })
    }

    /// What `name` keeps of its publications (`None`: no history, [`publish`](Self::publish)
    /// sequences at once; otherwise the driver appends to the history first, then
    /// [`sequence_kept`](Self::sequence_kept)).
    pub(crate) fn keep_of(&self, name: &str) -> Result<Option<Keep>, RoomRefusal> {
        self.rooms
            .get(name)
            .map(|r| r.keep)
            .ok_or(RoomRefusal::NoSuchRoom)
    }

    /// Sequences a publish: the message (with the room's epoch and its next sequence number)
    /// and the members it goes to.
    pub(crate) fn publish(
        &mut self,
        name: &str,
        from: Option<Device>,
        body: Body,
        sent_at: u64,
    ) -> Result<(Arc<RoomMessage>, Snapshot<M>), RoomRefusal> {
        let r = self.rooms.get_mut(name).ok_or(RoomRefusal::NoSuchRoom)?;
        r.seq += 1;
        let msg = Arc::new(RoomMessage {
            room: r.name.clone(),
            epoch: r.epoch,
            seq: r.seq,
            from,
            sent_at,
            body,
        });
        Ok((msg, r.snapshot()))
    }

    /// Removes a room; its members (who get no event).
    pub(crate) fn remove(&mut self, name: &str) -> Option<Vec<(ConnId, M)>> {
        let r = self.rooms.remove(name)?;
        Some(
            r.members
                .into_iter()
                .map(|(id, m)| (id, m.handle))
                .collect(),
        )
    }

    /// A room as it is now.
    pub(crate) fn info(&self, name: &str) -> Option<RoomInfo> {
        self.rooms.get(name).map(Room::info)
    }

    /// Every room.
    pub(crate) fn infos(&self) -> impl Iterator<Item = RoomInfo> + '_ {
        self.rooms.values().map(Room::info)
    }

    /// Up to `limit` members of `name` after connection `after`, and whether there are more.
    pub(crate) fn members(
        &self,
        name: &str,
        after: Option<ConnId>,
        limit: usize,
    ) -> Option<(Vec<(ConnId, Device)>, bool)> {
        let r = self.rooms.get(name)?;
        let range = match after {
            Some(a) => r
                .members
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => r.members.range(..),
        };
        let mut out = Vec::with_capacity(limit.min(r.members.len()));
        for (id, m) in range {
            if out.len() == limit {
                return Some((out, true));
            }
            out.push((*id, m.device.clone()));
        }
        Some((out, false))
    }

    /// How many rooms this shard has.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests;
