//! Requests and responses, mirroring etcd's `etcdserverpb` messages.

use crate::types::KeyValue;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Sort order of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortOrder {
    /// Unsorted (by key, ascending, natively).
    #[default]
    None,
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// What a range is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// etcd's `RangeRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key.
    pub key: Bytes,
    /// End of the range (exclusive); empty = single key; `"\0"` = to the end.
    pub range_end: Bytes,
    /// Max number of key-values returned, 0 = no limit.
    pub limit: i64,
    /// Revision to read at, <= 0 = latest.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Filters (0 = off).
    pub min_mod_revision: i64,
    /// Filter (0 = off).
    pub max_mod_revision: i64,
    /// Filter (0 = off).
    pub min_create_revision: i64,
    /// Filter (0 = off).
    pub max_create_revision: i64,
}

/// etcd's `RangeResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Header revision (the store's current revision).
    pub revision: i64,
    /// The key-values.
    pub kvs: Vec<KeyValue>,
    /// More key-values matched than returned.
    pub more: bool,
    /// Number of keys in the range at the revision (before limit and filters, as etcd).
    pub count: i64,
}

/// etcd's `PutRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PutRequest {
    /// Key.
    pub key: Bytes,
    /// Value.
    pub value: Bytes,
    /// Lease id, 0 = none.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value.
    pub ignore_value: bool,
    /// Keep the current lease.
    pub ignore_lease: bool,
}

/// etcd's `PutResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PutResponse {
    /// Header revision.
    pub revision: i64,
    /// Previous key-value, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// etcd's `DeleteRangeRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key.
    pub key: Bytes,
    /// End of the range, as in [`RangeRequest`].
    pub range_end: Bytes,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// etcd's `DeleteRangeResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// Header revision.
    pub revision: i64,
    /// Number of keys deleted.
    pub deleted: i64,
    /// Deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// Compare result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// ==
    Equal,
    /// >
    Greater,
    /// <
    Less,
    /// !=
    NotEqual,
}

/// What a compare looks at, with the operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// Version.
    Version(i64),
    /// Create revision.
    Create(i64),
    /// Mod revision.
    Mod(i64),
    /// Value.
    Value(Bytes),
    /// Lease.
    Lease(i64),
}

/// etcd's `Compare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// Relation.
    pub result: CompareResult,
    /// Target and operand.
    pub target: CompareTarget,
    /// Key.
    pub key: Bytes,
    /// Range end (empty = single key).
    pub range_end: Bytes,
}

/// etcd's `RequestOp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// Range.
    Range(RangeRequest),
    /// Put.
    Put(PutRequest),
    /// DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// Nested txn.
    Txn(TxnRequest),
}

/// etcd's `ResponseOp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// Range.
    Range(RangeResponse),
    /// Put.
    Put(PutResponse),
    /// DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// Nested txn.
    Txn(TxnResponse),
}

/// etcd's `TxnRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnRequest {
    /// All must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Ops when all compares hold.
    pub success: Vec<RequestOp>,
    /// Ops otherwise.
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// True if no op in either branch (nested txns too) writes: such a txn
    /// is served as a read, without going through the log.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Txn(n) => n.is_read_only(),
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
        })
    }
}

/// etcd's `TxnResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Header revision.
    pub revision: i64,
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per op of the branch taken.
    pub responses: Vec<ResponseOp>,
}

/// Lease `TimeToLive` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseTimeToLive {
    /// Lease id.
    pub id: i64,
    /// Remaining TTL in seconds (rounded up).
    pub ttl: i64,
    /// Granted TTL.
    pub granted_ttl: i64,
    /// Attached keys (when asked for).
    pub keys: Vec<Bytes>,
}
