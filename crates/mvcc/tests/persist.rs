//! Persistence: reopen, idempotent replay, batches, snapshot/restore.

mod common;
use bytes::Bytes;
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
    let image = src.store.snapshot().unwrap();
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

#[test]
fn values_leave_memory_at_checkpoints_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    // A value cache of one byte: every read after a checkpoint goes to redb.
    let limits = Limits {
        value_cache_bytes: 1,
        ..Limits::default()
    };
    let mut store = Store::open_with(dir.path().join("db"), limits).unwrap();
    let mut index = 0;
    let mut apply = |store: &mut Store, cmd: Command| {
        index += 1;
        store.apply(index, &cmd).unwrap().unwrap()
    };
    let put = |k: &str, v: &str| {
        Command::Put(PutRequest {
            key: b(k),
            value: b(v),
            prev_kv: true,
            ..Default::default()
        })
    };
    for i in 0..300 {
        apply(
            &mut store,
            put(&format!("k{}", i % 30), &format!("v{i}-{}", "x".repeat(i))),
        );
    }
    let range_all = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    let before = (
        store.range(&range_all).unwrap(),
        store.hash_kv(0).unwrap(),
        store.events_since(2, &b(""), &b(""), 0).unwrap(),
    );
    assert!(store.resident_value_bytes() > 0);
    store.checkpoint().unwrap();
    assert_eq!(
        store.resident_value_bytes(),
        0,
        "written values left memory"
    );
    let after = (
        store.range(&range_all).unwrap(),
        store.hash_kv(0).unwrap(),
        store.events_since(2, &b(""), &b(""), 0).unwrap(),
    );
    assert_eq!(before, after);
    // Writes that read their previous value: prev_kv, a value compare,
    // a delete with prev_kvs.
    let Response::Put(p) = apply(&mut store, put("k3", "new")).result.unwrap() else {
        panic!()
    };
    assert_eq!(
        p.prev_kv.unwrap().value,
        before.0.kvs[23].value,
        "k3's value"
    );
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b("k4"),
            range_end: Bytes::new(),
            target: CompareTarget::Value(before.0.kvs[24].value.clone()),
            result: CompareResult::Equal,
        }],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("k4"),
            range_end: Bytes::new(),
            prev_kv: true,
        })],
        failure: vec![],
    };
    let Response::Txn(t) = apply(&mut store, Command::Txn(txn)).result.unwrap() else {
        panic!()
    };
    assert!(t.succeeded, "the value compare read k4 back from redb");
    let ResponseOp::DeleteRange(d) = &t.responses[0] else {
        panic!()
    };
    assert_eq!(d.prev_kvs[0].value, before.0.kvs[24].value);
}

#[test]
fn stepped_reads_match_whole_reads_across_compaction_and_checkpoints() {
    let mut h = H::new();
    for i in 0..400 {
        h.put(&format!("k{:03}", i % 97), &format!("v{i}"));
    }
    h.store.checkpoint().unwrap();
    for i in 0..50 {
        h.put(&format!("k{:03}", i * 2), &format!("w{i}"));
    }
    let all = RangeRequest {
        key: b("k"),
        range_end: b("l"),
        ..Default::default()
    };
    let whole = h.store.range(&all).unwrap();
    // In steps of 7 keys, with a compaction and a checkpoint in between.
    let mut r = h.store.range_start(&all).unwrap();
    assert!(!h.store.range_step(&mut r, 7).unwrap());
    let rev = h.store.current_revision();
    h.ok(Command::Compact { revision: rev });
    h.store.checkpoint().unwrap();
    while !h.store.range_step(&mut r, 7).unwrap() {}
    assert!(r.backend_reads() > 0);
    assert_eq!(r.finish().unwrap(), whole);
    // A compaction past the read's revision fails it, as etcd's would.
    let old = RangeRequest {
        revision: rev,
        ..all.clone()
    };
    let mut r = h.store.range_start(&old).unwrap();
    h.put("later", "x");
    h.ok(Command::Compact { revision: rev + 1 });
    assert_eq!(h.store.range_step(&mut r, 7), Err(MvccError::Compacted));

    // History in steps hashes as the whole store does.
    h.store.checkpoint().unwrap();
    h.put("fresh", "in memory");
    let want = h.store.hash_kv(0).unwrap();
    let mut read = h.store.history_read(0).unwrap();
    let mut hasher = KvHasher::new(read.compact_revision);
    loop {
        let items = h.store.history_step(&mut read, 10).unwrap();
        if items.is_empty() {
            break;
        }
        read.visit(&items, |it, v| {
            hasher.add_with_value(it.revision, &it.record, v);
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(hasher.finish(), want.hash);
    // A compaction during a history read fails it.
    let mut read = h.store.history_read(0).unwrap();
    h.store.history_step(&mut read, 1).unwrap();
    h.put("more", "x");
    let now = h.store.current_revision();
    h.ok(Command::Compact { revision: now });
    assert_eq!(
        h.store.history_step(&mut read, 1),
        Err(MvccError::Compacted)
    );
}
