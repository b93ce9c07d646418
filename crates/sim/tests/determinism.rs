//! Same seed, same run: two runs of one seed produce the same trace, byte
//! for byte, and the same hash of every event and observation.

use concord_sim::{run, SimConfig};

#[test]
fn same_seed_same_trace() {
    for seed in [7, 8, 1234] {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.trace = true;
        let a = run(cfg.clone());
        let b = run(cfg);
        assert!(a.trace.len() > 100, "the trace records the run");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.history, b.history, "seed {seed}");
    }
}

#[test]
fn different_seeds_differ() {
    let a = run(SimConfig::for_seed(1));
    let b = run(SimConfig::for_seed(2));
    assert_ne!(a.trace_hash, b.trace_hash);
}
