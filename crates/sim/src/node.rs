//! One simulated member: the real `RawNode`, a disk that distinguishes
//! durable from written-but-unsynced state, and the key-value state machine.
//!
//! The member runs the server's driver logic (`concord-driver`): requests
//! gather into a round, [`concord_driver::flush`] hands them to the core,
//! and each `Ready` is a [`Cycle`] whose steps run here. A write that must
//! be fsynced starts the simulated fsync and the cycle waits for
//! `sync_done`; a crash meanwhile loses the write. The state machine is
//! durable at the end of each cycle (as the server's backend checkpoints
//! between cycles, after the write).

use std::collections::BTreeMap;

use concord_check::{Command, Output};
use concord_driver::{Cycle, Proposals, Reads, Step};
use concord_raft::{Config, Entry, EntryKind, Message, RawNode, Ready, Snapshot};

use crate::clock::Clock;
use crate::kv::{Kv, Proposal};
use crate::real_disk::{check_recovery, RealDisk};
use crate::storage::DurableLog;

/// What a node answers a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The operation took effect (or the read was served) with this output.
    Done(Output),
    /// The operation was refused before it could take effect.
    Refused(String),
}

/// Something a node wants the world to do.
#[derive(Clone, Debug)]
pub enum Out {
    /// Send a Raft message.
    Raft(Message),
    /// Answer a client request.
    Reply {
        /// Client id.
        client: u64,
        /// Request sequence number.
        seq: u64,
        /// The answer.
        reply: Reply,
    },
    /// An fsync started; call `sync_done` after the latency.
    SyncStarted,
}

/// An entry this node applied (fed to the state machine safety check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Hash of the payload.
    pub hash: u64,
}

/// A read waiting for its read index to be applied.
#[derive(Clone, Debug)]
struct PendingRead {
    client: u64,
    seq: u64,
    command: Command,
}

/// A simulated member.
#[derive(Debug)]
pub struct SimNode {
    /// Member id.
    pub id: u64,
    /// Bumped by every crash; events for older incarnations are void.
    pub incarnation: u64,
    /// The core, `None` while crashed.
    pub raw: Option<RawNode>,
    /// Core configuration.
    pub cfg: Config,
    /// Durable Raft state.
    pub disk: DurableLog,
    /// The `Ready` being handled, if its write waits for an fsync.
    cycle: Option<Cycle>,
    /// The state machine.
    pub kv: Kv,
    /// The state machine as a crash leaves it (saved at each cycle's end).
    durable_kv: Kv,
    /// This node's clock.
    pub clock: Clock,
    /// Entries applied since the world last looked.
    pub applied: Vec<AppliedEntry>,
    /// Snapshot after this many applied entries.
    pub compact_every: u64,
    /// The production WAL and snapshot files on a simulated disk, if used.
    pub real: Option<RealDisk>,
    /// A storage failure or a recovery that lost synced data.
    pub storage_error: Option<String>,
    /// Writes proposed here, answered when applied here.
    writes: BTreeMap<(u64, u64), ()>,
    proposals: Proposals<(u64, u64)>,
    reads: Reads<PendingRead>,
}

