//! The membership configuration and per-member progress, plus the vote tally
//! of the current election.

use std::collections::{BTreeMap, BTreeSet};

use crate::progress::Progress;
use crate::quorum::{JointConfig, MajorityConfig, VoteResult};
use crate::types::{ConfState, Index, NodeId};

/// The active membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voters (joint while changing).
    pub voters: JointConfig,
    /// Non-voting members.
    pub learners: BTreeSet<NodeId>,
    /// Voters being demoted: they become learners when the joint config is left.
    pub learners_next: BTreeSet<NodeId>,
}

impl Membership {
    /// Membership from its persisted form.
    pub fn from_conf_state(cs: &ConfState) -> Self {
        Membership {
            voters: JointConfig {
                incoming: MajorityConfig::new(cs.voters.iter().copied()),
                outgoing: MajorityConfig::new(cs.voters_outgoing.iter().copied()),
            },
            learners: cs.learners.iter().copied().collect(),
            learners_next: cs.learners_next.iter().copied().collect(),
        }
    }

    /// Persisted form.
    pub fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.voters.iter().copied().collect(),
            voters_outgoing: self.voters.outgoing.voters.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
        }
    }

    /// Every member: voters of both halves and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.ids();
        all.extend(self.learners.iter().copied());
        all.extend(self.learners_next.iter().copied());
        all
    }

    /// Invariant: a node is never both voter (incoming) and learner.
    pub fn assert_valid(&self) {
        for l in self.learners.iter().chain(&self.learners_next) {
            assert!(
                !self.voters.incoming.voters.contains(l),
                "node {l} is voter and learner"
            );
        }
        for l in &self.learners_next {
            assert!(
                self.voters.outgoing.voters.contains(l),
                "learner_next {l} not in outgoing"
            );
        }
    }
}

/// Membership plus per-member progress and votes.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    /// The active membership.
    pub membership: Membership,
    /// Leader's view of each member (including itself).
    pub progress: BTreeMap<NodeId, Progress>,
    /// Votes received in the current election.
    pub votes: BTreeMap<NodeId, bool>,
}

impl Tracker {
    /// Index replicated on a quorum of voters.
    pub fn committed(&self) -> Index {
        self.membership
            .voters
            .committed_index(|id| self.progress.get(&id).map(|p| p.matched))
    }

    /// Record a vote (the first answer of each voter counts).
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// Tally of the current election.
    pub fn tally(&self) -> VoteResult {
        self.membership
            .voters
            .vote_result(|id| self.votes.get(&id).copied())
    }

    /// True if a quorum was heard from since the last check (CheckQuorum).
    pub fn quorum_active(&self, me: NodeId) -> bool {
        self.membership.voters.vote_result(|id| {
            Some(id == me || self.progress.get(&id).is_some_and(|p| p.recent_active))
        }) == VoteResult::Won
    }

    /// Highest read round acknowledged by a quorum (`me` acknowledges all).
    pub fn acked_round(&self, me: NodeId) -> u64 {
        self.membership.voters.committed_index(|id| {
            if id == me {
                Some(u64::MAX)
            } else {
                self.progress.get(&id).map(|p| p.acked_round)
            }
        })
    }

    /// Leader tick at which a quorum last confirmed leadership (`now` for `me`).
    pub fn acked_tick(&self, me: NodeId, now: u64) -> u64 {
        self.membership.voters.committed_index(|id| {
            if id == me {
                Some(now)
            } else {
                self.progress.get(&id).map(|p| p.acked_tick)
            }
        })
    }

    /// True if `id` is a voter in either half.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.membership.voters.contains(id)
    }
}
