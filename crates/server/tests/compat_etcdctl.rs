//! Compatibility with the real `etcdctl` (v3 API): key-value commands,
//! transactions, compaction, watches and leases against a 3-member cluster.
//! Expected outputs were checked against etcd 3.4.23.

mod common;

use std::time::{Duration, Instant};

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

fn header_rev(v: &Value) -> i64 {
    v["header"]["revision"].as_i64().expect("header.revision")
}

/// Non-empty stdout lines (`--keys-only` prints a blank line per key).
fn words(o: &Out) -> Vec<String> {
    o.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn put_get_delete() {
    let Some(mut c) = cluster(EndpointForm::Http) else {
        return;
    };
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("foo", "bar"),
        ("foo/x", "fx"),
    ] {
        assert_eq!(c.ctl(&["put", k, v]).expect_ok("put").stdout, "OK\n");
    }
    assert_eq!(
        c.ctl(&["get", "foo"]).expect_ok("get").lines(),
        ["foo", "bar"]
    );
    assert_eq!(c.ctl(&["get", "a", "c"]).lines(), ["a", "1", "b", "2"]);
    assert_eq!(
        c.ctl(&["get", "foo", "--prefix"]).lines(),
        ["foo", "bar", "foo/x", "fx"]
    );
    assert_eq!(
        c.ctl(&["get", "", "--prefix", "--limit", "2"]).lines(),
        ["a", "1", "b", "2"]
    );
    assert_eq!(
        words(&c.ctl(&[
            "get",
            "",
            "--from-key",
            "--sort-by=KEY",
            "--order=DESCEND",
            "--keys-only"
        ])),
        ["foo/x", "foo", "c", "b", "a"]
    );
    assert_eq!(c.ctl(&["get", "foo", "--print-value-only"]).stdout, "bar\n");
    assert_eq!(
        c.ctl(&["get", "missing"]).expect_ok("get missing").stdout,
        ""
    );

    // etcdctl 3.4 has no --count-only: the count is in the JSON output,
    // and `more` says a limit cut the result.
    let j = c
        .ctl(&["get", "", "--prefix", "--limit", "2", "-w", "json"])
        .json();
    assert_eq!(j["count"], 5, "{j}");
    assert_eq!(j["more"], true, "{j}");
    assert_eq!(j["kvs"].as_array().map(Vec::len), Some(2));
    assert_eq!(j["kvs"][0]["key"], b64(b"a"));
    assert_eq!(j["kvs"][0]["value"], b64(b"1"));
    let j = c.ctl(&["get", "foo", "--prefix", "-w", "json"]).json();
    assert_eq!(j["count"], 2);
    assert!(j.get("more").is_none(), "{j}");

    // Revisions: overwrite `a`, read the old value back with --rev.
    let a = c.ctl(&["get", "a", "-w", "json"]).json();
    let a_rev = a["kvs"][0]["mod_revision"].as_i64().expect("mod_revision");
    let put = c
        .ctl(&["put", "a", "9", "-w", "json"])
        .expect_ok("put a")
        .json();
    let new_rev = header_rev(&put);
    assert!(new_rev > a_rev);
    let a_rev_s = a_rev.to_string();
    assert_eq!(c.ctl(&["get", "a", "--rev", &a_rev_s]).lines(), ["a", "1"]);
    assert_eq!(c.ctl(&["get", "a"]).lines(), ["a", "9"]);
    let j = c.ctl(&["get", "a", "-w", "json"]).json();
    assert_eq!(j["kvs"][0]["version"], 2);
    assert_eq!(j["kvs"][0]["create_revision"], a_rev);
    assert_eq!(j["kvs"][0]["mod_revision"], new_rev);
    // `a` was modified last: sorting by MODIFY puts it at the end.
    assert_eq!(
        words(&c.ctl(&[
            "get",
            "",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=ASCEND",
            "--keys-only"
        ])),
        ["b", "c", "foo", "foo/x", "a"]
    );
    assert_eq!(
        words(&c.ctl(&[
            "get",
            "",
            "--prefix",
            "--sort-by=VALUE",
            "--order=DESCEND",
            "--print-value-only"
        ])),
        ["fx", "bar", "9", "3", "2"]
    );
    let future = (new_rev + 100).to_string();
    let o = c.ctl(&["get", "a", "--rev", &future]);
    assert!(!o.ok());
    assert!(
        o.stderr
            .contains("Error: etcdserver: mvcc: required revision is a future revision"),
        "{o:#?}"
    );

    // Deletes.
    assert_eq!(c.ctl(&["del", "b"]).expect_ok("del").stdout, "1\n");
    assert_eq!(c.ctl(&["get", "b"]).stdout, "");
    assert_eq!(c.ctl(&["del", "b"]).expect_ok("del again").stdout, "0\n");
    assert_eq!(
        c.ctl(&["del", "foo", "--prefix"])
            .expect_ok("del prefix")
            .stdout,
        "2\n"
    );
    assert_eq!(
        c.ctl(&["del", "a", "--prev-kv"])
            .expect_ok("del prev")
            .lines(),
        ["1", "a", "9"]
    );
    let j = c.ctl(&["del", "c", "--prev-kv", "-w", "json"]).json();
    assert_eq!(j["deleted"], 1);
    assert_eq!(j["prev_kvs"][0]["key"], b64(b"c"));
    assert_eq!(j["prev_kvs"][0]["value"], b64(b"3"));
    assert_eq!(c.ctl(&["get", "", "--prefix"]).stdout, "");
}

