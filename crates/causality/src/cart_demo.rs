//! The shopping cart across a partition: three replicas, a split, edits
//! on both sides, then the heal by shipping deltas in a seeded order.

use concord_clocks::{Hlc, ManualClock, OffsetPolicy, PhysicalClock};
use concord_crdt::{to_bytes, Cart, Crdt};
use concord_rng::SplitMix64;

const MS: u64 = 1_000_000;
/// True time zero on every replica's physical clock, before its skew.
const START: u64 = 1_000_000 * MS;

/// One replica: its cart, its skewed clock, and the deltas it made that
/// the others have not received yet.
struct Replica {
    name: char,
    cart: Cart,
    clock: ManualClock,
    hlc: Hlc<ManualClock>,
    outbox: Vec<Cart>,
}

/// What the demo found, for the table and for `-w json`.
pub struct Outcome {
    /// Lines to print, in order.
    pub lines: Vec<String>,
    /// Converged cart as `(item, quantity)`.
    pub converged: Vec<(String, u32)>,
    /// Deltas shipped at the heal, and their total size in bytes.
    pub deltas: (usize, usize),
    /// One full cart state's size, bytes.
    pub state_bytes: usize,
}

impl Replica {
    fn new(name: char, skew_ms: i64) -> Replica {
        let clock = ManualClock::new(START);
        clock.set(clock.now_nanos().saturating_add_signed(skew_ms * MS as i64));
        let hlc = Hlc::new(clock.clone(), 500 * MS, OffsetPolicy::Flag);
        Replica {
            name,
            cart: Cart::new(),
            clock,
            hlc,
            outbox: Vec::new(),
        }
    }

    fn set(&mut self, node: u64, item: &str, qty: u32) -> String {
        let at = self.hlc.now();
        let d = self.cart.set(node, item, qty, at);
        self.outbox.push(d);
        let rel = (at.wall as i128 - START as i128) as f64 / 1e6;
        format!(
            "{} sets {item} x{qty} (HLC {rel:+.0} ms, {})",
            self.name, at.logical
        )
    }

    fn remove(&mut self, item: &str) -> String {
        let d = self.cart.remove(item);
        self.outbox.push(d);
        format!("{} removes {item}", self.name)
    }
}

/// Delivers every outbox delta of `from` to `to`, each message stamped
/// with the sender's HLC: the receiver's clock moves past it, so a quantity
/// it sets afterwards wins over the one it saw, whatever the skew.
fn ship(rs: &mut [Replica], from: usize, to: &[usize]) {
    let deltas = rs[from].outbox.clone();
    let stamp = rs[from].hlc.last();
    for &t in to {
        rs[t].hlc.update(stamp).expect("flag policy accepts");
        for d in &deltas {
            rs[t].cart.merge(d);
        }
    }
}

fn advance(rs: &mut [Replica], ms: u64) {
    for r in rs.iter_mut() {
        r.clock.advance(ms * MS);
    }
}

/// Runs the demo; `seed` sets the clock skews and the heal's delivery order.
pub fn run(seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed);
    let mut rs: Vec<Replica> = ['A', 'B', 'C']
        .into_iter()
        .map(|n| Replica::new(n, rng.range(0, 200) as i64 - 100))
        .collect();
    let mut lines = vec!["-- connected: A fills the cart, everyone receives it".to_owned()];
    lines.push(rs[0].set(0, "milk", 1));
    lines.push(rs[0].set(0, "eggs", 6));
    ship(&mut rs, 0, &[1, 2]);
    rs[0].outbox.clear();
    lines.push("-- partition: {A} | {B, C}".to_owned());
    advance(&mut rs, 10);
    lines.push(rs[0].remove("milk"));
    lines.push(rs[0].set(0, "eggs", 12));
    lines.push(rs[1].set(1, "milk", 2));
    lines.push(rs[2].set(2, "bread", 1));
    ship(&mut rs, 2, &[1]);
    advance(&mut rs, 10);
    lines.push(rs[1].remove("bread"));
    lines.push(rs[2].set(2, "eggs", 3));
    ship(&mut rs, 1, &[2]);
    ship(&mut rs, 2, &[1]);
    for r in &rs {
        lines.push(format!("   {} sees: {}", r.name, r.cart));
    }
    lines.push("-- heal: every delta made during the partition reaches every replica, shuffled, some twice".to_owned());
    let mut all: Vec<Cart> = rs.iter().flat_map(|r| r.outbox.iter().cloned()).collect();
    let (count, bytes) = (
        all.len(),
        all.iter()
            .map(|d| to_bytes(d).expect("encodes").len())
            .sum(),
    );
    for _ in 0..count / 2 {
        let i = rng.below(count as u64) as usize;
        all.push(all[i].clone());
    }
    for r in rs.iter_mut() {
        let mut order: Vec<usize> = (0..all.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            r.cart.merge(&all[i]);
        }
    }
    for r in &rs {
        lines.push(format!("   {} sees: {}", r.name, r.cart));
    }
    assert!(
        rs.iter().all(|r| r.cart == rs[0].cart),
        "replicas diverged after the heal"
    );
    let eggs = rs[0]
        .cart
        .items()
        .into_iter()
        .find(|(k, _)| k == "eggs")
        .map_or(0, |e| e.1);
    lines.push(format!(
        "-- converged: milk stays (B's add was concurrent with A's remove: add wins), bread is gone (B's remove saw C's add), eggs x{eggs} (A's x12 and C's x3 were concurrent: the later HLC stamp wins)"
    ));
    let state_bytes = to_bytes(&rs[0].cart).expect("encodes").len();
    Outcome {
        lines,
        converged: rs[0].cart.items(),
        deltas: (count, bytes),
        state_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_for_many_seeds_and_keeps_the_concurrent_add() {
        for seed in 0..50 {
            let out = run(seed);
            let items: Vec<&str> = out.converged.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(items, ["eggs", "milk"], "seed {seed}");
            assert_eq!(out.converged[1].1, 2, "milk keeps B's quantity");
        }
    }
}
