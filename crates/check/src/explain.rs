//! Human-readable explanation of a linearizability violation.

use std::fmt::{self, Display, Formatter};

use crate::history::{Cmp, Command, Operation, Output, Time, TxnOp};
use crate::model::{apply, consistent, State};
use crate::shrink::Witness;

/// Ops of the longest valid order listed by the short (`{}`) form.
const SHORT_ORDER: usize = 8;
/// Witness ops listed by the short (`{}`) form.
const SHORT_OPS: usize = 40;

/// Why a history is not linearizable, shrunk to a small failing sub-history.
///
/// `Display` gives a short explanation; the alternate form (`{:#}`) lists
/// every op of the witness and of the longest valid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The keys of the failing partition.
    pub keys: Vec<String>,
    /// How many ops of the history touch those keys.
    pub partition_ops: usize,
    /// If set, only ops invoked by this time were needed (ops still running
    /// then are treated as indeterminate).
    pub cut: Option<Time>,
    /// The failing sub-history, by invoke time.
    pub ops: Vec<WitnessOp>,
    /// History indices (0-based) of the longest valid order the search found.
    pub order: Vec<usize>,
    /// The model state after `order`.
    pub state: State,
    /// History index of an op that completed before it could be placed.
    pub stuck: usize,
    /// The ops that could have come next, none consistent with `state`.
    pub candidates: Vec<Candidate>,
}

/// One op of a violation's failing sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessOp {
    /// 0-based index into the history (explanations print it 1-based).
    pub index: usize,
    /// The op as recorded.
    pub op: Operation,
    /// Whether the cut treated it as indeterminate.
    pub in_flight: bool,
}

/// An op that could have been linearized next, and why it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// 0-based index into the history.
    pub index: usize,
    /// Why the model rejects it.
    pub reason: String,
}

impl Violation {
    pub(crate) fn new(
        history: &[Operation],
        keys: Vec<String>,
        partition_ops: usize,
        w: Witness,
    ) -> Self {
        let d = &w.deepest;
        let mut ops: Vec<WitnessOp> = w
            .indices
            .iter()
            .zip(&w.ops)
            .map(|(&index, checked)| WitnessOp {
                index,
                op: history[index].clone(),
                in_flight: checked.complete.is_none() && history[index].complete.is_some(),
            })
            .collect();
        ops.sort_by_key(|o| (o.op.invoke, o.index));
        let candidates = d
            .candidates
            .iter()
            .map(|&c| Candidate {
                index: w.indices[c],
                reason: reject_reason(&d.state, &w.ops[c]),
            })
            .collect();
        Violation {
            keys,
            partition_ops,
            cut: w.cut,
            ops,
            order: d.order.iter().map(|&i| w.indices[i]).collect(),
            state: d.state.clone(),
            stuck: w.indices[d.stuck],
            candidates,
        }
    }
}

fn reject_reason(state: &State, op: &Operation) -> String {
    let mut scratch = state.clone();
    let actual = apply(&mut scratch, &op.command);
    match &op.result {
        Some(observed) if consistent(&actual, observed) => format!(
            "{} -> {} fits here, but every way of continuing fails",
            CommandText(&op.command),
            OutputText(observed)
        ),
        Some(observed) => format!(
            "{} reported {}, but after that order it would be {}",
            CommandText(&op.command),
            OutputText(observed),
            OutputText(&actual)
        ),
        None => format!(
            "{} (never returned) fits here, but every way of continuing fails",
            CommandText(&op.command)
        ),
    }
}

