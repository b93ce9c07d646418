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

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, Durability};

use crate::backend::{self, Meta};
use crate::error::{MvccError, Result};
use crate::state::Changes;
use crate::store::Store;

/// Changes and their meta row, ready to be written.
pub(crate) struct Job {
    db: Arc<Database>,
    changes: Changes,
    meta: Meta,
}

impl Job {
    /// Writes the job in one durable transaction; returns the applied index
    /// it covers.
    pub(crate) fn run(self) -> Result<u64> {
        let mut tx = self.db.begin_write().map_err(MvccError::storage)?;
        tx.set_durability(Durability::Immediate);
        backend::write(&tx, &self.changes, self.meta)?;
        tx.commit().map_err(MvccError::storage)?;
        Ok(self.meta.applied)
    }
}

/// A checkpoint running in a background thread.
#[derive(Debug)]
pub(crate) struct Inflight {
    handle: JoinHandle<Result<u64>>,
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

    /// Takes everything applied since the last checkpoint.
    pub(crate) fn take_checkpoint_job(&mut self) -> Result<Job> {
        self.check_poisoned()?;
        assert!(self.inflight.is_none(), "a checkpoint is already in flight");
        Ok(Job {
            db: self.db.clone(),
            changes: std::mem::take(&mut self.state.changes),
            meta: Meta::of(&self.state, self.applied),
        })
    }

    /// Records the outcome of a job: the new durable applied index, or
    /// poisons the store (its memory is ahead of a backend that failed).
    pub(crate) fn finish_checkpoint(&mut self, r: Result<u64>) -> Result<u64> {
        match r {
            Ok(applied) => {
                assert!(
                    applied >= self.durable_applied && applied <= self.applied,
                    "checkpoint index {applied} outside [{}, {}]",
                    self.durable_applied,
                    self.applied
                );
                self.durable_applied = applied;
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
        self.poll_checkpoint()?;
        if self.inflight.is_some() || self.applied == self.durable_applied {
            return Ok(());
        }
        let job = self.take_checkpoint_job()?;
        let handle = std::thread::Builder::new()
            .name("mvcc-checkpoint".into())
            .spawn(move || job.run())
            .map_err(MvccError::storage)?;
        self.inflight = Some(Inflight { handle });
        Ok(())
    }

    /// Collects a finished background checkpoint; returns whether one is
    /// still running.
    pub fn poll_checkpoint(&mut self) -> Result<bool> {
        match &self.inflight {
            Some(i) if i.handle.is_finished() => {
                self.wait_checkpoint()?;
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Waits for the background checkpoint, if any, and collects it.
    pub fn wait_checkpoint(&mut self) -> Result<()> {
        let Some(i) = self.inflight.take() else {
            return Ok(());
        };
        let r = i
            .handle
            .join()
            .unwrap_or_else(|_| Err(MvccError::Storage("checkpoint thread panicked".into())));
        self.finish_checkpoint(r).map(|_| ())
    }
}
