//! Compatibility with the real `etcdctl` (v3 API): locks, elections,
//! membership, endpoint status/health and snapshots against a 3-member
//! cluster. Expected outputs were checked against etcd 3.4.23.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A 3-member cluster whose `etcdctl` runs write endpoints in `form`
/// (the tests between them use every form).
fn cluster(form: EndpointForm) -> Option<Cluster> {
    have_etcdctl().then(|| {
        let mut c = Cluster::start(3);
        c.form = form;
        c
    })
}

/// Lines of `out` that are keys under `prefix/`.
fn keys_under(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

#[test]
fn lock_contention() {
    let Some(mut c) = cluster(EndpointForm::Http) else {
        return;
    };
    // Exec form: the command runs while the lock is held.
    let o = c
        .ctl(&["lock", "xlock", "--", "sh", "-c", "echo held"])
        .expect_ok("lock exec");
    assert_eq!(o.stdout, "held\n");
    assert_eq!(c.ctl(&["get", "xlock", "--prefix"]).stdout, "");

    let first = c.ctl_bg("lock1", &["lock", "--ttl=2", "mylock"]);
    assert!(
        first.wait_output(Duration::from_secs(10), |o| !keys_under(o, "mylock")
            .is_empty()),
        "first lock: {:?}",
        first.output()
    );
    let key1 = keys_under(&first.output(), "mylock")[0].clone();
    let mut first = first;
    let second = c.ctl_bg("lock2", &["lock", "--ttl=2", "mylock"]);
    // The second waits while the first holds the lock.
    assert!(wait_until(Duration::from_millis(1500), || {
        c.ctl(&["get", "mylock", "--prefix", "--keys-only"])
            .stdout
            .lines()
            .filter(|l| l.starts_with("mylock/"))
            .nth(1)
            .map(|_| ())
    })
    .is_some());
    std::thread::sleep(Duration::from_millis(500));
    assert!(keys_under(&second.output(), "mylock").is_empty());
    // SIGKILL: no unlock, the holder's 2 s session lease has to expire.
    first.kill();
    assert!(
        second.wait_output(Duration::from_secs(15), |o| !keys_under(o, "mylock")
            .is_empty()),
        "second lock: {:?}",
        second.output()
    );
    let key2 = keys_under(&second.output(), "mylock")[0].clone();
    assert_ne!(key1, key2);
    let held = c.ctl(&["get", "mylock", "--prefix", "--keys-only"]);
    assert_eq!(keys_under(&held.stdout, "mylock"), [key2]);
}

#[test]
fn election_contention() {
    let Some(mut c) = cluster(EndpointForm::Bare) else {
        return;
    };
    // Not the first write of the cluster: see `elect_as_first_write`.
    c.ctl(&["put", "warm", "up"]).expect_ok("put");
    let mut first = c.ctl_bg("elect1", &["elect", "myelect", "p1"]);
    assert!(
        first.wait_output(Duration::from_secs(10), |o| o.contains("\np1\n")),
        "first: {:?}",
        first.output()
    );
    let observer = c.ctl_bg("observe", &["elect", "-l", "myelect"]);
    assert!(
        observer.wait_output(Duration::from_secs(10), |o| o.contains("\np1\n")),
        "observer: {:?}",
        observer.output()
    );
    let second = c.ctl_bg("elect2", &["elect", "myelect", "p2"]);
    let waiting = wait_until(Duration::from_secs(5), || {
        let o = c.ctl(&["get", "myelect", "--prefix", "--keys-only"]);
        (keys_under(&o.stdout, "myelect").len() == 2).then_some(())
    });
    assert!(waiting.is_some(), "second candidate never registered");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(second.output(), "", "second elected while the first leads");
    // SIGTERM: etcdctl resigns (closes its session) and exits.
    first.term();
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        second.wait_output(Duration::from_secs(10), |o| o.contains("\np2\n")),
        "second: {:?}",
        second.output()
    );
    assert!(
        observer.wait_output(Duration::from_secs(10), |o| o.contains("\np2\n")),
        "observer: {:?}",
        observer.output()
    );
    let o = observer.output();
    assert!(o.find("\np1\n") < o.find("\np2\n"), "{o}");
}

