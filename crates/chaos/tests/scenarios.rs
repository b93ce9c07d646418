//! A short run of each scenario against real Concord processes: the
//! history must be linearizable, no acknowledged write lost, every fault
//! followed by a recovery, and the watchers, lock holders and lease
//! clients must have worked and passed their validators; and a run with
//! faults planted in those records must fail each validator. (Long runs:
//! `concord-lab run`.)

use std::time::Duration;

use concord_chaos::validate::Plant;
use concord_chaos::workload::WorkloadConfig;
use concord_chaos::{run, scenario, RunConfig, Target};

mod common;
use common::concord_binary;

fn run_for(
    name: &str,
    seed: u64,
    secs: u64,
    workload: WorkloadConfig,
    plant: Vec<Plant>,
) -> concord_chaos::Report {
    let out = tempfile::tempdir().unwrap();
    let cfg = RunConfig {
        scenario: scenario::find(name).unwrap(),
        target: Target::Concord,
        binary: concord_binary(),
        members: 3,
        secs: Duration::from_secs(secs),
        seed,
        out: out.path().to_path_buf(),
        every: Duration::from_secs(5),
        outage: Duration::from_millis(1500),
        workload,
        plant,
        clock: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(run(cfg, &|m| eprintln!("{name}: {m}")))
        .unwrap();
    for file in ["history.jsonl", "report.json", "report.md", "timeline.svg"] {
        assert!(out.path().join(file).exists(), "{file} written");
    }
    report
}

fn short_run(name: &str, seed: u64) -> concord_chaos::Report {
    // Fewer lock and lease clients than `concord-lab run`: five clusters
    // share the CPU while these tests run.
    let workload = WorkloadConfig {
        lock_holders: 2,
        lease_clients: 1,
        ..WorkloadConfig::new(4, 8, seed)
    };
    let report = run_for(name, seed, 9, workload, Vec::new());
    let md = concord_chaos::report::markdown(&report);
    eprintln!("{md}");
    assert!(report.passed(), "{md}");
    let faults = if name == "healthy" { 0 } else { 1 };
    assert_eq!(report.faults.len(), faults, "{md}");
    assert!(report.ok > 100, "the workload ran: {md}");
    for f in &report.faults {
        assert!(f.rto_write_ms.is_some(), "no write after the fault: {md}");
    }
    let c = &report.checks;
    assert_eq!(c.watch.len(), 2, "{md}");
    assert!(
        c.watch.iter().all(|w| w.events > 50),
        "watchers saw events: {md}"
    );
    assert!(c.locks.holds > 10, "the lock was held: {md}");
    assert!(c.leases.reads > 0, "leases ended and were read: {md}");
    report
}

#[test]
fn planted_faults_fail_each_validator() {
    let all = vec![Plant::WatchGap, Plant::LockOverlap, Plant::LeaseRead];
    let workload = WorkloadConfig {
        lock_holders: 2,
        lease_clients: 1,
        ..WorkloadConfig::new(2, 8, 5)
    };
    let r = run_for("healthy", 5, 6, workload, all);
    let md = concord_chaos::report::markdown(&r);
    eprintln!("{md}");
    assert!(!r.passed(), "{md}");
    assert_eq!(r.linearizable, "ok", "{md}");
    let gap = &r.checks.watch[0].violations;
    assert!(
        gap.iter()
            .any(|m| m.contains("missed the acknowledged write")),
        "{md}"
    );
    assert!(r.checks.watch[1].violations.is_empty(), "{md}");
    assert!(
        r.checks.locks.violations[0].contains("held it at once"),
        "{md}"
    );
    assert!(
        r.checks.leases.violations[0].contains("read present"),
        "{md}"
    );
}

#[test]
fn healthy_has_no_elections() {
    let r = short_run("healthy", 4);
    assert_eq!(r.elections, 0, "{}", concord_chaos::report::markdown(&r));
}

#[test]
fn leader_kill() {
    let r = short_run("leader-kill", 1);
    assert!(r.elections >= 1, "the kill caused an election");
}

#[test]
fn follower_kill() {
    let _ = short_run("follower-kill", 2);
}

#[test]
fn leader_pause() {
    let _ = short_run("leader-pause", 3);
}
