//! Rebuilding each group's durable log from WAL records, in order, and
//! handing it to the Raft core as an `InitialState`.
//!
//! Replay rules (the later record wins):
//! - batch: a snapshot mark discards the whole log (it restarts after the
//!   mark); entries replace stored entries from their first index on (log
//!   repair); the hard state replaces the previous one.
//! - compacted / checkpoint mark: entries up to the mark are dropped; the
//!   entry at the mark, if present, must have the mark's term. A mark at or
//!   below the current one changes nothing.
//! - entries that start after a gap (the segments before were released) are
//!   accepted; at the end every group's entries must start right after its
//!   snapshot mark, or the log is reported as corrupt.

use std::collections::BTreeMap;

use concord_raft::{Entry, GroupId, HardState, Index, InitialState, Snapshot};

use crate::error::{Result, StorageError};
use crate::record::{Record, SnapshotMark, WalBatch};

/// The durable log of one Raft group, as recovered from the WAL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupLog {
    /// Last hard state written (default if none was).
    pub hard_state: HardState,
    /// Where the log starts: the latest snapshot mark, if any.
    pub snapshot: Option<SnapshotMark>,
    /// Entries after the snapshot mark, contiguous.
    pub entries: Vec<Entry>,
}

impl GroupLog {
    /// Index of the first entry the log can hold (after the snapshot mark).
    pub fn first_index(&self) -> Index {
        self.snapshot.map_or(0, |m| m.index) + 1
    }

    /// Index of the last entry (or of the snapshot mark if there are none).
    pub fn last_index(&self) -> Index {
        self.entries
            .last()
            .map_or(self.first_index() - 1, |e| e.index)
    }

