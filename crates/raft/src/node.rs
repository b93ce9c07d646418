//! The public face of the core: [`RawNode`] takes inputs (ticks, messages,
//! proposals) and hands out [`Ready`] batches of work.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConfigError, RaftError};
use crate::log::RaftLog;
use crate::message::Message;
use crate::progress::{Progress, ProgressKind};
use crate::raft::{Raft, Role};
use crate::ready::{Ready, Record, SoftState};
use crate::tracker::Membership;
use crate::types::{
    ConfChange, ConfChangeStep, ConfState, Entry, EntryKind, HardState, Index, NodeId, Snapshot,
    SnapshotMeta, Term,
};

/// Durable state to start from: what the application persisted from earlier
/// `Ready`s (or nothing, for a member joining an existing group).
#[derive(Clone, Debug, Default)]
pub struct InitialState {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Latest persisted snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Persisted entries after the snapshot.
    pub entries: Vec<Entry>,
    /// Highest index the application's state machine has applied.
    pub applied: Index,
}

/// One member's progress as seen by the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressStatus {
    /// Highest index known replicated on the member.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// How the leader is sending to it.
    pub state: ProgressKind,
    /// Non-voting member.
    pub is_learner: bool,
    /// Appends in flight.
    pub inflight: usize,
    /// Ticks since the newest heartbeat this member acknowledged was sent
    /// (`None`: none acknowledged yet). A live member stays within about
    /// one heartbeat interval plus a round trip.
    pub last_ack_age: Option<u64>,
}

/// A snapshot of the member's state, for logs, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Member id.
    pub id: NodeId,
    /// Role.
    pub role: Role,
    /// Hard state.
    pub hard_state: HardState,
    /// Known leader.
    pub leader: NodeId,
    /// Applied index.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// First index still in the log.
    pub first_index: Index,
    /// Membership.
    pub conf_state: ConfState,
    /// Leader only: progress of each member.
    pub progress: Vec<(NodeId, ProgressStatus)>,
    /// Leader only: target of an ongoing leadership transfer.
    pub lead_transferee: Option<NodeId>,
}

/// A Raft member: feed it inputs, take `Ready`s, `advance`.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    prev_hard_state: HardState,
    prev_soft_state: SoftState,
    seq: u64,
    outstanding: Option<u64>,
}

impl RawNode {
    /// The first member(s) of a new group: every founding member is started
    /// with the same `voters`, and the same first entry (a membership change
    /// adding them, at term 1) is written by all.
    pub fn bootstrap(cfg: Config, voters: &[NodeId]) -> Result<Self, ConfigError> {
        let change = ConfChange {
            changes: voters
                .iter()
                .map(|&id| ConfChangeStep::AddVoter(id))
                .collect(),
            joint: false,
        };
        let entry = Entry {
            term: 1,
            index: 1,
            kind: EntryKind::ConfChange(change),
            data: Bytes::new(),
        };
        let mut node = Self::restart(cfg, InitialState::default())?;
        let log = &mut node.raft.log;
        log.append(vec![entry]);
        log.commit_to(1);
        node.raft.become_follower(1, crate::types::NO_NODE);
        Ok(node)
    }

