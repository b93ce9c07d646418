//! Failpoints switched while a member runs (`/failpoints`, only in builds
//! with the `failpoints` feature), and a crash at one of them: a leader that
//! dies before its WAL fsync loses no acknowledged write.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use etcd_client::GetOptions;

/// A plain HTTP/1.1 request with a body; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

#[test]
fn failpoints_are_armed_listed_and_disarmed_over_http() {
    let c = Cluster::start(1);
    let a = c.addrs()[0].clone();
    let (code, list) = http(&a, "GET", "/failpoints", "");
    assert_eq!(code, 200);
    assert!(list.contains("raft-before-save=\n"), "{list}");
    assert!(list.contains("before-apply-conf-change=\n"), "{list}");

    let (code, body) = http(&a, "PUT", "/failpoints/raft-after-apply", "3*sleep(1)");
    assert_eq!(code, 200, "{body}");
    let (_, list) = http(&a, "GET", "/failpoints", "");
    assert!(list.contains("raft-after-apply=3*sleep(1)\n"), "{list}");
    assert_eq!(
        http(&a, "GET", "/failpoints/raft-after-apply", ""),
        (200, "3*sleep(1)\n".to_string())
    );

    // Unknown points and bad actions are refused and change nothing.
    let (code, body) = http(&a, "PUT", "/failpoints/no-such-point", "panic");
    assert_eq!(code, 404);
    assert!(body.contains("known: driver-round"), "{body}");
    let (code, body) = http(&a, "PUT", "/failpoints/raft-before-save", "explode");
    assert_eq!(code, 400, "{body}");
    let (_, list) = http(&a, "GET", "/failpoints", "");
    assert!(list.contains("raft-before-save=\n"), "{list}");

    assert_eq!(
        http(&a, "DELETE", "/failpoints/raft-after-apply", "").0,
        204
    );
    let (_, list) = http(&a, "GET", "/failpoints", "");
    assert!(list.contains("raft-after-apply=\n"), "{list}");
}

fn leader_index(c: &Cluster) -> usize {
    wait_until(START_TIMEOUT, || {
        let addrs = c.addrs();
        let s = status_of(&addrs[0])?;
        (s.leader != 0).then_some(())?;
        addrs
            .iter()
            .position(|a| status_of(a).is_some_and(|t| t.id == s.leader))
    })
    .expect("a leader")
}

/// Puts `k/0..` one at a time through every member until `n` are
/// acknowledged or `budget` runs out; returns the acknowledged keys.
fn put_stream(addrs: Vec<String>, n: usize, budget: Duration) -> Vec<String> {
    block_on_thread(async move {
        let deadline = tokio::time::Instant::now() + budget;
        let mut acked = Vec::new();
        let mut i = 0;
        while acked.len() < n && tokio::time::Instant::now() < deadline {
            let key = format!("k/{i}");
            i += 1;
            let Some(mut c) = client(&addrs).await else {
                continue;
            };
            let put = c.put(key.clone(), "v", None);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), put).await {
                acked.push(key);
            }
        }
        acked
    })
}

fn keys_on(addr: &str) -> Option<Vec<String>> {
    let addr = addr.to_string();
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let opts = GetOptions::new().with_prefix().with_serializable();
        let r = c.get("k/", Some(opts)).await.ok()?;
        Some(
            r.kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect(),
        )
    })
}

#[test]
fn a_leader_crashing_before_its_wal_fsync_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3);
    let addrs = c.addrs();
    let l = leader_index(&c);
    // The leader dies at its 50th WAL write from now, mid-stream.
    let (code, body) = http(
        &addrs[l],
        "PUT",
        "/failpoints/raft-before-save",
        "50*off->panic",
    );
    assert_eq!(code, 200, "{body}");
    let acked = put_stream(addrs.clone(), 200, Duration::from_secs(40));
    let status = c.nodes[l]
        .wait_exit(Duration::from_secs(10))
        .expect("the leader must die at the failpoint");
    assert_eq!(status.code(), Some(70), "{status:?}");
    assert!(c.nodes[l]
        .log_tail(40)
        .contains("failpoint raft-before-save panic"));
    assert!(
        acked.len() >= 100,
        "only {} writes acknowledged",
        acked.len()
    );

    // Restarted without the failpoint (it came from HTTP, not the env),
    // the member catches up; every member holds every acknowledged write.
    c.restart(l);
    for a in &addrs {
        let have = wait_until(START_TIMEOUT, || {
            let keys = keys_on(a)?;
            acked.iter().all(|k| keys.contains(k)).then_some(keys)
        });
        assert!(have.is_some(), "{a} lost acknowledged writes");
    }
}
