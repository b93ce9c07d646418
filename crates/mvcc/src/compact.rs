//! Compaction: drop the history no read at or after the compaction
//! revision can reach.

use crate::error::{MvccError, Result};
use crate::state::State;

impl State {
    /// Compacts at `rev`: afterwards reads below `rev` fail with
    /// [`MvccError::Compacted`].
    pub(crate) fn compact(&mut self, rev: i64) -> Result<()> {
        if rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRevision);
        }
        let (history, changes) = (&mut self.history, &mut self.changes);
        let resident = &mut self.resident_bytes;
        self.index.retain_ordered(|ki| {
            for r in ki.compact(rev) {
                if let Some(v) = history.remove(&r).and_then(|h| h.value) {
                    *resident -= v.len();
                }
                changes.hist_del.push(r);
            }
            !ki.is_empty()
        });
        assert!(rev > self.compact_rev && rev <= self.current_rev);
        self.compact_rev = rev;
        Ok(())
    }
}
