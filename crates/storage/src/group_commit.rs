//! Group commit: many threads submit batches, one writer thread appends
//! everything queued and covers it with ONE fdatasync, then acknowledges
//! each submitter.
//!
//! The queue is bounded (submitters block when it is full: backpressure), and
//! so is what one round takes (batches and bytes). A batch refused by the
//! log's invariants fails alone; an I/O failure fails the whole round and
//! poisons the WAL, so every later submission fails too.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use concord_raft::GroupId;

use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::record::{SnapshotMark, WalBatch};
use crate::wal::Wal;

/// Default bound of the submission queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Default most batches covered by one fdatasync.
pub const DEFAULT_MAX_BATCHES_PER_SYNC: usize = 1024;
/// Default most (approximate) bytes covered by one fdatasync.
pub const DEFAULT_MAX_BYTES_PER_SYNC: usize = 8 << 20;

/// Bounds of a [`GroupCommit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// Submissions that may wait in the queue; further submitters block.
    pub queue_capacity: usize,
    /// Most batches one writer round takes.
    pub max_batches_per_sync: usize,
    /// Most bytes (by [`WalBatch::size`]) one writer round takes (at least one batch).
    pub max_bytes_per_sync: usize,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        GroupCommitOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batches_per_sync: DEFAULT_MAX_BATCHES_PER_SYNC,
            max_bytes_per_sync: DEFAULT_MAX_BYTES_PER_SYNC,
        }
    }
}

/// Counters of a [`GroupCommit`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Writer rounds (each ends with at most one fdatasync of the batches).
    pub rounds: u64,
    /// Batches acknowledged as durable.
    pub batches: u64,
    /// fdatasync calls made by the WAL (including segment creation).
    pub fdatasyncs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rounds: AtomicU64,
    batches: AtomicU64,
    fdatasyncs: AtomicU64,
}

enum Request {
    Append {
        batch: WalBatch,
        done: SyncSender<Result<()>>,
    },
    Compact {
        group: GroupId,
        mark: SnapshotMark,
        done: SyncSender<Result<usize>>,
    },
}

/// An acknowledgement to wait for: the batch is durable when `wait` returns `Ok`.
#[derive(Debug)]
#[must_use = "a submission is durable only once its Ack is waited for"]
pub struct Ack {
    rx: Receiver<Result<()>>,
}

impl Ack {
    /// Block until the batch is durable (or failed).
    pub fn wait(self) -> Result<()> {
        self.rx.recv().unwrap_or(Err(StorageError::Closed))
    }
}

/// The group-commit front end of a [`Wal`], owning it on a writer thread.
pub struct GroupCommit<D: Disk> {
    tx: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<Wal<D>>>,
    counters: Arc<Counters>,
}

impl<D: Disk> fmt::Debug for GroupCommit<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<D: Disk> GroupCommit<D> {
    /// Start the writer thread over `wal`.
    pub fn start(wal: Wal<D>, opts: GroupCommitOptions) -> Result<Self> {
        if opts.queue_capacity == 0
            || opts.max_batches_per_sync == 0
            || opts.max_bytes_per_sync == 0
        {
            return Err(StorageError::InvalidOptions(
                "group commit bounds must be positive".into(),
            ));
        }
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let dir = wal.dir().to_path_buf();
        let writer = std::thread::Builder::new()
            .name("concord-wal-writer".into())
            .spawn(move || writer_loop(wal, rx, opts, c))
            .map_err(|e| StorageError::io(dir, e))?;
        Ok(GroupCommit {
            tx: Some(tx),
            writer: Some(writer),
            counters,
        })
    }

    fn send(&self, req: Request) -> Result<()> {
        let tx = self.tx.as_ref().ok_or(StorageError::Closed)?;
        tx.send(req).map_err(|_| StorageError::Closed)
    }

    /// Queue a batch (blocking while the queue is full); wait on the returned
    /// [`Ack`] for durability.
    pub fn submit(&self, batch: WalBatch) -> Result<Ack> {
        let (done, rx) = mpsc::sync_channel(1);
        self.send(Request::Append { batch, done })?;
        Ok(Ack { rx })
    }

    /// Submit a batch and wait until it is durable.
    pub fn append(&self, batch: WalBatch) -> Result<()> {
        self.submit(batch)?.wait()
    }

    /// [`Wal::compact`] through the writer thread.
    pub fn compact(&self, group: GroupId, mark: SnapshotMark) -> Result<usize> {
        let (done, rx) = mpsc::sync_channel(1);
        self.send(Request::Compact { group, mark, done })?;
        rx.recv().unwrap_or(Err(StorageError::Closed))
    }

    /// Counters so far.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            rounds: self.counters.rounds.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            fdatasyncs: self.counters.fdatasyncs.load(Ordering::Relaxed),
        }
    }

    /// Finish the queued work, stop the writer and hand the WAL back.
    pub fn shutdown(mut self) -> Result<Wal<D>> {
        self.tx = None;
        let writer = self.writer.take().ok_or(StorageError::Closed)?;
        writer.join().map_err(|_| StorageError::Closed)
    }
}

impl<D: Disk> Drop for GroupCommit<D> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn writer_loop<D: Disk>(
    mut wal: Wal<D>,
    rx: Receiver<Request>,
    opts: GroupCommitOptions,
    counters: Arc<Counters>,
) -> Wal<D> {
    let mut round = Vec::with_capacity(opts.max_batches_per_sync);
    let mut waiting = Vec::with_capacity(opts.max_batches_per_sync);
    while let Ok(first) = rx.recv() {
        let mut bytes = request_size(&first);
        round.push(first);
        while round.len() < opts.max_batches_per_sync && bytes < opts.max_bytes_per_sync {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += request_size(&req);
                    round.push(req);
                }
                Err(_) => break,
            }
        }
        for req in round.drain(..) {
            match req {
                Request::Append { batch, done } => match wal.append(&batch) {
                    Ok(()) => waiting.push(done),
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                },
                Request::Compact { group, mark, done } => {
                    let _ = done.send(wal.compact(group, mark));
                }
            }
        }
        let result = wal.sync();
        let acked = waiting.len() as u64;
        // Count before acknowledging: whoever saw its ack also sees it counted.
        counters.rounds.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            counters.batches.fetch_add(acked, Ordering::Relaxed);
        }
        counters
            .fdatasyncs
            .store(wal.stats().fdatasyncs, Ordering::Relaxed);
        for done in waiting.drain(..) {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(e.duplicate()),
            });
        }
    }
    wal
}

fn request_size(req: &Request) -> usize {
    match req {
        Request::Append { batch, .. } => batch.size(),
        Request::Compact { .. } => 32,
    }
}
