//! A short run of each network scenario against real Concord processes
//! in network namespaces (root only: skipped with a reason otherwise):
//! the history must be linearizable, no acknowledged write lost, a write
//! acknowledged after each fault began, and no namespace, bridge or
//! process left behind, after a run and after a lab that died.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use concord_chaos::workload::WorkloadConfig;
use concord_chaos::{net, run, scenario, RunConfig, Target};

mod common;
use common::concord_binary;

/// One cluster at a time: the machines have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn root() -> bool {
    let Err(why) = net::check_available() else {
        return true;
    };
    // CI sets this: there the network tests must run, not skip.
    if std::env::var_os("CONCORD_REQUIRE_NETNS").is_some() {
        panic!("network namespaces are required here: {why}");
    }
    eprintln!("skipped: {why}");
    false
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces and bridges named for process `pid`.
fn leftovers(pid: u32) -> Vec<String> {
    let text = sh("ip", &["netns", "list"]) + &sh("ip", &["-o", "link", "show"]);
    let (ns, br) = (format!("clab{pid}x"), format!("cb{pid}x"));
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '@')
        .filter(|w| w.starts_with(&ns) || w.starts_with(&br) || w.starts_with(&format!("cv{pid}x")))
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn short_run(name: &str, seed: u64) -> Option<concord_chaos::Report> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !root() {
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let cfg = RunConfig {
        scenario: scenario::find(name).unwrap(),
        target: Target::Concord,
        binary: concord_binary(),
        members: 3,
        secs: Duration::from_secs(8),
        seed,
        out: out.path().to_path_buf(),
        every: Duration::from_secs(5),
        outage: Duration::from_secs(2),
        // The network tests exercise the faults; the other clients (and
        // their checks) are exercised by `scenarios.rs`.
        workload: WorkloadConfig {
            watchers: 1,
            lock_holders: 0,
            lease_clients: 0,
            ..WorkloadConfig::new(4, 8, seed)
        },
        plant: Vec::new(),
        clock: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(run(cfg, &|m| eprintln!("{name}: {m}")))
        .unwrap();
    drop(rt);
    let md = concord_chaos::report::markdown(&report);
    eprintln!("{md}");
    assert!(report.passed(), "{md}");
    assert_eq!(report.faults.len(), 1, "{md}");
    assert!(report.ok > 100, "the workload ran: {md}");
    for f in &report.faults {
        assert!(f.rto_write_ms.is_some(), "no write after the fault: {md}");
    }
    let left = leftovers(std::process::id());
    assert!(left.is_empty(), "left behind: {left:?}");
    Some(report)
}

#[test]
fn partition_leader() {
    if let Some(r) = short_run("partition-leader", 1) {
        assert!(r.elections >= 1, "the cut-off leader was replaced");
    }
}

#[test]
fn partition_minority() {
    let _ = short_run("partition-minority", 2);
}

#[test]
fn partition_bridge() {
    let _ = short_run("partition-bridge", 3);
}

#[test]
fn partition_oneway() {
    let _ = short_run("partition-oneway", 4);
}

#[test]
fn link_loss() {
    let _ = short_run("link-loss", 5);
}

#[test]
fn link_latency() {
    let _ = short_run("link-latency", 6);
}

/// A lab killed with SIGKILL leaves its namespaces, veths, bridge and
/// members; the next lab (or `concord-lab cleanup`) removes them.
#[test]
fn leftovers_of_a_dead_lab_are_swept() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !root() {
        return;
    }
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let (ns, br) = (format!("clab{dead}x0m0"), format!("cb{dead}x0"));
    sh("ip", &["netns", "add", &ns]);
    sh("ip", &["link", "add", &br, "type", "bridge"]);
    let veth = format!("cv{dead}x0m0");
    sh(
        "ip",
        &[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    );
    let mut member = Command::new("ip")
        .args(["netns", "exec", &ns, "sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(leftovers(dead).len(), 3, "planted: {:?}", leftovers(dead));
    net::sweep().unwrap();
    assert!(leftovers(dead).is_empty(), "{:?}", leftovers(dead));
    let status = member.wait().unwrap();
    assert!(!status.success(), "the orphaned member was killed");
}
