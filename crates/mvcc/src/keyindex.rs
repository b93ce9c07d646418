//! Per-key revision history, like etcd's `keyIndex`: every revision that
//! wrote the key, in order, each flagged when it deleted the key (a
//! tombstone ends a generation; the next put starts a new one).

use crate::types::Revision;

/// The revisions that touched one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    /// `(revision, tombstone)`, strictly increasing.
    revs: Vec<(Revision, bool)>,
}

impl KeyIndex {
    /// Appends a revision; asserts monotonicity (kept on in release).
    pub(crate) fn push(&mut self, rev: Revision, tombstone: bool) {
        if let Some(&(last, _)) = self.revs.last() {
            assert!(
                rev > last,
                "key revision went backwards: {last:?} -> {rev:?}"
            );
        }
        // Most keys have one or two revisions: a first push would give
        // room for four (96 bytes a key, most of a million keys' index).
        if self.revs.capacity() == 0 {
            self.revs.reserve_exact(1);
        }
        self.revs.push((rev, tombstone));
    }

    /// Position of the last entry with `main <= at`.
    fn pos_at(&self, at: i64) -> Option<usize> {
        let n = self.revs.partition_point(|(r, _)| r.main <= at);
        n.checked_sub(1)
    }

    /// The revision holding the live value at main revision `at`, if the key
    /// existed then.
    pub(crate) fn visible_at(&self, at: i64) -> Option<Revision> {
        let p = self.pos_at(at)?;
        let (rev, tomb) = self.revs[p];
        (!tomb).then_some(rev)
    }

    /// The latest revision (live or tombstone).
    pub(crate) fn last(&self) -> Option<(Revision, bool)> {
        self.revs.last().copied()
    }

    /// The entry just before `rev`, if retained.
    pub(crate) fn before(&self, rev: Revision) -> Option<(Revision, bool)> {
        let n = self.revs.partition_point(|(r, _)| *r < rev);
        n.checked_sub(1).map(|p| self.revs[p])
    }

    /// Drops what a compaction at `at` makes unreachable: every revision
    /// before the last one `<= at`, and that one too if it is a tombstone.
    /// Returns the dropped revisions.
    pub(crate) fn compact(&mut self, at: i64) -> Vec<Revision> {
        let Some(p) = self.pos_at(at) else {
            return Vec::new();
        };
        let keep_from = if self.revs[p].1 { p + 1 } else { p };
        self.revs.drain(..keep_from).map(|(r, _)| r).collect()
    }

    /// True when no revision is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_and_compaction() {
        let mut k = KeyIndex::default();
        k.push(Revision::new(2, 0), false);
        k.push(Revision::new(3, 0), false);
        k.push(Revision::new(4, 0), true);
        k.push(Revision::new(6, 1), false);
        assert_eq!(k.visible_at(1), None);
        assert_eq!(k.visible_at(3), Some(Revision::new(3, 0)));
        assert_eq!(k.visible_at(5), None);
        assert_eq!(k.visible_at(9), Some(Revision::new(6, 1)));
        assert_eq!(k.compact(3), vec![Revision::new(2, 0)]);
        assert_eq!(k.compact(4), vec![Revision::new(3, 0), Revision::new(4, 0)]);
        assert_eq!(k.last(), Some((Revision::new(6, 1), false)));
        assert_eq!(k.compact(6), vec![]);
        assert!(!k.is_empty());
    }
}
