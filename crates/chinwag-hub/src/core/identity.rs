//! Who is on a connection: a [`Device`] of a user.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Extra facts about a device (claims of its token that the authenticator mapped, e.g. a
/// display name or a platform). Shared, never copied per message.
pub type Meta = BTreeMap<String, serde_json::Value>;

/// The device id used when a token or a login names none.
pub const DEFAULT_DEVICE: &str = "default";

/// One device of one user: what every hub connection belongs to. Cheap to clone (shared
/// strings).
///
/// ```
/// use chinwag::hub::Device;
/// let d = Device::new("alice", "phone");
/// assert_eq!(&*d.user, "alice");
/// assert_eq!(d.to_string(), "alice/phone");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// The user id (a JWT's `sub`).
    pub user: Arc<str>,
    /// The device id, unique among the user's devices ([`DEFAULT_DEVICE`] when none is named).
    pub device: Arc<str>,
    /// Extra claims.
    pub meta: Arc<Meta>,
}

impl Device {
    /// A device with no extra facts.
    pub fn new(user: impl Into<Arc<str>>, device: impl Into<Arc<str>>) -> Self {
        Device {
            user: user.into(),
            device: device.into(),
            meta: Arc::new(Meta::new()),
        }
    }

    /// Replaces the extra facts.
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = Arc::new(meta);
        self
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({}/{})", self.user, self.device)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.device)
    }
}
