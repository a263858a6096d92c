//! The connection budget: how many sockets an acceptor may hold open at once, from `accept` to
//! the last byte of the close, whatever phase they are in (TLS handshake, HTTP keep-alive,
//! WebSocket upgrade, admission, session).
//!
//! Every accepting adapter (TCP, TLS, Unix, and the WebSocket acceptor of `chinwag-ws`) takes a
//! [`ConnectionPermit`] from its [`ConnectionBudget`] right after `accept`; the permit travels
//! with the connection (both halves of a split transport hold it) and is returned when the
//! socket is closed. Past the budget a connection is refused at once (TCP: accepted and
//! closed; WebSocket: `503 Service Unavailable` with `Retry-After`, before any upgrade).
//!
//! Besides each acceptor's own cap, all budgets of a process share one **process-wide limit**
//! derived from the file-descriptor limit (`RLIMIT_NOFILE`) minus a reserve for listeners,
//! files, refusals in progress and outgoing connections, so a flood on one port cannot use up
//! the descriptors another port (or the process) needs. The default cap of one acceptor is half
//! of that limit (at most 10 000), so two flooded doors still fit.
//!
//! # Pending connections and eviction
//!
//! A connection that has not signed in yet (a TLS handshake, an HTTP request head, a WebSocket
//! upgrade, a session waiting for its first message) is **pending**; a permit starts pending
//! and [`ConnectionPermit::establish`] moves it out for good (a session server does so right
//! after admission unless its service signs peers in later; a hub calls it at sign-on).
//! Pending permits are bounded by a **pending share**: a quarter of each budget's cap
//! ([`ConnectionBudget::set_pending_share`] changes it) and a quarter of the process-wide
//! limit ([`ProcessLimit::pending_share`]). When a new connection needs a pending place and a
//! share is full, the **oldest pending connection is evicted** to make room: its holders'
//! [`on_evict`](ConnectionPermit::on_evict) hooks close it (a TLS handshake or an HTTP
//! connection is dropped; a session closes as for an idle timeout). So a flood of sockets that
//! never sign in can neither fill the budget (it holds at most the share) nor keep a
//! legitimate client out: that client signs in long before it becomes the oldest. Established
//! connections are never evicted. An evicted connection leaves the pending share at once and
//! holds its place in the budget until its socket is closed.
//!
//! ```
//! use chinwag::transport::budget::ConnectionBudget;
//!
//! let budget = ConnectionBudget::new(2);
//! let a = budget.try_acquire().expect("room for one");
//! let _b = budget.try_acquire().expect("room for two");
//! assert!(budget.try_acquire().is_none()); // over the cap: refused
//! assert_eq!((budget.open(), budget.refused()), (2, 1));
//! drop(a); // the socket closed
//! assert!(budget.try_acquire().is_some());
//!
//! // Pending connections: a share of 1 here (a quarter of 4).
//! let budget = ConnectionBudget::new(4);
//! let first = budget.try_acquire().unwrap();
//! first.on_evict(|| println!("close the first connection"));
//! let second = budget.try_acquire().unwrap(); // evicts `first`, the oldest pending one
//! assert!(first.is_evicted());
//! assert_eq!((budget.pending(), budget.evicted()), (1, 1));
//! second.establish(); // signed in: never evicted
//! let _third = budget.try_acquire().unwrap();
//! assert!(second.is_established() && !second.is_evicted());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

/// The largest default cap of one acceptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The descriptors a process keeps for itself when the process-wide limit is derived:
/// `max(256, RLIMIT_NOFILE / 20)`.
fn reserve_for(nofile: usize) -> usize {
    (nofile / 20).max(256)
}

/// The default pending share of a cap or limit: a quarter, at least 1.
fn quarter(n: usize) -> usize {
    (n / 4).max(1)
}

/// The process-wide limit on sockets held through connection budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessLimit {
    /// The soft `RLIMIT_NOFILE` read at first use (`None` where it cannot be read; then 1 024
    /// is assumed).
    pub nofile: Option<usize>,
    /// Descriptors kept out of every budget: `max(256, nofile / 20)`.
    pub reserve: usize,
    /// Sockets all budgets of this process may hold together: `nofile - reserve` (at least 16).
    pub limit: usize,
    /// Pending connections (not established yet) all budgets may hold together: a quarter of
    /// `limit` (at least 1). Past it, the oldest pending connection of the process is evicted
    /// to make room for a new one.
    pub pending_share: usize,
}

