//! A node's disk as the simulator sees it: what is durable, and one write
//! in flight (written, not yet fsynced) that a crash loses.

use concord_raft::{Entry, HardState, InitialState, Ready, Snapshot};

/// Durable Raft state of one node.
#[derive(Clone, Debug, Default)]
pub struct DurableLog {
    /// Persisted hard state.
    pub hard_state: HardState,
    /// Persisted snapshot.
    pub snapshot: Option<Snapshot>,
    /// Persisted entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl DurableLog {
    /// Make the persistence part of `rd` durable (the fsync completed).
    pub fn persist(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            self.entries.clear();
            self.snapshot = Some(s.clone());
        }
        if let Some(first) = rd.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            self.hard_state = hs;
        }
    }

    /// Drop entries covered by a snapshot the application made.
    pub fn compact(&mut self, snap: Snapshot) {
        self.entries.retain(|e| e.index > snap.meta.index);
        self.snapshot = Some(snap);
    }

    /// State to restart from.
    pub fn initial_state(&self, applied: u64) -> InitialState {
        InitialState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
            applied,
        }
    }

    /// Snapshot index (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    /// Term of the entry at `index` if it is stored, or `Some(0)`-free `None`.
    pub fn term(&self, index: u64) -> Option<u64> {
        if let Some(s) = &self.snapshot {
            if s.meta.index == index {
                return Some(s.meta.term);
            }
        }
        let first = self.entries.first()?.index;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize).map(|e| e.term)
    }

    /// True if the entry `(index, term)` is stored or covered by the snapshot.
    pub fn covers(&self, index: u64, term: u64) -> bool {
        index <= self.snapshot_index() || self.term(index) == Some(term)
    }
}
