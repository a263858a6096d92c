//! The application's side of a session: [`Service`] (admission, per-connection state, events)
//! and its stateless shorthand [`Handler`].

use std::future::Future;

use chinwag_transport::{CloseReason, ConnectInfo, Refusal};

use crate::codec::{Codec, Encoded};
use crate::error::{CloseCause, SessionError};
use crate::handle::Session;

/// What [`Service::admit`] hands back for a connection it lets in: the per-connection state,
/// and for WebSocket the subprotocol to answer with (one the client offered, see
/// [`ConnectInfo::subprotocols`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Admission<S> {
    /// The state every event of this connection gets.
    pub state: S,
    /// The WebSocket subprotocol to confirm (`Sec-WebSocket-Protocol`), if any.
    pub subprotocol: Option<String>,
}

impl<S> Admission<S> {
    /// Admits with `state` and no subprotocol.
    pub fn new(state: S) -> Self {
        Admission {
            state,
            subprotocol: None,
        }
    }

    /// Confirms `subprotocol` to the WebSocket client.
    pub fn with_subprotocol(mut self, subprotocol: impl Into<String>) -> Self {
        self.subprotocol = Some(subprotocol.into());
        self
    }
}

/// What a server or client runs for every connection: **admission** (async, before the session
/// starts — for WebSocket before the upgrade is answered, so a refusal is an HTTP 401/403 with a
/// reason, not a closed socket), the **per-connection state** admission returns, and the
/// session's events, each handed that state (no attribute lookup, no lock per message).
///
/// One value serves every session of a server or client. Messages are delivered one at a time
/// and in order; while [`on_message`](Self::on_message) runs, the session does not read (inbound
/// backpressure: a slow handler slows only its own peer, through TCP flow control). Do not
/// block inside the callbacks; `admit` and `on_message` may await.
///
/// Servers bound admission: it must finish within
/// [`ServerConfig::admission_timeout`](crate::ServerConfig::admission_timeout), and at most
/// [`ServerConfig::max_admissions`](crate::ServerConfig::max_admissions) run at once; past
/// either the connection is refused with `503`.
///
/// Every [`Handler`] is a `Service` with no state; implement `Service` directly when
/// connections need admission or state.
pub trait Service<C: Codec>: Send + Sync + 'static {
    /// The per-connection state: made by [`admit`](Self::admit), kept by the session's task,
    /// handed to every event, dropped after [`on_close`](Self::on_close).
    type State: Send + Sync + 'static;

    /// Decides whether the connection may start, from what it arrived with (`info`: peer, TLS,
    /// and for WebSocket the request's path, query, headers and offered subprotocols). The
    /// session handle exists already (nothing is read or written yet), so the state may hold
    /// it.
    fn admit(
        &self,
        session: &Session<C>,
        info: &ConnectInfo,
    ) -> impl Future<Output = Result<Admission<Self::State>, Refusal>> + Send;

    /// Whether a server [establishes](Session::establish) each connection at admission (as
    /// [`admit`](Self::admit) starts: its TLS handshake and, for WebSocket, its HTTP request
    /// are complete), taking it out of its acceptor's pending share for good (see
    /// `chinwag_transport::budget`). Default `true`: a service with no sign-in step is never
    /// penalised, even by a burst of connections waiting for admission. A service whose peers sign in later (with a first message, say) returns
    /// `false` and calls [`Session::establish`] at sign-in; until then its connections count
    /// in the pending share and the oldest is evicted (closed with [`CloseCause::Evicted`],
    /// WebSocket 1013) when a new connection needs the place.
    fn establish_on_admit(&self) -> bool {
        true
    }

    /// The session started (its transport is admitted; the codec's preamble is queued). Return
    /// `Err` to close it at once with that code and reason ([`on_close`](Self::on_close) is not
    /// called).
    fn on_open(&self, session: &Session<C>, state: &Self::State) -> Result<(), CloseReason> {
        let _ = (session, state);
        Ok(())
    }

    /// One decoded message from the peer.
    fn on_message(
        &self,
        session: &Session<C>,
        state: &Self::State,
        msg: C::In,
    ) -> impl Future<Output = ()> + Send;

    /// The transport or the codec failed; the session closes next.
    fn on_error(&self, session: &Session<C>, state: &Self::State, error: &SessionError) {
        let _ = (session, state, error);
    }

    /// The session closed (after its writer finished). Close callbacks run after this.
    fn on_close(&self, session: &Session<C>, state: &Self::State, cause: &CloseCause) {
        let _ = (session, state, cause);
    }

    /// The periodic tick ([`SessionConfig::cron_interval`](crate::SessionConfig::cron_interval)).
    fn on_cron(&self, session: &Session<C>, state: &Self::State) {
        let _ = (session, state);
    }

    /// The heartbeat to send when nothing was written for
    /// [`SessionConfig::heartbeat_interval`](crate::SessionConfig::heartbeat_interval) — the
    /// session's one heartbeat mechanism. Default: the codec's ([`Codec::heartbeat`]); a
    /// service whose heartbeat carries per-connection facts (RPC: its load) makes its own.
    /// `None` turns heartbeats off for this session.
    fn heartbeat(&self, session: &Session<C>, state: &Self::State) -> Option<Encoded> {
        let _ = state;
        session.codec().heartbeat(session.framing())
    }
}

/// The stateless shorthand of [`Service`]: every connection is admitted, and the events carry
/// no state. See [`Service`] for how events are delivered.
pub trait Handler<C: Codec>: Send + Sync + 'static {
    /// A session opened. Return `Err` to close it at once with that code and reason
    /// ([`on_close`](Self::on_close) is not called).
    fn on_open(&self, session: &Session<C>) -> Result<(), CloseReason> {
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

    /// The periodic tick ([`SessionConfig::cron_interval`](crate::SessionConfig::cron_interval)).
    fn on_cron(&self, session: &Session<C>) {
        let _ = session;
    }
}

impl<C: Codec, H: Handler<C>> Service<C> for H {
    type State = ();

    async fn admit(&self, _: &Session<C>, _: &ConnectInfo) -> Result<Admission<()>, Refusal> {
        Ok(Admission::new(()))
    }

    fn on_open(&self, session: &Session<C>, _: &()) -> Result<(), CloseReason> {
        Handler::on_open(self, session)
    }

    fn on_message(
        &self,
        session: &Session<C>,
        _: &(),
        msg: C::In,
    ) -> impl Future<Output = ()> + Send {
        Handler::on_message(self, session, msg)
    }

    fn on_error(&self, session: &Session<C>, _: &(), error: &SessionError) {
        Handler::on_error(self, session, error);
    }

    fn on_close(&self, session: &Session<C>, _: &(), cause: &CloseCause) {
        Handler::on_close(self, session, cause);
    }

    fn on_cron(&self, session: &Session<C>, _: &()) {
        Handler::on_cron(self, session);
    }
}
