//! State Machine Safety (Raft paper section 5.4.3, Figure 3): if a server has
//! applied a log entry at a given index, no other server ever applies a
//! different entry for the same index.

use super::Facts;
use crate::node::AppliedEntry;

/// Record that `node` applied `e`; fails if a different entry was applied at that index.
pub fn observe_apply(facts: &mut Facts, node: u64, e: AppliedEntry) -> Result<(), String> {
    match facts.applied.get(&e.index) {
        Some(&(term, hash)) if (term, hash) != (e.term, e.hash) => Err(format!(
            "state machine safety (5.4.3): node {node} applied {}/{} but {term}/{} was applied before at that index",
            e.term, e.index, e.index
        )),
        Some(_) => Ok(()),
        None => {
            facts.applied.insert(e.index, (e.term, e.hash));
            facts.max_applied = facts.max_applied.max(e.index);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_entries_at_one_index_are_caught() {
        let mut f = Facts::default();
        observe_apply(
            &mut f,
            1,
            AppliedEntry {
                index: 5,
                term: 2,
                hash: 7,
            },
        )
        .unwrap();
        observe_apply(
            &mut f,
            2,
            AppliedEntry {
                index: 5,
                term: 2,
                hash: 7,
            },
        )
        .unwrap();
        assert!(observe_apply(
            &mut f,
            3,
            AppliedEntry {
                index: 5,
                term: 3,
                hash: 9
            }
        )
        .is_err());
    }
}
