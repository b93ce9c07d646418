//! The simulated world: one seeded event queue driving nodes, network,
//! clocks, disks, clients and faults, with invariants checked after every
//! event. Everything happens in one thread in a deterministic order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use concord_check::{Command, Output};
use concord_raft::testkit::describe;
use concord_raft::{Message, RawNode, Role};

use crate::client::Client;
use crate::clock::Clock;
use crate::config::SimConfig;
use crate::invariants::log_matching::TermView;
use crate::invariants::{self, Facts};
use crate::net::{Net, CLIENT_BASE};
use crate::node::{Out, Reply, SimNode};
use crate::real_disk::RealDisk;
use crate::rng::SplitMix64;

/// Something that happens at a point in simulated time.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Tick {
        node: u64,
        inc: u64,
    },
    Deliver(Message),
    SyncDone {
        node: u64,
        inc: u64,
    },
    Request {
        node: u64,
        client: u64,
        seq: u64,
        command: Command,
    },
    Reply {
        client: u64,
        seq: u64,
        reply: Reply,
    },
    ClientIssue {
        client: u64,
    },
    ClientTimeout {
        client: u64,
        seq: u64,
    },
    Fault,
    Restart {
        node: u64,
    },
    Heal,
    IsolateLeader {
        node: u64,
        term: u64,
    },
}

/// Counters for the run's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Fault actions by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Client operations that completed.
    pub ops_ok: u64,
    /// Client writes whose outcome is unknown.
    pub ops_indeterminate: u64,
    /// Requests refused before taking effect.
    pub ops_refused: u64,
    /// Raft messages sent / lost / duplicated.
    pub messages: (u64, u64, u64),
}

/// The whole simulated system.
#[allow(missing_debug_implementations)]
pub struct World {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: SplitMix64,
    pub(crate) now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    pub(crate) nodes: BTreeMap<u64, SimNode>,
    pub(crate) clients: Vec<Client>,
    pub(crate) net: Net,
    facts: Facts,
    /// Safety violations, first first.
    pub violations: Vec<String>,
    /// Readable trace (only when `cfg.trace`).
    pub trace: Vec<String>,
    /// Counters.
    pub stats: Stats,
    /// The voter set never changed (enables the durability check).
    pub(crate) voters_fixed: bool,
    pub(crate) next_node_id: u64,
    pub(crate) faults_on: bool,
    /// Time of the last successful client write.
    pub last_write_ok: Option<u64>,
    hash: u64,
}

