//! Simulated clients: one request at a time, sent to the node they believe
//! leads, with a timeout; every operation goes into the history.

use concord_check::{Cmp, Command, Compare, Operation, Output, TxnOp};

use crate::rng::SplitMix64;

/// A request in flight.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// Sequence number.
    pub seq: u64,
    /// The operation.
    pub command: Command,
    /// When it was sent.
    pub invoke: u64,
}

/// One client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Client id.
    pub id: u64,
    /// Next sequence number.
    pub next_seq: u64,
    /// Node the next request goes to.
    pub target: u64,
    /// The request in flight.
    pub outstanding: Option<Outstanding>,
    /// Completed and indeterminate operations.
    pub history: Vec<Operation>,
    /// Requests refused before taking effect (not in the history).
    pub refused: u64,
}

impl Client {
    /// A client talking first to `target`.
    pub fn new(id: u64, target: u64) -> Self {
        Client {
            id,
            next_seq: 1,
            target,
            outstanding: None,
            history: Vec::new(),
            refused: 0,
        }
    }

    /// Make the next request.
    pub fn start(
        &mut self,
        rng: &mut SplitMix64,
        keys: u64,
        multi_key: bool,
        now: u64,
    ) -> (u64, Command) {
        assert!(self.outstanding.is_none(), "one request at a time");
        let seq = self.next_seq;
        self.next_seq += 1;
        let command = random_command(rng, keys, multi_key, &format!("c{}s{}", self.id, seq));
        self.outstanding = Some(Outstanding {
            seq,
            command: command.clone(),
            invoke: now,
        });
        (seq, command)
    }

    /// A reply arrived. Returns true if it answered the outstanding request.
    pub fn complete(&mut self, seq: u64, output: Output, now: u64) -> bool {
        match self.outstanding.take() {
            Some(o) if o.seq == seq => {
                self.history.push(Operation {
                    client: self.id,
                    command: o.command,
                    invoke: o.invoke,
                    complete: Some(now),
                    result: Some(output),
                });
                true
            }
            other => {
                self.outstanding = other;
                false
            }
        }
    }

    /// The request was refused before taking effect: forget it.
    pub fn refused(&mut self, seq: u64) -> bool {
        match self.outstanding.take() {
            Some(o) if o.seq == seq => {
                self.refused += 1;
                true
            }
            other => {
                self.outstanding = other;
                false
            }
        }
    }

    /// No answer in time: a write may or may not have happened (recorded as
    /// indeterminate); a read had no effect (dropped).
    pub fn timed_out(&mut self, seq: u64) -> bool {
        match self.outstanding.take() {
            Some(o) if o.seq == seq => {
                if !o.command.is_read_only() {
                    self.history.push(Operation {
                        client: self.id,
                        command: o.command,
                        invoke: o.invoke,
                        complete: None,
                        result: None,
                    });
                }
                true
            }
            other => {
                self.outstanding = other;
                false
            }
        }
    }
}

fn random_command(rng: &mut SplitMix64, keys: u64, multi_key: bool, value: &str) -> Command {
    let key = |rng: &mut SplitMix64| format!("k{}", rng.below(keys));
    let v = value.to_string();
    match rng.below(100) {
        0..=34 => Command::Get { key: key(rng) },
        35..=59 => Command::Put {
            key: key(rng),
            value: v,
        },
        60..=64 => Command::Delete { key: key(rng) },
        65..=79 => {
            // Compare against a value this client may have written, or absence.
            let expected = if rng.chance(0.3) {
                None
            } else {
                Some(format!("c{}s{}", rng.below(6) + 1, rng.below(20) + 1))
            };
            Command::Cas {
                key: key(rng),
                expected,
                value: v,
            }
        }
        _ => {
            let a = key(rng);
            let b = if multi_key { key(rng) } else { a.clone() };
            let cmp = if rng.chance(0.5) {
                Cmp::Absent
            } else {
                Cmp::Present
            };
            Command::Txn {
                compares: vec![Compare {
                    key: a.clone(),
                    cmp,
                }],
                success: vec![
                    TxnOp::Put {
                        key: b.clone(),
                        value: v,
                    },
                    TxnOp::Get { key: a },
                ],
                failure: vec![TxnOp::Get { key: b }],
            }
        }
    }
}