/// The process-wide limit (read once, logged once).
pub fn process_limit() -> ProcessLimit {
    static LIMIT: OnceLock<ProcessLimit> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let nofile = read_nofile();
        let n = nofile.unwrap_or(1024);
        let reserve = reserve_for(n);
        let limit = n.saturating_sub(reserve).max(16);
        let pending_share = quarter(limit);
        tracing::info!(
            nofile = n,
            reserve,
            limit,
            pending_share,
            "connection budget: at most {limit} connections in this process \
             (RLIMIT_NOFILE {n} minus a reserve of {reserve}), {pending_share} of them pending"
        );
        ProcessLimit {
            nofile,
            reserve,
            limit,
            pending_share,
        }
    })
}

#[cfg(unix)]
fn read_nofile() -> Option<usize> {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    lim.current
        .map(|c| usize::try_from(c).unwrap_or(usize::MAX))
        .or(Some(usize::MAX))
        .filter(|&n| n > 0)
}

#[cfg(not(unix))]
fn read_nofile() -> Option<usize> {
    None
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One level of accounting: a budget, or the whole process.
struct Level {
    cap: usize,
    open: AtomicUsize,
    pending_share: AtomicUsize,
    /// Pending permits by age (the key is a process-wide sequence number).
    pending: Mutex<BTreeMap<u64, Weak<PermitInner>>>,
}

impl Level {
    fn new(cap: usize, pending_share: usize) -> Self {
        Level {
            cap,
            open: AtomicUsize::new(0),
            pending_share: AtomicUsize::new(pending_share.max(1)),
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    fn take_open(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Records `permit` as pending, first evicting the oldest pending permit when the share is
    /// full (after removing `gone`, permits evicted at another level). Returns the evicted one.
    /// Permits met on the way that are no longer pending go to `graveyard`, to be dropped
    /// after the lock (a drop may need it).
    fn enter(
        &self,
        seq: u64,
        permit: Weak<PermitInner>,
        gone: Option<u64>,
        graveyard: &mut Vec<Arc<PermitInner>>,
    ) -> Option<Arc<PermitInner>> {
        let mut map = lock(&self.pending);
        if let Some(g) = gone {
            map.remove(&g);
        }
        let mut victim = None;
        if map.len() >= self.pending_share.load(Ordering::Relaxed) {
            while let Some((_, w)) = map.pop_first() {
                let Some(p) = w.upgrade() else { continue };
                if p.state
                    .compare_exchange(PENDING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    victim = Some(p);
                    break;
                }
                graveyard.push(p);
            }
        }
        map.insert(seq, permit);
        victim
    }

    fn leave(&self, seq: u64) {
        lock(&self.pending).remove(&seq);
    }
}

/// The process's level (every budget shares it).
fn process_level() -> &'static Arc<Level> {
    static LEVEL: OnceLock<Arc<Level>> = OnceLock::new();
    LEVEL.get_or_init(|| {
        let p = process_limit();
        Arc::new(Level::new(p.limit, p.pending_share))
    })
}

/// Sockets held through connection budgets by the whole process now.
pub fn process_open() -> usize {
    process_level().open.load(Ordering::Relaxed)
}

/// Pending connections (not established yet) held through budgets by the whole process now.
pub fn process_pending() -> usize {
    process_level().pending()
}

struct BudgetInner {
    level: Level,
    /// The process-wide level (a private one in unit tests).
    process: Arc<Level>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

/// How many connections one acceptor may hold open at once, and how many of them may be
/// pending (see the [module docs](self)).
///
/// Cheap to clone; clones share the count, so one budget can also cover several acceptors.
#[derive(Clone)]
pub struct ConnectionBudget {
    inner: Arc<BudgetInner>,
}

impl fmt::Debug for ConnectionBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionBudget")
            .field("cap", &self.inner.level.cap)
            .field("open", &self.open())
            .field("pending", &self.pending())
            .field("pending_share", &self.pending_share())
            .field("refused", &self.refused())
            .field("evicted", &self.evicted())
            .finish()
    }
}

impl Default for ConnectionBudget {
    /// A budget with [`ConnectionBudget::default_cap`].
    fn default() -> Self {
        ConnectionBudget::new(ConnectionBudget::default_cap())
    }
}

/// Sequence numbers of permits: their age, process-wide.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

const PENDING: u8 = 0;
const ESTABLISHED: u8 = 1;
const EVICTED: u8 = 2;

impl ConnectionBudget {
    /// A budget of `cap` connections (values below 1 act as 1), a quarter of them pending at
    /// most (at least 1; see [`set_pending_share`](Self::set_pending_share)). The process-wide
    /// limits apply on top.
    pub fn new(cap: usize) -> Self {
        Self::with_process(cap, process_level().clone())
    }

    fn with_process(cap: usize, process: Arc<Level>) -> Self {
        let cap = cap.max(1);
        ConnectionBudget {
            inner: Arc::new(BudgetInner {
                level: Level::new(cap, quarter(cap)),
                process,
                refused: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// The default cap of one acceptor: half the [process-wide limit](process_limit), at most
    /// [`DEFAULT_MAX_CONNECTIONS`] (9 500 with `RLIMIT_NOFILE` 20 000; 384 with 1 024).
    pub fn default_cap() -> usize {
        (process_limit().limit / 2).clamp(1, DEFAULT_MAX_CONNECTIONS)
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.inner.level.cap
    }

    /// Connections holding a permit now (pending, established, or evicted and still closing).
    pub fn open(&self) -> usize {
        self.inner.level.open.load(Ordering::Relaxed)
    }

    /// Connections of this budget that are pending now (not established, not evicted).
    pub fn pending(&self) -> usize {
        self.inner.level.pending()
    }

    /// How many of this budget's connections may be pending at once (default: a quarter of
    /// the cap, at least 1).
    pub fn pending_share(&self) -> usize {
        self.inner.level.pending_share.load(Ordering::Relaxed)
    }

    /// Sets the [pending share](Self::pending_share) (values below 1 act as 1); for every clone
    /// of this budget. Connections already pending beyond a lowered share are evicted one per
    /// new connection.
    pub fn set_pending_share(&self, share: usize) {
        self.inner
            .level
            .pending_share
            .store(share.max(1), Ordering::Relaxed);
    }

    /// As [`set_pending_share`](Self::set_pending_share), for building.
    pub fn with_pending_share(self, share: usize) -> Self {
        self.set_pending_share(share);
        self
    }

    /// Connections refused so far because the budget (or the process-wide limit) was full.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Connections of this budget evicted so far while pending, to make room for new ones
    /// (when this budget's pending share or the process's was full).
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }

    /// Takes a permit for one connection, or `None` (and counts a refusal) when this budget or
    /// the process-wide limit is full. The permit starts pending; when a pending share is full
    /// the oldest pending connection (of this budget, or of the process) is evicted to make
    /// room.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let inner = &self.inner;
        if !inner.level.take_open() {
            return self.refuse();
        }
        if !inner.process.take_open() {
            inner.level.open.fetch_sub(1, Ordering::AcqRel);
            return self.refuse();
        }
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        let permit = Arc::new(PermitInner {
            budget: inner.clone(),
            seq,
            state: AtomicU8::new(PENDING),
            hooks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&permit);
        let mut graveyard = Vec::new();
        let local = inner.level.enter(seq, weak.clone(), None, &mut graveyard);
        let global = inner
            .process
            .enter(seq, weak, local.as_ref().map(|v| v.seq), &mut graveyard);
        if let Some(v) = &global {
            // Evicted for the process's share: out of its own budget's pending set too.
            v.budget.level.leave(v.seq);
        }
        drop(graveyard);
        for victim in local.into_iter().chain(global) {
            victim.evicted_now();
        }
        Some(ConnectionPermit { inner: permit })
    }

    fn refuse(&self) -> Option<ConnectionPermit> {
        let inner = &self.inner;
        let refused = inner.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Floods refuse thousands per second: log the first refusal and then every 1 000th.
        if refused % 1000 == 1 {
            tracing::warn!(
                cap = inner.level.cap,
                open = self.open(),
                process_open = inner.process.open.load(Ordering::Relaxed),
                refused,
                "connection budget full: refusing connections"
            );
        }
        None
    }
}

type Hook = Box<dyn FnOnce() + Send>;

struct PermitInner {
    budget: Arc<BudgetInner>,
    /// Age, process-wide (older permits are evicted first).
    seq: u64,
    /// `PENDING`, then `ESTABLISHED` or `EVICTED` for good.
    state: AtomicU8,
    /// What closes the connection when it is evicted (dropped once it is established).
    hooks: Mutex<Vec<Hook>>,
}

impl PermitInner {
    /// This permit was just evicted (its state set): count it, and close the connection.
    fn evicted_now(&self) {
        let hooks = std::mem::take(&mut *lock(&self.hooks));
        let budget = &self.budget;
        let evicted = budget.evicted.fetch_add(1, Ordering::Relaxed) + 1;
        // Floods evict thousands per second: log the first eviction and then every 1 000th.
        if evicted % 1000 == 1 {
            tracing::warn!(
                cap = budget.level.cap,
                pending_share = budget.level.pending_share.load(Ordering::Relaxed),
                evicted,
                "pending connections at their share: evicting the oldest"
            );
        }
        for hook in hooks {
            if catch_unwind(AssertUnwindSafe(hook)).is_err() {
                tracing::error!("an eviction hook panicked");
            }
        }
    }
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        if *self.state.get_mut() == PENDING {
            self.budget.level.leave(self.seq);
            self.budget.process.leave(self.seq);
        }
        self.budget.level.open.fetch_sub(1, Ordering::AcqRel);
        self.budget.process.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection's place in a [`ConnectionBudget`]; returned when the last clone is dropped
/// (both halves of a split transport hold a clone, so the place is held until the socket is
/// closed).
///
/// It starts **pending**: it may be evicted (see the [module docs](self)) until
/// [`establish`](Self::establish) is called.
#[derive(Clone)]
pub struct ConnectionPermit {
    inner: Arc<PermitInner>,
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.state.load(Ordering::Relaxed) {
            PENDING => "pending",
            ESTABLISHED => "established",
            _ => "evicted",
        };
        f.debug_struct("ConnectionPermit")
            .field("cap", &self.inner.budget.level.cap)
            .field("state", &state)
            .finish()
    }
}

impl ConnectionPermit {
    /// Moves the connection out of the pending share for good (it signed in): it is never
    /// evicted, and its eviction hooks are dropped unrun. Idempotent; no effect on a permit
    /// that was evicted already.
    pub fn establish(&self) {
        let inner = &self.inner;
        if inner
            .state
            .compare_exchange(PENDING, ESTABLISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        inner.budget.level.leave(inner.seq);
        inner.budget.process.leave(inner.seq);
        let hooks = std::mem::take(&mut *lock(&inner.hooks));
        drop(hooks);
    }

    /// Whether [`establish`](Self::establish) was called (before any eviction).
    pub fn is_established(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == ESTABLISHED
    }

    /// Whether the connection was evicted while pending (it should be closing).
    pub fn is_evicted(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == EVICTED
    }

    /// Registers `hook` to close the connection if it is evicted: it runs once, on the thread
    /// that evicts (keep it short and non-blocking: abort a task, start a close). Runs at once
    /// when the permit was evicted already; is dropped unrun when (or once) it is established.
    /// Whoever holds a pending connection registers one (the acceptors for their handshakes,
    /// a session for its connection); a pending connection nobody registered for is counted
    /// out of the pending share when evicted but stays open.
    pub fn on_evict(&self, hook: impl FnOnce() + Send + 'static) {
        let mut hooks = lock(&self.inner.hooks);
        match self.inner.state.load(Ordering::Acquire) {
            PENDING => hooks.push(Box::new(hook)),
            EVICTED => {
                drop(hooks);
                if catch_unwind(AssertUnwindSafe(hook)).is_err() {
                    tracing::error!("an eviction hook panicked");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_at_its_boundary() {
        let b = ConnectionBudget::new(3);
        let permits: Vec<_> = (0..3)
            .map(|_| b.try_acquire().expect("under cap"))
            .collect();
        assert_eq!(b.open(), 3);
        assert!(b.try_acquire().is_none());
        assert_eq!(b.refused(), 1);
        let clone = permits[0].clone();
        drop(permits);
        // One clone still holds its place.
        assert_eq!(b.open(), 1);
        drop(clone);
        assert_eq!(b.open(), 0);
    }

    /// A budget counted in a private process level (so parallel tests cannot evict each
    /// other's permits through the real one).
    fn budget(cap: usize, share: usize) -> ConnectionBudget {
        ConnectionBudget::with_process(cap, Arc::new(Level::new(1 << 20, 1 << 20)))
            .with_pending_share(share)
    }

    /// A hook that counts its runs.
    fn counting(p: &ConnectionPermit) -> Arc<AtomicUsize> {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        p.on_evict(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        n
    }

    #[test]
    fn default_pending_share_is_a_quarter() {
        assert_eq!(ConnectionBudget::new(100).pending_share(), 25);
        assert_eq!(ConnectionBudget::new(3).pending_share(), 1);
        assert_eq!(budget(10, 0).pending_share(), 1, "below 1 acts as 1");
        let p = process_limit();
        assert_eq!(p.pending_share, (p.limit / 4).max(1));
    }

    #[test]
    fn pending_share_at_its_boundary_evicts_the_oldest() {
        let b = budget(100, 3);
        let permits: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        let runs: Vec<_> = permits.iter().map(counting).collect();
        assert_eq!((b.pending(), b.evicted()), (3, 0));
        // One more: the oldest is evicted (its hook runs once), the pending count stays 3.
        let fourth = b.try_acquire().unwrap();
        assert!(permits[0].is_evicted());
        assert_eq!(runs[0].load(Ordering::SeqCst), 1);
        assert_eq!(runs[1].load(Ordering::SeqCst), 0);
        assert_eq!((b.pending(), b.evicted(), b.open()), (3, 1, 4));
        // The evicted one holds its place until its socket is closed (the permit dropped).
        drop(permits);
        assert_eq!((b.pending(), b.open()), (1, 1));
        assert!(!fourth.is_evicted());
        // Later hooks on an evicted permit run at once; establishing it changes nothing.
        let b = budget(100, 1);
        let old = b.try_acquire().unwrap();
        let _new = b.try_acquire().unwrap();
        let late = counting(&old);
        assert_eq!(late.load(Ordering::SeqCst), 1);
        old.establish();
        assert!(old.is_evicted() && !old.is_established());
    }

    #[test]
    fn established_connections_are_never_evicted() {
        let b = budget(100, 2);
        let kept = b.try_acquire().unwrap();
        let runs = counting(&kept);
        kept.establish();
        kept.establish(); // idempotent
        assert!(kept.is_established());
        assert_eq!(b.pending(), 0);
        let flood: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
        assert!(!kept.is_evicted());
        assert_eq!(runs.load(Ordering::SeqCst), 0, "its hook was dropped unrun");
        assert_eq!((b.pending(), b.evicted()), (2, 8));
        assert!(flood[..8].iter().all(ConnectionPermit::is_evicted));
        assert!(!flood[8].is_evicted() && !flood[9].is_evicted());
        // Established permits still count against the cap.
        assert_eq!(b.open(), 11);
    }

    #[test]
    fn the_cap_refuses_without_evicting() {
        // A full budget refuses: evicting would not make a place (the evicted socket holds
        // its place until it is closed).
        let b = budget(2, 1);
        let a = b.try_acquire().unwrap();
        a.establish();
        let p = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_none());
        assert!(!p.is_evicted());
        assert_eq!((b.refused(), b.evicted()), (1, 0));
    }

    #[test]
    fn process_pending_share_at_its_boundary() {
        let process = Arc::new(Level::new(1 << 20, 2));
        let a = ConnectionBudget::with_process(100, process.clone());
        let b = ConnectionBudget::with_process(100, process.clone());
        let first = a.try_acquire().unwrap();
        let runs = counting(&first);
        let _second = b.try_acquire().unwrap();
        assert_eq!(process.pending(), 2);
        // The process's share is full: the oldest pending permit of the process goes, though
        // it belongs to the other budget (whose own share has room).
        let _third = b.try_acquire().unwrap();
        assert!(first.is_evicted());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(process.pending(), 2);
        assert_eq!((a.pending(), a.evicted()), (0, 1));
        assert_eq!((b.pending(), b.evicted()), (2, 0));
    }

    #[test]
    fn process_limit_keeps_a_reserve() {
        let p = process_limit();
        assert!(p.reserve >= 256);
        assert!(p.limit >= 16);
        if let Some(n) = p.nofile
            && n > 512
        {
            assert_eq!(p.limit + p.reserve, n);
        }
        let cap = ConnectionBudget::default_cap();
        assert!(cap <= DEFAULT_MAX_CONNECTIONS && cap <= p.limit / 2);
    }

    #[test]
    fn reserve_formula() {
        assert_eq!(reserve_for(1024), 256);
        assert_eq!(reserve_for(20_000), 1000);
    }
}
