//! What the WAL writer remembers about each group's log without keeping the
//! entries: snapshot mark, last index, the terms (as runs), the hard state.
//! Enough to refuse a batch that would break a log invariant before anything
//! is written.

use concord_raft::{GroupId, HardState, Index, Term};

use crate::error::{Result, StorageError};
use crate::record::{SnapshotMark, WalBatch};
use crate::replay::GroupLog;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMark>,
    pub last_index: Index,
    /// `(first index, term)` of each run of equal terms in `(snapshot, last_index]`.
    runs: Vec<(Index, Term)>,
}

impl GroupMeta {
    pub fn from_log(log: &GroupLog) -> Self {
        let mut meta = GroupMeta {
            hard_state: log.hard_state,
            snapshot: log.snapshot,
            last_index: log.first_index() - 1,
            runs: Vec::new(),
        };
        for e in &log.entries {
            meta.push(e.index, e.term);
        }
        meta
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot.map_or(0, |m| m.index)
    }

    /// Term of the entry at `index`, if the log knows it.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        let snap = self.snapshot.unwrap_or_default();
        if index == snap.index {
            return Some(snap.term);
        }
        if index < snap.index || index > self.last_index {
            return None;
        }
        let run = self.runs.partition_point(|&(start, _)| start <= index);
        self.runs.get(run.checked_sub(1)?).map(|&(_, t)| t)
    }

    fn push(&mut self, index: Index, term: Term) {
        assert_eq!(
            index,
            self.last_index + 1,
            "log metadata must grow contiguously"
        );
        if self.runs.last().is_none_or(|&(_, t)| t != term) {
            self.runs.push((index, term));
        }
        self.last_index = index;
    }

    fn truncate_after(&mut self, index: Index) {
        if index < self.last_index {
            self.last_index = index;
            self.runs.retain(|&(start, _)| start <= index);
        }
    }

    fn install(&mut self, mark: SnapshotMark) {
        self.snapshot = Some(mark);
        self.last_index = mark.index;
        self.runs.clear();
    }

    /// Drop entries up to `mark` (which must be in the log).
    pub fn compact(&mut self, mark: SnapshotMark) {
        assert!(
            mark.index <= self.last_index,
            "compaction past the end of the log"
        );
        let first = mark.index + 1;
        let covering = self.runs.partition_point(|&(start, _)| start <= first);
        if first > self.last_index || covering == 0 {
            self.runs.clear();
        } else {
            // The run covering `first` now starts there.
            self.runs[covering - 1].0 = first;
            self.runs.drain(..covering - 1);
        }
        self.snapshot = Some(mark);
    }

    /// Refuse a batch that would break the log: a snapshot mark not past the
    /// current one, entries not contiguous, a gap, entries under the
    /// snapshot, decreasing terms, a hard state whose term goes back or whose
    /// vote changes within a term.
    pub fn check(&self, b: &WalBatch) -> Result<()> {
        let bad = |reason: String| Err(StorageError::invalid(b.group, reason));
        let (mut snap_index, mut last) = (self.snapshot_index(), self.last_index);
        let highest = b
            .snapshot
            .map(|m| m.index)
            .into_iter()
            .chain(b.entries.last().map(|e| e.index));
        if let Some(i) = highest.max().filter(|&i| i > crate::record::MAX_INDEX) {
            return bad(format!("index {i} is past the largest storable index"));
        }
        if let Some(m) = b.snapshot {
            if m.index <= snap_index {
                return bad(format!(
                    "snapshot at {} is not past the current snapshot at {snap_index}",
                    m.index
                ));
            }
            (snap_index, last) = (m.index, m.index);
        }
        if let Some(first) = b.entries.first() {
            for w in b.entries.windows(2) {
                if w[1].index != w[0].index + 1 || w[1].term < w[0].term {
                    return bad(format!(
                        "entries ({}, {}) then ({}, {}) are not contiguous with non-decreasing terms",
                        w[0].index, w[0].term, w[1].index, w[1].term
                    ));
                }
            }
            if first.index <= snap_index {
                return bad(format!(
                    "entry {} is covered by the snapshot at {snap_index}",
                    first.index
                ));
            }
            if first.index > last + 1 {
                return bad(format!("entry {} leaves a gap after {last}", first.index));
            }
            let prev_term = match b.snapshot {
                Some(m) => m.term,
                None => self.term_at(first.index - 1).unwrap_or(0),
            };
            if first.term < prev_term {
                return bad(format!(
                    "entry {} has term {} below the previous entry's term {prev_term}",
                    first.index, first.term
                ));
            }
        }
        if let Some(hs) = b.hard_state {
            let old = self.hard_state;
            if hs.term < old.term {
                return bad(format!(
                    "hard state term goes back from {} to {}",
                    old.term, hs.term
                ));
            }
            if hs.term == old.term && old.vote != 0 && hs.vote != old.vote {
                return bad(format!(
                    "vote changes from {} to {} within term {}",
                    old.vote, hs.vote, hs.term
                ));
            }
        }
        Ok(())
    }

    /// Record a batch that passed [`GroupMeta::check`].
    pub fn apply(&mut self, b: &WalBatch) {
        if let Some(m) = b.snapshot {
            self.install(m);
        }
        if let Some(first) = b.entries.first() {
            self.truncate_after(first.index - 1);
            for e in &b.entries {
                self.push(e.index, e.term);
            }
        }
        if let Some(hs) = b.hard_state {
            self.hard_state = hs;
        }
    }

    /// Checkpoint record content for a new segment.
    pub fn checkpoint(&self, group: GroupId) -> Option<crate::record::Record> {
        let hard_state = (self.hard_state != HardState::default()).then_some(self.hard_state);
        (hard_state.is_some() || self.snapshot.is_some()).then_some(
            crate::record::Record::Checkpoint {
                group,
                hard_state,
                snapshot: self.snapshot,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord_raft::Entry;

    fn batch(first: Index, terms: &[Term]) -> WalBatch {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::normal(t, first + i as u64, Bytes::new()))
            .collect();
        WalBatch {
            group: 1,
            entries,
            ..Default::default()
        }
    }

    #[test]
    fn terms_follow_appends_repairs_and_compaction() {
        let mut m = GroupMeta::default();
        let b = batch(1, &[1, 1, 2, 2, 3]);
        m.check(&b).unwrap();
        m.apply(&b);
        assert_eq!(
            (1..=5).map(|i| m.term_at(i).unwrap()).collect::<Vec<_>>(),
            [1, 1, 2, 2, 3]
        );
        let repair = batch(4, &[4]);
        m.check(&repair).unwrap();
        m.apply(&repair);
        assert_eq!(m.last_index, 4);
        assert_eq!(m.term_at(4), Some(4));
        assert_eq!(m.term_at(5), None);
        m.compact(SnapshotMark { index: 3, term: 2 });
        assert_eq!(
            (m.term_at(3), m.term_at(4), m.term_at(2)),
            (Some(2), Some(4), None)
        );
        assert!(m.check(&batch(3, &[5])).is_err(), "below the snapshot");
        assert!(m.check(&batch(6, &[5])).is_err(), "gap");
        assert!(m.check(&batch(5, &[3])).is_err(), "term goes back");
        assert!(m.check(&batch(5, &[4, 4])).is_ok());
    }

    #[test]
    fn hard_state_rules() {
        let mut m = GroupMeta::default();
        let mut b = WalBatch::new(1);
        b.hard_state = Some(HardState {
            term: 2,
            vote: 1,
            commit: 0,
        });
        m.check(&b).unwrap();
        m.apply(&b);
        b.hard_state = Some(HardState {
            term: 2,
            vote: 3,
            commit: 0,
        });
        assert!(m.check(&b).is_err());
        b.hard_state = Some(HardState {
            term: 1,
            vote: 0,
            commit: 0,
        });
        assert!(m.check(&b).is_err());
        b.hard_state = Some(HardState {
            term: 3,
            vote: 3,
            commit: 0,
        });
        assert!(m.check(&b).is_ok());
    }
}
