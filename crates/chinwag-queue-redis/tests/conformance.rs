//! The chinwag-queue conformance suite, unchanged, against the Redis backend, on a private
//! redis-server started by the test.

use std::sync::Arc;

use chinwag_queue::conformance::{self, Backend};
use chinwag_queue::{BoxFuture, Clock, Queue, QueueConfig, QueueError};
use chinwag_queue_redis::{RedisOptions, RedisQueue};

/// Store `n` is the key prefix `c<n>:`; opening it again is a new connection to the same data
/// (a chinwag restart; Redis restarts are tested in `restart.rs`).
struct Redis {
    server: chinwag_queue_redis::test_server::RedisServer,
}

impl Backend for Redis {
    fn open(
        &self,
        store: u32,
        config: QueueConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn Queue>, QueueError>> {
        Box::pin(async move {
            let options = RedisOptions::default()
                .prefix(format!("c{store}:"))
                .clock(clock);
            let q = RedisQueue::connect_with(&self.server.url(), config, options).await?;
            Ok(Arc::new(q) as Arc<dyn Queue>)
        })
    }

    fn supports_restart(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let server = chinwag_queue_redis::test_server::RedisServer::start();
    conformance::run_all(&Redis { server }).await;
}
