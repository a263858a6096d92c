//! Rooms of a cluster seen from one hub: a room made with options on another hub
//! ([`RoomRecord`]) is made here with the same options (password, member limit, presence
//! events, history) for this hub's members, and removed with its last member here; another
//! hub's members joining and leaving are presence events for this hub's members.

use std::sync::Arc;

use super::identity::Device;
use super::message::PresenceEvent;
use super::recovery::Keep;
use super::rooms::{NewRoom, PresenceJob, Room, Rooms};

/// A room made with options ([`Hub::create_room`](crate::Hub::create_room)) as a cluster
/// directory keeps it ([`Directory::register_room`](crate::Directory::register_room)), so that
/// every node makes it alike.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomRecord {
    /// Its password's Argon2id hash (PHC string), never the password.
    pub password_hash: Option<String>,
    /// Its member limit (per node).
    pub max_members: usize,
    /// Whether members get presence events.
    pub presence_events: bool,
    /// What it keeps of its publications.
    pub keep: Option<Keep>,
}

impl RoomRecord {
    /// A record (for directories that read one back).
    pub fn new(
        password_hash: Option<String>,
        max_members: usize,
        presence_events: bool,
        keep: Option<Keep>,
    ) -> Self {
        RoomRecord {
            password_hash,
            max_members,
            presence_events,
            keep,
        }
    }
}

impl<M: Clone> Rooms<M> {
    /// Makes `name` as `record` says, unless a room of that name is here: removed with its
    /// last member, like a room made by a join. Whether it was made.
    pub(crate) fn adopt(&mut self, name: &str, new: NewRoom, record: &RoomRecord) -> bool {
        if self.rooms.contains_key(name) {
            return false;
        }
        let new = NewRoom {
            max_members: record.max_members.min(new.max_members),
            keep: record.keep.or(new.keep),
            ..new
        };
        let password = record.password_hash.as_deref().map(Arc::from);
        let r = Room::new(name, new, password, record.presence_events, false);
        self.rooms.insert(r.name.clone(), r);
        true
    }

    /// `device`, a member on another hub, joined or left `name`: the presence event for this
    /// hub's members, when the room is here and has presence events.
    pub(crate) fn presence_elsewhere(
        &mut self,
        name: &str,
        device: Device,
        joined: bool,
    ) -> Option<PresenceJob<M>> {
        let r = self.rooms.get_mut(name)?;
        if !r.presence_events {
            return None;
        }
        let event = Arc::new(PresenceEvent {
            room: r.name.clone(),
            device,
            joined,
        });
        Some(PresenceJob {
            event,
            to: r.snapshot(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_room_is_made_with_its_options_once() {
        let mut rooms = Rooms::<u32>::default();
        let new = NewRoom {
            epoch: 3,
            seq: 0,
            held_from: 1,
            max_members: 100,
            keep: None,
        };
        let rec = RoomRecord::new(
            Some("$argon2id$x".into()),
            5,
            true,
            Some(Keep::new(10, None)),
        );
        assert!(rooms.adopt("r", new, &rec));
        assert!(!rooms.adopt("r", new, &rec), "once");
        let door = rooms.door("r", None, false).expect("made");
        assert_eq!(door.password.as_deref(), Some("$argon2id$x"));
        assert!(!door.created);
        let info = rooms.info("r").expect("info");
        assert!(info.protected);
        assert_eq!(rooms.keep_of("r"), Ok(Some(Keep::new(10, None))));
    }
}
