//! The Concord server: one member of a Raft-replicated, etcd v3 compatible
//! key-value store.
//!
//! [`run`] starts a member from a [`Config`] (etcd's flag names)
//! and bound [`Listeners`], and stops when the given shutdown future
//! resolves, so tests can run whole clusters in one process.
#![deny(missing_docs)]

/// A failpoint (the `fail` crate's `fail_point!`) with the `failpoints`
/// feature; nothing at all without it. Defined before the modules so that
/// they can use it.
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($name:expr) => {
        fail::fail_point!($name)
    };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($name:expr) => {};
}

mod auth;
mod authority;
pub mod cli;
mod compactor;
mod config;
mod config_file;
mod datadir;
mod driver;
mod envelope;
mod error;
#[cfg(feature = "failpoints")]
mod failpoint;
mod failstop;
mod grpc;
mod http;
mod join;
mod mailbox;
mod members;
mod proposer;
mod server;
mod shared;
mod snapshot;
pub mod tls;
pub mod tls_reload;
mod transport;
mod watch;

pub use config::Config;
pub use error::ServerError;
pub use server::{run, Listeners};

/// The one Raft group of this server (multi-Raft will add more).
pub(crate) const GROUP: u64 = 1;
