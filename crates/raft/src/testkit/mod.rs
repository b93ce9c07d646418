//! An in-memory cluster of [`RawNode`]s with a controllable network, for
//! tests, script tests and demos. Everything runs in one thread and is
//! deterministic. Persistence is an in-memory [`MemStorage`]: a crash keeps
//! exactly what the `Ready` contract said was persisted.

pub mod describe;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::config::Config;
use crate::message::Message;
use crate::node::{InitialState, RawNode};
use crate::ready::Ready;
use crate::types::{Entry, EntryKind, HardState, Index, NodeId, ReadState, Snapshot};

/// Durable state of one member, as the application would keep it on disk.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// Persisted hard state.
    pub hard_state: HardState,
    /// Persisted snapshot.
    pub snapshot: Option<Snapshot>,
    /// Persisted entries after the snapshot.
    pub entries: Vec<Entry>,
    /// State machine: applied normal payloads, in order (also durable here).
    pub applied_data: Vec<Bytes>,
    /// Applied index of the state machine.
    pub applied: Index,
}

impl MemStorage {
    /// Apply the persistence part of a `Ready`.
    pub fn persist(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            self.entries.clear();
            self.snapshot = Some(s.clone());
            self.applied_data = decode_state(&s.data);
            self.applied = s.meta.index;
        }
        if let Some(first) = rd.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            self.hard_state = hs;
        }
    }

    /// State to restart from.
    pub fn initial_state(&self) -> InitialState {
        InitialState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
            applied: self.applied,
        }
    }

    /// Make a snapshot image of the state machine.
    pub fn state_image(&self) -> Bytes {
        encode_state(&self.applied_data)
    }

    /// Drop entries the snapshot covers.
    pub fn compact(&mut self, snap: Snapshot) {
        self.entries.retain(|e| e.index > snap.meta.index);
        self.snapshot = Some(snap);
    }
}

fn encode_state(items: &[Bytes]) -> Bytes {
    let mut out = Vec::new();
    for it in items {
        out.extend_from_slice(&(it.len() as u32).to_be_bytes());
        out.extend_from_slice(it);
    }
    Bytes::from(out)
}

fn decode_state(mut data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let n = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        out.push(Bytes::copy_from_slice(&data[4..4 + n]));
        data = &data[4 + n..];
    }
    out
}

/// One running member.
#[derive(Debug)]
pub struct Member {
    /// The core.
    pub node: RawNode,
    /// Its configuration (kept to restart it).
    pub cfg: Config,
    /// Its durable state.
    pub storage: MemStorage,
    /// Reads that became safe.
    pub read_states: Vec<ReadState>,
    /// Reads that failed.
    pub dropped_reads: Vec<Bytes>,
}

/// Which messages to deliver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    /// Only from this member.
    pub from: Option<NodeId>,
    /// Only to this member.
    pub to: Option<NodeId>,
    /// Drop the selected messages instead of delivering them.
    pub drop: bool,
}

impl Filter {
    fn selects(&self, m: &Message) -> bool {
        self.from.is_none_or(|f| f == m.from) && self.to.is_none_or(|t| t == m.to)
    }
}

/// A deterministic in-memory cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Running members.
    pub members: BTreeMap<NodeId, Member>,
    /// Crashed members: configuration and durable state.
    pub crashed: BTreeMap<NodeId, (Config, MemStorage)>,
    /// Messages sent and not yet delivered, in send order.
    pub queue: Vec<Message>,
    /// Cut one-way links (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Trace lines since the last `take_trace`.
    pub trace: Vec<String>,
}

