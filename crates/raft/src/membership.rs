//! Membership changes by joint consensus (Raft thesis section 4.3), with
//! learners. A change takes effect when its entry is applied; a change that
//! entered a joint configuration is followed by an automatic "leave joint".

use std::collections::BTreeSet;

use crate::error::RaftError;
use crate::raft::{Raft, Role};
use crate::tracker::Membership;
use crate::types::{ConfChange, ConfChangeStep, Entry, EntryKind, Index, NodeId, NO_NODE};

/// Membership after applying `cc` to `cur`, or why it cannot be applied.
/// Deterministic: every member computes the same result for the same entry.
pub(crate) fn next_membership(cur: &Membership, cc: &ConfChange) -> Result<Membership, String> {
    let mut next = cur.clone();
    if cc.is_leave_joint() {
        if !cur.voters.is_joint() {
            return Err("not in a joint configuration".into());
        }
        next.voters.outgoing.voters.clear();
        let demoted = std::mem::take(&mut next.learners_next);
        next.learners.extend(demoted);
        return Ok(next);
    }
    if cur.voters.is_joint() {
        return Err("a joint configuration must be left first".into());
    }
    let bootstrap = cur.voters.incoming.voters.is_empty();
    let before = cur.voters.incoming.voters.clone();
    let joint = !bootstrap && (cc.joint || voter_changes(&before, cc) > 1);
    if joint {
        next.voters.outgoing = cur.voters.incoming.clone();
    }
    for step in &cc.changes {
        match *step {
            ConfChangeStep::AddVoter(id) => {
                next.learners.remove(&id);
                next.learners_next.remove(&id);
                next.voters.incoming.voters.insert(id);
            }
            ConfChangeStep::AddLearner(id) => {
                next.voters.incoming.voters.remove(&id);
                next.learners.remove(&id);
                next.learners_next.remove(&id);
                // A voter of the outgoing half cannot be a learner yet.
                if next.voters.outgoing.voters.contains(&id) {
                    next.learners_next.insert(id);
                } else {
                    next.learners.insert(id);
                }
            }
            ConfChangeStep::Remove(id) => {
                next.voters.incoming.voters.remove(&id);
                next.learners.remove(&id);
                next.learners_next.remove(&id);
            }
        }
    }
    if next.voters.incoming.voters.is_empty() {
        return Err("the change removes every voter".into());
    }
    if !joint && !bootstrap && symmetric_difference(&before, &next.voters.incoming.voters) > 1 {
        return Err("more than one voter changes without joint consensus".into());
    }
    Ok(next)
}

fn voter_changes(before: &BTreeSet<NodeId>, cc: &ConfChange) -> usize {
    let mut after = before.clone();
    for step in &cc.changes {
        match *step {
            ConfChangeStep::AddVoter(id) => {
                after.insert(id);
            }
            ConfChangeStep::AddLearner(id) | ConfChangeStep::Remove(id) => {
                after.remove(&id);
            }
        }
    }
    symmetric_difference(before, &after)
}

fn symmetric_difference(a: &BTreeSet<NodeId>, b: &BTreeSet<NodeId>) -> usize {
    a.symmetric_difference(b).count()
}

impl Raft {
    /// Leader-side checks before a change enters the log.
    pub(crate) fn check_conf_change(&self, cc: &ConfChange) -> Result<(), RaftError> {
        if self.pending_conf_index > self.log.applied {
            return Err(RaftError::ConfChangeInProgress);
        }
        next_membership(&self.trk.membership, cc).map_err(RaftError::InvalidConfChange)?;
        for step in &cc.changes {
            if let ConfChangeStep::AddVoter(id) = *step {
                if self.trk.membership.learners.contains(&id) && !self.learner_caught_up(id) {
                    return Err(RaftError::LearnerNotCaughtUp(id));
                }
            }
        }
        Ok(())
    }

    /// A learner may be promoted once it holds at least 90% of the leader's
    /// committed log (the rule etcd applies to MemberPromote).
    pub(crate) fn learner_caught_up(&self, id: NodeId) -> bool {
        let matched = self.trk.progress.get(&id).map_or(0, |p| p.matched);
        matched * 10 >= self.log.committed * 9 && matched > 0
    }

