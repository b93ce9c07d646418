//! Dots: the unique name of one event (or one write) of one node.

use crate::NodeId;
use serde::{Deserialize, Serialize};

/// The `counter`-th event of `node`. Invariant: counters start at 1 and a
/// node never issues the same dot twice, so a dot names exactly one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The node that issued the event.
    pub node: NodeId,
    /// Its position in that node's sequence, from 1.
    pub counter: u64,
}

impl Dot {
    /// The `counter`-th event of `node`; `counter` must be positive.
    pub fn new(node: NodeId, counter: u64) -> Self {
        assert!(counter > 0, "dots count from 1");
        Dot { node, counter }
    }
}

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.counter)
    }
}
