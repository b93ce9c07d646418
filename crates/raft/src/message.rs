//! Messages exchanged between members of one Raft group.
//!
//! Every message carries the group id so that many groups can share one
//! transport (multi-Raft).

use bytes::Bytes;

use crate::types::{Entry, GroupId, Index, NodeId, SnapshotMeta, Term};

/// A message between two members of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The Raft group this message belongs to.
    pub group: GroupId,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's term; `0` for local messages that carry no term (proposals).
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// Why an append was rejected, and where the leader should retry: the
/// follower's hint lets the leader skip a whole term per round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectHint {
    /// The follower's last index at or below the probe that may match.
    pub index: Index,
    /// Term of the follower's entry at `index` (0 if it has none).
    pub term: Term,
}

/// The kinds of message and their payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Leader -> follower: append `entries` after (`index`, `log_term`).
    Append {
        /// Index of the entry before `entries`.
        index: Index,
        /// Term of the entry at `index`.
        log_term: Term,
        /// Entries to append (possibly empty: a probe).
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: Index,
    },
    /// Follower -> leader: result of an append.
    AppendResponse {
        /// On success: last index now matching the leader. On reject: the probed index.
        index: Index,
        /// Set when the append did not match.
        reject: Option<RejectHint>,
    },
    /// Candidate -> voter: request a vote (or a pre-vote).
    Vote {
        /// True for a pre-vote (does not change any state on the voter).
        pre: bool,
        /// Candidate's last log index.
        last_index: Index,
        /// Candidate's last log term.
        last_term: Term,
        /// Set when the election was triggered by a leadership transfer; it
        /// overrides the voter's leader lease.
        transfer: bool,
    },
    /// Voter -> candidate.
    VoteResponse {
        /// Answer to a pre-vote.
        pre: bool,
        /// Granted or rejected.
        granted: bool,
    },
    /// Leader -> follower: I am alive; `ctx` is the read-index round it confirms.
    Heartbeat {
        /// min(leader commit, follower match).
        commit: Index,
        /// Read-index round number (0 if none).
        ctx: u64,
    },
    /// Follower -> leader.
    HeartbeatResponse {
        /// Echo of the heartbeat's round.
        ctx: u64,
    },
    /// Leader -> follower: one chunk of a snapshot.
    Snapshot {
        /// The snapshot's position and membership.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot image.
        offset: u64,
        /// Total size of the image.
        total: u64,
        /// This chunk.
        data: Bytes,
    },
    /// Follower -> leader: chunk received (or the transfer failed).
    SnapshotResponse {
        /// Snapshot index this answers.
        index: Index,
        /// Next byte offset expected; equals the total when fully installed.
        next_offset: u64,
        /// The follower could not use the chunk; the leader restarts the transfer.
        reject: bool,
    },
    /// Proposal forwarded from a follower to the leader.
    Propose {
        /// Entries without term or index.
        entries: Vec<Entry>,
    },
    /// Follower -> leader: linearizable read request.
    ReadIndex {
        /// Caller's context.
        ctx: Bytes,
    },
    /// Leader -> follower: the read in `ctx` is safe once `index` is applied.
    ReadIndexResponse {
        /// Commit index to wait for.
        index: Index,
        /// Caller's context.
        ctx: Bytes,
        /// The leader could not serve the read (e.g. it stepped down).
        rejected: bool,
    },
    /// Leader -> transferee: start an election now, ignoring timers and leases.
    TimeoutNow,
    /// Follower -> leader: please transfer leadership to `to`.
    TransferLeader {
        /// The intended new leader.
        target: NodeId,
    },
}

impl Body {
    /// Short name used in traces and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Append { .. } => "MsgApp",
            Body::AppendResponse { .. } => "MsgAppResp",
            Body::Vote { pre: true, .. } => "MsgPreVote",
            Body::Vote { pre: false, .. } => "MsgVote",
            Body::VoteResponse { pre: true, .. } => "MsgPreVoteResp",
            Body::VoteResponse { pre: false, .. } => "MsgVoteResp",
            Body::Heartbeat { .. } => "MsgHeartbeat",
            Body::HeartbeatResponse { .. } => "MsgHeartbeatResp",
            Body::Snapshot { .. } => "MsgSnap",
            Body::SnapshotResponse { .. } => "MsgSnapResp",
            Body::Propose { .. } => "MsgProp",
            Body::ReadIndex { .. } => "MsgReadIndex",
            Body::ReadIndexResponse { .. } => "MsgReadIndexResp",
            Body::TimeoutNow => "MsgTimeoutNow",
            Body::TransferLeader { .. } => "MsgTransferLeader",
        }
    }

    /// True if the message may only be sent after the sender's hard state and
    /// log (as of the `Ready` that produced it) are durable: votes depend on the
    /// persisted vote, append and snapshot acks claim durable entries.
    pub fn requires_persistence(&self) -> bool {
        matches!(
            self,
            Body::Vote { pre: false, .. }
                | Body::VoteResponse { pre: false, .. }
                | Body::AppendResponse { .. }
                | Body::SnapshotResponse { .. }
        )
    }

    /// Approximate payload size in bytes, for batching limits.
    pub fn size(&self) -> usize {
        match self {
            Body::Append { entries, .. } | Body::Propose { entries } => {
                entries.iter().map(Entry::size).sum::<usize>() + 32
            }
            Body::Snapshot { data, .. } => data.len() + 64,
            Body::ReadIndex { ctx } | Body::ReadIndexResponse { ctx, .. } => ctx.len() + 16,
            _ => 32,
        }
    }
}
