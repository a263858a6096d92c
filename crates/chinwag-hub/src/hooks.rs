//! The application's part: [`App`], hooks around every message and the handler of messages
//! addressed to the application itself.

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
/// not block. [`on_receive`](Self::on_receive) is async and runs **in order per connection**:
/// the next message of that connection waits for it.
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

    /// Decides, per recipient device, whether an event goes out as it is.
    fn before_send(&self, to: &Device, event: &Event) -> BeforeSend {
        let _ = (to, event);
        BeforeSend::Keep
    }

    /// After each delivery attempt, per recipient device.
    fn after_send(&self, to: &Device, event: &Event, outcome: Delivered) {
        let _ = (to, event, outcome);
    }

    /// A message addressed to the application (see [`Incoming::App`]). The default drops it.
    fn on_receive<'a>(&'a self, hub: &'a Hub, from: &'a Device, body: Body) -> BoxFuture<'a, ()> {
        let _ = (hub, from, body);
        Box::pin(async {})
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
