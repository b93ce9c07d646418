//! Making a Raft snapshot without stalling the driver or holding the state
//! in memory: the driver takes a read view of the store (`HistoryRead`),
//! the leases, the auth store and the member table at the applied index, and asks the core
//! for the snapshot's metadata; a background thread reads the history in
//! steps (values from the backend, a short hold of the store's lock per
//! step) and streams the image into the snapshot file (`SnapshotWriter`);
//! the driver then compacts the core's log (`compact_external`: the core
//! keeps no image, the driver fills InstallSnapshot chunks from the file)
//! and, once the backend is durable up to the snapshot, the WAL.
//!
//! Invariants:
//! - at most one snapshot is being made at a time;
//! - the image is the state at exactly the snapshot's index (the read view
//!   fails, and the snapshot is tried again later, if a compaction changes
//!   what it reads);
//! - the WAL is compacted only behind a durable snapshot file and a durable
//!   backend checkpoint at or above the snapshot index (so a restart needs
//!   neither the compacted entries nor the image).

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use concord_mvcc::{AuthState, HistoryRead, ImageWriter, LeaseRecord, SessionRecord};
use concord_raft::SnapshotMeta;
use concord_storage::{FsDisk, SnapshotStore, SnapshotWriter};

use crate::error::ServerError;
use crate::members::MemberTable;
use crate::shared::Shared;
use crate::snapshot;
use crate::GROUP;

/// The snapshot files, shared by the driver and the snapshot thread.
pub type SharedSnapshots = Arc<SnapshotStore<FsDisk>>;

/// Revisions read per hold of the store's lock.
const STEP: usize = 4096;

/// What the image is made from, taken by the driver at one applied index.
#[derive(Debug)]
pub struct SnapshotSource {
    /// The history, read in steps.
    pub history: HistoryRead,
    /// Applied index, current and compaction revisions.
    pub header: (u64, i64, i64),
    /// Every lease.
    pub leases: Vec<LeaseRecord>,
    /// Users, roles and permissions.
    pub auth: AuthState,
    /// The client sessions of exactly-once writes at the same index.
    pub sessions: Vec<SessionRecord>,
    /// The member table.
    pub members: MemberTable,
}

/// A snapshot being written in the background.
#[derive(Debug)]
pub struct SnapshotJob {
    /// Metadata the core announced for it.
    pub meta: SnapshotMeta,
    /// When the driver started it.
    pub started: Instant,
    handle: JoinHandle<Result<u64, ServerError>>,
}

/// `std::io::Write` over a snapshot file being written.
struct Sink<'a, 'b>(&'a mut SnapshotWriter<'b, FsDisk>);

impl Write for Sink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SnapshotJob {
    /// Starts streaming `source` into the snapshot file for `meta`.
    pub fn start(
        shared: Arc<Shared>,
        snaps: SharedSnapshots,
        source: SnapshotSource,
        meta: SnapshotMeta,
    ) -> Result<SnapshotJob, ServerError> {
        assert_eq!(
            source.header.0, meta.index,
            "the read view and the snapshot metadata must be at one index"
        );
        let job_meta = meta.clone();
        let handle = std::thread::Builder::new()
            .name("snapshotter".into())
            .spawn(move || write_image(&shared, &snaps, source, &job_meta))?;
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

    /// Waits for the job; the length of the image now durable in its file.
    pub fn join(self) -> Result<u64, ServerError> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(ServerError::Internal("snapshot thread panicked".into())))
    }
}

/// Streams the image into a new snapshot file; returns its length.
fn write_image(
    shared: &Shared,
    snaps: &SnapshotStore<FsDisk>,
    source: SnapshotSource,
    meta: &SnapshotMeta,
) -> Result<u64, ServerError> {
    let SnapshotSource {
        mut history,
        header: (applied, current, compacted),
        leases,
        auth,
        sessions,
        members,
    } = source;
    let io = |e: std::io::Error| ServerError::Internal(format!("snapshot image: {e}"));
    let mut file = snaps.create(GROUP, meta)?;
    file.write(&snapshot::head(&members))?;
    let mut image = ImageWriter::new(Sink(&mut file), applied, current, compacted).map_err(io)?;
    loop {
        let items = shared.store.read().history_step(&mut history, STEP)?;
        if items.is_empty() {
            break;
        }
        let mut failed = None;
        history.visit(&items, |it, value| {
            if let Err(e) = image.record_with_value(it.revision, &it.record, value) {
                failed.get_or_insert(e);
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(io(e));
        }
    }
    for l in &leases {
        image.lease(l).map_err(io)?;
    }
    image.auth(&auth).map_err(io)?;
    for s in &sessions {
        image.session(s).map_err(io)?;
    }
    image.finish().map_err(io)?;
    let len = file.data_len();
    // The image is written, not yet synced or renamed into place.
    failpoint!("snapshot-before-save");
    file.finish()?;
    failpoint!("snapshot-after-save");
    Ok(len)
}