/// etcd's store starts at revision 1, so the first write is revision 2.
/// Concord starts at 0 (`concord-mvcc`'s `State::current_rev`), so the
/// first write is revision 1, and etcd's client-side election recipe
/// (`etcdctl elect`, clientv3 `concurrency.Election`) then waits for
/// deletes below `WithMaxCreateRev(1 - 1)`, i.e. with no bound: the
/// candidate waits for its own key forever.
#[test]
fn elect_as_first_write() {
    let Some(mut c) = cluster(EndpointForm::Mixed) else {
        return;
    };
    let j = c.ctl(&["get", "nothing", "-w", "json"]).json();
    assert_eq!(j["header"]["revision"], 1, "{j}");
    let e = c.ctl_bg("first", &["elect", "first", "p1"]);
    let elected = e.wait_output(Duration::from_secs(10), |o| o.contains("\np1\n"));
    assert!(elected, "never elected: {:?}", e.output());
}

fn member_id(out: &Out, verb: &str) -> String {
    // "Member d7909a5a13ddb9c6 added to cluster  48276a8f75b6a87"
    let w: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(w.len() > 3 && w[0] == "Member" && w[2] == verb, "{out:#?}");
    w[1].to_string()
}

#[test]
fn membership() {
    let Some(mut c) = cluster(EndpointForm::Bare) else {
        return;
    };
    let simple = c.ctl(&["member", "list"]).expect_ok("member list");
    assert_eq!(simple.lines().len(), 3, "{simple:#?}");
    for m in &c.nodes {
        let line = simple
            .lines()
            .into_iter()
            .find(|l| l.contains(&format!(", {}, ", m.name)))
            .unwrap_or_else(|| panic!("{} missing: {simple:#?}", m.name));
        let want = format!(
            ", started, {}, {}, {}, false",
            m.name,
            m.peer_url(),
            m.client_url()
        );
        assert!(line.ends_with(&want), "{line:?} vs {want:?}");
    }
    let table = c.ctl(&["member", "list", "-w", "table"]).expect_ok("table");
    assert!(table.stdout.contains("IS LEARNER"), "{table:#?}");
    assert_eq!(table.lines().len(), 3 + 4, "{table:#?}");
    let j = c.ctl(&["member", "list", "-w", "json"]).json();
    assert_eq!(j["members"].as_array().map(Vec::len), Some(3), "{j}");
    assert!(j["header"]["cluster_id"].as_u64().is_some_and(|id| id != 0));

    // Add a learner, start it, promote it once it caught up.
    let i = c.prepare_join("m4");
    let peer = format!("--peer-urls={}", c.nodes[i].peer_url());
    // etcd refuses reconfiguration until every member was up for 5 s.
    let added = wait_until(Duration::from_secs(20), || {
        let o = c.ctl(&["member", "add", "m4", "--learner", &peer]);
        (!o.stderr.contains("unhealthy cluster")).then_some(o)
    })
    .expect("member add: cluster never healthy")
    .expect_ok("member add");
    let id = member_id(&added, "added");
    assert!(added.stdout.contains("ETCD_NAME=\"m4\""), "{added:#?}");
    // The suggested --initial-cluster lists the same members (any order).
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.split(',').map(str::to_string).collect();
        v.sort();
        v
    };
    let suggested = added
        .lines()
        .into_iter()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .map(|v| sorted(v.trim_matches('"')));
    assert_eq!(
        suggested,
        Some(sorted(&c.nodes[i].initial_cluster)),
        "{added:#?}"
    );
    let l = c.ctl(&["member", "list"]).expect_ok("list");
    let line = l
        .lines()
        .into_iter()
        .find(|x| x.starts_with(&id))
        .map(str::to_string);
    assert_eq!(
        line,
        Some(format!(
            "{id}, unstarted, , {}, , true",
            c.nodes[i].peer_url()
        ))
    );
    c.nodes[i].spawn();
    let promoted = wait_until(Duration::from_secs(20), || {
        let o = c.ctl(&["member", "promote", &id]);
        o.ok().then_some(o)
    })
    .expect("learner never promoted");
    assert_eq!(member_id(&promoted, "promoted"), id);
    // The new member publishes its name and client URLs once it runs.
    let find_m4 = |j: &Value| {
        j["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| format!("{:x}", m["ID"].as_u64().unwrap_or(0)) == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let j = wait_until(Duration::from_secs(10), || {
        let j = c.ctl(&["member", "list", "-w", "json"]).json();
        (find_m4(&j)["name"] == "m4").then_some(j)
    })
    .expect("m4 never published its name");
    let m4 = find_m4(&j);
    assert_eq!(m4["clientURLs"][0], c.nodes[i].client_url().as_str(), "{j}");
    assert!(m4.get("isLearner").is_none(), "{j}");

    // The new member serves reads and writes.
    let m4_addr = c.nodes[i].addr();
    let o = run(
        &mut etcdctl_cmd(&m4_addr, &["put", "via-m4", "yes"]),
        None,
        CTL_TIMEOUT,
    );
    assert!(o.ok(), "{o:#?}");
    assert_eq!(c.ctl(&["get", "via-m4"]).lines(), ["via-m4", "yes"]);

    // Remove it: the process stops.
    let others: Vec<String> = (0..3).map(|k| c.nodes[k].addr()).collect();
    let removed = run(
        &mut etcdctl_cmd(&others.join(","), &["member", "remove", &id]),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("member remove");
    assert_eq!(member_id(&removed, "removed"), id);
    // etcd's removed member always learns of its removal (peers answer it
    // with "removed") and exits. Concord's exits only if it applied the
    // removal itself, which races with the leader dropping it from the
    // transport; otherwise it must at least stop serving.
    if c.nodes[i].wait_exit(Duration::from_secs(5)).is_none() {
        eprintln!("note: the removed member did not exit; checking it stopped serving");
        let m4 = c.nodes[i].addr();
        let stopped = wait_until(Duration::from_secs(15), || {
            let o = run(
                &mut etcdctl_cmd(&m4, &["put", "via-removed", "x"]),
                None,
                CTL_TIMEOUT,
            );
            (!o.ok() && !c.nodes[i].healthy()).then_some(())
        });
        assert!(stopped.is_some(), "removed member still serves writes");
        c.kill(i);
        let leaked = c.ctl(&["get", "via-removed"]).expect_ok("get");
        assert_eq!(leaked.stdout, "", "a removed member's write was applied");
    }
    let l = c.ctl(&["member", "list"]).expect_ok("list");
    assert_eq!(l.lines().len(), 3, "{l:#?}");
    c.ctl(&["put", "after-remove", "ok"]).expect_ok("put");
}

