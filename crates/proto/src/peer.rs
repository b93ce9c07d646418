//! Conversion between the core's Raft messages and the peer protocol.
//!
//! Decoding refuses messages that are structurally incomplete (a message
//! with no body, an unknown enum value), so a peer cannot crash a member
//! with a malformed frame.

use crate::concordpeer as pb;
use crate::concordpeer::raft_message::Body as PbBody;
use concord_raft::{
    Body, ConfChange, ConfChangeStep, ConfState, Entry, EntryKind, Message, RejectHint,
    SnapshotMeta,
};

/// A peer frame that does not describe a valid Raft message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage(pub &'static str);

impl std::fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid peer message: {}", self.0)
    }
}

impl std::error::Error for InvalidMessage {}

/// Encodes a core message for the wire.
pub fn to_wire(m: &Message) -> pb::RaftMessage {
    let body = match &m.body {
        Body::Append {
            index,
            log_term,
            entries,
            commit,
        } => PbBody::Append(pb::Append {
            index: *index,
            log_term: *log_term,
            entries: entries.iter().map(entry_to_wire).collect(),
            commit: *commit,
        }),
        Body::AppendResponse { index, reject } => PbBody::AppendResponse(pb::AppendResponse {
            index: *index,
            reject: reject.map(|h| pb::RejectHint {
                index: h.index,
                term: h.term,
            }),
        }),
        Body::Vote {
            pre,
            last_index,
            last_term,
            transfer,
        } => PbBody::Vote(pb::Vote {
            pre: *pre,
            last_index: *last_index,
            last_term: *last_term,
            transfer: *transfer,
        }),
        Body::VoteResponse { pre, granted } => PbBody::VoteResponse(pb::VoteResponse {
            pre: *pre,
            granted: *granted,
        }),
        Body::Heartbeat { commit, ctx } => PbBody::Heartbeat(pb::Heartbeat {
            commit: *commit,
            ctx: *ctx,
        }),
        Body::HeartbeatResponse { ctx } => {
            PbBody::HeartbeatResponse(pb::HeartbeatResponse { ctx: *ctx })
        }
        Body::Snapshot {
            meta,
            offset,
            total,
            data,
        } => PbBody::Snapshot(pb::SnapshotChunk {
            meta: Some(meta_to_wire(meta)),
            offset: *offset,
            total: *total,
            data: data.clone(),
        }),
        Body::SnapshotResponse {
            index,
            next_offset,
            reject,
        } => PbBody::SnapshotResponse(pb::SnapshotResponse {
            index: *index,
            next_offset: *next_offset,
            reject: *reject,
        }),
        Body::Propose { entries } => PbBody::Propose(pb::Propose {
            entries: entries.iter().map(entry_to_wire).collect(),
        }),
        Body::ReadIndex { ctx } => PbBody::ReadIndex(pb::ReadIndex { ctx: ctx.clone() }),
        Body::ReadIndexResponse {
            index,
            ctx,
            rejected,
        } => PbBody::ReadIndexResponse(pb::ReadIndexResponse {
            index: *index,
            ctx: ctx.clone(),
            rejected: *rejected,
        }),
        Body::TimeoutNow => PbBody::TimeoutNow(pb::TimeoutNow {}),
        Body::TransferLeader { target } => {
            PbBody::TransferLeader(pb::TransferLeader { target: *target })
        }
    };
    pb::RaftMessage {
        group: m.group,
        from: m.from,
        to: m.to,
        term: m.term,
        body: Some(body),
    }
}