/// FNV-1a, for payload hashes.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl SimNode {
    /// A node around `raw`.
    pub fn new(id: u64, cfg: Config, raw: RawNode, clock: Clock, compact_every: u64) -> Self {
        SimNode {
            id,
            incarnation: 0,
            raw: Some(raw),
            cfg,
            disk: DurableLog::default(),
            cycle: None,
            kv: Kv::default(),
            durable_kv: Kv::default(),
            clock,
            applied: Vec::new(),
            compact_every,
            real: None,
            storage_error: None,
            writes: BTreeMap::new(),
            proposals: Proposals::default(),
            reads: Reads::default(),
        }
    }

    /// True while running.
    pub fn up(&self) -> bool {
        self.raw.is_some()
    }

    /// True while a write is not yet fsynced (a crash now loses it).
    pub fn is_writing(&self) -> bool {
        self.cycle.is_some() || self.disk.has_pending()
    }

    /// A client request arrived: it joins the round.
    pub fn request(&mut self, client: u64, seq: u64, command: Command, out: &mut Vec<Out>) {
        if !self.up() {
            return;
        }
        if command.is_read_only() {
            self.reads.push(PendingRead {
                client,
                seq,
                command,
            });
        } else {
            let p = Proposal {
                client,
                seq,
                command,
            };
            self.writes.insert((client, seq), ());
            self.proposals.push((client, seq), p.encode());
        }
        self.pump(out);
    }

    /// Ends the round and runs `Ready`s until one waits for its fsync.
    pub fn pump(&mut self, out: &mut Vec<Out>) {
        let Some(raw) = self.raw.as_mut() else { return };
        if self.cycle.is_some() {
            return;
        }
        let refused = concord_driver::flush(raw, &mut self.proposals, &mut self.reads);
        for (ids, e) in refused.proposals {
            for (client, seq) in ids {
                self.writes.remove(&(client, seq));
                out.push(refuse(client, seq, e.to_string()));
            }
        }
        if let Some((reads, e)) = refused.reads {
            out.extend(
                reads
                    .into_iter()
                    .map(|r| refuse(r.client, r.seq, e.to_string())),
            );
        }
        while self.raw.as_ref().is_some_and(RawNode::has_ready) {
            let raw = self.raw.as_mut().expect("up");
            self.cycle = Some(Cycle::start(raw));
            if !self.run_cycle(out) {
                return;
            }
        }
    }

    /// The fsync finished: the cycle goes on, then the next round.
    pub fn sync_done(&mut self, out: &mut Vec<Out>) {
        let Some(cycle) = self.cycle.as_mut() else {
            return;
        };
        if let Some(real) = self.real.as_mut() {
            if let Err(e) = real.sync() {
                self.storage_error.get_or_insert(e);
            }
        }
        self.disk.sync();
        cycle.written();
        if self.run_cycle(out) {
            self.pump(out);
        }
    }

    /// Runs the cycle's steps; false if it waits for an fsync.
    fn run_cycle(&mut self, out: &mut Vec<Out>) -> bool {
        let mut cycle = self.cycle.take().expect("a cycle");
        while let Some(step) = cycle.next_step() {
            match step {
                Step::Send(msgs) => out.extend(msgs.into_iter().map(Out::Raft)),
                Step::Write { sync } => {
                    self.write(cycle.ready());
                    if sync {
                        self.cycle = Some(cycle);
                        out.push(Out::SyncStarted);
                        return false;
                    }
                    cycle.written();
                }
                Step::Restore(snap) => self.restore(&snap),
                Step::Apply(entries) => self.apply(&entries, out),
            }
        }
        let raw = self.raw.as_mut().expect("up");
        let done = cycle.finish(raw, &mut self.reads, self.kv.applied);
        for r in done.no_leader.into_iter().chain(done.dropped) {
            out.push(refuse(r.client, r.seq, "read dropped".into()));
        }
        for r in done.released {
            let output = self.kv.read(&r.command);
            out.push(Out::Reply {
                client: r.client,
                seq: r.seq,
                reply: Reply::Done(output),
            });
        }
        // What the state machine has applied is in this member's durable
        // log now: a checkpoint may cover it.
        self.durable_kv = self.kv.clone();
        self.maybe_compact();
        true
    }

    /// Writes a `Ready`'s persistence part (durable at the next sync).
    fn write(&mut self, rd: &Ready) {
        if let Some(real) = self.real.as_mut() {
            if let Err(e) = real.write(rd) {
                self.storage_error.get_or_insert(e);
            }
        }
        self.disk.write(rd);
    }

    fn restore(&mut self, snap: &Snapshot) {
        self.kv = Kv::restore(&snap.data);
        // Requests waiting here may have been applied inside the snapshot;
        // their clients time out and record them as indeterminate.
        self.writes.clear();
    }

    fn apply(&mut self, entries: &[Entry], out: &mut Vec<Out>) {
        for e in entries {
            if e.index <= self.kv.applied {
                continue; // already applied before a restart
            }
            self.applied.push(AppliedEntry {
                index: e.index,
                term: e.term,
                hash: hash_bytes(&e.data),
            });
            match (&e.kind, e.data.is_empty()) {
                (EntryKind::Normal, false) => {
                    let p = Proposal::decode(&e.data);
                    let output = self.kv.apply(e.index, &p);
                    if self.writes.remove(&(p.client, p.seq)).is_some() {
                        if let Some(output) = output {
                            out.push(Out::Reply {
                                client: p.client,
                                seq: p.seq,
                                reply: Reply::Done(output),
                            });
                        }
                    }
                }
                _ => self.kv.skip(e.index),
            }
        }
    }

    fn maybe_compact(&mut self) {
        let applied = self.kv.applied;
        if applied < self.disk.snapshot_index() + self.compact_every {
            return;
        }
        let raw = self.raw.as_mut().expect("up");
        if applied > raw.status().applied {
            return;
        }
        let data = self.kv.image();
        if let Ok(meta) = raw.compact(applied, data.clone()) {
            let snap = concord_raft::Snapshot { meta, data };
            if let Some(real) = self.real.as_mut() {
                if let Err(e) = real.compact(&snap) {
                    self.storage_error.get_or_insert(e);
                }
            }
            self.disk.compact(snap);
        }
    }

    /// Lose everything that is not durable.
    pub fn crash(&mut self) {
        self.raw = None;
        self.cycle = None;
        self.disk.crash();
        self.kv = self.durable_kv.clone();
        self.writes.clear();
        self.proposals.clear();
        self.reads.clear();
        self.incarnation += 1;
        if let Some(real) = self.real.as_mut() {
            real.crash();
        }
    }

    /// Restart from durable state.
    pub fn restart(&mut self) {
        assert!(self.raw.is_none(), "restart of a running node");
        let state = match self.real.as_mut() {
            None => self.disk.initial_state(self.kv.applied),
            Some(real) => match real.recover(self.kv.applied) {
                Err(e) => {
                    self.storage_error.get_or_insert(e);
                    self.disk.initial_state(self.kv.applied)
                }
                Ok((state, snapshot)) => {
                    if let Err(e) = check_recovery(self.id, &self.disk, &state) {
                        self.storage_error.get_or_insert(e);
                    }
                    // A snapshot newer than the state machine (installed from
                    // the leader just before the crash) replaces it.
                    if let Some(s) = snapshot.filter(|s| s.meta.index > self.kv.applied) {
                        self.kv = Kv::restore(&s.data);
                    }
                    // From now on the model follows what the disk really holds.
                    self.disk = DurableLog {
                        hard_state: state.hard_state,
                        snapshot: state.snapshot.clone(),
                        entries: state.entries.clone(),
                        ..DurableLog::default()
                    };
                    state
                }
            },
        };
        self.raw = Some(RawNode::restart(self.cfg.clone(), state).expect("valid config"));
        self.incarnation += 1;
    }
}

fn refuse(client: u64, seq: u64, why: String) -> Out {
    Out::Reply {
        client,
        seq,
        reply: Reply::Refused(why),
    }
}