#[test]
fn txn_interactive() {
    let Some(mut c) = cluster(EndpointForm::Bare) else {
        return;
    };
    c.ctl(&["put", "tk", "1"]).expect_ok("put");
    c.ctl(&["put", "other", "o"]).expect_ok("put");
    // etcdctl 3.4 reads compares, success ops and failure ops, each list
    // ended by an empty line.
    let ok = c
        .ctl_stdin(
            &["txn", "-i"],
            "value(\"tk\") = \"1\"\nmod(\"other\") > \"0\"\n\nput tk 2\nget other\n\nput tk failed\n\n",
        )
        .expect_ok("txn");
    let lines = ok.lines();
    let at = lines.iter().position(|l| *l == "SUCCESS").expect("SUCCESS");
    assert_eq!(
        &lines[at..],
        ["SUCCESS", "", "OK", "", "other", "o"],
        "{ok:#?}"
    );
    assert_eq!(c.ctl(&["get", "tk"]).lines(), ["tk", "2"]);

    let failed = c
        .ctl_stdin(
            &["txn", "-i"],
            "value(\"tk\") = \"1\"\n\nput tk 3\n\nput tk failed\ndel other\n\n",
        )
        .expect_ok("txn");
    let lines = failed.lines();
    let at = lines.iter().position(|l| *l == "FAILURE").expect("FAILURE");
    assert_eq!(&lines[at..], ["FAILURE", "", "OK", "", "1"], "{failed:#?}");
    assert_eq!(c.ctl(&["get", "tk"]).lines(), ["tk", "failed"]);
    assert_eq!(c.ctl(&["get", "other"]).stdout, "");

    // Non-interactive, JSON: `succeeded` is omitted when false.
    let j = c
        .ctl_stdin(
            &["txn", "-w", "json"],
            "version(\"nokey\") = \"0\"\n\nput nokey created\n\n\n",
        )
        .expect_ok("txn json")
        .json();
    assert_eq!(j["succeeded"], true, "{j}");
    let j = c
        .ctl_stdin(
            &["txn", "-w", "json"],
            "version(\"nokey\") = \"0\"\n\nput nokey again\n\n\n",
        )
        .json();
    assert!(j.get("succeeded").is_none(), "{j}");
    assert_eq!(c.ctl(&["get", "nokey"]).lines(), ["nokey", "created"]);

    // A txn without writes is served as a read: same answers, and the
    // revision does not move.
    let rev = |c: &mut Cluster| {
        c.ctl(&["get", "nokey", "-w", "json"]).json()["header"]["revision"].clone()
    };
    let before = rev(&mut c);
    let read = c
        .ctl_stdin(
            &["txn", "-i"],
            "value(\"nokey\") = \"created\"\n\nget nokey\n\nget tk\n\n",
        )
        .expect_ok("read-only txn");
    let lines = read.lines();
    let at = lines.iter().position(|l| *l == "SUCCESS").expect("SUCCESS");
    assert_eq!(
        &lines[at..],
        ["SUCCESS", "", "nokey", "created"],
        "{read:#?}"
    );
    let read = c
        .ctl_stdin(
            &["txn", "-i"],
            "value(\"nokey\") = \"x\"\n\nget nokey\n\nget tk\n\n",
        )
        .expect_ok("read-only txn");
    let lines = read.lines();
    let at = lines.iter().position(|l| *l == "FAILURE").expect("FAILURE");
    assert_eq!(&lines[at..], ["FAILURE", "", "tk", "failed"], "{read:#?}");
    assert_eq!(rev(&mut c), before);
}

/// One event of a JSON watch output: (PUT?, key, value, prev value).
type Ev = (bool, String, String, Option<String>);

