//! Node interest in users and rooms: the node subscribes to a user's push-notice channel while
//! it has connections of that user, and to a room's channel while it has members in the room,
//! on the listener's pub/sub connection, and to nothing else (no broadcast to every node).
//!
//! The offline queue publishes a notice of every push on `<P>w:<user>`
//! (`RedisOptions::notices` of `chinwag-queue-redis`), in the queue's order, right after the
//! entry is stored. A node subscribed to that channel hands the entry to its live connections of
//! the user (`Hub::stored_elsewhere`). Pub/sub is at most once: a node that was not subscribed
//! (its pub/sub connection dropped) subscribes again and makes every such user's connections
//! read the queue (`Hub::catch_up`); a node whose subscription started after a push reads it
//! anyway, because a sign-on subscribes **before** the connection's first read of the queue.
//!
//! Rooms alike: the room history publishes each appended publication on `<P>r:<room>`
//! (`RedisHistory::with_notices`); a node with members there hands it to its hub
//! (`Hub::published_elsewhere`), and after a reconnect makes the room read the history
//! (`Hub::sync_room`). A join subscribes before the room's state is read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chinwag_hub::ConnId;
use redis::aio::PubSubSink;
use tokio::sync::Mutex;

/// Channels subscribed per `SUBSCRIBE` command when a whole set is subscribed again.
const CHANNELS_PER_COMMAND: usize = 500;

/// What a channel is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A user's push notices (`<P>w:<user>`).
    User,
    /// A room's publications (`<P>r:<room>`).
    Room,
}

/// Which users this node holds connections of, which rooms it has members in, and the pub/sub
/// connection to subscribe on.
pub(crate) struct Interest {
    /// The cluster's key prefix (`<P>`).
    prefix: String,
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The listener's subscription side, while it is subscribed.
    sink: Option<PubSubSink>,
    /// Users with connections here and rooms with members here, and which connections.
    names: HashMap<(Kind, Arc<str>), HashSet<ConnId>>,
}

impl Interest {
    /// Interest under the cluster's key `prefix`.
    pub(crate) fn new(prefix: String, timeout: Duration) -> Self {
        Interest {
            prefix,
            timeout: timeout.max(Duration::from_millis(10)),
            state: Mutex::new(State::default()),
        }
    }

    /// The channel prefix of `kind`.
    pub(crate) fn channel_prefix(&self, kind: Kind) -> String {
        let tag = match kind {
            Kind::User => "w:",
            Kind::Room => "r:",
        };
        format!("{}{tag}", self.prefix)
    }

    /// The channel of `name`, a user or a room.
    pub(crate) fn channel(&self, kind: Kind, name: &str) -> Vec<u8> {
        [self.channel_prefix(kind).as_bytes(), name.as_bytes()].concat()
    }

    /// The user or room whose notices `channel` carries, if it is one.
    pub(crate) fn name_of<'a>(&self, channel: &'a [u8]) -> Option<(Kind, &'a str)> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let (kind, name) = if let Some(n) = rest.strip_prefix(b"w:") {
            (Kind::User, n)
        } else {
            (Kind::Room, rest.strip_prefix(b"r:")?)
        };
        Some((kind, std::str::from_utf8(name).ok()?))
    }

    /// `conn` of `user` signs on here: subscribes to the user's notices if it is the user's
    /// first connection here, and returns once Redis confirmed (so a push after this reaches
    /// the node). Without a pub/sub connection (the listener is reconnecting) it only records
    /// the user: the listener subscribes every recorded user when it is back, then makes their
    /// connections catch up. Never fails: a subscription that fails drops the connection, with
    /// the same effect.
    pub(crate) async fn add(&self, kind: Kind, name: &str, conn: ConnId) {
        let mut st = self.state.lock().await;
        let key = (kind, Arc::from(name));
        if let Some(conns) = st.names.get_mut(&key) {
            conns.insert(conn);
            return;
        }
        if let Some(sink) = st.sink.as_mut() {
            let ok = matches!(
                tokio::time::timeout(self.timeout, sink.subscribe(self.channel(kind, name))).await,
                Ok(Ok(()))
            );
            if !ok {
                // The listener finds the connection broken and subscribes everything again.
                tracing::warn!(?kind, name, "cluster: subscribing to notices failed");
                st.sink = None;
            }
        }
        // Recorded only once subscribed: a sign-on dropped half-way leaves at most a stray
        // subscription (its notices find no connection), never a name recorded unsubscribed.
        st.names.entry(key).or_default().insert(conn);
    }

    /// `conn` of `user` left (signed off, replaced, or its sign-on failed): unsubscribes when it
    /// was the user's last connection here. Idempotent.
    pub(crate) async fn remove(&self, kind: Kind, name: &str, conn: ConnId) {
        let mut st = self.state.lock().await;
        let key = (kind, Arc::from(name));
        let Some(conns) = st.names.get_mut(&key) else {
            return;
        };
        conns.remove(&conn);
        if !conns.is_empty() {
            return;
        }
        st.names.remove(&key);
        if let Some(sink) = st.sink.as_mut() {
            let r = tokio::time::timeout(self.timeout, sink.unsubscribe(self.channel(kind, name)))
                .await;
            if !matches!(r, Ok(Ok(()))) {
                st.sink = None;
            }
        }
    }

    /// The listener subscribed (again) on `sink`: subscribes every recorded user's and room's
    /// channel and returns them (they must catch up on what was missed).
    pub(crate) async fn attach(
        &self,
        mut sink: PubSubSink,
    ) -> redis::RedisResult<Vec<(Kind, Arc<str>)>> {
        let mut st = self.state.lock().await;
        let names: Vec<(Kind, Arc<str>)> = st.names.keys().cloned().collect();
        for chunk in names.chunks(CHANNELS_PER_COMMAND) {
            let channels: Vec<Vec<u8>> = chunk.iter().map(|(k, n)| self.channel(*k, n)).collect();
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
        Ok(names)
    }

    /// The listener's connection is gone: nothing more can be subscribed on it.
    pub(crate) async fn detach(&self) {
        self.state.lock().await.sink = None;
    }

    /// Users with connections here, or rooms with members here (for the tests and metrics).
    pub(crate) async fn count(&self, kind: Kind) -> usize {
        let st = self.state.lock().await;
        st.names.keys().filter(|(k, _)| *k == kind).count()
    }
}

