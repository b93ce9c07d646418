//! The Raft state machine of one member: roles, term and vote, ticks, and the
//! dispatch of incoming messages. Elections, replication, reads, snapshots
//! and membership live in their own files as further `impl Raft` blocks.

use bytes::Bytes;

use crate::config::Config;
use crate::log::RaftLog;
use crate::message::{Body, Message};
use crate::progress::Progress;
use crate::reads::ReadQueue;
use crate::rng::SplitMix64;
use crate::tracker::{Membership, Tracker};
use crate::types::{
    ConfState, GroupId, HardState, Index, NodeId, ReadState, Snapshot, SnapshotMeta, Term, NO_NODE,
};

/// The role a member plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Running a pre-vote: asks whether it could win before bumping the term.
    PreCandidate,
    /// Running an election.
    Candidate,
    /// Leads the group.
    Leader,
}

/// Chunks of a snapshot being received from the leader.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    pub meta: SnapshotMeta,
    pub total: u64,
    pub data: Vec<u8>,
}

/// One member's Raft state.
#[derive(Debug)]
pub(crate) struct Raft {
    pub id: NodeId,
    pub group: GroupId,
    pub cfg: Config,
    pub term: Term,
    pub vote: NodeId,
    pub lead: NodeId,
    pub role: Role,
    pub log: RaftLog,
    pub trk: Tracker,
    /// Outgoing messages, drained into the next `Ready`.
    pub msgs: Vec<Message>,
    pub election_elapsed: u32,
    pub heartbeat_elapsed: u32,
    pub randomized_election_timeout: u32,
    rng: SplitMix64,
    /// Logical time in ticks since start; the leader lease is measured in it.
    pub now: u64,
    pub lead_transferee: Option<NodeId>,
    /// Term in which this leader sent TimeoutNow: no lease reads in it.
    pub lease_void_term: Term,
    /// Until this tick, ignore campaigns as if a leader's lease held: a member
    /// restarted from persisted state may have heard a leader just before it
    /// went down, and that leader may be serving lease reads on that basis.
    pub honour_lease_until: u64,
    /// Index of the latest membership change appended by this leader.
    pub pending_conf_index: Index,
    /// Bytes of uncommitted proposals (leader only).
    pub uncommitted_bytes: usize,
    pub reads: ReadQueue,
    pub read_states: Vec<ReadState>,
    /// Reads that could not be served (their contexts), reported in `Ready`.
    pub dropped_reads: Vec<Bytes>,
    /// Latest snapshot the application made: the source for InstallSnapshot.
    pub snapshot: Option<Snapshot>,
    /// Size of `snapshot`'s image when the application keeps it and fills
    /// chunks itself (its `data` is then empty).
    pub external_snapshot_len: Option<u64>,
    /// A snapshot received from the leader, to be persisted and applied.
    pub pending_snapshot: Option<Snapshot>,
    pub incoming_snapshot: Option<IncomingSnapshot>,
    /// Membership as of each change since the last snapshot, to answer
    /// "membership at index i" when the application snapshots.
    pub conf_history: Vec<(Index, ConfState)>,
    /// The leader this member saw for its current term (election safety check).
    pub(crate) seen_leader: (Term, NodeId),
}

