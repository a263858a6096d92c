//! The chinwag-queue conformance suite, unchanged, against the redb backend.

use std::sync::Arc;

use chinwag_queue::conformance::{self, Backend};
use chinwag_queue::{BoxFuture, Clock, Queue, QueueConfig, QueueError};
use chinwag_queue_redb::RedbQueue;

/// Store `n` is the file `<tempdir>/<n>.redb`; opening it again is a restart.
struct Redb {
    dir: tempfile::TempDir,
}

impl Backend for Redb {
    fn open(
        &self,
        store: u32,
        config: QueueConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn Queue>, QueueError>> {
        let path = self.dir.path().join(format!("{store}.redb"));
        Box::pin(async move {
            let q = tokio::task::spawn_blocking(move || {
                RedbQueue::open_with_clock(path, config, clock)
            })
            .await
            .map_err(QueueError::backend)??;
            Ok(Arc::new(q) as Arc<dyn Queue>)
        })
    }

    fn supports_restart(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    conformance::run_all(&Redb { dir }).await;
}
