//! What a cluster directory needs from its node's hub: closing the local connections another
//! node's sign-on replaced, listing this node's connections (to reconcile after close
//! instructions were missed), and a handle that does not keep the hub alive.

use std::future::Future;
use std::sync::{Arc, Weak};

use super::conn::Conn;
use super::{Hub, Inner};
use crate::core::signon::ConnId;

/// A handle to a [`Hub`] that does not keep it alive (see [`Hub::downgrade`]), for a task that
/// serves the hub, such as a cluster directory's listener, and must end with it.
#[derive(Clone)]
pub struct WeakHub(Weak<Inner>);

impl WeakHub {
    /// The hub, unless every [`Hub`] handle is gone.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl std::fmt::Debug for WeakHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakHub")
            .field("alive", &(self.0.strong_count() > 0))
            .finish()
    }
}

impl Hub {
    /// Closes connections of `user` on this node that a sign-on on **another node** replaced,
    /// as [`attach`](Self::attach) closes those a sign-on on this node replaces: each one still
    /// attached and not already closing stops being a recipient at once, gets the live-only
    /// messages held for it, then its door's goodbye (`bye`) and close code 4003 (replaced).
    /// Ids that are not connections of `user` here (gone, closing, another user's) are
    /// skipped. Returns how many it closed.
    ///
    /// A cluster [`Directory`](crate::Directory) calls it on the node a replacement names: the
    /// hub that signed the new connection on closes only its own node's replaced connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use chinwag::hub::{ConnId, Hub};
    /// let hub = Hub::builder().build();
    /// // Another node's sign-on of alice replaced her connections 7 and 9 on this node:
    /// let closed = hub.close_replaced("alice", &[ConnId(7), ConnId(9)]);
    /// assert_eq!(closed, 0); // none of them is here
    /// # }
    /// ```
    pub fn close_replaced(&self, user: &str, conns: &[ConnId]) -> usize {
        let inner = &self.inner;
        let shard = inner.user_shard(user);
        let mine: Vec<ConnId> = {
            let sh = inner.users(shard);
            conns
                .iter()
                .copied()
                .filter(|id| sh.core.conn(*id).is_some_and(|c| *c.user == *user))
                .collect()
        };
        // Connection ids are unique for the node's life: one of `user` cannot become another
        // user's between the two locks, only go away (then `replace` skips it).
        inner.replace(shard, &mine)
    }

    /// Every connection on this node that the hub is not closing, in no particular order.
    /// Those whose sign-on the directory has not decided yet have
    /// [`sign_on_seq`](Conn::sign_on_seq) 0.
    ///
    /// A cluster directory that may have missed close instructions compares it with what the
    /// cluster lists (and closes the difference with [`close_replaced`](Self::close_replaced)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hub = chinwag::hub::Hub::builder().build();
    /// assert!(hub.local_connections().is_empty());
    /// # }
    /// ```
    pub fn local_connections(&self) -> Vec<Conn> {
        (0..super::SHARDS)
            .flat_map(|s| self.inner.users(s).core.all_recipients())
            .map(|(_, c)| c)
            .collect()
    }

    /// A handle that does not keep the hub alive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hub = chinwag::hub::Hub::builder().build();
    /// let weak = hub.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(hub);
    /// assert!(weak.upgrade().is_none());
    /// # }
    /// ```
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Completes when the hub has stopped: [`shutdown`](Self::shutdown) has closed its
    /// connections (or reached its deadline) and is stopping its background tasks. The future
    /// does not keep the hub alive; a task serving the hub selects on it to end with it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let hub = chinwag::hub::Hub::builder().build();
    /// let stopped = hub.stopped();
    /// hub.shutdown(std::time::Duration::from_secs(1)).await;
    /// stopped.await;
    /// # }
    /// ```
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.stop.clone().cancelled_owned()
    }
}
