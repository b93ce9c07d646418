//! What is checked after a run: the history is linearizable
//! (`concord-check`), no acknowledged write is lost (RPO), and how long
//! each fault kept clients from writing and reading (RTO).

use std::collections::HashMap;
use std::time::Duration;

use concord_check::{History, IssuedWrite, Verdict};

use crate::workload::Op;

/// The history in `concord-check`'s JSON-lines format.
pub fn history_jsonl(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        out.push_str(&serde_json::to_string(op).expect("an op serializes"));
        out.push('\n');
    }
    out
}

/// The checker's verdict on the history, within `budget`: `ok`,
/// `violation: ...` or `unknown`.
pub fn linearizable(ops: &[Op], budget: Duration) -> String {
    let history = match History::parse_jsonl(&history_jsonl(ops)) {
        Ok(h) => h,
        Err(e) => return format!("bad history: {e}"),
    };
    match concord_check::check(&history, budget).verdict {
        Verdict::Linearizable => "ok".to_string(),
        Verdict::Unknown => "unknown".to_string(),
        Verdict::NotLinearizable(v) => format!("violation: {v}"),
    }
}

/// Acknowledged writes that the final state does not hold and did not
/// overwrite: the final value of their key was written strictly before
/// them (its write completed before theirs was invoked), or the key is
/// absent (the workload never deletes), or holds a value nobody wrote.
/// `finals` is each key's value read after healing. A txn counts once per
/// key it writes.
pub fn lost_writes<'a>(ops: &'a [Op], finals: &HashMap<String, Option<String>>) -> Vec<&'a Op> {
    let writer: HashMap<(&str, &str), &Op> = ops
        .iter()
        .flat_map(|o| o.writes().into_iter().map(move |kv| (kv, o)))
        .collect();
    ops.iter()
        .filter(|w| w.acked_write())
        .flat_map(|w| w.writes().into_iter().map(move |kv| (kv, w)))
        .filter(|&((key, value), w)| {
            let Some(Some(fin)) = finals.get(key) else {
                return true;
            };
            if fin == value {
                return false;
            }
            match writer.get(&(key, fin.as_str())) {
                Some(f) => f.complete.is_some_and(|c| c < w.invoke),
                None => true,
            }
        })
        .map(|(_, w)| w)
        .collect()
}

/// Every write issued, for the watch validator: acknowledged ones with
/// their revision, unanswered ones without (they may have been
/// committed). Answered cas and txns that did not write are left out.
pub fn issued_writes(ops: &[Op]) -> Vec<IssuedWrite> {
    ops.iter()
        .filter(|o| o.result.is_none() || o.acked_write())
        .flat_map(|o| {
            let rev = if o.result.is_some() { o.rev() } else { None };
            o.writes().into_iter().map(move |(k, v)| IssuedWrite {
                key: k.to_string(),
                value: Some(v.to_string()),
                rev,
            })
        })
        .collect()
}

