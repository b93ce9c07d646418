//! Concord's wire formats.
//!
//! - [`etcdserverpb`], [`mvccpb`], [`authpb`], [`v3lockpb`], [`v3electionpb`]: the etcd v3
//!   client API, from protos written for Concord whose names, field numbers
//!   and enum values match etcd's, so real etcd clients work unchanged.
//! - [`peer`]: Concord's peer protocol (Raft messages between members) and
//!   its conversion to and from the core's [`concord_raft::Message`].
#![deny(missing_docs)]

/// etcd's `mvccpb` package: key-values and watch events.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's `authpb` package: users, roles and key-range permissions.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's `etcdserverpb` package: KV, Watch, Lease, Cluster, Maintenance, Auth.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// etcd's `v3lockpb` package: the Lock service.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}

/// etcd's `v3electionpb` package: the Election service.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}

/// The generated peer protocol messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod concordpeer {
    include!(concat!(env!("OUT_DIR"), "/concordpeer.rs"));
}

pub mod grpc_frame;
pub mod peer;
