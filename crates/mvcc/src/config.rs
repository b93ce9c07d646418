//! Named limits with defaults (DESIGN rule 7).

/// Default maximum request size: 1.5 MiB, like etcd's `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Default maximum operations in one txn, like etcd's `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Default redb page cache: reads are served from memory, so the backend
/// cache only needs to hold the B-tree pages that writes touch.
pub const DEFAULT_BACKEND_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Default cache of values read back from the backend (values stay in
/// memory only until a checkpoint writes them).
pub const DEFAULT_VALUE_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Maximum lease TTL in seconds, like etcd's `MaxLeaseTTL`.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Limits enforced on every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Max bytes of key + value of one put (and of a whole command's keys and values).
    pub max_request_bytes: usize,
    /// Max ops in each branch of a txn (checked at every nesting level), and max compares.
    pub max_txn_ops: usize,
    /// redb cache size in bytes (redb's own default is 1 GiB).
    pub backend_cache_bytes: usize,
    /// Cache of values read back from the backend, in bytes.
    pub value_cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            backend_cache_bytes: DEFAULT_BACKEND_CACHE_BYTES,
            value_cache_bytes: DEFAULT_VALUE_CACHE_BYTES,
        }
    }
}
