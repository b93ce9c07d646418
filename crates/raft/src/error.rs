//! Typed errors returned to the application.

use thiserror::Error;

use crate::types::NodeId;

/// A configuration that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting is out of range or inconsistent with another.
    #[error("invalid raft config: {0}")]
    Invalid(&'static str),
}

/// Why a request to the core was refused. Nothing changed when one is returned.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RaftError {
    /// No leader is known, so the request cannot be forwarded.
    #[error("no leader")]
    NoLeader,
    /// This member is not the leader and forwarding is disabled.
    #[error("not leader (leader hint {0})")]
    NotLeader(NodeId),
    /// A leadership transfer is in progress; proposals wait for it.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Too many uncommitted bytes: back off.
    #[error("too many uncommitted entries")]
    TooManyUncommitted,
    /// Too many reads waiting for confirmation: back off.
    #[error("too many pending reads")]
    TooManyPendingReads,
    /// A membership change is still being applied.
    #[error("a membership change is already in progress")]
    ConfChangeInProgress,
    /// The membership change is not valid against the current configuration.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(String),
    /// A learner may only be promoted once its log has caught up.
    #[error("learner {0} has not caught up with the leader")]
    LearnerNotCaughtUp(NodeId),
    /// The snapshot index is not applied yet or older than the current one.
    #[error("snapshot index {0} is not usable: {1}")]
    BadSnapshot(u64, &'static str),
    /// The message belongs to another group.
    #[error("message for group {0} stepped into group {1}")]
    WrongGroup(u64, u64),
}
