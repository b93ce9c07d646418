//! A short clock-fault run against real Concord processes under
//! libfaketime (skipped, with the reason, when libfaketime is missing):
//! the leader's clocks run at x0.7 with lease reads on; within the drift
//! bound and with the network whole, the history must stay linearizable,
//! and the report must say what the clocks did.

use std::time::Duration;

use concord_chaos::clock::{find_libfaketime, ClockConfig, ClockMode};
use concord_chaos::workload::WorkloadConfig;
use concord_chaos::{run, scenario, RunConfig, Target};

mod common;
use common::concord_binary;

#[test]
fn slow_leader_clock_with_lease_reads() {
    if let Err(e) = find_libfaketime() {
        eprintln!("skipped: {e}");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let cfg = RunConfig {
        scenario: scenario::find("clock-slow").unwrap(),
        target: Target::Concord,
        binary: concord_binary(),
        members: 3,
        secs: Duration::from_secs(8),
        seed: 3,
        out: out.path().to_path_buf(),
        every: Duration::from_secs(5),
        outage: Duration::from_millis(2000),
        workload: WorkloadConfig {
            lock_holders: 1,
            lease_clients: 1,
            ..WorkloadConfig::new(4, 8, 3)
        },
        plant: Vec::new(),
        clock: ClockConfig {
            lease_reads: true,
            ..ClockConfig::default()
        },
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(run(cfg, &|m| eprintln!("clock-slow: {m}")))
        .unwrap();
    let md = concord_chaos::report::markdown(&r);
    eprintln!("{md}");
    assert!(r.passed(), "{md}");
    assert!(r.ok > 100, "the workload ran: {md}");
    let c = r.clock.as_ref().expect("a clock summary");
    assert_eq!(
        (c.mode, c.rate, c.faults),
        (ClockMode::Rate, Some(0.7), 1),
        "{md}"
    );
    assert!(c.lease_reads && c.stale_reads == 0, "{md}");
    let spec = std::fs::read_to_string(out.path().join("m1.faketime")).unwrap();
    assert_eq!(spec.trim(), "+0.000 x1", "the clocks were healed");
}
