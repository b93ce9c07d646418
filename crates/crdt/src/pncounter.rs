//! The counter that goes up and down.

use crate::{Crdt, GCounter, NodeId};
use serde::{Deserialize, Serialize};

/// Two grow-only counters, increments and decrements; the value is their
/// difference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    p: GCounter,
    n: GCounter,
}

impl PnCounter {
    /// Zero.
    pub fn new() -> Self {
        PnCounter::default()
    }

    /// Adds `by` on behalf of `node`; returns the delta.
    pub fn increment(&mut self, node: NodeId, by: u64) -> PnCounter {
        PnCounter {
            p: self.p.increment(node, by),
            n: GCounter::new(),
        }
    }

    /// Subtracts `by` on behalf of `node`; returns the delta.
    pub fn decrement(&mut self, node: NodeId, by: u64) -> PnCounter {
        PnCounter {
            p: GCounter::new(),
            n: self.n.increment(node, by),
        }
    }

    /// The total.
    pub fn value(&self) -> i128 {
        i128::from(self.p.value()) - i128::from(self.n.value())
    }
}

impl Crdt for PnCounter {
    fn merge(&mut self, other: &Self) {
        self.p.merge(&other.p);
        self.n.merge(&other.n);
    }
}
