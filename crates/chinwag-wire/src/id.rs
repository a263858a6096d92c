//! Request-id generators in the styles of the two reference implementations.

use crate::RequestId;

/// The Go library's request ids: a `u32` counter, written as 4 little-endian bytes
/// (`"\x00\x00\x00\x00"`, `"\x01\x00\x00\x00"`, ...). Wraps around after 2³² ids.
///
/// ```
/// let mut ids = chinwag::wire::GoIdGen::default();
/// assert_eq!(ids.next_id().0, [0, 0, 0, 0]);
/// assert_eq!(ids.next_id().0, [1, 0, 0, 0]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct GoIdGen {
    next: u32,
}

impl GoIdGen {
    /// The next id.
    pub fn next_id(&mut self) -> RequestId {
        let id = RequestId(self.next.to_le_bytes());
        self.next = self.next.wrapping_add(1);
        id
    }
}

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `gotalk.js`'s request ids: 4 base-36 ASCII characters (`"0000"`, `"0001"`, ... `"zzzz"`,
/// then wrapping), and for stream requests `"!"` plus 3 base-36 characters from a separate
/// counter (`"!000"` ... `"!zzz"`), so stream ids never collide with single-request ids.
///
/// ```
/// let mut ids = chinwag::wire::JsIdGen::default();
/// assert_eq!(ids.next_id().0, *b"0000");
/// assert_eq!(ids.next_id().0, *b"0001");
/// assert_eq!(ids.next_stream_id().0, *b"!000");
/// ```
#[derive(Debug, Clone, Default)]
pub struct JsIdGen {
    next: u32,
    next_stream: u32,
}

impl JsIdGen {
    const SINGLE_SPACE: u32 = 36 * 36 * 36 * 36;
    const STREAM_SPACE: u32 = 36 * 36 * 36;

    /// The next id for a single request.
    pub fn next_id(&mut self) -> RequestId {
        let n = self.next;
        self.next = (self.next + 1) % Self::SINGLE_SPACE;
        let mut b = [0u8; 4];
        base36(n, &mut b);
        RequestId(b)
    }

    /// The next id for a stream request.
    pub fn next_stream_id(&mut self) -> RequestId {
        let n = self.next_stream;
        self.next_stream = (self.next_stream + 1) % Self::STREAM_SPACE;
        let mut b = [b'!', 0, 0, 0];
        base36(n, &mut b[1..]);
        RequestId(b)
    }
}

fn base36(mut n: u32, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = BASE36[(n % 36) as usize];
        n /= 36;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_ids_wrap() {
        let mut g = JsIdGen {
            next: JsIdGen::SINGLE_SPACE - 1,
            next_stream: JsIdGen::STREAM_SPACE - 1,
        };
        assert_eq!(g.next_id().0, *b"zzzz");
        assert_eq!(g.next_id().0, *b"0000");
        assert_eq!(g.next_stream_id().0, *b"!zzz");
        assert_eq!(g.next_stream_id().0, *b"!000");
    }

    #[test]
    fn go_ids_are_little_endian_and_wrap() {
        let mut g = GoIdGen { next: 0x0102_0304 };
        assert_eq!(g.next_id().0, [4, 3, 2, 1]);
        let mut g = GoIdGen { next: u32::MAX };
        assert_eq!(g.next_id().0, [0xff; 4]);
        assert_eq!(g.next_id().0, [0; 4]);
    }
}
