//! etcd semantics of each operation.

mod common;
use common::{b, H};
use concord_mvcc::*;

#[test]
fn versions_and_tombstones() {
    let mut h = H::new();
    // An empty store is at revision 1 (as etcd): the first write gets 2.
    assert_eq!(h.store.current_revision(), 1);
    assert_eq!(h.put("a", "1"), 2);
    assert_eq!(h.put("a", "2"), 3);
    let kv = h.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(h.del("a", ""), 1);
    assert_eq!(h.store.current_revision(), 4);
    assert!(h.get("a").is_none());
    assert_eq!(h.put("a", "3"), 5);
    let kv = h.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    // Deleting nothing does not bump the revision.
    assert_eq!(h.del("zz", ""), 0);
    assert_eq!(h.store.current_revision(), 5);
}

#[test]
fn historical_reads() {
    let mut h = H::new();
    h.put("a", "1");
    h.put("a", "2");
    h.del("a", "");
    // Writes are at revisions 2, 3 and 4 (the empty store is at 1).
    assert_eq!(h.get_at("a", 2).unwrap().value, b("1"));
    assert_eq!(h.get_at("a", 3).unwrap().value, b("2"));
    assert!(h.get_at("a", 4).is_none());
    let e = h.store.range(&RangeRequest {
        key: b("a"),
        revision: 5,
        ..Default::default()
    });
    assert_eq!(e.unwrap_err(), MvccError::FutureRevision);
}

#[test]
fn put_options() {
    let mut h = H::new();
    let id = match h.ok(Command::LeaseGrant {
        id: 7,
        ttl: 10,
        now_ms: 0,
    }) {
        Response::LeaseGrant { id, .. } => id,
        r => panic!("{r:?}"),
    };
    h.put_lease("a", "1", id);
    let r = h.ok(Command::Put(PutRequest {
        key: b("a"),
        ignore_value: true,
        ignore_lease: true,
        prev_kv: true,
        ..Default::default()
    }));
    let Response::Put(p) = r else { panic!() };
    assert_eq!(p.prev_kv.unwrap().value, b("1"));
    let kv = h.get("a").unwrap();
    assert_eq!((kv.value, kv.lease, kv.version), (b("1"), 7, 2));
    // Putting without a lease detaches it.
    h.put("a", "2");
    let ttl = h.store.lease_time_to_live(7, 0, true).unwrap();
    assert!(ttl.keys.is_empty());
}

fn fill(h: &mut H) {
    // a, b, c, d at revisions 2, 3, 4, 5 (the empty store is at 1).
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "0")] {
        h.put(k, v);
    }
    h.put("b", "9"); // b: version 2, mod 6
}

#[test]
fn range_limit_count_more() {
    let mut h = H::new();
    fill(&mut h);
    let r = h.range(RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        limit: 2,
        ..Default::default()
    });
    assert_eq!(r.kvs.len(), 2);
    assert!(r.more);
    assert_eq!(r.count, 4);
    let r = h.range(RangeRequest {
        key: b("a"),
        range_end: b("d"),
        limit: 3,
        ..Default::default()
    });
    assert_eq!((r.kvs.len(), r.more, r.count), (3, false, 3));
    let r = h.range(RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        count_only: true,
        ..Default::default()
    });
    assert_eq!((r.kvs.len(), r.count), (0, 4));
    let r = h.range(RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        keys_only: true,
        ..Default::default()
    });
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    // Filters: count stays the range's size (as etcd), more follows the filtered list.
    let r = h.range(RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        min_mod_revision: 4,
        ..Default::default()
    });
    let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("b"), b("c"), b("d")]);
    assert_eq!(r.count, 4);
    let r = h.range(RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        max_create_revision: 3,
        ..Default::default()
    });
    assert_eq!(r.kvs.len(), 2);
}

#[test]
fn range_sort() {
    let mut h = H::new();
    fill(&mut h);
    let keys = |r: RangeResponse| r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let all = |o, t| RangeRequest {
        key: b("a"),
        range_end: b("\0"),
        sort_order: o,
        sort_target: t,
        ..Default::default()
    };
    assert_eq!(
        keys(h.range(all(SortOrder::Descend, SortTarget::Key))),
        vec![b("d"), b("c"), b("b"), b("a")]
    );
    assert_eq!(
        keys(h.range(all(SortOrder::Ascend, SortTarget::Value))),
        vec![b("d"), b("c"), b("a"), b("b")]
    );
    assert_eq!(
        keys(h.range(all(SortOrder::Descend, SortTarget::Mod))),
        vec![b("b"), b("d"), b("c"), b("a")]
    );
    assert_eq!(
        keys(h.range(all(SortOrder::None, SortTarget::Version)))[3],
        b("b")
    );
    assert_eq!(
        keys(h.range(all(SortOrder::Descend, SortTarget::Create)))[0],
        b("d")
    );
    let mut r = all(SortOrder::Descend, SortTarget::Mod);
    r.limit = 1;
    let r = h.range(r);
    assert_eq!((r.kvs[0].key.clone(), r.more, r.count), (b("b"), true, 4));
}

