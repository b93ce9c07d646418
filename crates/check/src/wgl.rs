//! The Wing & Gong search with Lowe's memoization, as in porcupine.
//!
//! Call and return events are sorted by time into a doubly linked list. The
//! search walks the list from the front: at a call it tries to linearize that
//! operation next (the model must accept its result), lifting the call and
//! its return out of the list; at a return it has found an operation that
//! completed without being linearized, so it backtracks. A cache of
//! (linearized set, state) pairs prunes configurations already explored.
//!
//! Two reductions on top: an op that cannot change the state where its
//! result fits (a read, a failed CAS, ...) and fits now is linearized
//! without trying alternatives (see [`Pass::Quiet`]), and candidates are
//! tried determinate first, indeterminate last.
//!
//! Indeterminate operations return at "infinity": reaching such a return
//! means every completed operation is linearized, and the remaining ones may
//! simply never have taken effect, so the history is linearizable. Since an
//! indeterminate op left pending can do anything an applied one can, the
//! cache also prunes configurations dominated by one with fewer of them
//! applied (see [`Cache`]).

use std::collections::HashMap;
use std::time::Instant;

use crate::history::{Operation, Time};
use crate::model::{apply, consistent, quiet_where_it_fits, State};

/// How often (in search steps) the deadline is consulted.
const DEADLINE_EVERY: u64 = 1024;
/// Roughly how much memory one search's cache may use before giving up.
pub(crate) const MAX_CACHE_BYTES: usize = 1 << 30;
const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The result of searching one partition.
#[derive(Debug)]
pub(crate) enum Search {
    /// Some order is consistent with real time and the model.
    Linearizable,
    /// No order is; carries the deepest point the search reached.
    Violation(Deepest),
    /// The deadline passed, or the cache outgrew [`MAX_CACHE_BYTES`], first.
    GaveUp,
}

/// The furthest the search got before every branch failed: most determinate
/// ops linearized, then fewest indeterminate ones.
#[derive(Debug, Clone)]
pub(crate) struct Deepest {
    /// Indices into the searched ops: the longest valid order found.
    pub order: Vec<usize>,
    /// The model state after `order`.
    pub state: State,
    /// The op that completed before it could be linearized.
    pub stuck: usize,
    /// The ops that could have been linearized next (including `stuck`);
    /// none of them leads to a full order (most do not fit `state` at all).
    pub candidates: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    /// For a call node, its return node; `NIL` for a return node.
    ret: usize,
}

/// The event list; node 0 is the head sentinel.
struct List {
    nodes: Vec<Node>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl List {
    fn new(ops: &[&Operation]) -> Self {
        // (time, is_return, op): calls sort before returns at equal times, so
        // operations whose intervals touch count as concurrent.
        let mut events: Vec<(Time, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, false, i));
            events.push((op.complete.unwrap_or(Time::MAX), true, i));
        }
        events.sort_unstable();
        let mut ret_node = vec![NIL; ops.len()];
        for (pos, &(_, is_return, op)) in events.iter().enumerate() {
            if is_return {
                ret_node[op] = pos + 1;
            }
        }
        let mut nodes = vec![Node { op: NIL, ret: NIL }];
        nodes.extend(events.iter().map(|&(_, is_return, op)| Node {
            op,
            ret: if is_return { NIL } else { ret_node[op] },
        }));
        let len = nodes.len();
        let next = (0..len)
            .map(|i| if i + 1 < len { i + 1 } else { NIL })
            .collect();
        let prev = (0..len).map(|i| i.wrapping_sub(1)).collect();
        List { nodes, next, prev }
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }

    /// Removes a call node and its return node.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].ret);
    }

    /// Undoes [`List::lift`] (in reverse order).
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].ret);
        self.relink(call);
    }

    /// The first return node (every list ends with one while non-empty).
    fn first_return(&self) -> usize {
        let mut n = self.next[HEAD];
        while n != NIL && self.nodes[n].ret != NIL {
            n = self.next[n];
        }
        n
    }

    /// Ops of the call nodes before node `end`.
    fn calls_before(&self, end: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut n = self.next[HEAD];
        while n != NIL && n != end {
            if self.nodes[n].ret != NIL {
                out.push(self.nodes[n].op);
            }
            n = self.next[n];
        }
        out
    }
}

