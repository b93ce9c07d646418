//! Monotonic commit and apply (Raft paper section 5.3 and Figure 2: commitIndex
//! and lastApplied only increase). Within one incarnation a node's commit
//! and applied indexes never decrease. A restart may lower both: the state
//! machine is durable at checkpoints (the end of a cycle here, as the
//! server's backend), not at each apply, and applies again from there.

use super::Facts;

/// Record a node's commit and applied index.
pub fn observe(
    facts: &mut Facts,
    node: u64,
    incarnation: u64,
    commit: u64,
    applied: u64,
) -> Result<(), String> {
    if let Some(&(inc, c, a)) = facts.progress.get(&node) {
        if inc == incarnation && applied < a {
            return Err(format!(
                "monotonic apply: node {node} applied index went from {a} to {applied}"
            ));
        }
        if inc == incarnation && commit < c {
            return Err(format!(
                "monotonic commit: node {node} commit index went from {c} to {commit}"
            ));
        }
    }
    facts.progress.insert(node, (incarnation, commit, applied));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_backwards_is_caught() {
        let mut f = Facts::default();
        observe(&mut f, 1, 0, 5, 4).unwrap();
        observe(&mut f, 1, 1, 2, 2).unwrap(); // a restart may lower both
        assert!(observe(&mut f, 1, 1, 1, 2).is_err());
        assert!(observe(&mut f, 1, 1, 2, 1).is_err());
    }
}
