//! Fair shares of the offline queue: what each sender holds in other users' queues.
//!
//! The queue bounds each recipient and the whole store; nothing there stops one account from
//! filling the whole store by writing to made-up recipients, after which every other user's
//! send to an offline friend fails until those messages expire. So every send with a sender is
//! charged to that sender until its entry leaves the queue (acknowledged, or its TTL passed):
//!
//! - a sender holds at most `per_sender_bytes` and `per_sender_messages`;
//! - the last `reserve_bytes` of the store (its bound is `total_bytes`) are kept for *light*
//!   senders, who hold at most `light_sender_bytes`: once the store is that full, heavier
//!   senders are refused while ordinary users can still reach offline friends.
//!
//! Sends from the server itself (no sender) count towards the total but have no share. The
//! count covers what this hub queued since it started (entries from before a restart are not
//! known here; the queue's own bounds still hold for them), and an entry the queue dropped on
//! its own (its `DropOldest` policy) is counted until its TTL.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::EntryId;
use super::time::Time;

/// The shares' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShareLimits {
    pub(crate) per_sender_bytes: u64,
    pub(crate) per_sender_messages: u64,
    /// The store's bound (the queue's overall byte limit).
    pub(crate) total_bytes: u64,
    /// The part of it kept for light senders.
    pub(crate) reserve_bytes: u64,
    /// Who counts as light.
    pub(crate) light_sender_bytes: u64,
}

/// Why a send was refused its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShareRefusal {
    /// The sender holds its most bytes.
    SenderBytes,
    /// The sender holds its most messages.
    SenderMessages,
    /// The store is in its reserve, and the sender is not light.
    Reserve,
}

/// A share taken for a send whose push is under way.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(u64);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) bytes: u64,
    pub(crate) messages: u64,
}

#[derive(Debug)]
struct Held {
    entry: EntryId,
    sender: Option<Arc<str>>,
    bytes: u64,
    expires: Time,
}

/// What senders hold in the offline queue.
#[derive(Debug)]
pub(crate) struct Shares {
    limits: ShareLimits,
    senders: HashMap<Arc<str>, Usage>,
    /// Per recipient, in entry order.
    held: HashMap<Arc<str>, VecDeque<Held>>,
    expiries: BTreeSet<(Time, Arc<str>, EntryId)>,
    reserved: HashMap<u64, (Option<Arc<str>>, u64)>,
    next_ticket: u64,
    total: u64,
}

impl Shares {
    pub(crate) fn new(limits: ShareLimits) -> Self {
        Shares {
            limits,
            senders: HashMap::new(),
            held: HashMap::new(),
            expiries: BTreeSet::new(),
            reserved: HashMap::new(),
            next_ticket: 0,
            total: 0,
        }
    }

    /// Takes `bytes` of `sender`'s share for a send about to be pushed (released by
    /// [`cancel`](Self::cancel), or kept by [`commit`](Self::commit) until the entry leaves).
    pub(crate) fn reserve(
        &mut self,
        sender: Option<&Arc<str>>,
        bytes: u64,
        now: Time,
    ) -> Result<Ticket, ShareRefusal> {
        self.expire(now);
        let l = self.limits;
        if let Some(s) = sender {
            let u = self.senders.get(s).copied().unwrap_or_default();
            if u.messages.saturating_add(1) > l.per_sender_messages {
                return Err(ShareRefusal::SenderMessages);
            }
            if u.bytes.saturating_add(bytes) > l.per_sender_bytes {
                return Err(ShareRefusal::SenderBytes);
            }
            let open = l.total_bytes.saturating_sub(l.reserve_bytes);
            if self.total.saturating_add(bytes) > open
                && u.bytes.saturating_add(bytes) > l.light_sender_bytes
            {
                return Err(ShareRefusal::Reserve);
            }
            let u = self.senders.entry(s.clone()).or_default();
            u.bytes += bytes;
            u.messages += 1;
        }
        self.total = self.total.saturating_add(bytes);
        self.next_ticket += 1;
        self.reserved
            .insert(self.next_ticket, (sender.cloned(), bytes));
        Ok(Ticket(self.next_ticket))
    }

    /// The push failed: gives the share back.
    pub(crate) fn cancel(&mut self, t: Ticket) {
        if let Some((sender, bytes)) = self.reserved.remove(&t.0) {
            self.release(sender.as_ref(), bytes);
        }
    }

    /// The push stored `entry` for `recipient`, expiring at `expires`: the share stays taken
    /// until it leaves.
    pub(crate) fn commit(
        &mut self,
        t: Ticket,
        recipient: &Arc<str>,
        entry: EntryId,
        expires: Time,
    ) {
        let Some((sender, bytes)) = self.reserved.remove(&t.0) else {
            return;
        };
        let q = self.held.entry(recipient.clone()).or_default();
        // Entries are stored in increasing order per recipient; keep the deque sorted even if
        // two pushes' reports cross.
        let at = q.partition_point(|h| h.entry < entry);
        q.insert(
            at,
            Held {
                entry,
                sender,
                bytes,
                expires,
            },
        );
        self.expiries.insert((expires, recipient.clone(), entry));
    }

    /// `recipient`'s entries up to `upto` were acknowledged (removed from the queue).
    pub(crate) fn acked(&mut self, recipient: &str, upto: EntryId) {
        let Some((key, q)) = self.held.get_key_value(recipient) else {
            return;
        };
        if q.front().is_none_or(|h| h.entry > upto) {
            return;
        }
        let key = key.clone();
        let Some(q) = self.held.get_mut(&key) else {
            return;
        };
        let mut gone = Vec::new();
        while q.front().is_some_and(|h| h.entry <= upto) {
            gone.extend(q.pop_front());
        }
        if q.is_empty() {
            self.held.remove(&key);
        }
        for h in gone {
            self.expiries.remove(&(h.expires, key.clone(), h.entry));
            self.release(h.sender.as_ref(), h.bytes);
        }
    }

