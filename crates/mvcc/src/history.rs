//! The retained history in memory: every revision's entry, in revision
//! order.
//!
//! Revisions are only ever appended at the top (a write transaction takes
//! the next one; load and restore go in order), looked up by revision and
//! walked in order; compaction removes some anywhere. A B-tree map filled in
//! ascending order leaves its nodes half full: about 200 bytes per revision
//! for a 112-byte entry. Here entries sit in chunks of [`CHUNK`] in
//! revision order: appending is a push, a lookup is two binary searches,
//! and memory is the entries themselves plus one partly filled chunk.
//!
//! Invariant: revisions strictly increase across and within chunks; no
//! chunk is empty.

use std::ops::{Bound, RangeBounds};

use crate::state::HistRec;
use crate::types::Revision;

/// Entries per chunk.
pub(crate) const CHUNK: usize = 4096;

/// Revision-ordered entries in chunks.
#[derive(Debug, Default)]
pub(crate) struct History {
    chunks: Vec<Vec<(Revision, HistRec)>>,
    len: usize,
}

impl History {
    /// Appends `rev`, which must be above every revision held.
    pub(crate) fn insert(&mut self, rev: Revision, h: HistRec) {
        if let Some(last) = self.chunks.last().and_then(|c| c.last()) {
            assert!(
                rev > last.0,
                "history revisions must increase: {:?} after {:?}",
                rev,
                last.0
            );
        }
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push((rev, h)),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push((rev, h));
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where `rev` is, or would go: (chunk, position).
    fn locate(&self, rev: Revision) -> (usize, Result<usize, usize>) {
        let c = self.chunks.partition_point(|c| c[0].0 <= rev);
        if c == 0 {
            return (0, Err(0));
        }
        let c = c - 1;
        (c, self.chunks[c].binary_search_by(|(r, _)| r.cmp(&rev)))
    }

    /// The entry of `rev`.
    pub(crate) fn get(&self, rev: &Revision) -> Option<&HistRec> {
        match self.locate(*rev) {
            (c, Ok(i)) => Some(&self.chunks[c][i].1),
            _ => None,
        }
    }

    /// The entry of `rev`, to change.
    pub(crate) fn get_mut(&mut self, rev: &Revision) -> Option<&mut HistRec> {
        match self.locate(*rev) {
            (c, Ok(i)) => Some(&mut self.chunks[c][i].1),
            _ => None,
        }
    }

    /// Removes the entries of `doomed` (ascending; revisions not held are
    /// skipped) and calls `gone` on each removed one; then packs the chunks
    /// again (compaction is a walk of everything anyway).
    pub(crate) fn remove_sorted(&mut self, doomed: &[Revision], mut gone: impl FnMut(HistRec)) {
        if doomed.is_empty() {
            return;
        }
        debug_assert!(doomed.windows(2).all(|w| w[0] < w[1]));
        let old = std::mem::take(&mut self.chunks);
        self.len = 0;
        let mut d = 0;
        for chunk in old {
            for (rev, h) in chunk {
                while d < doomed.len() && doomed[d] < rev {
                    d += 1;
                }
                if d < doomed.len() && doomed[d] == rev {
                    gone(h);
                    d += 1;
                } else {
                    self.insert(rev, h);
                }
            }
        }
    }

    /// Entries with revisions in `range`, in order.
    pub(crate) fn range(&self, range: impl RangeBounds<Revision>) -> Iter<'_> {
        let (chunk, pos) = match range.start_bound() {
            Bound::Unbounded => (0, 0),
            Bound::Included(r) => match self.locate(*r) {
                (c, Ok(i) | Err(i)) => (c, i),
            },
            Bound::Excluded(r) => match self.locate(*r) {
                (c, Ok(i)) => (c, i + 1),
                (c, Err(i)) => (c, i),
            },
        };
        Iter {
            history: self,
            chunk,
            pos,
            end: range.end_bound().cloned(),
        }
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.range(..)
    }
}

impl std::ops::Index<&Revision> for History {
    type Output = HistRec;

    fn index(&self, rev: &Revision) -> &HistRec {
        self.get(rev).expect("revision in history")
    }
}

/// Entries in order; see [`History::range`].
#[derive(Debug)]
pub(crate) struct Iter<'a> {
    history: &'a History,
    chunk: usize,
    pos: usize,
    end: Bound<Revision>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Revision, &'a HistRec);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let c = self.history.chunks.get(self.chunk)?;
            if let Some((rev, h)) = c.get(self.pos) {
                let within = match &self.end {
                    Bound::Unbounded => true,
                    Bound::Included(e) => rev <= e,
                    Bound::Excluded(e) => rev < e,
                };
                if !within {
                    self.chunk = self.history.chunks.len();
                    return None;
                }
                self.pos += 1;
                return Some((rev, h));
            }
            self.chunk += 1;
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn h(i: i64) -> HistRec {
        HistRec {
            key: Bytes::from(format!("k{i}")),
            value: None,
            create_revision: i,
            version: 1,
            lease: 0,
            tombstone: false,
        }
    }

    #[test]
    fn appends_finds_walks_and_removes_across_chunks() {
        let mut hist = History::default();
        let n = CHUNK as i64 * 2 + 100;
        for i in 0..n {
            hist.insert(Revision::new(i * 2 + 2, i % 2), h(i));
        }
        assert_eq!(hist.len(), n as usize);
        let r = Revision::new(2 * (CHUNK as i64) + 2, 0);
        assert_eq!(hist.get(&r).unwrap().create_revision, CHUNK as i64);
        assert!(hist.get(&Revision::new(3, 0)).is_none());
        // Ranges: inclusive and exclusive starts, bounded ends.
        let from = Revision::new(10, 0);
        let got: Vec<i64> = hist
            .range(from..Revision::new(20, 0))
            .map(|(r, _)| r.main)
            .collect();
        assert_eq!(got, vec![10, 12, 14, 16, 18]);
        let got: Vec<i64> = hist
            .range((Bound::Excluded(from), Bound::Included(Revision::new(14, 0))))
            .map(|(r, _)| r.main)
            .collect();
        assert_eq!(got, vec![12, 14]);
        assert_eq!(hist.iter().count(), n as usize);
        // Remove every third, across chunk boundaries.
        let doomed: Vec<Revision> = hist
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| r.main % 3 == 0)
            .collect();
        let mut gone = 0;
        hist.remove_sorted(&doomed, |_| gone += 1);
        assert_eq!(gone, doomed.len());
        assert_eq!(hist.len(), n as usize - doomed.len());
        assert!(hist.iter().all(|(r, _)| r.main % 3 != 0));
        let revs: Vec<Revision> = hist.iter().map(|(r, _)| *r).collect();
        assert!(revs.windows(2).all(|w| w[0] < w[1]));
        // Appending goes on above the rest.
        hist.insert(Revision::new(n * 2 + 10, 0), h(0));
        assert!(hist.get(&Revision::new(n * 2 + 10, 0)).is_some());
    }

    #[test]
    #[should_panic(expected = "history revisions must increase")]
    fn a_revision_below_the_top_is_refused() {
        let mut hist = History::default();
        hist.insert(Revision::new(5, 0), h(1));
        hist.insert(Revision::new(4, 0), h(2));
    }
}