/// A set of ops, one bit per op.
type Bits = Box<[u64]>;

/// Configurations already entered. A configuration is dominated by one with
/// the same state and the same determinate ops linearized but a subset of the
/// indeterminate ones (those could still be applied later, or never), so it
/// is pruned too.
struct Cache {
    /// Bit set of the indeterminate ops; empty if there are none.
    indeterminate: Vec<u64>,
    /// Every distinct state seen, numbered.
    states: HashMap<State, u32>,
    /// (determinate ops linearized, state) -> indeterminate sets entered.
    seen: HashMap<(Bits, u32), Vec<Bits>>,
    /// Rough heap footprint, checked against [`MAX_CACHE_BYTES`].
    bytes: usize,
}

impl Cache {
    fn new(ops: &[&Operation]) -> Self {
        let mut indeterminate = vec![0; ops.len().div_ceil(64)];
        for (i, op) in ops.iter().enumerate() {
            if op.complete.is_none() {
                indeterminate[i / 64] |= 1 << (i % 64);
            }
        }
        if indeterminate.iter().all(|&w| w == 0) {
            indeterminate.clear();
        }
        Cache {
            indeterminate,
            states: HashMap::new(),
            seen: HashMap::new(),
            bytes: 0,
        }
    }

    fn full(&self) -> bool {
        self.bytes > MAX_CACHE_BYTES
    }

    /// Records the configuration; false if it (or a dominating one) was seen.
    fn enter(&mut self, linearized: &[u64], state: &State) -> bool {
        let id = match self.states.get(state) {
            Some(&id) => id,
            None => {
                let id = self.states.len() as u32;
                self.bytes += 64
                    + state
                        .iter()
                        .map(|(k, v)| 48 + k.len() + v.len())
                        .sum::<usize>();
                self.states.insert(state.clone(), id);
                id
            }
        };
        let mask = |i: usize| self.indeterminate.get(i).copied().unwrap_or(0);
        let det: Bits = linearized
            .iter()
            .enumerate()
            .map(|(i, &l)| l & !mask(i))
            .collect();
        let indet: Bits = self
            .indeterminate
            .iter()
            .zip(linearized)
            .map(|(&m, &l)| l & m)
            .collect();
        let entered = self.seen.entry((det, id)).or_default();
        let dominated = entered.iter().any(|e| {
            e.iter()
                .zip(indet.iter())
                .all(|(&old, &new)| old & !new == 0)
        });
        if !dominated {
            self.bytes += 8 * (linearized.len() + indet.len()) + 64;
            entered.push(indet);
        }
        !dominated
    }
}

/// Which candidates a configuration is currently trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Determinate ops that leave the state unchanged wherever their result
    /// fits (see [`quiet_where_it_fits`]). If any completion exists, one
    /// starts with such an op that fits now: moving it to the front changes
    /// no state anyone sees, and being in the window no pending op must
    /// precede it. So the first that fits is taken without alternatives.
    Quiet,
    /// The other determinate ops.
    Writes,
    /// Indeterminate ops, tried last so that configurations with fewer of
    /// them applied are entered first and dominate the rest.
    Indeterminate,
}

