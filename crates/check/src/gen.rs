//! Random histories that are linearizable by construction, for tests and
//! benchmarks.
//!
//! Clients issue operations back to back with random think times. Each
//! operation gets a random linearization point inside its interval, and
//! results come from running the model in point order, so the points
//! themselves are a witness linearization. Indeterminate operations are
//! applied at their point or not at all, at random.

use crate::history::{Cmp, Command, Compare, History, Operation, Time, TxnOp};
use crate::model::{apply, State};

/// Shape of a generated history.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Number of operations.
    pub ops: usize,
    /// Number of distinct keys (`k0`, `k1`, ...).
    pub keys: usize,
    /// Number of clients, each with at most one operation in flight.
    pub clients: usize,
    /// Longest time from invoke to linearization point, and from there to completion.
    pub max_latency: Time,
    /// Longest pause between a client's operations.
    pub max_think: Time,
    /// Probability that an operation's response is lost (indeterminate).
    pub indeterminate: f64,
    /// Whether transactions may span two keys (merging their partitions).
    pub multi_key_txns: bool,
    /// Seed for the deterministic random generator.
    pub seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            ops: 100,
            keys: 3,
            clients: 5,
            max_latency: 100,
            max_think: 50,
            indeterminate: 0.05,
            multi_key_txns: true,
            seed: 1,
        }
    }
}

use concord_rng::SplitMix64 as Rng;

/// Generates a linearizable history shaped by `config`.
pub fn generate(config: &GenConfig) -> History {
    let mut rng = Rng::new(config.seed);
    let keys: Vec<String> = (0..config.keys.max(1)).map(|k| format!("k{k}")).collect();
    let mut written: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    let mut free_at: Vec<Time> = vec![0; config.clients.max(1)];
    // (op, linearization point, takes effect)
    let mut drafts: Vec<(Operation, Time, bool)> = Vec::with_capacity(config.ops);
    for n in 0..config.ops {
        let client = n % free_at.len();
        let invoke = free_at[client] + rng.below(config.max_think + 1);
        let point = invoke + rng.below(config.max_latency + 1);
        let complete = point + rng.below(config.max_latency + 1);
        free_at[client] = complete + 1;
        let command = random_command(&mut rng, &keys, &mut written, n, config.multi_key_txns);
        let lost = rng.chance(config.indeterminate);
        let op = Operation {
            client: client as u64,
            command,
            invoke,
            complete: (!lost).then_some(complete),
            result: None,
        };
        let effect = !lost || rng.chance(0.5);
        drafts.push((op, point, effect));
    }

    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&i| (drafts[i].1, i));
    let mut state = State::new();
    for i in order {
        let (op, _, effect) = &mut drafts[i];
        if *effect {
            let out = apply(&mut state, &op.command);
            if op.complete.is_some() {
                op.result = Some(out);
            }
        }
    }
    let ops = drafts.into_iter().map(|(op, _, _)| op).collect();
    History::new(ops).expect("generated histories are well-formed")
}

fn random_command(
    rng: &mut Rng,
    keys: &[String],
    written: &mut [Vec<String>],
    n: usize,
    multi_key: bool,
) -> Command {
    let k = rng.below(keys.len() as u64) as usize;
    let key = keys[k].clone();
    let fresh = format!("v{n}");
    // A value this key has been given before, or `None` (absent).
    let old = |rng: &mut Rng| -> Option<String> {
        let w = &written[k];
        let pick = rng.below(w.len() as u64 + 1) as usize;
        w.get(w.len().saturating_sub(1 + pick)).cloned()
    };
    let command = match rng.below(20) {
        0..=7 => Command::Get { key },
        8..=12 => Command::Put {
            key,
            value: fresh.clone(),
        },
        13 => Command::Delete { key },
        14..=16 => Command::Cas {
            key,
            expected: old(rng),
            value: fresh.clone(),
        },
        _ => {
            let cmp = match old(rng) {
                Some(value) => Cmp::Equal { value },
                None => Cmp::Absent,
            };
            let other = if multi_key {
                keys[rng.below(keys.len() as u64) as usize].clone()
            } else {
                key.clone()
            };
            Command::Txn {
                compares: vec![Compare {
                    key: key.clone(),
                    cmp,
                }],
                success: vec![
                    TxnOp::Put {
                        key: other.clone(),
                        value: fresh.clone(),
                    },
                    TxnOp::Get { key: key.clone() },
                ],
                failure: vec![TxnOp::Get { key: other }, TxnOp::Get { key }],
            }
        }
    };
    if matches!(command, Command::Put { .. } | Command::Cas { .. }) {
        written[k].push(fresh);
    }
    command
}
