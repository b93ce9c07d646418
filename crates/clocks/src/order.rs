//! The four answers of a causal comparison.

use std::cmp::Ordering;

/// How two causal timestamps relate: a partial order, so two of them may be
/// [`Causality::Concurrent`] (neither happened before the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// The left one happened before the right one.
    Before,
    /// The left one happened after the right one.
    After,
    /// Both name the same causal history.
    Equal,
    /// Neither happened before the other.
    Concurrent,
}

impl Causality {
    /// The answer with the two sides swapped.
    pub fn reverse(self) -> Causality {
        match self {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            other => other,
        }
    }

    /// The comparison as a `PartialOrd` answer (`None` when concurrent).
    pub fn to_ordering(self) -> Option<Ordering> {
        match self {
            Causality::Before => Some(Ordering::Less),
            Causality::After => Some(Ordering::Greater),
            Causality::Equal => Some(Ordering::Equal),
            Causality::Concurrent => None,
        }
    }

    /// Combines per-entry answers: the state after one more entry compared
    /// `Less`, `Equal` or `Greater`.
    pub(crate) fn step(self, entry: Ordering) -> Causality {
        match (self, entry) {
            (c, Ordering::Equal) => c,
            (Causality::Equal | Causality::Before, Ordering::Less) => Causality::Before,
            (Causality::Equal | Causality::After, Ordering::Greater) => Causality::After,
            _ => Causality::Concurrent,
        }
    }
}
