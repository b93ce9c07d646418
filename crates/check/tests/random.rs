//! Randomized histories and the JSON-lines format.

use std::time::Duration;

use concord_check::{
    check, generate, Cmp, Command, Compare, GenConfig, History, HistoryError, Output, TxnOp,
    Verdict,
};

const BUDGET: Duration = Duration::from_secs(20);

fn config(seed: u64) -> GenConfig {
    GenConfig {
        ops: 20 + (seed as usize * 7) % 100,
        keys: 1 + seed as usize % 4,
        clients: 1 + seed as usize % 6,
        max_latency: 1 + (seed * 13) % 100,
        max_think: (seed * 5) % 40,
        indeterminate: 0.1,
        multi_key_txns: seed % 2 == 0,
        seed,
    }
}

/// Histories generated from the model with random overlapping intervals
/// are linearizable; replacing one read with a never-written value is not.
#[test]
fn generated_histories_pass_and_a_forged_read_fails() {
    let mut forged = 0;
    for seed in 0..150 {
        let history = generate(&config(seed));
        let report = check(&history, BUDGET);
        assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");

        let mut ops = history.ops().to_vec();
        let reads: Vec<usize> = (0..ops.len())
            .filter(|&i| matches!(ops[i].result, Some(Output::Get { .. })))
            .collect();
        if reads.is_empty() {
            continue;
        }
        let victim = reads[(seed as usize * 31) % reads.len()];
        ops[victim].result = Some(Output::Get {
            value: Some("never-written".into()),
        });
        match check(&History::new(ops).unwrap(), BUDGET).verdict {
            Verdict::NotLinearizable(v) => {
                assert!(
                    v.ops.iter().any(|w| w.index == victim),
                    "seed {seed}: {v:#}"
                );
                forged += 1;
            }
            other => panic!("seed {seed}: forged read at op {victim} gave {other:?}"),
        }
    }
    assert!(forged > 100, "only {forged} histories had a read to forge");
}

#[test]
fn generated_histories_round_trip_through_json_lines() {
    for seed in 0..20 {
        let history = generate(&config(seed));
        let text = history.to_jsonl();
        assert_eq!(History::parse_jsonl(&text).unwrap(), history, "seed {seed}");
    }
}

const EXAMPLE: &str = r#"
{"client": 1, "op": "put", "key": "k1", "value": "v", "invoke": 1200, "complete": 1500, "result": {"ok": true}}
{"client": 2, "op": "get", "key": "k1", "invoke": 1300, "complete": 1400, "result": {"value": null}}
{"client": 2, "op": "get", "key": "k1", "invoke": 1600, "complete": 1700, "result": {"value": "v"}}
{"client": 3, "op": "cas", "key": "k1", "expected": "v", "value": "w", "invoke": 1800, "complete": null}
{"client": 4, "op": "cas", "key": "k2", "expected": null, "value": "x", "invoke": 1800, "complete": 1900, "result": {"ok": true}}
{"client": 5, "op": "delete", "key": "k2", "invoke": 2000, "complete": 2100, "result": {"deleted": 1}, "node": "extra fields are ignored"}

{"client": 5, "op": "delete", "key": "k2", "invoke": 2200, "complete": 2300, "result": {"ok": true}}
{"client": 6, "op": "txn", "compares": [{"key": "k1", "cmp": "equal", "value": "w"}, {"key": "k2", "cmp": "absent"}], "success": [{"op": "get", "key": "k1"}, {"op": "put", "key": "k2", "value": "y"}], "failure": [{"op": "delete", "key": "k1"}], "invoke": 2400, "complete": 2500, "result": {"succeeded": true, "values": ["w"]}}
{"client": 7, "op": "put", "key": "k3", "value": "z", "invoke": 2600}
"#;

#[test]
fn documented_format_parses_and_round_trips() {
    let history = History::parse_jsonl(EXAMPLE).unwrap();
    let ops = history.ops();
    assert_eq!(ops.len(), 9);
    assert_eq!(ops[1].result, Some(Output::Get { value: None }));
    assert_eq!(ops[3].complete, None);
    assert_eq!(ops[5].result, Some(Output::Delete { deleted: Some(1) }));
    assert_eq!(ops[6].result, Some(Output::Delete { deleted: None }));
    assert_eq!(
        ops[7].command,
        Command::Txn {
            compares: vec![
                Compare {
                    key: "k1".into(),
                    cmp: Cmp::Equal { value: "w".into() }
                },
                Compare {
                    key: "k2".into(),
                    cmp: Cmp::Absent
                },
            ],
            success: vec![
                TxnOp::Get { key: "k1".into() },
                TxnOp::Put {
                    key: "k2".into(),
                    value: "y".into()
                },
            ],
            failure: vec![TxnOp::Delete { key: "k1".into() }],
        }
    );
    assert_eq!(ops[8].complete, None);

    let text = history.to_jsonl();
    assert_eq!(History::parse_jsonl(&text).unwrap(), history);
    assert!(text.contains(r#""result":{"value":null}"#), "{text}");
    assert!(text.contains(r#""expected":null"#), "{text}");
    assert!(text.contains(r#""complete":null"#), "{text}");

    assert_eq!(check(&history, BUDGET).verdict, Verdict::Linearizable);
}

#[test]
fn malformed_lines_are_reported_with_their_line_number() {
    let cases = [
        (
            r#"{"client": 1, "op": "get", "key": "k", "invoke": 5}{"#,
            "line 2",
        ),
        (
            r#"{"client": 1, "op": "get", "key": "k", "invoke": 5, "complete": 4, "result": {"value": null}}"#,
            "before invoke",
        ),
        (
            r#"{"client": 1, "op": "get", "key": "k", "invoke": 5, "complete": 6}"#,
            "no \"result\"",
        ),
        (
            r#"{"client": 1, "op": "get", "key": "k", "invoke": 5, "complete": 6, "result": {"ok": true}}"#,
            "needs \"value\"",
        ),
        (
            r#"{"client": 1, "op": "put", "key": "k", "value": "v", "invoke": 5, "result": {"ok": true}}"#,
            "has a result",
        ),
        (
            r#"{"client": 1, "op": "txn", "invoke": 5, "complete": 6, "result": {"succeeded": true, "values": [null]}}"#,
            "1 values",
        ),
        (
            r#"{"client": 1, "op": "scan", "key": "k", "invoke": 5}"#,
            "line 2",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("\n{line}\n");
        let err: HistoryError = History::parse_jsonl(&text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 2: ") && msg.contains(expected),
            "{line}: {msg}"
        );
    }
}
