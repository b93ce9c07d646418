//! The four election patterns against a real 3-member cluster (the bully
//! nodes over their own loopback transport): one leader, failover when the
//! leader dies, no herd on sequential keys, the lease leader stepping down
//! before its lease can expire, and the bully's two leaders under a
//! partition.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, Relay};
use concord_client::{
    BullyConfig, BullyElector, Client, ClientConfig, Elector, EtcdElector, Leader, LeaseElector,
    SequentialElector, Session,
};
use tokio::sync::mpsc;

const TTL: i64 = 2;

/// Runs every candidate's campaign; checks that one wins alone, kills it
/// (drops it: its renewals stop), and checks another wins. The failover
/// time.
async fn one_leader_then_failover<E: Elector + 'static>(candidates: Vec<E>) -> Duration {
    let (tx, mut won) = mpsc::channel(candidates.len());
    for mut c in candidates {
        let tx = tx.clone();
        tokio::spawn(async move {
            let leader = c.campaign().await.expect("campaign");
            assert!(c.is_leader());
            let _ = tx.send((leader, c)).await;
        });
    }
    let (first, winner) = tokio::time::timeout(Duration::from_secs(10), won.recv())
        .await
        .expect("a leader within 10 s")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(won.try_recv().is_err(), "two candidates won at once");
    let killed = Instant::now();
    drop(winner);
    let (second, _next) = tokio::time::timeout(Duration::from_secs(15), won.recv())
        .await
        .expect("a new leader after the old one died")
        .unwrap();
    assert_ne!(first.value, second.value);
    killed.elapsed()
}

