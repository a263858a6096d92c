//! [`Lock`]: the async lock the two halves of a connection share the engine's reader and
//! writer through. The common case — the half that owns the lock takes it, uses it, gives it
//! back, with nobody waiting — costs two uncontended `std` mutex operations and an atomic load;
//! `tokio::sync::Mutex` took its waiter list's mutex on every release (its fast path was a
//! quarter of a WebSocket echo's instructions). A waiter is told when the value comes back.
//! Not fair: a half that gives the lock back and takes it again at once keeps it; the two halves
//! of a session run in one task, so they never race for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub(crate) struct Lock<T> {
    /// Boxed, so taking and giving back moves a pointer, not the engine's state.
    slot: Mutex<Option<Box<T>>>,
    waiters: AtomicUsize,
    returned: Notify,
}

fn slot<T>(m: &Mutex<Option<Box<T>>>) -> MutexGuard<'_, Option<Box<T>>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock {
            slot: Mutex::new(Some(Box::new(value))),
            waiters: AtomicUsize::new(0),
            returned: Notify::new(),
        }
    }

    /// Takes the value, waiting while another holder has it. Cancel safe: a dropped future
    /// holds nothing.
    pub(crate) async fn lock(&self) -> Guard<'_, T> {
        if let Some(v) = slot(&self.slot).take() {
            return Guard {
                lock: self,
                value: Some(v),
            };
        }
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiters);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(v) = slot(&self.slot).take() {
                return Guard {
                    lock: self,
                    value: Some(v),
                };
            }
            returned.await;
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The value while held; given back when dropped (also when the holder's future is dropped).
pub(crate) struct Guard<'a, T> {
    lock: &'a Lock<T>,
    /// `Some` from creation until `drop` gives it back.
    value: Option<Box<T>>,
}

impl<T> std::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
            .as_ref()
            .expect("a guard holds its value until dropped")
    }
}

impl<T> std::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("a guard holds its value until dropped")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        *slot(&self.lock.slot) = self.value.take();
        if self.lock.waiters.load(Ordering::Acquire) > 0 {
            self.lock.returned.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn one_holder_at_a_time_and_waiters_are_told() {
        let lock = Arc::new(Lock::new(0u32));
        let mut g = lock.lock().await;
        *g += 1;
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move {
                let mut g = lock.lock().await;
                *g += 10;
                *g
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "held: the waiter waits");
        drop(g);
        assert_eq!(waiter.await.unwrap(), 11);
        assert_eq!(*lock.lock().await, 11);
    }

    #[tokio::test]
    async fn a_dropped_holder_future_gives_the_value_back() {
        let lock = Lock::new(String::from("x"));
        {
            let held = lock.lock();
            tokio::pin!(held);
            let g = (&mut held).await;
            drop(g);
        }
        let cancelled = async {
            let _g = lock.lock().await;
            std::future::pending::<()>().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), cancelled).await;
        assert_eq!(&*lock.lock().await, "x");
    }
}
