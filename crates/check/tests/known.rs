//! Hand-written histories with known verdicts.

use std::time::Duration;

use concord_check::{
    check, Cmp, Command, Compare, History, Operation, Output, TxnOp, Verdict, Violation,
};

fn op(client: u64, command: Command, invoke: u64, complete: u64, result: Output) -> Operation {
    Operation {
        client,
        command,
        invoke,
        complete: Some(complete),
        result: Some(result),
    }
}

fn put(client: u64, key: &str, value: &str, invoke: u64, complete: u64) -> Operation {
    let command = Command::Put {
        key: key.into(),
        value: value.into(),
    };
    op(client, command, invoke, complete, Output::Put)
}

fn get(client: u64, key: &str, value: Option<&str>, invoke: u64, complete: u64) -> Operation {
    let command = Command::Get { key: key.into() };
    let value = value.map(String::from);
    op(client, command, invoke, complete, Output::Get { value })
}

fn del(client: u64, key: &str, deleted: u64, invoke: u64, complete: u64) -> Operation {
    let command = Command::Delete { key: key.into() };
    let deleted = Some(deleted);
    op(
        client,
        command,
        invoke,
        complete,
        Output::Delete { deleted },
    )
}

fn cas(
    client: u64,
    key: &str,
    from: Option<&str>,
    to: &str,
    ok: bool,
    inv: u64,
    comp: u64,
) -> Operation {
    let command = Command::Cas {
        key: key.into(),
        expected: from.map(String::from),
        value: to.into(),
    };
    op(client, command, inv, comp, Output::Cas { ok })
}

/// The response never arrived.
fn lost(mut op: Operation) -> Operation {
    op.complete = None;
    op.result = None;
    op
}

fn verdict(ops: Vec<Operation>) -> Verdict {
    check(&History::new(ops).unwrap(), Duration::from_secs(10)).verdict
}

fn assert_ok(ops: Vec<Operation>) {
    let v = verdict(ops);
    assert_eq!(v, Verdict::Linearizable, "{v:?}");
}

