//! The embedded store's writer: one thread that owns the database's write
//! side and commits the writes queued meanwhile together (group commit).
//!
//! A durable commit costs an `fsync`, whatever it holds. Committing each
//! write on its own makes concurrent writers queue for one `fsync` each;
//! here every write that arrived while the previous commit was being made
//! durable goes into the next write transaction, which is committed once.
//! A lone write is committed at once: the writer never waits for company.
//!
//! Each [`Job`] is applied in arrival order in the batch's transaction, so
//! it reads what the jobs before it wrote, exactly as if each had its own
//! transaction one after another. No job's caller is answered before the
//! commit holding its write (and every write it read) is durable; if that
//! commit fails, every job of the batch is answered with the error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, Durability};

use super::{SESSIONS, backend};
use crate::store::StoreError;

/// The most jobs one transaction holds: bounds the time a batch keeps its
/// callers waiting, and the memory the transaction dirties.
pub(super) const MAX_BATCH: usize = 256;

/// The sessions table as a job writes it.
pub(super) type SessionsTable<'txn> = redb::Table<'txn, &'static str, &'static [u8]>;

/// One write, applied by the writer in a batch's transaction.
pub(super) trait Job: Send {
    /// Reads and changes `table`. Returns whether it wrote anything; an
    /// error means the table could not be written, and the whole batch is
    /// abandoned. A job that decides not to write (including a decision
    /// that fails) must not write at all, so that skipping it leaves the
    /// others' writes intact.
    fn apply(&mut self, table: &mut SessionsTable<'_>) -> Result<bool, StoreError>;

    /// Answers the caller once the batch's fate is known: `Ok` when the
    /// commit that holds this job is durable (or there was nothing to
    /// commit), the error otherwise. Also called, with an error, for a job
    /// that was never applied because the batch failed before it.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// The handle on the writer thread; dropping it lets the thread finish the
/// queued jobs and waits for it, so that the database is closed after.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread on `db`.
    pub(super) fn start(db: Arc<Database>) -> Result<Writer, StoreError> {
        let (queue, jobs) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("vessel-store-writer".into())
            .spawn(move || run(&db, &jobs, &counted))
            .map_err(|e| StoreError::Backend(format!("cannot start the store's writer: {e}")))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            commits,
        })
    }

    /// Queues `job` for the next batch.
    pub(super) fn submit(&self, job: Box<dyn Job>) -> Result<(), StoreError> {
        let stopped = || StoreError::Backend("the store's writer has stopped".into());
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }

    /// How many write transactions have been committed.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panic was caught per batch; an error here has been reported.
            let _ = thread.join();
        }
    }
}

/// The writer thread: takes what is queued, up to [`MAX_BATCH`] jobs,
/// commits it, and answers it, until every handle on the queue is gone.
fn run(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>, commits: &AtomicU64) {
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH.min(64));
        batch.push(first);
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let committed = catch_unwind(AssertUnwindSafe(|| commit(db, &mut batch)))
            .unwrap_or_else(|_| Err(StoreError::Backend("the store's writer failed".into())));
        if let Ok(true) = committed {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        let committed = committed.map(|_| ());
        for job in batch {
            job.finish(committed.clone());
        }
    }
}

/// Applies `batch` in order in one write transaction and commits it
/// durably. Returns whether there was a commit: a batch that wrote nothing
/// is aborted, as its answers were read from what is durable already.
fn commit(db: &Database, batch: &mut [Box<dyn Job>]) -> Result<bool, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    // The default, spelled out: the commit returns once the data is synced
    // to disk. Callers are answered only after it.
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let mut wrote = false;
    {
        let mut table = txn.open_table(SESSIONS).map_err(backend)?;
        for job in batch.iter_mut() {
            wrote |= job.apply(&mut table)?;
        }
    }
    if wrote {
        txn.commit().map_err(backend)?;
    } else {
        txn.abort().map_err(backend)?;
    }
    Ok(wrote)
}

/// A job that keeps the writer inside its batch until released, so that a
/// test can queue writes behind it and know they form the next batch.
#[cfg(test)]
pub(super) struct Hold {
    release: mpsc::Sender<()>,
}

#[cfg(test)]
impl Hold {
    /// Submits the holding job and returns once the writer is inside it.
    pub(super) fn start(writer: &Writer) -> Hold {
        struct Holding {
            entered: mpsc::Sender<()>,
            release: mpsc::Receiver<()>,
        }
        impl Job for Holding {
            fn apply(&mut self, _: &mut SessionsTable<'_>) -> Result<bool, StoreError> {
                let _ = self.entered.send(());
                let _ = self.release.recv();
                Ok(false)
            }
            fn finish(self: Box<Self>, _: Result<(), StoreError>) {}
        }
        let (entered, inside) = mpsc::channel();
        let (release, released) = mpsc::channel();
        writer
            .submit(Box::new(Holding {
                entered,
                release: released,
            }))
            .expect("the writer runs");
        inside.recv().expect("the writer enters the holding job");
        Hold { release }
    }

    /// Lets the writer go on.
    pub(super) fn release(self) {
        let _ = self.release.send(());
    }
}
