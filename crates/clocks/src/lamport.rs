//! Lamport's scalar clock.

use serde::{Deserialize, Serialize};

/// A Lamport clock. Invariant: the value never decreases, and every event
/// (local, send, receive) strictly increases it, so `e -> f` implies
/// `L(e) < L(f)`. The converse does not hold: a total order by `(L, node)`
/// says nothing about whether two events were concurrent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lamport(u64);

impl Lamport {
    /// A clock at zero (before any event).
    pub fn new() -> Self {
        Lamport(0)
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0
    }

    /// A local or send event: advances and returns the event's timestamp.
    pub fn tick(&mut self) -> u64 {
        self.0 = self.0.checked_add(1).expect("Lamport clock overflow");
        self.0
    }

    /// A receive event of a message stamped `remote`: jumps past it.
    pub fn observe(&mut self, remote: u64) -> u64 {
        self.0 = self.0.max(remote);
        self.tick()
    }
}
