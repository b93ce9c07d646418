//! The checker against a brute-force oracle on small histories.
//!
//! `ORACLE_SEEDS=N` runs N histories per test instead of the default.

use std::time::Duration;

use concord_check::{
    apply, check, generate, Cmp, Command, Compare, GenConfig, History, Operation, Output, State,
    TxnOp, Verdict,
};

fn seeds(default: u64) -> u64 {
    std::env::var("ORACLE_SEEDS").map_or(default, |s| s.parse().expect("ORACLE_SEEDS is a number"))
}

/// Brute force: is there a real-time-respecting order of all completed ops
/// and some of the indeterminate ones in which every result fits?
fn brute_force(ops: &[Operation]) -> bool {
    fn go(ops: &[Operation], done: &mut Vec<bool>, state: &State) -> bool {
        let pending: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
        if pending.iter().all(|&i| ops[i].complete.is_none()) {
            return true;
        }
        for &o in &pending {
            let blocked = pending
                .iter()
                .any(|&p| ops[p].complete.is_some_and(|c| c < ops[o].invoke));
            if blocked {
                continue;
            }
            let mut next = state.clone();
            let actual = apply(&mut next, &ops[o].command);
            let fits = match &ops[o].result {
                None => true,
                Some(Output::Delete { deleted: None }) => matches!(actual, Output::Delete { .. }),
                Some(observed) => *observed == actual,
            };
            if fits {
                done[o] = true;
                let found = go(ops, done, &next);
                done[o] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], &State::new())
}

/// The checker's verdict; a violation's shrunk witness must itself fail.
fn checker(ops: Vec<Operation>, seed: u64) -> bool {
    match check(&History::new(ops).unwrap(), Duration::from_secs(20)).verdict {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(v) => {
            let witness: Vec<Operation> = v
                .ops
                .iter()
                .map(|w| {
                    let mut op = w.op.clone();
                    if w.in_flight {
                        op.complete = None;
                        op.result = None;
                    }
                    op
                })
                .collect();
            assert!(!brute_force(&witness), "seed {seed}: witness passes: {v:#}");
            assert!(
                v.ops.iter().any(|w| w.index == v.stuck),
                "seed {seed}: {v:#}"
            );
            false
        }
        Verdict::Unknown => panic!("seed {seed}: timed out"),
    }
}

/// The workspace's splitmix64, with the values these tests draw.
struct Rng(concord_rng::SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn value(&mut self) -> Option<String> {
        ["a", "b"]
            .get(self.below(3) as usize)
            .map(|v| v.to_string())
    }

    fn string(&mut self) -> String {
        self.value().unwrap_or_else(|| "a".into())
    }

    fn key(&mut self) -> String {
        ["x", "y"][self.below(2) as usize].into()
    }
}

/// Up to 8 ops on 2 keys and 2 values, with arbitrary (mostly wrong)
/// results, overlapping intervals and lost responses.
fn random_history(rng: &mut Rng) -> Vec<Operation> {
    let n = 1 + rng.below(8);
    (0..n)
        .map(|client| {
            let invoke = rng.below(16);
            let complete = invoke + rng.below(6);
            let (command, result) = match rng.below(6) {
                0 | 1 => (
                    Command::Get { key: rng.key() },
                    Output::Get { value: rng.value() },
                ),
                2 => (
                    Command::Put {
                        key: rng.key(),
                        value: rng.string(),
                    },
                    Output::Put,
                ),
                3 => {
                    let deleted = [None, Some(0), Some(1)][rng.below(3) as usize];
                    (
                        Command::Delete { key: rng.key() },
                        Output::Delete { deleted },
                    )
                }
                4 => {
                    let command = Command::Cas {
                        key: rng.key(),
                        expected: rng.value(),
                        value: rng.string(),
                    };
                    (
                        command,
                        Output::Cas {
                            ok: rng.below(2) == 0,
                        },
                    )
                }
                _ => {
                    let cmp = match rng.below(3) {
                        0 => Cmp::Absent,
                        1 => Cmp::Present,
                        _ => Cmp::Equal {
                            value: rng.string(),
                        },
                    };
                    let (a, b) = (rng.key(), rng.key());
                    let command = Command::Txn {
                        compares: vec![Compare {
                            key: a.clone(),
                            cmp,
                        }],
                        success: vec![
                            TxnOp::Put {
                                key: b.clone(),
                                value: rng.string(),
                            },
                            TxnOp::Get { key: a },
                        ],
                        failure: vec![TxnOp::Get { key: b }],
                    };
                    let succeeded = rng.below(2) == 0;
                    (
                        command,
                        Output::Txn {
                            succeeded,
                            values: vec![rng.value()],
                        },
                    )
                }
            };
            let lost = rng.below(4) == 0;
            Operation {
                client,
                command,
                invoke,
                complete: (!lost).then_some(complete),
                result: (!lost).then_some(result),
            }
        })
        .collect()
}

#[test]
fn checker_agrees_with_brute_force_on_random_histories() {
    let mut verdicts = [0u64; 2];
    for seed in 0..seeds(20_000) {
        let ops = random_history(&mut Rng(concord_rng::SplitMix64::new(seed)));
        let expected = brute_force(&ops);
        assert_eq!(
            checker(ops.clone(), seed),
            expected,
            "seed {seed}: {ops:#?}"
        );
        verdicts[usize::from(expected)] += 1;
    }
    assert!(
        verdicts.iter().all(|&n| n > seeds(20_000) / 10),
        "{verdicts:?}"
    );
}

/// Histories generated from the model, half with one result tampered with.
#[test]
fn checker_agrees_with_brute_force_on_tampered_model_histories() {
    let mut verdicts = [0u64; 2];
    for seed in 0..seeds(2_000) {
        let history = generate(&GenConfig {
            ops: 3 + seed as usize % 5,
            keys: 1 + seed as usize % 2,
            clients: 2 + seed as usize % 3,
            max_latency: 10,
            max_think: 5,
            indeterminate: 0.25,
            multi_key_txns: true,
            seed,
        });
        let mut ops = history.ops().to_vec();
        let values: Vec<Option<String>> = std::iter::once(None)
            .chain((0..ops.len()).map(|n| Some(format!("v{n}"))))
            .collect();
        let pick =
            |salt: u64| values[((seed * 7919 + salt) % values.len() as u64) as usize].clone();
        if seed % 2 == 1 {
            let victim = (seed as usize / 2) % ops.len();
            ops[victim].result = match ops[victim].result.take() {
                Some(Output::Get { .. }) => Some(Output::Get { value: pick(1) }),
                Some(Output::Cas { ok }) => Some(Output::Cas { ok: !ok }),
                Some(Output::Delete { deleted: Some(n) }) => Some(Output::Delete {
                    deleted: Some(1 - n),
                }),
                Some(Output::Txn { succeeded, values }) => Some(Output::Txn {
                    succeeded,
                    values: (0..values.len() as u64).map(pick).collect(),
                }),
                other => other,
            };
        }
        let expected = brute_force(&ops);
        assert_eq!(checker(ops, seed), expected, "seed {seed}");
        verdicts[usize::from(expected)] += 1;
    }
    assert!(
        verdicts.iter().all(|&n| n > seeds(2_000) / 10),
        "{verdicts:?}"
    );
}