#[test]
fn txn_sub_revisions_and_compares() {
    let mut h = H::new();
    h.put("a", "1"); // revision 2
    let cmp = |t| Compare {
        result: CompareResult::Equal,
        target: t,
        key: b("a"),
        range_end: Default::default(),
    };
    let put = |k: &str| {
        RequestOp::Put(PutRequest {
            key: b(k),
            value: b("x"),
            ..Default::default()
        })
    };
    let txn = TxnRequest {
        compare: vec![
            cmp(CompareTarget::Value(b("1"))),
            cmp(CompareTarget::Version(1)),
        ],
        success: vec![
            put("b"),
            put("c"),
            RequestOp::Range(RangeRequest {
                key: b("b"),
                ..Default::default()
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("a"),
                ..Default::default()
            }),
        ],
        failure: vec![],
    };
    let applied = h.run(Command::Txn(txn.clone()));
    let Ok(Response::Txn(t)) = applied.result else {
        panic!()
    };
    assert!(t.succeeded);
    assert_eq!(t.revision, 3);
    // The txn reads its own write.
    let ResponseOp::Range(r) = &t.responses[2] else {
        panic!()
    };
    assert_eq!(r.kvs[0].mod_revision, 3);
    let revs: Vec<_> = applied.events.iter().map(|e| e.revision).collect();
    assert_eq!(
        revs,
        vec![
            Revision::new(3, 0),
            Revision::new(3, 1),
            Revision::new(3, 2)
        ]
    );
    // Same txn again: compares fail, failure branch is empty, no bump.
    let Ok(Response::Txn(t)) = h.run(Command::Txn(txn)).result else {
        panic!()
    };
    assert!(!t.succeeded);
    assert_eq!(h.store.current_revision(), 3);
    // Range compare: every key in [b, d) has version 1 and mod revision 3; nested txn.
    let nested = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater,
            target: CompareTarget::Mod(2),
            key: b("b"),
            range_end: b("d"),
        }],
        success: vec![put("n")],
        failure: vec![],
    };
    let outer = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Less,
            target: CompareTarget::Version(2),
            key: b("b"),
            range_end: b("d"),
        }],
        success: vec![put("m"), RequestOp::Txn(nested)],
        failure: vec![],
    };
    let a = h.run(Command::Txn(outer));
    assert_eq!(a.events.len(), 2);
    assert_eq!(a.events[1].revision, Revision::new(4, 1));
    // Missing key: version/create/mod/lease compare as 0, value compare fails.
    let missing = |t, r| TxnRequest {
        compare: vec![Compare {
            result: r,
            target: t,
            key: b("zz"),
            range_end: Default::default(),
        }],
        ..Default::default()
    };
    for (t, r, want) in [
        (CompareTarget::Version(0), CompareResult::Equal, true),
        (CompareTarget::Lease(0), CompareResult::Equal, true),
        (CompareTarget::Create(0), CompareResult::NotEqual, false),
        (CompareTarget::Value(b("")), CompareResult::Equal, false),
    ] {
        let Ok(Response::Txn(t)) = h.run(Command::Txn(missing(t, r))).result else {
            panic!()
        };
        assert_eq!(t.succeeded, want);
    }
}

#[test]
fn compaction_errors() {
    let mut h = H::new();
    h.put("a", "1");
    h.put("a", "2");
    h.put("b", "1");
    h.del("b", "");
    // Writes are at revisions 2..=5 (the empty store is at 1).
    h.ok(Command::Compact { revision: 4 });
    assert_eq!(h.get_at("a", 4).unwrap().value, b("2"));
    let e = h.store.range(&RangeRequest {
        key: b("a"),
        revision: 3,
        ..Default::default()
    });
    assert_eq!(e.unwrap_err(), MvccError::Compacted);
    assert_eq!(
        h.err(Command::Compact { revision: 4 }),
        MvccError::Compacted
    );
    assert_eq!(
        h.err(Command::Compact { revision: 9 }),
        MvccError::FutureRevision
    );
    assert_eq!(
        h.err(Command::Compact { revision: 9 }).to_string(),
        "mvcc: required revision is a future revision"
    );
    h.ok(Command::Compact { revision: 5 });
    let all = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    assert_eq!(h.range(all).count, 1);
    assert_eq!(
        h.store.events_since(4, &b(""), &b(""), 0).unwrap_err(),
        EventsError::Compacted(Compacted {
            compact_revision: 5
        })
    );
}

