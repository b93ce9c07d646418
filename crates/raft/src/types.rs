//! Plain data types shared by every part of the core: ids, entries, hard state,
//! configuration state and snapshots.

use bytes::Bytes;

/// Identifier of a Raft member. `0` is reserved for "none".
pub type NodeId = u64;
/// Identifier of a Raft group (multi-Raft: many groups share one process).
pub type GroupId = u64;
/// A Raft term.
pub type Term = u64;
/// A position in the Raft log (1-based; 0 means "before the first entry").
pub type Index = u64;

/// The reserved "no node" id.
pub const NO_NODE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Application data (may be empty: a new leader appends an empty entry).
    Normal,
    /// A membership change; `data` is ignored, the change is in the variant.
    ConfChange(ConfChange),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Term in which the entry was created by a leader.
    pub term: Term,
    /// Position in the log.
    pub index: Index,
    /// Normal or configuration change.
    pub kind: EntryKind,
    /// Opaque application payload.
    pub data: Bytes,
}

impl Entry {
    /// A normal entry with `data`.
    pub fn normal(term: Term, index: Index, data: Bytes) -> Self {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data,
        }
    }

    /// Approximate encoded size, used for batching limits.
    pub fn size(&self) -> usize {
        let cc = match &self.kind {
            EntryKind::Normal => 0,
            EntryKind::ConfChange(cc) => 16 * cc.changes.len() + 8,
        };
        self.data.len() + 24 + cc
    }

    /// True if the entry is a membership change.
    pub fn is_conf_change(&self) -> bool {
        matches!(self.kind, EntryKind::ConfChange(_))
    }
}

/// State that must be durable before any message depending on it is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: Term,
    /// Candidate voted for in `term` (`NO_NODE` if none).
    pub vote: NodeId,
    /// Highest index known committed (may be persisted lazily; it only speeds recovery).
    pub commit: Index,
}

/// One step of a membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfChangeStep {
    /// Add `node` as a voter (or promote a learner).
    AddVoter(NodeId),
    /// Add `node` as a learner (non-voting; receives the log).
    AddLearner(NodeId),
    /// Remove `node` entirely.
    Remove(NodeId),
}

/// A membership change: one or more steps. A change that alters more than one
/// voter, or any change with `joint = true`, goes through joint consensus;
/// the leader leaves the joint configuration automatically once it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfChange {
    /// The steps; empty means "leave the joint configuration".
    pub changes: Vec<ConfChangeStep>,
    /// Force joint consensus even for a single-voter change.
    pub joint: bool,
}

impl ConfChange {
    /// A change that leaves the current joint configuration.
    pub fn leave_joint() -> Self {
        ConfChange {
            changes: Vec::new(),
            joint: false,
        }
    }

    /// True if this is the (empty) "leave joint" change.
    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The membership of a group, as persisted with snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Voters of the incoming (or only) configuration.
    pub voters: Vec<NodeId>,
    /// Voters of the outgoing configuration; non-empty only while joint.
    pub voters_outgoing: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Learners that become voters when the joint configuration is left
    /// (voters demoted to learners during a joint change).
    pub learners_next: Vec<NodeId>,
}

impl ConfState {
    /// True while in a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }
}

/// Metadata of a snapshot: the log position it covers and the membership there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Last index covered by the snapshot.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// A snapshot: metadata plus the application's opaque state-machine image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// State-machine image produced by the application.
    pub data: Bytes,
}

/// A read that became safe to serve once the application has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index at the time the read was requested.
    pub index: Index,
    /// The caller's context, returned untouched.
    pub ctx: Bytes,
}
