//! Byte budgets: [`ByteBudget`] and its [`Charge`]s (documented on the type, which is public).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

struct Inner {
    limit: usize,
    used: AtomicUsize,
    parent: Option<ByteBudget>,
    /// Tasks waiting in [`ByteBudget::charge`] somewhere under this (root) budget.
    waiters: AtomicUsize,
    released: Notify,
}

/// A limit on bytes held by work in flight.
///
/// Byte budgets bound the memory that work in flight may hold (requests being handled,
/// answers not yet written), per connection and, through a parent, per server.
///
/// A [`ByteBudget`] counts bytes against a limit; a child budget also counts in its parent, so a
/// per-connection budget with a server-wide parent bounds both. A [`Charge`] is a number of
/// bytes held against a budget until it is dropped. The session's send queue can carry a charge
/// with a message ([`Session::send_charged`](crate::Session::send_charged)) and drops it once the
/// message is written, so "answers not yet written" stay counted until they are.
///
/// A budget with nothing charged accepts any single charge, however large (as the send queue
/// accepts one over-size message into an empty queue): a lone request larger than the limit is
/// served, one at a time, rather than refused forever.
///
/// ```
/// use chinwag::session::ByteBudget;
///
/// let server = ByteBudget::new(1000);
/// let conn = server.child(600);
/// let a = conn.try_charge(500).expect("fits both");
/// assert!(conn.try_charge(200).is_none(), "over the connection's 600");
/// let other = server.child(600);
/// let _b = other.try_charge(400).expect("fits: 900 of the server's 1000");
/// assert!(other.try_charge(200).is_none(), "over the server's 1000");
/// drop(a);
/// assert_eq!((conn.used(), server.used()), (0, 400));
/// ```
///
/// Cheap to clone; clones share the count.
#[derive(Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

impl fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBudget")
            .field("limit", &self.inner.limit)
            .field("used", &self.used())
            .field("has_parent", &self.inner.parent.is_some())
            .finish()
    }
}

impl ByteBudget {
    /// A budget of `limit` bytes with no parent.
    pub fn new(limit: usize) -> Self {
        Self::with_parent(limit, None)
    }

