//! The skeleton every door is built on: admission, sign-on with the door's format, the auth
//! timeout of first-message logins, sign-off, and the close with the door's goodbye. Written
//! once here, so the doors cannot drift apart.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chinwag_session::Session;
use chinwag_session::codec::Codec;
use chinwag_transport::{ConnectInfo, Framing, PeerAddr, Refusal};
use tokio::task::AbortHandle;

use crate::auth::{AuthError, Authenticated, TokenSource};
use crate::close::{Close, CloseCode};
use crate::driver::{Attach, Conn, Hub};
use crate::error::SignOnError;
use crate::link::{DoorFormat, Format, SessionLink, close_session};

/// A door's format for each framing (its encodings differ: e.g. gotalk writes a header and its
/// payload as one stream chunk, or as two WebSocket messages).
#[derive(Clone)]
pub(crate) struct Formats {
    stream: DoorFormat,
    message: DoorFormat,
}

impl Formats {
    /// Registers `make(framing)` with `hub` for both framings.
    pub(crate) fn register(hub: &Hub, make: impl Fn(Framing) -> Arc<dyn Format>) -> Self {
        Formats {
            stream: hub.register_format(make(Framing::Stream)),
            message: hub.register_format(make(Framing::Message)),
        }
    }

    /// The format of `session`'s framing.
    pub(crate) fn of<C: Codec>(&self, session: &Session<C>) -> &DoorFormat {
        match session.framing() {
            Framing::Stream => &self.stream,
            Framing::Message => &self.message,
        }
    }
}

/// A door: its hub, its name, and whether its clients acknowledge direct messages.
#[derive(Clone)]
pub(crate) struct Skeleton {
    pub(crate) hub: Hub,
    pub(crate) name: &'static str,
    pub(crate) acknowledges: bool,
}

/// What admission decided for a connection that was not refused.
pub(crate) enum Admitted {
    /// It presented a token at connect (or is anonymous): sign it on.
    SignedIn(Authenticated, TokenSource),
    /// No token yet: it must log in with its first message, within the auth timeout.
    AwaitLogin,
}

/// Stops an auth timer when dropped (the connection signed in, or ended).
pub(crate) struct AuthTimer(AbortHandle);

impl Drop for AuthTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Skeleton {
    /// Admission: the connection rate of the client's address, then a token presented at
    /// connect. Without one, `first_message` doors let the connection in to log in; the others
    /// refuse it (`401`).
    pub(crate) async fn admit(
        &self,
        info: &ConnectInfo,
        first_message: bool,
    ) -> Result<Admitted, Refusal> {
        let span = tracing::debug_span!("connect", door = self.name, peer = %info.peer());
        let _e = span.enter();
        self.hub.check_connection_rate(ip_of(info))?;
        drop(_e);
        match self.hub.authenticate_connect(info, self.name).await {
            Err(e) => Err(auth_refusal(&e)),
            Ok(Some((auth, source))) => Ok(Admitted::SignedIn(auth, source)),
            Ok(None) if first_message && self.hub.config().tokens.first_message => {
                Ok(Admitted::AwaitLogin)
            }
            Ok(None) => {
                crate::metrics::auth_refusal("missing");
                Err(auth_refusal(&AuthError::Missing))
            }
        }
    }

    /// Admission of a door whose clients log in with their first message whatever they
    /// present at connect (tok: the first frame is the token): the connection rate only.
    pub(crate) fn admit_first_message(&self, info: &ConnectInfo) -> Result<(), Refusal> {
        self.hub.check_connection_rate(ip_of(info))
    }

    /// Signs `session` on as `auth`, written with `format`; it is signed off when the session
    /// ends (a later sign-on of the same session replaces that).
    pub(crate) async fn sign_on<C: Codec>(
        &self,
        session: &Session<C>,
        format: &DoorFormat,
        auth: Authenticated,
        ip: Option<IpAddr>,
    ) -> Result<Conn, SignOnError> {
        let link = Arc::new(SessionLink::new(session.clone()));
        let attach = Attach::new(link, format.clone(), self.name)
            .with_acknowledges(self.acknowledges)
            .with_ip(ip);
        let conn = self.hub.attach(auth, attach).await?;
        // (Added after the session ended, a close callback runs at once.)
        let hub = self.hub.clone();
        let c = conn.clone();
        session.add_close_callback("chinwag-hub", move |_| hub.detach(&c));
        Ok(conn)
    }

    /// Closes a session the hub has not signed on (a refused login, a timeout), with
    /// `format`'s goodbye.
    pub(crate) fn close<C: Codec>(&self, session: &Session<C>, format: &DoorFormat, close: &Close) {
        close_session(session, close, format.format().bye(close));
    }

    /// Closes `session` with 4009 unless the returned timer is dropped within the auth
    /// timeout.
    pub(crate) fn auth_timer<C: Codec>(
        &self,
        session: &Session<C>,
        format: &DoorFormat,
    ) -> AuthTimer {
        let s = session.clone();
        let me = self.clone();
        let format = format.clone();
        let wait = self.hub.config().auth_timeout;
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.hub.count_auth_timeout();
            me.close(
                &s,
                &format,
                &Close::new(CloseCode::AUTH_TIMEOUT, "no login within the auth timeout"),
            );
        });
        AuthTimer(task.abort_handle())
    }
}

/// The peer's IP, when it has one.
pub(crate) fn ip_of(info: &ConnectInfo) -> Option<IpAddr> {
    match info.peer() {
        PeerAddr::Ip(a) => Some(a.ip()),
        _ => None,
    }
}

/// The HTTP refusal for a token that was refused.
pub(crate) fn auth_refusal(e: &AuthError) -> Refusal {
    let r = Refusal::new(e.status(), e.to_string());
    if e.status() == 503 {
        r.with_retry_after(Duration::from_secs(5))
    } else {
        r
    }
}

/// The HTTP refusal for a sign-on that failed.
pub(crate) fn sign_on_refusal(e: &SignOnError) -> Refusal {
    match e {
        SignOnError::BadIdentity(_) => Refusal::forbidden(e.to_string()),
        _ => Refusal::unavailable(e.to_string(), Duration::from_secs(5)),
    }
}

/// The subprotocol to confirm: the first the client offered that does not carry a token
/// (browsers fail a connection whose answer names none of those they offered, and the token
/// one must never be echoed).
pub(crate) fn pick_subprotocol(info: &ConnectInfo) -> Option<String> {
    info.subprotocols()
        .iter()
        .find(|p| !p.starts_with(crate::auth::SUBPROTOCOL_TOKEN_PREFIX))
        .cloned()
}
