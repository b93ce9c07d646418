//! Snapshots: with a small `--snapshot-count`, members snapshot and compact
//! their logs while serving; a member that was down while the leader
//! compacted past its log catches up from the leader's snapshot; and a
//! whole-cluster restart comes back from each member's own snapshot and WAL
//! with every write.

mod common;

use std::time::Duration;

use common::*;

const KEYS: usize = 400;

fn count_keys(endpoint: &str, serializable: bool) -> Option<usize> {
    let mut args = vec!["get", "snap/", "--prefix", "--keys-only", "-w", "json"];
    if serializable {
        args.push("--consistency=s");
    }
    let o = run(&mut etcdctl_cmd(endpoint, &args), None, CTL_TIMEOUT);
    o.ok()
        .then(|| o.json()["count"].as_u64().unwrap_or(0) as usize)
}

/// Does the member's log say `what` (always true when the suite runs
/// against another server, whose logs say other things).
fn log_has(n: &Node, what: &str) -> bool {
    std::env::var("CONCORD_COMPAT_SERVER").is_ok()
        || std::fs::read_to_string(&n.log).is_ok_and(|t| t.contains(what))
}

#[test]
fn lagging_member_catches_up_from_a_snapshot_and_restarts_keep_everything() {
    if !have_etcdctl() {
        return;
    }
    let mut c = Cluster::start_with_args(3, &["--snapshot-count", "50"]);
    let leader = c.leader(Duration::from_secs(10));
    let down = (leader + 1) % 3;
    c.kill(down);
    let eps = c.running_addrs();
    let written = block_on_thread(async move {
        let mut cl = client(&eps).await?;
        for i in 0..KEYS {
            cl.put(format!("snap/{i:04}"), "v", None).await.ok()?;
        }
        Some(())
    });
    assert!(written.is_some(), "puts failed");
    let leader_node = &c.nodes[leader];
    let compacted = wait_until(Duration::from_secs(10), || {
        log_has(leader_node, "compacted the WAL behind the snapshot").then_some(())
    });
    assert!(compacted.is_some(), "the leader never compacted its WAL");

    // The member that missed everything needs the snapshot: the entries
    // it lacks are gone from the leader's log.
    c.restart(down);
    let addr = c.nodes[down].addr();
    let mut last = None;
    let caught_up = wait_until(Duration::from_secs(30), || {
        last = count_keys(&addr, true);
        (last? == KEYS).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "the restarted member never caught up: it has {last:?} of {KEYS} keys"
    );
    assert!(
        log_has(&c.nodes[down], "restored a snapshot from the leader"),
        "the member caught up without a snapshot"
    );

    // Everyone down, everyone up: each comes back from its own files.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_all_healthy(START_TIMEOUT);
    for addr in c.addrs() {
        let n = wait_until(Duration::from_secs(20), || count_keys(&addr, false));
        assert_eq!(n, Some(KEYS), "{addr} lost writes across the restart");
    }
}
