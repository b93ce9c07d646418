//! Leader Completeness (Raft paper section 5.4, Figure 3): if a log entry is
//! committed in a given term, that entry is present in the logs of the
//! leaders of all higher-numbered terms.

use super::log_matching::TermView;
use super::Facts;

/// Check a leader's log against every entry applied anywhere so far
/// (applied entries are committed). Entries below the leader's first index
/// are covered by its snapshot.
pub fn check_leader(facts: &Facts, node: u64, term: u64, log: &dyn TermView) -> Result<(), String> {
    for (&index, &(entry_term, _)) in facts.applied.range(log.first()..) {
        if entry_term > term {
            continue; // committed in a later term than this leadership
        }
        if log.term_at(index) != Some(entry_term) {
            return Err(format!(
                "leader completeness (5.4): node {node} leads term {term} but lacks committed entry {entry_term}/{index} (has {:?})",
                log.term_at(index)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V(Vec<u64>);
    impl TermView for V {
        fn first(&self) -> u64 {
            1
        }
        fn last(&self) -> u64 {
            self.0.len() as u64
        }
        fn term_at(&self, i: u64) -> Option<u64> {
            self.0.get(i as usize - 1).copied()
        }
    }

    #[test]
    fn a_leader_missing_a_committed_entry_is_caught() {
        let mut f = Facts::default();
        f.applied.insert(1, (1, 0));
        f.applied.insert(2, (2, 0));
        assert!(check_leader(&f, 1, 3, &V(vec![1, 2, 3])).is_ok());
        assert!(check_leader(&f, 2, 3, &V(vec![1, 1])).is_err());
        assert!(check_leader(&f, 2, 3, &V(vec![1])).is_err());
    }
}
