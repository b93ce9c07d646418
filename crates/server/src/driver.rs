//! The Raft driver: one thread owns the group's `RawNode` and follows the
//! `Ready` ordering contract:
//!
//! 1. send `messages` at once (the leader's appends go out while it writes
//!    its own log, Raft thesis 10.2.1);
//! 2. save a received snapshot file, then append entries and hard state to
//!    the WAL (on this thread when the group-commit writer is idle) and
//!    fsync;
//! 3. send the messages released by `persisted()` (votes, acks);
//! 4. restore a received snapshot, apply committed entries in order, answer
//!    waiting clients, publish watch events;
//! 5. `advance()`, then release reads whose index is now applied.
//!
//! Steps 2-3 and 4 swap when no message waits on the fsync (a leader): the
//! committed entries are durable on a quorum already, so clients are
//! answered before the leader's own fsync.
//!
//! Inputs (proposals, reads, ticks, TLS peers' messages) arrive on one
//! bounded channel, and plaintext peer connections are read here directly;
//! the thread sleeps in one poll for both (`mailbox.rs`,
//! `transport/inbound.rs`). Everything that arrived while the previous
//! fsync ran is handled in the next round, which is where batching comes
//! from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_driver::{Cycle, Proposals, Reads, Step, MAX_INPUTS_PER_ROUND};
use concord_raft::{Message, RawNode, Ready, Role};
use concord_storage::{FsDisk, GroupCommit, SnapshotMark, WalBatch};
use tokio::sync::{mpsc, oneshot};

use crate::error::{clone_err, raft_error, ServerError};
use crate::mailbox::{Inbox, Input, Woken};
use crate::shared::Shared;
use crate::snapshot::snapshotter::{SharedSnapshots, SnapshotJob};
use crate::transport::inbound::Inbound;
use crate::transport::{Screen, Transport};
use crate::GROUP;

mod apply;
mod compaction;
mod duties;

/// Bytes of an InstallSnapshot chunk (the core's `snapshot_chunk_size`,
/// set by `server.rs`).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// A driver round longer than this is logged.
const SLOW_ROUND: Duration = Duration::from_millis(250);
/// Interval of durable backend commits.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Backend changes held in memory before a checkpoint is forced.
const MAX_PENDING_CHANGES: usize = 100_000;
/// Ticks between lease checkpoints (about 5 s at the default heartbeat).
const LEASE_CHECKPOINT_TICKS: u64 = 50;
/// Most leases in one LeaseCheckpoint entry (etcd's batch size): a
/// million leases make a thousand bounded entries, not one huge one.
pub const MAX_LEASE_CHECKPOINT_BATCH: usize = 1000;
/// How a linearizable read is answered once its index is applied.
type ReadWaiter = oneshot::Sender<Result<(), ServerError>>;

/// What a driver starts with.
pub(crate) struct DriverParts {
    /// The group's Raft node.
    pub node: RawNode,
    /// State shared with the services.
    pub shared: Arc<Shared>,
    /// Sends to peers.
    pub transport: Arc<Transport>,
    /// The WAL, behind its group-commit writer.
    pub wal: GroupCommit<FsDisk>,
    /// The snapshot files.
    pub snaps: SharedSnapshots,
    /// The receiving half of the mailbox.
    pub inbox: Inbox,
    /// How peer frames are screened (plaintext connections are read here).
    pub screen: Screen,
    /// Applied entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Index of the newest snapshot.
    pub snapshot_index: u64,
    /// Applied index of the store.
    pub applied: u64,
    /// Election timeout in ticks.
    pub election_ticks: u64,
}

/// The driver's state.
pub(crate) struct Driver {
    pub(crate) node: RawNode,
    pub(crate) shared: Arc<Shared>,
    pub(crate) transport: Arc<Transport>,
    pub(crate) wal: GroupCommit<FsDisk>,
    pub(crate) snaps: SharedSnapshots,
    pub(crate) inbox: Inbox,
    /// Peer connections this thread reads.
    peers: Inbound,
    pub(crate) snapshot_count: u64,
    pub(crate) snapshot_index: u64,
    applied: u64,
    proposals: Proposals<u64>,
    reads: Reads<ReadWaiter>,
    ticks: u64,
    revoking: HashMap<i64, u64>,
    published_attributes: bool,
    last_checkpoint: Instant,
    attributes_sent_at: Option<u64>,
    /// A snapshot being written in the background.
    snapshot_job: Option<SnapshotJob>,
    /// Where the WAL may be compacted once the backend is durable there.
    wal_compaction: Option<SnapshotMark>,
    /// Election timeout in ticks (a peer heard from within it is active).
    election_ticks: u64,
    /// Bytes of an InstallSnapshot chunk (the core's `snapshot_chunk_size`).
    pub(crate) snapshot_chunk_size: u64,
    pub(crate) meters: Meters,
}