/// Decodes a wire message into a core message.
pub fn from_wire(m: pb::RaftMessage) -> Result<Message, InvalidMessage> {
    let body = match m.body.ok_or(InvalidMessage("no body"))? {
        PbBody::Append(a) => Body::Append {
            index: a.index,
            log_term: a.log_term,
            entries: entries_from_wire(a.entries)?,
            commit: a.commit,
        },
        PbBody::AppendResponse(r) => Body::AppendResponse {
            index: r.index,
            reject: r.reject.map(|h| RejectHint {
                index: h.index,
                term: h.term,
            }),
        },
        PbBody::Vote(v) => Body::Vote {
            pre: v.pre,
            last_index: v.last_index,
            last_term: v.last_term,
            transfer: v.transfer,
        },
        PbBody::VoteResponse(v) => Body::VoteResponse {
            pre: v.pre,
            granted: v.granted,
        },
        PbBody::Heartbeat(h) => Body::Heartbeat {
            commit: h.commit,
            ctx: h.ctx,
        },
        PbBody::HeartbeatResponse(h) => Body::HeartbeatResponse { ctx: h.ctx },
        PbBody::Snapshot(s) => Body::Snapshot {
            meta: meta_from_wire(s.meta.ok_or(InvalidMessage("snapshot without meta"))?),
            offset: s.offset,
            total: s.total,
            data: s.data,
        },
        PbBody::SnapshotResponse(s) => Body::SnapshotResponse {
            index: s.index,
            next_offset: s.next_offset,
            reject: s.reject,
        },
        PbBody::Propose(p) => Body::Propose {
            entries: entries_from_wire(p.entries)?,
        },
        PbBody::ReadIndex(r) => Body::ReadIndex { ctx: r.ctx },
        PbBody::ReadIndexResponse(r) => Body::ReadIndexResponse {
            index: r.index,
            ctx: r.ctx,
            rejected: r.rejected,
        },
        PbBody::TimeoutNow(_) => Body::TimeoutNow,
        PbBody::TransferLeader(t) => Body::TransferLeader { target: t.target },
    };
    Ok(Message {
        group: m.group,
        from: m.from,
        to: m.to,
        term: m.term,
        body,
    })
}

fn entry_to_wire(e: &Entry) -> pb::Entry {
    let conf_change = match &e.kind {
        EntryKind::Normal => None,
        EntryKind::ConfChange(cc) => Some(pb::ConfChange {
            changes: cc
                .changes
                .iter()
                .map(|s| {
                    let (kind, node) = match *s {
                        ConfChangeStep::AddVoter(n) => (pb::conf_change_step::Kind::AddVoter, n),
                        ConfChangeStep::AddLearner(n) => {
                            (pb::conf_change_step::Kind::AddLearner, n)
                        }
                        ConfChangeStep::Remove(n) => (pb::conf_change_step::Kind::Remove, n),
                    };
                    pb::ConfChangeStep {
                        kind: kind as i32,
                        node,
                    }
                })
                .collect(),
            joint: cc.joint,
        }),
    };
    pb::Entry {
        term: e.term,
        index: e.index,
        conf_change,
        data: e.data.clone(),
    }
}

fn entries_from_wire(entries: Vec<pb::Entry>) -> Result<Vec<Entry>, InvalidMessage> {
    entries.into_iter().map(entry_from_wire).collect()
}

fn entry_from_wire(e: pb::Entry) -> Result<Entry, InvalidMessage> {
    let kind = match e.conf_change {
        None => EntryKind::Normal,
        Some(cc) => {
            let mut changes = Vec::with_capacity(cc.changes.len());
            for s in cc.changes {
                let kind = pb::conf_change_step::Kind::try_from(s.kind)
                    .map_err(|_| InvalidMessage("unknown conf change kind"))?;
                changes.push(match kind {
                    pb::conf_change_step::Kind::AddVoter => ConfChangeStep::AddVoter(s.node),
                    pb::conf_change_step::Kind::AddLearner => ConfChangeStep::AddLearner(s.node),
                    pb::conf_change_step::Kind::Remove => ConfChangeStep::Remove(s.node),
                });
            }
            EntryKind::ConfChange(ConfChange {
                changes,
                joint: cc.joint,
            })
        }
    };
    Ok(Entry {
        term: e.term,
        index: e.index,
        kind,
        data: e.data,
    })
}

