//! The history conformance suite, unchanged, against the in-memory backend.

use std::sync::Arc;

use chinwag_queue::history_conformance::{self, HistoryBackend};
use chinwag_queue::{BoxFuture, Clock, History, HistoryConfig, MemoryHistory, QueueError};

/// Every open is a new, empty store (memory has no restart).
struct Memory;

impl HistoryBackend for Memory {
    fn open(
        &self,
        _store: u32,
        config: HistoryConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn History>, QueueError>> {
        Box::pin(async move {
            Ok(Arc::new(MemoryHistory::with_clock(config, clock)) as Arc<dyn History>)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    history_conformance::run_all(&Memory).await;
}
