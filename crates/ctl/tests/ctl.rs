//! `concordctl` as a process against a real 3-member cluster.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Cluster;
use concord_client::PutOptions;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn ctl(cluster: &Cluster) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_concordctl"));
    cmd.arg("--endpoints").arg(cluster.client_urls.join(","));
    cmd.kill_on_drop(true);
    cmd
}

async fn token_of(cluster: &Cluster) -> u64 {
    let out = ctl(cluster)
        .args([
            "lock",
            "job",
            "--",
            "sh",
            "-c",
            "echo $CONCORD_FENCING_TOKEN",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no token in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_command_with_a_growing_fencing_token_and_its_exit_code() {
    let cluster = Cluster::start().await;
    let first = token_of(&cluster).await;
    let second = token_of(&cluster).await;
    assert!(first > 0 && second > first, "{first} then {second}");
    let status = ctl(&cluster)
        .args(["lock", "job", "--", "sh", "-c", "exit 7"])
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_one_command_at_a_time() {
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!("echo in >> {0}; sleep 0.3; echo out >> {0}", log.display());
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut cmd = ctl(&cluster);
        cmd.args(["lock", "excl", "--", "sh", "-c", &script]);
        runs.push(tokio::spawn(async move { cmd.status().await.unwrap() }));
    }
    for r in runs {
        assert!(r.await.unwrap().success());
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "in\nout\n".repeat(3), "commands overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_one_leader_and_every_members_lag() {
    let cluster = Cluster::start().await;
    let out = ctl(&cluster)
        .args(["status", "-w", "json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = doc["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let leaders = members.iter().filter(|m| m["is_leader"] == true).count();
    assert_eq!(leaders, 1, "{doc}");
    assert!(members
        .iter()
        .all(|m| m["lag"].is_u64() && m["raft_term"].is_u64()));
    assert_eq!(doc["alarms"].as_array().map(Vec::len), Some(0));
    let table = ctl(&cluster).arg("status").output().await.unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.starts_with("ENDPOINT") && text.contains("LAG"),
        "{text}"
    );
    assert_eq!(text.matches("  true  ").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_hands_over_when_the_leader_process_dies() {
    let cluster = Cluster::start().await;
    let spawn = |value: &str| {
        let mut cmd = ctl(&cluster);
        cmd.args(["elect", "svc", "--pattern", "sequential", "--ttl", "2"])
            .args(["--value", value])
            .stdout(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let mut one = spawn("one");
    let mut one_out = BufReader::new(one.stdout.take().unwrap()).lines();
    let line = one_out.next_line().await.unwrap().unwrap();
    assert!(line.starts_with("elected svc one"), "{line}");
    let mut two = spawn("two");
    let mut two_out = BufReader::new(two.stdout.take().unwrap()).lines();
    let early = tokio::time::timeout(Duration::from_millis(500), two_out.next_line()).await;
    assert!(early.is_err(), "a second leader while the first lives");
    one.kill().await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), two_out.next_line())
        .await
        .expect("two takes over")
        .unwrap()
        .unwrap();
    assert!(line.starts_with("elected svc two"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events_and_where_to_resume() {
    let cluster = Cluster::start().await;
    let child = ctl(&cluster)
        .args(["watch", "w/", "--prefix", "--count", "2", "-w", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = cluster.client().await;
    client.put("w/a", "1", PutOptions::default()).await.unwrap();
    let last = client.put("w/b", "2", PutOptions::default()).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("watch ends after 2 events")
        .unwrap();
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["key"], "w/b");
    let rev = last.header.unwrap().revision;
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("resume with --rev {}", rev + 1)),
        "{stderr}"
    );
    // Resuming from the first event's revision replays both.
    let from = events[0]["mod_revision"].as_i64().unwrap();
    let replay = ctl(&cluster)
        .args(["watch", "w/", "--prefix", "--count", "2"])
        .args(["--rev", &from.to_string()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(replay.stdout).unwrap();
    assert!(
        text.starts_with("PUT w/a 1") && text.contains("PUT w/b 2"),
        "{text}"
    );
}

#[tokio::test]
async fn check_says_whether_a_history_is_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, get: &str| {
        let path = dir.path().join(name);
        let put = r#"{"client": 1, "op": "put", "key": "k", "value": "a", "invoke": 0, "complete": 10, "result": {"ok": true}}"#;
        let get = format!(
            r#"{{"client": 2, "op": "get", "key": "k", "invoke": 20, "complete": 30, "result": {{"value": {get}}}}}"#
        );
        std::fs::write(&path, format!("{put}\n{get}\n")).unwrap();
        path
    };
    let bin = env!("CARGO_BIN_EXE_concordctl");
    let good = Command::new(bin)
        .arg("check")
        .arg(write("good", "\"a\""))
        .output()
        .await
        .unwrap();
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let bad = Command::new(bin)
        .arg("check")
        .arg(write("bad", "null"))
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stdout).starts_with("not linearizable"));
}

#[tokio::test]
async fn an_unreachable_cluster_is_one_line_and_exit_code_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_concordctl"))
        .args(["--endpoints", "127.0.0.1:1", "--dial-timeout-ms", "200"])
        .args(["--command-timeout-ms", "300", "status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("concordctl: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The value of the next leader an `--observe -w json` process prints.
async fn next_value(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("observer line")
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(v) = doc["value"].as_str() {
            return v.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_observe_prints_each_new_leader() {
    let cluster = Cluster::start().await;
    let elect = |extra: &[&str]| {
        let mut cmd = ctl(&cluster);
        cmd.args(["elect", "obs", "--pattern", "etcd", "--ttl", "2"])
            .args(extra)
            .stdout(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let mut one = elect(&["--value", "one"]);
    let mut one_out = BufReader::new(one.stdout.take().unwrap()).lines();
    assert!(one_out
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .starts_with("elected obs one"));
    let mut observer = elect(&["--observe", "-w", "json"]);
    let mut seen = BufReader::new(observer.stdout.take().unwrap()).lines();
    assert_eq!(next_value(&mut seen).await, "one");
    let _two = elect(&["--value", "two"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    one.kill().await.unwrap();
    assert_eq!(next_value(&mut seen).await, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_bully_elects_the_highest_id_without_a_cluster() {
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let node = |id: usize| {
        let peer = 1 - id;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_concordctl"));
        cmd.args(["elect", "b", "--pattern", "bully"])
            .args(["--id", &(id + 1).to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", ports[id])])
            .args([
                "--peers",
                &format!("{}=127.0.0.1:{}", peer + 1, ports[peer]),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().unwrap()
    };
    let mut low = node(0);
    let mut high = node(1);
    let mut high_out = BufReader::new(high.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(5), high_out.next_line())
        .await
        .expect("node 2 leads")
        .unwrap()
        .unwrap();
    assert_eq!(line, "elected b 2 (term 2)");
    let mut low_out = BufReader::new(low.stdout.take().unwrap()).lines();
    let early = tokio::time::timeout(Duration::from_millis(500), low_out.next_line()).await;
    assert!(early.is_err(), "node 1 leads beside node 2");
    high.kill().await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(5), low_out.next_line())
        .await
        .expect("node 1 takes over")
        .unwrap()
        .unwrap();
    assert_eq!(line, "elected b 1 (term 1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_kills_the_command_and_exits_5_when_the_lock_is_lost() {
    let cluster = Cluster::start().await;
    let mut child = ctl(&cluster)
        .args(["lock", "lost", "--ttl", "3", "--"])
        .args(["sh", "-c", "echo $CONCORD_LOCK_KEY $$; exec sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = out.next_line().await.unwrap().unwrap();
    let (key, pid) = line.split_once(' ').unwrap();
    let client = cluster.client().await;
    let held = client
        .get(key, concord_client::GetOptions::new())
        .await
        .unwrap();
    client.lease_revoke(held.kvs[0].lease).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("concordctl notices the loss")
        .unwrap();
    assert_eq!(status.code(), Some(5));
    let alive = std::path::Path::new("/proc").join(pid).exists();
    assert!(!alive, "the command outlived the lock");
}

/// Stderr of a failed run: one line, exit code 1.
fn one_line_failure(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_logs_in_with_user_and_fails_in_one_line_without_it() {
    let cluster = Cluster::start_with(&["--bcrypt-cost=4"]).await;
    cluster.enable_auth("alice", "pw", "job/");
    let echo = [
        "lock",
        "job",
        "--",
        "sh",
        "-c",
        "echo $CONCORD_FENCING_TOKEN",
    ];
    let out = ctl(&cluster)
        .args(["--user", "alice:pw"])
        .args(echo)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(token > 0);
    // The name alone: the password from the environment.
    let out = ctl(&cluster)
        .args(["--user", "alice"])
        .env("CONCORD_PASSWORD", "pw")
        .args(echo)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let without = ctl(&cluster).args(echo).output().await.unwrap();
    let err = one_line_failure(&without);
    assert!(err.contains("etcdserver: user name is empty"), "{err}");
    let wrong = ctl(&cluster)
        .args(["--user", "alice:nope"])
        .args(echo)
        .output()
        .await
        .unwrap();
    let err = one_line_failure(&wrong);
    assert!(
        err.contains("etcdserver: authentication failed, invalid user ID or password"),
        "{err}"
    );
    let no_password = ctl(&cluster)
        .args(["--user", "alice"])
        .env_remove("CONCORD_PASSWORD")
        .args(echo)
        .output()
        .await
        .unwrap();
    let err = one_line_failure(&no_password);
    assert!(err.contains("no password for user \"alice\""), "{err}");
}
