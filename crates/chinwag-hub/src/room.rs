//! Rooms: members, the per-room sequence and epoch, optional passwords (Argon2id).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::conn::Conn;
use crate::policy::ConnId;

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
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomOptions")
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("presence_events", &self.presence_events)
            .field("max_members", &self.max_members)
            .finish()
    }
}

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

pub(crate) struct Room {
    pub(crate) name: Arc<str>,
    pub(crate) epoch: u64,
    seq: AtomicU64,
    pub(crate) password_hash: Option<String>,
    pub(crate) presence_events: bool,
    pub(crate) max_members: usize,
    /// Made by `create_room`: kept when empty. Rooms made by a join go when their last member
    /// leaves.
    pub(crate) persistent: bool,
    members: RwLock<BTreeMap<ConnId, Arc<Conn>>>,
}

impl Room {
    pub(crate) fn new(
        name: Arc<str>,
        epoch: u64,
        password_hash: Option<String>,
        presence_events: bool,
        max_members: usize,
        persistent: bool,
    ) -> Self {
        Room {
            name,
            epoch,
            seq: AtomicU64::new(0),
            password_hash,
            presence_events,
            max_members,
            persistent,
            members: RwLock::new(BTreeMap::new()),
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn members(&self) -> RwLockReadGuard<'_, BTreeMap<ConnId, Arc<Conn>>> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn members_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<ConnId, Arc<Conn>>> {
        self.members.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn info(&self) -> RoomInfo {
        RoomInfo {
            room: self.name.to_string(),
            epoch: self.epoch,
            seq: self.seq.load(Ordering::Acquire),
            members: self.members().len(),
            protected: self.password_hash.is_some(),
        }
    }
}

/// Hashes a room password with Argon2id (default parameters: 19 MiB, 2 passes). CPU and memory
/// heavy by design: call it off the async threads.
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `password` against a stored hash, in constant time. Off the async threads.
pub(crate) fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `name` may name a room: 1..=max bytes, no control characters, not `*` (the name
/// broadcasts to everyone carry).
pub(crate) fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name != "*" && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cres"));
        assert!(!verify_password("not a hash", "s3cret"));
    }

    #[test]
    fn room_names() {
        assert!(valid_name("lobby", 128));
        assert!(valid_name("é", 2));
        assert!(!valid_name("", 128));
        assert!(!valid_name("*", 128));
        assert!(!valid_name("a\nb", 128));
        assert!(!valid_name(&"x".repeat(129), 128));
        assert!(valid_name(&"x".repeat(128), 128));
    }
}
