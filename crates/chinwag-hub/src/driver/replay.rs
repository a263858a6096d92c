//! A connection's replay of its user's queued messages, step by step as the core says
//! ([`ReplayStep`]): read a page, write it (waiting for room: replayed messages must not be
//! dropped), and again, until the core switches the connection to live.

use std::sync::Arc;

use chinwag_session::SendError as SessionSendError;

use super::Inner;
use super::conn::Conn;
use super::fanout::Outgoing;
use crate::close::{Close, CloseCode};
use crate::core::message::{Delivered, Event, decode_envelope};
use crate::core::pipeline::ReplayStep;
use crate::hooks::BeforeSend;
use crate::metrics as m;

impl Inner {
    /// Starts `conn`'s replay on a task of its own.
    pub(crate) fn start_replay(self: &Arc<Self>, conn: Conn) {
        let inner = self.clone();
        self.tasks.spawn(async move { inner.replay(conn).await });
    }

    async fn replay(&self, conn: Conn) {
        let shard = conn.0.shard;
        let id = conn.id();
        let mut step = self.users(shard).core.replay_next(id);
        loop {
            step = match step {
                ReplayStep::Live | ReplayStep::Gone => return,
                ReplayStep::Read { user, after, max } => {
                    let entries = match self.queue.read(&user, after, max).await {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(conn = id.0, user = %user, error = %e, "offline queue read failed; closing");
                            self.close(
                                &conn,
                                Close::new(CloseCode::TRY_AGAIN_LATER, "offline queue unavailable"),
                            );
                            return;
                        }
                    };
                    let entries = entries
                        .into_iter()
                        .map(|e| {
                            let msg = decode_envelope(&user, e.payload.clone()).map(Arc::new);
                            if msg.is_none() {
                                tracing::warn!(user = %user, entry = e.id, "skipping a queue entry this hub did not write");
                            }
                            (e.id, msg)
                        })
                        .collect();
                    let (next, ack) = self.users(shard).core.replay_read(id, entries);
                    if let Some((user, e)) = ack {
                        self.ack_written(&user, e).await;
                    }
                    next
                }
                ReplayStep::Write(msgs) => {
                    for msg in msgs {
                        let out = Outgoing::new(Event::Direct(msg));
                        if !self.send_waiting(&conn, &out).await {
                            return;
                        }
                        metrics::counter!(m::REPLAYED).increment(1);
                    }
                    self.users(shard).core.replay_written(id)
                }
            };
        }
    }

    /// One replayed (or held) message to one connection: the before-send hook, then the send
    /// that waits for room up to the replay timeout (a connection that does not read in that
    /// time is closed with 1008). False when the connection is gone.
    pub(crate) async fn send_waiting(&self, conn: &Conn, out: &Outgoing) -> bool {
        let app = &self.app;
        let device = conn.device();
        let format = &conn.0.format.format;
        let encoded = match app.before_send(device, out.event()) {
            BeforeSend::Keep => format.encode(out.event()),
            BeforeSend::Drop => {
                m::dropped("filtered");
                app.after_send(device, out.event(), Delivered::Filtered);
                return true;
            }
            BeforeSend::Replace(body) => format.encode(&out.event().with_body(body)),
        };
        let Some(encoded) = encoded else {
            return true;
        };
        match conn.0.link.send(encoded, self.config.replay_timeout).await {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT, "kind" => out.event().kind()).increment(1);
                app.after_send(device, out.event(), Delivered::Sent);
                true
            }
            Err(SessionSendError::Timeout) => {
                self.close(
                    conn,
                    Close::new(CloseCode::POLICY, "not reading its queued messages"),
                );
                false
            }
            Err(_) => false,
        }
    }
}
