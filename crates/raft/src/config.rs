//! Configuration of one Raft member, with the limits that bound every queue.

use crate::error::ConfigError;
use crate::types::{GroupId, NodeId, NO_NODE};

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: a heartbeat round confirms leadership for a batch of reads.
    #[default]
    Safe,
    /// Serve reads while the leader lease holds (requires CheckQuorum and a
    /// clock-drift bound); falls back to ReadIndex when the lease lapsed.
    LeaseBased,
}

/// Known bugs the simulator must be able to catch. They take effect only
/// in builds with the feature `planted-bugs` ([`Config::bug`] is a constant
/// false without it, so production builds contain none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Commit an entry of a previous term by counting replicas (Figure 8).
    CommitPreviousTermByCounting,
    /// Send a vote grant before the vote is durable.
    VoteBeforePersist,
    /// Grant votes without the log up-to-date check (section 5.4.1).
    VoteWithoutLogCheck,
    /// Allow lease reads without CheckQuorum (followers do not honour the lease).
    LeaseWithoutCheckQuorum,
    /// In the driver (`concord-driver`): a write made after applying (a
    /// leader's new entries) is not fsynced, so the leader counts its own
    /// copy toward the quorum, and clients are answered, before that copy
    /// is durable.
    AckBeforeOwnFsync,
}

/// Settings of one member. Times are in ticks.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's id (non-zero).
    pub id: NodeId,
    /// The Raft group.
    pub group: GroupId,
    /// Followers campaign after a random timeout in `[election_tick, 2 * election_tick)`.
    pub election_tick: u32,
    /// Leader sends heartbeats every `heartbeat_tick` ticks.
    pub heartbeat_tick: u32,
    /// Upper bound on the entry bytes of one append message.
    pub max_size_per_msg: usize,
    /// Upper bound on appends in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Proposals are refused while this many bytes are uncommitted.
    pub max_uncommitted_bytes: usize,
    /// Upper bound on committed entry bytes handed out in one `Ready`.
    pub max_committed_bytes_per_ready: usize,
    /// Reads waiting for confirmation beyond this are refused.
    pub max_pending_reads: usize,
    /// Size of one InstallSnapshot chunk.
    pub snapshot_chunk_size: usize,
    /// Largest snapshot a follower accepts.
    pub max_snapshot_bytes: u64,
    /// Run a pre-vote before incrementing the term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum for an election timeout steps down.
    pub check_quorum: bool,
    /// How reads are confirmed.
    pub read_mode: ReadMode,
    /// Bound on clock drift between members, in ticks (lease reads only).
    pub max_clock_drift_ticks: u32,
    /// Followers drop proposals instead of forwarding them.
    pub disable_proposal_forwarding: bool,
    /// Seed of the election-timeout randomness.
    pub seed: u64,
    /// A known bug to switch on (tests of the simulator only; refused by
    /// [`Config::validate`] without the feature `planted-bugs`).
    pub planted_bug: Option<PlantedBug>,
}

impl Config {
    /// Defaults for member `id` of `group`.
    pub fn new(id: NodeId, group: GroupId) -> Self {
        Config {
            id,
            group,
            election_tick: 10,
            heartbeat_tick: 1,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            max_committed_bytes_per_ready: 16 * 1024 * 1024,
            max_pending_reads: 65_536,
            snapshot_chunk_size: 1024 * 1024,
            max_snapshot_bytes: 8 * 1024 * 1024 * 1024,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            max_clock_drift_ticks: 2,
            disable_proposal_forwarding: false,
            seed: id,
            planted_bug: None,
        }
    }

    /// True if `bug` is switched on: the one place a planted bug is
    /// asked for. A constant false without the feature `planted-bugs`, so
    /// the bug's code is compiled out.
    #[inline(always)]
    pub fn bug(&self, bug: PlantedBug) -> bool {
        cfg!(feature = "planted-bugs") && self.planted_bug == Some(bug)
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.planted_bug.is_some() && !cfg!(feature = "planted-bugs") {
            return Err(ConfigError::Invalid(
                "planted bugs need the feature planted-bugs",
            ));
        }
        if self.id == NO_NODE {
            return Err(ConfigError::Invalid("id must not be zero"));
        }
        if self.heartbeat_tick == 0 {
            return Err(ConfigError::Invalid("heartbeat_tick must be positive"));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(ConfigError::Invalid(
                "election_tick must exceed heartbeat_tick",
            ));
        }
        if self.max_inflight_msgs == 0
            || self.max_size_per_msg == 0
            || self.snapshot_chunk_size == 0
        {
            return Err(ConfigError::Invalid(
                "message, window and chunk limits must be positive",
            ));
        }
        if self.read_mode == ReadMode::LeaseBased {
            let allowed = self.bug(PlantedBug::LeaseWithoutCheckQuorum);
            if !self.check_quorum && !allowed {
                return Err(ConfigError::Invalid(
                    "lease-based reads require check_quorum",
                ));
            }
            if self.max_clock_drift_ticks >= self.election_tick {
                return Err(ConfigError::Invalid(
                    "clock drift bound must be below election_tick",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_bugs_take_effect_only_with_the_feature() {
        let mut c = Config::new(1, 1);
        assert!(!c.bug(PlantedBug::VoteWithoutLogCheck));
        c.planted_bug = Some(PlantedBug::VoteWithoutLogCheck);
        let built_in = cfg!(feature = "planted-bugs");
        assert_eq!(c.bug(PlantedBug::VoteWithoutLogCheck), built_in);
        assert!(!c.bug(PlantedBug::VoteBeforePersist));
        // Asking for a bug the build does not contain is an error, not a
        // silently healthy run.
        assert_eq!(c.validate().is_ok(), built_in);
    }
}
