//! Session guarantees on a real 3-member cluster: serializable reads from
//! a follower that lags never show a client less than it has seen.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use concord_client::pb::kv_client::KvClient;
use concord_client::pb::RangeRequest;
use concord_client::{Client, ClientConfig, GetOptions, PutOptions, MIN_REVISION_KEY};

const ROUNDS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serializable_reads_from_a_lagging_follower_see_the_clients_writes() {
    let cluster = Cluster::start().await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    // Reads go to the follower (first endpoint), writes to the leader.
    let mut endpoints = vec![cluster.client_urls[follower].clone()];
    endpoints.extend(
        (0..3)
            .filter(|i| *i != follower)
            .map(|i| cluster.client_urls[i].clone()),
    );
    let client = Client::connect(ClientConfig::new(endpoints).discover(false))
        .await
        .unwrap();
    client.put("k", "0", PutOptions::default()).await.unwrap();
    let follower_id = client
        .status_of(&cluster.client_urls[follower])
        .await
        .unwrap()
        .header
        .unwrap()
        .member_id;
    let mut from_follower = 0;
    for i in 1..=ROUNDS {
        // The follower misses the write while it is stopped, and reads
        // arrive the moment it runs again.
        cluster.pause(follower);
        let put = client
            .put("k", i.to_string(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(client.seen_revision(), put.header.unwrap().revision);
        cluster.resume(follower);
        let got = client
            .get("k", GetOptions::new().serializable())
            .await
            .unwrap();
        let value: u64 = std::str::from_utf8(&got.kvs[0].value)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(value, i, "round {i}: a read older than the client's write");
        if got.header.unwrap().member_id == follower_id {
            from_follower += 1;
        }
    }
    // The reads were the follower's to serve (it caught up in time).
    assert!(
        from_follower > ROUNDS / 2,
        "{from_follower} from the follower"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_revision_asked_refuses_within_the_bound() {
    let cluster = Cluster::start().await;
    let mut kv = KvClient::connect(cluster.client_urls[0].clone())
        .await
        .unwrap();
    let ask = |min: &str| {
        let mut r = tonic::Request::new(RangeRequest {
            key: "k".into(),
            serializable: true,
            ..Default::default()
        });
        r.metadata_mut()
            .insert(MIN_REVISION_KEY, min.parse().unwrap());
        r
    };
    let started = Instant::now();
    let e = kv.range(ask("1000000")).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().starts_with("concord: member is behind"),
        "{e:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A revision it has applied is served at once; a bad one is refused.
    kv.range(ask("1")).await.unwrap();
    let e = kv.range(ask("x")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}
