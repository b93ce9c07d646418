//! Time and causality for Concord: logical clocks and a hybrid logical clock.
//!
//! - [`Lamport`]: a scalar clock; `e -> f` implies `L(e) < L(f)`, never the
//!   converse.
//! - [`VClock`]: a vector clock; `e -> f` iff `V(e) < V(f)`, so it tells
//!   concurrency apart ([`Causality::Concurrent`]).
//! - [`VersionVector`], [`Dot`], [`CausalContext`], [`Dvv`] and
//!   [`Siblings`]: the per-replica versioning of data items as Riak does it
//!   with dotted version vectors, whose size grows with replicas, not clients.
//! - [`Hlc`]: a hybrid logical clock over an injectable [`PhysicalClock`],
//!   with CockroachDB's max-offset guard.
//!
//! The crate has no I/O and no dependency on the server: physical time comes
//! in through [`PhysicalClock`], so tests and the simulator control it.
#![deny(missing_docs)]

mod context;
mod dot;
mod dvv;
mod hlc;
mod lamport;
mod order;
mod physical;
mod siblings;
mod varint;
mod vclock;
mod version_vector;

pub use context::CausalContext;
pub use dot::Dot;
pub use dvv::Dvv;
pub use hlc::{Hlc, HlcError, OffsetPolicy, Timestamp};
pub use lamport::Lamport;
pub use order::Causality;
pub use physical::{ManualClock, PhysicalClock, SystemClock};
pub use siblings::Siblings;
pub use varint::DecodeError;
pub use vclock::VClock;
pub use version_vector::VersionVector;

/// Identifies a process, node or replica: the key of every vector entry.
pub type NodeId = u64;