#[test]
fn lease_revoke_deletes_in_one_revision() {
    let mut h = H::new();
    h.ok(Command::LeaseGrant {
        id: 5,
        ttl: 3,
        now_ms: 1000,
    });
    assert_eq!(
        h.err(Command::LeaseGrant {
            id: 5,
            ttl: 3,
            now_ms: 0
        }),
        MvccError::LeaseExists
    );
    // Granting a lease does not bump the revision: the puts are 2, 3, 4.
    h.put_lease("a", "1", 5);
    h.put_lease("b", "1", 5);
    h.put("c", "1");
    assert_eq!(h.store.expired_leases(3999), Vec::<i64>::new());
    assert_eq!(h.store.expired_leases(4000), vec![5]);
    // 1.5 s left: whole seconds, as etcd answers.
    let ttl = h.store.lease_time_to_live(5, 2500, true).unwrap();
    assert_eq!((ttl.ttl, ttl.granted_ttl, ttl.keys.len()), (1, 3, 2));
    let a = h.run(Command::LeaseRevoke { id: 5 });
    assert_eq!(a.events.len(), 2);
    assert!(a
        .events
        .iter()
        .all(|e| e.revision.main == 5 && e.kind == EventType::Delete));
    assert_eq!(h.store.current_revision(), 5);
    assert!(h.get("a").is_none() && h.get("c").is_some());
    assert_eq!(
        h.err(Command::LeaseRevoke { id: 5 }).to_string(),
        "etcdserver: requested lease not found"
    );
    assert!(h.store.leases().is_empty());
}

#[test]
fn lease_ttl_never_exceeds_the_grant_and_runs_on_the_applying_clock() {
    let mut h = H::new();
    // Proposed by a member whose clock reads 50 s; applied here at 10 s.
    h.store.set_clock(10_000);
    h.ok(Command::LeaseGrant {
        id: 9,
        ttl: 30,
        now_ms: 50_000,
    });
    let at = |h: &H, now| h.store.lease_time_to_live(9, now, false).unwrap().ttl;
    // Right after the grant: 29 (etcd truncates), never 31.
    assert_eq!(at(&h, 10_001), 29);
    assert_eq!(at(&h, 10_000), 30);
    // Even a clock that reads earlier than the grant reports at most 30.
    assert_eq!(at(&h, 0), 30);
    assert_eq!(h.store.lease_remaining(0), vec![(9, 30)]);
    assert_eq!(at(&h, 39_999), 0);
    assert_eq!(h.store.lease_remaining(39_001), vec![(9, 1)]);
    // Expiry on this member's clock, not the proposer's 80 s.
    assert_eq!(h.store.expired_leases(39_999), Vec::<i64>::new());
    assert_eq!(h.store.expired_leases(40_000), vec![9]);
}

#[test]
fn lease_checkpoint_survives_leader_change() {
    let mut h = H::new();
    let Response::LeaseGrant { id, .. } = h.ok(Command::LeaseGrant {
        id: 0,
        ttl: 100,
        now_ms: 0,
    }) else {
        panic!()
    };
    assert!(id > 0);
    let rem = h.store.lease_remaining(60_000);
    assert_eq!(rem, vec![(id, 40)]);
    h.ok(Command::LeaseCheckpoint { checkpoints: rem });
    h.reopen();
    // New leader: the clock restarts from the checkpoint, not from 100 s.
    assert_eq!(h.store.expired_leases(i64::MAX), Vec::<i64>::new());
    h.store.lease_promote(1_000_000);
    assert_eq!(
        h.store
            .lease_time_to_live(id, 1_000_000, false)
            .unwrap()
            .ttl,
        40
    );
    assert_eq!(h.store.expired_leases(1_040_000), vec![id]);
    h.store.lease_renew(id, 1_040_000).unwrap();
    assert!(h.store.expired_leases(1_040_000).is_empty());
}

