//! bbolt database files, written in one streaming pass and read back.
//!
//! etcd's `Maintenance.Snapshot` RPC streams the server's bbolt backend file,
//! and `etcdctl snapshot status` / `snapshot restore` open what they received
//! as a bbolt database. Concord's own backend is not bolt, so to stay
//! compatible it builds a bbolt file in etcd's layout from its own state:
//!
//! - [`write_db`] writes buckets of sorted key/value pairs as a bbolt file
//!   (page size 4096, two meta pages, an empty freelist, one B+tree per
//!   bucket, small buckets inline as bbolt does); [`encoded_len`] tells its
//!   size up front;
//! - [`StreamWriter`] writes the same format to a seekable output with one
//!   bucket's items streamed in, so a large bucket is never in memory;
//! - [`read_db`] reads a file back with bbolt's own integrity checks (for
//!   tests and validation);
//! - [`etcd`] has the helpers for etcd's layout: revision keys, bucket names
//!   and the sha256 trailer `etcdctl snapshot restore` expects.
//!
//! The format's invariants are stated in the `format`, `tree`, `writer` and
//! `reader` modules.
#![deny(missing_docs)]

pub mod etcd;
pub mod format;
mod reader;
mod stream;
mod tree;
mod writer;

pub use etcd::{etcd_revision_key, with_sha256_trailer, Sha256Writer};
pub use format::Meta;
pub use reader::{active_meta, read_db, read_meta};
pub use stream::StreamWriter;
pub use writer::{encoded_len, write_db};

/// One top-level bucket: a name and its key/value pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucket {
    /// The bucket's name (non-empty, unique among the buckets of a file).
    pub name: Vec<u8>,
    /// Key/value pairs, sorted by key (bytewise), keys unique and non-empty.
    pub items: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Bucket {
    /// A bucket named `name` holding `items` (which must already be sorted).
    pub fn new(name: impl Into<Vec<u8>>, items: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            name: name.into(),
            items,
        }
    }
}

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// The output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Two buckets share a name.
    #[error("duplicate bucket {0:?}")]
    DuplicateBucket(String),
    /// A bucket has an empty name (bbolt refuses those).
    #[error("empty bucket name")]
    EmptyName,
    /// A bucket's keys are not strictly increasing.
    #[error("bucket {bucket:?}: key {index} is not greater than the key before it")]
    UnsortedKeys {
        /// The bucket.
        bucket: String,
        /// Index of the first offending item.
        index: usize,
    },
    /// A key is empty (bbolt refuses those).
    #[error("bucket {bucket:?}: key {index} is empty")]
    EmptyKey {
        /// The bucket.
        bucket: String,
        /// Index of the offending item.
        index: usize,
    },
    /// A key (or bucket name) is longer than bbolt allows.
    #[error("bucket {bucket:?}: key of {len} bytes exceeds bbolt's maximum")]
    KeyTooLarge {
        /// The bucket.
        bucket: String,
        /// The key's length.
        len: usize,
    },
    /// A value is longer than bbolt allows.
    #[error("bucket {bucket:?}: value of {len} bytes exceeds bbolt's maximum")]
    ValueTooLarge {
        /// The bucket.
        bucket: String,
        /// The value's length.
        len: usize,
    },
    /// A meta page is missing, or fails its magic, version or checksum check.
    #[error("invalid meta page: {0}")]
    InvalidMeta(String),
    /// Neither meta page is valid.
    #[error("no valid meta page (meta 0: {meta0}; meta 1: {meta1})")]
    NoValidMeta {
        /// Why meta 0 was rejected.
        meta0: String,
        /// Why meta 1 was rejected.
        meta1: String,
    },
    /// The page structure is damaged.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// A bucket holds a sub-bucket, which this reader does not support.
    #[error("bucket {0:?} holds a nested bucket (unsupported)")]
    NestedBucket(String),
}
