//! A dotted version vector: one version's causal history, compared in O(1).

use crate::{CausalContext, Causality, Dot, VersionVector};
use serde::{Deserialize, Serialize};

/// A dotted version vector (Preguiça, Baquero et al.): the version written
/// as `dot`, whose writer had seen the versions in `past`. Its causal
/// history is `{dot} ∪ past`. Because the dot names the write itself, two
/// versions compare by membership of one dot in the other's past, and
/// concurrent writes through the same replica get different dots, so they
/// stay apart as siblings with no entry per client.
///
/// Invariant: `dot` is not in `past` (a write does not precede itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dvv {
    dot: Dot,
    past: VersionVector,
}

impl Dvv {
    /// The version `dot` written with knowledge of `past`.
    pub fn new(dot: Dot, past: VersionVector) -> Self {
        assert!(
            !past.contains(dot),
            "a version's dot {dot} cannot be in its own past"
        );
        Dvv { dot, past }
    }

    /// The dot naming this version.
    pub fn dot(&self) -> Dot {
        self.dot
    }

    /// The versions this one supersedes.
    pub fn past(&self) -> &VersionVector {
        &self.past
    }

    /// How this version relates to `other`, by dot membership alone.
    pub fn compare(&self, other: &Dvv) -> Causality {
        if self.dot == other.dot {
            Causality::Equal
        } else if other.past.contains(self.dot) {
            Causality::Before
        } else if self.past.contains(other.dot) {
            Causality::After
        } else {
            Causality::Concurrent
        }
    }

    /// The full causal history `{dot} ∪ past`, exactly (the dot may sit
    /// after a gap in its node's entry, so it is not folded into a vector).
    pub fn history(&self) -> CausalContext {
        let mut c = CausalContext::from_dots(std::iter::empty());
        for (node, n) in self.past.iter() {
            c.insert_prefix(node, n);
        }
        c.insert(self.dot);
        c
    }
}
