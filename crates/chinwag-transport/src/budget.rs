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
//! ```
//! use chinwag_transport::budget::ConnectionBudget;
//!
//! let budget = ConnectionBudget::new(2);
//! let a = budget.try_acquire().expect("room for one");
//! let _b = budget.try_acquire().expect("room for two");
//! assert!(budget.try_acquire().is_none()); // over the cap: refused
//! assert_eq!((budget.open(), budget.refused()), (2, 1));
//! drop(a); // the socket closed
//! assert!(budget.try_acquire().is_some());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The largest default cap of one acceptor.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The descriptors a process keeps for itself when the process-wide limit is derived:
/// `max(256, RLIMIT_NOFILE / 20)`.
fn reserve_for(nofile: usize) -> usize {
    (nofile / 20).max(256)
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
}

/// The process-wide limit (read once, logged once).
pub fn process_limit() -> ProcessLimit {
    static LIMIT: OnceLock<ProcessLimit> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let nofile = read_nofile();
        let n = nofile.unwrap_or(1024);
        let reserve = reserve_for(n);
        let limit = n.saturating_sub(reserve).max(16);
        tracing::info!(
            nofile = n,
            reserve,
            limit,
            "connection budget: at most {limit} connections in this process \
             (RLIMIT_NOFILE {n} minus a reserve of {reserve})"
        );
        ProcessLimit {
            nofile,
            reserve,
            limit,
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

/// Sockets held through budgets in this process now.
static PROCESS_OPEN: AtomicUsize = AtomicUsize::new(0);

/// Sockets held through connection budgets by the whole process now.
pub fn process_open() -> usize {
    PROCESS_OPEN.load(Ordering::Relaxed)
}

struct BudgetInner {
    cap: usize,
    open: AtomicUsize,
    refused: AtomicU64,
}

/// How many connections one acceptor may hold open at once (see the [module docs](self)).
///
/// Cheap to clone; clones share the count, so one budget can also cover several acceptors.
#[derive(Clone)]
pub struct ConnectionBudget {
    inner: Arc<BudgetInner>,
}

impl fmt::Debug for ConnectionBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionBudget")
            .field("cap", &self.inner.cap)
            .field("open", &self.open())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Default for ConnectionBudget {
    /// A budget with [`ConnectionBudget::default_cap`].
    fn default() -> Self {
        ConnectionBudget::new(ConnectionBudget::default_cap())
    }
}

impl ConnectionBudget {
    /// A budget of `cap` connections (values below 1 act as 1). The process-wide limit applies
    /// on top.
    pub fn new(cap: usize) -> Self {
        ConnectionBudget {
            inner: Arc::new(BudgetInner {
                cap: cap.max(1),
                open: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
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
        self.inner.cap
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Connections refused so far because the budget (or the process-wide limit) was full.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Takes a permit for one connection, or `None` (and counts a refusal) when this budget or
    /// the process-wide limit is full.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let inner = &self.inner;
        let took = inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < inner.cap).then_some(n + 1)
            })
            .is_ok();
        if took {
            let limit = process_limit().limit;
            if PROCESS_OPEN
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n < limit).then_some(n + 1)
                })
                .is_ok()
            {
                return Some(ConnectionPermit {
                    inner: Arc::new(PermitInner {
                        budget: inner.clone(),
                    }),
                });
            }
            inner.open.fetch_sub(1, Ordering::AcqRel);
        }
        let refused = inner.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Floods refuse thousands per second: log the first refusal and then every 1 000th.
        if refused % 1000 == 1 {
            tracing::warn!(
                cap = inner.cap,
                open = self.open(),
                process_open = process_open(),
                refused,
                "connection budget full: refusing connections"
            );
        }
        None
    }
}

struct PermitInner {
    budget: Arc<BudgetInner>,
}

impl Drop for PermitInner {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
        PROCESS_OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection's place in a [`ConnectionBudget`]; returned when the last clone is dropped
/// (both halves of a split transport hold a clone, so the place is held until the socket is
/// closed).
#[derive(Clone)]
pub struct ConnectionPermit {
    inner: Arc<PermitInner>,
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("cap", &self.inner.budget.cap)
            .finish()
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
