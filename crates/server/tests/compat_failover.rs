//! Failover: the leader is SIGKILLed while a client writes. Every
//! acknowledged write must survive, be readable (linearizably) from every
//! member, and the killed member must catch up after its restart.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{Client, GetOptions};

/// Sequential puts of distinct keys.
const N: usize = 300;
/// How long one key may take to be acknowledged (across retries).
const PER_KEY: Duration = Duration::from_secs(20);
/// How long the whole writer may run.
const WRITER: Duration = Duration::from_secs(90);

fn key(i: usize) -> String {
    format!("fo/{i:05}")
}

fn value(i: usize) -> String {
    format!("value-{i}")
}

/// Writes keys 0..N in order, each retried against the next member until
/// acknowledged. Returns the acknowledged indexes and how many attempts
/// failed on the way.
async fn writer(addrs: Vec<String>, progress: Arc<AtomicUsize>) -> (Vec<usize>, usize) {
    let mut clients: Vec<Option<Client>> = addrs.iter().map(|_| None).collect();
    let mut cur = 0;
    let mut acked = Vec::new();
    let mut failures = 0;
    let stop = Instant::now() + WRITER;
    for i in 0..N {
        let deadline = (Instant::now() + PER_KEY).min(stop);
        while Instant::now() < deadline {
            if clients[cur].is_none() {
                clients[cur] = client(&[addrs[cur].clone()]).await;
            }
            let ok = match clients[cur].as_mut() {
                Some(c) => matches!(
                    tokio::time::timeout(Duration::from_secs(3), c.put(key(i), value(i), None))
                        .await,
                    Ok(Ok(_))
                ),
                None => false,
            };
            if ok {
                acked.push(i);
                break;
            }
            failures += 1;
            clients[cur] = None;
            cur = (cur + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress.store(i + 1, Ordering::SeqCst);
    }
    (acked, failures)
}

/// Linearizable read of every `fo/` key from the member at `addr`.
fn read_all(addr: &str) -> Option<BTreeMap<String, String>> {
    let addr = addr.to_string();
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.get("fo/", Some(GetOptions::new().with_prefix())),
        )
        .await
        .ok()?
        .ok()?;
        Some(
            r.kvs()
                .iter()
                .map(|kv| {
                    let k = String::from_utf8_lossy(kv.key()).into_owned();
                    (k, String::from_utf8_lossy(kv.value()).into_owned())
                })
                .collect(),
        )
    })
}

fn wait_progress(p: &AtomicUsize, at_least: usize, timeout: Duration) {
    let reached = wait_until(timeout, || {
        (p.load(Ordering::SeqCst) >= at_least).then_some(())
    });
    assert!(
        reached.is_some(),
        "writer stuck at {} of {at_least} within {timeout:?}",
        p.load(Ordering::SeqCst)
    );
}

#[test]
fn leader_killed_while_writing() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (addrs, progress) = (addrs.clone(), progress.clone());
        std::thread::spawn(move || block_on_thread(writer(addrs, progress)))
    };

    wait_progress(&progress, N / 3, Duration::from_secs(60));
    let old = c.leader(Duration::from_secs(10));
    c.kill(old);
    let killed_at = progress.load(Ordering::SeqCst);
    // The writes go on against the other two members.
    wait_progress(&progress, killed_at + N / 3, Duration::from_secs(60));
    let new = c.leader(Duration::from_secs(10));
    assert_ne!(new, old);
    c.restart(old);

    let (acked, failures) = writer.join().expect("writer panicked");
    assert_eq!(
        acked.len(),
        N,
        "only {} of {N} writes acknowledged ({failures} failed attempts)",
        acked.len()
    );
    println!("{N} writes acknowledged; {failures} failed attempts; leader {old} killed after {killed_at}");

    // The restarted member catches up with the leader's applied index.
    let leader = c.leader(Duration::from_secs(10));
    let target = c.nodes[leader].status().expect("leader status").applied;
    let caught_up = wait_until(Duration::from_secs(30), || {
        c.nodes[old].status().filter(|s| s.applied >= target)
    });
    let st = caught_up.unwrap_or_else(|| {
        panic!(
            "restarted member at {:?}, leader applied {target}",
            c.nodes[old].status()
        )
    });
    assert!(st.leader != 0 && st.leader != st.id, "{st:?}");

    // Every acknowledged write, from every member, linearizably.
    let mut views = Vec::new();
    for (m, addr) in addrs.iter().enumerate() {
        let view = wait_until(Duration::from_secs(10), || read_all(addr))
            .unwrap_or_else(|| panic!("member {m} does not serve reads"));
        for &i in &acked {
            assert_eq!(
                view.get(&key(i)),
                Some(&value(i)),
                "member {m}: acknowledged key {} lost",
                key(i)
            );
        }
        assert!(
            view.iter().all(|(k, v)| k
                .strip_prefix("fo/")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| *v == value(n))),
            "member {m} has a key nobody wrote"
        );
        views.push(view);
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "members disagree");
}

/// A member that is removed but does not apply its own removal (the leader
/// drops it from the transport as soon as the removal applies, so it may
/// never learn the commit) still forwards client writes to the leader as
/// Raft proposals, and the leader applies them. etcd's peers answer a
/// removed member with "removed" instead, and it shuts down.
#[test]
fn removed_member_cannot_write() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    let i = c.prepare_join("m4");
    let (peer, m4) = (c.nodes[i].peer_url(), c.nodes[i].addr());
    // (etcd refuses reconfiguration until every member was up for 5 s.)
    let id = wait_until(Duration::from_secs(20), || {
        let (eps, peer) = (addrs.clone(), peer.clone());
        block_on_thread(async move {
            let mut cl = client(&eps).await?;
            let opts = etcd_client::MemberAddOptions::new().with_is_learner();
            let r = cl.member_add([peer], Some(opts)).await.ok()?;
            r.member().map(|m| m.id())
        })
    })
    .expect("member add");
    c.nodes[i].spawn();
    let promoted = wait_until(Duration::from_secs(20), || {
        let eps = addrs.clone();
        block_on_thread(async move { client(&eps).await?.member_promote(id).await.ok() })
    });
    assert!(promoted.is_some(), "learner never promoted");
    let follower = wait_until(Duration::from_secs(10), || {
        c.nodes[i]
            .status()
            .filter(|s| s.leader != 0 && !s.is_learner)
    });
    assert!(follower.is_some(), "m4 never became a follower");

    let (eps, one) = (addrs.clone(), m4.clone());
    block_on_thread(async move {
        let mut cl = client(&eps).await.expect("connect");
        cl.member_remove(id).await.expect("member remove");
        // Straight away, through the removed member only.
        if let Some(mut via) = client(&[one]).await {
            let put = via.put("via-removed", "x", None);
            let _ = tokio::time::timeout(Duration::from_secs(3), put).await;
        }
    });
    c.kill(i);
    let leaked = wait_until(Duration::from_secs(5), || read_key(&addrs, "via-removed"));
    assert_eq!(
        leaked,
        Some(None),
        "a write through a removed member was applied"
    );
}

/// `Some(value or None)` read linearizably through `addrs`; None if no answer.
fn read_key(addrs: &[String], key: &'static str) -> Option<Option<String>> {
    let eps = addrs.to_vec();
    block_on_thread(async move {
        let mut c = client(&eps).await?;
        let r = c.get(key, None).await.ok()?;
        Some(
            r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        )
    })
}