#[test]
fn watch_events_no_gaps_no_dupes() {
    let mut h = H::new();
    let mut live = Vec::new();
    live.extend(
        h.run(Command::Put(PutRequest {
            key: b("a"),
            value: b("1"),
            ..Default::default()
        }))
        .events,
    );
    live.extend(
        h.run(Command::Put(PutRequest {
            key: b("b"),
            value: b("1"),
            ..Default::default()
        }))
        .events,
    );
    live.extend(
        h.run(Command::Put(PutRequest {
            key: b("a"),
            value: b("2"),
            ..Default::default()
        }))
        .events,
    );
    live.extend(
        h.run(Command::DeleteRange(DeleteRangeRequest {
            key: b("a"),
            range_end: b("c"),
            prev_kv: false,
        }))
        .events,
    );
    // Revisions 2, 3, 4 and 5 (the empty store is at 1): start at the first write.
    let all = h.store.events_since(2, &b(""), &b(""), 0).unwrap();
    assert_eq!(all, live);
    assert_eq!(all.len(), 5);
    assert_eq!(all[2].prev_kv.as_ref().unwrap().value, b("1"));
    assert_eq!(all[3].kind, EventType::Delete);
    assert_eq!(all[3].prev_kv.as_ref().unwrap().value, b("2"));
    // Pages of 1 never split a revision: resuming after the last one is exact.
    let mut paged: Vec<Event> = Vec::new();
    let mut next = 2;
    loop {
        let page = h.store.events_since(next, &b(""), &b(""), 1).unwrap();
        let Some(last) = page.last() else { break };
        next = last.revision.main + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let only_a = h.store.events_since(3, &b("a"), &b(""), 0).unwrap();
    assert_eq!(only_a.len(), 2);
    assert!(h
        .store
        .events_since(0, &b(""), &b(""), 0)
        .unwrap()
        .is_empty());
}

#[test]
fn hash_equal_for_same_history_and_different_otherwise() {
    let mut x = H::new();
    let mut y = H::new();
    for h in [&mut x, &mut y] {
        h.put("a", "1");
        h.put("b", "2");
        h.del("a", "");
    }
    assert_eq!(x.hash(), y.hash());
    // Revision 3 is the put of b, before the delete at 4.
    assert_eq!(x.store.hash_kv(3).unwrap(), y.store.hash_kv(3).unwrap());
    assert_ne!(x.store.hash_kv(3).unwrap().hash, x.hash());
    y.put("c", "3");
    x.put("c", "4");
    assert_ne!(x.hash(), y.hash());
}

#[test]
fn read_only_txn_is_served_without_a_write() {
    let mut h = H::new();
    h.put("a", "1");
    h.put("b", "2");
    let range = |k: &str| {
        RequestOp::Range(RangeRequest {
            key: b(k),
            ..Default::default()
        })
    };
    let cmp = |v: &str| Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Value(b(v)),
        key: b("a"),
        range_end: Default::default(),
    };
    for (value, succeeded) in [("1", true), ("9", false)] {
        let t = TxnRequest {
            compare: vec![cmp(value)],
            success: vec![
                range("a"),
                RequestOp::Txn(TxnRequest {
                    success: vec![range("b")],
                    ..Default::default()
                }),
            ],
            failure: vec![range("b")],
        };
        assert!(t.is_read_only());
        let read = h.store.read_txn(&t).unwrap();
        assert_eq!(read.succeeded, succeeded);
        assert_eq!(h.store.current_revision(), 3, "a read moved the revision");
        // Same answer as the write path gives.
        let Ok(Response::Txn(logged)) = h.run(Command::Txn(t)).result else {
            panic!("txn failed")
        };
        assert_eq!(read, logged);
    }
    // A txn that writes (even only in the branch not taken, or nested) is
    // not a read.
    let writes = TxnRequest {
        failure: vec![RequestOp::Txn(TxnRequest {
            success: vec![RequestOp::Put(PutRequest {
                key: b("c"),
                value: b("3"),
                ..Default::default()
            })],
            ..Default::default()
        })],
        ..Default::default()
    };
    assert!(!writes.is_read_only());
    assert_eq!(h.store.read_txn(&writes), Err(MvccError::NotReadOnly));
}

/// With events off, applying builds none, but history, revisions and the
/// store's hash are the same, and the events can be read back from history.
#[test]
fn events_off_changes_only_the_events() {
    let script = |h: &mut H| -> Vec<usize> {
        let del = Command::DeleteRange(DeleteRangeRequest {
            key: b("a"),
            range_end: b("c"),
            ..Default::default()
        });
        vec![
            h.run(put_cmd("a", "1")).events.len(),
            h.run(put_cmd("b", "2")).events.len(),
            h.run(del).events.len(),
        ]
    };
    let mut on = H::new();
    let mut off = H::new();
    off.store.set_events(false);
    assert_eq!(script(&mut on), vec![1, 1, 2]);
    assert_eq!(script(&mut off), vec![0, 0, 0]);
    assert_eq!(on.hash(), off.hash());
    assert_eq!(on.store.current_revision(), off.store.current_revision());
    let all = |h: &H| h.store.events_since(1, &b(""), &b(""), 0).unwrap();
    assert_eq!(all(&on).len(), 4);
    assert_eq!(all(&on), all(&off));
    off.store.set_events(true);
    assert_eq!(off.run(put_cmd("d", "4")).events.len(), 1);
}

fn put_cmd(k: &str, v: &str) -> Command {
    Command::Put(PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    })
}
