//! The etcd v3 gRPC services.

pub mod auth;
pub mod cluster;
pub mod convert;
pub mod election;
pub mod forward;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod min_revision;
pub mod once;
pub mod quota;
pub mod reconfig;
pub mod unary;
pub mod watch;

use std::sync::Arc;

use concord_proto::etcdserverpb::ResponseHeader;

use crate::shared::Shared;

/// A response header with this member's ids, the current term and `revision`.
pub fn header(s: &Shared, revision: i64) -> ResponseHeader {
    ResponseHeader {
        cluster_id: s.me.cluster_id,
        member_id: s.me.id,
        revision,
        raft_term: s.status.read().term,
    }
}

/// A header at the store's current revision.
pub fn current_header(s: &Shared) -> ResponseHeader {
    let rev = s.store.read().current_revision();
    header(s, rev)
}

/// Shared state handle every service holds.
pub type State = Arc<Shared>;

/// Counts a request by method for `/metrics`.
pub fn count(method: &'static str) {
    metrics::counter!("concord_grpc_requests_total", "method" => method).increment(1);
}

/// The error for an apply result of the wrong kind (a bug, never a client error).
pub fn unexpected() -> tonic::Status {
    tonic::Status::internal("etcdserver: unexpected apply result")
}
