//! The chinwag-queue conformance suites, unchanged, against the redb backends: the queue's
//! ([`RedbQueue`]) and the history's ([`RedbHistory`]).

use std::path::PathBuf;
use std::sync::Arc;

use chinwag_queue::conformance::{self, Backend};
use chinwag_queue::history_conformance::{self, HistoryBackend};
use chinwag_queue::{BoxFuture, Clock, History, HistoryConfig, Queue, QueueConfig, QueueError};
use chinwag_queue_redb::{RedbHistory, RedbOptions, RedbQueue};

/// Store `n` is the file `<tempdir>/<n>.redb`; opening it again is a restart.
struct Redb {
    dir: tempfile::TempDir,
}

impl Redb {
    /// Opens store `store` on the blocking pool with `open`.
    fn open_on<T: Send + 'static>(
        &self,
        store: u32,
        open: impl FnOnce(PathBuf) -> Result<T, QueueError> + Send + 'static,
    ) -> BoxFuture<'_, Result<T, QueueError>> {
        let path = self.dir.path().join(format!("{store}.redb"));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || open(path))
                .await
                .map_err(QueueError::backend)?
        })
    }
}

impl Backend for Redb {
    fn open(
        &self,
        store: u32,
        config: QueueConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn Queue>, QueueError>> {
        self.open_on(store, move |path| {
            let q = RedbQueue::open_with_clock(path, config, clock)?;
            Ok(Arc::new(q) as Arc<dyn Queue>)
        })
    }

    fn supports_restart(&self) -> bool {
        true
    }
}

impl HistoryBackend for Redb {
    fn open(
        &self,
        store: u32,
        config: HistoryConfig,
        clock: Arc<dyn Clock>,
    ) -> BoxFuture<'_, Result<Arc<dyn History>, QueueError>> {
        self.open_on(store, move |path| {
            let h = RedbHistory::open_with(path, config, RedbOptions::default(), clock)?;
            Ok(Arc::new(h) as Arc<dyn History>)
        })
    }

    fn supports_restart(&self) -> bool {
        true
    }
}

fn backend() -> Redb {
    Redb {
        dir: tempfile::tempdir().expect("creating a temporary directory"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    conformance::run_all(&backend()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_conformance() {
    history_conformance::run_all(&backend()).await;
}