fn violation(ops: Vec<Operation>) -> Violation {
    match verdict(ops) {
        Verdict::NotLinearizable(v) => *v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_history_passes() {
    assert_ok(vec![
        get(1, "k", None, 0, 1),
        put(1, "k", "a", 2, 3),
        get(2, "k", Some("a"), 4, 5),
        cas(1, "k", Some("b"), "x", false, 6, 7),
        cas(2, "k", Some("a"), "b", true, 8, 9),
        del(1, "k", 1, 10, 11),
        del(1, "k", 0, 12, 13),
        cas(2, "k", None, "c", true, 14, 15),
        get(3, "k", Some("c"), 16, 17),
    ]);
}

#[test]
fn concurrent_overlapping_history_passes() {
    assert_ok(vec![
        put(1, "k", "a", 0, 100),
        put(2, "k", "b", 10, 90),
        get(3, "k", Some("b"), 20, 30),
        get(3, "k", Some("a"), 40, 50),
        get(4, "k", Some("a"), 110, 120),
        // Touching intervals count as concurrent.
        put(5, "j", "x", 200, 210),
        get(6, "j", None, 210, 220),
    ]);
}

#[test]
fn indeterminate_write_that_took_effect_passes() {
    assert_ok(vec![
        put(1, "k", "a", 0, 10),
        lost(put(2, "k", "b", 20, 0)),
        get(3, "k", Some("a"), 30, 40),
        get(3, "k", Some("b"), 50, 60),
        get(4, "k", Some("b"), 1000, 1010),
    ]);
}

#[test]
fn indeterminate_write_that_never_took_effect_passes() {
    assert_ok(vec![
        put(1, "k", "a", 0, 10),
        lost(put(2, "k", "b", 20, 0)),
        lost(cas(2, "k", Some("a"), "c", true, 25, 0)),
        lost(get(5, "k", Some("zzz"), 26, 0)),
        get(3, "k", Some("a"), 100, 110),
        get(4, "k", Some("a"), 1000, 1010),
    ]);
}

#[test]
fn stale_read_fails_and_is_explained() {
    let v = violation(vec![
        put(1, "k", "a", 0, 10),
        put(2, "k", "b", 20, 30),
        get(3, "k", Some("a"), 40, 50),
    ]);
    assert_eq!(v.keys, vec!["k"]);
    assert_eq!(v.stuck, 2);
    assert_eq!(v.order, vec![0, 1]);
    assert_eq!(v.state.get("k").map(String::as_str), Some("b"));
    let text = v.to_string();
    assert!(text.contains("op #3 had to take effect by t=50"), "{text}");
    assert!(
        text.contains(r#"get "k" reported "a", but after that order it would be "b""#),
        "{text}"
    );
    assert!(
        text.contains("No order of these operations is consistent"),
        "{text}"
    );
}

#[test]
fn lost_acknowledged_write_fails() {
    violation(vec![
        put(1, "k", "a", 0, 10),
        put(2, "k", "b", 20, 30),
        get(3, "k", Some("a"), 40, 50),
        get(4, "k", Some("a"), 60, 70),
    ]);
}

#[test]
fn read_of_never_written_value_fails() {
    violation(vec![
        put(1, "k", "a", 0, 10),
        get(2, "k", Some("ghost"), 5, 15),
    ]);
}

#[test]
fn non_monotonic_reads_across_clients_fail() {
    // The write is still in flight, but once A saw "b", B may not see "a".
    violation(vec![
        put(1, "k", "a", 0, 10),
        put(2, "k", "b", 20, 100),
        get(3, "k", Some("b"), 30, 40),
        get(4, "k", Some("a"), 50, 60),
    ]);
}

#[test]
fn bad_cas_results_fail() {
    violation(vec![
        put(1, "k", "a", 0, 10),
        cas(2, "k", Some("a"), "b", false, 20, 30),
    ]);
    violation(vec![
        put(1, "k", "a", 0, 10),
        cas(2, "k", None, "b", true, 20, 30),
    ]);
}

#[test]
fn bad_delete_count_fails() {
    violation(vec![del(1, "k", 1, 0, 10)]);
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Command {
    Command::Txn {
        compares,
        success,
        failure,
    }
}

fn equal(key: &str, value: &str) -> Compare {
    let value = value.into();
    Compare {
        key: key.into(),
        cmp: Cmp::Equal { value },
    }
}

#[test]
fn txn_results_are_checked() {
    let guarded = || {
        txn(
            vec![equal("k", "a")],
            vec![TxnOp::Put {
                key: "k".into(),
                value: "b".into(),
            }],
            vec![TxnOp::Get { key: "k".into() }],
        )
    };
    let result = |succeeded: bool, values: Vec<Option<&str>>| Output::Txn {
        succeeded,
        values: values.into_iter().map(|v| v.map(String::from)).collect(),
    };
    assert_ok(vec![
        put(1, "k", "a", 0, 10),
        op(2, guarded(), 20, 30, result(true, vec![])),
        op(2, guarded(), 40, 50, result(false, vec![Some("b")])),
    ]);
    // Claims the compare failed although "k" was "a".
    violation(vec![
        put(1, "k", "a", 0, 10),
        op(2, guarded(), 20, 30, result(false, vec![Some("a")])),
    ]);
    // Right branch, wrong value read.
    violation(vec![
        put(1, "k", "c", 0, 10),
        op(2, guarded(), 20, 30, result(false, vec![Some("a")])),
    ]);
}

#[test]
fn multi_key_txn_atomicity_needs_a_joint_partition() {
    // Each key alone is linearizable, but the txn cannot be both before
    // A's read of x (t<=20) and after A's read of y (t>=30).
    let both = txn(
        vec![],
        vec![
            TxnOp::Put {
                key: "x".into(),
                value: "1".into(),
            },
            TxnOp::Put {
                key: "y".into(),
                value: "1".into(),
            },
        ],
        vec![],
    );
    let ops = |y_seen: Option<&str>| {
        vec![
            op(
                1,
                both.clone(),
                0,
                100,
                Output::Txn {
                    succeeded: true,
                    values: vec![],
                },
            ),
            get(2, "x", Some("1"), 10, 20),
            get(2, "y", y_seen, 30, 40),
            put(3, "z", "unrelated", 0, 1),
        ]
    };
    assert_ok(ops(Some("1")));
    let v = violation(ops(None));
    assert_eq!(v.keys, vec!["x", "y"]);
    assert_eq!(v.partition_ops, 3);
}

#[test]
fn violation_is_shrunk_to_a_small_witness() {
    // 200 ops of healthy traffic, a stale read at t=1000, more traffic after.
    let mut ops = Vec::new();
    for i in 0..100u64 {
        let t = i * 10;
        ops.push(put(1, "k", &format!("v{i}"), t, t + 5));
        ops.push(get(2, "k", Some(&format!("v{i}")), t + 6, t + 9));
    }
    ops.push(get(3, "k", Some("v3"), 500, 505));
    let v = violation(ops);
    assert_eq!(v.cut, Some(505));
    assert!(v.ops.len() <= 52, "witness has {} ops:\n{v:#}", v.ops.len());
    let reads: Vec<_> = v
        .ops
        .iter()
        .filter(|w| w.op.command.is_read_only())
        .collect();
    assert_eq!(reads.len(), 1, "{v:#}");
    assert_eq!(reads[0].index, 200);
}

#[test]
fn hard_history_times_out_as_unknown() {
    // 24 concurrent puts then a read of a value none wrote: proving the
    // violation means trying every subset of the puts.
    let mut ops: Vec<Operation> = (0..24)
        .map(|i| put(i, "k", &format!("v{i}"), 0, 100))
        .collect();
    ops.push(get(99, "k", Some("nobody"), 200, 300));
    let report = check(&History::new(ops).unwrap(), Duration::from_millis(1));
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.undecided, vec![vec!["k".to_string()]]);
    assert!(
        report.elapsed < Duration::from_secs(5),
        "{:?}",
        report.elapsed
    );
}
