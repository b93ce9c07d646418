//! OR-Set merges on 10k-element sets, ours beside rust-crdt's
//! `crdts::Orswot`, and the sizes of full states against deltas (ours)
//! and ops (theirs), printed once before the timings.

use concord_crdt::{to_bytes, Crdt, OrSet};
use crdts::{CmRDT, CvRDT, Orswot};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;

const N: u32 = 10_000;

/// Two replicas of a 10k set (nodes 1-3 added it) that then diverge by
/// 100 adds each, and the delta of one more add.
fn ours() -> (OrSet<u32>, OrSet<u32>, OrSet<u32>) {
    let mut a = OrSet::new();
    for i in 0..N {
        a.add(1 + u64::from(i % 3), i);
    }
    let mut b = a.clone();
    for i in 0..100 {
        a.add(1, N + i);
        b.add(2, 2 * N + i);
    }
    let delta = a.clone().add(1, 3 * N);
    (a, b, delta)
}

type Theirs = Orswot<u32, u64>;

fn add(s: &mut Theirs, node: u64, e: u32) -> crdts::orswot::Op<u32, u64> {
    let op = s.add(e, s.read_ctx().derive_add_ctx(node));
    s.apply(op.clone());
    op
}

fn theirs() -> (Theirs, Theirs, crdts::orswot::Op<u32, u64>) {
    let mut a = Orswot::new();
    for i in 0..N {
        add(&mut a, 1 + u64::from(i % 3), i);
    }
    let mut b = a.clone();
    for i in 0..100 {
        add(&mut a, 1, N + i);
        add(&mut b, 2, 2 * N + i);
    }
    let op = add(&mut a.clone(), 1, 3 * N);
    (a, b, op)
}

fn sizes() {
    let (a, _, delta) = ours();
    let (ta, _, op) = theirs();
    let bytes = |v: Vec<u8>| v.len();
    println!(
        "sizes (postcard) of a 10k-element OR-set: concord state {} B, delta of one add {} B; crdts Orswot state {} B, op of one add {} B",
        bytes(to_bytes(&a).unwrap()),
        bytes(to_bytes(&delta).unwrap()),
        bytes(postcard::to_stdvec(&ta).unwrap()),
        bytes(postcard::to_stdvec(&op).unwrap()),
    );
}

fn orset(c: &mut Criterion) {
    sizes();
    let (a, b, delta) = ours();
    let (ta, tb, op) = theirs();
    let mut g = c.benchmark_group("orset-10k");
    g.sample_size(20);
    g.bench_function("merge-full/concord", |bch| {
        bch.iter_batched_ref(
            || a.clone(),
            |x| x.merge(black_box(&b)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("merge-full/crdts", |bch| {
        bch.iter_batched_ref(
            || (ta.clone(), tb.clone()),
            |(x, y)| x.merge(std::mem::take(y)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("apply-delta/concord", |bch| {
        bch.iter_batched_ref(
            || b.clone(),
            |x| x.merge(black_box(&delta)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("apply-op/crdts", |bch| {
        bch.iter_batched_ref(
            || tb.clone(),
            |x| x.apply(black_box(op.clone())),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("add/concord", |bch| {
        bch.iter_batched_ref(|| a.clone(), |x| x.add(1, 4 * N), BatchSize::LargeInput)
    });
    g.bench_function("add/crdts", |bch| {
        bch.iter_batched_ref(|| ta.clone(), |x| add(x, 1, 4 * N), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, orset);
criterion_main!(benches);
