//! The key index: each key's revisions, found by hash for point lookups and
//! walked in key order for ranges.
//!
//! A put or a single-key read looks its key up once. In an ordered tree of
//! `Bytes` keys that lookup compared against a dozen or more keys, each
//! behind its own pointer: cache misses that made the lookup the largest
//! part of applying a put. The hash map finds the key with one hash and
//! one comparison; the ordered set of the same keys (sharing their
//! buffers) serves ranges and is touched only when a key is created or
//! removed.
//!
//! Invariants: `map` and `order` hold the same keys, each with the same
//! slot; a slot is either some key's or on the free list (then empty).

use std::collections::hash_map::Entry;
use std::collections::{btree_map, BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;

use crate::keyindex::KeyIndex;

/// Keys to their revision lists, with key order for ranges. The lists live
/// in `slots`, which both views point into: a range walks the ordered view
/// straight to each slot, with no hashing per key.
#[derive(Debug, Default)]
pub(crate) struct KeyMap {
    slots: Vec<KeyIndex>,
    free: Vec<u32>,
    map: HashMap<Bytes, u32>,
    order: BTreeMap<OrdKey, u32>,
}

/// A key in the ordered view, with its first 8 bytes inline (zero-padded,
/// big-endian): most comparisons in a tree walk are decided by them, without
/// following the key's pointer (a cache miss each). Orders exactly as the
/// keys' bytes do: heads that differ differ where the keys first differ
/// (a zero pad sorts first, as the shorter key does), and equal heads fall
/// back to the whole keys.
#[derive(Clone, Debug)]
pub(crate) struct OrdKey {
    head: u64,
    key: Bytes,
}

impl OrdKey {
    fn new(key: Bytes) -> OrdKey {
        let mut head = [0u8; 8];
        let n = key.len().min(8);
        head[..n].copy_from_slice(&key[..n]);
        OrdKey {
            head: u64::from_be_bytes(head),
            key,
        }
    }
}

impl Ord for OrdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl PartialOrd for OrdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OrdKey {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head && self.key == other.key
    }
}

impl Eq for OrdKey {}

fn ord_bound(b: Bound<Bytes>) -> Bound<OrdKey> {
    match b {
        Bound::Included(k) => Bound::Included(OrdKey::new(k)),
        Bound::Excluded(k) => Bound::Excluded(OrdKey::new(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl KeyMap {
    /// The revisions of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.map.get(key).map(|&i| &self.slots[i as usize])
    }

    /// The revisions of `key`, to change.
    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        self.map.get(key).map(|&i| &mut self.slots[i as usize])
    }

    /// The revisions of `key`, created empty if it has none.
    pub(crate) fn entry(&mut self, key: &Bytes) -> &mut KeyIndex {
        let slot = match self.map.entry(key.clone()) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let slot = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 keys");
                        self.slots.push(KeyIndex::default());
                        i
                    }
                };
                debug_assert!(self.slots[slot as usize].is_empty());
                self.order.insert(OrdKey::new(key.clone()), slot);
                *e.insert(slot)
            }
        };
        &mut self.slots[slot as usize]
    }

    /// Every key's revisions, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &KeyIndex> {
        self.order.values().map(|&i| &self.slots[i as usize])
    }

    /// Number of keys.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.map.len(), self.order.len());
        debug_assert_eq!(self.map.len() + self.free.len(), self.slots.len());
        self.map.len()
    }

    /// Removes every key.
    pub(crate) fn clear(&mut self) {
        *self = KeyMap::default();
    }

    /// The keys in `bounds`, in key order, with their revisions.
    pub(crate) fn range(&self, bounds: (Bound<Bytes>, Bound<Bytes>)) -> KeyRange<'_> {
        match &bounds {
            // A single key (etcd's range with no range_end): no walk.
            (Bound::Included(a), Bound::Included(b)) if a == b => KeyRange::One(
                self.map
                    .get_key_value(a.as_ref())
                    .map(|(k, &i)| (k, &self.slots[i as usize])),
            ),
            _ => KeyRange::Many {
                keys: self.order.range((ord_bound(bounds.0), ord_bound(bounds.1))),
                slots: &self.slots,
            },
        }
    }

    /// Calls `f` on every key in key order; drops the keys it returns
    /// `false` for.
    pub(crate) fn retain_ordered(&mut self, mut f: impl FnMut(&mut KeyIndex) -> bool) {
        let mut gone = Vec::new();
        for (key, &i) in &self.order {
            if !f(&mut self.slots[i as usize]) {
                gone.push((key.key.clone(), i));
            }
        }
        for (key, i) in gone {
            self.map.remove(&key);
            self.order.remove(&OrdKey::new(key.clone()));
            self.slots[i as usize] = KeyIndex::default();
            self.free.push(i);
        }
    }
}

