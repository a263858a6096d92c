//! Redis calls counted for `/metrics` (through the [`metrics`] facade, as the hub's metrics):
//! [`Counted`] wraps a connection and counts every command sent on it, every pipeline, the
//! requests waiting for their answer (the pipeline depth of a multiplexed connection) and the
//! calls that failed, labelled with the connection's name (`conn`: `queue` for a
//! [`RedisQueue`](crate::RedisQueue) and the [`RedisHistory`](crate::RedisHistory) on its
//! connection, `history` for a history of its own; `chinwag-cluster-redis` adds `directory`).
//!
//! | name | kind | what |
//! |---|---|---|
//! | `chinwag_redis_commands_total` | counter | commands sent (a script call is one, whatever it runs inside): round trips, unless pipelined |
//! | `chinwag_redis_pipelines_total` | counter | pipelines sent (their commands are counted above too) |
//! | `chinwag_redis_in_flight` | gauge | requests sent and not answered yet |
//! | `chinwag_redis_errors_total` | counter | requests that failed (Redis unreachable, timeouts, errors Redis answered) |

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Commands sent.
pub const COMMANDS: &str = "chinwag_redis_commands_total";
/// Pipelines sent.
pub const PIPELINES: &str = "chinwag_redis_pipelines_total";
/// Requests sent and not answered yet.
pub const IN_FLIGHT: &str = "chinwag_redis_in_flight";
/// Requests that failed.
pub const ERRORS: &str = "chinwag_redis_errors_total";

/// A connection whose calls are counted (see the [module docs](self)). Cloning is as cheap as
/// cloning the connection. Its metric handles are registered once, by [`new`](Self::new), with
/// the recorder installed then (install the recorder first, as `chinwag-server` does): a
/// command costs no registry lookup.
#[derive(Clone)]
pub struct Counted<C = ConnectionManager> {
    inner: C,
    name: &'static str,
    handles: Handles,
}

#[derive(Clone)]
struct Handles {
    commands: metrics::Counter,
    pipelines: metrics::Counter,
    in_flight: metrics::Gauge,
    errors: metrics::Counter,
}

impl<C> Counted<C> {
    /// `inner`, counted under `conn = name`.
    pub fn new(inner: C, name: &'static str) -> Self {
        let handles = Handles {
            commands: metrics::counter!(COMMANDS, "conn" => name),
            pipelines: metrics::counter!(PIPELINES, "conn" => name),
            in_flight: metrics::gauge!(IN_FLIGHT, "conn" => name),
            errors: metrics::counter!(ERRORS, "conn" => name),
        };
        Self {
            inner,
            name,
            handles,
        }
    }

    /// The connection it wraps.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The name its calls are counted under.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// One request waiting for its answer: the in-flight gauge, down again when it ends (or is
/// dropped half-way).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn new(g: &metrics::Gauge) -> Self {
        g.increment(1.0);
        Self(g.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

fn counted<'a, T: Send + 'a>(h: &Handles, f: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    let waiting = Waiting::new(&h.in_flight);
    let errors = h.errors.clone();
    Box::pin(async move {
        let r = f.await;
        drop(waiting);
        if r.is_err() {
            errors.increment(1);
        }
        r
    })
}

impl<C: ConnectionLike + Send> ConnectionLike for Counted<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.handles.commands.increment(1);
        counted(&self.handles, self.inner.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.handles.commands.increment(pipeline.len() as u64);
        self.handles.pipelines.increment(1);
        counted(
            &self.handles,
            self.inner.req_packed_commands(pipeline, offset, count),
        )
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
