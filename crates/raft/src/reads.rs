//! Linearizable reads (Raft thesis section 6.4): ReadIndex confirmed by one
//! heartbeat round for a whole batch of reads, and leader-lease reads.
//!
//! Every heartbeat broadcast is a numbered round. A read requested before
//! round `r` was sent is safe once a quorum acknowledged round `r` or later:
//! at that moment this member was still the leader after the read arrived.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::config::ReadMode;
use crate::error::RaftError;
use crate::message::Body;
use crate::raft::{Raft, Role};
use crate::types::{Index, NodeId, ReadState};

/// A read waiting for confirmation.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    /// Who asked: this member or a follower.
    pub from: NodeId,
    pub ctx: Bytes,
    /// Commit index when the read arrived.
    pub index: Index,
    /// First round that can confirm it.
    pub round: u64,
}

/// Reads in flight and the heartbeat rounds that confirm them.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    /// Number of the last round sent.
    pub last_round: u64,
    /// Reads waiting for their round, in arrival (and so round) order.
    pub pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    pub waiting_for_commit: Vec<(NodeId, Bytes)>,
    /// Recent rounds and the tick they were sent at (for leases); bounded.
    pub sent_ticks: VecDeque<(u64, u64)>,
}

/// Rounds remembered for lease accounting.
const MAX_REMEMBERED_ROUNDS: usize = 1024;

impl ReadQueue {
    /// Number a new round sent at tick `now`.
    pub fn start_round(&mut self, now: u64) -> u64 {
        self.last_round += 1;
        self.sent_ticks.push_back((self.last_round, now));
        if self.sent_ticks.len() > MAX_REMEMBERED_ROUNDS {
            self.sent_ticks.pop_front();
        }
        self.last_round
    }

    /// Tick at which `round` was sent, if remembered.
    pub fn sent_tick(&self, round: u64) -> Option<u64> {
        self.sent_ticks
            .iter()
            .rev()
            .find(|(r, _)| *r == round)
            .map(|&(_, t)| t)
    }

    pub fn len(&self) -> usize {
        self.pending.len() + self.waiting_for_commit.len()
    }
}

impl Raft {
    /// Request a linearizable read; the answer arrives as a `ReadState`
    /// (for `from == self`) or a `ReadIndexResponse` (for a follower).
    pub(crate) fn read_index(&mut self, from: NodeId, ctx: Bytes) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            if self.lead == crate::types::NO_NODE {
                return Err(RaftError::NoLeader);
            }
            let lead = self.lead;
            self.send(lead, Body::ReadIndex { ctx });
            return Ok(());
        }
        if self.reads.len() >= self.cfg.max_pending_reads {
            return Err(RaftError::TooManyPendingReads);
        }
        // Section 6.4 step 1: the commit index is only known to be current once
        // the leader committed an entry of its own term.
        if !self.log.match_term(self.log.committed, self.term) {
            self.reads.waiting_for_commit.push((from, ctx));
            return Ok(());
        }
        self.confirm_read(from, ctx);
        Ok(())
    }

    fn confirm_read(&mut self, from: NodeId, ctx: Bytes) {
        let index = self.log.committed;
        if self.trk.membership.voters.ids().len() <= 1 || self.lease_valid() {
            self.respond_read(from, ctx, index);
            return;
        }
        // Join the next round; start it now if no round is waiting for acks,
        // otherwise it starts when the current one completes (batching).
        let round = self.reads.last_round + 1;
        let idle = self.reads.pending.is_empty();
        self.reads.pending.push_back(PendingRead {
            from,
            ctx,
            index,
            round,
        });
        if idle {
            self.broadcast_heartbeat();
        }
    }

    /// True while the leader lease holds: a quorum acknowledged a heartbeat sent
    /// less than `election_tick - drift` ticks ago, and followers that heard
    /// it will not vote for anyone else before then (CheckQuorum stickiness).
    pub(crate) fn lease_valid(&self) -> bool {
        if self.cfg.read_mode != ReadMode::LeaseBased || self.role != Role::Leader {
            return false;
        }
        // A transfer lets followers ignore the lease: no lease reads during
        // one, nor for the rest of a term in which TimeoutNow was sent.
        if self.lead_transferee.is_some() || self.lease_void_term == self.term {
            return false;
        }
        let acked = self.trk.acked_tick(self.id, self.now);
        let lease = u64::from(self.cfg.election_tick - self.cfg.max_clock_drift_ticks);
        acked > 0 && self.now < acked + lease
    }

    fn respond_read(&mut self, from: NodeId, ctx: Bytes, index: Index) {
        if from == self.id {
            self.read_states.push(ReadState { index, ctx });
        } else {
            self.send(
                from,
                Body::ReadIndexResponse {
                    index,
                    ctx,
                    rejected: false,
                },
            );
        }
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, ctx: u64) {
        let last = self.log.last_index();
        let sent_tick = self.reads.sent_tick(ctx);
        let Some(pr) = self.trk.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        // The member answered a heartbeat sent after our last append, so it
        // has seen that append (one connection keeps order) and its answer
        // is lost: unblock the probe, or the window (a lost append would
        // otherwise block it forever). Answers to older rounds do not count:
        // a member back from the dead answers hundreds of queued heartbeats,
        // and each one used to resend the same probe of up to a megabyte.
        if ctx > pr.append_round {
            pr.probe_sent = false;
            if pr.inflights.full() {
                pr.inflights.free_first();
            }
        }
        if ctx > pr.acked_round {
            pr.acked_round = ctx;
            if let Some(t) = sent_tick {
                pr.acked_tick = pr.acked_tick.max(t);
            }
        }
        if pr.matched < last {
            self.send_append(from, true);
        }
        self.release_confirmed_reads();
    }

    fn release_confirmed_reads(&mut self) {
        let acked = self.trk.acked_round(self.id);
        while self.reads.pending.front().is_some_and(|r| r.round <= acked) {
            let r = self.reads.pending.pop_front().expect("front exists");
            self.respond_read(r.from, r.ctx, r.index);
        }
        // Reads that arrived during the completed round start the next one.
        if self
            .reads
            .pending
            .front()
            .is_some_and(|r| r.round > self.reads.last_round)
        {
            self.broadcast_heartbeat();
        }
    }

    pub(crate) fn release_reads_waiting_for_commit(&mut self) {
        if self.reads.waiting_for_commit.is_empty()
            || !self.log.match_term(self.log.committed, self.term)
        {
            return;
        }
        for (from, ctx) in std::mem::take(&mut self.reads.waiting_for_commit) {
            self.confirm_read(from, ctx);
        }
    }

    /// On losing leadership: every pending read fails.
    pub(crate) fn fail_pending_reads(&mut self) {
        let pending: Vec<(NodeId, Bytes)> = self
            .reads
            .pending
            .drain(..)
            .map(|r| (r.from, r.ctx))
            .chain(self.reads.waiting_for_commit.drain(..))
            .collect();
        for (from, ctx) in pending {
            if from == self.id {
                self.dropped_reads.push(ctx);
            } else {
                self.send(
                    from,
                    Body::ReadIndexResponse {
                        index: 0,
                        ctx,
                        rejected: true,
                    },
                );
            }
        }
    }
}
