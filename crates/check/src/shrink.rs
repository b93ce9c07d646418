//! Shrinks a non-linearizable partition to a small sub-history that is still
//! not linearizable, using only reductions that preserve that fact:
//!
//! * **Cutting at time T**: drop ops invoked after T and treat ops still in
//!   flight at T as indeterminate. Any linearization of the full history,
//!   restricted to the kept ops, is one of the cut history (ops completed by
//!   T are ordered before every dropped op; in-flight ops placed after a
//!   dropped op can "never take effect"), so a failing cut proves the full
//!   history fails. The earliest failing T is found by bisection, since a
//!   later cut contains an earlier one.
//! * **Dropping quiet ops**: completed ops that change nothing wherever
//!   their result fits (reads, failed CASes, ...) can be removed from a
//!   linearization, leaving a valid one.
//!
//! Writes, and indeterminate ops, are never dropped: a sub-history missing a
//! write may fail for a reason the real history does not have.

use std::time::Instant;

use crate::history::{Operation, Time};
use crate::model::quiet_where_it_fits;
use crate::wgl::{search, Deepest, Search};

/// A non-linearizable sub-history and the search's deepest point in it.
#[derive(Debug)]
pub(crate) struct Witness {
    /// History indices of the ops kept, in history order.
    pub indices: Vec<usize>,
    /// The ops as checked (in-flight ops made indeterminate), parallel to `indices`.
    pub ops: Vec<Operation>,
    /// The cut time, if the cut dropped or truncated anything.
    pub cut: Option<Time>,
    /// The deepest point of the search, indexing into `ops`.
    pub deepest: Deepest,
}

/// The ops of `indices` as checked when cut at `cut`: ops invoked later are
/// dropped, ops completing later become indeterminate, and indeterminate
/// read-only ops are dropped (they can always be left out).
pub(crate) fn prepare(
    history: &[Operation],
    indices: &[usize],
    cut: Option<Time>,
) -> (Vec<usize>, Vec<Operation>) {
    let cut = cut.unwrap_or(Time::MAX);
    let mut kept = Vec::new();
    let mut ops = Vec::new();
    for &i in indices {
        let op = &history[i];
        if op.invoke > cut {
            continue;
        }
        let mut op = op.clone();
        if op.complete.is_none_or(|c| c > cut) {
            op.complete = None;
            op.result = None;
            if op.command.is_read_only() {
                continue;
            }
        }
        kept.push(i);
        ops.push(op);
    }
    (kept, ops)
}

fn violation(ops: &[Operation], deadline: Instant) -> Option<Deepest> {
    let refs: Vec<&Operation> = ops.iter().collect();
    match search(&refs, deadline) {
        Search::Violation(deepest) => Some(deepest),
        Search::Linearizable | Search::GaveUp => None,
    }
}

/// Shrinks the failing partition `indices` (whose uncut, prepared ops failed
/// with `deepest`) until `deadline`; returns the smallest witness found.
pub(crate) fn shrink(
    history: &[Operation],
    indices: &[usize],
    deepest: Deepest,
    deadline: Instant,
) -> Witness {
    let (kept, ops) = prepare(history, indices, None);
    let mut best = Witness {
        indices: kept,
        ops,
        cut: None,
        deepest,
    };

    // 1. Bisect for the earliest failing cut.
    let mut times: Vec<Time> = indices
        .iter()
        .filter_map(|&i| history[i].complete)
        .collect();
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0, times.len().saturating_sub(1));
    while lo < hi && Instant::now() < deadline {
        let mid = (lo + hi) / 2;
        let (kept, ops) = prepare(history, indices, Some(times[mid]));
        match violation(&ops, deadline) {
            Some(deepest) => {
                hi = mid;
                best = Witness {
                    indices: kept,
                    ops,
                    cut: Some(times[mid]),
                    deepest,
                };
            }
            None => lo = mid + 1,
        }
    }

    // 2. Drop quiet ops, in halving chunks (a light delta-debugging pass).
    //    `reads` stays sorted, like `best.indices`.
    let mut reads: Vec<usize> = (0..best.ops.len())
        .filter(|&i| best.ops[i].result.is_some() && quiet_where_it_fits(&best.ops[i]))
        .map(|i| best.indices[i])
        .collect();
    let mut chunk = (reads.len() / 2).max(1);
    while !reads.is_empty() && Instant::now() < deadline {
        let mut start = 0;
        while start < reads.len() && Instant::now() < deadline {
            let end = (start + chunk).min(reads.len());
            let drop = &reads[start..end];
            let keep: Vec<usize> = (0..best.ops.len())
                .filter(|&i| drop.binary_search(&best.indices[i]).is_err())
                .collect();
            let ops: Vec<Operation> = keep.iter().map(|&i| best.ops[i].clone()).collect();
            match violation(&ops, deadline) {
                Some(deepest) => {
                    best.indices = keep.iter().map(|&i| best.indices[i]).collect();
                    best.ops = ops;
                    best.deepest = deepest;
                    reads.drain(start..end);
                }
                None => start = end,
            }
        }
        if chunk == 1 {
            break;
        }
        chunk /= 2;
    }
    best
}
