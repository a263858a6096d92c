//! What the queue and the history share: the group-commit writer thread, opening the file,
//! and the process's [`MAX_CONCURRENT_READS`] reader threads.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread::JoinHandle;

use chinwag_queue::QueueError;
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use crate::{MAX_BATCH, MAX_CONCURRENT_READS, RedbOptions};

/// The reads of every redb store in the process that may run at once; the others wait here,
/// on the runtime, not on a thread of their own.
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_READS);

type ReadJob = Box<dyn FnOnce() + Send>;

/// The process's reader threads (started on the first read): [`MAX_CONCURRENT_READS`] threads
/// taking jobs from one channel, which holds at most that many jobs since a job is sent only
/// with a place of [`READS`]. Fixed threads rather than tokio's blocking pool: a blocking-pool
/// thread becomes idle only after its task's result is delivered, so a steady stream of short
/// reads keeps starting new threads even with the reads bounded (measured: 30 threads for 1 000
/// reads, 4 at a time).
fn readers() -> &'static mpsc::Sender<ReadJob> {
    static READERS: OnceLock<mpsc::Sender<ReadJob>> = OnceLock::new();
    READERS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..MAX_CONCURRENT_READS {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("chinwag-redb-read-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            // A read that panics drops its reply (the caller gets an error);
                            // the thread goes on with the next job.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("cannot start a redb reader thread");
        }
        tx
    })
}

/// Where an operation's result goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

pub(crate) fn backend(e: impl Into<redb::Error>) -> QueueError {
    QueueError::backend(e.into())
}

pub(crate) fn batch_failed() -> QueueError {
    QueueError::backend("the write transaction of this operation's batch failed")
}

/// Sends a reply, given the commit's error if it failed.
type SendReply = Box<dyn FnOnce(Option<&str>) + Send>;

/// A reply to send once the batch's transaction committed (or failed: then the commit's
/// error replaces the result).
pub(crate) struct Done(SendReply);

impl Done {
    pub(crate) fn new<T: Send + 'static>(reply: Reply<T>, r: Result<T, QueueError>) -> Self {
        Done(Box::new(move |failed: Option<&str>| {
            let r = match failed {
                None => r,
                Some(e) => Err(QueueError::backend(e.to_owned())),
            };
            // A caller that went away (dropped future) does not care about its reply.
            let _ = reply.send(r);
        }))
    }

    /// An operation of a batch that failed.
    pub(crate) fn failed<T: Send + 'static>(reply: Reply<T>) -> Self {
        Self::new(reply, Err(batch_failed()))
    }

    /// The result of one operation: a storage error fails it (and the batch).
    pub(crate) fn of<T: Send + 'static>(
        reply: Reply<T>,
        r: Result<T, QueueError>,
    ) -> (Self, Option<QueueError>) {
        match r {
            Ok(v) => (Self::new(reply, Ok(v)), None),
            Err(e) => (Self::failed(reply), Some(e)),
        }
    }
}

/// A store's write side: how its operations apply to one write transaction.
pub(crate) trait Batch: Send + 'static {
    /// One operation, carrying its [`Reply`].
    type Op: Send + 'static;

    /// The completion of an operation whose batch failed before it ran.
    fn failed(op: Self::Op) -> Done;

    /// Applies operations from `ops` in `txn`, pushing one [`Done`] per operation taken. An
    /// error is a storage failure: the writer aborts the transaction and fails the rest.
    fn apply(
        &mut self,
        txn: &WriteTransaction,
        ops: &mut std::vec::IntoIter<Self::Op>,
        done: &mut Vec<Done>,
    ) -> Result<(), QueueError>;
}

