//! Bad input: a precise error, and nothing changes.

mod common;
use common::{b, H};
use concord_mvcc::*;

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: b(k),
        value: b(v),
        ..Default::default()
    }
}

/// Runs `cmd`, expects `want`, and checks that hash and revision are unchanged.
fn refused(h: &mut H, cmd: Command, want: MvccError) {
    let (hash, rev, leases) = (h.hash(), h.store.current_revision(), h.store.leases());
    let a = h.run(cmd);
    assert_eq!(a.result.unwrap_err(), want);
    assert!(a.events.is_empty());
    assert_eq!(h.hash(), hash);
    assert_eq!(h.store.current_revision(), rev);
    assert_eq!(h.store.leases(), leases);
}

#[test]
fn bad_writes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_request_bytes: 64,
        max_txn_ops: 4,
        ..Default::default()
    };
    let store = Store::open_with(dir.path().join("db"), limits).unwrap();
    let mut h = H {
        dir,
        store,
        index: 0,
    };
    h.put("a", "1");
    h.ok(Command::LeaseGrant {
        id: 1,
        ttl: 5,
        now_ms: 0,
    });
    refused(&mut h, Command::Put(put("", "x")), MvccError::EmptyKey);
    refused(
        &mut h,
        Command::Put(put("k", &"x".repeat(64))),
        MvccError::RequestTooLarge,
    );
    refused(
        &mut h,
        Command::Put(PutRequest {
            lease: 42,
            ..put("k", "v")
        }),
        MvccError::LeaseNotFound,
    );
    refused(
        &mut h,
        Command::Put(PutRequest {
            ignore_value: true,
            ..put("zz", "")
        }),
        MvccError::KeyNotFound,
    );
    refused(
        &mut h,
        Command::Put(PutRequest {
            ignore_value: true,
            ..put("a", "v")
        }),
        MvccError::ValueProvided,
    );
    refused(
        &mut h,
        Command::Put(PutRequest {
            ignore_lease: true,
            lease: 1,
            ..put("a", "")
        }),
        MvccError::LeaseProvided,
    );
    let del = |k: &str, e: &str| {
        Command::DeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(e),
            prev_kv: false,
        })
    };
    refused(&mut h, del("b", "a"), MvccError::InvalidRange);
    refused(&mut h, del("", ""), MvccError::EmptyKey);
    refused(
        &mut h,
        Command::Compact { revision: 50 },
        MvccError::FutureRevision,
    );
    refused(
        &mut h,
        Command::LeaseRevoke { id: 77 },
        MvccError::LeaseNotFound,
    );
    refused(
        &mut h,
        Command::LeaseGrant {
            id: 1,
            ttl: 5,
            now_ms: 0,
        },
        MvccError::LeaseExists,
    );
    refused(
        &mut h,
        Command::LeaseGrant {
            id: 2,
            ttl: MAX_LEASE_TTL + 1,
            now_ms: 0,
        },
        MvccError::LeaseTtlTooLarge,
    );
    // A txn whose second op is invalid applies none of its ops.
    let txn = |ops: Vec<RequestOp>| {
        Command::Txn(TxnRequest {
            compare: vec![],
            success: ops,
            failure: vec![],
        })
    };
    refused(
        &mut h,
        txn(vec![
            RequestOp::Put(put("n", "1")),
            RequestOp::Put(PutRequest {
                lease: 9,
                ..put("m", "1")
            }),
        ]),
        MvccError::LeaseNotFound,
    );
    refused(
        &mut h,
        txn(vec![
            RequestOp::Put(put("n", "1")),
            RequestOp::Txn(TxnRequest {
                success: vec![RequestOp::Range(RangeRequest {
                    key: b("a"),
                    revision: 99,
                    ..Default::default()
                })],
                ..Default::default()
            }),
        ]),
        MvccError::FutureRevision,
    );
    refused(
        &mut h,
        txn(vec![RequestOp::Put(put("n", "1")); 5]),
        MvccError::TooManyTxnOps,
    );
    refused(
        &mut h,
        txn(vec![
            RequestOp::Put(put("n", "1")),
            RequestOp::Put(put("", "1")),
        ]),
        MvccError::EmptyKey,
    );
    // The failure branch is checked statically too, even when not taken.
    refused(
        &mut h,
        Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(put("n", "1"))],
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("z"),
                range_end: b("a"),
                prev_kv: false,
            })],
        }),
        MvccError::InvalidRange,
    );
    // etcd's duplicate-key rule, nested txns included.
    let nested = |success, failure| {
        RequestOp::Txn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })
    };
    let p = |k: &str| RequestOp::Put(put(k, "1"));
    let d = |k: &str, e: &str| {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(e),
            prev_kv: false,
        })
    };
    refused(&mut h, txn(vec![p("n"), p("n")]), MvccError::DuplicateKey);
    refused(
        &mut h,
        txn(vec![d("a", "z"), p("n")]),
        MvccError::DuplicateKey,
    );
    refused(
        &mut h,
        txn(vec![p("n"), nested(vec![p("n")], vec![])]),
        MvccError::DuplicateKey,
    );
    refused(
        &mut h,
        txn(vec![d("m", "\0"), nested(vec![], vec![p("n")])]),
        MvccError::DuplicateKey,
    );
    // Then and else of a nested txn exclude each other: the same key is fine.
    let a = h.run(txn(vec![nested(vec![p("n")], vec![p("n")]), p("o")]));
    assert!(a.result.is_ok());
    // The index was still consumed by each refused entry.
    assert_eq!(h.store.applied_index(), h.index);
}

#[test]
fn bad_reads_and_messages() {
    let mut h = H::new();
    h.put("a", "1");
    h.put("a", "2");
    h.put("a", "3");
    // An empty store is at revision 1, so the puts are revisions 2, 3, 4.
    h.ok(Command::Compact { revision: 3 });
    let read = |rev| RangeRequest {
        key: b("a"),
        revision: rev,
        ..Default::default()
    };
    assert_eq!(
        h.store.range(&read(2)).unwrap_err().to_string(),
        "mvcc: required revision has been compacted"
    );
    assert_eq!(
        h.store.range(&read(5)).unwrap_err().to_string(),
        "mvcc: required revision is a future revision"
    );
    assert_eq!(h.store.range(&read(3)).unwrap().kvs[0].value, b("2"));
    let e = h
        .store
        .range(&RangeRequest {
            key: b(""),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: key is not provided");
    assert_eq!(h.store.hash_kv(1).unwrap_err(), MvccError::Compacted);
    assert_eq!(
        MvccError::LeaseExists.to_string(),
        "etcdserver: lease already exists"
    );
    assert_eq!(
        MvccError::RequestTooLarge.to_string(),
        "etcdserver: request is too large"
    );
    assert!(Command::decode(&[1, 0xff, 0xff]).is_err());
}
