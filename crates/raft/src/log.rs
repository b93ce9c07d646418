//! The replicated log as the core sees it: a snapshot position followed by
//! entries, some of them durable (`stabled`), some committed, some applied.
//!
//! Invariants (checked by `assert_invariants`, kept on in release):
//! `snapshot_index <= applied <= committed <= last_index` and
//! `stabled <= last_index`, and entries are contiguous with increasing terms.

use std::collections::VecDeque;

use crate::types::{Entry, Index, SnapshotMeta, Term};

/// In-memory view of the log. The application owns durability: it persists
/// what `Ready` hands it and gives the state back on restart.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// Index covered by the latest snapshot (entries up to here are gone).
    snapshot_index: Index,
    /// Term at `snapshot_index`.
    snapshot_term: Term,
    /// Entries from `snapshot_index + 1` on.
    entries: VecDeque<Entry>,
    /// Highest index known durable on this node.
    pub stabled: Index,
    /// Highest index known committed.
    pub committed: Index,
    /// Highest index handed to the application and acknowledged by `advance`.
    pub applied: Index,
}

impl RaftLog {
    /// A log restored from durable state.
    pub fn restore_from(
        meta: &SnapshotMeta,
        entries: Vec<Entry>,
        commit: Index,
        applied: Index,
    ) -> Self {
        let mut log = RaftLog {
            snapshot_index: meta.index,
            snapshot_term: meta.term,
            entries: VecDeque::new(),
            stabled: meta.index,
            committed: meta.index.max(commit),
            applied: meta.index.max(applied),
        };
        for e in entries.into_iter().filter(|e| e.index > meta.index) {
            assert_eq!(
                e.index,
                log.last_index() + 1,
                "restored entries are not contiguous"
            );
            log.entries.push_back(e);
        }
        log.stabled = log.last_index();
        // A commit index past the durable log cannot be trusted; clamp it.
        log.committed = log.committed.min(log.last_index());
        log.applied = log.applied.min(log.committed);
        log.assert_invariants();
        log
    }

