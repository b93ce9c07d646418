//! Shared test helpers: a seeded RNG, a reference model of the WAL's logical
//! content, and a generator of valid random operations.
#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use concord_raft::{ConfChange, ConfChangeStep, Entry, EntryKind, GroupId, HardState, Index, Term};
use concord_storage::{GroupLog, SnapshotMark, WalBatch};

/// The workspace's splitmix64, with the shapes these tests draw.
#[derive(Clone, Debug)]
pub struct Rng(pub concord_rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(concord_rng::SplitMix64::new(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn bytes(&mut self, n: usize) -> Bytes {
        Bytes::from((0..n).map(|_| self.next() as u8).collect::<Vec<u8>>())
    }
}

/// One logical operation on the WAL.
#[derive(Clone, Debug)]
pub enum Op {
    Append(WalBatch),
    Compact(GroupId, SnapshotMark),
}

/// Reference model of one group's log: deliberately simple (a map).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelGroup {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMark>,
    pub entries: BTreeMap<Index, Entry>,
}

impl ModelGroup {
    pub fn last_index(&self) -> Index {
        self.entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.snapshot.map_or(0, |m| m.index))
    }

    pub fn snap_index(&self) -> Index {
        self.snapshot.map_or(0, |m| m.index)
    }

    pub fn max_term(&self) -> Term {
        let e = self.entries.values().map(|e| e.term).max().unwrap_or(0);
        e.max(self.hard_state.term)
            .max(self.snapshot.map_or(0, |m| m.term))
    }
}

/// Reference model of the whole WAL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub groups: BTreeMap<GroupId, ModelGroup>,
}

impl Model {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(b) => {
                let g = self.groups.entry(b.group).or_default();
                if let Some(m) = b.snapshot {
                    g.snapshot = Some(m);
                    g.entries.clear();
                }
                if let Some(first) = b.entries.first() {
                    g.entries.split_off(&first.index);
                    for e in &b.entries {
                        g.entries.insert(e.index, e.clone());
                    }
                }
                if let Some(hs) = b.hard_state {
                    g.hard_state = hs;
                }
            }
            Op::Compact(group, mark) => {
                let g = self
                    .groups
                    .get_mut(group)
                    .expect("compacting a known group");
                g.entries.retain(|&i, _| i > mark.index);
                g.snapshot = Some(*mark);
            }
        }
    }

    /// The model as the WAL reports it.
    pub fn logs(&self) -> BTreeMap<GroupId, GroupLog> {
        self.groups
            .iter()
            .map(|(&g, m)| {
                let log = GroupLog {
                    hard_state: m.hard_state,
                    snapshot: m.snapshot,
                    entries: m.entries.values().cloned().collect(),
                };
                (g, log)
            })
            .collect()
    }

    /// Rebuild the model from what the WAL recovered.
    pub fn from_logs(logs: &BTreeMap<GroupId, GroupLog>) -> Self {
        let groups = logs
            .iter()
            .map(|(&g, l)| {
                let entries = l.entries.iter().map(|e| (e.index, e.clone())).collect();
                (
                    g,
                    ModelGroup {
                        hard_state: l.hard_state,
                        snapshot: l.snapshot,
                        entries,
                    },
                )
            })
            .collect();
        Model { groups }
    }
}

fn entry(rng: &mut Rng, term: Term, index: Index, max_payload: usize) -> Entry {
    if rng.chance(5) {
        let cc = ConfChange {
            changes: vec![
                ConfChangeStep::AddVoter(rng.range(1, 9)),
                ConfChangeStep::Remove(4),
            ],
            joint: rng.chance(50),
        };
        return Entry {
            term,
            index,
            kind: EntryKind::ConfChange(cc),
            data: Bytes::new(),
        };
    }
    let n = rng.range(0, max_payload as u64) as usize;
    Entry::normal(term, index, rng.bytes(n))
}

/// A random operation that the WAL must accept, given the current `model`.
/// `repair` / `install` / `compact` are percentages.
pub fn random_op(
    rng: &mut Rng,
    model: &Model,
    groups: u64,
    max_payload: usize,
    compact: u64,
) -> Op {
    let group = rng.range(1, groups);
    let g = model.groups.get(&group).cloned().unwrap_or_default();
    let last = g.last_index();
    if last > g.snap_index() && rng.chance(compact) {
        let index = rng.range(g.snap_index() + 1, last);
        let term = g.entries[&index].term;
        return Op::Compact(group, SnapshotMark { index, term });
    }
    let mut term = g.max_term().max(1);
    let mut b = WalBatch::new(group);
    let mut first = last + 1;
    if rng.chance(2) {
        term += 1;
        let mark = SnapshotMark {
            index: last + rng.range(1, 3),
            term,
        };
        b.snapshot = Some(mark);
        first = mark.index + 1;
    } else if last > g.snap_index() && rng.chance(10) {
        term += 1;
        first = rng.range(g.snap_index() + 1, last);
    }
    let n = rng.range(if b.snapshot.is_some() { 0 } else { 1 }, 4);
    b.entries = (0..n)
        .map(|i| entry(rng, term, first + i, max_payload))
        .collect();
    if rng.chance(60) {
        let hs = g.hard_state;
        let vote = if term == hs.term && hs.vote != 0 {
            hs.vote
        } else {
            rng.range(0, 3)
        };
        let commit = rng.range(0, first + n);
        b.hard_state = Some(HardState {
            term: term.max(hs.term),
            vote,
            commit,
        });
    }
    Op::Append(b)
}
