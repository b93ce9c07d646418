//! Short runs of crash scenarios against Concord built with failpoints:
//! the armed member must die at its point, and after its restart the
//! history must be linearizable with no acknowledged write lost. The
//! others are run with `concord-lab run crash-...` (docs/CHAOS.md).
//!
//! `cargo test --workspace` builds `concord` with failpoints (this crate's
//! dev-dependency turns the feature on); run alone, a missing binary is
//! built with the feature, and a binary without it skips the test with
//! the reason printed.

use std::time::Duration;

use concord_chaos::workload::WorkloadConfig;
use concord_chaos::{run, scenario, LabError, RunConfig, Target};

mod common;
use common::concord_binary;

/// One short run; `None` (skipped, reason printed) for a server built
/// without failpoints.
fn crash_run(name: &str, seed: u64, secs: u64) -> Option<concord_chaos::Report> {
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
        outage: Duration::from_millis(1000),
        workload: WorkloadConfig {
            lock_holders: 1,
            lease_clients: 1,
            ..WorkloadConfig::new(4, 8, seed)
        },
        plant: Vec::new(),
        clock: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(run(cfg, &|m| eprintln!("{name}: {m}"))) {
        Ok(r) => Some(r),
        Err(LabError::Failpoints(why)) if why.contains("built without failpoints") => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

fn check(r: &concord_chaos::Report, point: &str) {
    let md = concord_chaos::report::markdown(r);
    eprintln!("{md}");
    assert!(r.passed(), "{md}");
    assert_eq!(r.lost_writes, 0, "{md}");
    assert!(!r.faults.is_empty(), "{md}");
    for f in &r.faults {
        assert!(
            f.member.contains(&format!("at {point} (exit 70")),
            "the member did not die at {point}: {md}"
        );
        assert!(f.rto_write_ms.is_some(), "no write after the crash: {md}");
    }
}

#[test]
fn crash_before_fsync() {
    if let Some(r) = crash_run("crash-before-fsync", 11, 7) {
        check(&r, "raft-before-save");
    }
}

#[test]
fn crash_etcd_is_refused() {
    let cfg = RunConfig {
        scenario: scenario::find("crash-after-apply").unwrap(),
        target: Target::Etcd,
        binary: std::path::PathBuf::from("etcd"),
        members: 3,
        secs: Duration::from_secs(5),
        seed: 1,
        out: std::path::PathBuf::from("unused"),
        every: Duration::from_secs(5),
        outage: Duration::from_secs(1),
        workload: WorkloadConfig::new(1, 8, 1),
        plant: Vec::new(),
        clock: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(run(cfg, &|_| {})).unwrap_err();
    assert!(err.to_string().contains("--target concord"), "{err}");
}
