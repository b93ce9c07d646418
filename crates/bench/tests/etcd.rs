//! Runs short workloads through the library against a single real etcd.
//! Skipped (passes, printing "skipped") unless `etcd` is on PATH.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use concord_bench::{run, Args, KeyGen, Report, UnaryConn};
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::{RangeRequest, RangeResponse, StatusRequest};

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills etcd when the test ends, however it ends.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(bin: &PathBuf, dir: &std::path::Path) -> (Etcd, String) {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new(bin)
        .arg("--name=b1")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=b1={peer_url}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    (Etcd(child), client_url)
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = async {
            let mut m = MaintenanceClient::connect(url.to_string()).await.ok()?;
            let s = m.status(StatusRequest {}).await.ok()?.into_inner();
            (s.leader != 0).then_some(())
        };
        if ready.await.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {url} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bench(endpoint: &str, workload: &[&str]) -> Report {
    let mut argv = vec![
        "concord-bench",
        "--endpoints",
        endpoint,
        "--conns",
        "2",
        "--clients",
        "8",
        "--total",
        "200",
        "--no-progress",
    ];
    argv.extend_from_slice(workload);
    let args = Args::try_parse_from(argv).unwrap();
    let report = run(&args)
        .await
        .unwrap_or_else(|e| panic!("{workload:?}: {e}"));
    print!("{}", report.human());
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.throughput > 0.0, "{report:?}");
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_against_real_etcd() {
    let Some(bin) = on_path("etcd") else {
        println!("skipped: etcd is not on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (etcd, url) = start_etcd(&bin, dir.path());
    wait_ready(&url).await;
    // Without the scheme, as on the command line.
    let endpoint = url.trim_start_matches("http://");

    let put = bench(endpoint, &["put"]).await;
    assert_eq!((put.workload.as_str(), put.total), ("put", 200));
    assert_eq!(put.endpoints, vec![url.clone()]);
    let range = bench(endpoint, &["range", "--prefill", "100"]).await;
    assert_eq!(
        (range.workload.as_str(), range.total),
        ("range-linearizable", 200)
    );
    let s = bench(
        endpoint,
        &["range", "--consistency", "s", "--prefill", "100"],
    )
    .await;
    assert_eq!(s.total, 200);
    let txn = bench(endpoint, &["--target-leader-only", "txn-put"]).await;
    assert_eq!(txn.total, 200);
    let watch = bench(endpoint, &["watch", "--watchers", "4"]).await;
    assert_eq!(
        (watch.missing_events, watch.events_delivered),
        (Some(0), Some(800))
    );
    let lease = bench(endpoint, &["lease-keepalive", "--leases", "10"]).await;
    assert_eq!(lease.total, 200);

    // The bare unary client reads replies and etcd's errors as tonic does.
    let mut conn = UnaryConn::dial(&url).await.unwrap();
    let range = conn.method("/etcdserverpb.KV/Range");
    let req = RangeRequest {
        // The range prefill above wrote the first 100 keys (default sizes).
        key: KeyGen::new(Vec::<u8>::new(), 8, 100_000).key(0),
        ..Default::default()
    };
    let got: RangeResponse = conn.call(&range, &req).await.unwrap();
    assert_eq!(got.count, 1, "{got:?}");
    let err = conn
        .call::<_, RangeResponse>(&range, &RangeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), "etcdserver: key is not provided");
    let missing = conn.method("/etcdserverpb.KV/NoSuchMethod");
    let err = conn
        .call::<_, RangeResponse>(&missing, &req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    drop(etcd);
}