/// Metric handles looked up once: a registry lookup per round (hashing
/// the name) showed in profiles. The recorder is installed before the
/// driver starts.
pub(crate) struct Meters {
    wal_fsync: metrics::Histogram,
    backend_commit: metrics::Histogram,
    pub(crate) committed: metrics::Counter,
    pub(crate) failed: metrics::Counter,
}

impl Meters {
    fn new() -> Meters {
        Meters {
            wal_fsync: metrics::histogram!("concord_wal_fsync_duration_seconds"),
            backend_commit: metrics::histogram!("concord_backend_commit_duration_seconds"),
            committed: metrics::counter!("concord_proposals_committed_total"),
            failed: metrics::counter!("concord_proposals_failed_total"),
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.shared.me.id)
            .finish()
    }
}

/// Steps a message from a peer once the core's screen passes it: a
/// forged or malformed message must never reach the core's assertions.
fn step_peer(node: &mut RawNode, m: Message) {
    if let Err(r) = node.check_message(&m) {
        let what = format!("{} ({r})", m.body.name());
        crate::transport::refusals::refused(m.from, r.name(), &what);
        return;
    }
    if let Err(e) = node.step(m) {
        tracing::debug!(error = %e, "peer message refused");
    }
}

impl Driver {
    /// A driver over a started member's node and storage.
    pub(crate) fn new(p: DriverParts) -> Driver {
        Driver {
            peers: Inbound::new(p.screen),
            node: p.node,
            shared: p.shared,
            transport: p.transport,
            wal: p.wal,
            snaps: p.snaps,
            inbox: p.inbox,
            snapshot_count: p.snapshot_count,
            snapshot_index: p.snapshot_index,
            applied: p.applied,
            proposals: Proposals::default(),
            reads: Reads::default(),
            ticks: 0,
            revoking: HashMap::new(),
            published_attributes: false,
            last_checkpoint: Instant::now(),
            attributes_sent_at: None,
            snapshot_job: None,
            wal_compaction: None,
            election_ticks: p.election_ticks,
            snapshot_chunk_size: SNAPSHOT_CHUNK_BYTES,
            meters: Meters::new(),
        }
    }

    /// Runs until stopped or a storage failure (which is fatal: the state
    /// in memory may be ahead of the disk).
    pub fn run(mut self) -> Result<(), ServerError> {
        let r = self.run_loop();
        if let Some(job) = self.snapshot_job.take() {
            let _ = job.join();
        }
        if let Err(e) = &r {
            tracing::error!(error = %e, "raft driver stopped on an error");
        }
        self.shared.proposer.fail_all(|| ServerError::Stopped);
        let _ = self.shared.shutdown.send(true);
        if let Err(e) = self.wal.shutdown() {
            tracing::error!(error = %e, "closing the WAL");
        }
        r
    }

    fn run_loop(&mut self) -> Result<(), ServerError> {
        let mut ready_tokens = Vec::new();
        loop {
            // Liveness (`/livez`): the driver wakes at least every tick.
            self.shared.driver_progress();
            crate::failstop::halt_if_dying();
            failpoint!("driver-round");
            let Some(mut handled) = self.take_inputs() else {
                return Ok(());
            };
            if handled == 0 {
                // Nothing queued and nothing known readable: sleep (a peer
                // connection still over its budget only gets a fresh look).
                let timeout = self.peers.any_readable().then_some(Duration::ZERO);
                ready_tokens.clear();
                match self.inbox.park(timeout, &mut ready_tokens)? {
                    Woken::Input(i) => {
                        if !self.handle(i) {
                            return Ok(());
                        }
                        handled = 1;
                    }
                    Woken::Events => {}
                    Woken::Closed => return Ok(()),
                }
                self.peers.mark_readable(&ready_tokens);
                let Some(more) = self.take_inputs() else {
                    return Ok(());
                };
                handled += more;
                if handled == 0 {
                    continue;
                }
            }
            let began = Instant::now();
            self.flush_round();
            let mut cycles = 0;
            while self.node.has_ready() {
                self.run_cycle()?;
                cycles += 1;
            }
            self.maybe_snapshot()?;
            self.maybe_checkpoint()?;
            // Peers hear nothing from this member while a round runs: a
            // round near the election timeout costs an election.
            let took = began.elapsed();
            if took > SLOW_ROUND {
                tracing::warn!(?took, cycles, "a slow raft driver round");
            }
        }
    }

