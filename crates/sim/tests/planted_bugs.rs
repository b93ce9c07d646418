//! Proof that the simulator catches bugs: each test switches on a known bug
//! in the core (feature `planted-bugs`) and asserts that a bounded number of
//! seeds finds a violation.

use concord_raft::PlantedBug;
use concord_sim::{bugs, run, SimConfig, SimReport};

/// Runs seeds with `bug` (in the scenario that exposes it) until one fails.
fn hunt(bug: PlantedBug, max_seeds: u64) -> Option<SimReport> {
    (0..max_seeds).find_map(|seed| {
        let mut cfg = SimConfig::for_seed(seed);
        bugs::configure(bug, &mut cfg);
        let r = run(cfg);
        r.failed().then_some(r)
    })
}

fn expect_caught(bug: PlantedBug, max_seeds: u64) {
    let r =
        hunt(bug, max_seeds).unwrap_or_else(|| panic!("{bug:?} not caught in {max_seeds} seeds"));
    eprintln!(
        "{bug:?} caught at seed {}: {}",
        r.seed,
        r.failure().unwrap_or_default()
    );
    // The control: the same seed and scenario on the real core pass.
    let mut cfg = SimConfig::for_seed(r.seed);
    bugs::configure(bug, &mut cfg);
    cfg.planted_bug = None;
    if cfg.lease_reads {
        cfg.check_quorum = true; // leases are only allowed with CheckQuorum
    }
    let control = run(cfg);
    assert!(
        !control.failed(),
        "seed {} fails without the bug: {:?}",
        r.seed,
        control.failure()
    );
}

#[test]
fn figure_8_commit_by_counting_is_caught() {
    expect_caught(PlantedBug::CommitPreviousTermByCounting, 600);
}

#[test]
fn vote_sent_before_persisting_is_caught() {
    expect_caught(PlantedBug::VoteBeforePersist, 300);
}

#[test]
fn vote_without_log_check_is_caught() {
    expect_caught(PlantedBug::VoteWithoutLogCheck, 300);
}

#[test]
fn lease_read_without_check_quorum_is_caught() {
    expect_caught(PlantedBug::LeaseWithoutCheckQuorum, 1000);
}

#[test]
fn leader_acking_before_its_own_fsync_is_caught() {
    expect_caught(PlantedBug::AckBeforeOwnFsync, 300);
}

#[test]
fn without_the_bug_the_same_seeds_pass() {
    // The control: the seeds that catch bugs are clean on the real core.
    for seed in 0..20 {
        let r = run(SimConfig::for_seed(seed));
        assert!(
            !r.failed(),
            "seed {seed}: {}",
            r.failure().unwrap_or_default()
        );
    }
}
