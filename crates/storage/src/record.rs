//! The compact binary encoding of WAL records (and of `ConfState`, used by
//! snapshot files).
//!
//! Integers are unsigned LEB128 varints; decoding is strict: overlong or
//! non-canonical varints, unknown tags, non-boolean flags, counts larger than
//! the remaining input, index overflow and trailing bytes are all errors.
//! Decoding never panics and never allocates more than the input can justify.
//! Entry payloads are zero-copy slices of the input `Bytes`.
//!
//! Record body = type byte + payload:
//! - `1` batch: `group, flags(bit0 snapshot, bit1 hard state), [snap index, snap term],
//!   [term, vote, commit], count, [first index, count x entry]`
//!   where entry = `term, kind(0 normal | 1 conf change), [joint(0|1), n, n x (tag, node)],
//!   data len, data`, and `tag` is 0 AddVoter, 1 AddLearner, 2 Remove.
//! - `2` compacted: `group, index, term`.
//! - `3` checkpoint: `group, flags(bit0 snapshot, bit1 hard state), [index, term], [term, vote, commit]`.

use bytes::Bytes;
use concord_raft::{
    ConfChange, ConfChangeStep, ConfState, Entry, EntryKind, GroupId, HardState, Index, Term,
};

use crate::error::DecodeError;

/// Record type byte of [`Record::Batch`].
pub const TYPE_BATCH: u8 = 1;
/// Record type byte of [`Record::Compacted`].
pub const TYPE_COMPACTED: u8 = 2;
/// Record type byte of [`Record::Checkpoint`].
pub const TYPE_CHECKPOINT: u8 = 3;

/// Largest log index (or snapshot index) the WAL stores: 2^62. Larger ones
/// are refused when written and rejected when decoded, so that index
/// arithmetic never overflows.
pub const MAX_INDEX: u64 = 1 << 62;

const FLAG_SNAPSHOT: u8 = 1;
const FLAG_HARD_STATE: u8 = 2;

/// Where a snapshot puts the start of the log: entries up to `index` are
/// covered by the snapshot, whose last entry had `term`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotMark {
    /// Last index covered by the snapshot.
    pub index: Index,
    /// Term of the entry at `index`.
    pub term: Term,
}

/// What one Raft `Ready` persists for one group, in the order the contract
/// asks: a snapshot received from the leader (its mark: the log is discarded
/// and restarts after it), then entries (replacing stored entries from the
/// first one's index on), then the hard state. Stored as one record, so it
/// is recovered entirely or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalBatch {
    /// Raft group the batch belongs to.
    pub group: GroupId,
    /// A snapshot installed from the leader: discard the whole log, which
    /// now starts after `snapshot.index`. (For the application's own
    /// compaction, use `Wal::compact` instead.)
    pub snapshot: Option<SnapshotMark>,
    /// Entries, contiguous, with non-decreasing terms.
    pub entries: Vec<Entry>,
    /// The hard state, if it changed.
    pub hard_state: Option<HardState>,
}

impl WalBatch {
    /// What `rd` asks to persist for `group`, in the order of its contract:
    /// a snapshot from the leader (its mark), entries, hard state.
    pub fn from_ready(group: GroupId, rd: &concord_raft::Ready) -> Self {
        WalBatch {
            group,
            snapshot: rd.snapshot.as_ref().map(|s| SnapshotMark {
                index: s.meta.index,
                term: s.meta.term,
            }),
            entries: rd.entries.clone(),
            hard_state: rd.hard_state,
        }
    }

    /// A batch for `group` with nothing in it.
    pub fn new(group: GroupId) -> Self {
        WalBatch {
            group,
            ..Default::default()
        }
    }

    /// True if there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }

    /// Append this batch's record body (as [`Record::Batch`]) to `out`
    /// without building a `Record`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(TYPE_BATCH);
        put_varint(out, self.group);
        encode_flags_and_state(out, self.snapshot, self.hard_state);
        put_varint(out, self.entries.len() as u64);
        if let Some(first) = self.entries.first() {
            put_varint(out, first.index);
            for e in &self.entries {
                encode_entry(out, e);
            }
        }
    }

    /// Approximate encoded size (for batching limits).
    pub fn size(&self) -> usize {
        32 + self.entries.iter().map(Entry::size).sum::<usize>()
    }
}

/// One WAL record (the body of a frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A batch written by the Raft loop.
    Batch(WalBatch),
    /// The application took a snapshot at `mark`: entries up to it may go.
    Compacted {
        /// Raft group.
        group: GroupId,
        /// Position covered by the snapshot.
        mark: SnapshotMark,
    },
    /// Written at the start of every segment for every group, so that older
    /// segments never hold the only copy of a hard state or snapshot mark.
    /// Replayed with compaction semantics (a no-op in the middle of a log).
    Checkpoint {
        /// Raft group.
        group: GroupId,
        /// Latest hard state, if any was written.
        hard_state: Option<HardState>,
        /// Latest snapshot mark, if any.
        snapshot: Option<SnapshotMark>,
    },
}

