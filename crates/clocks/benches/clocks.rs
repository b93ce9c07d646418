//! Vector-clock compare and merge at 3, 16 and 128 entries, ours beside
//! rust-crdt's `crdts::VClock`; the HLC's `now()` over both physical clocks.

use concord_clocks::{Hlc, ManualClock, OffsetPolicy, SystemClock, VClock};
use crdts::{CmRDT, CvRDT};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use std::hint::black_box;

/// Two clocks over `n` nodes with `a < b` (every entry compared).
fn ours(n: u64) -> (VClock, VClock) {
    let a = VClock::from_iter((0..n).map(|i| (i, i + 1)));
    let b = VClock::from_iter((0..n).map(|i| (i, i + 1 + i % 2)));
    (a, b)
}

fn theirs(n: u64) -> (crdts::VClock<u64>, crdts::VClock<u64>) {
    let (mut a, mut b) = (crdts::VClock::new(), crdts::VClock::new());
    for i in 0..n {
        a.apply(crdts::Dot::new(i, i + 1));
        b.apply(crdts::Dot::new(i, i + 1 + i % 2));
    }
    (a, b)
}

fn vclock(c: &mut Criterion) {
    let mut g = c.benchmark_group("vclock");
    for n in [3u64, 16, 128] {
        let (a, b) = ours(n);
        let (ta, tb) = theirs(n);
        assert!(a < b && ta < tb);
        g.bench_with_input(BenchmarkId::new("compare/concord", n), &n, |bch, _| {
            bch.iter(|| black_box(&a).compare(black_box(&b)))
        });
        g.bench_with_input(BenchmarkId::new("compare/crdts", n), &n, |bch, _| {
            bch.iter(|| black_box(&ta).partial_cmp(black_box(&tb)))
        });
        g.bench_with_input(BenchmarkId::new("merge/concord", n), &n, |bch, _| {
            bch.iter_batched_ref(
                || a.clone(),
                |x| x.merge(black_box(&b)),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("merge/crdts", n), &n, |bch, _| {
            bch.iter_batched_ref(
                || (ta.clone(), tb.clone()),
                |(x, y)| x.merge(std::mem::take(y)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn hlc(c: &mut Criterion) {
    let mut g = c.benchmark_group("hlc");
    let mut sys = Hlc::new(SystemClock, 500_000_000, OffsetPolicy::Refuse);
    g.bench_function("now/system-clock", |b| b.iter(|| black_box(sys.now())));
    let mut manual = Hlc::new(ManualClock::new(1), 500_000_000, OffsetPolicy::Refuse);
    g.bench_function("now/manual-clock", |b| b.iter(|| black_box(manual.now())));
    g.finish();
}

criterion_group!(benches, vclock, hlc);
criterion_main!(benches);