/// The writer thread: one write transaction and one fsync per batch of up to [`MAX_BATCH`]
/// operations that arrived while the previous commit was running. Dropping it ends the thread
/// after the batch in progress and waits for it, so the file is free to reopen.
pub(crate) struct Writer<Op> {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl<Op: Send + 'static> Writer<Op> {
    pub(crate) fn spawn<B: Batch<Op = Op>>(
        name: &str,
        db: Arc<Database>,
        mut batch: B,
    ) -> Result<Self, QueueError> {
        let (tx, rx) = mpsc::channel::<Op>();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut ops = vec![first];
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    if transact(&db, &mut batch, ops) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(QueueError::backend)?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            commits,
        })
    }

    /// The write transactions committed so far (each one fsync).
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Sends an operation to the writer and waits for its result.
    pub(crate) async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, QueueError> {
        let rx = self.submit(make)?;
        rx.await.map_err(|_| stopped())?
    }

    /// Sends an operation to the writer; its result comes on the receiver. Operations sent
    /// before their results are awaited share the writer's batches (one transaction).
    pub(crate) fn submit<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Op,
    ) -> Result<oneshot::Receiver<Result<T, QueueError>>, QueueError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(make(reply))
            .map_err(|_| stopped())?;
        Ok(rx)
    }
}

pub(crate) fn stopped() -> QueueError {
    QueueError::backend("redb writer thread stopped")
}

impl<Op> Drop for Writer<Op> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one batch in one transaction and replies; whether it committed. Per-operation refusals
/// are results; a storage error fails the whole batch (nothing of it is committed).
fn transact<B: Batch>(db: &Database, batch: &mut B, ops: Vec<B::Op>) -> bool {
    let mut done = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter();
    let commit = match db.begin_write() {
        Ok(mut txn) => {
            let r = txn
                .set_durability(Durability::Immediate)
                .map_err(QueueError::backend)
                .and_then(|()| batch.apply(&txn, &mut ops, &mut done));
            match r {
                Ok(()) => txn.commit().map_err(|e| e.to_string()),
                Err(e) => {
                    let _ = txn.abort();
                    Err(e.to_string())
                }
            }
        }
        Err(e) => Err(e.to_string()),
    };
    done.extend(ops.map(B::failed));
    for d in done {
        (d.0)(commit.as_ref().err().map(String::as_str));
    }
    commit.is_ok()
}

/// Opens (creating) the redb file with `options` and creates the store's tables in one
/// durable transaction, so read transactions always find them.
pub(crate) fn open_database(
    path: &Path,
    options: &RedbOptions,
    create: impl FnOnce(&WriteTransaction) -> Result<(), redb::TableError>,
) -> Result<Arc<Database>, QueueError> {
    let db = redb::Builder::new()
        .set_cache_size(options.cache_size)
        .create(path)
        .map_err(backend)?;
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate)
        .map_err(QueueError::backend)?;
    create(&txn).map_err(backend)?;
    txn.commit().map_err(backend)?;
    Ok(Arc::new(db))
}

/// Runs a read on one of the process's reader threads (in place outside a tokio runtime), once
/// one of the [`MAX_CONCURRENT_READS`] places is free: a reconnect storm's replays queue here
/// instead of each taking a blocking-pool thread (hundreds of them, measured in issue 21).
pub(crate) async fn blocking<T: Send + 'static>(
    db: &Arc<Database>,
    f: impl FnOnce(&Database) -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    let db = Arc::clone(db);
    match tokio::runtime::Handle::try_current() {
        Ok(_) => {
            // The semaphore is never closed.
            let _place = READS.acquire().await.map_err(QueueError::backend)?;
            let (reply, answer) = oneshot::channel();
            let job: ReadJob = Box::new(move || {
                // A caller that went away (dropped future) does not care about its answer.
                let _ = reply.send(f(&db));
            });
            readers()
                .send(job)
                .map_err(|_| QueueError::backend("the redb reader threads stopped"))?;
            answer
                .await
                .map_err(|_| QueueError::backend("a redb read panicked"))?
        }
        // Not in a tokio runtime (another executor): read in place rather than panic.
        Err(_) => f(&db),
    }
}
