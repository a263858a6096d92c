//! Room passwords: the checks a join goes through (one check in flight per connection, a guess
//! rate per connection and per address, a bounded number of Argon2id verifications at once of
//! which one address holds at most half, the strike-out), and the check the raw room door makes *before* it signs a connection on, so
//! that a refused join cannot replace the user's other connections.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::conn::Conn;
use super::{Hub, Inner, lock};
use crate::close::{Close, CloseCode};
use crate::core::guesses::{AddressChecks, Ended, GuessRefusal, Verdict};
use crate::core::ids;
use crate::error::RoomError;
use crate::metrics as m;

/// A join checked before its connection signs on ([`Hub::check_join`]): give it to
/// [`Hub::join_with`].
#[derive(Debug, Clone)]
pub struct JoinPass {
    pub(crate) room: String,
    pub(crate) password: Option<String>,
    /// The epoch of the room whose password was verified.
    pub(crate) verified: Option<u64>,
}

impl JoinPass {
    /// The room.
    pub fn room(&self) -> &str {
        &self.room
    }
}

impl Hub {
    /// Checks a join before its connection is signed on — the raw room door's way, where the
    /// room is the connection's whole purpose: a refused join must not have replaced the
    /// user's other connections under the sign-on policy. Checks the room's name, that it
    /// exists (or may be made by joining), that it has room, and its password (the guess rate
    /// of `ip`, a slot of the hub's Argon2 checks). The per-connection rules (one check in
    /// flight, the connection's guess rate and strikes) apply to [`Hub::join`] only.
    ///
    /// # Errors
    ///
    /// As [`Hub::join`].
    pub async fn check_join(
        &self,
        room: &str,
        password: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<JoinPass, RoomError> {
        let inner = &self.inner;
        let limits = &inner.config.limits;
        ids::check_room(room, limits.max_room_name_bytes).map_err(RoomError::BadName)?;
        if password.is_some_and(|p| p.len() > limits.max_password_bytes) {
            return Err(RoomError::BadPassword);
        }
        let door = inner
            .rooms(inner.room_shard(room))
            .core
            .door(room, None, false);
        let mut pass = JoinPass {
            room: room.to_owned(),
            password: password.map(str::to_owned),
            verified: None,
        };
        let door = match door {
            Ok(d) => d,
            Err(_) if !inner.config.auto_create_rooms => return Err(RoomError::NoSuchRoom),
            Err(_)
                if inner.room_count.load(std::sync::atomic::Ordering::Acquire)
                    >= limits.max_rooms =>
            {
                m::refusal("rooms");
                return Err(RoomError::TooManyRoomsOnServer);
            }
            Err(_) => return Ok(pass),
        };
        if door.full {
            m::refusal("room_full");
            return Err(RoomError::Full);
        }
        let Some(hash) = door.password else {
            return Ok(pass);
        };
        let Some(given) = password else {
            m::refusal("room_password");
            return Err(RoomError::WrongPassword);
        };
        if !inner.verify_guess(ip, hash, given).await? {
            m::refusal("room_password");
            return Err(RoomError::WrongPassword);
        }
        pass.verified = Some(door.epoch);
        Ok(pass)
    }

    /// Joins the room of a [`JoinPass`]: as [`Hub::join`], without checking the password again
    /// when the room is still the one whose password was checked.
    ///
    /// # Errors
    ///
    /// As [`Hub::join`].
    pub async fn join_with(
        &self,
        conn: &Conn,
        pass: JoinPass,
    ) -> Result<crate::RoomInfo, RoomError> {
        self.join_checked(
            conn,
            &pass.room,
            pass.password.as_deref(),
            pass.verified,
            None,
        )
        .await
        .map(|(info, _)| info)
    }

    /// One password guess of `conn`: one at a time per connection, its rates, a slot of the
    /// hub's Argon2 checks, the strike-out, and the close of a client that keeps guessing into
    /// refusals.
    pub(crate) async fn check_password(
        &self,
        conn: &Conn,
        hash: Arc<str>,
        given: &str,
    ) -> Result<(), RoomError> {
        let inner = &self.inner;
        let limits = inner.guess_limits;
        let now = inner.now();
        let begun = inner
            .users(conn.0.shard)
            .core
            .guesses(conn.id())
            .map(|g| g.begin(limits, now));
        match begun {
            None => return Err(RoomError::NoSuchRoom),
            Some(Err(refused)) => {
                let e = match refused.why {
                    GuessRefusal::InFlight => {
                        m::refusal("password_in_flight");
                        RoomError::Busy
                    }
                    GuessRefusal::TooFast => {
                        m::refusal("password_guess_rate");
                        RoomError::GuessingTooFast
                    }
                };
                if refused.close {
                    self.close_refused_guesser(conn);
                }
                return Err(e);
            }
            Some(Ok(())) => {}
        }
        // From here the guess is in flight; it ends on every path, also when the join's
        // future is dropped half-way (the connection went away): never in flight for good.
        let mut guess = InFlight {
            inner,
            conn,
            done: false,
        };
        let (ended, result) = match inner.verify_guess(conn.ip(), hash, given).await {
            Ok(right) => (Ended::Checked(right), Ok(())),
            Err(GuessError::Refused(e)) => (Ended::Refused, Err(e)),
            Err(GuessError::NotChecked(e)) => (Ended::NotChecked, Err(e)),
        };
        match guess.end(ended) {
            Some(Verdict::Right) => result,
            Some(Verdict::Wrong) => {
                m::refusal("room_password");
                Err(RoomError::WrongPassword)
            }
            Some(Verdict::StrikeOut) => {
                m::refusal("room_password");
                m::refusal("too_many_guesses");
                self.close(
                    conn,
                    Close::new(CloseCode::TOO_MANY_GUESSES, "too many wrong room passwords"),
                );
                Err(RoomError::WrongPassword)
            }
            Some(Verdict::Refused) | None => result.and(Err(RoomError::WrongPassword)),
            Some(Verdict::RefusedClose) => {
                self.close_refused_guesser(conn);
                result.and(Err(RoomError::WrongPassword))
            }
        }
    }

    /// Closes a connection that kept guessing into refusals (4008, as for messages).
    fn close_refused_guesser(&self, conn: &Conn) {
        m::refusal("password_refusals");
        self.close(
            conn,
            Close::new(CloseCode::RATE_LIMITED, "room password refused repeatedly"),
        );
    }
}

/// Why a guess was not checked.
enum GuessError {
    /// For its client's sake: its address's guess rate or share of the check slots.
    Refused(RoomError),
    /// Through no fault of its client: no slot in time, the check failed.
    NotChecked(RoomError),
}

impl From<GuessError> for RoomError {
    fn from(e: GuessError) -> Self {
        match e {
            GuessError::Refused(e) | GuessError::NotChecked(e) => e,
        }
    }
}

impl Inner {
    /// One guess of `ip`'s: its address's share of the Argon2 slots (refused as busy, before
    /// it counts against the address's rate, when the address holds its share: one address
    /// never holds every slot), its address's guess rate, then the check.
    async fn verify_guess(
        &self,
        ip: Option<IpAddr>,
        hash: Arc<str>,
        given: &str,
    ) -> Result<bool, GuessError> {
        let Some(ip) = ip else {
            return self
                .verify(hash, given, None)
                .await
                .map_err(GuessError::NotChecked);
        };
        if !lock(&self.address_checks).begin(&ip) {
            m::refusal("password_address_share");
            return Err(GuessError::Refused(RoomError::Busy));
        }
        // Ended on every path: when this future is dropped while it waits for a slot, or when
        // the check ends (also a check whose join was dropped: it runs on, and holds its share).
        let share = AddressShare {
            checks: self.address_checks.clone(),
            ip,
        };
        if lock(&self.guess_rates).take(&ip, self.now()).is_err() {
            m::refusal("password_guess_rate");
            return Err(GuessError::Refused(RoomError::GuessingTooFast));
        }
        self.verify(hash, given, Some(share))
            .await
            .map_err(GuessError::NotChecked)
    }