    /// Handles what is queued and what the readable peer connections have,
    /// each up to a round's budget. Returns how many inputs that was, or
    /// `None` to stop.
    fn take_inputs(&mut self) -> Option<usize> {
        let mut handled = 0;
        while handled < MAX_INPUTS_PER_ROUND {
            match self.inbox.try_recv() {
                Ok(i) => {
                    handled += 1;
                    if !self.handle(i) {
                        return None;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
            }
        }
        let node = &mut self.node;
        let mut lost = Vec::new();
        let registry = self.inbox.registry();
        handled += self
            .peers
            .read(registry, MAX_INPUTS_PER_ROUND, &mut lost, |m| {
                step_peer(node, m)
            });
        // A closed connection from the leader most likely means its
        // process died: elect within a few ticks, not a whole timeout.
        for peer in lost {
            self.node.report_leader_gone(peer);
        }
        Some(handled)
    }

    /// Handles one input; false to stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Tick => {
                self.node.tick();
                self.ticks += 1;
                self.refresh_metrics();
                if self.shared.is_leader() {
                    self.lease_duties();
                }
                self.maybe_publish_attributes();
            }
            Input::Peer(m) => step_peer(&mut self.node, m),
            Input::PeerConn(tcp) => self.peers.add(self.inbox.registry(), tcp),
            Input::PeerLost(peer) => self.node.report_leader_gone(peer),
            Input::Propose { id, data } => self.proposals.push(id, data),
            Input::ConfChange { id, cc, ctx } => {
                if let Err(e) = self.node.propose_conf_change_with_context(cc, ctx) {
                    self.shared.proposer.respond(id, Err(raft_error(e)));
                }
            }
            Input::Read(tx) => self.reads.push(tx),
            Input::Transfer { target } => self.node.transfer_leader(target),
            Input::Stop => return false,
        }
        true
    }

    /// The end of a round: the round's proposals and reads go to the
    /// core; what it refuses is answered with its error.
    fn flush_round(&mut self) {
        let refused = concord_driver::flush(&mut self.node, &mut self.proposals, &mut self.reads);
        for (ids, e) in refused.proposals {
            self.meters.failed.increment(ids.len() as u64);
            let e = raft_error(e);
            for id in ids {
                self.shared.proposer.respond(id, Err(clone_err(&e)));
            }
        }
        if let Some((waiters, e)) = refused.reads {
            let e = raft_error(e);
            for w in waiters {
                let _ = w.send(Err(clone_err(&e)));
            }
        }
    }

    /// Carries out one `Ready` in the order `concord_driver::Cycle` gives.
    fn run_cycle(&mut self) -> Result<(), ServerError> {
        let mut cycle = Cycle::start(&mut self.node);
        if let Some(ss) = cycle.soft_state() {
            self.on_soft_state(ss.role, ss.leader);
        }
        let mut received = None;
        while let Some(step) = cycle.next_step() {
            match step {
                Step::Send(mut msgs) => {
                    if tracing::enabled!(tracing::Level::TRACE) {
                        for m in &msgs {
                            tracing::trace!(to = m.to, term = m.term, kind = m.body.name(), "send");
                        }
                    }
                    self.fill_snapshot_chunks(&mut msgs);
                    self.transport.send(msgs);
                }
                Step::Write { sync } => {
                    self.write(cycle.ready(), sync)?;
                    cycle.written();
                }
                Step::Restore(s) => {
                    self.restore_snapshot(&s)?;
                    received = Some(s.data.len() as u64);
                }
                Step::Apply(entries) => {
                    let started = Instant::now();
                    failpoint!("raft-before-apply");
                    self.apply(&entries)?;
                    failpoint!("raft-after-apply");
                    self.meters
                        .backend_commit
                        .record(started.elapsed().as_secs_f64());
                }
            }
        }
        let done = cycle.finish(&mut self.node, &mut self.reads, self.applied);
        for w in done.released {
            let _ = w.send(Ok(()));
        }
        for w in done.no_leader {
            let _ = w.send(Err(ServerError::NoLeader));
        }
        for w in done.dropped {
            let _ = w.send(Err(ServerError::LeaderChanged));
        }
        if let Some(len) = received {
            // The file holds it now: the core keeps no copy in memory.
            self.node.set_external_snapshot(len);
        }
        self.refresh_status();
        Ok(())
    }

    /// The write of a `Ready`: a received snapshot to its file, then
    /// entries and hard state to the WAL, on this thread (no hand-off to
    /// the group-commit writer when it is idle), fsynced if `sync`.
    fn write(&mut self, rd: &Ready, sync: bool) -> Result<(), ServerError> {
        if let Some(s) = &rd.snapshot {
            self.snaps.save(GROUP, s)?;
        }
        let batch = WalBatch::from_ready(GROUP, rd);
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        failpoint!("raft-before-save");
        self.wal.append_now(batch, sync)?;
        failpoint!("raft-after-save");
        if sync {
            self.meters
                .wal_fsync
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn on_soft_state(&mut self, role: Role, leader: u64) {
        let was_leader = self.shared.is_leader();
        let old_leader = self.shared.status.read().leader;
        self.shared.set_role(role, leader);
        if leader != old_leader && old_leader != 0 {
            // What this member proposed went to (or was) the old leader,
            // which may be gone (a paused or dead process keeps them
            // forever). Tell the clients now, not at their deadline: the
            // outcome is unknown, as for any lost reply, and they retry
            // against the new leader at once.
            self.shared
                .proposer
                .fail_all(|| crate::error::ServerError::LeaderChanged);
        }
        let term = self.node.status().hard_state.term;
        let leader_hex = format!("{leader:x}");
        tracing::info!(
            ?role,
            term,
            leader = leader_hex,
            "raft role or leader changed"
        );
        metrics::counter!("concord_leader_changes_seen_total").increment(1);
        if role == Role::Leader && !was_leader {
            tracing::info!(member = format!("{:x}", self.shared.me.id), "became leader");
            self.shared
                .store
                .write()
                .lease_promote(self.shared.now_ms());
            self.revoking.clear();
        }
    }

    /// Refreshes what request headers and Status read (every `Ready`).
    fn refresh_status(&mut self) {
        let hs = self.node.hard_state();
        let mut s = self.shared.status.write();
        s.term = hs.term;
        s.commit = hs.commit;
        s.applied = self.applied;
        s.last_index = self.node.last_index();
        drop(s);
    }

    /// Refreshes the slower-moving figures: learner flag and `/metrics`
    /// gauges (every tick, off the per-`Ready` path).
    fn refresh_metrics(&mut self) {
        let st = self.node.status();
        self.shared.status.write().is_learner = st.conf_state.learners.contains(&self.shared.me.id);
        metrics::gauge!("concord_raft_term").set(st.hard_state.term as f64);
        metrics::gauge!("concord_raft_commit_index").set(st.hard_state.commit as f64);
        metrics::gauge!("concord_raft_applied_index").set(self.applied as f64);
        metrics::gauge!("concord_is_leader").set(if st.role == Role::Leader { 1.0 } else { 0.0 });
        for (id, p) in &st.progress {
            metrics::gauge!("concord_follower_apply_lag", "member" => format!("{id:x}"))
                .set(st.hard_state.commit.saturating_sub(p.matched) as f64);
        }
        let active: Vec<u64> = st
            .progress
            .iter()
            .filter(|(id, p)| {
                *id == self.shared.me.id || p.last_ack_age.is_some_and(|a| a <= self.election_ticks)
            })
            .map(|(id, _)| *id)
            .collect();
        *self.shared.active_peers.write() = active;
    }
}
