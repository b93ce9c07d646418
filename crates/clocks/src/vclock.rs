//! Vector clocks: one counter per process, compared entry by entry.

use crate::{order::Causality, varint, DecodeError, NodeId};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A vector clock: a map from process to the number of its events seen.
///
/// Invariants: entries are sorted by node id with no duplicates, and no
/// entry is zero (a missing entry means zero), so equal clocks have equal
/// representations and compare, merge and encode are single linear passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VClock {
    entries: Vec<(NodeId, u64)>,
}

impl VClock {
    /// The empty clock (before every event).
    pub fn new() -> Self {
        VClock::default()
    }

    /// The counter of `node` (zero if absent).
    pub fn get(&self, node: NodeId) -> u64 {
        match self.entries.binary_search_by_key(&node, |e| e.0) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Number of non-zero entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for the empty clock.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The non-zero entries in node order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Records one more event of `node`; returns its new counter.
    pub fn increment(&mut self, node: NodeId) -> u64 {
        self.raise(node, |c| {
            c.checked_add(1).expect("vector clock counter overflow")
        })
    }

    /// Sets `node`'s entry to `max(entry, counter)`.
    pub fn observe(&mut self, node: NodeId, counter: u64) {
        if counter > 0 {
            self.raise(node, |c| c.max(counter));
        }
    }

    fn raise(&mut self, node: NodeId, f: impl FnOnce(u64) -> u64) -> u64 {
        match self.entries.binary_search_by_key(&node, |e| e.0) {
            Ok(i) => {
                self.entries[i].1 = f(self.entries[i].1);
                self.entries[i].1
            }
            Err(i) => {
                let v = f(0);
                debug_assert!(v > 0);
                self.entries.insert(i, (node, v));
                v
            }
        }
    }

    /// The least upper bound: entry-wise maximum, in place.
    pub fn merge(&mut self, other: &VClock) {
        if other.entries.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    Ordering::Less => *a.next().unwrap(),
                    Ordering::Greater => *b.next().unwrap(),
                    Ordering::Equal => {
                        let (x, y) = (a.next().unwrap(), b.next().unwrap());
                        (x.0, x.1.max(y.1))
                    }
                },
                (Some(_), None) => *a.next().unwrap(),
                (None, Some(_)) => *b.next().unwrap(),
                (None, None) => break,
            };
            out.push(next);
        }
        self.entries = out;
    }

    /// How `self` relates to `other` in the happened-before order.
    pub fn compare(&self, other: &VClock) -> Causality {
        let mut acc = Causality::Equal;
        let (mut a, mut b) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        while acc != Causality::Concurrent {
            let step = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                    // A missing entry is zero, and stored entries are > 0.
                    Ordering::Less => {
                        a.next();
                        Ordering::Greater
                    }
                    Ordering::Greater => {
                        b.next();
                        Ordering::Less
                    }
                    Ordering::Equal => {
                        let (x, y) = (a.next().unwrap(), b.next().unwrap());
                        x.1.cmp(&y.1)
                    }
                },
                (Some(_), None) => {
                    a.next();
                    Ordering::Greater
                }
                (None, Some(_)) => {
                    b.next();
                    Ordering::Less
                }
                (None, None) => break,
            };
            acc = acc.step(step);
        }
        acc
    }

    /// True if every entry of `self` is at least `other`'s (`self >= other`).
    pub fn descends(&self, other: &VClock) -> bool {
        matches!(self.compare(other), Causality::After | Causality::Equal)
    }

    /// The compact encoding: a varint count, then per entry the varint gap
    /// from the previous node id and the varint counter. Three small entries
    /// take 7 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 * self.entries.len());
        self.encode_into(&mut out);
        out
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        varint::put(out, self.entries.len() as u64);
        let mut prev = 0;
        for (i, &(node, counter)) in self.entries.iter().enumerate() {
            // Ids are strictly increasing, so gaps after the first are >= 1.
            varint::put(out, if i == 0 { node } else { node - prev - 1 });
            varint::put(out, counter);
            prev = node;
        }
    }

    /// Decodes [`VClock::encode`]'s output, refusing non-canonical input.
    pub fn decode(bytes: &[u8]) -> Result<VClock, DecodeError> {
        let mut input = bytes;
        let clock = Self::decode_from(&mut input)?;
        match input.len() {
            0 => Ok(clock),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    pub(crate) fn decode_from(input: &mut &[u8]) -> Result<VClock, DecodeError> {
        let n = varint::get(input)?;
        // Each entry takes at least two bytes: bound the allocation by input.
        if n > (input.len() / 2) as u64 {
            return Err(DecodeError::Truncated);
        }
        let mut entries = Vec::with_capacity(n as usize);
        let mut prev: Option<NodeId> = None;
        for _ in 0..n {
            let gap = varint::get(input)?;
            let node = match prev {
                None => gap,
                Some(p) => p
                    .checked_add(gap)
                    .and_then(|v| v.checked_add(1))
                    .ok_or(DecodeError::NotCanonical("node id overflows"))?,
            };
            let counter = varint::get(input)?;
            if counter == 0 {
                return Err(DecodeError::NotCanonical("zero counter"));
            }
            entries.push((node, counter));
            prev = Some(node);
        }
        Ok(VClock { entries })
    }
}

impl PartialOrd for VClock {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.compare(other).to_ordering()
    }
}

impl FromIterator<(NodeId, u64)> for VClock {
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> Self {
        let mut c = VClock::new();
        for (node, counter) in iter {
            c.observe(node, counter);
        }
        c
    }
}

impl std::fmt::Display for VClock {
    /// `[a:1 c:3]`-style: node ids as written, zero entries omitted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, (node, c)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{node}:{c}")?;
        }
        f.write_str("]")
    }
}
