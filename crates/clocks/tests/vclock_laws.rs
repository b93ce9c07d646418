//! Property tests: vector clocks and version vectors form a partial order
//! whose merge is the least upper bound; the encoding round-trips.

use concord_clocks::{Causality, VClock};
use proptest::prelude::*;

fn vclock() -> impl Strategy<Value = VClock> {
    // Few nodes and small counters so that equal and ordered pairs occur.
    prop::collection::vec((0u64..5, 0u64..4), 0..6).prop_map(VClock::from_iter)
}

fn leq(a: &VClock, b: &VClock) -> bool {
    matches!(a.compare(b), Causality::Before | Causality::Equal)
}

/// The compare answer computed entry by entry over the union of nodes.
fn model_compare(a: &VClock, b: &VClock) -> Causality {
    let nodes: std::collections::BTreeSet<u64> = a.iter().chain(b.iter()).map(|e| e.0).collect();
    let le = nodes.iter().all(|&n| a.get(n) <= b.get(n));
    let ge = nodes.iter().all(|&n| a.get(n) >= b.get(n));
    match (le, ge) {
        (true, true) => Causality::Equal,
        (true, false) => Causality::Before,
        (false, true) => Causality::After,
        (false, false) => Causality::Concurrent,
    }
}

fn merged(a: &VClock, b: &VClock) -> VClock {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn compare_matches_the_definition(a in vclock(), b in vclock()) {
        prop_assert_eq!(a.compare(&b), model_compare(&a, &b));
        prop_assert_eq!(b.compare(&a), a.compare(&b).reverse());
    }

    #[test]
    fn is_a_partial_order(a in vclock(), b in vclock(), c in vclock()) {
        prop_assert_eq!(a.compare(&a), Causality::Equal);
        if leq(&a, &b) && leq(&b, &a) {
            prop_assert_eq!(&a, &b);
        }
        if leq(&a, &b) && leq(&b, &c) {
            prop_assert!(leq(&a, &c));
        }
    }

    #[test]
    fn merge_is_the_least_upper_bound(a in vclock(), b in vclock(), c in vclock()) {
        let m = merged(&a, &b);
        prop_assert!(leq(&a, &m) && leq(&b, &m));
        if leq(&a, &c) && leq(&b, &c) {
            prop_assert!(leq(&m, &c));
        }
        prop_assert_eq!(&m, &merged(&b, &a));
        prop_assert_eq!(merged(&m, &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
    }

    #[test]
    fn increment_moves_strictly_after(a in vclock(), node in 0u64..8) {
        let mut b = a.clone();
        b.increment(node);
        prop_assert_eq!(a.compare(&b), Causality::Before);
        prop_assert_eq!(b.get(node), a.get(node) + 1);
    }

    #[test]
    fn encoding_round_trips(a in vclock(), big in any::<u64>()) {
        let mut a = a;
        a.observe(big, big.max(1));
        let bytes = a.encode();
        prop_assert_eq!(VClock::decode(&bytes), Ok(a.clone()));
        // A prefix never decodes to a clock.
        if let Some(cut) = bytes.len().checked_sub(1) {
            prop_assert!(VClock::decode(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn encoding_is_compact() {
    let c = VClock::from_iter([(1, 3), (2, 1), (3, 9)]);
    assert_eq!(c.encode().len(), 7);
    assert_eq!(VClock::new().encode(), vec![0]);
    assert_eq!(c.to_string(), "[1:3 2:1 3:9]");
}