    /// Releases every entry whose TTL has passed at `now`.
    pub(crate) fn expire(&mut self, now: Time) {
        while let Some((at, _, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            let Some((_, recipient, entry)) = self.expiries.pop_first() else {
                break;
            };
            let Some(q) = self.held.get_mut(&recipient) else {
                continue;
            };
            let Ok(i) = q.binary_search_by_key(&entry, |h| h.entry) else {
                continue;
            };
            let h = q.remove(i).expect("found by the search");
            if q.is_empty() {
                self.held.remove(&recipient);
            }
            self.release(h.sender.as_ref(), h.bytes);
        }
    }

    fn release(&mut self, sender: Option<&Arc<str>>, bytes: u64) {
        self.total = self.total.saturating_sub(bytes);
        if let Some(s) = sender
            && let Some(u) = self.senders.get_mut(s)
        {
            u.bytes = u.bytes.saturating_sub(bytes);
            u.messages = u.messages.saturating_sub(1);
            if u.messages == 0 {
                self.senders.remove(s);
            }
        }
    }

    /// What `sender` holds now.
    #[cfg(test)]
    pub(crate) fn usage(&self, sender: &str) -> Usage {
        self.senders.get(sender).copied().unwrap_or_default()
    }

    /// Bytes held (and reserved) in all.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The earliest TTL to release.
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Option<Time> {
        self.expiries.first().map(|(t, _, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> ShareLimits {
        ShareLimits {
            per_sender_bytes: 100,
            per_sender_messages: 3,
            total_bytes: 1_000,
            reserve_bytes: 200,
            light_sender_bytes: 20,
        }
    }

    fn s(x: &str) -> Arc<str> {
        Arc::from(x)
    }

    #[test]
    fn per_sender_bytes_and_messages_at_their_boundaries() {
        let mut sh = Shares::new(limits());
        let (a, bob) = (s("a"), s("bob"));
        let t = sh.reserve(Some(&a), 60, Time::ZERO).unwrap();
        sh.commit(t, &bob, 1, Time::from_micros(100));
        let t = sh.reserve(Some(&a), 40, Time::ZERO).unwrap();
        sh.commit(t, &bob, 2, Time::from_micros(100));
        // 100 bytes held: one more byte is over.
        assert_eq!(
            sh.reserve(Some(&a), 1, Time::ZERO),
            Err(ShareRefusal::SenderBytes)
        );
        // Another sender is not affected.
        let b = s("b");
        for e in 3..6 {
            let t = sh.reserve(Some(&b), 1, Time::ZERO).unwrap();
            sh.commit(t, &bob, e, Time::from_micros(100));
        }
        assert_eq!(
            sh.reserve(Some(&b), 1, Time::ZERO),
            Err(ShareRefusal::SenderMessages)
        );
        // bob acknowledges up to 2: a's share comes back.
        sh.acked("bob", 2);
        assert_eq!(sh.usage("a"), Usage::default());
        assert!(sh.reserve(Some(&a), 100, Time::ZERO).is_ok());
    }

    #[test]
    fn the_reserve_is_for_light_senders() {
        let mut l = limits();
        l.per_sender_bytes = 1_000;
        l.per_sender_messages = 1_000;
        let mut sh = Shares::new(l);
        let heavy = s("heavy");
        // 800 of 1 000 bytes may be filled by anyone.
        for e in 0..8 {
            let t = sh.reserve(Some(&heavy), 100, Time::ZERO).unwrap();
            sh.commit(t, &s(&format!("nobody-{e}")), 1, Time::from_micros(10));
        }
        assert_eq!(sh.total(), 800);
        assert_eq!(
            sh.reserve(Some(&heavy), 1, Time::ZERO),
            Err(ShareRefusal::Reserve)
        );
        // A light sender still gets in, up to its light share.
        let light = s("light");
        assert!(sh.reserve(Some(&light), 20, Time::ZERO).is_ok());
        assert_eq!(
            sh.reserve(Some(&light), 1, Time::ZERO),
            Err(ShareRefusal::Reserve)
        );
        // The server itself has no share.
        assert!(sh.reserve(None, 150, Time::ZERO).is_ok());
    }

    #[test]
    fn cancel_and_expiry_give_shares_back() {
        let mut sh = Shares::new(limits());
        let a = s("a");
        let t = sh.reserve(Some(&a), 50, Time::ZERO).unwrap();
        sh.cancel(t);
        assert_eq!((sh.usage("a"), sh.total()), (Usage::default(), 0));
        let t = sh.reserve(Some(&a), 50, Time::ZERO).unwrap();
        let at = Time::ZERO + Duration::from_secs(60);
        sh.commit(t, &s("bob"), 7, at);
        assert_eq!(sh.next_expiry(), Some(at));
        sh.expire(at - Duration::from_micros(1));
        assert_eq!(sh.usage("a").bytes, 50);
        sh.expire(at);
        assert_eq!((sh.usage("a"), sh.total()), (Usage::default(), 0));
        assert_eq!(sh.next_expiry(), None);
        // An ack after the expiry is harmless.
        sh.acked("bob", 7);
        assert_eq!(sh.total(), 0);
    }
}
