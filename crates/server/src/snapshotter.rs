//! Making a Raft snapshot without stalling the driver: the driver copies the
//! state (cheap: records share their buffers) and asks the core for the
//! snapshot's metadata; a background thread encodes the image and writes
//! the snapshot file durably; the driver then compacts the core's log and,
//! once the backend is durable up to the snapshot, the WAL.
//!
//! Invariants:
//! - at most one snapshot is being made at a time;
//! - the WAL is compacted only behind a durable snapshot file and a durable
//!   backend checkpoint at or above the snapshot index (so a restart needs
//!   neither the compacted entries nor the image).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use concord_mvcc::SnapshotSource;
use concord_raft::{Snapshot, SnapshotMeta};
use concord_storage::{FsDisk, SnapshotStore};
use parking_lot::Mutex;

use crate::driver::GROUP;
use crate::error::ServerError;
use crate::members::MemberTable;
use crate::snapshot;

/// The snapshot files, shared by the driver and the snapshot thread.
pub type SharedSnapshots = Arc<Mutex<SnapshotStore<FsDisk>>>;

/// A snapshot being encoded and written in the background.
#[derive(Debug)]
pub struct SnapshotJob {
    /// Metadata the core announced for it.
    pub meta: SnapshotMeta,
    /// When the driver started it.
    pub started: Instant,
    handle: JoinHandle<Result<Snapshot, ServerError>>,
}

impl SnapshotJob {
    /// Starts encoding `source` with `members` under `meta` and saving it.
    pub fn start(
        snaps: SharedSnapshots,
        members: MemberTable,
        source: SnapshotSource,
        meta: SnapshotMeta,
    ) -> Result<SnapshotJob, ServerError> {
        assert_eq!(
            source.applied_index(),
            meta.index,
            "the state copy and the snapshot metadata must be at one index"
        );
        let job_meta = meta.clone();
        let handle = std::thread::Builder::new()
            .name("snapshotter".into())
            .spawn(move || {
                let data = snapshot::encode_source(&members, &source);
                drop(source);
                let snap = Snapshot {
                    meta: job_meta,
                    data: data.into(),
                };
                snaps.lock().save(GROUP, &snap)?;
                Ok(snap)
            })?;
        Ok(SnapshotJob {
            meta,
            started: Instant::now(),
            handle,
        })
    }

    /// True once the file is written (or writing failed).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the job; the snapshot whose file is now durable.
    pub fn join(self) -> Result<Snapshot, ServerError> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(ServerError::Internal("snapshot thread panicked".into())))
    }
}