    /// Resume from persisted state (or join with `InitialState::default()`).
    pub fn restart(cfg: Config, state: InitialState) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let meta = state
            .snapshot
            .as_ref()
            .map(|s| s.meta.clone())
            .unwrap_or_default();
        let log =
            RaftLog::restore_from(&meta, state.entries, state.hard_state.commit, state.applied);
        let mut membership = Membership::from_conf_state(&meta.conf_state);
        let mut history = Vec::new();
        // Replay membership changes the state machine already applied.
        for e in log.slice(meta.index, log.applied, usize::MAX) {
            if let EntryKind::ConfChange(cc) = &e.kind {
                if let Ok(next) = crate::membership::next_membership(&membership, cc) {
                    membership = next;
                    history.push((e.index, membership.to_conf_state()));
                }
            }
        }
        let hs = HardState {
            commit: log.committed,
            ..state.hard_state
        };
        let restarted = hs.term > 0;
        let mut raft = Raft::new(cfg, hs, state.snapshot, log, membership);
        raft.conf_history = history;
        if restarted {
            raft.honour_lease_until = u64::from(raft.cfg.election_tick);
        }
        let soft = SoftState {
            leader: raft.lead,
            role: raft.role,
        };
        Ok(RawNode {
            prev_hard_state: hs,
            prev_soft_state: soft,
            raft,
            seq: 0,
            outstanding: None,
        })
    }

    /// This member's configuration.
    pub fn config(&self) -> &Config {
        &self.raft.cfg
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Start an election now (if this member is a voter).
    pub fn campaign(&mut self) {
        if self.raft.role != Role::Leader {
            let kind = crate::election::CampaignKind::from_config(self.raft.cfg.pre_vote);
            self.raft.campaign(kind);
        }
    }

    /// Checks a message from the network against what [`RawNode::step`]
    /// assumes of its input (one leader per term, contiguous appends,
    /// acknowledgements within the log, a valid snapshot membership, ...).
    /// Call it for every message a peer sent and drop what it refuses: the
    /// core's assertions catch our bugs and must never be reachable by a
    /// peer. Pure: changes nothing.
    pub fn check_message(&self, m: &Message) -> Result<(), crate::Refusal> {
        self.raft.check_message(m)
    }

    /// Steps a message from another member (screen messages from the
    /// network with [`RawNode::check_message`] first).
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.group != self.raft.group {
            return Err(RaftError::WrongGroup(m.group, self.raft.group));
        }
        self.raft.step(m);
        Ok(())
    }

    /// Propose application data.
    pub fn propose(&mut self, data: Bytes) -> Result<(), RaftError> {
        self.raft.propose(vec![Entry::normal(0, 0, data)])
    }

    /// Propose several entries at once (one message to the leader).
    pub fn propose_batch(&mut self, batch: Vec<Bytes>) -> Result<(), RaftError> {
        self.raft
            .propose(batch.into_iter().map(|d| Entry::normal(0, 0, d)).collect())
    }

    /// Propose a membership change; it takes effect when applied.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), RaftError> {
        self.propose_conf_change_with_context(cc, Bytes::new())
    }

    /// Propose a membership change carrying application data (for example
    /// the new member's name and addresses), applied with the change.
    pub fn propose_conf_change_with_context(
        &mut self,
        cc: ConfChange,
        context: Bytes,
    ) -> Result<(), RaftError> {
        let entry = Entry {
            term: 0,
            index: 0,
            kind: EntryKind::ConfChange(cc),
            data: context,
        };
        self.raft.propose(vec![entry])
    }

    /// Request a linearizable read; `ctx` comes back in a `ReadState`.
    pub fn read_index(&mut self, ctx: Bytes) -> Result<(), RaftError> {
        let me = self.raft.id;
        self.raft.read_index(me, ctx)
    }

    /// The host saw the connection from member `id` close: if it leads this
    /// follower, an election starts within a few ticks instead of a whole
    /// election timeout (not under lease-based reads). A wrong hint is
    /// harmless: members that still hear the leader refuse the pre-vote.
    pub fn report_leader_gone(&mut self, id: NodeId) {
        self.raft.leader_gone(id);
    }

    /// Ask the leader to hand leadership to `target`.
    pub fn transfer_leader(&mut self, target: NodeId) {
        self.raft.transfer_leader(target);
    }

    /// The metadata [`RawNode::compact`] would give a snapshot at applied
    /// index `index` now, so that the application can write the snapshot
    /// file (in the background) before compacting. It stays the same until
    /// a newer snapshot is compacted or received.
    pub fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta, RaftError> {
        self.raft.snapshot_meta(index)
    }

    /// The application has a snapshot of its state at applied index `index`:
    /// the log up to there may be discarded, and lagging followers get `data`.
    pub fn compact(&mut self, index: Index, data: Bytes) -> Result<SnapshotMeta, RaftError> {
        self.raft.compact(index, data, None)?;
        Ok(self.raft.snapshot.as_ref().expect("just made").meta.clone())
    }

    /// As [`RawNode::compact`], for an image of `len` bytes the application
    /// keeps itself (in a file, say) rather than in memory: the core then
    /// sends InstallSnapshot chunks with empty `data`, and the application
    /// fills each one with bytes `offset..offset + n` of its image, `n =
    /// min(snapshot_chunk_size, total - offset)`, before sending it.
    pub fn compact_external(&mut self, index: Index, len: u64) -> Result<SnapshotMeta, RaftError> {
        self.raft.compact(index, Bytes::new(), Some(len))?;
        Ok(self.raft.snapshot.as_ref().expect("just made").meta.clone())
    }

    /// The application keeps the current snapshot's image (`len` bytes)
    /// itself from now on: after [`RawNode::restart`] from a snapshot given
    /// without its data, or once it has stored a snapshot received from the
    /// leader (the core drops its in-memory copy). Chunks are then filled
    /// as for [`RawNode::compact_external`].
    pub fn set_external_snapshot(&mut self, len: u64) {
        if let Some(s) = &mut self.raft.snapshot {
            s.data = Bytes::new();
            self.raft.external_snapshot_len = Some(len);
        }
    }

    /// The application could not read the image of the snapshot being
    /// sent to `to` (it was pruned, say): the transfer starts over with
    /// the current snapshot at the next chance.
    pub fn report_snapshot_unavailable(&mut self, to: NodeId) {
        if let Some(pr) = self.raft.trk.progress.get_mut(&to) {
            if matches!(pr.state, crate::progress::ProgressState::Snapshot { .. }) {
                // Probe from what it is known to have: the log is compacted
                // there, so the next append becomes a fresh snapshot.
                pr.state = crate::progress::ProgressState::Probe;
                pr.next = pr.matched + 1;
                pr.probe_sent = false;
            }
        }
    }

    /// True if `ready` would return work.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        self.outstanding.is_none()
            && (r.hard_state() != self.prev_hard_state
                || r.log.stabled < r.log.last_index()
                || r.pending_snapshot.is_some()
                || !r.msgs.is_empty()
                || r.log.applied < r.log.committed
                || !r.read_states.is_empty()
                || !r.dropped_reads.is_empty()
                || self.soft_state() != self.prev_soft_state)
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.raft.lead,
            role: self.raft.role,
        }
    }

    /// Take the next batch of work. Panics if the previous one was not advanced.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.outstanding.is_none(),
            "ready() called before advance() of the previous Ready"
        );
        self.seq += 1;
        self.outstanding = Some(self.seq);
        let r = &mut self.raft;
        let hs = r.hard_state();
        let entries = r.log.unstable_entries();
        let committed_entries = r.log.slice(
            r.log.applied,
            r.log.committed,
            r.cfg.max_committed_bytes_per_ready,
        );
        let early_votes = r.cfg.bug(crate::config::PlantedBug::VoteBeforePersist);
        let must_wait = |m: &Message| {
            let early = early_votes && matches!(m.body, crate::message::Body::VoteResponse { .. });
            m.body.requires_persistence() && !early
        };
        let (after_persist, messages): (Vec<_>, Vec<_>) = std::mem::take(&mut r.msgs)
            .into_iter()
            .partition(|m| must_wait(m));
        let soft = SoftState {
            leader: r.lead,
            role: r.role,
        };
        let mut rd = Ready {
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            entries,
            snapshot: r.pending_snapshot.clone(),
            messages,
            after_persist,
            committed_entries,
            read_states: std::mem::take(&mut r.read_states),
            dropped_reads: std::mem::take(&mut r.dropped_reads),
            soft_state: (soft != self.prev_soft_state).then_some(soft),
            persisted: false,
            record: Record::default(),
        };
        rd.record(self.seq, self.prev_hard_state);
        rd
    }

    /// The application handled `ready` as its contract says. Reads only
    /// what was recorded when `ready` was made: its public fields may have
    /// been moved out.
    pub fn advance(&mut self, ready: Ready) {
        let done = ready.persist_done();
        let rec = ready.record;
        assert_eq!(
            self.outstanding.take(),
            Some(rec.seq),
            "advance() of a Ready not outstanding"
        );
        assert!(done, "advance() before Ready::persisted()");
        let r = &mut self.raft;
        if let Some(meta) = &rec.snapshot {
            if r.pending_snapshot.as_ref().is_some_and(|p| &p.meta == meta) {
                r.pending_snapshot = None;
            }
        }
        if let Some(hs) = rec.hard_state {
            self.prev_hard_state = hs;
        }
        if let Some(soft) = rec.soft_state {
            self.prev_soft_state = soft;
        }
        if let Some((index, term)) = rec.last_entry {
            r.log.stable_to(index, term);
        }
        let stabled = r.log.stabled;
        for (index, bytes, cc) in &rec.committed {
            r.log.applied_to(*index);
            if let Some(cc) = cc {
                r.apply_conf_change(*index, cc);
            }
            if r.role == Role::Leader {
                r.uncommitted_bytes = r.uncommitted_bytes.saturating_sub(*bytes);
            }
        }
        if r.maybe_auto_leave_joint() {
            r.broadcast_append();
        }
        r.self_persisted(stabled);
        r.log.assert_invariants();
    }

    /// Current term, vote and commit index (cheaper than [`RawNode::status`]).
    pub fn hard_state(&self) -> HardState {
        self.raft.hard_state()
    }

    /// Index of the last log entry.
    pub fn last_index(&self) -> Index {
        self.raft.log.last_index()
    }

    /// This member's state.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == Role::Leader {
            r.trk
                .progress
                .iter()
                .map(|(&id, p)| (id, progress_status(p, r.now)))
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            role: r.role,
            hard_state: r.hard_state(),
            leader: r.lead,
            applied: r.log.applied,
            last_index: r.log.last_index(),
            first_index: r.log.first_index(),
            conf_state: r.trk.membership.to_conf_state(),
            progress,
            lead_transferee: r.lead_transferee,
        }
    }

    /// Term of the entry at `index` in this member's log (`None` if compacted
    /// or past the end). For checkers and tests.
    pub fn term(&self, index: Index) -> Option<Term> {
        self.raft.log.term(index)
    }

    /// Current membership.
    pub fn conf_state(&self) -> ConfState {
        self.raft.trk.membership.to_conf_state()
    }

    /// True if this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.role == Role::Leader
    }

    /// Logical clock in ticks (what lease reads are measured against).
    pub fn now(&self) -> u64 {
        self.raft.now
    }

    /// True while a lease read would be served without a heartbeat round.
    pub fn lease_valid(&self) -> bool {
        self.raft.lease_valid()
    }
}

fn progress_status(p: &Progress, now: u64) -> ProgressStatus {
    ProgressStatus {
        matched: p.matched,
        next: p.next,
        state: p.kind(),
        is_learner: p.is_learner,
        inflight: p.inflights.len(),
        last_ack_age: (p.acked_tick > 0).then(|| now.saturating_sub(p.acked_tick)),
    }
}
