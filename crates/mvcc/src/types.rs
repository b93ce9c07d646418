//! Data-model types: revisions, key-values, events.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A revision: `main` is bumped once per write transaction, `sub` counts the
/// changes inside it (0, 1, 2, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Revision {
    /// Main revision (etcd's header revision / mod_revision).
    pub main: i64,
    /// Sub revision inside the write transaction.
    pub sub: i64,
}

impl Revision {
    /// Builds a revision.
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }
}

/// etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Main revision of the last creation of the key.
    pub create_revision: i64,
    /// Main revision of the last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after creation).
    pub version: i64,
    /// The value.
    pub value: Bytes,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// A put (creation or update).
    Put,
    /// A deletion (tombstone).
    Delete,
}

/// etcd's `mvccpb.Event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// For a put, the new key-value; for a delete, the key with its
    /// `mod_revision` set to the deletion revision (other fields zero).
    pub kv: KeyValue,
    /// The key-value before this event, when still retained.
    pub prev_kv: Option<KeyValue>,
    /// Exact revision (main + sub) of the event: events are ordered by it.
    pub revision: Revision,
}

/// One entry of the history: what was written at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// The value (empty for a tombstone).
    pub value: Bytes,
    /// Create revision (0 for a tombstone).
    pub create_revision: i64,
    /// Version (0 for a tombstone).
    pub version: i64,
    /// Lease (0 for a tombstone).
    pub lease: i64,
    /// True when this revision deleted the key.
    pub tombstone: bool,
}

impl Record {
    /// The key-value this record represents at `rev`.
    pub fn to_kv(&self, rev: Revision) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Lease id (> 0).
    pub id: i64,
    /// Granted TTL in seconds.
    pub ttl: i64,
    /// Remaining TTL in seconds from the last checkpoint (0 = none).
    pub remaining_ttl: i64,
}
