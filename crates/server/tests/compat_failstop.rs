//! Fail-stop on real processes: a member whose Raft driver panics exits
//! with a non-zero code and a clear log line (so a supervisor restarts it)
//! instead of serving half alive, and comes back from its data; a member
//! whose driver is stuck answers `/livez` with 503. The failures are
//! planted with failpoints (`FAILPOINTS`, as etcd's gofail).

mod common;

use std::time::Duration;

use common::*;
use etcd_client::GetOptions;

fn put(addr: &str, key: &str) {
    let (addr, key) = (addr.to_string(), key.to_string());
    block_on_thread(async move {
        let mut c = client(&[addr]).await.expect("client");
        c.put(key, "v", None).await.expect("put");
    });
}

fn serializable_count(addr: &str, prefix: &str) -> Option<i64> {
    let (addr, prefix) = (addr.to_string(), prefix.to_string());
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let opts = GetOptions::new().with_prefix().with_serializable();
        Some(c.get(prefix, Some(opts)).await.ok()?.count())
    })
}

#[test]
fn a_panicking_driver_stops_the_process_which_restarts_from_its_data() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    for i in 0..10 {
        put(&addrs[0], &format!("k/{i}"));
    }
    c.kill(2);
    c.nodes[2].env = vec![(
        "FAILPOINTS".into(),
        "driver-round=30*off->panic(planted driver failure)".into(),
    )];
    c.restart(2);
    let status = c.nodes[2]
        .wait_exit(Duration::from_secs(30))
        .expect("a member whose driver panicked must exit");
    assert_eq!(status.code(), Some(70), "{status:?}");
    let log = c.nodes[2].log_tail(40);
    assert!(
        log.contains("fatal: thread 'raft-driver' panicked")
            && log.contains("planted driver failure")
            && log.contains("stopping the member"),
        "{log}"
    );
    // The others go on; the restarted member catches up from its data.
    put(&addrs[0], "k/after");
    c.nodes[2].env.clear();
    c.restart(2);
    let caught_up = wait_until(START_TIMEOUT, || {
        (serializable_count(&addrs[2], "k/")? == 11).then_some(())
    });
    assert!(caught_up.is_some(), "restarted member did not catch up");
}

#[test]
fn a_stuck_driver_turns_livez_false() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    c.kill(1);
    c.nodes[1].env = vec![(
        "FAILPOINTS".into(),
        "driver-round=30*off->sleep(60000)".into(),
    )];
    c.restart(1);
    // The stall bound is 3 s (three 500 ms election timeouts, at least 3 s).
    let dead = wait_until(Duration::from_secs(20), || {
        let (code, body) = http_get(&addrs[1], "/livez")?;
        (code == 503).then_some(body)
    });
    let body = dead.expect("/livez stayed ok while the driver was stuck");
    assert!(body.contains("raft driver stuck for"), "{body}");
    for i in [0, 2] {
        assert_eq!(http_get(&addrs[i], "/livez").map(|r| r.0), Some(200));
    }
}
