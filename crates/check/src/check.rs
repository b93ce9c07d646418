//! The checker's entry point: partition, search each partition, explain.

use std::time::{Duration, Instant};

use crate::explain::Violation;
use crate::history::{History, Operation};
use crate::partition::partition;
use crate::shrink::{prepare, shrink};
use crate::wgl::{search, Search};

/// Shrinking a violation may always take this long, however small the budget.
const MIN_SHRINK: Duration = Duration::from_millis(100);

/// The checker's conclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some total order of the operations respects real time and the model.
    Linearizable,
    /// No such order exists; the violation explains one failing partition.
    NotLinearizable(Box<Violation>),
    /// The time budget (or a search's 1 GiB memory cap) ran out before every
    /// partition was decided, and none of the decided ones failed.
    Unknown,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The conclusion.
    pub verdict: Verdict,
    /// How many independent partitions the history split into.
    pub partitions: usize,
    /// The keys of partitions the budget or memory cap ran out on.
    pub undecided: Vec<Vec<String>>,
    /// Wall time spent, shrinking included.
    pub elapsed: Duration,
}

/// Checks `history` for linearizability against the key-value model.
///
/// Partitions are searched smallest first; the first failing one stops the
/// check. Once `budget` has passed, a partition is abandoned within ~1000
/// search steps and reported as undecided. A violation is then shrunk for
/// up to four times as long as finding it took (at least 100 ms, at most
/// `budget`), so the worst case is about twice `budget`.
pub fn check(history: &History, budget: Duration) -> Report {
    let start = Instant::now();
    let deadline = start + budget;
    let ops = history.ops();
    let mut parts = partition(ops);
    parts.sort_by_key(|p| p.ops.len());
    let partitions = parts.len();
    let mut undecided = Vec::new();

    for part in parts {
        let (_, prepared) = prepare(ops, &part.ops, None);
        let refs: Vec<&Operation> = prepared.iter().collect();
        match search(&refs, deadline) {
            Search::Linearizable => {}
            Search::GaveUp => undecided.push(part.keys),
            Search::Violation(deepest) => {
                let effort = (start.elapsed() * 4).clamp(MIN_SHRINK, budget.max(MIN_SHRINK));
                let witness = shrink(ops, &part.ops, deepest, Instant::now() + effort);
                let violation = Violation::new(ops, part.keys, part.ops.len(), witness);
                return Report {
                    verdict: Verdict::NotLinearizable(Box::new(violation)),
                    partitions,
                    undecided,
                    elapsed: start.elapsed(),
                };
            }
        }
    }
    Report {
        verdict: if undecided.is_empty() {
            Verdict::Linearizable
        } else {
            Verdict::Unknown
        },
        partitions,
        undecided,
        elapsed: start.elapsed(),
    }
}
