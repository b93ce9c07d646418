//! Exactly-once writes on a real 3-member cluster: a [`WriteSession`]'s write
//! whose answer is lost is retried and applied once; compare-and-swap
//! increments through leader kills end with the exact count.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Relay};
use concord_client::{
    Client, ClientConfig, Cmp, GetOptions, Op, PutOptions, RetryPolicy, Txn, When, WriteSession,
};

/// The counter's value and modification revision.
async fn read_counter(client: &Client) -> (u64, i64) {
    let got = client.get("count", GetOptions::new()).await.unwrap();
    let kv = &got.kvs[0];
    let v = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
    (v, kv.mod_revision)
}

/// Sets the counter to `v + 1` if it was not modified since `rev`.
fn cas(v: u64, rev: i64) -> Txn {
    Txn::new()
        .when([When::mod_revision("count", Cmp::Equal, rev)])
        .and_then([Op::put("count", (v + 1).to_string(), 0)])
}

/// A client of a relay in front of the leader first, the others after;
/// writes go to the first endpoint that works.
async fn behind_relay(cluster: &Cluster) -> (Relay, Client) {
    let leader = cluster.wait_leader().await;
    let relay = Relay::start(&cluster.client_urls[leader]).await;
    let mut endpoints = vec![relay.url.clone()];
    endpoints.extend(
        (0..3)
            .filter(|i| *i != leader)
            .map(|i| cluster.client_urls[i].clone()),
    );
    let config = ClientConfig::new(endpoints)
        .discover(false)
        .leader_routing(false);
    let client = Client::connect(config).await.unwrap();
    // Through the relay before it is armed: the connection is set up.
    client.get("count", GetOptions::new()).await.unwrap();
    (relay, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_is_lost_is_applied_once() {
    let cluster = Cluster::start().await;
    let setup = cluster.client().await;
    setup
        .put("count", "0", PutOptions::default())
        .await
        .unwrap();

    let (relay, client) = behind_relay(&cluster).await;
    let (v, rev) = read_counter(&client).await;
    relay.armed.store(true, Ordering::SeqCst);
    let r = client.write_session().txn(cas(v, rev)).await.unwrap();
    assert!(r.succeeded, "the retry got the recorded answer");
    let (v, _) = read_counter(&client).await;
    assert_eq!(v, 1);
    let kv = &setup.get("count", GetOptions::new()).await.unwrap().kvs[0];
    assert_eq!(kv.version, 2, "applied once");

    // The control: the same retry without a request id applies again,
    // and its compare fails: the caller is told the swap did not happen
    // although it did.
    let (relay, client) = behind_relay(&cluster).await;
    let (v, rev) = read_counter(&client).await;
    relay.armed.store(true, Ordering::SeqCst);
    let r = client.txn(cas(v, rev).idempotent()).await.unwrap();
    assert!(!r.succeeded, "without an id the retry applied again");
    let (after, _) = read_counter(&client).await;
    assert_eq!(after, v + 1, "the first attempt did apply");
}

/// Increments the counter by compare-and-swap until `stop`; returns the
/// increments acknowledged.
async fn increment(session: WriteSession, stop: Arc<AtomicBool>) -> u64 {
    let client = session.client().clone();
    let mut acked = 0;
    while !stop.load(Ordering::SeqCst) {
        let (v, rev) = read_counter(&client).await;
        let r = session.txn(cas(v, rev)).await.expect("an increment failed");
        if r.succeeded {
            acked += 1;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_increments_through_leader_kills_end_with_the_exact_count() {
    let mut cluster = Cluster::start().await;
    let retry = RetryPolicy {
        max_attempts: 60,
        budget: Duration::from_secs(30),
        ..Default::default()
    };
    let config = ClientConfig::new(cluster.client_urls.clone())
        .request_timeout(Duration::from_secs(2))
        .retry(retry);
    let client = Client::connect(config).await.unwrap();
    client
        .put("count", "0", PutOptions::default())
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = tokio::spawn(increment(client.write_session(), stop.clone()));
    let kills = std::env::var("CONCORD_TEST_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(3);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let leader = cluster.wait_leader().await;
        cluster.kill(leader);
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart(leader);
    }
    cluster.wait_leader().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = worker.await.unwrap();
    let (count, _) = read_counter(&client).await;
    assert!(acked > 10, "only {acked} increments");
    assert_eq!(
        count, acked,
        "the counter must hold every acknowledged increment, once"
    );
}
