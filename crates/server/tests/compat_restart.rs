//! Restart is decided by the data, not by a side file: a member whose
//! `member_id` file was emptied (the report: it bootstrapped a new cluster
//! over its WAL and could never come back) restarts as itself, the id
//! found again in the member table by its peer URLs; what cannot be
//! rebuilt stops the member with an error that says what to do.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::GetOptions;

/// A put through `addr`, retried while the cluster settles (a member just
/// restarted may not know the leader for a moment).
fn put(addr: &str, key: &str) {
    let (addr, key) = (addr.to_string(), key.to_string());
    block_on_thread(async move {
        let mut last = None;
        for _ in 0..50 {
            match client(std::slice::from_ref(&addr)).await {
                Some(mut c) => match c.put(key.as_str(), "v", None).await {
                    Ok(_) => return,
                    Err(e) => last = Some(e.to_string()),
                },
                None => last = Some("no client".into()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("put {key} through {addr}: {last:?}");
    });
}

fn count(addr: &str, prefix: &str) -> Option<i64> {
    let (addr, prefix) = (addr.to_string(), prefix.to_string());
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let opts = GetOptions::new().with_prefix().with_serializable();
        Some(c.get(prefix, Some(opts)).await.ok()?.count())
    })
}

#[test]
fn an_emptied_member_id_file_is_rebuilt_and_the_member_comes_back() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    for i in 0..5 {
        put(&addrs[0], &format!("k/{i}"));
    }
    let id = c.nodes[1].status().expect("status").id;
    assert!(c.nodes[1]
        .stop(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let id_file = c.nodes[1].data_dir.join("member_id");
    std::fs::write(&id_file, b"").unwrap();
    put(&addrs[0], "k/while-down");
    c.restart(1);
    let back = wait_until(START_TIMEOUT, || {
        (count(&addrs[1], "k/")? == 6).then_some(())
    });
    assert!(back.is_some(), "{}", c.nodes[1].log_tail(30));
    assert_eq!(c.nodes[1].status().expect("status").id, id, "same member");
    assert_eq!(std::fs::read_to_string(&id_file).unwrap(), id.to_string());
    assert!(c.nodes[1]
        .log_tail(40)
        .contains("found this member in the member table"));
    put(&addrs[1], "k/through-it");
    let all = wait_until(Duration::from_secs(10), || {
        (count(&addrs[2], "k/")? == 7).then_some(())
    });
    assert!(all.is_some());
}

#[test]
fn what_cannot_be_rebuilt_stops_the_member_with_what_to_do() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    put(&addrs[0], "k/1");
    std::thread::sleep(Duration::from_millis(1500)); // a backend checkpoint
    assert!(c.nodes[2]
        .stop(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let dir = c.nodes[2].data_dir.clone();
    let table = std::fs::read(dir.join("members.json")).unwrap();

    // No id file and no member table (and no snapshot yet): refused.
    std::fs::remove_file(dir.join("member_id")).unwrap();
    std::fs::remove_file(dir.join("members.json")).unwrap();
    c.restart(2);
    let st = c.nodes[2]
        .wait_exit(Duration::from_secs(20))
        .expect("must stop");
    assert!(!st.success());
    let log = c.nodes[2].log_tail(80);
    assert!(
        log.contains("has a WAL but no member table") && log.contains("member remove"),
        "{log}"
    );

    // With the table back, the id is found again and it serves.
    std::fs::write(dir.join("members.json"), &table).unwrap();
    c.restart(2);
    let back = wait_until(START_TIMEOUT, || {
        (count(&addrs[2], "k/")? == 1).then_some(())
    });
    assert!(back.is_some(), "{}", c.nodes[2].log_tail(30));

    // A backend whose WAL is gone is not started over as a new member.
    assert!(c.nodes[2]
        .stop(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    std::fs::remove_dir_all(dir.join("wal")).unwrap();
    c.restart(2);
    let st = c.nodes[2]
        .wait_exit(Duration::from_secs(20))
        .expect("must stop");
    assert!(!st.success());
    let log = c.nodes[2].log_tail(80);
    assert!(
        log.contains("but no WAL") && log.contains("Restore the wal/"),
        "{log}"
    );
}
