//! The chat-door clients of the hub scenarios: `chinwag::client`, the facade's chat client
//! (the one applications and the tests use), not one of this crate's own.
//!
//! Each user signs in with an HS256 JWT minted from the spec's `secret` (over WebSocket in
//! the upgrade's `Authorization` header, over TCP with an `auth` request), connects from the
//! loopback source address it is given, on the client engine of the spec, and never
//! reconnects: a connection the server ends is a figure of the run, not something to hide.

use std::net::IpAddr;
use std::time::Duration;

use chinwag::WsEngine;
use chinwag::client::{ChatError, Client, Events};

use crate::BoxError;
use crate::hub::token;
use crate::load::LoadSpec;
use crate::proto::{ClientEngine, Protocol, Target};

/// Calls in flight on one client: at least the spec's `in_flight`, and the client's own
/// default (256) otherwise.
const MIN_IN_FLIGHT: usize = 256;
/// Events a client holds for its reader (a replay reads 10 000 messages as fast as they come).
const EVENT_BUFFER: usize = 1024;
/// A call not answered in this long fails (the hub answers in milliseconds; a run that waits
/// this long has failed anyway).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The chat client's URL for `target`: `tcp://IP:PORT` or the `ws://` URL.
pub(crate) fn url(target: &Target) -> Result<String, BoxError> {
    match target.protocol {
        Protocol::RpcTcp => Ok(format!("tcp://{}", target.addr)),
        Protocol::RpcWs => Ok(target.ws_url()),
        _ => Err(format!("{target}: the chat door is gotalk+ws:// or gotalk+tcp://").into()),
    }
}

/// The facade's engine for the spec's client engine.
fn engine(e: ClientEngine) -> WsEngine {
    match e {
        ClientEngine::Fastwebsockets => WsEngine::FastWebSockets,
        ClientEngine::Tungstenite => WsEngine::Tungstenite,
        ClientEngine::Yawc => WsEngine::Yawc,
    }
}

/// A chat-door client signed in as `user` from `source`. With `auto_ack`, every direct
/// message is acknowledged once read from the [`Events`] (as `chinwag.js` does); without,
/// the caller acknowledges.
pub(crate) async fn connect(
    target: &Target,
    spec: &LoadSpec,
    user: &str,
    source: Option<IpAddr>,
    auto_ack: bool,
) -> Result<(Client, Events), BoxError> {
    let secret = spec
        .secret
        .as_deref()
        .ok_or("the chat door needs --secret to sign tokens")?;
    let mut b = Client::builder(url(target)?)
        .token(token(secret, user)?)
        .token_in_header(true)
        .engine(engine(spec.client_engine))
        .reconnect(false)
        .auto_ack(auto_ack)
        .max_in_flight(spec.in_flight.max(MIN_IN_FLIGHT))
        .event_buffer(EVENT_BUFFER)
        .call_timeout(CALL_TIMEOUT);
    if let Some(ip) = source {
        b = b.local_ip(ip);
    }
    b.connect().await.map_err(|e| error(&e).into())
}

/// A failed call as the figures name it: the chat protocol's `code` (`wrong_password`,
/// `busy`, ...), or what went wrong on the client's side (`closed`, `timeout`, ...), with
/// the message.
pub(crate) fn error(e: &ChatError) -> String {
    format!("{}: {}", e.code(), e.message())
}

/// Reads and drops a client's events (presence, room publishes it does not measure), so a
/// full event buffer never holds its connection.
pub(crate) fn drain(mut events: Events) {
    tokio::spawn(async move { while events.next().await.is_some() {} });
}
