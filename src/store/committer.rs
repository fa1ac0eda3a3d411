//! Every synced write on an engine this process alone opens: one thread
//! takes every batch waiting, applies them as one synced batch, and answers
//! each caller. Concurrent writes share one sync (group commit) without
//! RocksDB's write-group hand-offs — a submission from async code, which
//! waits on a channel instead of holding a blocking thread, and a filing
//! made under the store's write lock alike.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, Weak};

use super::Inner;
use super::backend::{BackendError, Batch, Durability, ErrorKind};

/// Most batches applied as one.
const MOST_AT_ONCE: usize = 256;

struct Job {
    batch: Batch,
    done: Answer,
}

/// Where a job's result goes: to an async caller, or to one blocked on a
/// thread of its own.
enum Answer {
    Async(tokio::sync::oneshot::Sender<Result<(), BackendError>>),
    Blocking(std::sync::mpsc::SyncSender<Result<(), BackendError>>),
}

impl Answer {
    fn send(self, result: Result<(), BackendError>) {
        // A caller that stopped waiting is no one to answer.
        match self {
            Answer::Async(tx) => drop(tx.send(result)),
            Answer::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

pub(super) struct Committer {
    jobs: Mutex<Sender<Job>>,
}

impl Committer {
    /// Starts the thread; it ends when the store (holding the sender) goes.
    pub(super) fn start(inner: Weak<Inner>) -> Committer {
        let (jobs, rx) = channel();
        std::thread::Builder::new()
            .name("imgate-commit".into())
            .spawn(move || run(rx, inner))
            .expect("a thread for store commits");
        Committer { jobs: Mutex::new(jobs) }
    }

    /// Applies `batch` (synced) together with whatever else is waiting.
    pub(super) async fn commit(&self, batch: Batch) -> Result<(), BackendError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.send(Job { batch, done: Answer::Async(done) })?;
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// As [`Committer::commit`], for a caller on a thread it may block
    /// (one holding the store's write lock, say): its sync is shared too.
    pub(super) fn commit_blocking(&self, batch: Batch) -> Result<(), BackendError> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.send(Job { batch, done: Answer::Blocking(done) })?;
        answer.recv().unwrap_or_else(|_| Err(gone()))
    }

    fn send(&self, job: Job) -> Result<(), BackendError> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).send(job).map_err(|_| gone())
    }
}

fn gone() -> BackendError {
    BackendError::new(ErrorKind::Unavailable, "the store is closing")
}

fn run(rx: Receiver<Job>, inner: Weak<Inner>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MOST_AT_ONCE
            && let Ok(job) = rx.try_recv()
        {
            jobs.push(job);
        }
        let mut all = Batch::default();
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            all.append(job.batch);
            answers.push(job.done);
        }
        let result = match inner.upgrade() {
            // The store is let go of before anyone is answered: a caller
            // that drops it next closes the engine on its own thread. A
            // write that panics fails its callers, not every later one.
            Some(inner) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.engine.write(all, Durability::Durable)))
                    .unwrap_or_else(|_| Err(BackendError::new(ErrorKind::Other, "a store write failed unexpectedly")))
            }
            None => Err(gone()),
        };
        for done in answers {
            done.send(result.clone());
        }
    }
}
