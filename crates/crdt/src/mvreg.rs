//! The multi-value register, on dotted version vectors.

use crate::{Crdt, NodeId};
use concord_clocks::{CausalContext, Dot, Siblings};
use serde::{Deserialize, Serialize};

/// A register that keeps every concurrently written value: a write
/// replaces the values its writer had seen and nothing else, so two writes
/// that did not see each other both survive until one write sees both.
/// Built on [`Siblings`], the dotted-version-vector set: the metadata is one
/// counter per writing node plus one dot per live value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvRegister<T> {
    siblings: Siblings<T>,
}

impl<T> Default for MvRegister<T> {
    fn default() -> Self {
        MvRegister {
            siblings: Siblings::default(),
        }
    }
}

impl<T: Clone> MvRegister<T> {
    /// Empty.
    pub fn new() -> Self {
        MvRegister::default()
    }

    /// `node` writes `value` over every value this replica holds; returns
    /// the delta (the value and the dots it overwrites).
    pub fn set(&mut self, node: NodeId, value: T) -> MvRegister<T> {
        let seen = self.siblings.live_context();
        MvRegister {
            siblings: self.siblings.write(node, &seen, value),
        }
    }

    /// The live values: one, or several written concurrently.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.siblings.values()
    }

    /// The live values with the dots of their writes.
    pub fn entries(&self) -> impl Iterator<Item = (Dot, &T)> + '_ {
        self.siblings.entries()
    }

    /// Every write this replica has seen.
    pub fn context(&self) -> &CausalContext {
        self.siblings.context()
    }
}

impl<T: Clone> Crdt for MvRegister<T> {
    fn merge(&mut self, other: &Self) {
        self.siblings.merge(&other.siblings);
    }
}