fn json_events(out: &str) -> Vec<Ev> {
    let s = |v: &Value| {
        let b = v.as_str().unwrap_or("");
        String::from_utf8(decode_b64(b)).expect("utf8")
    };
    let mut evs = Vec::new();
    for line in out.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).expect("watch JSON");
        for e in v["Events"].as_array().into_iter().flatten() {
            let put = e.get("type").is_none();
            let prev = e.get("prev_kv").map(|p| s(&p["value"]));
            evs.push((put, s(&e["kv"]["key"]), s(&e["kv"]["value"]), prev));
        }
    }
    evs
}

fn decode_b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for ch in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in ch.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        for i in 0..ch.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn watch_and_compaction() {
    let Some(mut c) = cluster(EndpointForm::Mixed) else {
        return;
    };
    let live = c.ctl_bg(
        "live",
        &["watch", "w", "--prefix", "--prev-kv", "-w", "json"],
    );
    let simple = c.ctl_bg("simple", &["watch", "w/1"]);
    // Both watches are live once they print a sentinel put.
    let mut n = 0;
    let ready = wait_until(Duration::from_secs(15), || {
        n += 1;
        let v = format!("s{n}");
        c.ctl(&["put", "w/1", &v]).expect_ok("sentinel put");
        let seen = |o: String| o.contains(&format!("\n{v}\n")) || o.contains(&b64(v.as_bytes()));
        (seen(live.output()) && seen(simple.output())).then_some(v)
    });
    let sentinel = ready.expect("watches never saw the sentinel");

    let first = c.ctl(&["put", "w/2", "b", "-w", "json"]).json();
    let first_rev = header_rev(&first);
    for args in [
        &["put", "w/1", "c"][..],
        &["del", "w/1"],
        &["put", "x", "not watched"],
        &["put", "w/2", "d"],
        &["del", "w/2"],
    ] {
        c.ctl(args).expect_ok("event");
    }
    let end = "DELETE\nw/1\n\n";
    assert!(
        simple.wait_output(Duration::from_secs(10), |o| o.ends_with(end)),
        "simple watch: {:?}",
        simple.output()
    );
    assert!(simple.output().ends_with("PUT\nw/1\nc\nDELETE\nw/1\n\n"));

    let want: Vec<Ev> = vec![
        (true, "w/2".into(), "b".into(), None),
        (true, "w/1".into(), "c".into(), Some(sentinel.clone())),
        (false, "w/1".into(), "".into(), Some("c".into())),
        (true, "w/2".into(), "d".into(), Some("b".into())),
        (false, "w/2".into(), "".into(), Some("d".into())),
    ];
    let got = wait_until(Duration::from_secs(10), || {
        let evs = json_events(&live.output());
        let at = evs.iter().rposition(|e| e.2 == sentinel)?;
        let rest = evs[at + 1..].to_vec();
        (rest.len() >= want.len()).then_some(rest)
    });
    assert_eq!(got.as_ref(), Some(&want), "live: {}", live.output());

    // A watch from a past revision replays history in order.
    let rev = first_rev.to_string();
    let past = c.ctl_bg("past", &["watch", "w", "--prefix", "--rev", &rev]);
    let want = "PUT\nw/2\nb\nPUT\nw/1\nc\nDELETE\nw/1\n\nPUT\nw/2\nd\nDELETE\nw/2\n\n";
    assert!(
        past.wait_output(Duration::from_secs(10), |o| o.len() >= want.len()),
        "past: {:?}",
        past.output()
    );
    assert_eq!(past.output(), want);

    // Compaction: older revisions are gone for reads and watches.
    let at = (first_rev + 2).to_string();
    assert_eq!(
        c.ctl(&["compaction", &at]).expect_ok("compaction").stdout,
        format!("compacted revision {at}\n")
    );
    let o = c.ctl(&["get", "w/2", "--rev", &rev]);
    assert!(!o.ok(), "{o:#?}");
    assert!(
        o.stderr
            .contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{o:#?}"
    );
    let o = c
        .ctl(&["get", "w/2", "--rev", &at])
        .expect_ok("get at compact rev");
    assert_eq!(o.lines(), ["w/2", "b"]);
    let o = c.ctl(&["watch", "w", "--prefix", "--rev", &rev]);
    assert!(!o.ok() && !o.timed_out, "{o:#?}");
    assert!(
        o.stdout.contains("required revision has been compacted")
            || o.stderr.contains("required revision has been compacted"),
        "{o:#?}"
    );
    let o = c.ctl(&["compaction", &at]);
    assert!(!o.ok(), "{o:#?}");
    assert!(o.stderr.contains("required revision has been compacted"));
}

fn lease_id(o: &Out) -> String {
    // "lease 694d7e3ea5b6fb0b granted with TTL(60s)"
    let w: Vec<&str> = o.stdout.split_whitespace().collect();
    assert!(
        w.len() >= 3 && w[0] == "lease" && w[2] == "granted",
        "{o:#?}"
    );
    w[1].to_string()
}

#[test]
fn leases() {
    let Some(mut c) = cluster(EndpointForm::Http) else {
        return;
    };
    // Right after a grant every member reports at most the granted TTL
    // (followers ask the leader; etcd truncates: 29 of 30 at once).
    let short = lease_id(&c.ctl(&["lease", "grant", "30"]).expect_ok("grant 30"));
    for a in c.addrs() {
        let ep = c.form.write(&[a]);
        let args = ["lease", "timetolive", &short, "-w", "json"];
        let j = run(&mut etcdctl_cmd(&ep, &args), None, CTL_TIMEOUT).json();
        let ttl = j["ttl"].as_i64().expect("ttl");
        assert!(
            (25..=30).contains(&ttl) && j["granted-ttl"] == 30,
            "{ep}: {j}"
        );
    }
    c.ctl(&["lease", "revoke", &short]).expect_ok("revoke");
    let g = c.ctl(&["lease", "grant", "60"]).expect_ok("grant");
    let id = lease_id(&g);
    assert_eq!(g.stdout, format!("lease {id} granted with TTL(60s)\n"));
    let lease_flag = format!("--lease={id}");
    c.ctl(&["put", &lease_flag, "lk1", "v"]).expect_ok("put");
    c.ctl(&["put", &lease_flag, "lk2", "v"]).expect_ok("put");
    c.ctl(&["put", "plain", "v"]).expect_ok("put");
    let j = c.ctl(&["get", "lk1", "-w", "json"]).json();
    assert_eq!(
        format!("{:016x}", j["kvs"][0]["lease"].as_i64().unwrap_or(0)),
        id
    );

    let k = c
        .ctl(&["lease", "keep-alive", "--once", &id])
        .expect_ok("keep-alive");
    assert_eq!(k.stdout, format!("lease {id} keepalived with TTL(60)\n"));
    let t = c
        .ctl(&["lease", "timetolive", "--keys", &id])
        .expect_ok("ttl");
    assert!(
        t.stdout
            .starts_with(&format!("lease {id} granted with TTL(60s), remaining(")),
        "{t:#?}"
    );
    // etcd lists attached keys in no particular order.
    assert!(
        t.stdout.ends_with("attached keys([lk1 lk2])\n")
            || t.stdout.ends_with("attached keys([lk2 lk1])\n"),
        "{t:#?}"
    );
    let j = c
        .ctl(&["lease", "timetolive", "--keys", &id, "-w", "json"])
        .json();
    assert_eq!(j["granted-ttl"], 60, "{j}");
    let ttl = j["ttl"].as_i64().expect("ttl");
    assert!((55..=60).contains(&ttl), "{j}");
    let mut keys: Vec<String> = j["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    keys.sort();
    assert_eq!(keys, [b64(b"lk1"), b64(b"lk2")], "{j}");
    let l = c.ctl(&["lease", "list"]).expect_ok("list");
    assert_eq!(l.lines(), ["found 1 leases", id.as_str()]);

    let r = c.ctl(&["lease", "revoke", &id]).expect_ok("revoke");
    assert_eq!(r.stdout, format!("lease {id} revoked\n"));
    assert_eq!(c.ctl(&["get", "lk", "--prefix"]).stdout, "");
    assert_eq!(c.ctl(&["get", "plain"]).lines(), ["plain", "v"]);
    let t = c
        .ctl(&["lease", "timetolive", &id])
        .expect_ok("ttl after revoke");
    assert_eq!(t.stdout, format!("lease {id} already expired\n"));
    let r = c.ctl(&["lease", "revoke", &id]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("etcdserver: requested lease not found"),
        "{r:#?}"
    );

    // A lease nobody keeps alive expires with its keys.
    let id = lease_id(&c.ctl(&["lease", "grant", "2"]).expect_ok("grant 2"));
    let granted = Instant::now();
    c.ctl(&["put", &format!("--lease={id}"), "ek", "v"])
        .expect_ok("put");
    assert_eq!(c.ctl(&["get", "ek"]).lines(), ["ek", "v"]);
    let gone = wait_until(Duration::from_secs(15), || {
        c.ctl(&["get", "ek"]).stdout.is_empty().then(Instant::now)
    });
    let gone = gone.expect("leased key never expired");
    assert!(
        gone - granted >= Duration::from_millis(1500),
        "expired after only {:?}",
        gone - granted
    );
    let t = c.ctl(&["lease", "timetolive", &id]).expect_ok("ttl");
    assert_eq!(t.stdout, format!("lease {id} already expired\n"));
    let k = c.ctl(&["lease", "keep-alive", "--once", &id]);
    assert!(!k.ok(), "{k:#?}");
    assert!(k.stderr.contains("requested lease not found"), "{k:#?}");
}
