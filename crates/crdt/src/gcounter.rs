//! The grow-only counter.

use crate::{Crdt, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A counter that only grows: each node counts its own increments, the
/// value is the sum, and merge takes each node's maximum. Invariant: only
/// `node` ever raises `node`'s entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    counts: BTreeMap<NodeId, u64>,
}

impl GCounter {
    /// Zero.
    pub fn new() -> Self {
        GCounter::default()
    }

    /// Adds `by` on behalf of `node`; returns the delta (that node's entry).
    pub fn increment(&mut self, node: NodeId, by: u64) -> GCounter {
        let c = self.counts.entry(node).or_default();
        *c = c.checked_add(by).expect("G-Counter overflow");
        GCounter {
            counts: BTreeMap::from([(node, *c)]),
        }
    }

    /// The total.
    pub fn value(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl Crdt for GCounter {
    fn merge(&mut self, other: &Self) {
        for (&node, &c) in &other.counts {
            let mine = self.counts.entry(node).or_default();
            *mine = (*mine).max(c);
        }
    }
}
