//! Limits as etcd applies them, over real processes: the backend quota
//! and the NOSPACE alarm (what it refuses, what it lets an operator do to
//! free space, defragment shrinking the file, disarm), `--max-txn-ops`,
//! oversized requests, and periodic auto compaction.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

/// Runs `f` with a client of `addr` on a fresh runtime.
fn with_client<T: Send + 'static>(
    addr: &str,
    f: impl FnOnce(
            etcd_client::Client,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
        + Send
        + 'static,
) -> T {
    let addr = addr.to_string();
    block_on_thread(async move {
        let c = client(&[addr]).await.expect("client");
        f(c).await
    })
}

fn grpc_err(e: etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other}"),
    }
}

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

fn db_size(c: &mut Cluster, i: usize) -> i64 {
    let o = run(
        &mut etcdctl_cmd(&c.addrs()[i], &["endpoint", "status", "-w", "json"]),
        None,
        CTL_TIMEOUT,
    );
    o.json()[0]["Status"]["dbSize"].as_i64().expect("dbSize")
}

#[test]
fn nospace_refuses_what_costs_space_and_lets_the_operator_free_it() {
    if !have_etcdctl() {
        return;
    }
    let quota = 8 << 20;
    let mut c = Cluster::start_with_args(3, &["--quota-backend-bytes", &quota.to_string()]);
    let a = c.addrs()[0].clone();
    // A lease to revoke later, and keys to delete.
    let lease = with_client(&a, |mut cl| {
        Box::pin(async move { cl.lease_grant(600, None).await.unwrap().id() })
    });
    // Fill the backend with 1 MiB values until the quota refuses.
    let refused = with_client(&a, move |mut cl| {
        Box::pin(async move {
            for i in 0..200 {
                let v = vec![b'v'; 1 << 20];
                match cl.put(format!("big/{i}"), v, None).await {
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => return Some((i, grpc_err(e))),
                }
            }
            None
        })
    });
    let (n, (code, msg)) = refused.expect("the quota never refused a put");
    assert!(n >= 3, "refused after {n} puts");
    assert_eq!(
        (code, msg.as_str()),
        (tonic::Code::ResourceExhausted, NOSPACE)
    );
    let alarms = c.ctl(&["alarm", "list"]).expect_ok("alarm list");
    assert!(alarms.stdout.contains("alarm:NOSPACE"), "{alarms:#?}");

    // Refused while NOSPACE is raised: puts, txns with a put (even in the
    // branch that would not run), lease grants.
    let outcomes = with_client(&a, move |mut cl| {
        Box::pin(async move {
            let put = cl.put("small", "v", None).await.map(|_| ());
            let txn = Txn::new()
                .when([Compare::version("nothing", CompareOp::Greater, 5)])
                .and_then([TxnOp::put("x", "y", None)])
                .or_else([TxnOp::get("x", None)]);
            let txn = cl.txn(txn).await.map(|_| ());
            let grant = cl.lease_grant(60, None).await.map(|_| ());
            // Allowed: deletes, a delete-only txn, revoking a lease.
            let del = cl.delete("big/0", None).await.map(|_| ());
            let del_txn = Txn::new().and_then([TxnOp::delete("big/1", None)]);
            let del_txn = cl.txn(del_txn).await.map(|_| ());
            let revoke = cl.lease_revoke(lease).await.map(|_| ());
            (put, txn, grant, del, del_txn, revoke)
        })
    });
    for r in [outcomes.0, outcomes.1, outcomes.2] {
        let (code, msg) = grpc_err(r.expect_err("costs space: refused"));
        assert_eq!(
            (code, msg.as_str()),
            (tonic::Code::ResourceExhausted, NOSPACE)
        );
    }
    for r in [outcomes.3, outcomes.4, outcomes.5] {
        r.expect("frees space: allowed under NOSPACE");
    }

    // The operator's way out: delete, compact, defragment, disarm.
    c.ctl(&["del", "big/", "--prefix"]).expect_ok("del");
    let rev = c.ctl(&["get", "x", "-w", "json"]).json()["header"]["revision"]
        .as_i64()
        .unwrap();
    c.ctl(&["compact", &rev.to_string()]).expect_ok("compact");
    std::thread::sleep(Duration::from_millis(1500)); // the checkpoint
    for i in 0..3 {
        let before = db_size(&mut c, i);
        let ep = c.addrs()[i].clone();
        let o = run(&mut etcdctl_cmd(&ep, &["defrag"]), None, CTL_TIMEOUT);
        assert!(
            o.stdout.contains("Finished defragmenting etcd member"),
            "{o:#?}"
        );
        let after = db_size(&mut c, i);
        assert!(
            after < before && after < quota,
            "member {i}: {before} -> {after}"
        );
    }
    c.ctl(&["alarm", "disarm"]).expect_ok("disarm");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.ctl(&["alarm", "list"]).stdout, "");
    c.ctl(&["put", "after", "ok"]).expect_ok("put after disarm");
}

