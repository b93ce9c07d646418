//! Checkpoints: writing what was applied since the last one to the backend
//! in one durable redb transaction, either in the caller's thread
//! ([`Store::checkpoint`]) or in a background thread
//! ([`Store::start_checkpoint`]), so that the Raft loop never waits for a
//! backend fsync.
//!
//! Invariants:
//! - at most one checkpoint is in flight, and checkpoints commit in the
//!   order their changes were taken (every other backend write, a sync
//!   checkpoint or a snapshot restore, first waits for the one in flight);
//! - a job carries its changes and the meta row (applied index, revisions)
//!   of the same instant, so the backend never holds data without the
//!   applied index that covers it;
//! - `durable_applied` moves only when a job's commit has returned.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::Durability;

use crate::backend::{self, Meta};
use crate::error::{MvccError, Result};
use crate::state::Changes;
use crate::store::Store;
use crate::types::Revision;
use crate::values::ValueStore;

/// Changes and their meta row, ready to be written.
pub(crate) struct Job {
    values: Arc<ValueStore>,
    changes: Changes,
    meta: Meta,
}

/// What a checkpoint wrote: the applied index it covers, and the values
/// now in the backend (their memory copies can go).
pub(crate) struct Written {
    pub(crate) applied: u64,
    pub(crate) values: Vec<(Revision, Bytes)>,
}

impl Job {
    /// Writes the job in one durable transaction.
    pub(crate) fn run(self) -> Result<Written> {
        let db = self.values.db();
        let mut tx = db.begin_write().map_err(MvccError::storage)?;
        tx.set_durability(Durability::Immediate);
        backend::write(&tx, &self.changes, self.meta)?;
        tx.commit().map_err(MvccError::storage)?;
        drop(db);
        Ok(Written {
            applied: self.meta.applied,
            values: self
                .changes
                .hist_put
                .into_iter()
                .filter(|(_, r)| !r.tombstone)
                .map(|(rev, r)| (rev, r.value))
                .collect(),
        })
    }
}

/// The background checkpoint thread: one per store, started with the first
/// background checkpoint and kept. With a new thread per checkpoint (one
/// every second under load), each started with a fresh stack and allocator
/// heap, so each checkpoint's buffers were fresh pages for the kernel to
/// fault in and zero.
#[derive(Debug)]
pub(crate) struct Worker {
    jobs: SyncSender<Job>,
    /// In a mutex only so that the store stays `Sync`; always reached
    /// through `&mut` (`get_mut`, no locking).
    done: Mutex<Receiver<Result<Written>>>,
    /// Whether a job was sent and its result not yet received.
    busy: bool,
    _thread: JoinHandle<()>,
}

impl Worker {
    fn start() -> Result<Worker> {
        // Capacity 1 is never waited on: at most one job is in flight.
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("mvcc-checkpoint".into())
            .spawn(move || {
                // Ends when the store (the sender) is dropped.
                while let Ok(job) = job_rx.recv() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                        .unwrap_or_else(|_| {
                            Err(MvccError::Storage("checkpoint thread panicked".into()))
                        });
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })
            .map_err(MvccError::storage)?;
        Ok(Worker {
            jobs,
            done: Mutex::new(done),
            busy: false,
            _thread: thread,
        })
    }