    /// Build the core's `InitialState` from this log, the group's latest
    /// snapshot (from the [`crate::SnapshotStore`]) and the application's
    /// applied index.
    ///
    /// The snapshot must be at the WAL's mark, or newer (a crash after the
    /// snapshot file was saved and before its mark reached the WAL): then the
    /// entries it covers are dropped, and the rest too unless the log holds
    /// the snapshot's last entry with its term. An older or missing snapshot
    /// is an error.
    pub fn into_initial_state(
        self,
        group: GroupId,
        snapshot: Option<Snapshot>,
        applied: Index,
    ) -> Result<InitialState> {
        let GroupLog {
            hard_state,
            snapshot: mark,
            mut entries,
        } = self;
        let inconsistent = |reason: String| StorageError::Inconsistent { group, reason };
        match (mark, &snapshot) {
            (None, None) => {}
            (Some(m), None) => {
                return Err(inconsistent(format!(
                    "the WAL starts after a snapshot at index {} but no snapshot was given",
                    m.index
                )))
            }
            (_, Some(s)) => {
                let (index, term) = (s.meta.index, s.meta.term);
                let mark = mark.unwrap_or_default();
                if index < mark.index || (index == mark.index && term != mark.term) {
                    return Err(inconsistent(format!(
                        "snapshot at ({index}, {term}) is older than the WAL's mark at ({}, {})",
                        mark.index, mark.term
                    )));
                }
                let first = entries.first().map_or(index + 1, |e| e.index);
                let holds_last = index >= first
                    && entries
                        .get((index - first) as usize)
                        .is_some_and(|e| e.term == term);
                if index > mark.index && !holds_last {
                    entries.clear();
                } else {
                    entries.retain(|e| e.index > index);
                }
            }
        }
        Ok(InitialState {
            hard_state,
            snapshot,
            entries,
            applied,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Replayer {
    groups: BTreeMap<GroupId, GroupLog>,
}

impl Replayer {
    /// Last index of `group`'s log so far (its snapshot index if no entries).
    pub fn last_index(&self, group: GroupId) -> Index {
        self.groups.get(&group).map_or(0, GroupLog::last_index)
    }

    /// Apply one record; the error is a reason (the caller names file and offset).
    pub fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Batch(WalBatch {
                group,
                snapshot,
                entries,
                hard_state,
            }) => {
                let log = self.groups.entry(group).or_default();
                if let Some(mark) = snapshot {
                    log.snapshot = Some(mark);
                    log.entries.clear();
                }
                append(log, entries);
                if let Some(hs) = hard_state {
                    log.hard_state = hs;
                }
            }
            Record::Compacted { group, mark } => {
                compact(self.groups.entry(group).or_default(), mark)?;
            }
            Record::Checkpoint {
                group,
                hard_state,
                snapshot,
            } => {
                let log = self.groups.entry(group).or_default();
                if let Some(mark) = snapshot {
                    compact(log, mark)?;
                }
                if let Some(hs) = hard_state {
                    log.hard_state = hs;
                }
            }
        }
        Ok(())
    }

    /// The recovered logs, checked: entries contiguous from the snapshot mark
    /// on, terms non-decreasing and not below the mark's term.
    pub fn finish(self) -> Result<BTreeMap<GroupId, GroupLog>, (GroupId, String)> {
        for (&group, log) in &self.groups {
            let first = log.first_index();
            let mut prev_term = log.snapshot.map_or(0, |m| m.term);
            for (i, e) in log.entries.iter().enumerate() {
                if e.index != first + i as u64 {
                    return Err((
                        group,
                        format!(
                            "log gap: expected entry {} after the snapshot mark, found {}",
                            first + i as u64,
                            e.index
                        ),
                    ));
                }
                if e.term < prev_term {
                    return Err((group, format!("entry {} has a decreasing term", e.index)));
                }
                prev_term = e.term;
            }
        }
        Ok(self.groups)
    }
}

fn append(log: &mut GroupLog, mut entries: Vec<Entry>) {
    let start = log.first_index();
    let Some(first) = entries.first().map(|e| e.index) else {
        return;
    };
    if first < start {
        let skip = (start - first).min(entries.len() as u64) as usize;
        entries.drain(..skip);
    }
    let Some(first) = entries.first().map(|e| e.index) else {
        return;
    };
    match (
        log.entries.first().map(|e| e.index),
        log.entries.last().map(|e| e.index),
    ) {
        (Some(base), Some(last)) if first >= base && first <= last + 1 => {
            log.entries.truncate((first - base) as usize);
        }
        // Empty log, a gap (earlier segments released), or a rewrite of the
        // whole log: start over from these entries.
        _ => log.entries.clear(),
    }
    log.entries.extend(entries);
}

fn compact(log: &mut GroupLog, mark: SnapshotMark) -> Result<(), String> {
    let current = log.snapshot.unwrap_or_default();
    if mark.index < current.index {
        return Ok(());
    }
    if mark.index == current.index {
        if log.snapshot.is_some() && mark.term != current.term {
            return Err(format!(
                "snapshot mark ({}, {}) disagrees with the current one ({}, {})",
                mark.index, mark.term, current.index, current.term
            ));
        }
        log.snapshot = Some(mark);
        return Ok(());
    }
    if let Some(base) = log.entries.first().map(|e| e.index) {
        if mark.index >= base {
            let at = (mark.index - base) as usize;
            if let Some(e) = log.entries.get(at) {
                if e.term != mark.term {
                    return Err(format!(
                        "compaction at ({}, {}) but the entry there has term {}",
                        mark.index, mark.term, e.term
                    ));
                }
            }
            let drop = (at + 1).min(log.entries.len());
            log.entries.drain(..drop);
        }
    }
    log.snapshot = Some(mark);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ents(first: Index, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::normal(t, first + i as u64, Bytes::new()))
            .collect()
    }

    fn batch(group: GroupId, entries: Vec<Entry>) -> Record {
        Record::Batch(WalBatch {
            group,
            entries,
            ..Default::default()
        })
    }

    #[test]
    fn later_entries_win_from_their_first_index() {
        let mut r = Replayer::default();
        r.apply(batch(1, ents(1, &[1, 1, 1, 1]))).unwrap();
        r.apply(batch(1, ents(3, &[2]))).unwrap();
        let logs = r.finish().unwrap();
        let terms: Vec<_> = logs[&1].entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(terms, vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn compaction_and_install() {
        let mut r = Replayer::default();
        r.apply(batch(1, ents(1, &[1, 1, 2, 2]))).unwrap();
        r.apply(Record::Compacted {
            group: 1,
            mark: SnapshotMark { index: 2, term: 1 },
        })
        .unwrap();
        assert!(r
            .apply(Record::Compacted {
                group: 1,
                mark: SnapshotMark { index: 3, term: 1 }
            })
            .is_err());
        let logs = r.finish().unwrap();
        assert_eq!(logs[&1].entries.first().map(|e| e.index), Some(3));

        let mut r = Replayer::default();
        r.apply(batch(1, ents(1, &[1, 1]))).unwrap();
        let install = WalBatch {
            group: 1,
            snapshot: Some(SnapshotMark { index: 10, term: 3 }),
            entries: ents(11, &[3]),
            hard_state: None,
        };
        r.apply(Record::Batch(install)).unwrap();
        let logs = r.finish().unwrap();
        assert_eq!(logs[&1].first_index(), 11);
        assert_eq!(logs[&1].last_index(), 11);
    }

    #[test]
    fn uncovered_gap_is_an_error() {
        let mut r = Replayer::default();
        r.apply(batch(1, ents(5, &[1]))).unwrap();
        assert!(r.finish().is_err());
        let mut r = Replayer::default();
        r.apply(Record::Checkpoint {
            group: 1,
            hard_state: None,
            snapshot: Some(SnapshotMark { index: 4, term: 1 }),
        })
        .unwrap();
        r.apply(batch(1, ents(5, &[1]))).unwrap();
        assert!(r.finish().is_ok());
    }
}