impl Display for Violation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let all = f.alternate();
        let keys: Vec<String> = self.keys.iter().map(|k| format!("{k:?}")).collect();
        writeln!(
            f,
            "partition {{{}}}: these {} of its {} ops are already not linearizable:",
            keys.join(", "),
            self.ops.len(),
            self.partition_ops,
        )?;
        if let Some(t) = self.cut {
            writeln!(
                f,
                "  (history cut at t={t}: later ops left out, ops still running then \
                 may or may not have taken effect)"
            )?;
        }
        let skip = if all {
            0
        } else {
            self.ops.len().saturating_sub(SHORT_OPS)
        };
        if skip > 0 {
            writeln!(f, "  ... {skip} earlier ops (the long form lists them)")?;
        }
        for w in &self.ops[skip..] {
            writeln!(f, "  {}", OpLine(w.index, &w.op, w.in_flight))?;
        }
        let shown = if all {
            self.order.len()
        } else {
            self.order.len().min(SHORT_ORDER)
        };
        let hidden = self.order.len() - shown;
        write!(f, "longest valid order found ({} ops):", self.order.len())?;
        if hidden > 0 {
            write!(f, " ... {hidden} earlier,")?;
        }
        let tail: Vec<String> = self.order[hidden..]
            .iter()
            .map(|i| format!("#{}", i + 1))
            .collect();
        writeln!(f, " {}", tail.join(" "))?;
        let state: Vec<String> = self
            .keys
            .iter()
            .map(|k| match self.state.get(k) {
                Some(v) => format!("{k}={v:?}"),
                None => format!("{k} absent"),
            })
            .collect();
        writeln!(f, "state after it: {}", state.join(", "))?;
        let stuck = self.ops.iter().find(|w| w.index == self.stuck);
        let by = stuck
            .and_then(|w| w.op.complete)
            .map_or(String::new(), |t| format!(" by t={t}"));
        writeln!(
            f,
            "op #{} had to take effect{by}, but no op that could go next fits that state:",
            self.stuck + 1
        )?;
        for c in &self.candidates {
            writeln!(f, "  #{}: {}", c.index + 1, c.reason)?;
        }
        write!(
            f,
            "No order of these operations is consistent with their real-time order and results."
        )
    }
}

/// `#12 client 3 [1200, 1500] put "k"="v" -> ok`
struct OpLine<'a>(usize, &'a Operation, bool);

impl Display for OpLine<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let OpLine(index, op, in_flight) = *self;
        let end = op
            .complete
            .map_or("never returned".to_string(), |c| c.to_string());
        write!(
            f,
            "#{:<4} client {:<3} [{}, {}] {}",
            index + 1,
            op.client,
            op.invoke,
            end,
            CommandText(&op.command)
        )?;
        if let Some(out) = &op.result {
            write!(f, " -> {}", OutputText(out))?;
        }
        if in_flight {
            write!(f, " (in flight at the cut)")?;
        }
        Ok(())
    }
}

struct CommandText<'a>(&'a Command);

impl Display for CommandText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Command::Get { key } => write!(f, "get {key:?}"),
            Command::Put { key, value } => write!(f, "put {key:?}={value:?}"),
            Command::Delete { key } => write!(f, "delete {key:?}"),
            Command::Cas {
                key,
                expected,
                value,
            } => match expected {
                Some(e) => write!(f, "cas {key:?} {e:?}->{value:?}"),
                None => write!(f, "cas {key:?} absent->{value:?}"),
            },
            Command::Txn {
                compares,
                success,
                failure,
            } => {
                let cmps: Vec<String> = compares.iter().map(compare_text).collect();
                let ops = |b: &[TxnOp]| b.iter().map(txn_op_text).collect::<Vec<_>>().join("; ");
                write!(
                    f,
                    "txn if [{}] then [{}] else [{}]",
                    cmps.join(" && "),
                    ops(success),
                    ops(failure)
                )
            }
        }
    }
}

fn compare_text(c: &crate::history::Compare) -> String {
    let k = &c.key;
    match &c.cmp {
        Cmp::Equal { value } => format!("{k:?} == {value:?}"),
        Cmp::NotEqual { value } => format!("{k:?} != {value:?}"),
        Cmp::Greater { value } => format!("{k:?} > {value:?}"),
        Cmp::Less { value } => format!("{k:?} < {value:?}"),
        Cmp::Absent => format!("{k:?} absent"),
        Cmp::Present => format!("{k:?} present"),
    }
}

fn txn_op_text(op: &TxnOp) -> String {
    match op {
        TxnOp::Get { key } => format!("get {key:?}"),
        TxnOp::Put { key, value } => format!("put {key:?}={value:?}"),
        TxnOp::Delete { key } => format!("delete {key:?}"),
    }
}

struct OutputText<'a>(&'a Output);

fn value_text(v: &Option<String>) -> String {
    v.as_ref()
        .map_or("absent".to_string(), |v| format!("{v:?}"))
}

impl Display for OutputText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Output::Get { value } => write!(f, "{}", value_text(value)),
            Output::Put | Output::Delete { deleted: None } => write!(f, "ok"),
            Output::Delete { deleted: Some(n) } => write!(f, "deleted {n}"),
            Output::Cas { ok } => write!(f, "{}", if *ok { "swapped" } else { "not swapped" }),
            Output::Txn { succeeded, values } => {
                let vals: Vec<String> = values.iter().map(value_text).collect();
                let branch = if *succeeded { "then" } else { "else" };
                write!(f, "{branch} branch, values [{}]", vals.join(", "))
            }
        }
    }
}
