//! Short runs of the membership scenarios against real Concord processes
//! (a follower replaced by a fresh member, a leadership transfer), and of
//! `cap` when this is root: the history must be linearizable, no
//! acknowledged write lost, each change followed by an acknowledged write.

use std::sync::Mutex;
use std::time::Duration;

use concord_chaos::workload::WorkloadConfig;
use concord_chaos::{net, run, scenario, RunConfig, Target};

mod common;
use common::concord_binary;

/// One cluster at a time: the machines have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn config(name: &str, secs: u64, out: &std::path::Path) -> RunConfig {
    RunConfig {
        scenario: scenario::find(name).unwrap(),
        target: Target::Concord,
        binary: concord_binary(),
        members: 3,
        secs: Duration::from_secs(secs),
        seed: 3,
        out: out.to_path_buf(),
        every: Duration::from_secs(5),
        outage: Duration::from_millis(1500),
        workload: WorkloadConfig {
            lock_holders: 1,
            lease_clients: 1,
            ..WorkloadConfig::new(4, 8, 3)
        },
        plant: Vec::new(),
        clock: Default::default(),
    }
}

fn short_run(name: &str) -> concord_chaos::Report {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(run(config(name, 9, out.path()), &|m| {
            eprintln!("{name}: {m}")
        }))
        .unwrap();
    let md = concord_chaos::report::markdown(&r);
    eprintln!("{md}");
    assert!(r.passed(), "{md}");
    assert_eq!(r.faults.len(), 1, "{md}");
    assert!(r.faults[0].rto_write_ms.is_some(), "no write after: {md}");
    assert!(r.ok > 100, "the workload ran: {md}");
    r
}

#[test]
fn member_replace() {
    let r = short_run("member-replace");
    let label = &r.faults[0].member;
    assert!(
        label.starts_with("removed m") && label.contains("added m4"),
        "{label}"
    );
}

#[test]
fn leader_transfer() {
    let r = short_run("leader-transfer");
    let label = &r.faults[0].member;
    assert!(label.contains("leads at"), "the follower led: {label}");
    assert!(r.elections >= 1, "a transfer begins a term");
}

#[test]
fn cap_table() {
    if let Err(e) = net::check_available() {
        eprintln!("skipped: {e}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(concord_chaos::cap::run(
            config("cap", 4, out.path()),
            &|m| eprintln!("cap: {m}"),
        ))
        .unwrap();
    let md = concord_chaos::cap::markdown(&r);
    eprintln!("{md}");
    assert!(r.passed(), "{md}");
    let cell = |side: &str, req: &str| {
        r.cells
            .iter()
            .find(|c| c.side == side && c.request == req)
            .unwrap()
    };
    assert_eq!(cell("minority", "write").ok, 0, "{md}");
    assert!(cell("majority", "write").ok > 0, "{md}");
    assert!(cell("minority", "serializable read").ok > 0, "{md}");
}
