//! [`Reassembler`]: whole messages out of data frames, for engines whose library hands over
//! single frames (fastwebsockets, yawc).

use bytes::{Bytes, BytesMut};
use chinwag_transport::Frame;

use crate::ReadError;

/// Turns the data frames of a connection (text, binary, continuation) into whole messages,
/// with the message-size limit and the UTF-8 check of text, for an engine whose library reads
/// single frames. The engine feeds each data frame it reads ([`data`](Self::data) for a text or
/// binary frame, [`continuation`](Self::continuation) for a continuation frame) and handles
/// control frames itself; a frame that completes a message returns it.
///
/// Errors carry the close code for the peer (see [`ReadError`]):
/// * 1009: a message over the limit (the first frame's payload, or the fragments so far with
///   the new one), checked as each frame arrives, before it is appended;
/// * 1007: invalid UTF-8 in a text message, found as soon as a fragment holds an invalid
///   sequence (a character cut at a fragment's end may be completed by the next one; at the
///   final fragment it may not);
/// * 1002: a text or binary frame while a fragmented message is unfinished, or a continuation
///   frame without one.
///
/// ```
/// use chinwag::transport::Frame;
/// use chinwag::ws::Reassembler;
///
/// let mut r = Reassembler::new(16);
/// // "hé" split inside the two-byte "é".
/// assert!(r.data(true, false, "h\u{e9}".as_bytes()[..2].to_vec().into()).unwrap().is_none());
/// let done = r.continuation(true, &"h\u{e9}".as_bytes()[2..]).unwrap();
/// assert_eq!(done, Some(Frame::Text("h\u{e9}".into())));
/// // One byte over the limit: 1009.
/// let err = r.data(false, true, vec![0u8; 17].into()).unwrap_err();
/// assert_eq!(err.close.unwrap().0, 1009);
/// ```
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    whole_text_checked: bool,
    partial: Option<Partial>,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    buf: BytesMut,
    /// Bytes of `buf` known to be valid UTF-8 (text only).
    checked: usize,
}

