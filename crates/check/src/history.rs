//! History types and their JSON-lines wire format (see `HISTORY.md`).

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// A point in time, in any monotonic unit (nanoseconds recommended).
pub type Time = u64;

/// What an operation asked the store to do. Serialized with an `"op"` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Command {
    /// Read one key.
    Get {
        /// The key read.
        key: String,
    },
    /// Write one key.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Delete one key.
    Delete {
        /// The key deleted.
        key: String,
    },
    /// Compare-and-swap: set `key` to `value` iff its current value is
    /// `expected` (`None` meaning "the key is absent").
    Cas {
        /// The key swapped.
        key: String,
        /// Required current value; `None` (JSON `null`) requires absence.
        #[serde(default)]
        expected: Option<String>,
        /// The value written on success.
        value: String,
    },
    /// An etcd transaction: if every compare holds run `success`, else `failure`.
    Txn {
        /// Guards, all of which must hold for `success` to run.
        #[serde(default)]
        compares: Vec<Compare>,
        /// Ops run when every compare holds.
        #[serde(default)]
        success: Vec<TxnOp>,
        /// Ops run otherwise.
        #[serde(default)]
        failure: Vec<TxnOp>,
    },
}

/// One operation inside a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum TxnOp {
    /// Read a key; its value is reported in the transaction's `values`.
    Get {
        /// The key read.
        key: String,
    },
    /// Write a key.
    Put {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key deleted.
        key: String,
    },
}

/// A transaction guard on one key, e.g. `{"key": "a", "cmp": "equal", "value": "1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key compared.
    pub key: String,
    /// The comparison.
    #[serde(flatten)]
    pub cmp: Cmp,
}

/// A comparison against a key's value. Value comparisons are byte-wise and,
/// as in etcd, never hold for an absent key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmp", rename_all = "snake_case")]
pub enum Cmp {
    /// The key exists and its value equals `value`.
    Equal {
        /// Operand.
        value: String,
    },
    /// The key exists and its value differs from `value`.
    NotEqual {
        /// Operand.
        value: String,
    },
    /// The key exists and its value is greater than `value`.
    Greater {
        /// Operand.
        value: String,
    },
    /// The key exists and its value is less than `value`.
    Less {
        /// Operand.
        value: String,
    },
    /// The key does not exist (etcd: `version(key) = 0`).
    Absent,
    /// The key exists (etcd: `version(key) > 0`).
    Present,
}

/// The observed result of a completed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `{"value": "v"}` or `{"value": null}`.
    Get {
        /// The value read, `None` if the key was absent.
        value: Option<String>,
    },
    /// `{"ok": true}`.
    Put,
    /// `{"deleted": n}`, or `{"ok": true}` when the count is unknown.
    Delete {
        /// Number of keys deleted (0 or 1), if recorded.
        deleted: Option<u64>,
    },
    /// `{"ok": bool}`: whether the swap happened.
    Cas {
        /// Whether the swap happened.
        ok: bool,
    },
    /// `{"succeeded": bool, "values": [...]}`.
    Txn {
        /// Whether the compares held (so `success` ran).
        succeeded: bool,
        /// One entry per `get` of the branch that ran, in order.
        values: Vec<Option<String>>,
    },
}

/// One client operation: what it did, when, and what it observed.
///
/// `complete == None` (and `result == None`) marks an indeterminate
/// operation: its response was lost, so it may have taken effect at any time
/// after `invoke`, or never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireOp", into = "WireOp")]
pub struct Operation {
    /// Which client issued it (informational).
    pub client: u64,
    /// What it asked for.
    pub command: Command,
    /// When it was sent.
    pub invoke: Time,
    /// When its response arrived; `None` if it never did.
    pub complete: Option<Time>,
    /// The response; `None` exactly when `complete` is `None`.
    pub result: Option<Output>,
}

