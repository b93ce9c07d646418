//! The fault schedule: crashes with restarts, partitions of every shape,
//! clogged links, membership changes and leadership transfers.

use concord_raft::{ConfChange, ConfChangeStep, RawNode};

use crate::clock::Clock;
use crate::node::SimNode;
use crate::world::{Event, World};

/// Nodes added by membership changes, at most, per run.
const MAX_ADDED_NODES: u64 = 2;

impl World {
    /// Pick and apply one fault action.
    pub(crate) fn inject_fault(&mut self) {
        let f = self.cfg.faults.clone();
        let enabled = [
            f.crashes,
            f.partitions,
            f.clogging,
            f.membership,
            f.transfers,
            true,
        ];
        let weights: Vec<u64> = f
            .weights
            .iter()
            .zip(enabled)
            .map(|(&w, on)| if on { w } else { 0 })
            .collect();
        let total: u64 = weights.iter().sum();
        let mut roll = self.rng.below(total.max(1));
        let mut kind = weights.len() - 1;
        for (i, &w) in weights.iter().enumerate() {
            if roll < w {
                kind = i;
                break;
            }
            roll -= w;
        }
        match kind {
            0 => self.crash_random(),
            1 => self.partition_random(),
            2 => self.clog_random(),
            3 => self.change_membership(),
            4 => self.transfer_random(),
            _ => {
                self.count_fault("heal");
                self.net.heal();
            }
        }
    }

    fn members(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    fn crash_random(&mut self) {
        let ids = self.members();
        // Crashing a node while its write is in flight exercises the loss of
        // unsynced state (and the rule that nothing depending on it left early).
        let writing: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.is_writing())
            .map(|(&id, _)| id)
            .collect();
        let mid_write = !writing.is_empty() && self.rng.chance(self.cfg.faults.crash_mid_write);
        let id = if mid_write {
            *self.rng.pick(&writing)
        } else {
            *self.rng.pick(&ids)
        };
        let n = self.nodes.get_mut(&id).expect("node");
        if !n.up() {
            return;
        }
        n.crash();
        self.count_fault(if mid_write {
            "crash-mid-write"
        } else {
            "crash"
        });
        self.note(|| format!("crash node {id}"));
        let (lo, hi) = self.cfg.faults.restart_delay_us;
        let after = self.rng.range(lo, hi);
        self.schedule(after, Event::Restart { node: id });
    }

    /// An append acknowledgement is about to reach a leader: maybe cut the
    /// leader off now, so that whatever it sends in answer is lost.
    pub(crate) fn maybe_cut_on_ack(&mut self, m: &concord_raft::Message) {
        let p = self.cfg.faults.cut_leader_on_ack;
        let is_ack = matches!(
            m.body,
            concord_raft::Body::AppendResponse { reject: None, .. }
        );
        if !self.faults_on || p <= 0.0 || !is_ack {
            return;
        }
        let leads = self
            .nodes
            .get(&m.to)
            .and_then(|n| n.raw.as_ref())
            .is_some_and(|r| r.is_leader());
        if !leads || !self.rng.chance(p) {
            return;
        }
        let node = m.to;
        self.net.cut.clear();
        let rest: Vec<u64> = self.members().into_iter().filter(|&x| x != node).collect();
        self.net.split(&[node], &rest);
        self.count_fault("cut-leader-on-ack");
        self.note(|| format!("cut leader {node} off as an ack arrives"));
        let (lo, hi) = self.cfg.faults.partition_us;
        let after = self.rng.range(lo, hi);
        self.schedule(after, Event::Heal);
    }

    /// A leader elected a moment ago is cut off from everyone.
    pub(crate) fn isolate_new_leader(&mut self, node: u64, term: u64) {
        let still = self
            .nodes
            .get(&node)
            .and_then(|n| n.raw.as_ref())
            .is_some_and(|r| {
                let st = r.status();
                r.is_leader() && st.hard_state.term == term
            });
        if !still || !self.faults_on {
            return;
        }
        self.net.cut.clear();
        let rest: Vec<u64> = self.members().into_iter().filter(|&x| x != node).collect();
        self.net.split(&[node], &rest);
        self.count_fault("isolate-new-leader");
        self.note(|| format!("isolate new leader {node} of term {term}"));
        let (lo, hi) = self.cfg.faults.partition_us;
        let after = self.rng.range(lo, hi);
        self.schedule(after, Event::Heal);
    }

