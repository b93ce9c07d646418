//! Election Safety (Raft paper section 5.2, Figure 3): at most one leader
//! can be elected in a given term.

use super::Facts;

/// Record that `node` leads `term`; fails if another node led that term.
pub fn observe_leader(facts: &mut Facts, term: u64, node: u64) -> Result<(), String> {
    match facts.leaders.get(&term) {
        Some(&other) if other != node => Err(format!(
            "election safety (5.2): nodes {other} and {node} both led term {term}"
        )),
        _ => {
            facts.leaders.insert(term, node);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut f = Facts::default();
        observe_leader(&mut f, 3, 1).unwrap();
        observe_leader(&mut f, 3, 1).unwrap();
        observe_leader(&mut f, 4, 2).unwrap();
        assert!(observe_leader(&mut f, 3, 2).is_err());
    }
}
