//! One simulated member: the real `RawNode`, a disk that distinguishes
//! durable from written-but-unsynced state, and the key-value state machine.
//!
//! Each `Ready` is handled in two steps, as a real server would: `write`
//! sends the messages that may go at once and starts the disk write; after
//! the simulated fsync latency, `sync_done` makes it durable, releases the
//! messages that waited for it, applies committed entries and advances.
//! A crash in between loses the write.

use std::collections::BTreeMap;

use bytes::Bytes;
use concord_check::{Command, Output};
use concord_raft::{Config, EntryKind, Message, RawNode, Ready};

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
    /// A `Ready` written but not yet fsynced.
    pub unsynced: Option<Ready>,
    /// The state machine (durable at apply).
    pub kv: Kv,
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
    writes: BTreeMap<(u64, u64), ()>,
    reads_by_ctx: BTreeMap<u64, PendingRead>,
    reads_ready: Vec<(u64, PendingRead)>,
    next_ctx: u64,
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
            unsynced: None,
            kv: Kv::default(),
            clock,
            applied: Vec::new(),
            compact_every,
            real: None,
            storage_error: None,
            writes: BTreeMap::new(),
            reads_by_ctx: BTreeMap::new(),
            reads_ready: Vec::new(),
            next_ctx: 0,
        }
    }

    /// True while running.
    pub fn up(&self) -> bool {
        self.raw.is_some()
    }

    /// A client request arrived.
    pub fn request(&mut self, client: u64, seq: u64, command: Command, out: &mut Vec<Out>) {
        let Some(raw) = self.raw.as_mut() else { return };
        if command.is_read_only() {
            self.next_ctx += 1;
            let ctx = self.next_ctx;
            match raw.read_index(Bytes::copy_from_slice(&ctx.to_be_bytes())) {
                Ok(()) => {
                    self.reads_by_ctx.insert(
                        ctx,
                        PendingRead {
                            client,
                            seq,
                            command,
                        },
                    );
                }
                Err(e) => out.push(Out::Reply {
                    client,
                    seq,
                    reply: Reply::Refused(e.to_string()),
                }),
            }
        } else {
            let p = Proposal {
                client,
                seq,
                command,
            };
            match raw.propose(p.encode()) {
                Ok(()) => {
                    self.writes.insert((client, seq), ());
                }
                Err(e) => out.push(Out::Reply {
                    client,
                    seq,
                    reply: Reply::Refused(e.to_string()),
                }),
            }
        }
        self.pump(out);
    }

    /// Start writing the next `Ready` if nothing is being written.
    pub fn pump(&mut self, out: &mut Vec<Out>) {
        let Some(raw) = self.raw.as_mut() else { return };
        if self.unsynced.is_some() || !raw.has_ready() {
            return;
        }
        let mut rd = raw.ready();
        out.extend(rd.messages.drain(..).map(Out::Raft));
        if let Some(real) = self.real.as_mut() {
            if let Err(e) = real.write(&rd) {
                self.storage_error.get_or_insert(e);
            }
        }
        self.unsynced = Some(rd);
        out.push(Out::SyncStarted);
    }

    /// The fsync finished: persist, release, apply, advance, and go on.
    pub fn sync_done(&mut self, out: &mut Vec<Out>) {
        let Some(mut rd) = self.unsynced.take() else {
            return;
        };
        if let Some(real) = self.real.as_mut() {
            if let Err(e) = real.sync() {
                self.storage_error.get_or_insert(e);
            }
        }
        self.disk.persist(&rd);
        out.extend(rd.persisted().into_iter().map(Out::Raft));
        if let Some(snap) = &rd.snapshot {
            self.kv = Kv::restore(&snap.data);
            // Requests waiting here may have been applied inside the snapshot;
            // their clients time out and record them as indeterminate.
            self.writes.clear();
        }
        for e in &rd.committed_entries {
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
        for rs in rd.read_states.drain(..) {
            let ctx = u64::from_be_bytes(rs.ctx[..8].try_into().expect("8-byte ctx"));
            if let Some(r) = self.reads_by_ctx.remove(&ctx) {
                self.reads_ready.push((rs.index, r));
            }
        }
        for ctx in rd.dropped_reads.drain(..) {
            let ctx = u64::from_be_bytes(ctx[..8].try_into().expect("8-byte ctx"));
            if let Some(r) = self.reads_by_ctx.remove(&ctx) {
                let reply = Reply::Refused("read dropped".into());
                out.push(Out::Reply {
                    client: r.client,
                    seq: r.seq,
                    reply,
                });
            }
        }
        self.serve_reads(out);
        let raw = self.raw.as_mut().expect("up");
        raw.advance(rd);
        self.maybe_compact();
        self.pump(out);
    }

    fn serve_reads(&mut self, out: &mut Vec<Out>) {
        let applied = self.kv.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(i, _)| *i <= applied);
        self.reads_ready = waiting;
        for (_, r) in ready {
            let output = self.kv.read(&r.command);
            out.push(Out::Reply {
                client: r.client,
                seq: r.seq,
                reply: Reply::Done(output),
            });
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
        self.unsynced = None;
        self.writes.clear();
        self.reads_by_ctx.clear();
        self.reads_ready.clear();
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
                    };
                    state
                }
            },
        };
        self.raw = Some(RawNode::restart(self.cfg.clone(), state).expect("valid config"));
        self.incarnation += 1;
    }

    /// The node's log as written to disk (durable, overlaid by the unsynced write):
    /// `(first_index, terms)`.
    pub fn written_terms(&self) -> (u64, Vec<u64>) {
        let mut entries: Vec<(u64, u64)> = self
            .disk
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        let mut first = self.disk.snapshot_index() + 1;
        if let Some(rd) = &self.unsynced {
            if let Some(s) = &rd.snapshot {
                entries.clear();
                first = s.meta.index + 1;
            }
            if let Some(f) = rd.entries.first() {
                entries.retain(|(i, _)| *i < f.index);
                entries.extend(rd.entries.iter().map(|e| (e.index, e.term)));
            }
        }
        if let Some(&(i, _)) = entries.first() {
            first = i;
        }
        (first, entries.into_iter().map(|(_, t)| t).collect())
    }
}