impl World {
    /// A world for `cfg`, with founding members bootstrapped and clients ready.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = SplitMix64::new(cfg.seed);
        let voters: Vec<u64> = (1..=cfg.nodes).collect();
        let mut nodes = BTreeMap::new();
        for &id in &voters {
            let rc = cfg.raft_config(id);
            let raw = RawNode::bootstrap(rc.clone(), &voters).expect("valid config");
            let clock = Clock::new(&mut rng, cfg.clock_bound);
            let mut node = SimNode::new(id, rc, raw, clock, cfg.compact_every);
            if cfg.real_wal {
                node.real =
                    Some(RealDisk::new(cfg.seed ^ id).expect("a fresh simulated disk opens"));
            }
            nodes.insert(id, node);
        }
        let clients = (1..=cfg.clients)
            .map(|c| Client::new(c, *rng.pick(&voters)))
            .collect();
        let net = Net {
            cfg: cfg.net.clone(),
            ..Net::default()
        };
        let mut w = World {
            next_node_id: cfg.nodes + 1,
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            clients,
            net,
            facts: Facts::default(),
            violations: Vec::new(),
            trace: Vec::new(),
            stats: Stats::default(),
            voters_fixed: true,
            faults_on: true,
            last_write_ok: None,
            hash: 0xcbf2_9ce4_8422_2325,
        };
        for id in voters {
            w.start_ticking(id);
            let mut out = Vec::new();
            w.nodes.get_mut(&id).expect("node").pump(&mut out);
            w.dispatch(id, out);
        }
        for c in 1..=w.cfg.clients {
            let at = w.rng.range(1_000, 50_000);
            w.schedule(at, Event::ClientIssue { client: c });
        }
        let first = w.rng.range(10_000, 2 * w.cfg.faults.mean_interval_us);
        w.schedule(first, Event::Fault);
        w
    }

    pub(crate) fn schedule(&mut self, after: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, e);
    }

    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let l = line();
            self.trace
                .push(format!("{:>9.3}ms {l}", self.now as f64 / 1000.0));
        }
    }

    pub(crate) fn start_ticking(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).expect("node");
        let inc = n.incarnation;
        let after = n.clock.next_tick_in(&mut self.rng, self.cfg.tick_us);
        self.schedule(after, Event::Tick { node: id, inc });
    }

    /// Run until simulated time `until` (or the queue empties).
    pub fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, _))) = self.queue.peek() {
            if at > until {
                break;
            }
            let Reverse((at, seq)) = self.queue.pop().expect("peeked");
            let e = self.events.remove(&seq).expect("event");
            self.now = at;
            self.stats.events += 1;
            self.hash_event(seq);
            self.handle(e);
            if !self.violations.is_empty() {
                return;
            }
        }
        self.now = self.now.max(until);
    }

    fn hash_event(&mut self, seq: u64) {
        for v in [self.now, seq] {
            self.hash ^= v;
            self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
        }
    }

    /// Hash of every event's time and order plus every client observation.
    pub fn trace_hash(&self) -> u64 {
        let mut h = self.hash;
        for c in &self.clients {
            for op in &c.history {
                for b in format!("{op:?}").bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        h
    }

    fn handle(&mut self, e: Event) {
        match e {
            Event::Tick { node, inc } => {
                let Some(n) = self.nodes.get_mut(&node) else {
                    return;
                };
                if n.incarnation != inc || !n.up() {
                    return;
                }
                n.raw.as_mut().expect("up").tick();
                let mut out = Vec::new();
                n.pump(&mut out);
                self.dispatch(node, out);
                self.start_ticking(node);
                self.check_node(node);
            }
            Event::Deliver(m) => {
                let to = m.to;
                if !self.nodes.get(&to).is_some_and(SimNode::up) {
                    return;
                }
                // A partition also drops what was already in flight.
                if !self.net.connected(m.from, to) {
                    self.net.dropped += 1;
                    return;
                }
                self.note(|| format!("deliver {}", describe::message(&m)));
                self.maybe_cut_on_ack(&m);
                let n = self.nodes.get_mut(&to).expect("node");
                let raw = n.raw.as_mut().expect("up");
                // The screen the server applies to the network must pass
                // all real traffic, however late, duplicated or reordered.
                if let Err(r) = raw.check_message(&m) {
                    panic!("check_message refused real traffic ({r}): {m:?}");
                }
                raw.step(m).expect("one group");
                let mut out = Vec::new();
                n.pump(&mut out);
                self.dispatch(to, out);
                self.check_node(to);
            }
            Event::SyncDone { node, inc } => {
                let Some(n) = self.nodes.get_mut(&node) else {
                    return;
                };
                if n.incarnation != inc {
                    return;
                }
                let mut out = Vec::new();
                n.sync_done(&mut out);
                self.dispatch(node, out);
                self.check_node(node);
            }
            Event::Request {
                node,
                client,
                seq,
                command,
            } => {
                let Some(n) = self.nodes.get_mut(&node) else {
                    return;
                };
                let mut out = Vec::new();
                n.request(client, seq, command, &mut out);
                self.dispatch(node, out);
                self.check_node(node);
            }
            Event::Reply { client, seq, reply } => self.client_reply(client, seq, reply),
            Event::ClientIssue { client } => self.client_issue(client),
            Event::ClientTimeout { client, seq } => {
                let c = &mut self.clients[client as usize - 1];
                if c.timed_out(seq) {
                    let is_write = c.history.last().is_some_and(|o| o.complete.is_none());
                    if is_write {
                        self.stats.ops_indeterminate += 1;
                    }
                    self.retarget(client);
                    self.schedule(1_000, Event::ClientIssue { client });
                }
            }
            Event::Fault => {
                if self.faults_on {
                    self.inject_fault();
                    let mean = self.cfg.faults.mean_interval_us;
                    let after = self.rng.range(mean / 4, mean * 7 / 4);
                    self.schedule(after, Event::Fault);
                }
            }
            Event::Restart { node } => self.restart(node),
            Event::IsolateLeader { node, term } => self.isolate_new_leader(node, term),
            Event::Heal => {
                self.note(|| "heal the network".into());
                self.net.heal();
            }
        }
    }

    pub(crate) fn restart(&mut self, node: u64) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.up() {
            return;
        }
        n.restart();
        self.note(|| format!("restart node {node}"));
        self.start_ticking(node);
        let mut out = Vec::new();
        self.nodes.get_mut(&node).expect("node").pump(&mut out);
        self.dispatch(node, out);
    }

    /// Send what a node produced.
    pub(crate) fn dispatch(&mut self, from: u64, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Raft(m) => {
                    for delay in self.net.schedule(&mut self.rng, m.from, m.to) {
                        self.schedule(delay, Event::Deliver(m.clone()));
                    }
                }
                Out::Reply { client, seq, reply } => {
                    for delay in self.net.schedule(&mut self.rng, from, CLIENT_BASE + client) {
                        self.schedule(
                            delay,
                            Event::Reply {
                                client,
                                seq,
                                reply: reply.clone(),
                            },
                        );
                    }
                }
                Out::SyncStarted => {
                    let inc = self.nodes[&from].incarnation;
                    let (lo, hi) = self.cfg.fsync_us;
                    let after = self.rng.range(lo, hi);
                    self.schedule(after, Event::SyncDone { node: from, inc });
                }
            }
        }
    }

    fn client_issue(&mut self, client: u64) {
        let (keys, multi_key, now) = (self.cfg.keys, self.cfg.multi_key_txns, self.now);
        let c = &mut self.clients[client as usize - 1];
        if c.outstanding.is_some() {
            return;
        }
        let (seq, command) = c.start(&mut self.rng, keys, multi_key, now);
        let node = c.target;
        for delay in self.net.schedule(&mut self.rng, CLIENT_BASE + client, node) {
            self.schedule(
                delay,
                Event::Request {
                    node,
                    client,
                    seq,
                    command: command.clone(),
                },
            );
        }
        let timeout = self.cfg.client_timeout_us;
        self.schedule(timeout, Event::ClientTimeout { client, seq });
    }

    fn client_reply(&mut self, client: u64, seq: u64, reply: Reply) {
        let now = self.now;
        let c = &mut self.clients[client as usize - 1];
        let handled = match reply {
            Reply::Done(output) => {
                let write = !matches!(output, Output::Get { .. })
                    && c.outstanding
                        .as_ref()
                        .is_some_and(|o| !o.command.is_read_only());
                let done = c.complete(seq, output, now);
                if done {
                    self.stats.ops_ok += 1;
                    if write {
                        self.last_write_ok = Some(now);
                    }
                }
                done
            }
            Reply::Refused(_) => {
                let done = c.refused(seq);
                if done {
                    self.stats.ops_refused += 1;
                    self.retarget(client);
                }
                done
            }
        };
        if handled {
            let (lo, hi) = self.cfg.think_us;
            let think = self.rng.range(lo, hi);
            self.schedule(think, Event::ClientIssue { client });
        }
    }

    fn retarget(&mut self, client: u64) {
        let up: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.up())
            .map(|(&id, _)| id)
            .collect();
        if !up.is_empty() {
            let t = *self.rng.pick(&up);
            self.clients[client as usize - 1].target = t;
        }
    }

    /// The current leader with the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| {
                n.raw
                    .as_ref()
                    .filter(|r| r.is_leader())
                    .map(|r| (r.status().hard_state.term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Invariants touching `node`, checked after each of its events.
    fn check_node(&mut self, node: u64) {
        if let Err(v) = self.check_node_inner(node) {
            self.note(|| format!("VIOLATION {v}"));
            self.violations.push(v);
        }
    }

    fn check_node_inner(&mut self, node: u64) -> Result<(), String> {
        let n = self.nodes.get_mut(&node).expect("node");
        if let Some(e) = n.storage_error.take() {
            return Err(e);
        }
        let applied: Vec<_> = n.applied.drain(..).collect();
        let wrote = n.is_writing();
        let Some(raw) = n.raw.as_ref() else {
            return Ok(());
        };
        let st = raw.status();
        let (term, role) = (st.hard_state.term, st.role);
        let mut new_leader = false;
        invariants::monotonic::observe(
            &mut self.facts,
            node,
            n.incarnation,
            st.hard_state.commit,
            n.kv.applied,
        )?;
        let before = self.facts.max_applied;
        for e in applied {
            invariants::state_machine_safety::observe_apply(&mut self.facts, node, e)?;
        }
        if role == Role::Leader {
            invariants::election_safety::observe_leader(&mut self.facts, term, node)?;
            if self.facts.checked_leaders.insert((term, node)) {
                new_leader = true;
                if self.cfg.trace {
                    let line = format!(
                        "{:>9.3}ms node {node} leads term {term}",
                        self.now as f64 / 1000.0
                    );
                    self.trace.push(line);
                }
                invariants::leader_completeness::check_leader(
                    &self.facts,
                    node,
                    term,
                    &NodeLog(raw),
                )?;
            }
        }
        let p = self.cfg.faults.isolate_new_leader;
        if new_leader && self.faults_on && p > 0.0 && self.rng.chance(p) {
            let (lo, hi) = self.cfg.faults.isolate_delay_us;
            let after = self.rng.range(lo, hi);
            self.schedule(after, Event::IsolateLeader { node, term });
        }
        if wrote {
            self.check_log_matching(node)?;
        }
        if self.voters_fixed && self.facts.max_applied > before {
            let index = self.facts.max_applied;
            let (t, _) = self.facts.applied[&index];
            let disks: Vec<(u64, &crate::storage::DurableLog)> =
                self.nodes.iter().map(|(&id, n)| (id, &n.disk)).collect();
            invariants::committed_never_lost::check(index, t, &disks)?;
        }
        Ok(())
    }

    fn check_log_matching(&self, node: u64) -> Result<(), String> {
        let Some(a) = self.nodes[&node].raw.as_ref() else {
            return Ok(());
        };
        for (&other, n) in &self.nodes {
            if other == node {
                continue;
            }
            if let Some(b) = n.raw.as_ref() {
                invariants::log_matching::check_pair(node, &NodeLog(a), other, &NodeLog(b))?;
            }
        }
        Ok(())
    }

    /// A snapshot of `node`'s role for reports.
    pub fn role(&self, node: u64) -> Option<Role> {
        self.nodes.get(&node)?.raw.as_ref().map(|r| r.status().role)
    }

    /// Record a fault action.
    pub(crate) fn count_fault(&mut self, kind: &'static str) {
        *self.stats.faults.entry(kind).or_insert(0) += 1;
    }

    /// Finish: outstanding writes become indeterminate, counters are filled in.
    pub fn finish(&mut self) {
        for c in &mut self.clients {
            if let Some(o) = c.outstanding.clone() {
                if c.timed_out(o.seq) && !o.command.is_read_only() {
                    self.stats.ops_indeterminate += 1;
                }
            }
        }
        self.stats.messages = (self.net.sent, self.net.dropped, self.net.duplicated);
    }
}

/// The core's in-memory log seen through its terms.
struct NodeLog<'a>(&'a RawNode);

impl TermView for NodeLog<'_> {
    fn first(&self) -> u64 {
        self.0.status().first_index
    }
    fn last(&self) -> u64 {
        self.0.status().last_index
    }
    fn term_at(&self, index: u64) -> Option<u64> {
        self.0.term(index)
    }
}