/// Time from `at` to the first acknowledged op invoked at or after it
/// (writes if `writes`, else reads), in nanoseconds.
pub fn recovery(ops: &[Op], at: u64, writes: bool) -> Option<u64> {
    ops.iter()
        .filter(|o| o.invoke >= at && o.result.is_some())
        .filter(|o| if writes { o.op != "get" } else { o.op == "get" })
        .filter_map(|o| o.complete)
        .min()
        .map(|c| c - at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Expected;

    fn put(client: usize, key: &str, value: &str, invoke: u64, complete: Option<u64>) -> Op {
        Op {
            client,
            op: "put",
            key: key.into(),
            value: Some(value.into()),
            expected: Expected(None),
            txn: None,
            invoke,
            complete,
            result: complete.map(|_| serde_json::json!({"ok": true})),
            error: None,
        }
    }

    fn get(key: &str, value: Option<&str>, invoke: u64, complete: u64) -> Op {
        Op {
            client: 9,
            op: "get",
            key: key.into(),
            value: None,
            expected: Expected(None),
            txn: None,
            invoke,
            complete: Some(complete),
            result: Some(serde_json::json!({ "value": value })),
            error: None,
        }
    }

    #[test]
    fn a_write_rolled_back_after_its_ack_is_lost() {
        let ops = vec![
            put(1, "k", "a", 0, Some(10)),
            put(2, "k", "b", 20, Some(30)),
        ];
        let finals = |v: &str| HashMap::from([("k".to_string(), Some(v.to_string()))]);
        // The newest write survived: nothing lost.
        assert!(lost_writes(&ops, &finals("b")).is_empty());
        // Planted: the cluster came back holding the older value.
        let lost = lost_writes(&ops, &finals("a"));
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].value.as_deref(), Some("b"));
        // Or nothing at all, or a value nobody wrote.
        let none = HashMap::from([("k".to_string(), None)]);
        assert_eq!(lost_writes(&ops, &none).len(), 2);
        assert_eq!(lost_writes(&ops, &finals("zz")).len(), 2);
    }

    #[test]
    fn concurrent_and_unacknowledged_writes_are_not_counted() {
        // b overlaps a; either may end up last. c never got an answer.
        let ops = vec![
            put(1, "k", "a", 0, Some(30)),
            put(2, "k", "b", 10, Some(20)),
            put(3, "k", "c", 40, None),
        ];
        for fin in ["a", "b", "c"] {
            let finals = HashMap::from([("k".to_string(), Some(fin.to_string()))]);
            assert!(lost_writes(&ops, &finals).is_empty(), "final {fin}");
        }
    }

    #[test]
    fn a_stale_read_is_a_violation() {
        let ok = vec![put(1, "k", "a", 0, Some(10)), get("k", Some("a"), 20, 30)];
        assert_eq!(linearizable(&ok, Duration::from_secs(5)), "ok");
        // Planted: a read after the ack returns the key as absent.
        let bad = vec![put(1, "k", "a", 0, Some(10)), get("k", None, 20, 30)];
        assert!(linearizable(&bad, Duration::from_secs(5)).starts_with("violation"));
    }

    fn txn(key_a: &str, key_b: &str, value: &str, ok: Option<bool>, rev: u64) -> Op {
        let k = |key: &str| key.to_string();
        Op {
            client: 3,
            op: "txn",
            key: k(key_a),
            value: None,
            expected: Expected(None),
            txn: Some(crate::workload::TxnBody {
                compares: vec![concord_check::Compare {
                    key: k(key_a),
                    cmp: concord_check::Cmp::Absent,
                }],
                success: vec![
                    concord_check::TxnOp::Put {
                        key: k(key_a),
                        value: value.into(),
                    },
                    concord_check::TxnOp::Put {
                        key: k(key_b),
                        value: value.into(),
                    },
                ],
                failure: vec![concord_check::TxnOp::Get { key: k(key_a) }],
            }),
            invoke: 40,
            complete: ok.map(|_| 50),
            result: ok.map(|ok| {
                let values: Vec<Option<String>> = if ok { vec![] } else { vec![None] };
                serde_json::json!({"succeeded": ok, "values": values, "rev": rev})
            }),
            error: None,
        }
    }

    #[test]
    fn txns_are_checked_and_their_writes_counted() {
        let t = txn("a", "b", "t", Some(true), 7);
        let ok = vec![t.clone(), get("b", Some("t"), 60, 70)];
        assert_eq!(linearizable(&ok, Duration::from_secs(5)), "ok");
        // Planted: a read after the txn's ack misses its second key.
        let bad = vec![t.clone(), get("b", None, 60, 70)];
        assert!(linearizable(&bad, Duration::from_secs(5)).starts_with("violation"));
        let finals = HashMap::from([
            ("a".to_string(), Some("t".to_string())),
            ("b".to_string(), None),
        ]);
        assert_eq!(lost_writes(std::slice::from_ref(&t), &finals).len(), 1);
        let w = issued_writes(&[
            t,
            txn("c", "d", "u", None, 0),
            txn("e", "f", "v", Some(false), 9),
        ]);
        let revs: Vec<_> = w.iter().map(|w| (w.key.as_str(), w.rev)).collect();
        assert_eq!(
            revs,
            [("a", Some(7)), ("b", Some(7)), ("c", None), ("d", None)]
        );
    }

    #[test]
    fn recovery_counts_from_the_fault_to_the_first_answer() {
        let ops = vec![
            put(1, "k", "a", 0, Some(10)),
            put(2, "k", "b", 100, None),
            put(3, "k", "c", 150, Some(900)),
            get("k", Some("c"), 950, 1000),
        ];
        assert_eq!(recovery(&ops, 50, true), Some(850));
        assert_eq!(recovery(&ops, 50, false), Some(950));
        assert_eq!(recovery(&ops, 2000, true), None);
    }
}