impl Record {
    /// Raft group of the record.
    pub fn group(&self) -> GroupId {
        match self {
            Record::Batch(b) => b.group,
            Record::Compacted { group, .. } | Record::Checkpoint { group, .. } => *group,
        }
    }

    /// Append the record body (type byte + payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Batch(b) => b.encode(out),
            Record::Compacted { group, mark } => {
                out.push(TYPE_COMPACTED);
                put_varint(out, *group);
                put_varint(out, mark.index);
                put_varint(out, mark.term);
            }
            Record::Checkpoint {
                group,
                hard_state,
                snapshot,
            } => {
                out.push(TYPE_CHECKPOINT);
                put_varint(out, *group);
                encode_flags_and_state(out, *snapshot, *hard_state);
            }
        }
    }

    /// Decode a record body (type byte + payload). Strict; never panics.
    pub fn decode(body: &Bytes) -> Result<Record, DecodeError> {
        let mut r = Reader { buf: body, pos: 0 };
        let rtype = r.u8()?;
        if !(TYPE_BATCH..=TYPE_CHECKPOINT).contains(&rtype) {
            return Err(DecodeError {
                offset: 0,
                reason: "unknown record type",
            });
        }
        let group = r.varint()?;
        let record = match rtype {
            TYPE_BATCH => {
                let (snapshot, hard_state) = r.flags_and_state()?;
                let count = r.varint()?;
                // Each entry takes at least 3 bytes: bound before allocating.
                if count > r.remaining() as u64 / 3 {
                    return r.fail("entry count exceeds the record size");
                }
                let mut entries = Vec::with_capacity(count as usize);
                if count > 0 {
                    let first = r.varint()?;
                    if first == 0 || first.checked_add(count - 1).is_none_or(|l| l > MAX_INDEX) {
                        return r.fail("entry index out of range");
                    }
                    for i in 0..count {
                        entries.push(r.entry(first + i)?);
                    }
                }
                Record::Batch(WalBatch {
                    group,
                    snapshot,
                    entries,
                    hard_state,
                })
            }
            TYPE_COMPACTED => Record::Compacted {
                group,
                mark: r.mark()?,
            },
            TYPE_CHECKPOINT => {
                let (snapshot, hard_state) = r.flags_and_state()?;
                Record::Checkpoint {
                    group,
                    hard_state,
                    snapshot,
                }
            }
            _ => {
                return Err(DecodeError {
                    offset: 0,
                    reason: "unknown record type",
                })
            }
        };
        if r.remaining() != 0 {
            return r.fail("trailing bytes after the record");
        }
        Ok(record)
    }
}

fn encode_flags_and_state(out: &mut Vec<u8>, snap: Option<SnapshotMark>, hs: Option<HardState>) {
    let flags = (snap.is_some() as u8 * FLAG_SNAPSHOT) | (hs.is_some() as u8 * FLAG_HARD_STATE);
    out.push(flags);
    if let Some(m) = snap {
        put_varint(out, m.index);
        put_varint(out, m.term);
    }
    if let Some(hs) = hs {
        put_varint(out, hs.term);
        put_varint(out, hs.vote);
        put_varint(out, hs.commit);
    }
}

fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    put_varint(out, e.term);
    match &e.kind {
        EntryKind::Normal => out.push(0),
        EntryKind::ConfChange(cc) => {
            out.push(1);
            out.push(cc.joint as u8);
            put_varint(out, cc.changes.len() as u64);
            for step in &cc.changes {
                let (tag, node) = match *step {
                    ConfChangeStep::AddVoter(n) => (0, n),
                    ConfChangeStep::AddLearner(n) => (1, n),
                    ConfChangeStep::Remove(n) => (2, n),
                };
                out.push(tag);
                put_varint(out, node);
            }
        }
    }
    put_varint(out, e.data.len() as u64);
    out.extend_from_slice(&e.data);
}

/// Encode a membership (for snapshot files): four lists of node ids.
pub fn encode_conf_state(out: &mut Vec<u8>, cs: &ConfState) {
    for list in [
        &cs.voters,
        &cs.voters_outgoing,
        &cs.learners,
        &cs.learners_next,
    ] {
        put_varint(out, list.len() as u64);
        for &id in list.iter() {
            put_varint(out, id);
        }
    }
}

