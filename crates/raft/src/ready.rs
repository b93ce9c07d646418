//! [`Ready`]: a batch of work the core hands the application, with the
//! ordering contract the application must keep.

use bytes::Bytes;

use crate::message::Message;
use crate::raft::Role;
use crate::types::{ConfChange, Entry, EntryKind, HardState, Index, NodeId, ReadState, Snapshot};
use crate::types::{SnapshotMeta, Term};

/// Volatile state that the application may want to observe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// Known leader (0 if none).
    pub leader: NodeId,
    /// This member's role.
    pub role: Role,
}

/// A batch of work for the application.
///
/// # Ordering contract
/// 1. Send [`Ready::messages`] at any time (leader appends go out while the
///    leader writes its own log: Raft thesis section 10.2.1).
/// 2. Persist `snapshot` (if any), then `entries` (replacing any stored
///    entries from the first index on), then `hard_state`; fsync if
///    [`Ready::must_sync`] (a hard state that only moves the commit index
///    may reach the disk with a later fsync: losing it only means
///    re-learning the commit index).
/// 3. Call [`Ready::persisted`]; only then are the messages that depend on
///    durable state (votes, append acknowledgements) released; send them.
/// 4. Apply `snapshot` and then `committed_entries` to the state machine,
///    in order. Steps 2-3 and 4 may swap when no message waits for the
///    write ([`Ready::has_messages_after_persist`] is false, as on a
///    leader): committed entries are durable on a quorum already. The state
///    machine must then not become durable past this member's durable log
///    (the member would restart ahead of its own log).
/// 5. Answer `read_states` once the state machine has applied their
///    index, and fail `dropped_reads`.
/// 6. Call [`crate::RawNode::advance`] with this `Ready`. No other `Ready`
///    is handed out before that.
///
/// `advance` reads nothing from the public fields: what it needs was
/// recorded when the `Ready` was made, so the application may move any of
/// them out (entries to its log writer, committed entries to its state
/// machine).
#[derive(Debug)]
#[must_use = "a Ready must be persisted, sent, applied and advanced"]
pub struct Ready {
    /// Changed hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// A snapshot received from the leader: persist it, then load it into
    /// the state machine.
    pub snapshot: Option<Snapshot>,
    /// Messages that may be sent right away.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads that are safe once `index` is applied.
    pub read_states: Vec<ReadState>,
    /// Contexts of reads that failed (leadership lost, no leader): answer
    /// them with an error.
    pub dropped_reads: Vec<Bytes>,
    /// Role or leader changed.
    pub soft_state: Option<SoftState>,
    pub(crate) after_persist: Vec<Message>,
    pub(crate) persisted: bool,
    pub(crate) record: Record,
}

/// What [`crate::RawNode::advance`] needs, recorded when the `Ready` is made.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) must_sync: bool,
    pub(crate) must_persist: bool,
    /// Last entry handed out to persist.
    pub(crate) last_entry: Option<(Index, Term)>,
    pub(crate) snapshot: Option<SnapshotMeta>,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) soft_state: Option<SoftState>,
    /// Each committed entry handed out: index, payload bytes and its
    /// membership change, in order.
    pub(crate) committed: Vec<(Index, usize, Option<ConfChange>)>,
}

impl Ready {
    /// Records what `advance` will need (called when the `Ready` is made).
    pub(crate) fn record(&mut self, seq: u64, prev_hard_state: HardState) {
        let hs_changed_vote_or_term = self
            .hard_state
            .is_some_and(|hs| hs.term != prev_hard_state.term || hs.vote != prev_hard_state.vote);
        self.record = Record {
            seq,
            must_sync: !self.entries.is_empty()
                || self.snapshot.is_some()
                || hs_changed_vote_or_term,
            must_persist: self.hard_state.is_some()
                || !self.entries.is_empty()
                || self.snapshot.is_some(),
            last_entry: self.entries.last().map(|e| (e.index, e.term)),
            snapshot: self.snapshot.as_ref().map(|s| s.meta.clone()),
            hard_state: self.hard_state,
            soft_state: self.soft_state,
            committed: self
                .committed_entries
                .iter()
                .map(|e| {
                    let cc = match &e.kind {
                        EntryKind::ConfChange(cc) => Some(cc.clone()),
                        EntryKind::Normal => None,
                    };
                    (e.index, e.data.len(), cc)
                })
                .collect(),
        };
    }

    /// True if something must be written before [`Ready::persisted`]: a
    /// snapshot, entries or a changed hard state.
    pub fn must_persist(&self) -> bool {
        self.record.must_persist
    }

    /// True if the write must be fsynced before [`Ready::persisted`]: new
    /// entries, a snapshot, or a new term or vote. A hard state that only
    /// moves the commit index need not wait for its own fsync.
    pub fn must_sync(&self) -> bool {
        self.record.must_sync
    }

    /// True if messages wait for this `Ready` to be durable (votes, append
    /// acknowledgements): a driver then persists before it applies, so
    /// they leave sooner.
    pub fn has_messages_after_persist(&self) -> bool {
        !self.after_persist.is_empty()
    }

    /// Declare that `snapshot`, `entries` and `hard_state` are written (and
    /// fsynced if [`Ready::must_sync`]). Returns the messages that had to
    /// wait for it.
    pub fn persisted(&mut self) -> Vec<Message> {
        self.persisted = true;
        std::mem::take(&mut self.after_persist)
    }

    /// True once [`Ready::persisted`] was called, or if nothing had to be.
    pub(crate) fn persist_done(&self) -> bool {
        self.persisted || !self.record.must_persist && self.after_persist.is_empty()
    }
}