/// Parses a push notice, `"<entry id>\n<payload>"`.
pub(crate) fn parse_notice(b: &[u8]) -> Option<(u64, &[u8])> {
    let nl = b.iter().position(|&c| c == b'\n')?;
    let id = std::str::from_utf8(&b[..nl]).ok()?.parse().ok()?;
    Some((id, &b[nl + 1..]))
}

/// A presence notice on a room's channel: `"p <node>\n<1 joined | 0 left>\n<user>\n<device>"`
/// (user and device ids hold no control characters).
pub(crate) fn presence_notice(node: u64, user: &str, device: &str, joined: bool) -> String {
    format!("p {node}\n{}\n{user}\n{device}", u8::from(joined))
}

/// Parses a presence notice: (node, user, device, joined).
pub(crate) fn parse_presence(b: &[u8]) -> Option<(u64, &str, &str, bool)> {
    let s = std::str::from_utf8(b.strip_prefix(b"p ")?).ok()?;
    let mut f = s.splitn(4, '\n');
    let node = f.next()?.parse().ok()?;
    let joined = match f.next()? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    let (user, device) = (f.next()?, f.next()?);
    (!user.is_empty()).then_some((node, user, device, joined))
}

/// Parses a room publication's notice, `"<epoch> <offset>\n<payload>"`.
pub(crate) fn parse_publication(b: &[u8]) -> Option<(u64, u64, &[u8])> {
    let nl = b.iter().position(|&c| c == b'\n')?;
    let head = std::str::from_utf8(&b[..nl]).ok()?;
    let (e, o) = head.split_once(' ')?;
    Some((e.parse().ok()?, o.parse().ok()?, &b[nl + 1..]))
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
    fn publications_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_publication(b"7 12\nab\nc"),
            Some((7, 12, &b"ab\nc"[..]))
        );
        for bad in [
            &b""[..],
            b"7 12",
            b"7\nx",
            b"x 1\ny",
            b"7 -1\nx",
            b"7  1\nx",
        ] {
            assert_eq!(parse_publication(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn presence_notices_round_trip_and_bad_ones_are_refused() {
        let n = presence_notice(7, "zoé", "phone", true);
        assert_eq!(
            parse_presence(n.as_bytes()),
            Some((7, "zoé", "phone", true))
        );
        let n = presence_notice(1, "a", "", false);
        assert_eq!(parse_presence(n.as_bytes()), Some((1, "a", "", false)));
        for bad in [
            &b"p 7\n2\na\nb"[..],
            b"p x\n1\na\nb",
            b"p 7\n1\n",
            b"7 1\nx",
        ] {
            assert_eq!(parse_presence(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_name_their_user_or_room() {
        let i = Interest::new("P:".into(), Duration::from_secs(1));
        assert_eq!(i.channel(Kind::User, "zoé"), "P:w:zoé".as_bytes());
        assert_eq!(i.channel(Kind::Room, "lobby"), b"P:r:lobby");
        assert_eq!(i.name_of("P:w:zoé".as_bytes()), Some((Kind::User, "zoé")));
        assert_eq!(i.name_of(b"P:r:w:x"), Some((Kind::Room, "w:x")));
        assert_eq!(i.name_of(b"P:{node:1}:ctl"), None);
    }
}