/// Searches for a linearization of `ops`, giving up at `deadline`.
pub(crate) fn search(ops: &[&Operation], deadline: Instant) -> Search {
    let mut list = List::new(ops);
    let mut cache = Cache::new(ops);
    let any_indeterminate = !cache.indeterminate.is_empty();
    let classes: Vec<Pass> = ops
        .iter()
        .map(|op| match op.complete {
            None => Pass::Indeterminate,
            Some(_) if quiet_where_it_fits(op) => Pass::Quiet,
            Some(_) => Pass::Writes,
        })
        .collect();
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    // (call node, state before linearizing it, the pass that chose it)
    let mut stack: Vec<(usize, State, Pass)> = Vec::new();
    let mut state = State::new();
    let mut deepest: Option<Deepest> = None;
    // Progress of `deepest` and of the stack: (determinate ops, -indeterminate
    // ops), so explanations prefer orders that assume fewer lost writes.
    let mut best = (0, 0);
    let mut determinate_depth = 0;
    let mut steps: u64 = 0;
    let mut node = list.next[HEAD];
    let mut pass = Pass::Quiet;

    loop {
        steps += 1;
        if steps % DEADLINE_EVERY == 0 && (Instant::now() >= deadline || cache.full()) {
            return Search::GaveUp;
        }
        if node == NIL {
            return Search::Linearizable;
        }
        let Node { op, ret } = list.nodes[node];
        if ret != NIL {
            // A call: try to linearize `op` next, if this pass admits it.
            let indeterminate = ops[op].complete.is_none();
            if classes[op] == pass {
                let mut next_state = state.clone();
                let actual = apply(&mut next_state, &ops[op].command);
                let accepted = match &ops[op].result {
                    Some(observed) => consistent(&actual, observed),
                    // Applying it without effect is dominated by leaving it pending.
                    None => next_state != state,
                };
                if accepted {
                    linearized[op / 64] |= 1 << (op % 64);
                    if cache.enter(&linearized, &next_state) {
                        let before = std::mem::replace(&mut state, next_state);
                        stack.push((node, before, pass));
                        determinate_depth += usize::from(!indeterminate);
                        list.lift(node);
                        node = list.next[HEAD];
                        pass = Pass::Quiet;
                        continue;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                    if pass == Pass::Quiet {
                        // The forced move leads somewhere already explored.
                        pass = Pass::Indeterminate;
                        node = list.first_return();
                        continue;
                    }
                }
            }
            node = list.next[node];
        } else if ops[op].complete.is_none() {
            // Only indeterminate ops remain: let them never take effect.
            return Search::Linearizable;
        } else if pass == Pass::Quiet {
            pass = Pass::Writes;
            node = list.next[HEAD];
        } else if pass == Pass::Writes && any_indeterminate {
            pass = Pass::Indeterminate;
            node = list.next[HEAD];
        } else {
            // `op` completed un-linearized: record progress, then backtrack.
            let depth = (
                determinate_depth,
                -((stack.len() - determinate_depth) as isize),
            );
            if deepest.is_none() || depth > best {
                best = depth;
                deepest = Some(Deepest {
                    order: stack.iter().map(|&(n, _, _)| list.nodes[n].op).collect(),
                    state: state.clone(),
                    stuck: op,
                    candidates: list.calls_before(node),
                });
            }
            loop {
                let Some((call, previous, chosen_by)) = stack.pop() else {
                    return Search::Violation(deepest.expect("recorded just above"));
                };
                state = previous;
                let undone = list.nodes[call].op;
                linearized[undone / 64] &= !(1 << (undone % 64));
                determinate_depth -= usize::from(ops[undone].complete.is_some());
                list.unlift(call);
                if chosen_by != Pass::Quiet {
                    pass = chosen_by;
                    node = list.next[call];
                    break;
                }
                // A forced quiet op failed, so its whole configuration fails.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Command, Output};
    use std::time::Duration;

    fn op(
        command: Command,
        invoke: Time,
        complete: Option<Time>,
        out: Option<Output>,
    ) -> Operation {
        Operation {
            client: 0,
            command,
            invoke,
            complete,
            result: out,
        }
    }

    #[test]
    fn deepest_point_names_the_stuck_read() {
        let put = |v: &str, i, c| {
            let cmd = Command::Put {
                key: "k".into(),
                value: v.into(),
            };
            op(cmd, i, Some(c), Some(Output::Put))
        };
        let get = Command::Get { key: "k".into() };
        let ops = [
            put("a", 0, 10),
            put("b", 20, 30),
            op(
                get,
                40,
                Some(50),
                Some(Output::Get {
                    value: Some("a".into()),
                }),
            ),
        ];
        let refs: Vec<&Operation> = ops.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        match search(&refs, deadline) {
            Search::Violation(d) => {
                assert_eq!(d.order, vec![0, 1]);
                assert_eq!(d.stuck, 2);
                assert_eq!(d.candidates, vec![2]);
                assert_eq!(d.state.get("k").map(String::as_str), Some("b"));
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }
}