/// Decode what [`encode_conf_state`] wrote; the whole input must be used.
pub fn decode_conf_state(buf: &Bytes) -> Result<ConfState, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let mut lists: [Vec<u64>; 4] = Default::default();
    for list in &mut lists {
        let n = r.varint()?;
        if n > r.remaining() as u64 {
            return r.fail("list length exceeds the input");
        }
        for _ in 0..n {
            list.push(r.varint()?);
        }
    }
    if r.remaining() != 0 {
        return r.fail("trailing bytes after the membership");
    }
    let [voters, voters_outgoing, learners, learners_next] = lists;
    Ok(ConfState {
        voters,
        voters_outgoing,
        learners,
        learners_next,
    })
}

/// Bytes `put_varint` uses for `v`.
fn varint_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Exact encoded length of one entry inside a batch record.
pub(crate) fn entry_encoded_len(e: &Entry) -> usize {
    let kind = match &e.kind {
        EntryKind::Normal => 1,
        EntryKind::ConfChange(cc) => {
            let steps: usize = cc
                .changes
                .iter()
                .map(|s| match *s {
                    ConfChangeStep::AddVoter(n)
                    | ConfChangeStep::AddLearner(n)
                    | ConfChangeStep::Remove(n) => 1 + varint_len(n),
                })
                .sum();
            2 + varint_len(cc.changes.len() as u64) + steps
        }
    };
    varint_len(e.term) + kind + varint_len(e.data.len() as u64) + e.data.len()
}

/// Append `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            reason,
        })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.fail("unexpected end of record"),
        }
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.fail("boolean is neither 0 nor 1"),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                self.pos = start;
                return self.fail("varint overflows 64 bits");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    self.pos = start;
                    return self.fail("non-canonical varint");
                }
                return Ok(v);
            }
        }
        self.pos = start;
        self.fail("varint longer than 10 bytes")
    }

    fn bytes(&mut self, n: u64) -> Result<Bytes, DecodeError> {
        if n > self.remaining() as u64 {
            return self.fail("length exceeds the record");
        }
        let n = n as usize;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn mark(&mut self) -> Result<SnapshotMark, DecodeError> {
        let index = self.varint()?;
        if index > MAX_INDEX {
            return self.fail("snapshot index out of range");
        }
        Ok(SnapshotMark {
            index,
            term: self.varint()?,
        })
    }

    fn flags_and_state(
        &mut self,
    ) -> Result<(Option<SnapshotMark>, Option<HardState>), DecodeError> {
        let flags = self.u8()?;
        if flags & !(FLAG_SNAPSHOT | FLAG_HARD_STATE) != 0 {
            return self.fail("unknown flag bits");
        }
        let snap = if flags & FLAG_SNAPSHOT != 0 {
            Some(self.mark()?)
        } else {
            None
        };
        let hs = if flags & FLAG_HARD_STATE != 0 {
            Some(HardState {
                term: self.varint()?,
                vote: self.varint()?,
                commit: self.varint()?,
            })
        } else {
            None
        };
        Ok((snap, hs))
    }

    fn entry(&mut self, index: Index) -> Result<Entry, DecodeError> {
        let term = self.varint()?;
        let kind = match self.u8()? {
            0 => EntryKind::Normal,
            1 => {
                let joint = self.bool()?;
                let n = self.varint()?;
                if n > self.remaining() as u64 / 2 {
                    return self.fail("change count exceeds the record size");
                }
                let mut changes = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let tag = self.u8()?;
                    let node = self.varint()?;
                    changes.push(match tag {
                        0 => ConfChangeStep::AddVoter(node),
                        1 => ConfChangeStep::AddLearner(node),
                        2 => ConfChangeStep::Remove(node),
                        _ => return self.fail("unknown membership change step"),
                    });
                }
                EntryKind::ConfChange(ConfChange { changes, joint })
            }
            _ => return self.fail("unknown entry kind"),
        };
        let len = self.varint()?;
        let data = self.bytes(len)?;
        Ok(Entry {
            term,
            index,
            kind,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn entry_length_is_exact() {
        let cc = ConfChange {
            changes: vec![
                ConfChangeStep::AddVoter(300),
                ConfChangeStep::Remove(u64::MAX),
            ],
            joint: true,
        };
        let entries = [
            Entry::normal(0, 1, Bytes::new()),
            Entry::normal(u64::MAX, 1, Bytes::from(vec![1u8; 200])),
            Entry {
                term: 128,
                index: 1,
                kind: EntryKind::ConfChange(cc),
                data: Bytes::new(),
            },
        ];
        for e in entries {
            let mut out = Vec::new();
            encode_entry(&mut out, &e);
            assert_eq!(entry_encoded_len(&e), out.len(), "{e:?}");
        }
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len());
        }
    }
}
