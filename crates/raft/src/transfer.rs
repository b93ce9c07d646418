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
            self.send(target, Body::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
    }

    pub(crate) fn abort_leader_transfer(&mut self) {
        self.lead_transferee = None;
    }
}