impl Partial {
    /// Validates the UTF-8 received so far, failing fast on an invalid sequence; an incomplete
    /// character at the end is allowed until the final fragment.
    fn check_utf8(&mut self, fin: bool) -> Result<(), ReadError> {
        match std::str::from_utf8(&self.buf[self.checked..]) {
            Ok(_) => {
                self.checked = self.buf.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(ReadError::invalid_utf8()),
        }
    }

    fn finish(self) -> Frame {
        let data = self.buf.freeze();
        if self.text {
            Frame::Text(data)
        } else {
            Frame::Binary(data)
        }
    }
}

impl Reassembler {
    /// A reassembler for messages of at most `max_message` bytes
    /// ([`WsConfig::max_message_size`](crate::WsConfig::max_message_size)).
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            max_message,
            whole_text_checked: false,
            partial: None,
        }
    }

    /// The engine's library already checks the UTF-8 of an unfragmented text frame
    /// (fastwebsockets does): [`data`](Self::data) does not check it again. Fragmented text is
    /// checked here either way.
    #[must_use]
    pub fn whole_text_checked(mut self) -> Self {
        self.whole_text_checked = true;
        self
    }

    /// A text (`text`) or binary frame, the first of a message; `fin` when it is also the last.
    /// Returns the message when `fin`.
    pub fn data(
        &mut self,
        text: bool,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<Frame>, ReadError> {
        if self.partial.is_some() {
            return Err(ReadError::protocol(
                "a new message started before the fragmented one finished",
            ));
        }
        self.check_size(payload.len())?;
        if fin {
            if !text {
                return Ok(Some(Frame::Binary(payload)));
            }
            if !self.whole_text_checked && std::str::from_utf8(&payload).is_err() {
                return Err(ReadError::invalid_utf8());
            }
            return Ok(Some(Frame::Text(payload)));
        }
        let mut p = Partial {
            text,
            buf: BytesMut::from(payload),
            checked: 0,
        };
        if text {
            p.check_utf8(false)?;
        }
        self.partial = Some(p);
        Ok(None)
    }

    /// A continuation frame; `fin` when it is the message's last. Returns the message when
    /// `fin`.
    pub fn continuation(&mut self, fin: bool, payload: &[u8]) -> Result<Option<Frame>, ReadError> {
        let Some(p) = self.partial.as_mut() else {
            return Err(ReadError::protocol(
                "a continuation frame without a message to continue",
            ));
        };
        let total = p.buf.len() + payload.len();
        if total > self.max_message {
            return Err(ReadError::too_large(
                "message",
                total as u64,
                self.max_message as u64,
            ));
        }
        p.buf.extend_from_slice(payload);
        if p.text {
            p.check_utf8(fin)?;
        }
        if !fin {
            return Ok(None);
        }
        Ok(self.partial.take().map(Partial::finish))
    }

    fn check_size(&self, size: usize) -> Result<(), ReadError> {
        if size > self.max_message {
            return Err(ReadError::too_large(
                "message",
                size as u64,
                self.max_message as u64,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: ReadError) -> u16 {
        e.close.expect("a close code").0
    }

    #[test]
    fn the_limit_at_its_boundary() {
        let mut r = Reassembler::new(10);
        let whole = r.data(false, true, vec![1u8; 10].into()).unwrap();
        assert_eq!(whole, Some(Frame::Binary(vec![1u8; 10].into())));
        assert_eq!(
            code(r.data(false, true, vec![1u8; 11].into()).unwrap_err()),
            1009
        );
        // Fragments: exactly the limit passes, one byte more is refused.
        let mut r = Reassembler::new(10);
        assert_eq!(r.data(false, false, vec![1u8; 4].into()).unwrap(), None);
        assert_eq!(r.continuation(false, &[2u8; 4]).unwrap(), None);
        let done = r.continuation(true, &[3u8; 2]).unwrap().unwrap();
        let mut want = vec![1u8; 4];
        want.extend_from_slice(&[2u8; 4]);
        want.extend_from_slice(&[3u8; 2]);
        assert_eq!(done, Frame::Binary(want.into()));
        assert_eq!(r.data(true, false, "12345".into()).unwrap(), None);
        let err = r.continuation(true, b"123456").unwrap_err();
        assert!(matches!(
            err.error,
            chinwag_transport::TransportError::TooLarge {
                size: 11,
                limit: 10,
                ..
            }
        ));
        assert_eq!(code(err), 1009);
    }

    #[test]
    fn utf8_is_checked_across_fragments() {
        let s = "añb€".as_bytes();
        // Cut inside every character: each prefix is accepted until the final fragment.
        for cut in 1..s.len() {
            let mut r = Reassembler::new(64);
            assert_eq!(r.data(true, false, s[..cut].to_vec().into()).unwrap(), None);
            let done = r.continuation(true, &s[cut..]).unwrap();
            assert_eq!(done, Some(Frame::Text("añb€".into())), "cut at {cut}");
        }
        // An invalid sequence fails at once, before the final fragment.
        let mut r = Reassembler::new(64);
        assert_eq!(
            code(r.data(true, false, vec![b'a', 0xff].into()).unwrap_err()),
            1007
        );
        let mut r = Reassembler::new(64);
        r.data(true, false, "ok".into()).unwrap();
        assert_eq!(
            code(r.continuation(false, &[0xc3, 0x28]).unwrap_err()),
            1007
        );
        // A character still cut at the final fragment is invalid.
        let mut r = Reassembler::new(64);
        r.data(true, false, "ok".into()).unwrap();
        assert_eq!(code(r.continuation(true, &[0xe2, 0x82]).unwrap_err()), 1007);
        // Binary is never checked.
        let mut r = Reassembler::new(64);
        r.data(false, false, vec![0xff].into()).unwrap();
        assert!(r.continuation(true, &[0xfe]).unwrap().is_some());
    }

    #[test]
    fn whole_text_is_checked_unless_the_engine_did() {
        let bad = Bytes::from_static(&[b'a', 0xff]);
        let mut r = Reassembler::new(64);
        assert_eq!(code(r.data(true, true, bad.clone()).unwrap_err()), 1007);
        let mut r = Reassembler::new(64).whole_text_checked();
        assert!(r.data(true, true, bad.clone()).unwrap().is_some());
        // Fragmented text is checked either way.
        assert_eq!(code(r.data(true, false, bad).unwrap_err()), 1007);
    }

    #[test]
    fn frames_out_of_order_are_protocol_errors() {
        let mut r = Reassembler::new(64);
        assert_eq!(code(r.continuation(true, b"x").unwrap_err()), 1002);
        r.data(false, false, "a".into()).unwrap();
        assert_eq!(code(r.data(false, true, "b".into()).unwrap_err()), 1002);
        // A finished message leaves room for the next one.
        let mut r = Reassembler::new(64);
        r.data(false, false, "a".into()).unwrap();
        r.continuation(true, b"b").unwrap().unwrap();
        assert!(r.data(false, true, "c".into()).unwrap().is_some());
    }
}