/// (Endpoint tables are matched by bare address here; `compat_health.rs`
/// checks them with `http://` endpoints.)
#[test]
fn endpoints_and_snapshot() {
    let Some(mut c) = cluster(EndpointForm::Bare) else {
        return;
    };
    for i in 0..20 {
        c.ctl(&["put", &format!("k{i:02}"), "v"]).expect_ok("put");
    }
    let addrs = c.addrs();
    let s = c.ctl(&["endpoint", "status"]).expect_ok("status");
    assert_eq!(s.lines().len(), 3, "{s:#?}");
    let mut leaders = 0;
    for a in &addrs {
        let line = s
            .lines()
            .into_iter()
            .find(|l| l.starts_with(&format!("{a}, ")))
            .unwrap_or_else(|| panic!("{a} missing: {s:#?}"));
        // endpoint, id, version, db size, is leader, is learner, term,
        // index, applied index, errors
        let f: Vec<&str> = line.split(", ").collect();
        assert_eq!(f.len(), 10, "{line:?}");
        leaders += usize::from(f[4] == "true");
        assert_eq!(f[5], "false", "{line:?}");
    }
    assert_eq!(leaders, 1, "{s:#?}");
    let t = c
        .ctl(&["endpoint", "status", "-w", "table"])
        .expect_ok("table");
    assert!(t.stdout.contains("RAFT APPLIED INDEX"), "{t:#?}");
    assert_eq!(t.lines().len(), 3 + 4, "{t:#?}");
    let j = c.ctl(&["endpoint", "status", "-w", "json"]).json();
    let all = j.as_array().expect("array");
    assert_eq!(all.len(), 3);
    let leader = all[0]["Status"]["leader"].as_u64().expect("leader");
    let mut ids: Vec<u64> = Vec::new();
    for e in all {
        assert_eq!(e["Status"]["leader"].as_u64(), Some(leader), "{j}");
        assert!(addrs.contains(&e["Endpoint"].as_str().unwrap_or("").to_string()));
        ids.push(e["Status"]["header"]["member_id"].as_u64().unwrap_or(0));
        assert!(
            e["Status"]["raftAppliedIndex"].as_u64().unwrap_or(0) > 20,
            "{j}"
        );
    }
    assert!(ids.contains(&leader), "{j}");

    let h = c.ctl(&["endpoint", "health"]).expect_ok("health");
    let text = format!("{}{}", h.stdout, h.stderr);
    for a in &addrs {
        assert!(
            text.contains(&format!("{a} is healthy: successfully committed proposal")),
            "{h:#?}"
        );
    }
    let j = c.ctl(&["endpoint", "health", "-w", "json"]).json();
    let all = j.as_array().expect("array");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|e| e["health"] == true), "{j}");
    let t = c
        .ctl(&["endpoint", "health", "-w", "table"])
        .expect_ok("table");
    assert!(t.stdout.contains("HEALTH"), "{t:#?}");
    assert_eq!(t.lines().len(), 3 + 4, "{t:#?}");

    // Snapshot from one member; `snapshot status` reads the file.
    let one = addrs[1].clone();
    let rev = run(
        &mut etcdctl_cmd(&one, &["get", "k00", "-w", "json"]),
        None,
        CTL_TIMEOUT,
    )
    .json()["header"]["revision"]
        .as_i64()
        .expect("revision");
    let file = c.path("snap.db");
    let file_s = file.display().to_string();
    let o = run(
        &mut etcdctl_cmd(&one, &["snapshot", "save", &file_s]),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("snapshot save");
    assert!(
        o.stdout.contains(&format!("Snapshot saved at {file_s}")),
        "{o:#?}"
    );
    let j = run(
        &mut etcdctl_cmd(&one, &["snapshot", "status", &file_s, "-w", "json"]),
        None,
        CTL_TIMEOUT,
    )
    .json();
    assert_eq!(j["revision"], rev, "{j}");
    assert!(j["totalKey"].as_i64().unwrap_or(0) >= 20, "{j}");
    // The file is the backend image plus a 32-byte SHA-256 trailer.
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert_eq!(j["totalSize"].as_u64().map(|t| t + 32), Some(size), "{j}");
    let t = run(
        &mut etcdctl_cmd(&one, &["snapshot", "status", &file_s, "-w", "table"]),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("snapshot status table");
    assert!(t.stdout.contains("TOTAL KEYS"), "{t:#?}");
}

#[test]
fn strict_reconfig_protects_the_quorum() {
    let Some(mut c) = cluster(EndpointForm::Mixed) else {
        return;
    };
    let leader = c.leader(Duration::from_secs(10));
    let (live, down) = ((leader + 1) % 3, (leader + 2) % 3);
    let list = c.ctl(&["member", "list"]).expect_ok("member list");
    let id_of = |name: &str| -> String {
        list.lines()
            .into_iter()
            .find(|l| l.contains(&format!(", {name}, ")))
            .and_then(|l| l.split(',').next())
            .unwrap_or_else(|| panic!("{name} not listed: {list:#?}"))
            .to_string()
    };
    let (live_id, down_id) = (id_of(&c.nodes[live].name), id_of(&c.nodes[down].name));
    c.kill(down);
    // Let the leader notice (election timeout 500 ms in this harness).
    std::thread::sleep(Duration::from_millis(2000));

    // A member is unreachable: no voter or learner may join...
    for learner in [false, true] {
        let mut args = vec!["member", "add", "m9", "--peer-urls=http://127.0.0.1:9"];
        if learner {
            args.push("--learner");
        }
        let o = c.ctl(&args);
        assert!(!o.ok() && o.stderr.contains("unhealthy cluster"), "{o:#?}");
    }
    // ...and removing a live voter would leave one of two reachable.
    let o = c.ctl(&["member", "remove", &live_id]);
    assert!(!o.ok() && o.stderr.contains("unhealthy cluster"), "{o:#?}");
    // The member that is down may be removed.
    c.ctl(&["member", "remove", &down_id])
        .expect_ok("remove the member that is down");
    let o = c.ctl(&["member", "list"]).expect_ok("member list");
    assert_eq!(o.lines().len(), 2, "{o:#?}");
    assert!(!o.stdout.contains(&down_id), "{o:#?}");
}

/// Restores the snapshot `file` with `etcdctl snapshot restore` into a new
/// data directory `dir` and starts a one-member real etcd on it; the
/// process (killed on drop) and its client endpoint.
fn restore_into_etcd(c: &Cluster, file: &str, dir: &str) -> (Reaped, String) {
    let one = c.addrs()[0].clone();
    let data = c.path(dir).display().to_string();
    let (client, peer) = (free_port(), free_port());
    let peer_url = format!("http://127.0.0.1:{peer}");
    let initial = format!("r1={peer_url}");
    run(
        &mut etcdctl_cmd(
            &one,
            &[
                "snapshot",
                "restore",
                file,
                "--data-dir",
                &data,
                "--name",
                "r1",
                "--initial-cluster",
                &initial,
                "--initial-advertise-peer-urls",
                &peer_url,
            ],
        ),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("snapshot restore");
    let client_url = format!("http://127.0.0.1:{client}");
    let log = std::fs::File::create(c.path(&format!("{dir}-etcd.log"))).expect("log file");
    let etcd = Reaped(
        std::process::Command::new("etcd")
            .args(["--name", "r1", "--data-dir", &data])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd"),
    );
    (etcd, format!("127.0.0.1:{client}"))
}

/// etcd is installed, or the test may be skipped (not where
/// `CONCORD_REQUIRE_ETCDCTL=1`).
fn have_etcd() -> bool {
    if std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(
            std::env::var("CONCORD_REQUIRE_ETCDCTL").as_deref() != Ok("1"),
            "etcd (Debian etcd-server) not found and CONCORD_REQUIRE_ETCDCTL=1"
        );
        println!("skipped: etcd not found");
        return false;
    }
    true
}

/// Users, roles, permissions and the enabled flag travel in the snapshot
/// file: restored into real etcd, auth is on, alice reads and writes her
/// prefix only, a wrong password and an anonymous request are refused.
#[test]
fn snapshot_restores_into_real_etcd_with_users_and_roles() {
    if !have_etcd() {
        return;
    }
    let Some(mut c) = cluster(EndpointForm::Http) else {
        return;
    };
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "--prefix=true",
            "readwrite",
            "app/",
        ],
        &["user", "add", "alice:alicepw"],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
        &["--user", "alice:alicepw", "put", "app/x", "1"],
    ] {
        c.ctl(args).expect_ok(&args.join(" "));
    }
    let file = c.path("auth.db").display().to_string();
    let one = c.addrs()[0].clone();
    run(
        &mut etcdctl_cmd(&one, &["--user", "root:rootpw", "snapshot", "save", &file]),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("snapshot save");
    let (_etcd, ep) = restore_into_etcd(&c, &file, "restored-auth");
    let ctl = |args: &[&str]| run(&mut etcdctl_cmd(&ep, args), None, CTL_TIMEOUT);
    let got = wait_until(Duration::from_secs(20), || {
        let o = ctl(&[
            "--user",
            "alice:alicepw",
            "get",
            "app/x",
            "--print-value-only",
        ]);
        o.ok().then(|| o.stdout.trim().to_string())
    });
    assert_eq!(got.as_deref(), Some("1"), "alice reads her key in etcd");
    ctl(&["--user", "alice:alicepw", "put", "app/y", "2"]).expect_ok("alice writes her prefix");
    let o = ctl(&["--user", "alice:alicepw", "put", "other", "2"]);
    assert!(!o.ok() && o.stderr.contains("permission denied"), "{o:#?}");
    let o = ctl(&["--user", "alice:wrong", "get", "app/x"]);
    assert!(
        !o.ok() && o.stderr.contains("authentication failed"),
        "{o:#?}"
    );
    let o = ctl(&["get", "app/x"]);
    assert!(!o.ok() && o.stderr.contains("user name is empty"), "{o:#?}");
    let o = ctl(&["--user", "root:rootpw", "role", "get", "app"]).expect_ok("role get");
    assert!(o.stdout.contains("[app/, app0)"), "{o:#?}");
}

