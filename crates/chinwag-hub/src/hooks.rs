//! The application's part: [`App`], hooks around every message and the handler of messages
//! addressed to the application itself.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use futures_core::future::BoxFuture;

use crate::close::Close;
use crate::core::identity::Device;
use crate::core::message::Delivered;
use crate::core::message::{Body, Event};
use crate::driver::{Conn, Hub};
use crate::error::Rejection;

/// What a client sent, before the hub acts on it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Incoming {
    /// A direct message to `to`.
    Direct {
        /// The recipient user.
        to: String,
        /// The body.
        body: Body,
    },
    /// A publish to `room`.
    Publish {
        /// The room.
        room: String,
        /// The body.
        body: Body,
    },
    /// A message for the application ([`App::on_receive`]): a frame of the tok-style door, or
    /// the chat door's `app` operation.
    App {
        /// The body.
        body: Body,
    },
}

/// What a join hook ([`App::before_join`]) decides when it lets a join through.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinDecision {
    /// Join the room the client asked for.
    Allow,
    /// Join this room instead (e.g. a name the application scoped to a tenant). A password
    /// the client gave is checked against this room.
    Room(String),
}

/// What a before-send hook decides for one recipient.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BeforeSend {
    /// Send the event as it is (shares its encoding with every other recipient).
    Keep,
    /// Do not send it to this device.
    Drop,
    /// Send this body instead (encoded for this device alone).
    Replace(Body),
}

/// The application's hooks into the hub. Every method has a default that does nothing (or lets
/// the message through), so an application overrides only what it needs.
///
/// Hooks run on the connection's task (receive side) or on the sender's (send side); they must
/// not block. The async hooks ([`before_receive_async`](Self::before_receive_async),
/// [`before_join`](Self::before_join), [`on_receive`](Self::on_receive)) may do I/O (ask a
/// backend): they run **in order per connection** — each connection has a lane the hub takes,
/// in the order the connection's requests reached it, around the hook and the first step of
/// what it decided, so the next message of that connection waits while other connections go
/// on. Sends, publishes and joins share one lane; messages for the application have their
/// own (so `on_receive` may join or publish for its connection without waiting for itself),
/// and the two are not ordered with each other. A send, publish or join hook must therefore not
/// send, publish or join for its own connection: it would wait for itself. The hub does not time them out: a hook that does I/O bounds its own wait (the event
/// proxy, `chinwag::proxy`, does).
///
/// # Example
///
/// An application that answers `app` messages (the chat door's `app` result, a frame on the
/// tok door) and keeps everyone out of rooms whose name starts with `staff-`:
///
/// ```
/// use chinwag::hub::auth::BoxFuture;
/// use chinwag::hub::{App, Body, Conn, Hub, JoinDecision, Rejection};
///
/// struct Echo;
///
/// impl App for Echo {
///     fn on_receive<'a>(
///         &'a self,
///         _hub: &'a Hub,
///         _conn: &'a Conn,
///         body: Body,
///     ) -> BoxFuture<'a, Result<Option<Body>, Rejection>> {
///         Box::pin(async move { Ok(Some(body)) })
///     }
///
///     fn before_join<'a>(
///         &'a self,
///         _conn: &'a Conn,
///         room: &'a str,
///     ) -> BoxFuture<'a, Result<JoinDecision, Rejection>> {
///         Box::pin(async move {
///             if room.starts_with("staff-") {
///                 Err(Rejection::new("staff only"))
///             } else {
///                 Ok(JoinDecision::Allow)
///             }
///         })
///     }
/// }
/// ```
pub trait App: Send + Sync + 'static {
    /// A connection signed on (its device, door, id and place in sign-on order are on
    /// `conn`).
    fn on_connect(&self, hub: &Hub, conn: &Conn) {
        let _ = (hub, conn);
    }

    /// Sees every message a client sends before the hub acts on it: return it (changed or not)
    /// to go on, or a [`Rejection`] to refuse it (the client gets a `refused` error with its
    /// reason).
    fn before_receive(&self, from: &Device, msg: Incoming) -> Result<Incoming, Rejection> {
        let _ = from;
        Ok(msg)
    }

    /// The async form of [`before_receive`](Self::before_receive), which the hub calls (the
    /// default calls `before_receive`): for an application that asks a backend whether a
    /// publish or a direct message goes through, refused (the client gets `refused` with the
    /// reason), or goes through changed. Runs in the connection's lane (see the trait's
    /// docs).
    fn before_receive_async<'a>(
        &'a self,
        conn: &'a Conn,
        msg: Incoming,
    ) -> BoxFuture<'a, Result<Incoming, Rejection>> {
        Box::pin(std::future::ready(self.before_receive(conn.device(), msg)))
    }

    /// A connection asks to join `room` (before the hub checks the name, the password and the
    /// limits): let it, refuse it (the client gets `refused` with the reason), or send it to
    /// another room ([`JoinDecision::Room`]). Runs in the connection's lane. The default lets
    /// every join through.
    fn before_join<'a>(
        &'a self,
        conn: &'a Conn,
        room: &'a str,
    ) -> BoxFuture<'a, Result<JoinDecision, Rejection>> {
        let _ = (conn, room);
        Box::pin(std::future::ready(Ok(JoinDecision::Allow)))
    }

    /// Decides, per recipient device, whether an event goes out as it is.
    fn before_send(&self, to: &Device, event: &Event) -> BeforeSend {
        let _ = (to, event);
        BeforeSend::Keep
    }

    /// After each delivery attempt, per recipient device.
    fn after_send(&self, to: &Device, event: &Event, outcome: Delivered) {
        let _ = (to, event, outcome);
    }

    /// A message addressed to the application (see [`Incoming::App`]) from `conn`, in the
    /// connection's lane. Its answer goes back to that client: `Some(body)` is the chat door's
    /// `app` result (`{"body": …}`) and a frame on the tok door; `None` answers nothing (the
    /// chat door's result is `{}`); a [`Rejection`] is the chat door's `refused` error (the
    /// tok door, which has no errors, logs it). The default drops the message and answers
    /// nothing.
    fn on_receive<'a>(
        &'a self,
        hub: &'a Hub,
        conn: &'a Conn,
        body: Body,
    ) -> BoxFuture<'a, Result<Option<Body>, Rejection>> {
        let _ = (hub, conn, body);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// A connection ended (`close`: the hub's reason when the hub closed it, e.g. replaced or
    /// kicked; `None` when the client went away or the session ended for its own reasons).
    fn on_close(&self, conn: &Conn, close: Option<&Close>) {
        let _ = (conn, close);
    }
}

/// The application that does nothing: every message goes through, app messages are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApp;

impl App for NoApp {}

/// Awaits `step` with the connection's lane `guard` held until `step` was polled once (the
/// hub's order-deciding part of an operation runs in its first poll), then without it: the
/// connection's next message goes on while this one waits (e.g. for the queue).
pub(crate) async fn first_poll_under<F: Future>(
    guard: tokio::sync::MutexGuard<'_, ()>,
    step: F,
) -> F::Output {
    let mut step = pin!(step);
    let mut guard = Some(guard);
    std::future::poll_fn(move |cx| {
        let r = step.as_mut().poll(cx);
        guard.take();
        match r {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
