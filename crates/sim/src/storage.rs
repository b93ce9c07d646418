//! A node's disk as the simulator sees it: what is durable, and the
//! writes not yet fsynced, which a crash loses.

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
    /// Written, not yet fsynced, in order.
    pub(crate) pending: Vec<Write>,
}

/// The persistence part of one `Ready`.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
}

impl DurableLog {
    /// Write the persistence part of `rd` (durable at the next [`sync`]).
    ///
    /// [`sync`]: DurableLog::sync
    pub fn write(&mut self, rd: &Ready) {
        self.pending.push(Write {
            snapshot: rd.snapshot.clone(),
            entries: rd.entries.clone(),
            hard_state: rd.hard_state,
        });
    }

    /// An fsync completed: every write so far is durable.
    pub fn sync(&mut self) {
        for w in std::mem::take(&mut self.pending) {
            self.apply(&w);
        }
    }

    /// A crash: the writes not fsynced are gone.
    pub fn crash(&mut self) {
        self.pending.clear();
    }

    /// True while some write is not yet fsynced.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Write `rd` and fsync it.
    pub fn persist(&mut self, rd: &Ready) {
        self.write(rd);
        self.sync();
    }

    fn apply(&mut self, w: &Write) {
        if let Some(s) = &w.snapshot {
            self.entries.clear();
            self.snapshot = Some(s.clone());
        }
        if let Some(first) = w.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(w.entries.iter().cloned());
        }
        if let Some(hs) = w.hard_state {
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