fn meta_to_wire(m: &SnapshotMeta) -> pb::SnapshotMeta {
    let cs = &m.conf_state;
    pb::SnapshotMeta {
        index: m.index,
        term: m.term,
        conf_state: Some(pb::ConfState {
            voters: cs.voters.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners: cs.learners.clone(),
            learners_next: cs.learners_next.clone(),
        }),
    }
}

fn meta_from_wire(m: pb::SnapshotMeta) -> SnapshotMeta {
    let cs = m.conf_state.unwrap_or_default();
    SnapshotMeta {
        index: m.index,
        term: m.term,
        conf_state: ConfState {
            voters: cs.voters,
            voters_outgoing: cs.voters_outgoing,
            learners: cs.learners,
            learners_next: cs.learners_next,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message as _;

    fn roundtrip(m: Message) {
        let wire = to_wire(&m).encode_to_vec();
        let back = from_wire(pb::RaftMessage::decode(wire.as_slice()).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn every_body_roundtrips() {
        let cc = ConfChange {
            changes: vec![
                ConfChangeStep::AddVoter(4),
                ConfChangeStep::AddLearner(5),
                ConfChangeStep::Remove(2),
            ],
            joint: true,
        };
        let entries = vec![
            Entry::normal(3, 7, Bytes::from_static(b"put")),
            Entry {
                term: 3,
                index: 8,
                kind: EntryKind::ConfChange(cc),
                data: Bytes::from_static(b"ctx"),
            },
        ];
        let meta = SnapshotMeta {
            index: 9,
            term: 3,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                voters_outgoing: vec![1, 2],
                learners: vec![5],
                learners_next: vec![],
            },
        };
        let bodies = vec![
            Body::Append {
                index: 6,
                log_term: 2,
                entries: entries.clone(),
                commit: 5,
            },
            Body::AppendResponse {
                index: 8,
                reject: Some(RejectHint { index: 4, term: 1 }),
            },
            Body::AppendResponse {
                index: 8,
                reject: None,
            },
            Body::Vote {
                pre: true,
                last_index: 8,
                last_term: 3,
                transfer: true,
            },
            Body::VoteResponse {
                pre: false,
                granted: true,
            },
            Body::Heartbeat { commit: 8, ctx: 77 },
            Body::HeartbeatResponse { ctx: 77 },
            Body::Snapshot {
                meta,
                offset: 10,
                total: 100,
                data: Bytes::from_static(b"chunk"),
            },
            Body::SnapshotResponse {
                index: 9,
                next_offset: 15,
                reject: false,
            },
            Body::Propose { entries },
            Body::ReadIndex {
                ctx: Bytes::from_static(b"r1"),
            },
            Body::ReadIndexResponse {
                index: 8,
                ctx: Bytes::from_static(b"r1"),
                rejected: true,
            },
            Body::TimeoutNow,
            Body::TransferLeader { target: 2 },
        ];
        for body in bodies {
            roundtrip(Message {
                group: 1,
                from: 1,
                to: 2,
                term: 3,
                body,
            });
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let no_body = pb::RaftMessage {
            group: 1,
            from: 1,
            to: 2,
            term: 1,
            body: None,
        };
        assert_eq!(from_wire(no_body), Err(InvalidMessage("no body")));
        let bad_kind = pb::RaftMessage {
            group: 1,
            from: 1,
            to: 2,
            term: 1,
            body: Some(PbBody::Propose(pb::Propose {
                entries: vec![pb::Entry {
                    conf_change: Some(pb::ConfChange {
                        changes: vec![pb::ConfChangeStep { kind: 9, node: 1 }],
                        joint: false,
                    }),
                    ..Default::default()
                }],
            })),
        };
        assert_eq!(
            from_wire(bad_kind),
            Err(InvalidMessage("unknown conf change kind"))
        );
        // Arbitrary bytes never panic the decoder.
        for seed in 0u64..2000 {
            let mut rng = concord_raft::rng::SplitMix64::new(seed);
            let len = (rng.next_u64() % 64) as usize;
            let buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Ok(m) = pb::RaftMessage::decode(buf.as_slice()) {
                let _ = from_wire(m);
            }
        }
    }
}