/// Upper bound on rounds of `stabilize` before it is declared livelocked.
const MAX_STABILIZE_ROUNDS: usize = 10_000;

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Cluster::default()
    }

    /// Start founding members `ids` with configurations made by `cfg`.
    pub fn bootstrap(&mut self, ids: &[NodeId], cfg: impl Fn(NodeId) -> Config) {
        for &id in ids {
            let c = cfg(id);
            let node = RawNode::bootstrap(c.clone(), ids).expect("valid config");
            self.insert(id, c, node, MemStorage::default());
        }
    }

    /// Start a member with no state (to be added by a membership change).
    pub fn join(&mut self, cfg: Config) {
        let node = RawNode::restart(cfg.clone(), InitialState::default()).expect("valid config");
        self.insert(cfg.id, cfg, node, MemStorage::default());
    }

    /// Start a member from crafted durable state (e.g. a divergent log).
    pub fn start_with(&mut self, cfg: Config, storage: MemStorage) {
        let node = RawNode::restart(cfg.clone(), storage.initial_state()).expect("valid config");
        self.insert(cfg.id, cfg, node, storage);
    }

    fn insert(&mut self, id: NodeId, cfg: Config, node: RawNode, storage: MemStorage) {
        let m = Member {
            node,
            cfg,
            storage,
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
        };
        self.members.insert(id, m);
    }

    /// The member `id` (panics if absent or crashed).
    pub fn node(&mut self, id: NodeId) -> &mut RawNode {
        &mut self
            .members
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no running member {id}"))
            .node
    }

    /// Take and clear the trace.
    pub fn take_trace(&mut self) -> String {
        let mut s = self.trace.join("\n");
        self.trace.clear();
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// Handle one `Ready` of `id` following its contract. Returns false if none.
    pub fn handle_ready(&mut self, id: NodeId) -> bool {
        let Some(m) = self.members.get_mut(&id) else {
            return false;
        };
        if !m.node.has_ready() {
            return false;
        }
        let mut rd = m.node.ready();
        let mut lines = vec![format!("> {id} ready")];
        if let Some(ss) = rd.soft_state {
            lines.push(format!("  role={:?} lead={}", ss.role, ss.leader));
        }
        if let Some(hs) = rd.hard_state {
            lines.push(format!(
                "  persist hs term={} vote={} commit={}",
                hs.term, hs.vote, hs.commit
            ));
        }
        if let Some(s) = &rd.snapshot {
            lines.push(format!(
                "  persist snapshot {}/{} voters={:?} learners={:?}",
                s.meta.term, s.meta.index, s.meta.conf_state.voters, s.meta.conf_state.learners
            ));
        }
        if !rd.entries.is_empty() {
            let es: Vec<String> = rd.entries.iter().map(describe::entry).collect();
            lines.push(format!("  persist entries [{}]", es.join(", ")));
        }
        for msg in &rd.messages {
            lines.push(format!("  send {}", describe::message(msg)));
        }
        // 2. persist, 3. release the messages that waited for it.
        m.storage.persist(&rd);
        let after = rd.persisted();
        for msg in &after {
            lines.push(format!("  send after persist {}", describe::message(msg)));
        }
        // 4. apply.
        if !rd.committed_entries.is_empty() {
            let es: Vec<String> = rd.committed_entries.iter().map(describe::entry).collect();
            lines.push(format!("  apply [{}]", es.join(", ")));
        }
        for e in &rd.committed_entries {
            if matches!(e.kind, EntryKind::Normal) && !e.data.is_empty() {
                m.storage.applied_data.push(e.data.clone());
            }
            m.storage.applied = e.index;
        }
        for rs in &rd.read_states {
            lines.push(format!(
                "  read ready index={} ctx={:?}",
                rs.index,
                String::from_utf8_lossy(&rs.ctx)
            ));
        }
        for ctx in &rd.dropped_reads {
            lines.push(format!(
                "  read dropped ctx={:?}",
                String::from_utf8_lossy(ctx)
            ));
        }
        m.read_states.append(&mut rd.read_states);
        m.dropped_reads.append(&mut rd.dropped_reads);
        self.queue.append(&mut rd.messages);
        self.queue.extend(after);
        m.node.advance(rd);
        self.trace.extend(lines);
        true
    }

    /// Deliver (or drop) every queued message the filter selects, once.
    /// Messages sent while delivering stay queued. Returns how many were selected.
    pub fn deliver(&mut self, filter: Filter) -> usize {
        let (selected, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|m| filter.selects(m));
        self.queue = rest;
        let n = selected.len();
        for msg in selected {
            let line = describe::message(&msg);
            if filter.drop {
                self.trace.push(format!("  dropped {line}"));
                continue;
            }
            if self.cut.contains(&(msg.from, msg.to)) {
                self.trace.push(format!("  lost {line}"));
                continue;
            }
            match self.members.get_mut(&msg.to) {
                Some(m) => {
                    // Real traffic must pass the screen a server applies
                    // to the network (or the screen refuses good input).
                    if let Err(r) = m.node.check_message(&msg) {
                        panic!("check_message refused real traffic ({r}): {line}");
                    }
                    m.node.step(msg).expect("same group")
                }
                None => self.trace.push(format!("  undeliverable {line}")),
            }
        }
        n
    }

    /// Handle readies and deliver messages among `ids` (all if empty) until
    /// nothing moves. Messages from or to other members stay queued.
    pub fn stabilize(&mut self, ids: &[NodeId]) {
        let ids: Vec<NodeId> = if ids.is_empty() {
            self.members.keys().copied().collect()
        } else {
            ids.to_vec()
        };
        for _ in 0..MAX_STABILIZE_ROUNDS {
            let mut moved = false;
            for &id in &ids {
                while self.handle_ready(id) {
                    moved = true;
                }
            }
            let set: BTreeSet<NodeId> = ids.iter().copied().collect();
            let (mine, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.queue)
                .into_iter()
                .partition(|m| set.contains(&m.from) && set.contains(&m.to));
            self.queue = rest;
            if !mine.is_empty() {
                moved = true;
                let keep = std::mem::replace(&mut self.queue, mine);
                self.deliver(Filter::default());
                self.queue.extend(keep);
            }
            if !moved {
                return;
            }
        }
        panic!("cluster did not stabilize within {MAX_STABILIZE_ROUNDS} rounds");
    }

    /// Tick member `id` `n` times.
    pub fn tick(&mut self, id: NodeId, n: usize) {
        for _ in 0..n {
            self.node(id).tick();
        }
    }

    /// Crash `id`: it loses everything but its durable state.
    pub fn crash(&mut self, id: NodeId) {
        let m = self
            .members
            .remove(&id)
            .unwrap_or_else(|| panic!("no running member {id}"));
        self.crashed.insert(id, (m.cfg, m.storage));
    }

    /// Restart a crashed member from its durable state.
    pub fn restart(&mut self, id: NodeId) {
        let (cfg, storage) = self
            .crashed
            .remove(&id)
            .unwrap_or_else(|| panic!("{id} is not crashed"));
        let node = RawNode::restart(cfg.clone(), storage.initial_state()).expect("valid config");
        self.insert(id, cfg, node, storage);
    }

    /// Cut every link between the groups (each member reaches only its group).
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.heal();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i == j {
                    continue;
                }
                for &x in a {
                    for &y in b {
                        self.cut.insert((x, y));
                    }
                }
            }
        }
    }

    /// Restore every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Ask `id` to snapshot its state machine and compact its log.
    pub fn compact(&mut self, id: NodeId, index: Index) -> Result<(), crate::RaftError> {
        let m = self.members.get_mut(&id).expect("running member");
        // The testkit state machine applies synchronously, so its image is at `applied`.
        assert_eq!(
            index, m.storage.applied,
            "testkit snapshots at the applied index"
        );
        // The meta announced beforehand is the one compaction gives.
        let announced = m.node.snapshot_meta(index)?;
        let meta = m.node.compact(index, m.storage.state_image())?;
        assert_eq!(meta, announced, "snapshot_meta disagrees with compact");
        let data = m.storage.state_image();
        m.storage.compact(Snapshot { meta, data });
        Ok(())
    }

    /// Panics unless every pair of members applied the same data in the same order
    /// (state machine safety, Raft section 5.4.3), up to the shorter one.
    pub fn assert_state_machines_agree(&self) {
        let all: Vec<(NodeId, &MemStorage)> = self
            .members
            .iter()
            .map(|(&id, m)| (id, &m.storage))
            .chain(self.crashed.iter().map(|(&id, (_, s))| (id, s)))
            .collect();
        for (a, sa) in &all {
            for (b, sb) in &all {
                let n = sa.applied_data.len().min(sb.applied_data.len());
                assert_eq!(
                    sa.applied_data[..n],
                    sb.applied_data[..n],
                    "members {a} and {b} applied different data"
                );
            }
        }
    }
}
