//! Changing a room's settings after it was made (the server API's `change_room`).

use std::sync::Arc;

use super::{RoomInfo, RoomRefusal, Rooms};

/// What to change in a room ([`Hub::change_room`](crate::Hub::change_room)); fields left
/// `None` stay as they are.
///
/// ```
/// use chinwag::hub::RoomChanges;
///
/// // Set a password and turn presence events on; keep the member limit.
/// let changes = RoomChanges::new().with_password(Some("s3cret")).with_presence_events(true);
/// # let _ = changes;
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomChanges {
    /// `Some(Some(p))`: the password becomes `p`; `Some(None)`: the room becomes open.
    pub password: Option<Option<String>>,
    /// Turns presence events on or off.
    pub presence_events: Option<bool>,
    /// A new member limit (cut to the hub's); members over it stay, new joins are refused.
    pub max_members: Option<usize>,
}

impl RoomChanges {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (`Some`) or removes (`None`) the password.
    pub fn with_password(mut self, password: Option<impl Into<String>>) -> Self {
        self.password = Some(password.map(Into::into));
        self
    }

    /// Turns presence events on or off.
    pub fn with_presence_events(mut self, on: bool) -> Self {
        self.presence_events = Some(on);
        self
    }

    /// Sets the member limit.
    pub fn with_max_members(mut self, max: usize) -> Self {
        self.max_members = Some(max);
        self
    }
}

impl std::fmt::Debug for RoomChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomChanges")
            .field(
                "password",
                &self.password.as_ref().map(|p| p.as_ref().map(|_| "<set>")),
            )
            .field("presence_events", &self.presence_events)
            .field("max_members", &self.max_members)
            .finish()
    }
}

impl<M: Clone> Rooms<M> {
    /// Changes a room: `password` is the new hash (`Some(None)`: none). A changed room is
    /// kept when empty, like one created.
    pub(crate) fn change(
        &mut self,
        name: &str,
        password: Option<Option<Arc<str>>>,
        presence_events: Option<bool>,
        max_members: Option<usize>,
    ) -> Result<RoomInfo, RoomRefusal> {
        let r = self.rooms.get_mut(name).ok_or(RoomRefusal::NoSuchRoom)?;
        if let Some(p) = password {
            r.password = p;
        }
        if let Some(on) = presence_events {
            r.presence_events = on;
        }
        if let Some(max) = max_members {
            r.max_members = max;
        }
        r.persistent = true;
        Ok(r.info())
    }
}

#[cfg(test)]
mod tests {
    use super::super::NewRoom;
    use super::*;

    fn new_room() -> NewRoom {
        NewRoom {
            epoch: 1,
            seq: 0,
            held_from: 1,
            max_members: 10,
            keep: None,
        }
    }

    #[test]
    fn a_change_sets_what_it_names_and_keeps_the_rest() {
        let mut rooms: Rooms<u8> = Rooms::default();
        rooms.create("r", new_room(), None, false).unwrap();
        let info = rooms
            .change("r", Some(Some(Arc::from("hash"))), None, Some(1))
            .unwrap();
        assert!(info.protected);
        let door = rooms.door("r", None, false).unwrap();
        assert_eq!(door.password.as_deref(), Some("hash"));
        assert!(!door.full);
        let info = rooms.change("r", Some(None), Some(true), None).unwrap();
        assert!(!info.protected);
        assert!(rooms.rooms["r"].presence_events);
        assert_eq!(rooms.rooms["r"].max_members, 1);
        assert_eq!(
            rooms.change("nope", None, None, None),
            Err(RoomRefusal::NoSuchRoom)
        );
    }
}
