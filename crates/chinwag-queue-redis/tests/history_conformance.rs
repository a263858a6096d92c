//! The chinwag-queue history conformance suite, unchanged, against `RedisHistory`, on a private
//! redis-server started by the test.

use std::sync::Arc;

use chinwag_queue::history_conformance::{self, HistoryBackend};
use chinwag_queue::{BoxFuture, Clock, History, HistoryConfig, QueueError};
use chinwag_queue_redis::test_server::RedisServer;
use chinwag_queue_redis::{RedisHistory, RedisOptions};

/// Store `n` is the key prefix `h<n>:`; opening it again is a new connection to the same data
/// (a hub restart; Redis restarts are tested in `history.rs`).
struct Redis {
    server: RedisServer,
}

impl HistoryBackend for Redis {
    fn open(
        &self,
        store: u32,
        config: HistoryConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn History>, QueueError>> {
        Box::pin(async move {
            let options = RedisOptions::default()
                .prefix(format!("h{store}:"))
                .clock(clock);
            let h = RedisHistory::connect_with(&self.server.url(), config, options).await?;
            Ok(Arc::new(h) as Arc<dyn History>)
        })
    }

    fn supports_restart(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    let server = RedisServer::start();
    history_conformance::run_all(&Redis { server }).await;
}
