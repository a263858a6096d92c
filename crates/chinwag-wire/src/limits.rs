//! Limits checked before any memory is reserved.

/// Limits the decoder enforces on what a peer may send. Every size read from the wire is checked
/// against these *before* memory is reserved for it.
///
/// | limit | default | why |
/// |---|---|---|
/// | [`max_payload`](Self::max_payload) | 16 MiB | the wire allows 4 GiB - 1; gotalk's Go reader allocates whatever a header claims. 16 MiB matches the default WebSocket message limit, fits any JSON RPC body and file chunks (larger data belongs in streams of chunks), and keeps the worst case of 1 000 peers each mid-way through a maximal message far below this machine's memory. |
/// | [`max_name_len`](Self::max_name_len) | 1 024 bytes | operation and notification names are short identifiers; the wire allows 4 095. |
///
/// The codec does not track streams, so it has no limit on stream parts in flight; the RPC
/// layer bounds concurrent stream requests per connection.
///
/// ```
/// let limits = chinwag::wire::WireLimits::default().with_max_payload(1 << 20);
/// assert_eq!(limits.max_payload, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireLimits {
    /// Largest payload accepted in any one message, in bytes. Default 16 MiB.
    pub max_payload: u32,
    /// Longest operation or notification name accepted, in bytes (at most 4 095, the wire's
    /// maximum). Default 1 024.
    pub max_name_len: u16,
}

impl WireLimits {
    /// Default [`max_payload`](Self::max_payload): 16 MiB.
    pub const DEFAULT_MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
    /// Default [`max_name_len`](Self::max_name_len): 1 024 bytes.
    pub const DEFAULT_MAX_NAME_LEN: u16 = 1024;

    /// Sets [`max_payload`](Self::max_payload).
    pub fn with_max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The longest whole message (header and payload) these limits let through on a byte
    /// stream: what a decode buffer must be able to hold.
    ///
    /// ```
    /// let l = chinwag::wire::WireLimits::default();
    /// assert!(l.max_message_len() > l.max_payload as usize + l.max_name_len as usize);
    /// ```
    pub fn max_message_len(&self) -> usize {
        // The longest header: a request, `r` + id(4) + name-len(3) + name + payload-size(8),
        // or a retry result, `e` + id(4) + wait(8) + payload-size(8).
        let header = (1 + 4 + 3 + self.max_name_len as usize + 8).max(21);
        header + self.max_payload as usize
    }

    /// Sets [`max_name_len`](Self::max_name_len), capped at the wire's 4 095.
    pub fn with_max_name_len(mut self, bytes: u16) -> Self {
        self.max_name_len = bytes.min(crate::Name::MAX_LEN as u16);
        self
    }
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_payload: Self::DEFAULT_MAX_PAYLOAD,
            max_name_len: Self::DEFAULT_MAX_NAME_LEN,
        }
    }
}
