//! The keep-alive against a real etcd member (skipped when `etcd` is not
//! installed): etcd, like every grpc-go server, sends a stream's response
//! headers only with its first answer.

use std::process::{Command, Stdio};
use std::time::Duration;

use concord_client::{Client, ClientConfig, LeaseState};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lease_stays_alive_on_etcd() {
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("etcd not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = (free_port(), free_port());
    let curl = format!("http://127.0.0.1:{c}");
    let purl = format!("http://127.0.0.1:{p}");
    let mut etcd = Command::new("etcd")
        .arg(format!("--data-dir={}", dir.path().join("m1").display()))
        .arg(format!("--listen-client-urls={curl}"))
        .arg(format!("--advertise-client-urls={curl}"))
        .arg(format!("--listen-peer-urls={purl}"))
        .arg(format!("--initial-advertise-peer-urls={purl}"))
        .arg(format!("--initial-cluster=default={purl}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::connect(ClientConfig::new([curl])).await.unwrap();
    let mut grant = None;
    for _ in 0..100 {
        if let Ok(g) = client.lease_grant(2, 0).await {
            grant = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grant = grant.expect("etcd answers");
    let keep = client.keep_alive(grant.id, grant.ttl);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let left = client.lease_time_to_live(grant.id, false).await.unwrap();
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert!(
        matches!(keep.state(), LeaseState::Alive { .. }),
        "{:?}",
        keep.state()
    );
    assert!(left.ttl > 0, "the 2 s lease expired under its keep-alive");
}