    fn done(&mut self) -> &mut Receiver<Result<Written>> {
        self.done.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn lost() -> MvccError {
        MvccError::Storage("checkpoint thread is gone".into())
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Store {
    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(MvccError::Storage(
                "store poisoned by an earlier failure".into(),
            ));
        }
        Ok(())
    }

    /// Values a checkpoint wrote leave memory: reads find them in the
    /// value cache, then in the backend. (A revision compacted meanwhile
    /// is gone from history and skipped.)
    fn release_values(&mut self, values: Vec<(Revision, Bytes)>) {
        let cache = self.values.clone();
        for (rev, value) in values {
            if let Some(h) = self.state.history.get_mut(&rev) {
                if let Some(v) = h.value.take() {
                    self.state.resident_bytes -= v.len();
                    cache.cache(rev, value);
                }
            }
        }
    }

    /// Takes everything applied since the last checkpoint.
    pub(crate) fn take_checkpoint_job(&mut self) -> Result<Job> {
        self.check_poisoned()?;
        assert!(
            !self.checkpoint_in_flight(),
            "a checkpoint is already in flight"
        );
        Ok(Job {
            values: self.values.clone(),
            changes: self.state.changes.take(),
            meta: Meta::of(&self.state, self.applied),
        })
    }

    /// Records the outcome of a job: the new durable applied index (and
    /// the values it wrote leave memory for the cache), or poisons the
    /// store (its memory is ahead of a backend that failed).
    pub(crate) fn finish_checkpoint(&mut self, r: Result<Written>) -> Result<u64> {
        match r {
            Ok(Written { applied, values }) => {
                assert!(
                    applied >= self.durable_applied && applied <= self.applied,
                    "checkpoint index {applied} outside [{}, {}]",
                    self.durable_applied,
                    self.applied
                );
                self.durable_applied = applied;
                self.release_values(values);
                Ok(applied)
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Starts writing everything applied so far in a background thread,
    /// unless one is already running (then this is a no-op: the next call
    /// takes everything since). [`Store::poll_checkpoint`] collects it.
    pub fn start_checkpoint(&mut self) -> Result<()> {
        if self.poll_checkpoint()? || self.applied == self.durable_applied {
            return Ok(());
        }
        if self.worker.is_none() {
            self.worker = Some(Worker::start()?);
        }
        let job = self.take_checkpoint_job()?;
        let w = self.worker.as_mut().expect("started above");
        if w.jobs.send(job).is_err() {
            self.poisoned = true;
            return Err(Worker::lost());
        }
        w.busy = true;
        Ok(())
    }

    /// Collects a finished background checkpoint; returns whether one is
    /// still running.
    pub fn poll_checkpoint(&mut self) -> Result<bool> {
        let Some(w) = self.worker.as_mut().filter(|w| w.busy) else {
            return Ok(false);
        };
        let r = match w.done().try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return Ok(true),
            Err(TryRecvError::Disconnected) => Err(Worker::lost()),
        };
        w.busy = false;
        self.finish_checkpoint(r).map(|_| false)
    }

    /// Waits for the background checkpoint, if any, and collects it.
    pub fn wait_checkpoint(&mut self) -> Result<()> {
        let Some(w) = self.worker.as_mut().filter(|w| w.busy) else {
            return Ok(());
        };
        let r = w.done().recv().unwrap_or_else(|_| Err(Worker::lost()));
        w.busy = false;
        self.finish_checkpoint(r).map(|_| ())
    }

    /// Whether a background checkpoint is in flight.
    pub(crate) fn checkpoint_in_flight(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| w.busy)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::command::Command;
    use crate::request::{PutRequest, RangeRequest};
    use crate::store::Store;

    fn put(i: u64) -> (u64, Command) {
        let cmd = Command::Put(PutRequest {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(format!("v{i}")),
            ..Default::default()
        });
        (i, cmd)
    }

    #[test]
    fn background_checkpoints_reuse_one_thread_and_land_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path).unwrap();
        let mut thread = None;
        for round in 0..5u64 {
            let batch: Vec<_> = (round * 10 + 1..=round * 10 + 10).map(put).collect();
            store.apply_batch(&batch).unwrap();
            store.start_checkpoint().unwrap();
            assert!(store.checkpoint_in_flight());
            // A second start while one is in flight is a no-op.
            store.start_checkpoint().unwrap();
            store.wait_checkpoint().unwrap();
            assert!(!store.checkpoint_in_flight());
            assert_eq!(store.durable_applied_index(), round * 10 + 10);
            let id = store.worker.as_ref().unwrap()._thread.thread().id();
            assert_eq!(
                *thread.get_or_insert(id),
                id,
                "one thread for every checkpoint"
            );
        }
        // Polling collects a finished job without waiting.
        store.apply_batch(&[put(51)]).unwrap();
        store.start_checkpoint().unwrap();
        while store.poll_checkpoint().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(store.durable_applied_index(), 51);
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.applied_index(), 51);
        let all = store
            .range(&RangeRequest {
                key: Bytes::from_static(b"\0"),
                range_end: Bytes::from_static(b"\0"),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.kvs.len(), 51);
    }
}
