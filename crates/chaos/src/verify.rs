//! What is checked after a run: the history is linearizable
//! (`concord-check`), no acknowledged write is lost (RPO), and how long
//! each fault kept clients from writing and reading (RTO).

use std::collections::HashMap;
use std::time::Duration;

use concord_check::{History, Verdict};

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
/// `finals` is each key's value read after healing.
pub fn lost_writes<'a>(ops: &'a [Op], finals: &HashMap<String, Option<String>>) -> Vec<&'a Op> {
    let writer: HashMap<&str, &Op> = ops
        .iter()
        .filter_map(|o| o.value.as_deref().map(|v| (v, o)))
        .collect();
    ops.iter()
        .filter(|w| w.acked_write())
        .filter(|w| {
            let Some(Some(fin)) = finals.get(&w.key) else {
                return true;
            };
            if Some(fin) == w.value.as_ref() {
                return false;
            }
            match writer.get(fin.as_str()) {
                Some(f) => f.complete.is_some_and(|c| c < w.invoke),
                None => true,
            }
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