/// Kills and reaps a process on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A snapshot saved from Concord restores into real etcd with its history:
/// etcd then serves reads at the old revisions, deletions included.
#[test]
fn snapshot_restores_into_real_etcd_with_history() {
    if !have_etcd() {
        return;
    }
    let Some(mut c) = cluster(EndpointForm::Http) else {
        return;
    };
    let rev_of = |o: Out| o.json()["header"]["revision"].as_i64().expect("revision");
    let r1 = rev_of(c.ctl(&["put", "h", "1", "-w", "json"]));
    let r2 = rev_of(c.ctl(&["put", "h", "2", "-w", "json"]));
    let r3 = rev_of(c.ctl(&["del", "h", "-w", "json"]));
    c.ctl(&["put", "h", "4"]).expect_ok("put");
    let file = c.path("history.db").display().to_string();
    let one = c.addrs()[0].clone();
    run(
        &mut etcdctl_cmd(&one, &["snapshot", "save", &file]),
        None,
        CTL_TIMEOUT,
    )
    .expect_ok("snapshot save");

    let (_etcd, ep) = restore_into_etcd(&c, &file, "restored");
    let get = |rev: i64| {
        let rev = format!("--rev={rev}");
        let o = run(
            &mut etcdctl_cmd(&ep, &["get", "h", "--print-value-only", &rev]),
            None,
            CTL_TIMEOUT,
        );
        o.ok().then(|| o.stdout.trim().to_string())
    };
    let latest = wait_until(Duration::from_secs(20), || get(0)).expect("restored etcd serves");
    assert_eq!(latest, "4");
    assert_eq!(get(r1).as_deref(), Some("1"));
    assert_eq!(get(r2).as_deref(), Some("2"));
    assert_eq!(get(r3).as_deref(), Some(""), "deleted at {r3}");
}
