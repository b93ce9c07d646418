//! `concord-bench`: a closed-loop load generator for any etcd v3 endpoint set
//! (Concord or real etcd).
//!
//! The binary parses [`Args`] and calls [`run`], which connects
//! `--conns` connections round-robin over the endpoints (bare `h2` ones for
//! the KV workloads, `unary.rs`; hyper ones under tonic clients for the
//! streams, `conn.rs`), runs `--clients` client tasks on them (client `i`
//! uses connection `i % conns`) and returns a
//! [`Report`]: throughput, latency percentiles and errors by gRPC code.
//!
//! Workloads ([`Workload`]): `put`, `range` (linearizable or serializable),
//! `txn-put`, `watch` (fan-out latency and throughput) and `lease-keepalive`.

mod cli;
mod conn;
mod control;
mod keys;
mod kv;
mod lease;
mod progress;
mod report;
mod unary;
mod watch;

use std::fmt;

pub use cli::{Args, Consistency, Workload};
pub use conn::{connect, find_leader, normalize_endpoint, parse_endpoints, Channel};
pub use keys::{KeyGen, Rng};
pub use report::{LatencySummary, Report};
pub use unary::{MethodUri, UnaryConn};

/// The library's error: a message, enough for a command-line tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl BenchError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        BenchError(msg.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<tonic::Status> for BenchError {
    fn from(s: tonic::Status) -> Self {
        BenchError(format!("gRPC {:?}: {}", s.code(), s.message()))
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(format!("I/O: {e}"))
    }
}

/// Runs the workload `args` describes and returns its report. Errors of
/// individual requests are counted in the report; only setup failures
/// (bad flags, unreachable endpoints, a failed prefill) are errors here.
pub async fn run(args: &Args) -> Result<Report, BenchError> {
    args.validate()?;
    let mut endpoints = parse_endpoints(&args.endpoints)?;
    let leader_only =
        args.target_leader_only && matches!(args.workload, Workload::Put | Workload::TxnPut);
    if leader_only {
        endpoints = vec![find_leader(&endpoints).await?];
    }
    let mut report = match &args.workload {
        Workload::Put | Workload::TxnPut | Workload::Range { .. } => {
            let token = match &args.user {
                Some(u) => Some(unary::authenticate(&endpoints[0], u).await?),
                None => None,
            };
            kv::run(args, &endpoints, token).await?
        }
        Workload::Watch { watchers } => {
            watch::run(args, &connect(&endpoints, args.conns).await?, *watchers).await?
        }
        Workload::LeaseKeepalive { leases } => {
            lease::run(args, &connect(&endpoints, args.conns).await?, *leases).await?
        }
    };
    report.endpoints = endpoints;
    Ok(report)
}
