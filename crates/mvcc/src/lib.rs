//! Concord's state machine: the etcd v3 data model (revisions, ranges,
//! txns with compares, leases, watch events, compaction, HashKV) applied
//! from the Raft log and persisted in redb.
//!
//! The whole key index and the retained history live in memory (rebuilt
//! from redb on open); redb holds the durable copy, written in the same
//! transaction as the Raft applied index. See [`Store`] for the durability
//! contract and [`Command`] for the log encoding.
#![deny(missing_docs)]

mod apply;
mod backend;
mod checkpoint;
mod command;
mod compact;
mod config;
mod error;
mod hash;
mod intervals;
mod keyindex;
mod keymap;
mod lease;
mod range;
mod request;
mod snapshot;
mod state;
mod store;
mod txn;
mod types;
mod watch;

pub use apply::Applied;
pub use command::{Command, Response, CODEC_VERSION};
pub use config::{
    Limits, DEFAULT_BACKEND_CACHE_BYTES, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS,
    MAX_LEASE_TTL,
};
pub use error::{MvccError, Result};
pub use hash::HashKv;
pub use request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
    LeaseTimeToLive, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};
pub use snapshot::SnapshotSource;
pub use store::Store;
pub use types::{Event, EventType, KeyValue, LeaseRecord, Record, Revision};
pub use watch::Compacted;
