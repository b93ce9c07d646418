//! Leader election (Raft section 5.2) with PreVote (thesis section 9.6) and
//! elections forced by a leadership transfer (thesis section 3.10).

use crate::config::PlantedBug;
use crate::message::Body;
use crate::quorum::VoteResult;
use crate::raft::{Raft, Role};
use crate::types::{Index, NodeId, Term, NO_NODE};

/// Why a campaign starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CampaignKind {
    /// Ask first whether we could win, without bumping the term.
    PreElection,
    /// A real election.
    Election,
    /// A real election requested by the leader: voters ignore their lease.
    Transfer,
}

impl CampaignKind {
    pub fn from_config(pre_vote: bool) -> Self {
        if pre_vote {
            CampaignKind::PreElection
        } else {
            CampaignKind::Election
        }
    }
}

impl Raft {
    /// The host saw the connection from `id` close (its process most
    /// likely died). If `id` leads this follower, stop counting it as heard
    /// from: the election timer runs out within a random 1 to
    /// `election_tick / 2` ticks (random, so that followers told at once
    /// seldom split the vote), and this member grants (pre-)votes to others
    /// told the same. A wrong hint costs at most a failed pre-vote: members
    /// that still hear the leader refuse it. Under lease-based reads
    /// nothing changes: a live leader may be serving reads on its lease,
    /// which only the full election timeout protects.
    pub fn leader_gone(&mut self, id: NodeId) {
        let lease_reads = self.cfg.read_mode == crate::config::ReadMode::LeaseBased;
        if self.role != Role::Follower || id == NO_NODE || self.lead != id || lease_reads {
            return;
        }
        self.set_leader(NO_NODE);
        let left = 1 + self.rng_below((self.cfg.election_tick / 2).max(1) as u64) as u32;
        self.election_elapsed = self.randomized_election_timeout.saturating_sub(left);
    }

    pub(crate) fn campaign(&mut self, kind: CampaignKind) {
        if !self.promotable() {
            return;
        }
        let vote_term = if kind == CampaignKind::PreElection {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.term
        };
        let pre = kind == CampaignKind::PreElection;
        self.trk.record_vote(self.id, true);
        if self.trk.tally() == VoteResult::Won {
            // Single-voter group: we won outright.
            if pre {
                self.campaign(CampaignKind::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let transfer = kind == CampaignKind::Transfer;
        let voters: Vec<NodeId> = self
            .trk
            .membership
            .voters
            .ids()
            .into_iter()
            .filter(|&id| id != self.id)
            .collect();
        for id in voters {
            let body = Body::Vote {
                pre,
                last_index,
                last_term,
                transfer,
            };
            self.send_with_term(id, vote_term, body);
        }
    }

    /// Section 5.2 and 5.4.1: grant at most one vote per term, and only to a
    /// candidate whose log is at least as up to date as ours.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre: bool,
        last_index: Index,
        last_term: Term,
    ) {
        let can_vote = self.vote == from
            || (self.vote == NO_NODE && self.lead == NO_NODE)
            // A pre-vote for a future term does not bind us.
            || (pre && term > self.term);
        let up_to_date = self.log.is_up_to_date(last_index, last_term)
            || self.cfg.bug(PlantedBug::VoteWithoutLogCheck);
        if can_vote && up_to_date {
            // The response carries the candidate's term so that it counts it.
            self.send_with_term(from, term, Body::VoteResponse { pre, granted: true });
            if !pre {
                self.election_elapsed = 0;
                self.vote = from;
            }
        } else {
            let t = self.term;
            self.send_with_term(
                from,
                t,
                Body::VoteResponse {
                    pre,
                    granted: false,
                },
            );
        }
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, granted: bool) {
        self.trk.record_vote(from, granted);
        match self.trk.tally() {
            VoteResult::Won => {
                if self.role == Role::PreCandidate {
                    self.campaign(CampaignKind::Election);
                } else {
                    self.become_leader();
                }
            }
            VoteResult::Lost => {
                // Return to follower; a pre-candidate keeps its term.
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            VoteResult::Pending => {}
        }
    }
}
