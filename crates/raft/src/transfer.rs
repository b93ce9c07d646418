//! Leadership transfer (Raft thesis section 3.10): bring the target up to
//! date, then tell it to campaign at once with `TimeoutNow`.

use crate::message::Body;
use crate::raft::{Raft, Role};
use crate::types::NodeId;

impl Raft {
    pub(crate) fn transfer_leader(&mut self, target: NodeId) {
        if self.role != Role::Leader {
            if self.lead != crate::types::NO_NODE {
                let lead = self.lead;
                self.send(lead, Body::TransferLeader { target });
            }
            return;
        }
        if target == self.id || !self.trk.is_voter(target) {
            return;
        }
        if self.lead_transferee == Some(target) {
            return;
        }
        self.abort_leader_transfer();
        self.lead_transferee = Some(target);
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        if self.trk.progress[&target].matched == self.log.last_index() {
            self.send_timeout_now(target);
        } else {
            self.send_append(target, true);
        }
    }

    /// Send TimeoutNow to `from` if it is the transfer target and has caught up.
    pub(crate) fn maybe_send_timeout_now(&mut self, from: NodeId) {
        let last = self.log.last_index();
        let caught_up = self
            .trk
            .progress
            .get(&from)
            .is_some_and(|p| p.matched == last);
        if self.lead_transferee == Some(from) && caught_up {
            self.send_timeout_now(from);
        }
    }

    /// Tell `to` to campaign now. Its election overrides every voter's lease,
    /// and the message may arrive late (even after the transfer was
    /// abandoned), so this leader's lease is void for the rest of the term.
    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_void_term = self.term;
        self.send(to, Body::TimeoutNow);
    }

    pub(crate) fn abort_leader_transfer(&mut self) {
        self.lead_transferee = None;
    }
}
