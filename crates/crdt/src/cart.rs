//! The shopping cart of the Dynamo paper, done with CRDTs.

use crate::{Crdt, LwwRegister, NodeId, OrMap, Timestamp};
use serde::{Deserialize, Serialize};

/// A shopping cart: an [`OrMap`] from item to a quantity register. Adding
/// or changing an item re-adds it, so an add concurrent with a remove keeps
/// the item (Dynamo's cart never lost an add; here that is the OR-Map's
/// add-wins rule, not an accident of merging). Concurrent quantity changes
/// resolve by the later HLC timestamp, node id breaking ties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    items: OrMap<String, LwwRegister<u32>>,
}

impl Cart {
    /// An empty cart.
    pub fn new() -> Self {
        Cart::default()
    }

    /// `node` puts `quantity` of `item` in the cart at time `at` (adding it
    /// or changing its quantity); returns the delta.
    pub fn set(&mut self, node: NodeId, item: &str, quantity: u32, at: Timestamp) -> Cart {
        let items = self
            .items
            .update(node, item.to_owned(), |q| q.set(quantity, at, node));
        Cart { items }
    }

    /// Takes `item` out of the cart as this replica sees it; returns the
    /// delta.
    pub fn remove(&mut self, item: &str) -> Cart {
        Cart {
            items: self.items.remove(&item.to_owned()),
        }
    }

    /// The items and their quantities, by name.
    pub fn items(&self) -> Vec<(String, u32)> {
        self.items
            .iter()
            .map(|(k, q)| (k.clone(), q.get().copied().unwrap_or(0)))
            .collect()
    }

    /// Drops the quantity registers of removed items; returns how many.
    /// Precondition: every replica has merged those removes (the OR-Map's
    /// second precondition holds: quantities are HLC-stamped registers).
    pub fn forget_removed(&mut self) -> usize {
        self.items.forget_removed()
    }

    /// The map underneath.
    pub fn as_map(&self) -> &OrMap<String, LwwRegister<u32>> {
        &self.items
    }
}

impl Crdt for Cart {
    fn merge(&mut self, other: &Self) {
        self.items.merge(&other.items);
    }
}

impl std::fmt::Display for Cart {
    /// `milk x2, eggs x12`, or `(empty)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = self.items();
        if items.is_empty() {
            return f.write_str("(empty)");
        }
        let parts: Vec<String> = items.iter().map(|(k, q)| format!("{k} x{q}")).collect();
        f.write_str(&parts.join(", "))
    }
}
