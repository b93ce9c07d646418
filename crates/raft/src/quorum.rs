//! Quorum math: which index a set of voters has committed, and who won a vote,
//! for simple majorities and for joint (two-majority) configurations.

use std::collections::BTreeSet;

use crate::types::{Index, NodeId};

/// Outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: enough voters have not answered.
    Pending,
    /// A quorum rejected.
    Lost,
    /// A quorum granted.
    Won,
}

/// A set of voters decided by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    /// The voters.
    pub voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A configuration of `voters`.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        MajorityConfig {
            voters: voters.into_iter().collect(),
        }
    }

    /// Largest index acknowledged by a majority. `acked` gives each voter's
    /// acknowledged index (`None` = nothing acknowledged, counted as 0).
    /// An empty configuration commits everything (`Index::MAX`) so that it is
    /// neutral inside a joint configuration.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
        if self.voters.is_empty() {
            return Index::MAX;
        }
        let mut indexes: Vec<Index> = self
            .voters
            .iter()
            .map(|&id| acked(id).unwrap_or(0))
            .collect();
        // Sort descending; the majority-th largest is acknowledged by a majority.
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        indexes[self.voters.len() / 2]
    }

    /// Result of an election given each voter's answer (`None` = no answer).
    /// An empty configuration wins (neutral inside a joint configuration).
    pub fn vote_result(&self, votes: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for &id in &self.voters {
            match votes(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.voters.len() / 2 + 1;
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// Two majorities that must both agree: the configuration during a joint
/// membership change (Raft thesis section 4.3). `outgoing` is empty when not joint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// The new (or only) configuration.
    pub incoming: MajorityConfig,
    /// The old configuration; empty unless joint.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// True while both halves are non-empty.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.voters.is_empty()
    }

    /// All voters of both halves.
    pub fn ids(&self) -> BTreeSet<NodeId> {
        self.incoming
            .voters
            .union(&self.outgoing.voters)
            .copied()
            .collect()
    }

    /// True if `id` votes in either half.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.voters.contains(&id) || self.outgoing.voters.contains(&id)
    }

    /// Largest index committed by both majorities.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> Option<Index>) -> Index {
        let a = self.incoming.committed_index(&acked);
        let b = self.outgoing.committed_index(&acked);
        a.min(b)
    }

    /// Won only if both halves won; lost if either lost.
    pub fn vote_result(&self, votes: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let a = self.incoming.vote_result(&votes);
        let b = self.outgoing.vote_result(&votes);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Brute force: the largest index i such that the voters with ack >= i form a majority.
    fn brute_committed(voters: &BTreeSet<NodeId>, acks: &BTreeMap<NodeId, Index>) -> Index {
        if voters.is_empty() {
            return Index::MAX;
        }
        let candidates: BTreeSet<Index> = voters
            .iter()
            .map(|v| acks.get(v).copied().unwrap_or(0))
            .collect();
        candidates
            .into_iter()
            .filter(|&i| {
                let n = voters
                    .iter()
                    .filter(|v| acks.get(v).copied().unwrap_or(0) >= i)
                    .count();
                2 * n > voters.len()
            })
            .max()
            .unwrap_or(0)
    }

    /// Brute force over every completion of the missing votes.
    fn brute_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        if voters.is_empty() {
            return VoteResult::Won;
        }
        let granted = voters
            .iter()
            .filter(|v| votes.get(v) == Some(&true))
            .count();
        let missing = voters.iter().filter(|v| !votes.contains_key(v)).count();
        let wins = |g: usize| 2 * g > voters.len();
        match (wins(granted), wins(granted + missing)) {
            (true, _) => VoteResult::Won,
            (false, true) => VoteResult::Pending,
            (false, false) => VoteResult::Lost,
        }
    }

    fn arb_voters() -> impl Strategy<Value = BTreeSet<NodeId>> {
        proptest::collection::btree_set(1u64..10, 0..7)
    }

    proptest! {
        #[test]
        fn majority_commit_matches_brute_force(
            voters in arb_voters(),
            acks in proptest::collection::btree_map(1u64..10, 0u64..20, 0..10),
        ) {
            let cfg = MajorityConfig { voters: voters.clone() };
            prop_assert_eq!(cfg.committed_index(|id| acks.get(&id).copied()),
                            brute_committed(&voters, &acks));
        }

        #[test]
        fn joint_commit_is_min_of_halves(
            a in arb_voters(), b in arb_voters(),
            acks in proptest::collection::btree_map(1u64..10, 0u64..20, 0..10),
        ) {
            let cfg = JointConfig {
                incoming: MajorityConfig { voters: a.clone() },
                outgoing: MajorityConfig { voters: b.clone() },
            };
            let want = brute_committed(&a, &acks).min(brute_committed(&b, &acks));
            prop_assert_eq!(cfg.committed_index(|id| acks.get(&id).copied()), want);
        }

        #[test]
        fn majority_vote_matches_brute_force(
            voters in arb_voters(),
            votes in proptest::collection::btree_map(1u64..10, any::<bool>(), 0..10),
        ) {
            let cfg = MajorityConfig { voters: voters.clone() };
            prop_assert_eq!(cfg.vote_result(|id| votes.get(&id).copied()),
                            brute_vote(&voters, &votes));
        }

        #[test]
        fn joint_vote_needs_both_halves(
            a in arb_voters(), b in arb_voters(),
            votes in proptest::collection::btree_map(1u64..10, any::<bool>(), 0..10),
        ) {
            let cfg = JointConfig {
                incoming: MajorityConfig { voters: a.clone() },
                outgoing: MajorityConfig { voters: b.clone() },
            };
            let (ra, rb) = (brute_vote(&a, &votes), brute_vote(&b, &votes));
            let want = if ra == VoteResult::Won && rb == VoteResult::Won {
                VoteResult::Won
            } else if ra == VoteResult::Lost || rb == VoteResult::Lost {
                VoteResult::Lost
            } else {
                VoteResult::Pending
            };
            prop_assert_eq!(cfg.vote_result(|id| votes.get(&id).copied()), want);
        }
    }

    #[test]
    fn three_voters_commit_the_median() {
        let cfg = MajorityConfig::new([1, 2, 3]);
        let acks = BTreeMap::from([(1, 5), (2, 3), (3, 9)]);
        assert_eq!(cfg.committed_index(|id| acks.get(&id).copied()), 5);
    }
}
