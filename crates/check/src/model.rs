//! The sequential key-value specification every history is checked against.
//!
//! Semantics follow etcd: values are strings, the store starts empty, value
//! comparisons on an absent key never hold, and a transaction with no compares
//! succeeds.

use std::collections::BTreeMap;

use crate::history::{Cmp, Command, Compare, Operation, Output, TxnOp};

/// The model's state: every present key and its value.
pub type State = BTreeMap<String, String>;

/// Executes `command` against `state` and returns the output a correct store
/// would report. Deterministic.
pub fn apply(state: &mut State, command: &Command) -> Output {
    match command {
        Command::Get { key } => Output::Get {
            value: state.get(key).cloned(),
        },
        Command::Put { key, value } => {
            state.insert(key.clone(), value.clone());
            Output::Put
        }
        Command::Delete { key } => Output::Delete {
            deleted: Some(u64::from(state.remove(key).is_some())),
        },
        Command::Cas {
            key,
            expected,
            value,
        } => {
            let ok = state.get(key) == expected.as_ref();
            if ok {
                state.insert(key.clone(), value.clone());
            }
            Output::Cas { ok }
        }
        Command::Txn {
            compares,
            success,
            failure,
        } => {
            let succeeded = compares.iter().all(|c| holds(state, c));
            let branch = if succeeded { success } else { failure };
            let mut values = Vec::new();
            for op in branch {
                match op {
                    TxnOp::Get { key } => values.push(state.get(key).cloned()),
                    TxnOp::Put { key, value } => {
                        state.insert(key.clone(), value.clone());
                    }
                    TxnOp::Delete { key } => {
                        state.remove(key);
                    }
                }
            }
            Output::Txn { succeeded, values }
        }
    }
}

/// Whether `compare` holds in `state`.
fn holds(state: &State, compare: &Compare) -> bool {
    let current = state.get(&compare.key);
    match (&compare.cmp, current) {
        (Cmp::Absent, cur) => cur.is_none(),
        (Cmp::Present, cur) => cur.is_some(),
        (_, None) => false,
        (Cmp::Equal { value }, Some(cur)) => cur == value,
        (Cmp::NotEqual { value }, Some(cur)) => cur != value,
        (Cmp::Greater { value }, Some(cur)) => cur > value,
        (Cmp::Less { value }, Some(cur)) => cur < value,
    }
}

/// Whether the `observed` output is what a store producing `actual` may
/// report (a delete recorded without a count accepts any count).
pub(crate) fn consistent(actual: &Output, observed: &Output) -> bool {
    match (actual, observed) {
        (Output::Delete { .. }, Output::Delete { deleted: None }) => true,
        _ => actual == observed,
    }
}

/// Whether `op` leaves the state unchanged in every state where its
/// recorded result fits: reads, failed CASes, CASes of a value onto itself,
/// deletes that found nothing, and txns whose branch that ran only reads.
pub(crate) fn quiet_where_it_fits(op: &Operation) -> bool {
    match (&op.command, &op.result) {
        (Command::Get { .. }, _) => true,
        (
            Command::Cas {
                expected, value, ..
            },
            Some(Output::Cas { ok }),
        ) => !ok || expected.as_ref() == Some(value),
        (Command::Delete { .. }, Some(Output::Delete { deleted })) => *deleted == Some(0),
        (
            Command::Txn {
                success, failure, ..
            },
            Some(Output::Txn { succeeded, .. }),
        ) => {
            let branch = if *succeeded { success } else { failure };
            branch.iter().all(|op| matches!(op, TxnOp::Get { .. }))
        }
        _ => false,
    }
}

impl Command {
    /// Every key the command reads or writes, sorted and deduplicated.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = match self {
            Command::Get { key }
            | Command::Put { key, .. }
            | Command::Delete { key }
            | Command::Cas { key, .. } => vec![key],
            Command::Txn {
                compares,
                success,
                failure,
            } => compares
                .iter()
                .map(|c| c.key.as_str())
                .chain(success.iter().chain(failure).map(TxnOp::key))
                .collect(),
        };
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Whether the command can never change the state.
    pub fn is_read_only(&self) -> bool {
        match self {
            Command::Get { .. } => true,
            Command::Put { .. } | Command::Delete { .. } | Command::Cas { .. } => false,
            Command::Txn {
                success, failure, ..
            } => success
                .iter()
                .chain(failure)
                .all(|op| matches!(op, TxnOp::Get { .. })),
        }
    }
}

impl TxnOp {
    /// The key this transaction op touches.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Get { key } | TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn cas_and_delete_follow_etcd() {
        let mut st = State::new();
        let cas = |expected: Option<&str>, value: &str| Command::Cas {
            key: s("k"),
            expected: expected.map(s),
            value: s(value),
        };
        assert_eq!(apply(&mut st, &cas(None, "a")), Output::Cas { ok: true });
        assert_eq!(apply(&mut st, &cas(None, "b")), Output::Cas { ok: false });
        assert_eq!(
            apply(&mut st, &cas(Some("a"), "b")),
            Output::Cas { ok: true }
        );
        let del = Command::Delete { key: s("k") };
        assert_eq!(apply(&mut st, &del), Output::Delete { deleted: Some(1) });
        assert_eq!(apply(&mut st, &del), Output::Delete { deleted: Some(0) });
    }

    #[test]
    fn txn_compares_and_branches() {
        let mut st = State::from([(s("a"), s("1"))]);
        let txn = |cmp: Cmp| Command::Txn {
            compares: vec![Compare { key: s("a"), cmp }],
            success: vec![
                TxnOp::Put {
                    key: s("b"),
                    value: s("x"),
                },
                TxnOp::Get { key: s("b") },
            ],
            failure: vec![TxnOp::Get { key: s("a") }],
        };
        let out = apply(&mut st, &txn(Cmp::Greater { value: s("0") }));
        assert_eq!(
            out,
            Output::Txn {
                succeeded: true,
                values: vec![Some(s("x"))]
            }
        );
        let out = apply(&mut st, &txn(Cmp::Absent));
        assert_eq!(
            out,
            Output::Txn {
                succeeded: false,
                values: vec![Some(s("1"))]
            }
        );
        // Value comparisons never hold on an absent key, even NotEqual.
        st.remove("a");
        let out = apply(&mut st, &txn(Cmp::NotEqual { value: s("1") }));
        assert_eq!(
            out,
            Output::Txn {
                succeeded: false,
                values: vec![None]
            }
        );
        assert!(txn(Cmp::Absent).keys() == vec!["a", "b"]);
        assert!(!txn(Cmp::Absent).is_read_only());
    }
}
