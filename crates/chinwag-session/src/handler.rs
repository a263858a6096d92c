//! The application's side of a session: the [`Handler`] trait.

use std::future::Future;

use crate::codec::Codec;
use crate::error::{CloseCause, Refusal, SessionError};
use crate::handle::Session;

/// The application's side of a session: lifecycle events, called from the session's own task.
///
/// One handler value serves every session of a server or client. Messages are delivered one
/// at a time and in order; while [`on_message`](Self::on_message) runs, the session does not
/// read (inbound backpressure: a slow handler slows only its own peer, through TCP flow
/// control). Do not block inside the callbacks; `on_message` may await.
pub trait Handler<C: Codec>: Send + Sync + 'static {
    /// A session opened. Return `Err` to refuse it (it is closed with that reason).
    fn on_open(&self, session: &Session<C>) -> Result<(), Refusal> {
        let _ = session;
        Ok(())
    }

    /// One decoded message from the peer.
    fn on_message(&self, session: &Session<C>, msg: C::In) -> impl Future<Output = ()> + Send;

    /// The transport or the codec failed; the session closes next.
    fn on_error(&self, session: &Session<C>, error: &SessionError) {
        let _ = (session, error);
    }

    /// The session closed (after its writer finished). Close callbacks run after this.
    fn on_close(&self, session: &Session<C>, cause: &CloseCause) {
        let _ = (session, cause);
    }

    /// The periodic tick ([`SessionConfig::cron_interval`]).
    fn on_cron(&self, session: &Session<C>) {
        let _ = session;
    }
}
