//! Watch events read back from the retained history.

use crate::error::MvccError;
use crate::state::{key_bounds, State};
use crate::types::{Event, EventType, KeyValue, Revision};
use bytes::Bytes;
use thiserror::Error;

/// The start revision has been compacted away; the watch must be canceled
/// with `compact_revision` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("mvcc: required revision has been compacted")]
pub struct Compacted {
    /// The store's compaction revision.
    pub compact_revision: i64,
}

/// Why history could not be read for a watch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventsError {
    /// The start revision is compacted: cancel the watch.
    #[error(transparent)]
    Compacted(#[from] Compacted),
    /// The backend failed to give back a value.
    #[error(transparent)]
    Storage(#[from] MvccError),
}

impl State {
    /// Events with revision `>= start_rev` for keys in `[key, range_end)`, in
    /// revision order. An empty `key` means every key. `start_rev <= 0` means
    /// "from the next revision". `limit` (0 = none) caps the count but never
    /// splits a main revision: a page ends at a revision boundary, so the
    /// caller resumes at `last.revision.main + 1` without gaps or duplicates.
    pub(crate) fn events_since(
        &self,
        start_rev: i64,
        key: &Bytes,
        range_end: &Bytes,
        limit: usize,
    ) -> Result<Vec<Event>, EventsError> {
        let start = if start_rev <= 0 {
            self.current_rev + 1
        } else {
            start_rev
        };
        if self.compact_rev > 0 && start <= self.compact_rev {
            return Err(EventsError::Compacted(Compacted {
                compact_revision: self.compact_rev,
            }));
        }
        let bounds = if key.is_empty() {
            None
        } else {
            key_bounds(key, range_end).ok()
        };
        let in_range = |k: &Bytes| match &bounds {
            None => true,
            Some(b) => std::ops::RangeBounds::contains(b, k),
        };
        let mut out = Vec::new();
        for (rev, rec) in self.history.range(Revision::new(start, 0)..) {
            if limit > 0 && out.len() >= limit {
                let last: &Event = &out[out.len() - 1];
                if rev.main != last.revision.main {
                    break;
                }
            }
            if !in_range(&rec.key) {
                continue;
            }
            let prev_kv = match self.index.get(&rec.key).and_then(|ki| ki.before(*rev)) {
                Some((r, false)) => Some(self.kv_of(r, &self.history[&r])?),
                _ => None,
            };
            let (kind, kv) = if rec.tombstone {
                let kv = KeyValue {
                    key: rec.key.clone(),
                    mod_revision: rev.main,
                    ..Default::default()
                };
                (EventType::Delete, kv)
            } else {
                (EventType::Put, self.kv_of(*rev, rec)?)
            };
            out.push(Event {
                kind,
                kv,
                prev_kv,
                revision: *rev,
            });
        }
        Ok(out)
    }
}
