//! Dotted version vectors: siblings kept exactly for concurrent writes,
//! metadata bounded by the replicas however many clients write, and the
//! sibling merge a join (commutative, associative, idempotent).

use concord_clocks::{CausalContext, Causality, Dot, Dvv, Siblings};
use proptest::prelude::*;
use std::collections::BTreeSet;

const REPLICAS: usize = 3;
const CLIENTS: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// Client reads from a replica (remembers the context).
    Read(usize, usize),
    /// Client writes through a replica with the context it last read.
    Write(usize, usize),
    /// Replica `a` merges replica `b`'s full state.
    Sync(usize, usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (0..CLIENTS, 0..REPLICAS).prop_map(|(c, r)| Op::Read(c, r)),
        (0..CLIENTS, 0..REPLICAS).prop_map(|(c, r)| Op::Write(c, r)),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(a, b)| Op::Sync(a, b)),
    ];
    prop::collection::vec(op, 0..60)
}

struct Run {
    replicas: Vec<Siblings<u32>>,
    /// Every write: its dot and the context its client had read.
    writes: Vec<(Dot, CausalContext)>,
}

fn run(ops: &[Op]) -> Run {
    let mut replicas = vec![Siblings::new(); REPLICAS];
    let mut read = vec![CausalContext::new(); CLIENTS];
    let mut writes = Vec::new();
    for op in ops {
        match *op {
            Op::Read(c, r) => read[c] = replicas[r].context().clone(),
            Op::Write(c, r) => {
                let n = writes.len() as u32;
                let delta = replicas[r].write(r as u64, &read[c], n);
                let (dot, _) = delta.entries().next().unwrap();
                writes.push((dot, read[c].clone()));
            }
            Op::Sync(a, b) => {
                let other = replicas[b].clone();
                replicas[a].merge(&other);
            }
        }
    }
    Run { replicas, writes }
}

fn joined(a: &Siblings<u32>, b: &Siblings<u32>) -> Siblings<u32> {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn siblings_are_exactly_the_writes_nobody_saw(ops in ops()) {
        let Run { replicas, writes } = run(&ops);
        let all = replicas.iter().fold(Siblings::new(), |acc, r| joined(&acc, r));
        let overwritten: BTreeSet<Dot> = writes
            .iter()
            .flat_map(|(_, seen)| writes.iter().map(|w| w.0).filter(|d| seen.contains(*d)).collect::<Vec<_>>())
            .collect();
        let expected: BTreeSet<Dot> =
            writes.iter().map(|w| w.0).filter(|d| !overwritten.contains(d)).collect();
        let live: BTreeSet<Dot> = all.entries().map(|(d, _)| d).collect();
        prop_assert_eq!(live, expected);
        // One entry per replica at most, however many clients wrote.
        prop_assert!(all.context().vv().len() <= REPLICAS);
        prop_assert_eq!(all.context().cloud_len(), 0);
    }

    #[test]
    fn merge_is_a_join(ops in ops()) {
        let Run { replicas, .. } = run(&ops);
        let (a, b, c) = (&replicas[0], &replicas[1], &replicas[2]);
        prop_assert_eq!(joined(a, b), joined(b, a));
        prop_assert_eq!(joined(&joined(a, b), c), joined(a, &joined(b, c)));
        prop_assert_eq!(joined(a, a), a.clone());
    }

    #[test]
    fn dvv_compare_is_causality(ops in ops()) {
        let Run { writes, .. } = run(&ops);
        let dvvs: Vec<Dvv> = writes.iter().map(|(d, seen)| Dvv::new(*d, seen.vv().clone())).collect();
        for (i, x) in dvvs.iter().enumerate() {
            for (j, y) in dvvs.iter().enumerate() {
                let expect = if i == j {
                    Causality::Equal
                } else if writes[j].1.contains(writes[i].0) {
                    Causality::Before
                } else if writes[i].1.contains(writes[j].0) {
                    Causality::After
                } else {
                    Causality::Concurrent
                };
                prop_assert_eq!(x.compare(y), expect);
                prop_assert!(x.history().contains(x.dot()));
            }
        }
    }
}

#[test]
fn concurrent_clients_through_one_replica_become_siblings() {
    let mut r = Siblings::new();
    let empty = CausalContext::new();
    // Two clients read nothing and write through the same replica.
    r.write(1, &empty, "a");
    r.write(1, &empty, "b");
    assert_eq!(r.values().copied().collect::<Vec<_>>(), ["a", "b"]);
    // A third client reads both and writes: one value, one vector entry.
    let seen = r.context().clone();
    r.write(1, &seen, "c");
    assert_eq!(r.values().copied().collect::<Vec<_>>(), ["c"]);
    assert_eq!(r.context().vv().len(), 1);
}
