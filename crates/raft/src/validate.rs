//! Screening a message from the network against what `step` assumes.
//!
//! The core asserts its invariants (one leader per term, contiguous
//! appends, commit within the log, a valid membership): those assertions
//! catch our own bugs. A peer's message is not our code: the application
//! calls [`RawNode::check_message`](crate::RawNode::check_message) before
//! [`RawNode::step`](crate::RawNode::step) and drops what it refuses, so a
//! malformed or forged message can never reach an assertion. A message
//! that passes may still be ignored by the protocol (a stale term, say);
//! that is `step`'s business.

use crate::message::{Body, Message};
use crate::raft::{Raft, Role};
use crate::types::{ConfState, NO_NODE};

/// Why a message from the network was refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It belongs to another Raft group.
    #[error("message for another group")]
    WrongGroup,
    /// It is not addressed to this member.
    #[error("message addressed to another member")]
    Misaddressed,
    /// It claims to come from this member, or from no one.
    #[error("message from this member or from no one")]
    BadSender,
    /// A protocol message without a term, or a forwarded request with one.
    #[error("term missing or where none belongs")]
    BadTerm,
    /// A leader's message (append, heartbeat, snapshot, TimeoutNow, a read
    /// index) in a term whose leader is someone else, or us.
    #[error("second leader in the term")]
    SecondLeader,
    /// Appended entries that do not follow each other, or whose terms go
    /// down or exceed the message's term.
    #[error("entries out of order")]
    BadEntries,
    /// An acknowledgement of entries this leader does not have.
    #[error("acknowledges entries beyond the log")]
    AckBeyondLog,
    /// A heartbeat answer for a round that was never sent.
    #[error("answers an unsent heartbeat round")]
    FutureRound,
    /// Snapshot metadata that cannot describe a snapshot (index 0, a term
    /// above the message's, an invalid membership).
    #[error("invalid snapshot metadata")]
    BadSnapshot,
}

impl Refusal {
    /// Short name for metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Refusal::WrongGroup => "wrong_group",
            Refusal::Misaddressed => "misaddressed",
            Refusal::BadSender => "bad_sender",
            Refusal::BadTerm => "bad_term",
            Refusal::SecondLeader => "second_leader",
            Refusal::BadEntries => "bad_entries",
            Refusal::AckBeyondLog => "ack_beyond_log",
            Refusal::FutureRound => "future_round",
            Refusal::BadSnapshot => "bad_snapshot",
        }
    }
}

/// A membership every member could hold: at least one voter, nobody both
/// voter and learner, demoted voters among the outgoing ones
/// (`Membership::assert_valid`).
pub(crate) fn valid_conf_state(cs: &ConfState) -> bool {
    let learner = |id: &u64| cs.learners.contains(id) || cs.learners_next.contains(id);
    !cs.voters.is_empty()
        && !cs.voters.iter().any(learner)
        && cs
            .learners_next
            .iter()
            .all(|l| cs.voters_outgoing.contains(l))
        && !cs.learners.iter().any(|l| cs.learners_next.contains(l))
}

impl Raft {
    pub(crate) fn check_message(&self, m: &Message) -> Result<(), Refusal> {
        if m.group != self.group {
            return Err(Refusal::WrongGroup);
        }
        if m.to != self.id {
            return Err(Refusal::Misaddressed);
        }
        if m.from == self.id || m.from == NO_NODE {
            return Err(Refusal::BadSender);
        }
        let forwarded = matches!(
            m.body,
            Body::Propose { .. } | Body::ReadIndex { .. } | Body::TransferLeader { .. }
        );
        if forwarded != (m.term == 0) {
            return Err(Refusal::BadTerm);
        }
        let from_leader = matches!(
            m.body,
            Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::Snapshot { .. }
                | Body::TimeoutNow
                | Body::ReadIndexResponse {
                    rejected: false,
                    ..
                }
        );
        if from_leader && m.term == self.term {
            let (term, seen) = self.seen_leader;
            if self.role == Role::Leader || (term == self.term && seen != m.from) {
                return Err(Refusal::SecondLeader);
            }
        }
        match &m.body {
            Body::Append {
                index,
                log_term,
                entries,
                ..
            } => {
                let mut prev_term = *log_term;
                for (i, e) in entries.iter().enumerate() {
                    let want = index.checked_add(i as u64 + 1);
                    if want != Some(e.index) || e.term < prev_term || e.term > m.term {
                        return Err(Refusal::BadEntries);
                    }
                    prev_term = e.term;
                }
                if *log_term > m.term {
                    return Err(Refusal::BadEntries);
                }
            }
            Body::Snapshot { meta, .. }
                if meta.index == 0 || meta.term > m.term || !valid_conf_state(&meta.conf_state) =>
            {
                return Err(Refusal::BadSnapshot);
            }
            Body::AppendResponse {
                index,
                reject: None,
            } if self.role == Role::Leader
                && m.term == self.term
                && *index > self.log.last_index() =>
            {
                return Err(Refusal::AckBeyondLog);
            }
            // A round acknowledged before it is sent would confirm reads
            // that no quorum confirmed.
            Body::HeartbeatResponse { ctx }
                if self.role == Role::Leader
                    && m.term == self.term
                    && *ctx > self.reads.last_round =>
            {
                return Err(Refusal::FutureRound);
            }
            _ => {}
        }
        Ok(())
    }
}
