//! The Concord server: one member of a Raft-replicated, etcd v3 compatible
//! key-value store.
//!
//! [`server::run`] starts a member from a [`Config`] (etcd's flag names)
//! and bound [`server::Listeners`], and stops when the given shutdown future
//! resolves, so tests can run whole clusters in one process.
#![deny(missing_docs)]

mod authority;
pub mod bolt_snapshot;
pub mod cli;
pub mod compactor;
pub mod config;
pub mod config_file;
pub mod datadir;
pub mod driver;
pub mod envelope;
pub mod error;
pub mod failstop;
pub mod grpc;
pub mod http;
pub mod join;
pub mod members;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod snapshotter;
pub mod tls;
pub mod tls_reload;
pub mod transport;
pub mod watch;

pub use config::Config;
pub use error::ServerError;
pub use server::{run, Listeners};
