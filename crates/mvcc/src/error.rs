//! Typed errors. Messages match etcd's strings where etcd has one, because
//! clients match on them.

use thiserror::Error;

/// Everything that can go wrong in the state machine.
///
/// A request error (everything but [`MvccError::Storage`] and
/// [`MvccError::Corrupt`]) is returned *instead of* applying the request: the
/// state, the revision and the hash are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum MvccError {
    /// The request names no key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// The request (key + value, or a whole command) is over the size limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A txn has more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyTxnOps,
    /// A txn branch puts a key twice, or puts and deletes it.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// `range_end` sorts before `key` (etcd returns an empty result; we refuse).
    #[error("etcdserver: range end is before key")]
    InvalidRange,
    /// The revision asked for has been compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The revision asked for does not exist yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease id is unknown.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with that id already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The TTL is over the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease id.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn that writes was handed to the read path (a caller's bug).
    #[error("mvcc: txn writes; it cannot be served as a read")]
    NotReadOnly,
    /// An auth store error or a refused permission check.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// A request id below its session's last applied one: that request was
    /// applied earlier and its response is no longer kept.
    #[error("concord: request already applied, response discarded")]
    AlreadyApplied,
    /// A command could not be decoded (malformed, truncated, wrong version).
    #[error("mvcc: malformed command: {0}")]
    Codec(String),
    /// The backend failed; the store must be reopened (its memory may be ahead of disk).
    #[error("mvcc: storage error: {0}")]
    Storage(String),
    /// The backend holds data that cannot be decoded.
    #[error("mvcc: corrupt backend: {0}")]
    Corrupt(String),
}

impl MvccError {
    /// Wraps any backend error.
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        MvccError::Storage(e.to_string())
    }
}

/// Result alias.
pub type Result<T, E = MvccError> = std::result::Result<T, E>;