    /// Apply a committed change at `index` (called for every member, in log
    /// order, once `index` counts as applied).
    pub(crate) fn apply_conf_change(&mut self, index: Index, cc: &ConfChange) {
        let next = match next_membership(&self.trk.membership, cc) {
            Ok(next) => next,
            // Invalid changes that reached the log are no-ops everywhere.
            Err(_) => return,
        };
        self.set_membership(next);
        self.conf_history
            .push((index, self.trk.membership.to_conf_state()));
        if self.role != Role::Leader {
            return;
        }
        if let Some(t) = self.lead_transferee {
            if !self.trk.is_voter(t) {
                self.abort_leader_transfer();
            }
        }
        if !self.trk.is_voter(self.id) {
            // Removed or demoted: hand over quickly, then step down.
            self.hand_over_before_stepping_down();
            let term = self.term;
            self.become_follower(term, NO_NODE);
            return;
        }
        self.maybe_auto_leave_joint();
        self.maybe_commit();
        self.broadcast_append();
    }

    /// Leader: leave a joint configuration automatically once every change up
    /// to `pending_conf_index` is applied: right after the entering change, or,
    /// for a leader elected after the one that entered it failed, once it has
    /// applied everything up to its election (as etcd/raft's AutoLeave does).
    /// Without the second case the group could stay joint forever.
    /// Returns true if it appended (the caller broadcasts).
    pub(crate) fn maybe_auto_leave_joint(&mut self) -> bool {
        if self.role != Role::Leader
            || !self.trk.membership.voters.is_joint()
            || self.pending_conf_index > self.log.applied
        {
            return false;
        }
        let kind = EntryKind::ConfChange(ConfChange::leave_joint());
        self.append_entries(vec![Entry {
            term: 0,
            index: 0,
            kind,
            data: Default::default(),
        }]);
        true
    }

    /// Send TimeoutNow to the most up-to-date remaining voter.
    fn hand_over_before_stepping_down(&mut self) {
        let last = self.log.last_index();
        let best = self
            .trk
            .progress
            .iter()
            .filter(|(&id, _)| id != self.id && self.trk.is_voter(id))
            .max_by_key(|(_, p)| p.matched)
            .map(|(&id, p)| (id, p.matched));
        if let Some((id, matched)) = best {
            if matched == last {
                self.send_timeout_now(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ConfState;

    fn m(voters: &[NodeId], learners: &[NodeId]) -> Membership {
        Membership::from_conf_state(&ConfState {
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            ..Default::default()
        })
    }

    fn cc(steps: Vec<ConfChangeStep>) -> ConfChange {
        ConfChange {
            changes: steps,
            joint: false,
        }
    }

    #[test]
    fn single_voter_change_is_direct() {
        let next =
            next_membership(&m(&[1, 2, 3], &[]), &cc(vec![ConfChangeStep::AddVoter(4)])).unwrap();
        assert!(!next.voters.is_joint());
        assert_eq!(next.voters.incoming.voters.len(), 4);
    }

    #[test]
    fn two_voter_changes_go_joint_and_leave() {
        let swap = cc(vec![ConfChangeStep::AddVoter(4), ConfChangeStep::Remove(1)]);
        let joint = next_membership(&m(&[1, 2, 3], &[]), &swap).unwrap();
        assert!(joint.voters.is_joint());
        let left = next_membership(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left.voters.incoming.voters, BTreeSet::from([2, 3, 4]));
        assert!(!left.voters.is_joint());
    }

    #[test]
    fn demoting_a_voter_in_joint_waits_in_learners_next() {
        let demote = ConfChange {
            changes: vec![ConfChangeStep::AddLearner(3)],
            joint: true,
        };
        let joint = next_membership(&m(&[1, 2, 3], &[]), &demote).unwrap();
        assert_eq!(joint.learners_next, BTreeSet::from([3]));
        let left = next_membership(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left.learners, BTreeSet::from([3]));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let base = m(&[1], &[]);
        assert!(next_membership(&base, &cc(vec![ConfChangeStep::Remove(1)])).is_err());
        assert!(next_membership(&base, &ConfChange::leave_joint()).is_err());
        let two = m(&[1, 2, 3], &[]);
        let joint = next_membership(
            &two,
            &ConfChange {
                changes: vec![ConfChangeStep::AddVoter(4)],
                joint: true,
            },
        )
        .unwrap();
        assert!(next_membership(&joint, &cc(vec![ConfChangeStep::AddVoter(5)])).is_err());
    }
}
