//! What the leader knows about each follower's log, and how it sends to it:
//! probing (one message per round trip until a match is found), replicating
//! (optimistic pipelining within a bounded in-flight window) or snapshotting.

use std::collections::VecDeque;

use crate::types::{Index, Snapshot};

/// How the leader is currently sending to a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Looking for the match point: at most one append in flight.
    Probe,
    /// Match found: stream appends, up to the in-flight window.
    Replicate,
    /// The follower needs a snapshot; chunks are streamed one at a time.
    Snapshot {
        /// The snapshot being sent (cheap clone: the data is reference counted).
        snapshot: Box<Snapshot>,
        /// Size of its image: the data's, or the application's for an image
        /// it keeps itself ([`crate::RawNode::compact_external`]).
        total: u64,
        /// Next byte offset the follower expects.
        next_offset: u64,
        /// Ticks since the last chunk was sent (for retransmission).
        elapsed: u32,
    },
}

/// Which of the three ways the leader is sending to a follower (the
/// public face of the leader's progress state, without the snapshot in
/// flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressKind {
    /// Looking for the match point.
    Probe,
    /// Streaming appends.
    Replicate,
    /// Sending a snapshot.
    Snapshot,
}

impl std::fmt::Display for ProgressKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProgressKind::Probe => "probe",
            ProgressKind::Replicate => "replicate",
            ProgressKind::Snapshot => "snapshot",
        })
    }
}

/// A bounded window of in-flight appends, identified by their last index.
#[derive(Clone, Debug)]
pub struct Inflights {
    window: VecDeque<Index>,
    cap: usize,
}

impl Inflights {
    /// A window of at most `cap` messages.
    pub fn new(cap: usize) -> Self {
        Inflights {
            window: VecDeque::with_capacity(cap.min(64)),
            cap,
        }
    }

    /// Record an append whose last entry is `last`.
    pub fn add(&mut self, last: Index) {
        assert!(!self.full(), "in-flight window overflow");
        self.window.push_back(last);
    }

    /// Acknowledge everything up to `index`.
    pub fn free_to(&mut self, index: Index) {
        while self.window.front().is_some_and(|&i| i <= index) {
            self.window.pop_front();
        }
    }

    /// Forget the oldest in-flight append (its answer is presumed lost).
    pub fn free_first(&mut self) {
        self.window.pop_front();
    }

    /// True when no more appends may be sent.
    pub fn full(&self) -> bool {
        self.window.len() >= self.cap
    }

    /// Number of appends in flight.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    fn reset(&mut self) {
        self.window.clear();
    }
}

/// The leader's view of one member.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be durably replicated on the member.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Sending mode.
    pub state: ProgressState,
    /// In probe state: an append was sent and not yet answered.
    pub probe_sent: bool,
    /// Appends in flight (replicate state).
    pub inflights: Inflights,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Highest read-index round the member acknowledged.
    pub acked_round: u64,
    /// Leader tick at which the highest acknowledged round was sent (leases).
    pub acked_tick: u64,
    /// Non-voting member.
    pub is_learner: bool,
    /// Highest commit index sent to the member.
    pub sent_commit: Index,
    /// The heartbeat round that was current when the last append went out.
    /// Only the answer to a later round says that append was lost: answers
    /// to older rounds (a burst queued while the member was down) say
    /// nothing about it.
    pub append_round: u64,
}

// Invariant: matched < next.
impl Progress {
    /// A fresh progress starting at `next`.
    pub fn new(next: Index, max_inflight: usize, is_learner: bool) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            recent_active: false,
            acked_round: 0,
            acked_tick: 0,
            is_learner,
            sent_commit: 0,
            append_round: 0,
        }
    }

    /// True if nothing may be sent now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// The follower acknowledged `index`. Returns true if that was news.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        self.inflights.free_to(index);
        updated
    }

    /// The follower rejected an append at `rejected`; move `next` back to
    /// `hint + 1` (the follower's estimate). Returns false for stale rejects.
    pub fn maybe_decrease(&mut self, rejected: Index, hint: Index) -> bool {
        if self.state == ProgressState::Replicate {
            // Stale unless it rejects exactly what follows the match.
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = (hint + 1).min(rejected).max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    /// Switch to probing from `matched + 1` (or after a finished snapshot).
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { snapshot, .. } = &self.state {
            let after = snapshot.meta.index + 1;
            self.next = after.max(self.matched + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switch to pipelined replication.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Switch to sending `snapshot`.
    pub fn become_snapshot(&mut self, snapshot: Snapshot, total: u64) {
        self.state = ProgressState::Snapshot {
            snapshot: Box::new(snapshot),
            total,
            next_offset: 0,
            elapsed: 0,
        };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Which way the leader is sending (for status and traces).
    pub fn kind(&self) -> ProgressKind {
        match self.state {
            ProgressState::Probe => ProgressKind::Probe,
            ProgressState::Replicate => ProgressKind::Replicate,
            ProgressState::Snapshot { .. } => ProgressKind::Snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_pipelining() {
        let mut pr = Progress::new(1, 2, false);
        pr.become_replicate();
        pr.inflights.add(3);
        assert!(!pr.is_paused());
        pr.inflights.add(6);
        assert!(pr.is_paused());
        pr.maybe_update(3);
        assert!(!pr.is_paused());
        assert_eq!(pr.inflights.len(), 1);
    }

    #[test]
    fn stale_reject_is_ignored_in_replicate() {
        let mut pr = Progress::new(1, 8, false);
        pr.maybe_update(5);
        pr.become_replicate();
        pr.next = 9;
        assert!(!pr.maybe_decrease(4, 2));
        assert!(pr.maybe_decrease(7, 6));
        assert_eq!(pr.next, 6);
    }

    #[test]
    fn probe_reject_uses_hint_but_never_below_match() {
        let mut pr = Progress::new(10, 8, false);
        pr.matched = 3;
        assert!(pr.maybe_decrease(9, 1));
        assert_eq!(pr.next, 4);
        assert!(!pr.maybe_decrease(9, 1), "reject of an old probe is stale");
    }
}
