//! Log compaction and InstallSnapshot (Raft section 7), streamed in chunks.
//!
//! The leader sends one chunk at a time and waits for the follower's answer,
//! which names the next offset it expects; a lost chunk or answer is resent
//! after an election timeout. The follower assembles the chunks and, once
//! complete, hands the snapshot to the application through `Ready`.

use bytes::Bytes;

use crate::error::RaftError;
use crate::message::Body;
use crate::progress::ProgressState;
use crate::raft::{IncomingSnapshot, Raft};
use crate::tracker::Membership;
use crate::types::{ConfState, Index, NodeId, Snapshot, SnapshotMeta};

impl Raft {
    /// Start sending the latest snapshot to `to`. Returns true if a chunk was sent.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> bool {
        let Some(snapshot) = self.snapshot.clone() else {
            // Compaction without a snapshot cannot happen: `compact` requires one.
            unreachable!("log compacted but no snapshot to send");
        };
        let total = self
            .external_snapshot_len
            .unwrap_or(snapshot.data.len() as u64);
        let Some(pr) = self.trk.progress.get_mut(&to) else {
            return false;
        };
        pr.become_snapshot(snapshot, total);
        self.send_snapshot_chunk(to);
        true
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk = self.cfg.snapshot_chunk_size as u64;
        let Some(pr) = self.trk.progress.get_mut(&to) else {
            return;
        };
        let ProgressState::Snapshot {
            snapshot,
            total,
            next_offset,
            elapsed,
        } = &mut pr.state
        else {
            return;
        };
        *elapsed = 0;
        let total = *total;
        let start = (*next_offset).min(total);
        let end = (start + chunk).min(total);
        // An image the application keeps is read by it into the chunk:
        // bytes `offset..offset + min(chunk size, total - offset)`.
        let data = match snapshot.data.is_empty() {
            true => bytes::Bytes::new(),
            false => snapshot.data.slice(start as usize..end as usize),
        };
        let body = Body::Snapshot {
            meta: snapshot.meta.clone(),
            offset: start,
            total,
            data,
        };
        self.send(to, body);
    }

    /// Resend the current chunk to followers that have not answered for an
    /// election timeout.
    pub(crate) fn tick_snapshot_transfers(&mut self) {
        let timeout = self.cfg.election_tick;
        let mut resend = Vec::new();
        for (&id, pr) in self.trk.progress.iter_mut() {
            if let ProgressState::Snapshot { elapsed, .. } = &mut pr.state {
                *elapsed += 1;
                if *elapsed >= timeout {
                    resend.push(id);
                }
            }
        }
        for id in resend {
            self.send_snapshot_chunk(id);
        }
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        next_offset: u64,
        reject: bool,
    ) {
        let Some(pr) = self.trk.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let ProgressState::Snapshot {
            snapshot,
            total,
            next_offset: expected,
            ..
        } = &mut pr.state
        else {
            return;
        };
        if snapshot.meta.index != index {
            return; // an answer about an older transfer
        }
        if reject {
            pr.become_probe();
            self.send_append(from, true);
            return;
        }
        let total = *total;
        *expected = next_offset.min(total);
        if next_offset >= total {
            // Installed: the follower's log now matches ours up to the snapshot.
            pr.maybe_update(index);
            pr.become_probe();
            pr.become_replicate();
            while self.send_append(from, false) {}
            // The snapshot may have brought a transfer target fully up to date.
            self.maybe_send_timeout_now(from);
        } else {
            self.send_snapshot_chunk(from);
        }
    }

    /// Follower: accept one chunk from the leader.
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: Bytes,
    ) {
        let index = meta.index;
        if index <= self.log.committed {
            // We already have everything it covers.
            self.answer_chunk(from, index, total, false);
            return;
        }
        if total > self.cfg.max_snapshot_bytes {
            self.answer_chunk(from, index, 0, true);
            return;
        }
        let fresh = self
            .incoming_snapshot
            .as_ref()
            .is_none_or(|s| s.meta != meta || s.total != total);
        if fresh {
            if offset != 0 {
                self.answer_chunk(from, index, 0, false);
                return;
            }
            let data = Vec::with_capacity(total.min(64 * 1024 * 1024) as usize);
            self.incoming_snapshot = Some(IncomingSnapshot { meta, total, data });
        }
        let inc = self.incoming_snapshot.as_mut().expect("just set");
        let have = inc.data.len() as u64;
        if offset != have || have + data.len() as u64 > total {
            // Out of order or duplicate: tell the leader where we are.
            self.answer_chunk(from, index, have, false);
            return;
        }
        inc.data.extend_from_slice(&data);
        let have = inc.data.len() as u64;
        if have < total {
            self.answer_chunk(from, index, have, false);
            return;
        }
        let inc = self.incoming_snapshot.take().expect("present");
        self.restore_snapshot(Snapshot {
            meta: inc.meta,
            data: Bytes::from(inc.data),
        });
        self.answer_chunk(from, index, total, false);
    }

    fn answer_chunk(&mut self, to: NodeId, index: Index, next_offset: u64, reject: bool) {
        self.send(
            to,
            Body::SnapshotResponse {
                index,
                next_offset,
                reject,
            },
        );
    }

    /// Install a complete snapshot from the leader (section 7: discard the
    /// log unless it already contains the snapshot's last entry).
    fn restore_snapshot(&mut self, snap: Snapshot) {
        let meta = &snap.meta;
        if self.log.match_term(meta.index, meta.term) {
            // Our log already has it: just learn that it is committed.
            self.log.commit_to(meta.index);
            return;
        }
        self.log.restore_snapshot(meta);
        self.conf_history.clear();
        self.set_membership(Membership::from_conf_state(&meta.conf_state));
        self.snapshot = Some(snap.clone());
        self.external_snapshot_len = None;
        self.pending_snapshot = Some(snap);
    }

    /// The application has a snapshot of its state up to `index` (applied):
    /// keep it for lagging followers and drop the log before it.
    /// The metadata a snapshot at applied index `index` gets.
    pub(crate) fn snapshot_meta(&self, index: Index) -> Result<SnapshotMeta, RaftError> {
        if index > self.log.applied {
            return Err(RaftError::BadSnapshot(index, "not applied yet"));
        }
        if index <= self.log.snapshot_index() {
            return Err(RaftError::BadSnapshot(
                index,
                "older than the current snapshot",
            ));
        }
        let term = self.log.term(index).expect("applied index is in the log");
        Ok(SnapshotMeta {
            index,
            term,
            conf_state: self.conf_state_at(index),
        })
    }

    pub(crate) fn compact(
        &mut self,
        index: Index,
        data: Bytes,
        external_len: Option<u64>,
    ) -> Result<(), RaftError> {
        let meta = self.snapshot_meta(index)?;
        self.snapshot = Some(Snapshot { meta, data });
        self.external_snapshot_len = external_len;
        self.log.compact(index);
        // Keep the newest change at or below `index`: it is the base for later lookups.
        let keep_from = self
            .conf_history
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.conf_history.drain(..keep_from);
        Ok(())
    }

    /// Membership as of applied index `index`.
    pub(crate) fn conf_state_at(&self, index: Index) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .or_else(|| self.snapshot.as_ref().map(|s| s.meta.conf_state.clone()))
            .unwrap_or_default()
    }
}
