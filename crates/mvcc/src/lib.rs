//! Concord's state machine: the etcd v3 data model (revisions, ranges,
//! txns with compares, leases, watch events, compaction, HashKV) and the
//! client sessions of exactly-once writes, applied from the Raft log and
//! persisted in redb.
//!
//! The key index and every retained revision's metadata live in memory
//! (rebuilt from redb on open); values stay in memory only until a
//! checkpoint writes them, then are read back from redb through a bounded
//! cache. redb holds the durable copy, written in the same transaction as
//! the Raft applied index. See [`Store`] for the durability contract and
//! [`Command`] for the log encoding.
#![deny(missing_docs)]

mod apply;
mod auth;
mod auth_check;
mod backend;
mod checkpoint;
mod chunk;
mod command;
mod compact;
mod config;
mod error;
mod hash;
mod history;
mod intervals;
mod keyindex;
mod keymap;
mod lease;
mod range;
mod read;
mod request;
mod session;
mod snapshot;
mod state;
mod store;
mod txn;
mod types;
mod values;
mod watch;

pub use apply::Applied;
pub use auth::{Access, AuthError, AuthOp, AuthState, PermType, Permission, Role, User, ROOT};
pub use command::{Command, Response, CODEC_VERSION};
pub use config::{
    Limits, DEFAULT_BACKEND_CACHE_BYTES, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS,
    DEFAULT_VALUE_CACHE_BYTES, MAX_LEASE_TTL,
};
pub use error::{MvccError, Result};
pub use hash::{HashKv, KvHasher};
pub use read::{HistoryItem, HistoryRead, RangeRead};
pub use request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse,
    LeaseTimeToLive, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};
pub use session::{SessionRecord, MAX_SESSIONS, SESSION_TTL_MS};
pub use snapshot::ImageWriter;
pub use store::Store;
pub use types::{Event, EventType, KeyValue, LeaseRecord, Record, Revision};
pub use watch::{Compacted, EventsError};
