//! PLACEHOLDER until the id grammar lands (a helper writes it): user ids, device ids, room
//! names.

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    reason: &'static str,
}

impl std::fmt::Display for IdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for IdError {}

fn check(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError { reason: "length" });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError { reason: "control" });
    }
    Ok(())
}

/// Checks a user id.
///
/// # Errors
///
/// Which rule it breaks.
pub fn check_user(s: &str) -> Result<(), IdError> {
    check(s, 1024)
}

/// Checks a device id.
///
/// # Errors
///
/// Which rule it breaks.
pub fn check_device(s: &str) -> Result<(), IdError> {
    check(s, 256)
}

/// Checks a room name of at most `max` bytes.
///
/// # Errors
///
/// Which rule it breaks.
pub fn check_room(s: &str, max: usize) -> Result<(), IdError> {
    if s == "*" {
        return Err(IdError { reason: "reserved" });
    }
    check(s, max)
}
