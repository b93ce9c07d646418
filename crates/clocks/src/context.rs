//! Causal contexts: a version vector plus the dots beyond its prefixes.

use crate::{Dot, NodeId, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A set of dots kept compact: the contiguous prefix of each node in a
/// [`VersionVector`] and the rest (the "dot cloud") listed. Delta-state
/// CRDTs need the cloud: a delta carries a few dots with gaps before them.
///
/// Invariant (after every public call): no cloud dot is already covered by
/// the vector, nor is it the next one of its node (it would have been
/// folded into the vector), so equal sets have equal representations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CausalContext {
    vv: VersionVector,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    pub fn new() -> Self {
        CausalContext::default()
    }

    /// A context holding exactly `dots`.
    pub fn from_dots(dots: impl IntoIterator<Item = Dot>) -> Self {
        let mut c = CausalContext {
            vv: VersionVector::new(),
            cloud: dots.into_iter().collect(),
        };
        c.compact();
        c
    }

    /// True if `dot` is in the set.
    pub fn contains(&self, dot: Dot) -> bool {
        self.vv.contains(dot) || self.cloud.contains(&dot)
    }

    /// The dot `node` should issue next: after every dot of `node` known,
    /// so it is fresh as long as the node never lost its own context.
    pub fn next_dot(&self, node: NodeId) -> Dot {
        let in_cloud = self
            .cloud
            .range(Dot::new(node, 1)..)
            .take_while(|d| d.node == node);
        let top = in_cloud
            .last()
            .map_or(0, |d| d.counter)
            .max(self.vv.get(node));
        Dot::new(node, top + 1)
    }

    /// Adds one dot.
    pub fn insert(&mut self, dot: Dot) {
        if !self.vv.contains(dot) {
            self.cloud.insert(dot);
            self.compact();
        }
    }

    /// Adds the dots `node:1..=n`.
    pub fn insert_prefix(&mut self, node: NodeId, n: u64) {
        self.vv.merge(&crate::VClock::from_iter([(node, n)]).into());
        self.compact();
    }

    /// The union of both sets.
    pub fn merge(&mut self, other: &CausalContext) {
        self.vv.merge(&other.vv);
        self.cloud.extend(other.cloud.iter().copied());
        self.compact();
    }

    /// The contiguous part, as a version vector.
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }

    /// The dots outside the vector's prefixes, in order.
    pub fn cloud(&self) -> impl Iterator<Item = Dot> + '_ {
        self.cloud.iter().copied()
    }

    /// Number of dots outside the vector's prefixes.
    pub fn cloud_len(&self) -> usize {
        self.cloud.len()
    }

    /// Folds cloud dots that extend a prefix into the vector and drops the
    /// ones it already covers. One pass: the cloud is sorted by node, then
    /// counter, so each node's run extends its prefix in order.
    fn compact(&mut self) {
        let cloud = std::mem::take(&mut self.cloud);
        for dot in cloud {
            let have = self.vv.get(dot.node);
            if dot.counter == have + 1 {
                self.vv.add(dot);
            } else if dot.counter > have + 1 {
                self.cloud.insert(dot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_folds_into_the_vector_when_gaps_fill() {
        let mut c = CausalContext::from_dots([Dot::new(1, 1), Dot::new(1, 3), Dot::new(2, 2)]);
        assert_eq!((c.vv().get(1), c.cloud_len()), (1, 2));
        assert_eq!(c.next_dot(1), Dot::new(1, 4));
        c.insert(Dot::new(1, 2));
        c.insert(Dot::new(2, 1));
        assert_eq!((c.vv().get(1), c.vv().get(2), c.cloud_len()), (3, 2, 0));
        assert!(c.contains(Dot::new(2, 2)) && !c.contains(Dot::new(2, 3)));
        assert_eq!(
            c,
            CausalContext::from_dots(
                [1, 2, 3]
                    .map(|n| Dot::new(1, n))
                    .into_iter()
                    .chain([Dot::new(2, 1), Dot::new(2, 2)])
            )
        );
    }
}
