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
        let mut doomed = Vec::new();
        self.index.retain_ordered(|ki| {
            doomed.extend(ki.compact(rev));
            !ki.is_empty()
        });
        doomed.sort_unstable();
        let resident = &mut self.resident_bytes;
        self.history.remove_sorted(&doomed, |h| {
            if let Some(v) = h.value {
                *resident -= v.len();
            }
        });
        self.changes.hist_del.extend(doomed);
        assert!(rev > self.compact_rev && rev <= self.current_rev);
        self.compact_rev = rev;
        Ok(())
    }
}
