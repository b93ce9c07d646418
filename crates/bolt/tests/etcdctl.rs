//! Checks files against the real `etcdctl` (3.4): `snapshot status` must
//! report what we wrote, and `snapshot restore` must accept the file.
//! Skipped (with a message) when `etcdctl` is not on PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use concord_bolt::etcd::{self, etcd_revision_key};
use concord_bolt::{with_sha256_trailer, write_db, Bucket};

/// `etcdctl` on PATH, if any.
fn etcdctl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcdctl"))
        .find(|p| p.is_file())
}

fn run(bin: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl");
    println!("$ etcdctl {}", args.join(" "));
    println!("exit: {}", out.status);
    println!("stdout: {}", String::from_utf8_lossy(&out.stdout));
    println!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Appends a protobuf varint.
fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a length-delimited protobuf field.
fn bytes_field(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(buf, field << 3 | 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Appends a varint protobuf field (skipped when zero, as proto3 does).
fn int_field(buf: &mut Vec<u8>, field: u64, v: i64) {
    if v != 0 {
        varint(buf, field << 3);
        varint(buf, v as u64);
    }
}

/// A protobuf `mvccpb.KeyValue`.
fn key_value(key: &[u8], create: i64, modified: i64, version: i64, value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    bytes_field(&mut buf, 1, key);
    int_field(&mut buf, 2, create);
    int_field(&mut buf, 3, modified);
    int_field(&mut buf, 4, version);
    bytes_field(&mut buf, 5, value);
    buf
}

/// etcd's layout after `puts` puts of distinct keys at revisions
/// 2..=puts+1. With `history`, also: one 20 KiB value (an overflow page), a
/// delete of the first key at revision puts+2 (a tombstone), a compaction at
/// revision 2, and a lease.
fn etcd_layout(puts: i64, history: bool) -> Vec<Bucket> {
    let name = |i: i64| format!("/registry/key-{i:06}");
    let mut keys: Vec<(Vec<u8>, Vec<u8>)> = (0..puts)
        .map(|i| {
            let rev = i + 2;
            let key = name(i);
            let value = if history && i == puts / 2 {
                vec![b'x'; 20 * 1024]
            } else {
                format!("value of {key}, written at revision {rev}")
                    .repeat(3)
                    .into_bytes()
            };
            let kv = key_value(key.as_bytes(), rev, rev, 1, &value);
            (etcd_revision_key(rev, 0, false), kv)
        })
        .collect();
    let consistent_index = (puts as u64 + 5).to_be_bytes().to_vec();
    let mut meta = vec![(etcd::CONSISTENT_INDEX.to_vec(), consistent_index)];
    let mut leases = vec![];
    if history {
        // A tombstone's value holds just the key.
        let tombstone = key_value(name(0).as_bytes(), 0, 0, 0, b"");
        keys.push((etcd_revision_key(puts + 2, 0, true), tombstone));
        meta.push((
            etcd::FINISHED_COMPACT_REV.to_vec(),
            etcd_revision_key(2, 0, false),
        ));
        meta.push((
            etcd::SCHEDULED_COMPACT_REV.to_vec(),
            etcd_revision_key(2, 0, false),
        ));
        meta.sort();
        // leasepb.Lease { ID: 0x1234, TTL: 60 }.
        let mut lease = Vec::new();
        int_field(&mut lease, 1, 0x1234);
        int_field(&mut lease, 2, 60);
        leases.push((0x1234u64.to_be_bytes().to_vec(), lease));
    }
    vec![
        Bucket::new(etcd::KEY, keys),
        Bucket::new(etcd::META, meta),
        Bucket::new(etcd::LEASE, leases),
        Bucket::new(etcd::MEMBERS, vec![]),
        Bucket::new(etcd::MEMBERS_REMOVED, vec![]),
        Bucket::new(etcd::CLUSTER, vec![]),
        Bucket::new(etcd::ALARM, vec![]),
        Bucket::new(etcd::AUTH, vec![]),
        Bucket::new(etcd::AUTH_USERS, vec![]),
        Bucket::new(etcd::AUTH_ROLES, vec![]),
    ]
}

/// What `etcdctl snapshot status` computes: crc32c over each bucket's name
/// and then its keys and values, buckets in name order.
fn etcd_hash(buckets: &[Bucket]) -> u32 {
    let mut sorted: Vec<&Bucket> = buckets.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut crc = 0;
    for b in sorted {
        crc = crc32c::crc32c_append(crc, &b.name);
        for (k, v) in &b.items {
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
        }
    }
    crc
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write snapshot file");
    path
}

/// Runs `etcdctl snapshot status -w json` on `path`.
fn status(bin: &Path, path: &Path) -> serde_json::Value {
    let out = run(
        bin,
        &["snapshot", "status", path.to_str().unwrap(), "-w", "json"],
    );
    assert!(out.status.success(), "etcdctl snapshot status failed");
    serde_json::from_slice(&out.stdout).expect("json status")
}

#[test]
fn etcdctl_snapshot_status_accepts_our_file() {
    let Some(bin) = etcdctl() else {
        println!("skipped: etcdctl not found on PATH");
        return;
    };
    for (puts, history, revision) in [
        (1000, false, 1001),
        (100_000, false, 100_001),
        (1000, true, 1002),
    ] {
        let buckets = etcd_layout(puts, history);
        let mut db = Vec::new();
        let size = write_db(&buckets, &mut db).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "snapshot.db", &db);
        let status = status(&bin, &path);
        let total: usize = buckets.iter().map(|b| b.items.len()).sum();
        assert_eq!(status["revision"], revision);
        assert_eq!(status["totalKey"], total);
        assert_eq!(status["totalSize"], size);
        assert_eq!(status["hash"], etcd_hash(&buckets));
        // The table form too, as a person would read it.
        let out = run(
            &bin,
            &["snapshot", "status", path.to_str().unwrap(), "-w", "table"],
        );
        assert!(out.status.success());
    }
}

#[test]
fn etcdctl_snapshot_status_rejects_a_damaged_file() {
    let Some(bin) = etcdctl() else {
        println!("skipped: etcdctl not found on PATH");
        return;
    };
    let mut db = Vec::new();
    write_db(&etcd_layout(1000, false), &mut db).unwrap();
    // Make the first leaf of the `key` bucket claim to be page 4. (Damage
    // bbolt 1.3's check reports cleanly: it crashes on some other kinds.)
    db[3 * 4096] = 4;
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "broken.db", &db);
    let out = run(
        &bin,
        &["snapshot", "status", path.to_str().unwrap(), "-w", "json"],
    );
    assert!(!out.status.success(), "a damaged file must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("integrity check failed"), "{stderr}");
}

#[test]
fn etcdctl_snapshot_restore_accepts_our_file() {
    let Some(bin) = etcdctl() else {
        println!("skipped: etcdctl not found on PATH");
        return;
    };
    for history in [false, true] {
        let buckets = etcd_layout(1000, history);
        let mut db = Vec::new();
        write_db(&buckets, &mut db).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "snapshot.db", &with_sha256_trailer(db.clone()));
        let data_dir = dir.path().join("restored");
        let (path, data) = (path.to_str().unwrap(), data_dir.to_str().unwrap());
        let out = run(&bin, &["snapshot", "restore", path, "--data-dir", data]);
        assert!(out.status.success(), "etcdctl snapshot restore failed");
        let restored = data_dir.join("member").join("snap").join("db");
        assert!(restored.is_file(), "restore wrote no backend file");

        // The restored backend is etcd's own rewrite of our file (it opened
        // it with bbolt and committed to it): it still holds every revision,
        // our reader can read it, and etcdctl reports the same revision.
        let bytes = std::fs::read(&restored).unwrap();
        let back = concord_bolt::read_db(&bytes).expect("read etcd's rewrite of our file");
        let key = back
            .iter()
            .find(|b| b.name == etcd::KEY)
            .expect("key bucket");
        assert_eq!(key.items, buckets[0].items);
        let status = status(&bin, &restored);
        assert_eq!(status["revision"], if history { 1002 } else { 1001 });
    }

    // Without the trailer restore refuses (unless told to skip the check).
    let mut db = Vec::new();
    write_db(&etcd_layout(10, false), &mut db).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bare = write_file(dir.path(), "bare.db", &db);
    let data_dir = dir.path().join("bare");
    let args = [
        "snapshot",
        "restore",
        bare.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    let out = run(&bin, &args);
    assert!(
        !out.status.success(),
        "restore without sha256 trailer should fail"
    );
    // (The failed attempt left its data dir behind: use a fresh one.)
    let data_dir = dir.path().join("skipped");
    let args = [
        "snapshot",
        "restore",
        bare.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    let out = run(&bin, &[&args[..], &["--skip-hash-check"]].concat());
    assert!(
        out.status.success(),
        "restore with --skip-hash-check should pass"
    );
}
