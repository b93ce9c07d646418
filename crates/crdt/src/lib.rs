//! Conflict-free replicated data types, state-based and delta-state.
//!
//! Every type is a join semilattice: [`Crdt::merge`] is commutative,
//! associative and idempotent, so replicas that have seen the same updates,
//! in any order and with duplicates, hold the same state. Every mutator
//! applies itself and returns a *delta*: a value of the same type holding
//! just what changed, which a replica merges like a full state (Almeida,
//! Shoker, Baquero, "Delta state replicated data types", 2018). Shipping
//! deltas instead of states is the whole point: a delta is a few bytes
//! where the state may be megabytes.
//!
//! | type | what it keeps | metadata garbage collection |
//! |---|---|---|
//! | [`GCounter`] | a count that only grows | none possible: one entry per node that ever counted |
//! | [`PnCounter`] | a count up and down | as G-Counter |
//! | [`LwwRegister`] | the value with the greatest (HLC timestamp, node) | none needed: one stamp |
//! | [`MvRegister`] | every concurrently written value | none needed: overwritten values leave only dots in a context |
//! | [`OrSet`] | add-wins set | tombstone-free: a remove leaves only dots, which fold into one counter per node |
//! | [`OrMap`] | add-wins map of CRDT values | [`OrMap::forget_removed`], once removes are causally stable |
//! | [`Cart`] | the shopping cart: item to quantity | as OR-Map |
//!
//! Serialization: every type derives serde; [`to_bytes`] and [`from_bytes`]
//! give the compact binary form (postcard: varints, no field names).
#![deny(missing_docs)]

mod cart;
mod codec;
mod dots;
mod gcounter;
mod lww;
mod mvreg;
mod ormap;
mod orset;
mod pncounter;

pub use cart::Cart;
pub use codec::{from_bytes, to_bytes, CodecError};
pub use concord_clocks::{Dot, NodeId, Timestamp};
pub use gcounter::GCounter;
pub use lww::LwwRegister;
pub use mvreg::MvRegister;
pub use ormap::OrMap;
pub use orset::OrSet;
pub use pncounter::PnCounter;

/// A state-based CRDT: a join semilattice.
pub trait Crdt {
    /// Joins `other` into `self`. Laws: commutative, associative and
    /// idempotent (up to the states' equality). `other` may be a full state
    /// or a delta returned by a mutator: both are states of the type.
    fn merge(&mut self, other: &Self);
}
