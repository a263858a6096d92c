//! Per-user ordering of direct messages: one async lock per user with sends in flight, so ids
//! are handed out, queued and delivered in one order. Entries exist only while someone holds or
//! waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub(crate) struct Mailboxes {
    map: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one send (or a replay's switch to live) runs for the user.
pub(crate) struct MailboxGuard<'a> {
    boxes: &'a Mailboxes,
    user: Arc<str>,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Mailboxes {
    /// Locks `user`'s mailbox. Waiters are served in order (tokio's mutex is fair), so two
    /// sends started in order by one task or connection keep their order.
    pub(crate) async fn lock(&self, user: &Arc<str>) -> MailboxGuard<'_> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(user.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        MailboxGuard {
            boxes: self,
            user: user.clone(),
            lock,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Drop for MailboxGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.boxes.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard hold it: nobody waits; forget the user.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_go_when_unused_and_order_holds() {
        let boxes = Arc::new(Mailboxes::default());
        let user: Arc<str> = "u".into();
        let g = boxes.lock(&user).await;
        assert_eq!(boxes.len(), 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (b, u, o) = (boxes.clone(), user.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _g = b.lock(&u).await;
                o.lock().unwrap().push(i);
            }));
            // Let each task reach the lock (queue up) before the next starts.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        drop(g);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(boxes.len(), 0);
    }
}