    /// One Argon2id verification in a slot of the hub's (waiting at most `password_wait`), off
    /// the async threads. The slot and the address's `share` are held until the check ends,
    /// even if this future is dropped first.
    async fn verify(
        &self,
        hash: Arc<str>,
        given: &str,
        share: Option<AddressShare>,
    ) -> Result<bool, RoomError> {
        let permit = tokio::time::timeout(
            self.config.limits.password_wait,
            self.password_checks.clone().acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = permit else {
            m::refusal("password_busy");
            return Err(RoomError::Busy);
        };
        let given = given.to_owned();
        tokio::task::spawn_blocking(move || {
            let ok = verify_password(&hash, &given);
            drop((permit, share));
            ok
        })
        .await
        .map_err(|_| RoomError::Busy)
    }
}

/// An address's check in flight, ended when dropped.
struct AddressShare {
    checks: Arc<Mutex<AddressChecks<IpAddr>>>,
    ip: IpAddr,
}

impl Drop for AddressShare {
    fn drop(&mut self) {
        lock(&self.checks).end(&self.ip);
    }
}

/// A password guess in flight: ended when it is verified, or (as not verified, no strike) when
/// dropped before.
struct InFlight<'a> {
    inner: &'a Inner,
    conn: &'a Conn,
    done: bool,
}

impl InFlight<'_> {
    /// How the guess ended: what it means (`None`: the connection is gone).
    fn end(&mut self, ended: Ended) -> Option<Verdict> {
        self.done = true;
        let limits = self.inner.guess_limits;
        let mut users = self.inner.users(self.conn.0.shard);
        users
            .core
            .guesses(self.conn.id())
            .map(|g| g.end(limits, ended))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(Ended::NotChecked);
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
fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
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
}
