//! The chaos lab: a cluster of real Concord or etcd processes, a client
//! workload whose history is recorded, faults injected on a schedule drawn
//! from a seed, then verification (linearizability, no acknowledged write
//! lost, watch, lock and lease guarantees) and a report with each fault's
//! recovery time.
//!
//! `concord-lab list` names the scenarios; `concord-lab run SCENARIO`
//! runs one (`src/bin/concord-lab.rs`).
#![deny(missing_docs)]

pub mod cap;
pub mod clock;
pub mod cluster;
pub mod crash;
pub mod exercise;
pub mod extra;
pub mod lab;
pub mod leaders;
pub mod leases;
pub mod locks;
pub mod membership;
pub mod net;
pub mod netfault;
pub mod orphans;
pub mod perf;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod skew;
pub mod timeline;
pub mod validate;
pub mod verify;
pub mod watchers;
pub mod workload;

pub use cluster::{Cluster, Target};
pub use lab::{run, FaultRecord, Report, RunConfig};
pub use scenario::{FaultKind, Scenario, SCENARIOS};

/// Why a lab run could not be carried out (a failed check is not an
/// error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or process operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A member process could not be started.
    #[error("starting a member: {0}")]
    Start(String),
    /// No member could be reached.
    #[error("connecting: {0}")]
    Connect(String),
    /// The network of a network scenario could not be built or changed
    /// (not root, `ip` or `iptables` missing, a command failed).
    #[error("network: {0}")]
    Net(String),
    /// A membership change or leadership transfer failed.
    #[error("membership: {0}")]
    Member(String),
    /// A crash scenario cannot run: the target or the server build has
    /// no failpoints, or arming one failed.
    #[error("failpoints: {0}")]
    Failpoints(String),
    /// No leader within the time given.
    #[error("no leader within {0:?}")]
    NoLeader(std::time::Duration),
    /// The timeline could not be rendered.
    #[error("drawing the timeline: {0}")]
    Picture(String),
}
