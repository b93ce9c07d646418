//! What keeps the driver's memory and disk bounded: background checkpoints
//! of the store, Raft snapshots every `snapshot_count` entries, and WAL
//! compaction behind a snapshot once the backend is durable there.

use std::time::Instant;

use concord_storage::SnapshotMark;

use super::{Driver, CHECKPOINT_INTERVAL, MAX_PENDING_CHANGES};
use crate::GROUP;

/// Bytes of values held in memory before a checkpoint is forced (a
/// checkpoint moves them to the backend; reads find them in the value
/// cache, then the backend).
const MAX_RESIDENT_VALUE_BYTES: usize = 32 * 1024 * 1024;
use crate::error::{raft_error, ServerError};
use crate::snapshot::snapshotter::{SnapshotJob, SnapshotSource};

impl Driver {
    /// About once a second (or after `MAX_PENDING_CHANGES`, or 32 MiB of
    /// values), write what was
    /// applied to the backend in one durable transaction: it bounds the
    /// memory held for the backend and the replay after a crash. The write
    /// and its fsync run in a background thread; this loop only hands the
    /// changes over (and collects the previous checkpoint).
    pub(super) fn maybe_checkpoint(&mut self) -> Result<(), ServerError> {
        let due = {
            let store = self.shared.store.read();
            self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL
                || store.pending_changes() >= MAX_PENDING_CHANGES
                || store.resident_value_bytes() >= MAX_RESIDENT_VALUE_BYTES
        };
        if !due {
            return Ok(());
        }
        let mut store = self.shared.store.write();
        if store.poll_checkpoint()? {
            return Ok(()); // the previous one is still being written
        }
        self.last_checkpoint = Instant::now();
        store.start_checkpoint()?;
        Ok(())
    }

    /// Every `--snapshot-count` applied entries: start a snapshot in the
    /// background (see `snapshotter.rs`); when its file is durable, compact
    /// the core's log, and the WAL once the backend is durable as far.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), ServerError> {
        self.maybe_compact_wal()?;
        if let Some(job) = &self.snapshot_job {
            if job.is_finished() {
                let job = self.snapshot_job.take().expect("checked");
                self.finish_snapshot(job)?;
            }
            return Ok(());
        }
        if self.applied < self.snapshot_index + self.snapshot_count {
            return Ok(());
        }
        let index = self.applied;
        let meta = self.node.snapshot_meta(index).map_err(raft_error)?;
        let source = {
            let store = self.shared.store.read();
            SnapshotSource {
                history: store.history_read(0)?,
                header: store.image_header(),
                leases: store.leases(),
                auth: store.auth().clone(),
                sessions: store.sessions(),
                members: self.shared.members.read().clone(),
            }
        };
        self.snapshot_job = Some(SnapshotJob::start(
            self.shared.clone(),
            self.snaps.clone(),
            source,
            meta,
        )?);
        Ok(())
    }

    pub(super) fn finish_snapshot(&mut self, job: SnapshotJob) -> Result<(), ServerError> {
        let announced = job.meta.clone();
        let started = job.started;
        let len = match job.join() {
            Ok(len) => len,
            // A compaction changed what the read view was reading: the
            // next round starts a new one.
            Err(ServerError::Mvcc(concord_mvcc::MvccError::Compacted)) => {
                tracing::info!("a compaction ran under the snapshot; trying again");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let index = announced.index;
        if index <= self.snapshot_index {
            // A newer snapshot arrived from the leader meanwhile.
            return Ok(());
        }
        // The core keeps no image: InstallSnapshot chunks are read from
        // the file (`fill_snapshot_chunks`).
        let meta = self.node.compact_external(index, len).map_err(raft_error)?;
        assert_eq!(meta, announced, "the core changed the snapshot metadata");
        self.snapshot_index = index;
        self.wal_compaction = Some(SnapshotMark {
            index: meta.index,
            term: meta.term,
        });
        tracing::info!(
            index,
            bytes = len,
            ms = started.elapsed().as_millis() as u64,
            "saved a snapshot in the background"
        );
        self.maybe_compact_wal()
    }

    /// Compacts the WAL behind the last snapshot once a backend checkpoint
    /// covers it (a restart then needs neither the entries nor the image).
    pub(super) fn maybe_compact_wal(&mut self) -> Result<(), ServerError> {
        let Some(mark) = self.wal_compaction else {
            return Ok(());
        };
        if self.shared.store.read().durable_applied_index() < mark.index {
            return Ok(());
        }
        self.wal_compaction = None;
        self.wal.compact(GROUP, mark)?;
        self.snaps.prune(GROUP)?;
        tracing::info!(index = mark.index, "compacted the WAL behind the snapshot");
        Ok(())
    }
}

impl Driver {
    /// Fills the InstallSnapshot chunks the core left empty (it keeps no
    /// image: `compact_external`) from the snapshot file's data section. A
    /// chunk whose image is gone is dropped and the core told, so the
    /// transfer starts over with the current snapshot.
    pub(super) fn fill_snapshot_chunks(&mut self, msgs: &mut Vec<concord_raft::Message>) {
        let chunk = self.snapshot_chunk_size;
        msgs.retain_mut(|m| {
            let concord_raft::Body::Snapshot {
                meta,
                offset,
                total,
                data,
            } = &mut m.body
            else {
                return true;
            };
            if !data.is_empty() || *total == 0 {
                return true;
            }
            let n = chunk.min(*total - (*offset).min(*total));
            let read = self
                .snaps
                .data_section(GROUP, meta.index)
                .and_then(|(_, at, len)| {
                    if len != *total {
                        return Err(concord_storage::StorageError::SnapshotNotFound {
                            group: GROUP,
                            index: meta.index,
                        });
                    }
                    self.snaps.read_chunk(GROUP, meta.index, at + *offset, n)
                });
            match read {
                Ok(bytes) if bytes.len() as u64 == n => {
                    *data = bytes;
                    true
                }
                other => {
                    tracing::warn!(
                        index = meta.index,
                        to = format!("{:x}", m.to),
                        error = ?other.err(),
                        "snapshot image unavailable; the transfer starts over"
                    );
                    self.node.report_snapshot_unavailable(m.to);
                    false
                }
            }
        });
    }
}
