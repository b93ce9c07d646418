//! Property tests of every CRDT: merge is commutative, associative and
//! idempotent; any delivery order of the deltas of any set of operations,
//! with duplicates, converges to the join of the replicas' full states;
//! states and deltas survive the binary codec.

use concord_crdt::{
    from_bytes, to_bytes, Cart, Crdt, GCounter, LwwRegister, MvRegister, OrMap, OrSet, PnCounter,
    Timestamp,
};
use concord_rng::SplitMix64;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// A mutation at `replica`: `kind` picks the operation, `arg` its input.
    Mutate { replica: usize, kind: u8, arg: u8 },
    /// Replica `to` merges replica `from`'s full state.
    Sync { to: usize, from: usize },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0..REPLICAS, 0u8..4, 0u8..6)
            .prop_map(|(replica, kind, arg)| Op::Mutate { replica, kind, arg }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(to, from)| Op::Sync { to, from }),
    ];
    prop::collection::vec(op, 0..40)
}

/// Applies one mutation at `node` and returns its delta.
type Mutate<C> = fn(&mut C, u64, u8, u8, Timestamp) -> C;

/// Runs `ops`; returns the replicas' final states and every delta made.
fn run<C: Crdt + Clone + Default>(ops: &[Op], mutate: Mutate<C>) -> (Vec<C>, Vec<C>) {
    let mut replicas = vec![C::default(); REPLICAS];
    let mut deltas = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Mutate { replica, kind, arg } => {
                // Coarse walls collide on purpose; the logical part keeps
                // every stamp unique, as an HLC would.
                let at = Timestamp::new(u64::from(arg) * 10, i as u32);
                deltas.push(mutate(
                    &mut replicas[replica],
                    replica as u64,
                    kind,
                    arg,
                    at,
                ));
            }
            Op::Sync { to, from } => {
                let other = replicas[from].clone();
                replicas[to].merge(&other);
            }
        }
    }
    (replicas, deltas)
}

fn joined<C: Crdt + Clone>(a: &C, b: &C) -> C {
    let mut m = a.clone();
    m.merge(b);
    m
}

fn check<C>(ops: &[Op], seed: u64, mutate: Mutate<C>) -> Result<(), TestCaseError>
where
    C: Crdt + Clone + Default + PartialEq + Debug + Serialize + DeserializeOwned,
{
    let (replicas, deltas) = run(ops, mutate);
    let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
    prop_assert_eq!(joined(a, b), joined(b, a));
    prop_assert_eq!(joined(&joined(a, b), c), joined(a, &joined(b, c)));
    prop_assert_eq!(joined(a, a), a.clone());
    let full = replicas.iter().fold(C::default(), |acc, r| joined(&acc, r));
    // Deliver every delta in a seeded random order, some twice.
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<usize> = (0..deltas.len()).collect();
    for _ in 0..deltas.len() / 3 {
        order.push(rng.below(deltas.len() as u64) as usize);
    }
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut delivered = C::default();
    for &i in &order {
        delivered.merge(&deltas[i]);
    }
    prop_assert_eq!(
        &delivered,
        &full,
        "deltas in any order equal the full-state merge"
    );
    for s in deltas.iter().chain([&full]) {
        prop_assert_eq!(&from_bytes::<C>(&to_bytes(s).unwrap()).unwrap(), s);
    }
    Ok(())
}

fn gcounter(c: &mut GCounter, node: u64, _: u8, arg: u8, _: Timestamp) -> GCounter {
    c.increment(node, u64::from(arg))
}

fn pncounter(c: &mut PnCounter, node: u64, kind: u8, arg: u8, _: Timestamp) -> PnCounter {
    match kind % 2 {
        0 => c.increment(node, u64::from(arg)),
        _ => c.decrement(node, u64::from(arg)),
    }
}

fn lww(r: &mut LwwRegister<u8>, node: u64, _: u8, arg: u8, at: Timestamp) -> LwwRegister<u8> {
    r.set(arg, at, node)
}

fn mvreg(r: &mut MvRegister<u8>, node: u64, _: u8, arg: u8, _: Timestamp) -> MvRegister<u8> {
    r.set(node, arg)
}

fn orset(s: &mut OrSet<u8>, node: u64, kind: u8, arg: u8, _: Timestamp) -> OrSet<u8> {
    match kind {
        0 | 1 => s.add(node, arg),
        _ => s.remove(&arg),
    }
}

type Map = OrMap<u8, PnCounter>;

fn ormap(m: &mut Map, node: u64, kind: u8, arg: u8, _: Timestamp) -> Map {
    match kind {
        0 => m.update(node, arg, |c| c.increment(node, 1)),
        1 => m.update(node, arg % 3, |c| c.decrement(node, 2)),
        _ => m.remove(&(arg % 3)),
    }
}

fn cart(c: &mut Cart, node: u64, kind: u8, arg: u8, at: Timestamp) -> Cart {
    let item = ["milk", "eggs", "bread"][usize::from(arg % 3)];
    match kind {
        0 | 1 => c.set(node, item, u32::from(arg) + 1, at),
        _ => c.remove(item),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn gcounter_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, gcounter)?; }

    #[test]
    fn pncounter_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, pncounter)?; }

    #[test]
    fn lww_register_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, lww)?; }

    #[test]
    fn mv_register_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, mvreg)?; }

    #[test]
    fn orset_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, orset)?; }

    #[test]
    fn ormap_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, ormap)?; }

    #[test]
    fn cart_laws(ops in ops(), seed in any::<u64>()) { check(&ops, seed, cart)?; }

    /// Counters converge to the sum of what every node did.
    #[test]
    fn counters_count_every_operation(ops in ops()) {
        let (replicas, _) = run(&ops, pncounter);
        let full = replicas.iter().fold(PnCounter::new(), |acc, r| joined(&acc, r));
        let expected: i128 = ops.iter().map(|op| match *op {
            Op::Mutate { kind, arg, .. } if kind % 2 == 0 => i128::from(arg),
            Op::Mutate { arg, .. } => -i128::from(arg),
            Op::Sync { .. } => 0,
        }).sum();
        prop_assert_eq!(full.value(), expected);
    }
}

/// A counter whose merge adds instead of taking the maximum: not
/// idempotent, so duplicated deltas double-count. The harness must say so.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct BrokenCounter(u64);

impl Crdt for BrokenCounter {
    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }
}

fn broken(c: &mut BrokenCounter, _: u64, _: u8, arg: u8, _: Timestamp) -> BrokenCounter {
    c.0 += u64::from(arg) + 1;
    BrokenCounter(u64::from(arg) + 1)
}

#[test]
fn the_harness_catches_a_merge_that_is_not_a_join() {
    let ops = [
        Op::Mutate {
            replica: 0,
            kind: 0,
            arg: 1,
        },
        Op::Sync { to: 1, from: 0 },
    ];
    assert!(check(&ops, 1, broken).is_err());
}