/// Iterator over the keys of a range; see [`KeyMap::range`].
pub(crate) enum KeyRange<'a> {
    One(Option<(&'a Bytes, &'a KeyIndex)>),
    Many {
        keys: btree_map::Range<'a, OrdKey, u32>,
        slots: &'a [KeyIndex],
    },
}

impl<'a> Iterator for KeyRange<'a> {
    type Item = (&'a Bytes, &'a KeyIndex);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            KeyRange::One(one) => one.take(),
            KeyRange::Many { keys, slots } => {
                let (key, &i) = keys.next()?;
                Some((&key.key, &slots[i as usize]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Revision;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn keys(r: KeyRange<'_>) -> Vec<String> {
        r.map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn ranges_follow_key_order_and_single_keys_are_found_directly() {
        let mut m = KeyMap::default();
        for (i, k) in ["b", "a", "d", "c", "aa"].into_iter().enumerate() {
            m.entry(&b(k)).push(Revision::new(i as i64 + 1, 0), false);
        }
        assert_eq!(m.len(), 5);
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys(m.range(all)), ["a", "aa", "b", "c", "d"]);
        let half_open = (Bound::Included(b("aa")), Bound::Excluded(b("c")));
        assert_eq!(keys(m.range(half_open)), ["aa", "b"]);
        let one = (Bound::Included(b("c")), Bound::Included(b("c")));
        assert_eq!(keys(m.range(one)), ["c"]);
        let missing = (Bound::Included(b("x")), Bound::Included(b("x")));
        assert!(keys(m.range(missing)).is_empty());
        // Entry on an existing key adds no second copy of it.
        m.entry(&b("a")).push(Revision::new(9, 0), false);
        assert_eq!(m.len(), 5);
        assert_eq!(
            m.get(b"a").unwrap().last(),
            Some((Revision::new(9, 0), false))
        );
    }

    #[test]
    fn inline_heads_order_exactly_as_the_bytes_do() {
        // Short keys over an alphabet with zeros, so pads and real zeros meet.
        let alphabet = [0u8, 1, b'a', 255];
        let mut keys = vec![Bytes::new()];
        let mut seed = 7u64;
        for _ in 0..600 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 60) as usize % 13;
            let k: Vec<u8> = (0..len)
                .map(|j| alphabet[(seed >> (j * 4 % 56)) as usize % 4])
                .collect();
            keys.push(Bytes::from(k));
        }
        for a in &keys {
            for b in keys.iter().take(80) {
                let (x, y) = (OrdKey::new(a.clone()), OrdKey::new(b.clone()));
                assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(x == y, a == b);
            }
        }
    }

    #[test]
    fn retain_visits_in_order_and_drops_from_both_views() {
        let mut m = KeyMap::default();
        for (i, k) in ["c", "a", "b"].into_iter().enumerate() {
            m.entry(&b(k)).push(Revision::new(i as i64 + 1, 0), false);
        }
        let mut seen = Vec::new();
        m.retain_ordered(|ki| {
            seen.push(ki.last().unwrap().0.main);
            seen.len() != 2
        });
        assert_eq!(seen, [2, 3, 1], "a, b, c");
        assert_eq!(m.len(), 2);
        assert!(m.get(b"b").is_none(), "the second key in order was dropped");
        // Its slot is reused, empty, by the next new key.
        assert!(m.entry(&b("z")).is_empty());
        assert_eq!(m.len(), 3);
        m.entry(&b("z")).push(Revision::new(7, 0), false);
        assert_eq!(
            m.get(b"z").unwrap().last(),
            Some((Revision::new(7, 0), false))
        );
        assert_eq!(
            m.get(b"a").unwrap().last(),
            Some((Revision::new(2, 0), false))
        );
        m.retain_ordered(|ki| ki.last().unwrap().0.main != 7);
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys(m.range(all)), ["a", "c"]);
    }
}