/// Errors reading or validating a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A line is not a well-formed operation.
    #[error("line {line}: {source}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An operation is well-formed JSON but inconsistent.
    #[error("line {line}: {reason}")]
    Invalid {
        /// 1-based line number (for [`History::new`], the 1-based op position).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The history could not be read.
    #[error("reading history: {0}")]
    Io(#[from] io::Error),
}

/// A validated list of operations, in recording order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// Validates `ops` (times ordered, result present iff completed and of
    /// the right kind).
    pub fn new(ops: Vec<Operation>) -> Result<Self, HistoryError> {
        for (i, op) in ops.iter().enumerate() {
            op.validate().map_err(|reason| HistoryError::Invalid {
                line: i + 1,
                reason,
            })?;
        }
        Ok(History { ops })
    }

    /// The operations, in recording order. Explanations number them from 1.
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// Parses JSON lines; blank lines are skipped.
    pub fn parse_jsonl(text: &str) -> Result<Self, HistoryError> {
        Self::read_jsonl(text.as_bytes())
    }

    /// Reads JSON lines from `reader`; blank lines are skipped.
    pub fn read_jsonl(reader: impl BufRead) -> Result<Self, HistoryError> {
        let mut ops = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let wire: WireOp =
                serde_json::from_str(&line).map_err(|source| HistoryError::Syntax {
                    line: line_no,
                    source,
                })?;
            let op = Operation::try_from(wire).map_err(|reason| HistoryError::Invalid {
                line: line_no,
                reason,
            })?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, mut writer: impl Write) -> io::Result<()> {
        for op in &self.ops {
            serde_json::to_writer(&mut writer, op)?;
            writer.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The history as JSON lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = Vec::new();
        self.write_jsonl(&mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

impl Operation {
    /// Checks internal consistency; returns a human-readable reason if broken.
    pub fn validate(&self) -> Result<(), String> {
        match (self.complete, &self.result) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err("indeterminate op (no \"complete\") has a result".into()),
            (Some(_), None) => Err("completed op has no \"result\"".into()),
            (Some(c), Some(_)) if c < self.invoke => {
                Err(format!("complete ({c}) is before invoke ({})", self.invoke))
            }
            (Some(_), Some(out)) => check_output(&self.command, out),
        }
    }
}

fn check_output(command: &Command, out: &Output) -> Result<(), String> {
    match (command, out) {
        (Command::Get { .. }, Output::Get { .. })
        | (Command::Put { .. }, Output::Put)
        | (Command::Delete { .. }, Output::Delete { .. })
        | (Command::Cas { .. }, Output::Cas { .. }) => Ok(()),
        (
            Command::Txn {
                success, failure, ..
            },
            Output::Txn { succeeded, values },
        ) => {
            let branch = if *succeeded { success } else { failure };
            let gets = branch
                .iter()
                .filter(|op| matches!(op, TxnOp::Get { .. }))
                .count();
            if gets == values.len() {
                Ok(())
            } else {
                Err(format!(
                    "txn result has {} values but its branch has {gets} gets",
                    values.len()
                ))
            }
        }
        _ => Err("result does not match the op kind".into()),
    }
}

/// The flat on-the-wire record; [`Operation`] converts through it.
#[derive(Serialize, Deserialize)]
struct WireOp {
    client: u64,
    #[serde(flatten)]
    command: Command,
    invoke: Time,
    #[serde(default)]
    complete: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<WireResult>,
}

/// Every result field any op kind uses; which ones are required depends on the op.
#[derive(Default, Serialize, Deserialize)]
struct WireResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    /// Outer `None`: field absent; `Some(None)`: `"value": null`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    value: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    succeeded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<Option<String>>>,
}

/// Distinguishes a present `null` from an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl TryFrom<WireOp> for Operation {
    type Error = String;

    fn try_from(w: WireOp) -> Result<Self, String> {
        let result = match (w.complete, w.result) {
            (Some(_), Some(r)) => Some(output_from_wire(&w.command, r)?),
            (Some(_), None) => return Err("completed op has no \"result\"".into()),
            // A result without a completion time cannot be trusted; keep the
            // format strict so recorder bugs surface.
            (None, Some(_)) => return Err("indeterminate op (no \"complete\") has a result".into()),
            (None, None) => None,
        };
        let op = Operation {
            client: w.client,
            command: w.command,
            invoke: w.invoke,
            complete: w.complete,
            result,
        };
        op.validate()?;
        Ok(op)
    }
}

fn output_from_wire(command: &Command, r: WireResult) -> Result<Output, String> {
    Ok(match command {
        Command::Get { .. } => Output::Get {
            value: r
                .value
                .ok_or("get result needs \"value\" (string or null)")?,
        },
        Command::Put { .. } => match r.ok {
            Some(true) | None => Output::Put,
            Some(false) => return Err("failed put: omit ops known not to have happened".into()),
        },
        Command::Delete { .. } => match (r.deleted, r.ok) {
            (_, Some(false)) => {
                return Err("failed delete: omit ops known not to have happened".into())
            }
            (deleted, _) => Output::Delete { deleted },
        },
        Command::Cas { .. } => Output::Cas {
            ok: r.ok.ok_or("cas result needs \"ok\" (bool)")?,
        },
        Command::Txn { .. } => Output::Txn {
            succeeded: r.succeeded.ok_or("txn result needs \"succeeded\" (bool)")?,
            values: r.values.unwrap_or_default(),
        },
    })
}

impl From<Operation> for WireOp {
    fn from(op: Operation) -> Self {
        let result = op.result.map(|out| match out {
            Output::Get { value } => WireResult {
                value: Some(value),
                ..WireResult::default()
            },
            Output::Put => WireResult {
                ok: Some(true),
                ..WireResult::default()
            },
            Output::Delete { deleted: None } => WireResult {
                ok: Some(true),
                ..WireResult::default()
            },
            Output::Delete { deleted } => WireResult {
                deleted,
                ..WireResult::default()
            },
            Output::Cas { ok } => WireResult {
                ok: Some(ok),
                ..WireResult::default()
            },
            Output::Txn { succeeded, values } => WireResult {
                succeeded: Some(succeeded),
                values: Some(values),
                ..WireResult::default()
            },
        });
        WireOp {
            client: op.client,
            command: op.command,
            invoke: op.invoke,
            complete: op.complete,
            result,
        }
    }
}
