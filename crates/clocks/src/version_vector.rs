//! Version vectors: which updates of a replicated item a replica has seen.

use crate::{Causality, Dot, NodeId, VClock};
use serde::{Deserialize, Serialize};

/// A version vector: per replica, the number of its updates seen. Same
/// shape as a [`VClock`], different use: a vector clock counts every event
/// of every process, a version vector counts updates to data per replica
/// (the servers that coordinate writes), so its size is bounded by the
/// number of replicas, however many clients write.
///
/// Invariant: the updates seen of each replica are a prefix `1..=n` (a
/// "downward-closed" set of dots); [`crate::CausalContext`] handles gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(VClock);

impl VersionVector {
    /// The empty vector.
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// The number of updates of `node` seen.
    pub fn get(&self, node: NodeId) -> u64 {
        self.0.get(node)
    }

    /// True if the update `dot` is included.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.counter <= self.0.get(dot.node)
    }

    /// Issues `node`'s next update: the dot after the last one seen.
    pub fn next_dot(&mut self, node: NodeId) -> Dot {
        Dot::new(node, self.0.increment(node))
    }

    /// Includes `dot` and every earlier update of its node.
    pub fn add(&mut self, dot: Dot) {
        self.0.observe(dot.node, dot.counter);
    }

    /// The least upper bound of both.
    pub fn merge(&mut self, other: &VersionVector) {
        self.0.merge(&other.0);
    }

    /// How the two sets of updates relate (subset is `Before`).
    pub fn compare(&self, other: &VersionVector) -> Causality {
        self.0.compare(&other.0)
    }

    /// Replicas with at least one update seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no update was seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(replica, updates seen)` in replica order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.iter()
    }

    /// The vector as a plain vector clock.
    pub fn as_vclock(&self) -> &VClock {
        &self.0
    }
}

impl From<VClock> for VersionVector {
    fn from(c: VClock) -> Self {
        VersionVector(c)
    }
}

impl std::fmt::Display for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
