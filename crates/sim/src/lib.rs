//! A deterministic simulator for Concord's Raft core.
//!
//! One seed drives everything: a cluster of real `concord-raft` cores, each
//! with a disk that loses unsynced writes on crash, a key-value state
//! machine, a clock that drifts; a network that loses, delays, reorders and
//! duplicates messages and can be partitioned in any shape; clients that
//! record histories; and a fault schedule. Invariants are checked after every
//! event, the client history is checked for linearizability after each run,
//! and after the faults heal the cluster must elect a leader and commit.
//! Same seed, same run.
#![deny(missing_docs)]

pub mod bugs;
pub mod client;
pub mod clock;
pub mod config;
mod faults;
pub mod invariants;
pub mod kv;
pub mod net;
pub mod node;
pub mod real_disk;
pub mod rng;
mod run;
pub mod storage;
mod world;

pub use config::{FaultConfig, SimConfig};
pub use run::{run, Linearizability, SimReport};
pub use world::{Stats, World};
