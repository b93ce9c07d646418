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
/// the context; `by_dot` maps exactly the dots held to their element (it
/// makes merging a delta cost the delta's size, not the set's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Repr<E>", from = "Repr<E>")]
#[serde(bound(
    serialize = "E: Ord + Clone + Serialize",
    deserialize = "E: Ord + Clone + Deserialize<'de>"
))]
pub struct OrSet<E: Ord> {
    entries: BTreeMap<E, BTreeSet<Dot>>,
    ctx: CausalContext,
    by_dot: BTreeMap<Dot, E>,
}

/// The serialized form: the index is rebuilt, not shipped.
#[derive(Serialize, Deserialize)]
struct Repr<E: Ord> {
    entries: BTreeMap<E, BTreeSet<Dot>>,
    ctx: CausalContext,
}

impl<E: Ord + Clone> From<OrSet<E>> for Repr<E> {
    fn from(s: OrSet<E>) -> Self {
        Repr {
            entries: s.entries,
            ctx: s.ctx,
        }
    }
}

impl<E: Ord + Clone> From<Repr<E>> for OrSet<E> {
    fn from(r: Repr<E>) -> Self {
        let by_dot = r
            .entries
            .iter()
            .flat_map(|(e, ds)| ds.iter().map(move |d| (*d, e.clone())))
            .collect();
        OrSet {
            entries: r.entries,
            ctx: r.ctx,
            by_dot,
        }
    }
}

impl<E: Ord> Default for OrSet<E> {
    fn default() -> Self {
        OrSet {
            entries: BTreeMap::new(),
            ctx: CausalContext::new(),
            by_dot: BTreeMap::new(),
        }
    }
}

impl<E: Ord + Clone> OrSet<E> {
    /// The empty set.
    pub fn new() -> Self {
        OrSet::default()
    }

    fn delta(entries: BTreeMap<E, BTreeSet<Dot>>, ctx: CausalContext) -> OrSet<E> {
        Repr { entries, ctx }.into()
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
        for d in &old {
            self.by_dot.remove(d);
        }
        self.by_dot.insert(dot, e.clone());
        self.ctx.insert(dot);
        let ctx = CausalContext::from_dots(old.into_iter().chain([dot]));
        Self::delta(BTreeMap::from([(e, BTreeSet::from([dot]))]), ctx)
    }

    /// Removes `e` as this replica sees it; returns the delta (just the
    /// dots removed). Adds this replica has not seen survive.
    pub fn remove(&mut self, e: &E) -> OrSet<E> {
        let old = self.entries.remove(e).unwrap_or_default();
        for d in &old {
            self.by_dot.remove(d);
        }
        Self::delta(BTreeMap::new(), CausalContext::from_dots(old))
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

    /// The dots held here that `other` has seen, for elements `other` does
    /// not hold: those it removed. Found through the index, so the cost is
    /// the number of such dots, not the size of the set.
    fn removed_by(&self, other: &OrSet<E>) -> Vec<Dot> {
        let prefixes = other.ctx.vv().iter().flat_map(|(node, n)| {
            self.by_dot
                .range(Dot::new(node, 1)..=Dot::new(node, n.max(1)))
                .map(|(d, _)| *d)
        });
        let cloud = other.ctx.cloud().filter(|d| self.by_dot.contains_key(d));
        prefixes
            .chain(cloud)
            .filter(|d| !other.entries.contains_key(&self.by_dot[d]))
            .collect()
    }

    fn drop_dot(&mut self, d: Dot) {
        let e = self.by_dot.remove(&d).expect("indexed dot");
        let ds = self.entries.get_mut(&e).expect("indexed element");
        ds.remove(&d);
        if ds.is_empty() {
            self.entries.remove(&e);
        }
    }
}

impl<E: Ord + Clone> Crdt for OrSet<E> {
    fn merge(&mut self, other: &Self) {
        // Elements only here lose the dots the other side has seen (it
        // removed them); elements on the other side join dot sets. Both
        // read this side's old context, merged last.
        for d in self.removed_by(other) {
            self.drop_dot(d);
        }
        let empty = BTreeSet::new();
        for (e, theirs) in &other.entries {
            let mine = self.entries.get(e).unwrap_or(&empty);
            let kept = dots::join(mine, &self.ctx, theirs, &other.ctx);
            if kept == *mine {
                continue;
            }
            for d in mine.difference(&kept) {
                self.by_dot.remove(d);
            }
            for d in kept.difference(mine) {
                self.by_dot.insert(*d, e.clone());
            }
            if kept.is_empty() {
                self.entries.remove(e);
            } else {
                self.entries.insert(e.clone(), kept);
            }
        }
        self.ctx.merge(&other.ctx);
        debug_assert_eq!(
            self.by_dot.len(),
            self.entries.values().map(BTreeSet::len).sum::<usize>()
        );
    }
}
