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
//! the thread sleeps in one poll for both (`driver/inbox.rs`,
//! `transport/inbound.rs`). Everything that arrived while the previous
//! fsync ran is handled in the next round, which is where batching comes
//! from.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_raft::{ConfChange, HardState, Message, RawNode, Ready, Role};
use concord_storage::{FsDisk, GroupCommit, SnapshotMark, WalBatch};
use tokio::sync::{mpsc, oneshot};

use crate::error::{clone_err, raft_error, ServerError};
use crate::shared::Shared;
use crate::snapshotter::{SharedSnapshots, SnapshotJob};
use crate::transport::inbound::Inbound;
use crate::transport::Transport;

mod apply;
mod compaction;
mod duties;
mod inbox;

pub use inbox::InboxSender;
use inbox::Woken;
pub(crate) use inbox::{channel as inbox_channel, Inbox, WAKE};

/// The one Raft group of this server (multi-Raft will add more).
pub const GROUP: u64 = 1;
/// Bytes of an InstallSnapshot chunk (the core's `snapshot_chunk_size`,
/// set by `server.rs`).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Inputs handled per round before the `Ready` is processed.
pub const MAX_INPUTS_PER_ROUND: usize = 8192;
/// Driver inbox capacity.
pub const INBOX_CAPACITY: usize = 65536;
/// Interval of durable backend commits.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Backend changes held in memory before a checkpoint is forced.
const MAX_PENDING_CHANGES: usize = 100_000;
/// Ticks between lease checkpoints (about 5 s at the default heartbeat).
const LEASE_CHECKPOINT_TICKS: u64 = 50;
/// Most leases in one LeaseCheckpoint entry (etcd's batch size): a
/// million leases make a thousand bounded entries, not one huge one.
pub const MAX_LEASE_CHECKPOINT_BATCH: usize = 1000;
/// Most bytes of proposals in one batch (one forwarded message).
pub const MAX_PROPOSAL_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Cuts `items` into runs of at most `max` payload bytes (at least one
/// item each), in order.
fn by_bytes(items: Vec<(u64, Bytes)>, max: usize) -> Vec<Vec<(u64, Bytes)>> {
    let mut out: Vec<Vec<(u64, Bytes)>> = Vec::new();
    let mut bytes = 0;
    for (id, data) in items {
        match out.last_mut() {
            Some(run) if bytes + data.len() <= max => {
                bytes += data.len();
                run.push((id, data));
            }
            _ => {
                bytes = data.len();
                out.push(vec![(id, data)]);
            }
        }
    }
    out
}

/// An input to the driver.
#[derive(Debug)]
pub enum Input {
    /// One heartbeat interval passed.
    Tick,
    /// A message from a peer.
    Peer(Message),
    /// A plaintext peer connection for the driver to read (`inbound.rs`).
    PeerConn(std::net::TcpStream),
    /// Propose an entry; its waiter is registered under `id`.
    Propose {
        /// Request id.
        id: u64,
        /// Encoded entry.
        data: Bytes,
    },
    /// Propose a membership change.
    ConfChange {
        /// Request id.
        id: u64,
        /// The change.
        cc: ConfChange,
        /// Encoded [`MemberContext`].
        ctx: Bytes,
    },
    /// A linearizable read wants a ReadIndex barrier.
    Read(oneshot::Sender<Result<(), ServerError>>),
    /// Hand leadership to a member.
    Transfer {
        /// The target member.
        target: u64,
    },
    /// Stop the driver.
    Stop,
}

type ReadWaiters = Vec<oneshot::Sender<Result<(), ServerError>>>;

/// The driver's state.
pub struct Driver {
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
    proposals: Vec<(u64, Bytes)>,
    new_reads: ReadWaiters,
    read_ctx: u64,
    reads_in_flight: HashMap<Bytes, ReadWaiters>,
    reads_to_apply: BTreeMap<u64, ReadWaiters>,
    ticks: u64,
    revoking: HashMap<i64, u64>,
    published_attributes: bool,
    /// The last hard state handed to the WAL.
    written: HardState,
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
            .field("id", &self.shared.id)
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
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        election_ticks: u64,
        node: RawNode,
        shared: Arc<Shared>,
        transport: Arc<Transport>,
        wal: GroupCommit<FsDisk>,
        snaps: SharedSnapshots,
        inbox: Inbox,
        snapshot_count: u64,
        snapshot_index: u64,
        applied: u64,
    ) -> Driver {
        Driver {
            peers: Inbound::new(shared.clone()),
            node,
            shared,
            transport,
            wal,
            snaps,
            inbox,
            snapshot_count,
            snapshot_index,
            applied,
            proposals: Vec::new(),
            new_reads: Vec::new(),
            read_ctx: 0,
            reads_in_flight: HashMap::new(),
            reads_to_apply: BTreeMap::new(),
            ticks: 0,
            revoking: HashMap::new(),
            published_attributes: false,
            written: HardState::default(),
            last_checkpoint: Instant::now(),
            attributes_sent_at: None,
            snapshot_job: None,
            wal_compaction: None,
            election_ticks,
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
        self.shared.fail_all(|| ServerError::Stopped);
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
            fail::fail_point!("driver-round");
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
            self.flush_proposals();
            self.flush_reads();
            while self.node.has_ready() {
                let rd = self.node.ready();
                self.handle_ready(rd)?;
            }
            self.maybe_snapshot()?;
            self.maybe_checkpoint()?;
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
        handled += self
            .peers
            .read(self.inbox.registry(), MAX_INPUTS_PER_ROUND, |m| {
                step_peer(node, m)
            });
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
            Input::Propose { id, data } => self.proposals.push((id, data)),
            Input::ConfChange { id, cc, ctx } => {
                if let Err(e) = self.node.propose_conf_change_with_context(cc, ctx) {
                    self.shared.respond(id, Err(raft_error(e)));
                }
            }
            Input::Read(tx) => self.new_reads.push(tx),
            Input::Transfer { target } => self.node.transfer_leader(target),
            Input::Stop => return false,
        }
        true
    }

    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals);
        // A follower forwards each batch to the leader as one message:
        // batches by bytes keep every message far below a peer frame.
        for chunk in by_bytes(batch, MAX_PROPOSAL_BATCH_BYTES) {
            let (ids, data): (Vec<u64>, Vec<Bytes>) = chunk.into_iter().unzip();
            if let Err(e) = self.node.propose_batch(data) {
                metrics::counter!("concord_proposals_failed_total").increment(ids.len() as u64);
                let e = raft_error(e);
                for id in ids {
                    self.shared.respond(id, Err(clone_err(&e)));
                }
            }
        }
    }

    fn flush_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.new_reads);
        self.read_ctx += 1;
        let ctx = Bytes::copy_from_slice(&self.read_ctx.to_be_bytes());
        match self.node.read_index(ctx.clone()) {
            Ok(()) => {
                self.reads_in_flight.insert(ctx, waiters);
            }
            Err(e) => {
                let e = raft_error(e);
                for w in waiters {
                    let _ = w.send(Err(clone_err(&e)));
                }
            }
        }
    }

    fn handle_ready(&mut self, mut rd: Ready) -> Result<(), ServerError> {
        if let Some(ss) = rd.soft_state {
            self.on_soft_state(ss.role, ss.leader);
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            for m in &rd.messages {
                tracing::trace!(to = m.to, term = m.term, kind = m.body.name(), "send");
            }
        }
        let mut msgs = std::mem::take(&mut rd.messages);
        self.fill_snapshot_chunks(&mut msgs);
        self.transport.send(msgs);
        // Like etcd, wait for the fsync only when it matters: new entries, a
        // snapshot, or a new term or vote. A hard state that only moves the
        // commit index is written (and synced by the next fsync) without
        // waiting; losing it in a crash only means re-learning the commit
        // index (restart raises it to the backend's applied index, see
        // `server.rs`).
        let must_sync = !rd.entries.is_empty()
            || rd.snapshot.is_some()
            || rd
                .hard_state
                .is_some_and(|hs| hs.term != self.written.term || hs.vote != self.written.vote);
        let mut batch = None;
        if rd.must_persist() {
            if let Some(s) = &rd.snapshot {
                self.snaps.save(GROUP, s)?;
            }
            batch = Some(WalBatch::from_ready(GROUP, &rd)).filter(|b| !b.is_empty());
            if let Some(hs) = rd.hard_state {
                self.written = hs;
            }
        }
        // The WAL is written on this thread (no hand-off to the writer when
        // it is idle). A follower's acks and votes wait on the fsync: sync
        // first, send them, then apply. Otherwise (a leader) apply first, so
        // clients are answered without waiting for the leader's own fsync:
        // committed entries are already durable on a quorum, and the backend
        // becomes durable only at checkpoints, which come after the WAL.
        let persist_first = rd.has_messages_after_persist();
        if persist_first {
            self.persist_and_send(&mut rd, batch.take(), must_sync)?;
        }
        // `advance` needs the snapshot and the committed entries back.
        let mut received = None;
        if let Some(s) = rd.snapshot.take() {
            self.restore_snapshot(&s)?;
            received = Some(s.data.len() as u64);
            rd.snapshot = Some(s);
        }
        let committed = std::mem::take(&mut rd.committed_entries);
        if !committed.is_empty() {
            let started = Instant::now();
            self.apply(&committed)?;
            self.meters
                .backend_commit
                .record(started.elapsed().as_secs_f64());
        }
        rd.committed_entries = committed;
        if !persist_first {
            self.persist_and_send(&mut rd, batch.take(), must_sync)?;
        }
        for rs in std::mem::take(&mut rd.read_states) {
            if let Some(w) = self.reads_in_flight.remove(&rs.ctx) {
                self.reads_to_apply.entry(rs.index).or_default().extend(w);
            }
        }
        for ctx in std::mem::take(&mut rd.dropped_reads) {
            if let Some(w) = self.reads_in_flight.remove(&ctx) {
                for tx in w {
                    let _ = tx.send(Err(ServerError::LeaderChanged));
                }
            }
        }
        self.node.advance(rd);
        if let Some(len) = received {
            // The file holds it now: the core keeps no copy in memory.
            self.node.set_external_snapshot(len);
        }
        self.release_reads();
        self.refresh_status();
        Ok(())
    }

    /// Appends a `Ready`'s batch to the WAL, durably if `sync`, then sends
    /// the messages that waited for it.
    fn persist_and_send(
        &mut self,
        rd: &mut Ready,
        batch: Option<WalBatch>,
        sync: bool,
    ) -> Result<(), ServerError> {
        if let Some(batch) = batch {
            let started = Instant::now();
            self.wal.append_now(batch, sync)?;
            if sync {
                self.meters
                    .wal_fsync
                    .record(started.elapsed().as_secs_f64());
            }
        }
        self.transport.send(rd.persisted());
        Ok(())
    }

    fn on_soft_state(&mut self, role: Role, leader: u64) {
        let was_leader = self.shared.is_leader();
        self.shared.set_role(role, leader);
        metrics::counter!("concord_leader_changes_seen_total").increment(1);
        if role == Role::Leader && !was_leader {
            tracing::info!(member = format!("{:x}", self.shared.id), "became leader");
            self.shared
                .store
                .write()
                .lease_promote(self.shared.now_ms());
            self.revoking.clear();
        }
        if leader == 0 {
            // Reads waiting for a round that can no longer finish.
            for (_, w) in self.reads_in_flight.drain() {
                for tx in w {
                    let _ = tx.send(Err(ServerError::NoLeader));
                }
            }
        }
    }

    fn release_reads(&mut self) {
        while let Some((&index, _)) = self.reads_to_apply.first_key_value() {
            if index > self.applied {
                break;
            }
            let (_, w) = self.reads_to_apply.pop_first().expect("non-empty");
            for tx in w {
                let _ = tx.send(Ok(()));
            }
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
        self.shared.status.write().is_learner = st.conf_state.learners.contains(&self.shared.id);
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
                *id == self.shared.id || p.last_ack_age.is_some_and(|a| a <= self.election_ticks)
            })
            .map(|(id, _)| *id)
            .collect();
        *self.shared.active_peers.write() = active;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_batched_by_bytes_in_order() {
        let items: Vec<(u64, Bytes)> = (0..10)
            .map(|i| (i, Bytes::from(vec![0u8; 300 + i as usize])))
            .collect();
        let runs = by_bytes(items, 1000);
        assert!(runs
            .iter()
            .all(|r| r.iter().map(|(_, d)| d.len()).sum::<usize>() <= 1000));
        let ids: Vec<u64> = runs.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert_eq!(runs.len(), 4);
        // One item over the bound still goes, alone.
        let runs = by_bytes(
            vec![(1, Bytes::from(vec![0; 5000])), (2, Bytes::new())],
            1000,
        );
        assert_eq!(runs.len(), 2);
    }
}
