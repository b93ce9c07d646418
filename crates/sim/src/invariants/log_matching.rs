//! Log Matching (Raft paper section 5.3, Figure 3): if two logs contain an
//! entry with the same index and term, the logs are identical in all entries
//! up through that index.

/// A log seen through its terms: `term(i)` for the indexes it still holds.
pub trait TermView {
    /// Lowest index held (entries below are compacted).
    fn first(&self) -> u64;
    /// Highest index held.
    fn last(&self) -> u64;
    /// Term at `index`, if held.
    fn term_at(&self, index: u64) -> Option<u64>;
}

/// Checks one pair of logs.
pub fn check_pair(a_id: u64, a: &dyn TermView, b_id: u64, b: &dyn TermView) -> Result<(), String> {
    let lo = a.first().max(b.first());
    let hi = a.last().min(b.last());
    // Find the highest index where both logs hold the same term...
    let mut top = None;
    let mut i = hi;
    while i >= lo && i > 0 {
        if a.term_at(i).is_some() && a.term_at(i) == b.term_at(i) {
            top = Some(i);
            break;
        }
        i -= 1;
    }
    // ...then everything both still hold below it must match.
    if let Some(top) = top {
        for j in lo..top {
            if a.term_at(j) != b.term_at(j) {
                return Err(format!(
                    "log matching (5.3): nodes {a_id} and {b_id} agree at index {top} (term {:?}) but differ at {j} ({:?} vs {:?})",
                    a.term_at(top),
                    a.term_at(j),
                    b.term_at(j)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V(u64, Vec<u64>);
    impl TermView for V {
        fn first(&self) -> u64 {
            self.0
        }
        fn last(&self) -> u64 {
            self.0 + self.1.len() as u64 - 1
        }
        fn term_at(&self, i: u64) -> Option<u64> {
            i.checked_sub(self.0)
                .and_then(|k| self.1.get(k as usize).copied())
        }
    }

    #[test]
    fn divergent_prefix_under_a_common_entry_is_caught() {
        let a = V(1, vec![1, 1, 2, 3]);
        let b = V(1, vec![1, 2, 2, 3]);
        assert!(check_pair(1, &a, 2, &b).is_err());
        let c = V(1, vec![1, 1, 2, 4, 4]);
        assert!(
            check_pair(1, &a, 3, &c).is_ok(),
            "diverging after the last match is fine"
        );
    }
}
