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
        let mut empty = Vec::new();
        for (key, ki) in self.index.iter_mut() {
            for r in ki.compact(rev) {
                self.history.remove(&r);
                self.changes.hist_del.push(r);
            }
            if ki.is_empty() {
                empty.push(key.clone());
            }
        }
        for k in empty {
            self.index.remove(&k);
        }
        assert!(rev > self.compact_rev && rev <= self.current_rev);
        self.compact_rev = rev;
        Ok(())
    }
}