    fn with_parent(limit: usize, parent: Option<ByteBudget>) -> Self {
        ByteBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                parent,
                waiters: AtomicUsize::new(0),
                released: Notify::new(),
            }),
        }
    }

    /// A budget of `limit` bytes whose charges also count in `self`.
    pub fn child(&self, limit: usize) -> ByteBudget {
        Self::with_parent(limit, Some(self.clone()))
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes charged now (including those of children).
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    fn root(&self) -> &ByteBudget {
        let mut b = self;
        while let Some(p) = &b.inner.parent {
            b = p;
        }
        b
    }

    /// Adds `n` at this level if it fits (or nothing is charged here).
    fn take_here(&self, n: usize) -> bool {
        let inner = &*self.inner;
        inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(n) <= inner.limit).then(|| used.saturating_add(n))
            })
            .is_ok()
    }

    /// Adds `n` here and at every level above, or nothing when one level is full.
    fn take_chain(&self, n: usize) -> bool {
        if !self.take_here(n) {
            return false;
        }
        if let Some(p) = &self.inner.parent
            && !p.take_chain(n)
        {
            self.inner.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn add_forced(&self, n: usize) {
        let mut level = Some(self);
        while let Some(b) = level {
            b.inner.used.fetch_add(n, Ordering::AcqRel);
            level = b.inner.parent.as_ref();
        }
    }

    /// Charges `n` bytes if they fit at every level; `None` otherwise (nothing is charged).
    pub fn try_charge(&self, n: usize) -> Option<Charge> {
        self.take_chain(n).then(|| Charge {
            budget: Some(self.clone()),
            bytes: n,
            extra: Vec::new(),
        })
    }

    /// Charges `n` bytes whether they fit or not (for memory that is already allocated, such as
    /// a handler's answer): later [`try_charge`](Self::try_charge)s see the budget full until
    /// it is released.
    pub fn force_charge(&self, n: usize) -> Charge {
        self.add_forced(n);
        Charge {
            budget: Some(self.clone()),
            bytes: n,
            extra: Vec::new(),
        }
    }

    /// Charges `n` bytes, waiting up to `timeout` for room; `None` when the time ran out.
    pub async fn charge(&self, n: usize, timeout: Duration) -> Option<Charge> {
        if let Some(c) = self.try_charge(n) {
            return Some(c);
        }
        let root = self.root();
        root.inner.waiters.fetch_add(1, Ordering::AcqRel);
        let got = tokio::time::timeout(timeout, async {
            loop {
                let released = root.inner.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(c) = self.try_charge(n) {
                    return c;
                }
                released.await;
            }
        })
        .await
        .ok();
        root.inner.waiters.fetch_sub(1, Ordering::AcqRel);
        got
    }

    fn release(&self, n: usize) {
        let mut level = Some(self);
        let mut root = self;
        while let Some(b) = level {
            b.inner.used.fetch_sub(n, Ordering::AcqRel);
            root = b;
            level = b.inner.parent.as_ref();
        }
        if root.inner.waiters.load(Ordering::Acquire) > 0 {
            root.inner.released.notify_waiters();
        }
    }
}

/// Bytes held against a [`ByteBudget`] until dropped. [`Charge::default`] holds nothing.
#[derive(Default)]
pub struct Charge {
    budget: Option<ByteBudget>,
    bytes: usize,
    /// Absorbed charges of other budgets (rare; empty without allocating).
    extra: Vec<Charge>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Charge {
    /// The bytes held (absorbed charges of other budgets included).
    pub fn bytes(&self) -> usize {
        self.bytes + self.extra.iter().map(Charge::bytes).sum::<usize>()
    }

    /// Takes over `other`, so both are released together when `self` is dropped. Charges of
    /// the same budget merge into one count; a charge of another budget is kept alongside.
    pub fn absorb(&mut self, mut other: Charge) {
        match (&self.budget, &other.budget) {
            (_, None) => {}
            (None, Some(_)) => *self = other,
            (Some(a), Some(b)) if Arc::ptr_eq(&a.inner, &b.inner) => {
                self.bytes += other.bytes;
                other.bytes = 0;
            }
            (Some(_), Some(_)) => {
                // Different budgets: keep each counted in its own (released with `self`).
                self.extra.push(other);
            }
        }
    }

    /// Holds at least `n` bytes: grows the charge (forced, see
    /// [`ByteBudget::force_charge`]) when `n` is larger; never shrinks it.
    pub fn grow_to(&mut self, n: usize) {
        let Some(b) = &self.budget else { return };
        if n > self.bytes {
            b.add_forced(n - self.bytes);
            self.bytes = n;
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take()
            && self.bytes > 0
        {
            b.release(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_at_their_boundary() {
        let b = ByteBudget::new(100);
        let a = b.try_charge(60).unwrap();
        let c = b.try_charge(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(b.try_charge(1).is_none());
        drop(a);
        assert!(b.try_charge(60).is_some());
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn an_empty_budget_takes_one_oversize_charge() {
        let b = ByteBudget::new(10);
        let big = b.try_charge(1000).expect("nothing charged: accepted");
        assert!(b.try_charge(1).is_none());
        drop(big);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_refused_child_charge_leaves_nothing_behind() {
        let server = ByteBudget::new(100);
        let conn = server.child(1000);
        let _x = server.try_charge(90).unwrap();
        assert!(conn.try_charge(20).is_none());
        assert_eq!((conn.used(), server.used()), (0, 90));
    }

    #[test]
    fn grow_and_force() {
        let b = ByteBudget::new(100);
        let mut c = b.try_charge(10).unwrap();
        c.grow_to(150);
        assert_eq!((c.bytes(), b.used()), (150, 150));
        c.grow_to(5);
        assert_eq!(c.bytes(), 150);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn absorbed_charges_go_together() {
        let a = ByteBudget::new(100);
        let b = ByteBudget::new(100);
        let mut c = Charge::default();
        c.absorb(a.try_charge(10).unwrap());
        c.absorb(a.try_charge(20).unwrap());
        c.absorb(b.try_charge(5).unwrap());
        assert_eq!((c.bytes(), a.used(), b.used()), (35, 30, 5));
        drop(c);
        assert_eq!((a.used(), b.used()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_charges_get_room_or_time_out() {
        let server = ByteBudget::new(100);
        let conn = server.child(100);
        let held = server.try_charge(100).unwrap();
        assert!(conn.charge(50, Duration::from_secs(1)).await.is_none());
        let waiter = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.charge(50, Duration::from_secs(60))
                    .await
                    .map(|c| c.bytes())
            }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Some(50));
    }
}
