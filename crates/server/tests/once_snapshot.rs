//! Exactly-once writes across a snapshot: a member that was down while
//! the leader compacted its log catches up from the leader's snapshot,
//! and the session table comes with it, so a retried write is not
//! applied again there (it would be, on that member alone, without it).

mod common;

use std::time::Duration;

use common::*;
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::{PutRequest, RangeRequest};

/// A put of `once` tagged with session `abc`, number 1; its revision.
async fn tagged_put(addr: String) -> Option<i64> {
    let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
    let mut r = tonic::Request::new(PutRequest {
        key: "once".into(),
        value: "v".into(),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("concord-session", "abc".parse().unwrap());
    r.metadata_mut().insert("concord-seq", "1".parse().unwrap());
    Some(kv.put(r).await.ok()?.into_inner().header?.revision)
}

/// A serializable read of `key` on one member: its version there and the
/// member's revision.
async fn local(addr: String, key: &'static str) -> Option<(i64, i64)> {
    let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
    let r = kv
        .range(RangeRequest {
            key: key.into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    Some((r.kvs.first()?.version, r.header?.revision))
}

fn log_has(n: &Node, what: &str) -> bool {
    std::fs::read_to_string(&n.log).is_ok_and(|t| t.contains(what))
}

#[test]
fn a_member_restored_from_a_snapshot_keeps_the_session_table() {
    let mut c = Cluster::start_with_args(3, &["--snapshot-count", "50"]);
    let leader = c.leader(Duration::from_secs(10));
    let down = (leader + 1) % 3;
    c.kill(down);
    let eps = c.running_addrs();
    let addr = c.nodes[leader].addr();
    let first = block_on_thread(async move {
        let rev = tagged_put(addr).await?;
        let mut cl = client(&eps).await?;
        for i in 0..400 {
            cl.put(format!("fill/{i:04}"), "v", None).await.ok()?;
        }
        Some(rev)
    })
    .expect("writes failed");
    let compacted = wait_until(Duration::from_secs(10), || {
        log_has(&c.nodes[leader], "compacted the WAL behind the snapshot").then_some(())
    });
    assert!(compacted.is_some(), "the leader never compacted its WAL");
    c.restart(down);
    let down_addr = c.nodes[down].addr();
    let a = down_addr.clone();
    let caught_up = wait_until(Duration::from_secs(30), || {
        block_on_thread(local(a.clone(), "fill/0399"))
    });
    assert!(caught_up.is_some(), "the restarted member never caught up");
    assert!(log_has(
        &c.nodes[down],
        "restored a snapshot from the leader"
    ));

    // The retry: answered with the first revision, and applied nowhere.
    let addr = c.nodes[leader].addr();
    let retry = block_on_thread(tagged_put(addr)).expect("the retry failed");
    assert_eq!(retry, first, "the retry was not answered from the table");
    // A plain write after it: once the restored member has it, it has
    // applied the retry too.
    let eps = c.running_addrs();
    block_on_thread(async move { client(&eps).await?.put("after", "v", None).await.ok() })
        .expect("the last put failed");
    let a = down_addr.clone();
    let seen = wait_until(Duration::from_secs(10), || {
        block_on_thread(local(a.clone(), "after"))
    });
    assert!(
        seen.is_some(),
        "the restored member never applied the last put"
    );
    let (version, rev_down) = block_on_thread(local(down_addr, "once")).unwrap();
    let (_, rev_leader) = block_on_thread(local(c.nodes[leader].addr(), "once")).unwrap();
    assert_eq!(version, 1, "the restored member applied the retry again");
    assert_eq!(rev_down, rev_leader, "the members diverged");
}
