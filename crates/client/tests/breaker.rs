//! The circuit breaker on a real 3-member cluster: a member made slow
//! (stopped with SIGSTOP under a read, then resumed) opens its breaker,
//! reads go to the other members, and after the wait half-open probes
//! close it again; a stopped member's timeouts open it too.

mod common;

use std::time::Duration;

use common::Cluster;
use concord_client::{BreakerConfig, BreakerState, Client, ClientConfig, GetOptions, PutOptions};

/// The member id that served a read.
async fn read_by(client: &Client) -> u64 {
    let got = client.get("k", GetOptions::new()).await.unwrap();
    assert_eq!(&got.kvs[0].value[..], b"v");
    got.header.unwrap().member_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_opens_its_breaker_and_probes_close_it() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_leader().await;
    let slow = (leader + 1) % 3;
    let url = cluster.client_urls[slow].clone();
    let mut endpoints = vec![url.clone()];
    endpoints.extend(
        (0..3)
            .filter(|i| *i != slow)
            .map(|i| cluster.client_urls[i].clone()),
    );
    let breaker = BreakerConfig {
        failures_to_open: 2,
        slow_call: Duration::from_millis(200),
        open_for: Duration::from_millis(600),
        half_open_probes: 2,
    };
    let config = ClientConfig::new(endpoints)
        .discover(false)
        .request_timeout(Duration::from_secs(3))
        .breaker(breaker);
    let client = Client::connect(config).await.unwrap();
    client.put("k", "v", PutOptions::default()).await.unwrap();
    let slow_id = read_by(&client).await;
    assert_eq!(client.breaker_state(&url), BreakerState::Closed);

    // Two reads, each answered 400 ms late: slow calls.
    for _ in 0..2 {
        cluster.pause(slow);
        let c = client.clone();
        let read = tokio::spawn(async move { read_by(&c).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        cluster.resume(slow);
        assert_eq!(read.await.unwrap(), slow_id);
    }
    assert_eq!(client.breaker_state(&url), BreakerState::Open);
    // Open: the reads go to the other members.
    for _ in 0..5 {
        assert_ne!(
            read_by(&client).await,
            slow_id,
            "a read went to the open endpoint"
        );
    }
    assert_eq!(client.breaker_state(&url), BreakerState::Open);

    // After the wait, probes go to the recovered member and close it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(read_by(&client).await, slow_id, "the first probe");
    assert_eq!(client.breaker_state(&url), BreakerState::HalfOpen);
    assert_eq!(read_by(&client).await, slow_id, "the second probe");
    assert_eq!(client.breaker_state(&url), BreakerState::Closed);
    assert_eq!(read_by(&client).await, slow_id, "closed: back to it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_opens_its_breaker_on_timeouts() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_leader().await;
    let stopped = (leader + 1) % 3;
    let url = cluster.client_urls[stopped].clone();
    let breaker = BreakerConfig {
        failures_to_open: 1,
        ..Default::default()
    };
    let mut endpoints = vec![url.clone()];
    endpoints.extend(
        (0..3)
            .filter(|i| *i != stopped)
            .map(|i| cluster.client_urls[i].clone()),
    );
    let config = ClientConfig::new(endpoints)
        .discover(false)
        .request_timeout(Duration::from_millis(300))
        .breaker(breaker);
    let client = Client::connect(config).await.unwrap();
    client.put("k", "v", PutOptions::default()).await.unwrap();
    let stopped_id = read_by(&client).await;
    cluster.pause(stopped);
    // The first read times out on the stopped member and is answered by
    // another; its breaker is open.
    assert_ne!(read_by(&client).await, stopped_id);
    let open = client.breaker_state(&url);
    for _ in 0..4 {
        assert_ne!(read_by(&client).await, stopped_id);
    }
    cluster.resume(stopped);
    assert_eq!(open, BreakerState::Open);
}