    fn partition_random(&mut self) {
        // Each partition replaces the previous topology.
        self.net.cut.clear();
        let mut ids = self.members();
        let (lo, hi) = self.cfg.faults.partition_us;
        let heal_after = self.rng.range(lo, hi);
        match self.rng.below(5) {
            0 => {
                // Majority / minority (or any split).
                let k = self.rng.range(1, ids.len() as u64 - 1) as usize;
                shuffle(&mut self.rng, &mut ids);
                let (a, b) = ids.split_at(k);
                self.net.split(a, b);
                self.count_fault("partition-split");
                let (a, b) = (a.to_vec(), b.to_vec());
                self.note(|| format!("partition {a:?} | {b:?}"));
            }
            1 => {
                // Isolate the leader completely.
                let Some(l) = self.leader() else { return };
                let rest: Vec<u64> = ids.iter().copied().filter(|&x| x != l).collect();
                self.net.split(&[l], &rest);
                self.count_fault("partition-isolate-leader");
                self.note(|| format!("isolate leader {l}"));
            }
            2 => {
                // Asymmetric: one direction of one link.
                let from = *self.rng.pick(&ids);
                let to = *self.rng.pick(&ids);
                if from == to {
                    return;
                }
                self.net.cut.insert((from, to));
                self.count_fault("partition-one-way");
                self.note(|| format!("cut {from} -> {to}"));
            }
            3 => {
                // Bridge: one node sees both halves, the halves do not see each other.
                if ids.len() < 3 {
                    return;
                }
                shuffle(&mut self.rng, &mut ids);
                let bridge = ids[0];
                let rest = &ids[1..];
                let k = rest.len() / 2;
                let (a, b) = rest.split_at(k.max(1));
                self.net.split(a, b);
                self.count_fault("partition-bridge");
                let (a, b) = (a.to_vec(), b.to_vec());
                self.note(|| format!("bridge {bridge} between {a:?} and {b:?}"));
            }
            _ => {
                // Isolate a random node.
                let x = *self.rng.pick(&ids);
                let rest: Vec<u64> = ids.iter().copied().filter(|&y| y != x).collect();
                self.net.split(&[x], &rest);
                self.count_fault("partition-isolate-node");
                self.note(|| format!("isolate node {x}"));
            }
        }
        self.schedule(heal_after, Event::Heal);
    }

    fn clog_random(&mut self) {
        let ids = self.members();
        let a = *self.rng.pick(&ids);
        let b = *self.rng.pick(&ids);
        if a == b {
            return;
        }
        self.net.clogged.insert((a, b));
        self.net.clogged.insert((b, a));
        self.count_fault("clog");
        self.note(|| format!("clog {a} <-> {b}"));
        let after = self.rng.range(100_000, 1_000_000);
        self.schedule(after, Event::Heal);
    }

    fn transfer_random(&mut self) {
        let Some(l) = self.leader() else { return };
        let voters = self.nodes[&l].raw.as_ref().expect("up").conf_state().voters;
        let to = *self.rng.pick(&voters);
        self.nodes
            .get_mut(&l)
            .expect("node")
            .raw
            .as_mut()
            .expect("up")
            .transfer_leader(to);
        self.count_fault("transfer");
        self.note(|| format!("transfer leadership {l} -> {to}"));
        let mut out = Vec::new();
        self.nodes.get_mut(&l).expect("node").pump(&mut out);
        self.dispatch(l, out);
    }

    fn change_membership(&mut self) {
        let Some(l) = self.leader() else { return };
        let cs = self.nodes[&l].raw.as_ref().expect("up").conf_state();
        if cs.is_joint() {
            return;
        }
        let added = self.next_node_id - self.cfg.nodes - 1;
        let change = match self.rng.below(4) {
            0 if added < MAX_ADDED_NODES => {
                let id = self.next_node_id;
                self.next_node_id += 1;
                self.start_joiner(id);
                self.voters_fixed = false;
                ConfChange {
                    changes: vec![ConfChangeStep::AddLearner(id)],
                    joint: false,
                }
            }
            1 if !cs.learners.is_empty() => {
                let id = *self.rng.pick(&cs.learners);
                ConfChange {
                    changes: vec![ConfChangeStep::AddVoter(id)],
                    joint: false,
                }
            }
            2 if cs.voters.len() > 3 => {
                let id = *self.rng.pick(&cs.voters);
                ConfChange {
                    changes: vec![ConfChangeStep::Remove(id)],
                    joint: false,
                }
            }
            3 if !cs.learners.is_empty() => {
                // Swap a learner in and a voter out through joint consensus.
                let add = *self.rng.pick(&cs.learners);
                let remove = *self.rng.pick(&cs.voters);
                ConfChange {
                    changes: vec![
                        ConfChangeStep::AddVoter(add),
                        ConfChangeStep::Remove(remove),
                    ],
                    joint: true,
                }
            }
            _ => return,
        };
        self.voters_fixed = false;
        let raw = self
            .nodes
            .get_mut(&l)
            .expect("node")
            .raw
            .as_mut()
            .expect("up");
        let result = raw.propose_conf_change(change.clone());
        self.count_fault("membership");
        self.note(|| format!("membership change at {l}: {change:?} -> {result:?}"));
        let mut out = Vec::new();
        self.nodes.get_mut(&l).expect("node").pump(&mut out);
        self.dispatch(l, out);
    }

    fn start_joiner(&mut self, id: u64) {
        let rc = self.cfg.raft_config(id);
        let raw = RawNode::restart(rc.clone(), Default::default()).expect("valid config");
        let clock = Clock::new(&mut self.rng, self.cfg.clock_bound);
        let mut node = SimNode::new(id, rc, raw, clock, self.cfg.compact_every);
        if self.cfg.real_wal {
            let disk = crate::real_disk::RealDisk::new(self.cfg.seed ^ id);
            node.real = Some(disk.expect("a fresh simulated disk opens"));
        }
        self.nodes.insert(id, node);
        self.start_ticking(id);
    }
}

fn shuffle(rng: &mut crate::rng::SplitMix64, v: &mut [u64]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
