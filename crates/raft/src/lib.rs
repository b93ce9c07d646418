//! A pure, deterministic Raft consensus core.
//!
//! No I/O, no clock, no OS randomness: time arrives as [`RawNode::tick`],
//! randomness comes from [`Config::seed`]. The same inputs always produce the
//! same outputs, which is what lets the simulator and the script tests run
//! the production code exactly.
//!
//! Feed a [`RawNode`] ticks, messages and proposals; take a [`Ready`]; follow
//! its ordering contract; call [`RawNode::advance`].
#![deny(missing_docs)]

mod config;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quorum;
mod raft;
mod reads;
mod ready;
mod replication;
pub mod rng;
mod snapshot;
mod tracker;
mod transfer;
mod types;
mod validate;

pub use config::{Config, PlantedBug, ReadMode};
pub use error::{ConfigError, RaftError};
pub use message::{Body, Message, RejectHint};
pub use node::{InitialState, ProgressStatus, RawNode, Status};
pub use progress::ProgressKind;
pub use quorum::{JointConfig, MajorityConfig, VoteResult};
pub use raft::Role;
pub use ready::{Ready, SoftState};
pub use types::{
    ConfChange, ConfChangeStep, ConfState, Entry, EntryKind, GroupId, HardState, Index, NodeId,
    ReadState, Snapshot, SnapshotMeta, Term, NO_NODE,
};
pub use validate::Refusal;

pub mod testkit;
