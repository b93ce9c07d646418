//! The client against a real 3-member cluster.

mod common;

use std::time::Duration;

use common::{Cluster, Relay};
use concord_client::{
    Client, ClientConfig, Error, GetOptions, LeaseState, PutOptions, WatchOptions,
};

/// The client URLs with member `i`'s first.
fn first(cluster: &Cluster, i: usize) -> Vec<String> {
    let mut order = vec![cluster.client_urls[i].clone()];
    let rest: Vec<String> = cluster
        .client_urls
        .iter()
        .filter(|u| **u != order[0])
        .cloned()
        .collect();
    order.extend(rest);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_with_both_spellings_and_leader_routing() {
    let cluster = Cluster::start().await;
    let bare: Vec<String> = cluster
        .client_urls
        .iter()
        .map(|u| u.trim_start_matches("http://").to_string())
        .collect();
    for endpoints in [bare, cluster.client_urls.clone()] {
        let client = Client::connect(ClientConfig::new(endpoints)).await.unwrap();
        let put = client
            .put(
                "k",
                "v1",
                PutOptions {
                    prev_kv: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let got = client.get("k", GetOptions::new()).await.unwrap();
        assert_eq!(&got.kvs[0].value[..], b"v1");
        // The write went to the leader.
        let leader = cluster.wait_leader().await;
        let status = client
            .status_of(&cluster.client_urls[leader])
            .await
            .unwrap();
        assert_eq!(
            put.header.unwrap().member_id,
            status.header.unwrap().member_id
        );
        assert_eq!(
            client.leader_endpoint().as_deref(),
            Some(cluster.client_urls[leader].as_str())
        );
        client.delete("k", GetOptions::new(), false).await.unwrap();
    }
    let client = cluster.client().await;
    assert_eq!(client.member_list(false).await.unwrap().members.len(), 3);
    assert!(client.alarm_list().await.unwrap().alarms.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_on_when_a_member_dies() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client().await;
    client.put("r", "1", PutOptions::default()).await.unwrap();
    let first = client.current_endpoint();
    client.get("r", GetOptions::new()).await.unwrap();
    cluster.kill(cluster.index(&first));
    for _ in 0..5 {
        let got = client.get("r", GetOptions::new()).await.unwrap();
        assert_eq!(&got.kvs[0].value[..], b"1");
    }
    assert_ne!(client.current_endpoint(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_a_killed_member_without_gap_or_repeat() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let order = first(&cluster, follower);
    let watching = Client::connect(ClientConfig::new(order).discover(false))
        .await
        .unwrap();
    let writer = cluster.client().await;
    let start = writer
        .put("w/0", "0", PutOptions::default())
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let opts = WatchOptions {
        range: GetOptions::new().prefix(),
        start_revision: start,
        prev_kv: false,
    };
    let mut watch = watching.watch("w/", opts).await.unwrap();
    let mut revs = vec![start];
    let mut seen: Vec<i64> = Vec::new();
    let revs_of = |b: concord_client::WatchBatch| -> Vec<i64> {
        b.events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect()
    };
    for i in 1..=60 {
        let r = writer
            .put(format!("w/{i}"), "x", PutOptions::default())
            .await
            .unwrap();
        revs.push(r.header.unwrap().revision);
        if i == 20 {
            // Kill the member the watch streams from, mid-stream.
            let batch = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
            let batch = batch.unwrap().unwrap().unwrap();
            assert_eq!(batch.endpoint, cluster.client_urls[follower]);
            seen.extend(revs_of(batch));
            cluster.kill(follower);
        }
    }
    while seen.last() != revs.last() {
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
        seen.extend(revs_of(batch.unwrap().unwrap().unwrap()));
    }
    assert_eq!(seen, revs, "every revision once, in order");
    assert_ne!(
        watch.endpoint().as_deref(),
        Some(cluster.client_urls[follower].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_survives_killing_the_leader() {
    let mut cluster = Cluster::start().await;
    let leader = cluster.wait_leader().await;
    let order = first(&cluster, leader);
    let client = Client::connect(
        ClientConfig::new(order)
            .discover(false)
            .request_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let lease = client.lease_grant(3, 0).await.unwrap();
    client
        .put(
            "l",
            "held",
            PutOptions {
                lease: lease.id,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keep = client.keep_alive(lease.id, lease.ttl);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        matches!(keep.state(), LeaseState::Alive { .. }),
        "{:?}",
        keep.state()
    );
    let ttl = client.lease_time_to_live(lease.id, false).await.unwrap();
    assert!(ttl.ttl > 0, "lease alive after the leader died: {ttl:?}");
    let got = client.get("l", GetOptions::new()).await.unwrap();
    assert_eq!(got.kvs.len(), 1);
    drop(keep);
    client.lease_revoke(lease.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_not_resent_after_a_broken_connection() {
    let cluster = Cluster::start().await;
    let relay = Relay::start(&cluster.client_urls[0]).await;
    let endpoints = vec![relay.url.clone(), cluster.client_urls[1].clone()];
    let config = ClientConfig::new(endpoints)
        .discover(false)
        .leader_routing(false);
    let client = Client::connect(config.clone()).await.unwrap();
    client.get("x", GetOptions::new()).await.unwrap(); // the relay's connection is up
    relay.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = client
        .put("x", "once", PutOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transport { .. } | Error::Timeout { .. }),
        "{err}"
    );
    let reader = cluster.client().await;
    let got = reader.get("x", GetOptions::new()).await.unwrap();
    assert!(
        got.kvs.iter().all(|kv| kv.version == 1),
        "applied at most once: {got:?}"
    );
    // Marked idempotent, the same failure moves the write to the next member.
    let client = Client::connect(config).await.unwrap();
    client.get("y", GetOptions::new()).await.unwrap();
    let put = client
        .put(
            "y",
            "v",
            PutOptions {
                idempotent: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(put.header.unwrap().revision > 0);
}
