//! Sibling tracking with dotted version vectors (Riak's DVV sets).

use crate::{CausalContext, Dot, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The versions of one key kept by a replica: each live value tagged with
/// the dot of the write that made it, plus the context of every write seen
/// (including overwritten ones). Clients read `(values, context)` and write
/// back with that context; the replica coordinating the write issues the
/// dot, so the metadata grows with replicas, never with clients.
///
/// Invariants: every value's dot is in the context; no value's dot is in
/// the context a later write was made with (that write replaced it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Siblings<T> {
    values: BTreeMap<Dot, T>,
    ctx: CausalContext,
}

impl<T> Default for Siblings<T> {
    fn default() -> Self {
        Siblings {
            values: BTreeMap::new(),
            ctx: CausalContext::new(),
        }
    }
}

impl<T: Clone> Siblings<T> {
    /// No value, nothing seen.
    pub fn new() -> Self {
        Siblings::default()
    }

    /// The live values in dot order: more than one means concurrent writes.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.values.values()
    }

    /// The live values with the dots of their writes.
    pub fn entries(&self) -> impl Iterator<Item = (Dot, &T)> + '_ {
        self.values.iter().map(|(d, v)| (*d, v))
    }

    /// Number of live values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there is no live value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every write seen, live or overwritten: what a reader hands back.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// The context naming just the live values (a minimal read context).
    pub fn live_context(&self) -> CausalContext {
        CausalContext::from_dots(self.values.keys().copied())
    }

    /// A write coordinated by `replica` from a client that had read
    /// `seen`: replaces the values in `seen`, keeps the others as siblings.
    /// Returns the delta (the new value and the dots it overwrites), which
    /// other replicas can [`Siblings::merge`] instead of the full state.
    pub fn write(&mut self, replica: NodeId, seen: &CausalContext, value: T) -> Siblings<T> {
        let dot = self.ctx.next_dot(replica);
        self.values.retain(|d, _| !seen.contains(*d));
        self.values.insert(dot, value.clone());
        self.ctx.merge(seen);
        self.ctx.insert(dot);
        let mut delta_ctx = seen.clone();
        delta_ctx.insert(dot);
        Siblings {
            values: BTreeMap::from([(dot, value)]),
            ctx: delta_ctx,
        }
    }

    /// The join: a value survives if both sides have it, or if the other
    /// side has not seen its write (so did not overwrite it).
    pub fn merge(&mut self, other: &Siblings<T>) {
        self.values
            .retain(|d, _| other.values.contains_key(d) || !other.ctx.contains(*d));
        for (d, v) in &other.values {
            if !self.ctx.contains(*d) {
                self.values.insert(*d, v.clone());
            }
        }
        self.ctx.merge(&other.ctx);
    }
}
