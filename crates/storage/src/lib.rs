//! Concord's durable storage: the write-ahead log and snapshot files.
//!
//! - [`Wal`]: a segmented log of Raft entries and hard state (every record
//!   carries its group id), framed with length + CRC32C, recovered on open
//!   (a torn tail is truncated and logged; any other bad record refuses to
//!   open, naming file and byte offset).
//! - [`GroupCommit`]: many submitters, one writer thread, one fdatasync per
//!   round.
//! - [`SnapshotStore`]: checksummed snapshot files, saved atomically, pruned,
//!   streamed in chunks and installed from chunks.
//! - [`Disk`]: everything above is generic over it; [`FsDisk`] is the real
//!   file system, [`SimDisk`] the simulator's, which loses (or tears) what
//!   was not synced when it crashes.
//!
//! Recovery protocol for one group: save the snapshot file first, then record
//! its mark in the WAL ([`Wal::compact`] for the application's own snapshot,
//! [`WalBatch::snapshot`] for one installed from the leader); on restart,
//! [`GroupLog::into_initial_state`] joins the WAL's log with the newest
//! snapshot file into the core's `InitialState`.
#![deny(missing_docs)]

mod disk;
mod error;
mod group_commit;
mod log_meta;
pub mod record;
mod recovery;
mod replay;
mod segment;
mod sim_disk;
mod snapshot_file;
mod snapshot_store;
mod wal;

pub use disk::{Disk, DiskFile, FsDisk, FsFile};
pub use error::{DecodeError, Result, StorageError};
pub use group_commit::{
    Ack, GroupCommit, GroupCommitOptions, GroupCommitStats, DEFAULT_MAX_BATCHES_PER_SYNC,
    DEFAULT_MAX_BYTES_PER_SYNC, DEFAULT_QUEUE_CAPACITY,
};
pub use record::{Record, SnapshotMark, WalBatch};
pub use recovery::{Recovered, TornTail};
pub use replay::GroupLog;
pub use segment::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
pub use sim_disk::{CrashMode, SimDisk, SimFile};
pub use snapshot_file::{SNAPSHOT_FOOTER_LEN, SNAPSHOT_HEADER_LEN};
pub use snapshot_store::{
    SnapshotInfo, SnapshotOptions, SnapshotReceiver, SnapshotStore, SnapshotWriter,
    DEFAULT_KEEP_SNAPSHOTS, DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_SNAPSHOT_BYTES,
};
pub use wal::{
    Wal, WalOptions, WalStats, DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_UNSYNCED_BYTES,
    DEFAULT_SEGMENT_SIZE, MIN_SEGMENT_SIZE,
};
