//! Typed errors of the storage layer.

use std::io;
use std::path::{Path, PathBuf};

use concord_raft::GroupId;

/// Result alias used throughout the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why a record payload could not be decoded. `offset` is relative to the
/// start of the payload (the byte after the record type).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed record at payload byte {offset}: {reason}")]
pub struct DecodeError {
    /// Position in the payload where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system (or the simulated disk) reported an error.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// File or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file failed verification: bad checksum, bad header, malformed
    /// record, inconsistent log. Nothing in it is trusted.
    #[error("corrupt file {} at byte offset {offset}: {reason}", .path.display())]
    Corrupt {
        /// The file (or directory, for a missing segment).
        path: PathBuf,
        /// Byte offset in that file where the problem was detected.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The caller handed in a batch that would break a log invariant
    /// (gap, decreasing term, write below the snapshot, ...). Nothing was written.
    #[error("invalid batch for group {group}: {reason}")]
    InvalidBatch {
        /// Raft group of the batch.
        group: GroupId,
        /// What was wrong.
        reason: String,
    },
    /// A record, chunk or snapshot is larger than its configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Options that cannot work together.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An earlier write or fdatasync failed; the WAL refuses further writes
    /// because the state of the file is unknown (restart to recover).
    #[error("the WAL failed an earlier write or sync and refuses further writes; reopen it")]
    Poisoned,
    /// The group-commit writer thread has stopped.
    #[error("the group-commit writer has stopped")]
    Closed,
    /// No snapshot file with that identity.
    #[error("no snapshot for group {group} at index {index}")]
    SnapshotNotFound {
        /// Raft group.
        group: GroupId,
        /// Requested index.
        index: u64,
    },
    /// A snapshot chunk arrived at the wrong offset.
    #[error("snapshot chunk at offset {offset}, expected offset {expected}")]
    ChunkOutOfOrder {
        /// Offset of the chunk received.
        offset: u64,
        /// Offset the receiver expects next.
        expected: u64,
    },
    /// The WAL and the snapshot given to build a Raft initial state disagree.
    #[error("group {group}: {reason}")]
    Inconsistent {
        /// Raft group.
        group: GroupId,
        /// What disagrees.
        reason: String,
    },
}

impl StorageError {
    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A corruption error about `path` at `offset`.
    pub fn corrupt(path: impl AsRef<Path>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.as_ref().to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(group: GroupId, reason: impl Into<String>) -> Self {
        StorageError::InvalidBatch {
            group,
            reason: reason.into(),
        }
    }

    /// A copy of this error, for handing one failure to many waiters
    /// (`io::Error` is not `Clone`; its kind and message are kept).
    pub fn duplicate(&self) -> Self {
        match self {
            StorageError::Io { path, source } => StorageError::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StorageError::Corrupt {
                path,
                offset,
                reason,
            } => StorageError::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            StorageError::InvalidBatch { group, reason } => StorageError::InvalidBatch {
                group: *group,
                reason: reason.clone(),
            },
            StorageError::TooLarge { what, size, limit } => StorageError::TooLarge {
                what,
                size: *size,
                limit: *limit,
            },
            StorageError::InvalidOptions(s) => StorageError::InvalidOptions(s.clone()),
            StorageError::Poisoned => StorageError::Poisoned,
            StorageError::Closed => StorageError::Closed,
            StorageError::SnapshotNotFound { group, index } => StorageError::SnapshotNotFound {
                group: *group,
                index: *index,
            },
            StorageError::ChunkOutOfOrder { offset, expected } => StorageError::ChunkOutOfOrder {
                offset: *offset,
                expected: *expected,
            },
            StorageError::Inconsistent { group, reason } => StorageError::Inconsistent {
                group: *group,
                reason: reason.clone(),
            },
        }
    }
}