#[test]
fn txn_ops_and_request_sizes_are_bounded_as_etcd_bounds_them() {
    let c = Cluster::start_with_args(3, &["--max-txn-ops", "4"]);
    let a = c.addrs()[0].clone();
    let r = with_client(&a, |mut cl| {
        Box::pin(async move {
            let ops = |n: usize| {
                (0..n)
                    .map(|i| TxnOp::put(format!("t{i}"), "v", None))
                    .collect::<Vec<_>>()
            };
            let four = cl.txn(Txn::new().and_then(ops(4))).await.map(|_| ());
            let five = cl.txn(Txn::new().and_then(ops(5))).await.map(|_| ());
            // Nested: the inner txn gets what the outer one leaves (4 - 3).
            let inner = Txn::new().and_then(ops(2));
            let mut outer = ops(2);
            outer.push(TxnOp::txn(inner));
            let nested = cl.txn(Txn::new().and_then(outer)).await.map(|_| ());
            // Over --max-request-bytes: etcd's message; over the gRPC
            // limit (request bytes + 512 KiB): ResourceExhausted.
            let large = cl.put("l", vec![0u8; 1_700_000], None).await.map(|_| ());
            let huge = cl.put("h", vec![0u8; 2_300_000], None).await.map(|_| ());
            (four, five, nested, large, huge)
        })
    });
    r.0.expect("four ops are within --max-txn-ops 4");
    let too_many = (
        tonic::Code::InvalidArgument,
        "etcdserver: too many operations in txn request".to_string(),
    );
    assert_eq!(grpc_err(r.1.unwrap_err()), too_many);
    assert_eq!(grpc_err(r.2.unwrap_err()), too_many);
    assert_eq!(
        grpc_err(r.3.unwrap_err()),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large".to_string()
        )
    );
    let (code, msg) = grpc_err(r.4.unwrap_err());
    assert_eq!(code, tonic::Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("received message larger than max"), "{msg}");
}

#[test]
fn periodic_auto_compaction_drops_history_older_than_the_retention() {
    let c = Cluster::start_with_args(
        3,
        &[
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1s",
        ],
    );
    let a = c.addrs()[0].clone();
    let compacted = with_client(&a, |mut cl| {
        Box::pin(async move {
            let first = cl
                .put("p", "0", None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision();
            for i in 1..40 {
                cl.put("p", i.to_string(), None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let old = cl
                .get("p", Some(GetOptions::new().with_revision(first)))
                .await;
            let now = cl.get("p", None).await.unwrap();
            (old.map(|_| ()), now.kvs()[0].value().to_vec())
        })
    });
    let (code, msg) = grpc_err(compacted.0.expect_err("history older than 1 s stays"));
    assert_eq!(code, tonic::Code::OutOfRange);
    assert_eq!(
        msg,
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(compacted.1, b"39");
}