    pub fn assert_invariants(&self) {
        assert!(
            self.snapshot_index <= self.applied
                && self.applied <= self.committed
                && self.committed <= self.last_index(),
            "log invariant broken: snapshot {} <= applied {} <= committed {} <= last {}",
            self.snapshot_index,
            self.applied,
            self.committed,
            self.last_index()
        );
        assert!(
            self.stabled <= self.last_index(),
            "stabled past the end of the log"
        );
    }

    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// Term at `index`, or `None` if compacted away or past the end.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snapshot_index - 1) as usize].term)
    }

    pub fn match_term(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Raft section 5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries in `[lo, last]`, at most `max_bytes` (but always at least one
    /// if any exists). `None` if `lo` is compacted.
    pub fn entries_from(&self, lo: Index, max_bytes: usize) -> Option<Vec<Entry>> {
        if lo <= self.snapshot_index {
            return None;
        }
        let mut out = Vec::new();
        let mut size = 0;
        let start = (lo - self.snapshot_index - 1) as usize;
        for e in self.entries.iter().skip(start) {
            size += e.size();
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    /// Entries in `(lo, hi]` limited to `max_bytes` (at least one).
    pub fn slice(&self, lo: Index, hi: Index, max_bytes: usize) -> Vec<Entry> {
        if hi <= lo {
            return Vec::new();
        }
        assert!(lo >= self.snapshot_index, "slice of compacted entries");
        let mut out = Vec::new();
        let mut size = 0;
        for e in self
            .entries
            .iter()
            .skip((lo - self.snapshot_index) as usize)
        {
            if e.index > hi {
                break;
            }
            size += e.size();
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Entries not yet durable.
    pub fn unstable_entries(&self) -> Vec<Entry> {
        self.slice(self.stabled, self.last_index(), usize::MAX)
    }

    /// Leader append. Returns the new last index.
    pub fn append(&mut self, entries: Vec<Entry>) -> Index {
        for e in entries {
            assert_eq!(e.index, self.last_index() + 1, "append leaves a gap");
            assert!(e.term >= self.last_term(), "append with a lower term");
            self.entries.push_back(e);
        }
        self.last_index()
    }

    /// Largest index at or below `index` whose term is at or below `term`:
    /// where a follower's log may start matching a leader with `term` at `index`
    /// (fast backtracking, Raft thesis section 5.3 optimisation).
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> (Index, Term) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t > term => i -= 1,
                Some(t) => return (i, t),
                None => return (i, 0),
            }
        }
    }

    /// Follower append: if our entry at `prev_index` has `prev_term`, append
    /// `entries`, truncating any conflicting suffix. Returns the last index
    /// that now matches the leader, or `None` on mismatch.
    pub fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        entries: Vec<Entry>,
    ) -> Option<Index> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        let mut to_append = Vec::new();
        for e in entries {
            if to_append.is_empty() {
                match self.term(e.index) {
                    Some(t) if t == e.term => continue,
                    Some(_) => {
                        // Invariant: a committed entry is never overwritten.
                        assert!(
                            e.index > self.committed,
                            "conflict at committed index {}",
                            e.index
                        );
                        self.truncate_after(e.index - 1);
                    }
                    None if e.index <= self.snapshot_index => continue,
                    None => {}
                }
            }
            to_append.push(e);
        }
        self.append(to_append);
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    fn truncate_after(&mut self, index: Index) {
        assert!(index >= self.snapshot_index);
        self.entries
            .truncate((index - self.snapshot_index) as usize);
        self.stabled = self.stabled.min(index);
    }

    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} past last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// The leader commit rule (Raft section 5.4.2): only an entry of the
    /// current term is committed by counting replicas.
    pub fn maybe_commit(&mut self, index: Index, term: Term) -> bool {
        if index > self.committed && self.term(index) == Some(term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    pub fn stable_to(&mut self, index: Index, term: Term) {
        if self.match_term(index, term) && index > self.stabled {
            self.stabled = index;
        }
    }

    pub fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.committed,
            "applied {index} past committed {}",
            self.committed
        );
        if index > self.applied {
            self.applied = index;
        }
    }

    /// Discard everything and continue from a snapshot received from the leader.
    pub fn restore_snapshot(&mut self, meta: &SnapshotMeta) {
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.entries.clear();
        self.committed = meta.index;
        self.stabled = meta.index;
        // The snapshot is handed to the application in the same `Ready`.
        self.applied = meta.index;
    }

    /// Drop entries up to `index` (the application has a snapshot covering them).
    pub fn compact(&mut self, index: Index) {
        assert!(index <= self.applied, "compacting unapplied entries");
        if index <= self.snapshot_index {
            return;
        }
        let term = self.term(index).expect("compact index in log");
        let n = (index - self.snapshot_index) as usize;
        self.entries.drain(..n);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.stabled = self.stabled.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ents(terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::normal(t, i as u64 + 1, Bytes::new()))
            .collect()
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        RaftLog::restore_from(&SnapshotMeta::default(), ents(terms), 0, 0)
    }

    #[test]
    fn conflicting_suffix_is_truncated() {
        let mut log = log_of(&[1, 1, 2, 2]);
        let new = vec![Entry::normal(3, 3, Bytes::new())];
        assert_eq!(log.maybe_append(2, 1, 0, new), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.stabled, 2, "truncation lowers stabled");
    }

    #[test]
    fn mismatch_is_rejected_and_changes_nothing() {
        let mut log = log_of(&[1, 1, 2]);
        assert_eq!(log.maybe_append(3, 3, 0, vec![]), None);
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    fn duplicate_append_is_idempotent() {
        let mut log = log_of(&[1, 1, 2]);
        assert_eq!(
            log.maybe_append(1, 1, 3, ents(&[1, 1, 2])[1..].to_vec()),
            Some(3)
        );
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.committed, 3);
    }

    #[test]
    fn conflict_hint_skips_a_term() {
        let log = log_of(&[1, 1, 4, 4, 4, 4]);
        // Leader probes index 6 with term 5: our entries of term 4 may all conflict.
        assert_eq!(log.find_conflict_by_term(6, 2), (2, 1));
        assert_eq!(log.find_conflict_by_term(6, 4), (6, 4));
    }

    #[test]
    fn compaction_keeps_terms_at_the_boundary() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.commit_to(3);
        log.applied_to(3);
        log.compact(2);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        assert_eq!(log.entries_from(2, usize::MAX), None);
        assert_eq!(log.entries_from(3, usize::MAX).unwrap().len(), 2);
    }

    #[test]
    #[should_panic(expected = "conflict at committed index")]
    fn overwriting_a_committed_entry_panics() {
        let mut log = log_of(&[1, 1, 2]);
        log.commit_to(3);
        log.maybe_append(1, 1, 3, vec![Entry::normal(3, 2, Bytes::new())]);
    }
}