impl Raft {
    pub fn new(
        cfg: Config,
        hs: HardState,
        snapshot: Option<Snapshot>,
        log: RaftLog,
        membership: Membership,
    ) -> Self {
        let mut r = Raft {
            id: cfg.id,
            group: cfg.group,
            term: hs.term,
            vote: hs.vote,
            lead: NO_NODE,
            role: Role::Follower,
            log,
            trk: Tracker::default(),
            msgs: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            rng: SplitMix64::new(cfg.seed),
            now: 0,
            lead_transferee: None,
            lease_void_term: 0,
            honour_lease_until: 0,
            pending_conf_index: 0,
            uncommitted_bytes: 0,
            reads: ReadQueue::default(),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            snapshot,
            external_snapshot_len: None,
            pending_snapshot: None,
            incoming_snapshot: None,
            conf_history: Vec::new(),
            seen_leader: (0, NO_NODE),
            cfg,
        };
        r.set_membership(membership);
        r.reset_randomized_election_timeout();
        r
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    /// A member may campaign only if it is a voter and has no snapshot pending.
    pub fn promotable(&self) -> bool {
        self.trk.is_voter(self.id) && self.pending_snapshot.is_none()
    }

    pub fn send(&mut self, to: NodeId, body: Body) {
        let term = match body {
            // Forwarded requests carry no term: they are not part of the protocol.
            Body::Propose { .. } | Body::ReadIndex { .. } | Body::TransferLeader { .. } => 0,
            _ => self.term,
        };
        self.send_with_term(to, term, body);
    }

    pub fn send_with_term(&mut self, to: NodeId, term: Term, body: Body) {
        assert_ne!(to, self.id, "a member never sends to itself");
        self.msgs.push(Message {
            group: self.group,
            from: self.id,
            to,
            term,
            body,
        });
    }

    /// A random number in `[0, n)` from this member's seeded stream.
    pub fn rng_below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    pub fn reset_randomized_election_timeout(&mut self) {
        let t = self.cfg.election_tick as u64;
        self.randomized_election_timeout = (t + self.rng.below(t)) as u32;
    }

    /// Common part of every role change.
    fn reset(&mut self, term: Term) {
        if self.term != term {
            assert!(
                term > self.term,
                "term went backwards: {} -> {}",
                self.term,
                term
            );
            self.term = term;
            self.vote = NO_NODE;
        }
        self.lead = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.trk.votes.clear();
        self.fail_pending_reads();
        let (last, inflight, me) = (self.log.last_index(), self.cfg.max_inflight_msgs, self.id);
        let stabled = self.log.stabled;
        for (&id, pr) in self.trk.progress.iter_mut() {
            let learner = pr.is_learner;
            *pr = Progress::new(last + 1, inflight, learner);
            if id == me {
                pr.matched = stabled;
            }
        }
    }

    pub fn become_follower(&mut self, term: Term, lead: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.set_leader(lead);
    }

    /// Record the leader of the current term and check election safety:
    /// one leader per term (Raft section 5.2).
    pub fn set_leader(&mut self, lead: NodeId) {
        self.lead = lead;
        if lead == NO_NODE {
            return;
        }
        if self.seen_leader.0 == self.term {
            assert_eq!(
                self.seen_leader.1, lead,
                "two leaders in term {}: {} and {}",
                self.term, self.seen_leader.1, lead
            );
        }
        self.seen_leader = (self.term, lead);
    }

    pub fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.role,
            Role::Leader,
            "leader cannot become pre-candidate"
        );
        // A pre-vote changes neither term nor vote.
        self.trk.votes.clear();
        self.fail_pending_reads();
        self.role = Role::PreCandidate;
        self.lead = NO_NODE;
    }

    pub fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "leader cannot become candidate");
        self.reset(self.term + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    pub fn become_leader(&mut self) {
        assert_ne!(
            self.role,
            Role::Follower,
            "follower cannot become leader directly"
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.set_leader(self.id);
        self.uncommitted_bytes = 0;
        // Conservatively assume the log may hold an unapplied membership change.
        self.pending_conf_index = self.log.last_index();
        if let Some(pr) = self.trk.progress.get_mut(&self.id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        // An empty entry of the new term lets earlier entries commit (section 5.4.2).
        self.append_entries(vec![crate::types::Entry::normal(0, 0, Bytes::new())]);
        self.broadcast_append();
    }

    /// One unit of logical time.
    pub fn tick(&mut self) {
        self.now += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.campaign(crate::election::CampaignKind::from_config(
                self.cfg.pre_vote,
            ));
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                if !self.trk.quorum_active(self.id) {
                    let term = self.term;
                    self.become_follower(term, NO_NODE);
                    return;
                }
                let me = self.id;
                for (&id, pr) in self.trk.progress.iter_mut() {
                    pr.recent_active = id == me;
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.abort_leader_transfer();
        }
        self.tick_snapshot_transfers();
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Entry point for messages from other members.
    pub fn step(&mut self, m: Message) {
        if m.term > self.term && m.term != 0 {
            if !self.step_higher_term(&m) {
                return;
            }
        } else if m.term < self.term && m.term != 0 {
            self.step_lower_term(m);
            return;
        }
        match m.body {
            Body::Vote {
                pre,
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(m.from, m.term, pre, last_index, last_term),
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// A message from a higher term. Returns false if it is to be ignored.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        if let Body::Vote { pre, transfer, .. } = m.body {
            // Leader stickiness: while we hear from a leader, ignore campaigns
            // unless the leader asked for them (transfer). This is what makes
            // CheckQuorum leases safe.
            let in_lease = self.cfg.check_quorum
                && ((self.lead != NO_NODE && self.election_elapsed < self.cfg.election_tick)
                    || self.now < self.honour_lease_until);
            if in_lease && !transfer {
                return false;
            }
            if pre {
                return true; // a pre-vote never changes our term
            }
        }
        match m.body {
            Body::VoteResponse {
                pre: true,
                granted: true,
            } => {}
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                self.become_follower(m.term, m.from)
            }
            Body::Vote { .. } => {
                // Raft section 5.2: only hearing the leader or granting a vote
                // resets the election timer. A follower that merely learns a
                // higher term from a candidate it may reject keeps counting, so
                // a member with a stale log cannot keep everyone from campaigning.
                let (was_follower, elapsed) = (self.role == Role::Follower, self.election_elapsed);
                self.become_follower(m.term, NO_NODE);
                if was_follower {
                    self.election_elapsed = elapsed;
                }
            }
            _ => self.become_follower(m.term, NO_NODE),
        }
        true
    }

    fn step_lower_term(&mut self, m: Message) {
        match m.body {
            // A stale leader (e.g. partitioned and back) learns our term and
            // steps down; without this, CheckQuorum and PreVote could keep
            // the cluster from ever hearing of it.
            Body::Append { .. } | Body::Heartbeat { .. }
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                self.send(
                    m.from,
                    Body::AppendResponse {
                        index: 0,
                        reject: None,
                    },
                );
            }
            Body::Vote { pre: true, .. } => {
                self.send(
                    m.from,
                    Body::VoteResponse {
                        pre: true,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.body {
            Body::Propose { entries }
                if self.lead != NO_NODE && !self.cfg.disable_proposal_forwarding =>
            {
                let lead = self.lead;
                self.send(lead, Body::Propose { entries });
            }
            Body::Append {
                index,
                log_term,
                entries,
                commit,
            } => {
                self.election_elapsed = 0;
                self.set_leader(m.from);
                self.handle_append(m.from, index, log_term, entries, commit);
            }
            Body::Heartbeat { commit, ctx } => {
                self.election_elapsed = 0;
                self.set_leader(m.from);
                self.log.commit_to(commit.min(self.log.last_index()));
                self.send(m.from, Body::HeartbeatResponse { ctx });
            }
            Body::Snapshot {
                meta,
                offset,
                total,
                data,
            } => {
                self.election_elapsed = 0;
                self.set_leader(m.from);
                self.handle_snapshot_chunk(m.from, meta, offset, total, data);
            }
            Body::TimeoutNow if self.promotable() => {
                self.campaign(crate::election::CampaignKind::Transfer);
            }
            Body::TransferLeader { target } if self.lead != NO_NODE => {
                let lead = self.lead;
                self.send(lead, Body::TransferLeader { target });
            }
            Body::ReadIndex { ctx } => {
                if self.lead != NO_NODE {
                    let lead = self.lead;
                    self.send(lead, Body::ReadIndex { ctx });
                } else {
                    self.dropped_reads.push(ctx);
                }
            }
            Body::ReadIndexResponse {
                index,
                ctx,
                rejected,
            } => {
                if rejected {
                    self.dropped_reads.push(ctx);
                } else {
                    self.read_states.push(ReadState { index, ctx });
                }
            }
            _ => {}
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            Body::Append { .. } | Body::Heartbeat { .. } | Body::Snapshot { .. } => {
                // Someone won this term: follow it.
                let term = m.term;
                self.become_follower(term, m.from);
                self.step_follower(m);
            }
            Body::VoteResponse { pre, granted } if pre == (self.role == Role::PreCandidate) => {
                self.handle_vote_response(m.from, granted);
            }
            Body::ReadIndex { ctx } => self.dropped_reads.push(ctx),
            _ => {}
        }
    }

    fn step_leader(&mut self, m: Message) {
        match m.body {
            Body::Propose { entries } => {
                // Forwarded proposals that fail are dropped; the follower's
                // client times out and retries.
                let _ = self.propose(entries);
            }
            Body::AppendResponse { index, reject } => {
                self.handle_append_response(m.from, m.term, index, reject)
            }
            Body::HeartbeatResponse { ctx } => self.handle_heartbeat_response(m.from, ctx),
            Body::SnapshotResponse {
                index,
                next_offset,
                reject,
            } => self.handle_snapshot_response(m.from, index, next_offset, reject),
            Body::ReadIndex { ctx } if self.read_index(m.from, ctx.clone()).is_err() => {
                self.send(
                    m.from,
                    Body::ReadIndexResponse {
                        index: 0,
                        ctx,
                        rejected: true,
                    },
                );
            }
            Body::TransferLeader { target } => self.transfer_leader(target),
            _ => {}
        }
    }

    /// Replace the membership, keeping progress of members that stay.
    pub fn set_membership(&mut self, membership: Membership) {
        membership.assert_valid();
        let members = membership.members();
        self.trk.progress.retain(|id, _| members.contains(id));
        let (next, inflight) = (self.log.last_index() + 1, self.cfg.max_inflight_msgs);
        for &id in &members {
            let learner =
                membership.learners.contains(&id) || membership.learners_next.contains(&id);
            let pr = self.trk.progress.entry(id).or_insert_with(|| {
                let mut pr = Progress::new(next, inflight, learner);
                pr.recent_active = true; // a new member gets a grace period
                pr
            });
            pr.is_learner = learner;
        }
        self.trk.membership = membership;
    }
}
