//! The observed-remove set (add-wins), tombstone-free.

use crate::{dots, Crdt, NodeId};
use concord_clocks::{CausalContext, Dot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// An add-wins set: each add tags the element with a fresh dot; a remove
/// drops the dots it has seen, so an add concurrent with a remove (whose dot
/// the remover had not seen) survives it. No tombstones: what a remove
/// leaves behind is only dots in the causal context, which fold into one
/// counter per node as soon as there are no gaps (the AWORSet of Almeida
/// et al.).
///
/// Invariants: every element has at least one dot; every dot held is in
/// the context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<E: Ord> {
    entries: BTreeMap<E, BTreeSet<Dot>>,
    ctx: CausalContext,
}

impl<E: Ord> Default for OrSet<E> {
    fn default() -> Self {
        OrSet {
            entries: BTreeMap::new(),
            ctx: CausalContext::new(),
        }
    }
}

impl<E: Ord + Clone> OrSet<E> {
    /// The empty set.
    pub fn new() -> Self {
        OrSet::default()
    }

    /// `node` adds `e`; returns the delta (the new dot, replacing the
    /// element's old dots).
    pub fn add(&mut self, node: NodeId, e: E) -> OrSet<E> {
        // Applied in place, not by merging the delta, to stay O(log n):
        // the same result, as the law tests check against full merges.
        let dot = self.ctx.next_dot(node);
        let old = self
            .entries
            .insert(e.clone(), BTreeSet::from([dot]))
            .unwrap_or_default();
        self.ctx.insert(dot);
        OrSet {
            ctx: CausalContext::from_dots(old.into_iter().chain([dot])),
            entries: BTreeMap::from([(e, BTreeSet::from([dot]))]),
        }
    }

    /// Removes `e` as this replica sees it; returns the delta (just the
    /// dots removed). Adds this replica has not seen survive.
    pub fn remove(&mut self, e: &E) -> OrSet<E> {
        let old = self.entries.remove(e).unwrap_or_default();
        OrSet {
            ctx: CausalContext::from_dots(old),
            entries: BTreeMap::new(),
        }
    }

    /// True if `e` is in the set.
    pub fn contains(&self, e: &E) -> bool {
        self.entries.contains_key(e)
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &E> + '_ {
        self.entries.keys()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every add and remove seen.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }
}

impl<E: Ord + Clone> Crdt for OrSet<E> {
    fn merge(&mut self, other: &Self) {
        // In place: keys on both sides join their dots; keys only here lose
        // the dots the other side has seen; keys only there bring the dots
        // this side has not seen. `ctx` is still this side's old context.
        let OrSet { entries, ctx } = self;
        entries.retain(|k, mine| {
            match other.entries.get(k) {
                Some(theirs) => *mine = dots::join(mine, ctx, theirs, &other.ctx),
                None => mine.retain(|d| !other.ctx.contains(*d)),
            }
            !mine.is_empty()
        });
        for (k, theirs) in &other.entries {
            if !entries.contains_key(k) {
                let fresh: BTreeSet<Dot> = theirs
                    .iter()
                    .filter(|d| !ctx.contains(**d))
                    .copied()
                    .collect();
                if !fresh.is_empty() {
                    entries.insert(k.clone(), fresh);
                }
            }
        }
        ctx.merge(&other.ctx);
    }
}
