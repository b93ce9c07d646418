//! The observed-remove map of CRDT values.

use crate::{dots, Crdt, NodeId};
use concord_clocks::{CausalContext, Dot};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One key: the dots that keep it present, and its value's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry<V> {
    dots: BTreeSet<Dot>,
    value: V,
}

/// A map whose keys are an add-wins set (as [`crate::OrSet`]) and whose
/// values are CRDTs merged with their own join. Updating a key re-adds it
/// with a fresh dot, so an update concurrent with a remove wins.
///
/// A removed key's value state is kept, hidden: dropping it would make the
/// join depend on the order of merges. So a key removed and updated again
/// continues from its old value state (for a cart whose quantities are
/// LWW registers, the new write simply wins). [`OrMap::forget_removed`]
/// drops hidden values once that is safe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrMap<K: Ord, V> {
    entries: BTreeMap<K, Entry<V>>,
    ctx: CausalContext,
}

impl<K: Ord, V> Default for OrMap<K, V> {
    fn default() -> Self {
        OrMap {
            entries: BTreeMap::new(),
            ctx: CausalContext::new(),
        }
    }
}

impl<K: Ord + Clone, V: Crdt + Clone + Default> OrMap<K, V> {
    /// The empty map.
    pub fn new() -> Self {
        OrMap::default()
    }

    /// `node` updates `key` (adding it if absent) with `f`, which mutates
    /// the value in place and returns the value's delta; returns the map's
    /// delta.
    pub fn update(&mut self, node: NodeId, key: K, f: impl FnOnce(&mut V) -> V) -> OrMap<K, V> {
        let dot = self.ctx.next_dot(node);
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            dots: BTreeSet::new(),
            value: V::default(),
        });
        let value_delta = f(&mut entry.value);
        let old = std::mem::replace(&mut entry.dots, BTreeSet::from([dot]));
        self.ctx.insert(dot);
        OrMap {
            ctx: CausalContext::from_dots(old.into_iter().chain([dot])),
            entries: BTreeMap::from([(
                key,
                Entry {
                    dots: BTreeSet::from([dot]),
                    value: value_delta,
                },
            )]),
        }
    }

    /// Removes `key` as this replica sees it (its value stays, hidden);
    /// returns the delta.
    pub fn remove(&mut self, key: &K) -> OrMap<K, V> {
        let old = self
            .entries
            .get_mut(key)
            .map(|e| std::mem::take(&mut e.dots))
            .unwrap_or_default();
        OrMap {
            ctx: CausalContext::from_dots(old),
            entries: BTreeMap::new(),
        }
    }

    /// The value of a present key.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|e| !e.dots.is_empty())
            .map(|e| &e.value)
    }

    /// Present keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| !e.dots.is_empty())
            .map(|(k, e)| (k, &e.value))
    }

    /// Number of present keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no key is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every update and remove seen.
    pub fn context(&self) -> &CausalContext {
        &self.ctx
    }

    /// Drops the hidden values of removed keys; returns how many.
    ///
    /// Preconditions: (1) each of those removes is causally stable, i.e.
    /// every replica has merged a state that includes it; and (2) either
    /// the key is never updated again, or every later update of its value
    /// dominates the dropped state on its own. (2) holds for
    /// [`crate::LwwRegister`] values written with HLC stamps (a later write
    /// has a greater stamp) and fails for counters: a counter restarted from
    /// zero here would lose to the forgotten entries still held elsewhere.
    pub fn forget_removed(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| !e.dots.is_empty());
        before - self.entries.len()
    }
}

impl<K: Ord + Clone, V: Crdt + Clone> Crdt for OrMap<K, V> {
    fn merge(&mut self, other: &Self) {
        // As the OR-Set's merge, with values joined wherever both sides
        // hold one (hidden or not). `ctx` is still this side's old context.
        let OrMap { entries, ctx } = self;
        for (k, mine) in entries.iter_mut() {
            match other.entries.get(k) {
                Some(theirs) => {
                    mine.value.merge(&theirs.value);
                    mine.dots = dots::join(&mine.dots, ctx, &theirs.dots, &other.ctx);
                }
                None => mine.dots.retain(|d| !other.ctx.contains(*d)),
            }
        }
        for (k, theirs) in &other.entries {
            if !entries.contains_key(k) {
                let dots = theirs
                    .dots
                    .iter()
                    .filter(|d| !ctx.contains(**d))
                    .copied()
                    .collect();
                entries.insert(
                    k.clone(),
                    Entry {
                        dots,
                        value: theirs.value.clone(),
                    },
                );
            }
        }
        ctx.merge(&other.ctx);
    }
}
