//! Persistence: reopen, idempotent replay, batches, snapshot/restore.

mod common;
use common::{b, H};
use concord_mvcc::*;

fn workload(h: &mut H) {
    h.ok(Command::LeaseGrant {
        id: 9,
        ttl: 30,
        now_ms: 0,
    });
    h.put("a", "1");
    h.put_lease("b", "2", 9);
    h.put("a", "3");
    h.del("a", "");
    h.put("c", "4");
    // The empty store is at revision 1 and the lease grant does not bump it:
    // the writes are revisions 2..=6; this compacts at the second put of a.
    h.ok(Command::Compact { revision: 4 });
}

#[test]
fn reopen_gives_same_state_and_applied_index() {
    let mut h = H::new();
    workload(&mut h);
    let (hash, rev, applied) = (
        h.store.hash_kv(0).unwrap(),
        h.store.current_revision(),
        h.store.applied_index(),
    );
    h.reopen();
    assert_eq!(h.store.hash_kv(0).unwrap(), hash);
    assert_eq!(h.store.current_revision(), rev);
    assert_eq!(h.store.compact_revision(), 4);
    assert_eq!(h.store.applied_index(), applied);
    assert_eq!(
        h.store.lease_time_to_live(9, 0, true).unwrap().keys,
        vec![b("b")]
    );
    // And it goes on where it stopped.
    assert_eq!(h.put("d", "5"), rev + 1);
}

#[test]
fn replaying_applied_indexes_is_a_noop() {
    let mut h = H::new();
    workload(&mut h);
    let hash = h.hash();
    let n = h.index;
    for i in 1..=n {
        let cmd = Command::Put(PutRequest {
            key: b("zzz"),
            value: b("x"),
            ..Default::default()
        });
        assert!(h.store.apply(i, &cmd).unwrap().is_none());
    }
    h.reopen();
    let batch: Vec<_> = (1..=n)
        .map(|i| (i, Command::Compact { revision: i as i64 }))
        .collect();
    assert!(h.store.apply_batch(&batch).unwrap().is_empty());
    assert_eq!(h.hash(), hash);
    assert_eq!(h.store.applied_index(), n);
}

#[test]
fn batch_applies_in_one_transaction_and_persists() {
    let mut h = H::new();
    let batch: Vec<_> = (1..=100u64)
        .map(|i| {
            let key = format!("k{:03}", i % 10);
            (
                i,
                Command::Put(PutRequest {
                    key: b(&key),
                    value: b("v"),
                    ..Default::default()
                }),
            )
        })
        .collect();
    let out = h.store.apply_batch(&batch).unwrap();
    assert_eq!(out.len(), 100);
    // 100 puts after the empty store's revision 1.
    assert_eq!(out.last().unwrap().revision, 101);
    // Partially overlapping batch: only the new indexes apply.
    let more: Vec<_> = (95..=105u64).map(|i| (i, Command::Noop)).collect();
    assert_eq!(h.store.apply_batch(&more).unwrap().len(), 5);
    assert_eq!(h.store.checkpoint().unwrap(), 105);
    assert_eq!(h.store.durable_applied_index(), 105);
    let hash = h.hash();
    h.reopen();
    assert_eq!(h.store.applied_index(), 105);
    assert_eq!(h.hash(), hash);
    assert_eq!(h.get("k003").unwrap().version, 10);
}

#[test]
fn snapshot_restore_gives_identical_hash() {
    let mut src = H::new();
    workload(&mut src);
    let image = src.store.snapshot();
    let mut dst = H::new();
    dst.put("junk", "x");
    dst.store.restore(&image).unwrap();
    assert_eq!(dst.store.hash_kv(0).unwrap(), src.store.hash_kv(0).unwrap());
    assert_eq!(dst.store.applied_index(), src.store.applied_index());
    assert!(dst.get("junk").is_none());
    dst.reopen();
    assert_eq!(dst.store.hash_kv(0).unwrap(), src.store.hash_kv(0).unwrap());
    assert_eq!(dst.store.leases(), src.store.leases());
    // Both go on identically.
    dst.index = src.index;
    assert_eq!(src.put("e", "1"), dst.put("e", "1"));
    assert_eq!(dst.hash(), src.hash());
    // A damaged image is refused and changes nothing.
    let before = dst.hash();
    let mut bad = image.clone();
    bad[10] ^= 1;
    assert!(matches!(dst.store.restore(&bad), Err(MvccError::Codec(_))));
    assert!(dst.store.restore(&image[..image.len() - 1]).is_err());
    assert!(dst.store.restore(b"nope").is_err());
    assert_eq!(dst.hash(), before);
}

#[test]
fn defragment_shrinks_the_file_and_keeps_everything() {
    let mut h = H::new();
    let big = "x".repeat(4096);
    for i in 0..3000 {
        h.put(&format!("k{}", i % 50), &big);
    }
    h.store.checkpoint().unwrap();
    // Compaction frees the old revisions' pages, but the file keeps them.
    let rev = h.store.current_revision();
    h.ok(Command::Compact { revision: rev });
    h.store.checkpoint().unwrap();
    let hash = h.store.hash_kv(0).unwrap();
    let path = h.dir.path().join("db");
    let (before, after) = h.store.defragment(&path).unwrap();
    assert!(after * 4 < before, "defragment: {before} -> {after} bytes");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), after);
    assert_eq!(h.store.hash_kv(0).unwrap(), hash);
    h.put("after", "defrag");
    h.reopen();
    assert_eq!(h.store.hash_kv(0).unwrap().revision, rev + 1);
    assert_eq!(h.get("k7").unwrap().value.len(), 4096);
}
