//! Log replication (Raft section 5.3): proposals, appends with batching and
//! a bounded pipeline, fast backtracking on conflict, and the commit rule.

use crate::config::PlantedBug;
use crate::error::RaftError;
use crate::message::{Body, RejectHint};
use crate::progress::ProgressState;
use crate::raft::{Raft, Role};
use crate::types::{Entry, EntryKind, Index, NodeId, Term};

impl Raft {
    /// Leader: accept client entries. Followers forward (or refuse).
    pub(crate) fn propose(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            if self.lead == crate::types::NO_NODE {
                return Err(RaftError::NoLeader);
            }
            if self.cfg.disable_proposal_forwarding {
                return Err(RaftError::NotLeader(self.lead));
            }
            let lead = self.lead;
            self.send(lead, Body::Propose { entries });
            return Ok(());
        }
        if self.lead_transferee.is_some() {
            return Err(RaftError::TransferInProgress);
        }
        let size: usize = entries.iter().map(|e| e.data.len()).sum();
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.cfg.max_uncommitted_bytes
        {
            return Err(RaftError::TooManyUncommitted);
        }
        for e in &entries {
            if let EntryKind::ConfChange(cc) = &e.kind {
                self.check_conf_change(cc)?;
            }
        }
        self.uncommitted_bytes += size;
        self.append_entries(entries);
        self.broadcast_append();
        Ok(())
    }

    /// Stamp term and index on `entries` and append them to the leader's log.
    /// The leader's own durability is counted only after `advance`.
    pub(crate) fn append_entries(&mut self, mut entries: Vec<Entry>) {
        let mut index = self.log.last_index();
        for e in entries.iter_mut() {
            index += 1;
            e.term = self.term;
            e.index = index;
            if e.is_conf_change() {
                self.pending_conf_index = index;
            }
        }
        self.log.append(entries);
        // A single-voter group commits as soon as its own write is durable,
        // which `advance` reports.
    }

    pub(crate) fn broadcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id, true);
        }
    }

    /// Every member but this one.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.trk
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Send what `to` is missing, within its window. Returns true if a
    /// message was sent. An empty append is sent only if `send_if_empty`.
    pub(crate) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.trk.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev = pr.next - 1;
        let prev_term = self.log.term(prev);
        let entries = self.log.entries_from(pr.next, self.cfg.max_size_per_msg);
        let (Some(log_term), Some(entries)) = (prev_term, entries) else {
            return self.send_snapshot(to);
        };
        let commit = self.log.committed;
        // An empty append is still worth sending to tell the member a newer
        // commit index it can use (it has the entries up to its match).
        let can_bump_commit = pr.sent_commit < commit.min(pr.matched);
        if entries.is_empty() && !send_if_empty && !can_bump_commit {
            return false;
        }
        let pr = self.trk.progress.get_mut(&to).expect("progress exists");
        pr.sent_commit = pr.sent_commit.max(commit);
        pr.append_round = self.reads.last_round;
        match pr.state {
            ProgressState::Replicate => {
                if let Some(last) = entries.last() {
                    pr.next = last.index + 1;
                    pr.inflights.add(last.index);
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot { .. } => unreachable!("paused"),
        }
        self.send(
            to,
            Body::Append {
                index: prev,
                log_term,
                entries,
                commit,
            },
        );
        true
    }

    pub(crate) fn broadcast_heartbeat(&mut self) {
        let ctx = self.reads.start_round(self.now);
        for id in self.peers() {
            let pr = self.trk.progress.get_mut(&id).expect("peer exists");
            // Never tell a follower to commit past what it is known to have.
            let commit = self.log.committed.min(pr.matched);
            pr.sent_commit = pr.sent_commit.max(commit);
            self.send(id, Body::Heartbeat { commit, ctx });
        }
    }

    /// Follower: section 5.3 consistency check and append.
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        index: Index,
        log_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        if index < self.log.committed {
            // Everything up to our commit index already matches the leader.
            let committed = self.log.committed;
            self.send(
                from,
                Body::AppendResponse {
                    index: committed,
                    reject: None,
                },
            );
            return;
        }
        match self.log.maybe_append(index, log_term, commit, entries) {
            Some(last) => self.send(
                from,
                Body::AppendResponse {
                    index: last,
                    reject: None,
                },
            ),
            None => {
                // Hint where our log may match: skip every entry of a term
                // above the leader's term at `index`.
                let (hint_index, hint_term) = self.log.find_conflict_by_term(index, log_term);
                let reject = Some(RejectHint {
                    index: hint_index,
                    term: hint_term,
                });
                self.send(from, Body::AppendResponse { index, reject });
            }
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        term: Term,
        index: Index,
        reject: Option<RejectHint>,
    ) {
        if term < self.term {
            return;
        }
        let Some(pr) = self.trk.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        if let Some(hint) = reject {
            // Leader side of fast backtracking: if we hold the hinted term,
            // resume after our last entry of that term.
            let next_probe = if hint.term > 0 {
                self.log.find_conflict_by_term(hint.index, hint.term).0
            } else {
                hint.index
            };
            let pr = self.trk.progress.get_mut(&from).expect("progress exists");
            if pr.maybe_decrease(index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        // In probe state an answer at the match point also ends the probe.
        let probe_answered = pr.state == ProgressState::Probe && pr.matched == index;
        if !pr.maybe_update(index) && !probe_answered {
            return;
        }
        match &pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot { snapshot, .. } if pr.matched >= snapshot.meta.index => {
                pr.become_probe();
                pr.become_replicate();
            }
            _ => {}
        }
        if self.maybe_commit() {
            self.broadcast_append();
        } else {
            // Keep the pipeline full.
            while self.send_append(from, false) {}
        }
        self.maybe_send_timeout_now(from);
    }

    /// Commit what a quorum holds, if it is from the current term.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let index = self.trk.committed();
        let term = if self.cfg.bug(PlantedBug::CommitPreviousTermByCounting) {
            self.log.term(index).unwrap_or(self.term)
        } else {
            self.term
        };
        let committed = self.log.maybe_commit(index, term);
        if committed {
            self.release_reads_waiting_for_commit();
        }
        committed
    }

    /// The leader's own log write is durable up to `index`: count it.
    pub(crate) fn self_persisted(&mut self, index: Index) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.id;
        if let Some(pr) = self.trk.progress.get_mut(&me) {
            pr.maybe_update(index);
        }
        if self.maybe_commit() {
            self.broadcast_append();
        }
    }
}
