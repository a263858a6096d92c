//! Node interest in users: the node subscribes to a user's push-notice channel while it has
//! connections of that user, on the listener's pub/sub connection, and to nobody else's (no
//! broadcast to every node).
//!
//! The offline queue publishes a notice of every push on `<P>w:<user>`
//! (`RedisOptions::notices` of `chinwag-queue-redis`), in the queue's order, right after the
//! entry is stored. A node subscribed to that channel hands the entry to its live connections of
//! the user (`Hub::stored_elsewhere`). Pub/sub is at most once: a node that was not subscribed
//! (its pub/sub connection dropped) subscribes again and makes every such user's connections
//! read the queue (`Hub::catch_up`); a node whose subscription started after a push reads it
//! anyway, because a sign-on subscribes **before** the connection's first read of the queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::ConnId;
use redis::aio::PubSubSink;
use tokio::sync::Mutex;

/// Channels subscribed per `SUBSCRIBE` command when a whole set is subscribed again.
const CHANNELS_PER_COMMAND: usize = 500;

/// Which users this node holds connections of, and the pub/sub connection to subscribe on.
pub(crate) struct Interest {
    /// Channel prefix of push notices (`<P>w:`).
    prefix: String,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The listener's subscription side, while it is subscribed.
    sink: Option<PubSubSink>,
    /// Users with connections here, and which.
    users: HashMap<Arc<str>, HashSet<ConnId>>,
}

impl Interest {
    pub(crate) fn new(prefix: String, timeout: Duration) -> Self {
        Interest {
            prefix,
            timeout: timeout.max(Duration::from_millis(10)),
            state: Mutex::new(State::default()),
        }
    }

    /// The channel of `user`'s push notices.
    pub(crate) fn channel(&self, user: &str) -> Vec<u8> {
        [self.prefix.as_bytes(), user.as_bytes()].concat()
    }

    /// The user whose notices `channel` carries, if it is one.
    pub(crate) fn user_of<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|u| std::str::from_utf8(u).ok())
    }

    /// `conn` of `user` signs on here: subscribes to the user's notices if it is the user's
    /// first connection here, and returns once Redis confirmed (so a push after this reaches
    /// the node). Without a pub/sub connection (the listener is reconnecting) it only records
    /// the user: the listener subscribes every recorded user when it is back, then makes their
    /// connections catch up. Never fails: a subscription that fails drops the connection, with
    /// the same effect.
    pub(crate) async fn add(&self, user: &str, conn: ConnId) {
        let mut st = self.state.lock().await;
        if let Some(conns) = st.users.get_mut(user) {
            conns.insert(conn);
            return;
        }
        if let Some(sink) = st.sink.as_mut() {
            let ok = matches!(
                tokio::time::timeout(self.timeout, sink.subscribe(self.channel(user))).await,
                Ok(Ok(()))
            );
            if !ok {
                // The listener finds the connection broken and subscribes everything again.
                tracing::warn!(user, "cluster: subscribing to a user's notices failed");
                st.sink = None;
            }
        }
        // Recorded only once subscribed: a sign-on dropped half-way leaves at most a stray
        // subscription (its notices find no connection), never a user recorded unsubscribed.
        st.users.entry(Arc::from(user)).or_default().insert(conn);
    }

    /// `conn` of `user` left (signed off, replaced, or its sign-on failed): unsubscribes when it
    /// was the user's last connection here. Idempotent.
    pub(crate) async fn remove(&self, user: &str, conn: ConnId) {
        let mut st = self.state.lock().await;
        let Some(conns) = st.users.get_mut(user) else {
            return;
        };
        conns.remove(&conn);
        if !conns.is_empty() {
            return;
        }
        st.users.remove(user);
        if let Some(sink) = st.sink.as_mut() {
            let r = tokio::time::timeout(self.timeout, sink.unsubscribe(self.channel(user))).await;
            if !matches!(r, Ok(Ok(()))) {
                st.sink = None;
            }
        }
    }

    /// The listener subscribed (again) on `sink`: subscribes every recorded user's channel and
    /// returns those users (their connections must catch up on what was missed).
    pub(crate) async fn attach(&self, mut sink: PubSubSink) -> redis::RedisResult<Vec<Arc<str>>> {
        let mut st = self.state.lock().await;
        let users: Vec<Arc<str>> = st.users.keys().cloned().collect();
        for chunk in users.chunks(CHANNELS_PER_COMMAND) {
            let channels: Vec<Vec<u8>> = chunk.iter().map(|u| self.channel(u)).collect();
            match tokio::time::timeout(self.timeout, sink.subscribe(channels)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "cluster listener: subscribing to users' notices",
                    )));
                }
            }
        }
        st.sink = Some(sink);
        Ok(users)
    }

    /// The listener's connection is gone: nothing more can be subscribed on it.
    pub(crate) async fn detach(&self) {
        self.state.lock().await.sink = None;
    }

    /// Users with connections here (for the tests and metrics).
    pub(crate) async fn users(&self) -> usize {
        self.state.lock().await.users.len()
    }
}

/// Parses a push notice, `"<entry id>\n<payload>"`.
pub(crate) fn parse_notice(b: &[u8]) -> Option<(u64, &[u8])> {
    let nl = b.iter().position(|&c| c == b'\n')?;
    let id = std::str::from_utf8(&b[..nl]).ok()?.parse().ok()?;
    Some((id, &b[nl + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_notice(b"12\nab\nc"), Some((12, &b"ab\nc"[..])));
        assert_eq!(parse_notice(b"7\n"), Some((7, &b""[..])));
        for bad in [&b""[..], b"12", b"x\n1", b"-1\nx", b"\nx"] {
            assert_eq!(parse_notice(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_name_their_user() {
        let i = Interest::new("P:w:".into(), Duration::from_secs(1));
        assert_eq!(i.channel("zoé"), "P:w:zoé".as_bytes());
        assert_eq!(i.user_of("P:w:zoé".as_bytes()), Some("zoé"));
        assert_eq!(i.user_of(b"P:{node:1}:ctl"), None);
    }
}