async fn sessions(cluster: &Cluster, n: usize) -> Vec<Session> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Session::new(&cluster.client().await, TTL).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_election_api_elects_one_and_fails_over() {
    let cluster = Cluster::start().await;
    let mut candidates = Vec::new();
    for (i, s) in sessions(&cluster, 3).await.into_iter().enumerate() {
        candidates.push(EtcdElector::new(s, "svc", format!("c{i}")));
    }
    let mut observer = EtcdElector::new(sessions(&cluster, 1).await.remove(0), "svc", "o");
    let mut changes = observer.changes();
    let took = one_leader_then_failover(candidates).await;
    eprintln!("etcd election api failover: {took:?}");
    // The observer's stream reaches the leader that took over.
    let now = observer.leader().await.unwrap().expect("a leader");
    let seen = changes.wait_for(|l| l.as_ref() == Some(&now));
    tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("the observer saw the new leader")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_keys_elect_one_and_fail_over() {
    let cluster = Cluster::start().await;
    let mut candidates = Vec::new();
    for (i, s) in sessions(&cluster, 3).await.into_iter().enumerate() {
        candidates.push(SequentialElector::new(s, "seq", format!("c{i}")));
    }
    let took = one_leader_then_failover(candidates).await;
    eprintln!("sequential failover: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_keys_wake_one_candidate_per_leadership_change() {
    const N: usize = 20;
    let cluster = Cluster::start().await;
    let client = cluster.client().await;
    let (tx, mut won) = mpsc::channel(N);
    for i in 0..N {
        let session = Session::new(&client, 10).await.unwrap();
        let mut c = SequentialElector::new(session, "herd", format!("c{i}"));
        let tx = tx.clone();
        tokio::spawn(async move {
            let leader: Leader = c.campaign().await.unwrap();
            let _ = tx.send((leader, c)).await;
        });
    }
    let mut wakeups = Vec::new();
    let mut last_term = 0;
    for _ in 0..N {
        let (leader, mut c) = tokio::time::timeout(Duration::from_secs(10), won.recv())
            .await
            .expect("next leader")
            .unwrap();
        assert!(leader.term > last_term, "leaders out of queue order");
        last_term = leader.term;
        wakeups.push(c.wakeups());
        c.resign().await.unwrap();
    }
    // The first led without waiting; each later one was woken once, by its
    // predecessor's exit: 19 events for 19 changes, not 19 per change.
    assert_eq!(wakeups.iter().sum::<u64>(), (N - 1) as u64, "{wakeups:?}");
    assert!(wakeups[1..].iter().all(|&w| w == 1), "{wakeups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_leader_elects_one_and_fails_over() {
    let cluster = Cluster::start().await;
    let mut candidates = Vec::new();
    for i in 0..3 {
        let client = cluster.client().await;
        let ttl = Duration::from_secs(TTL as u64);
        let margin = Duration::from_millis(500);
        candidates.push(LeaseElector::new(
            &client,
            "lead",
            format!("c{i}"),
            ttl,
            margin,
        ));
    }
    let took = one_leader_then_failover(candidates).await;
    eprintln!("lease leader failover: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_lease_leader_steps_down_before_another_takes_over() {
    let cluster = Cluster::start().await;
    let mut relays = Vec::new();
    for url in &cluster.client_urls {
        relays.push(Relay::start(url).await);
    }
    // A reaches the cluster only through the relays, which will go silent.
    let a_client = Client::connect(
        ClientConfig::new(relays.iter().map(|r| r.url.clone()))
            .discover(false)
            .leader_routing(false)
            .request_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let ttl = Duration::from_secs(TTL as u64);
    let margin = Duration::from_millis(500);
    let mut a = LeaseElector::new(&a_client, "cut", "A", ttl, margin);
    a.campaign().await.unwrap();
    let mut a_changes = a.changes();
    assert!(a.is_leader());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cut = Instant::now();
    for r in &relays {
        r.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let b_client = cluster.client().await;
    let mut b = LeaseElector::new(&b_client, "cut", "B", ttl, margin);
    let won = tokio::time::timeout(Duration::from_secs(10), b.campaign())
        .await
        .expect("B takes over once A's lease expires")
        .unwrap();
    let b_won = Instant::now();
    assert_eq!(&won.value[..], b"B");
    assert!(!a.is_leader(), "two leaders: A still leads when B won");
    let a_down = a.step_down_at().expect("A led");
    assert!(a_down < b_won);
    // A's last acknowledged renewal was sent before the cut.
    assert!(a_down <= cut + ttl - margin, "A stepped down late");
    a_changes
        .wait_for(|l| l.as_ref().is_none_or(|l| &l.value[..] != b"A"))
        .await
        .unwrap();
    eprintln!(
        "A stepped down {:?} before B won",
        b_won.saturating_duration_since(a_down)
    );
}

fn bully_config(id: u64, addrs: &BTreeMap<u64, std::net::SocketAddr>) -> BullyConfig {
    BullyConfig {
        id,
        peers: addrs
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, a)| (*p, *a))
            .collect(),
        heartbeat: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
    }
}

async fn bully_nodes(n: u64) -> Vec<BullyElector> {
    let mut listeners = BTreeMap::new();
    for id in 1..=n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.insert(id, l);
    }
    let addrs: BTreeMap<u64, _> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap()))
        .collect();
    listeners
        .into_iter()
        .map(|(id, l)| BullyElector::start(l, bully_config(id, &addrs)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bully_elects_the_highest_and_fails_over() {
    let nodes = bully_nodes(3).await;
    let took = one_leader_then_failover(nodes).await;
    eprintln!("bully failover: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_gives_the_bully_algorithm_two_leaders() {
    let mut nodes = bully_nodes(3).await;
    let mut three = nodes[2].changes();
    three
        .wait_for(|l| l.as_ref().is_some_and(|l| l.term == 3))
        .await
        .unwrap();
    let mut two = nodes[1].changes();
    two.wait_for(|l| l.as_ref().is_some_and(|l| l.term == 3))
        .await
        .unwrap();
    assert!(nodes[2].is_leader() && !nodes[1].is_leader());
    // Cut node 3 off from 1 and 2.
    nodes[2].partition(&[1, 2]);
    nodes[1].partition(&[3]);
    nodes[0].partition(&[3]);
    let split = tokio::time::timeout(
        Duration::from_secs(5),
        two.wait_for(|l| l.as_ref().is_some_and(|l| l.term == 2)),
    );
    split.await.expect("node 2 elected on its side").unwrap();
    assert!(
        nodes[1].is_leader() && nodes[2].is_leader(),
        "the weakness shown: both sides have a leader"
    );
    // Healed, the highest id bullies its way back: one leader again.
    for n in &nodes {
        n.partition(&[]);
    }
    let healed = two.wait_for(|l| l.as_ref().is_some_and(|l| l.term == 3));
    tokio::time::timeout(Duration::from_secs(5), healed)
        .await
        .expect("one leader after healing")
        .unwrap();
    let mut one = nodes[0].changes();
    let agreed = one.wait_for(|l| l.as_ref().is_some_and(|l| l.term == 3));
    tokio::time::timeout(Duration::from_secs(5), agreed)
        .await
        .expect("node 1 follows node 3 again")
        .unwrap();
    assert!(nodes[2].is_leader() && !nodes[1].is_leader() && !nodes[0].is_leader());
}
