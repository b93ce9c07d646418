//! Readable one-line renderings of messages and entries for traces.

use std::fmt::Write;

use crate::message::{Body, Message};
use crate::types::{ConfChange, ConfChangeStep, Entry, EntryKind};

/// `term/index` plus the payload, e.g. `2/5 "put x"` or `1/1 conf[v1 v2 v3]`.
pub fn entry(e: &Entry) -> String {
    match &e.kind {
        EntryKind::Normal if e.data.is_empty() => format!("{}/{}", e.term, e.index),
        EntryKind::Normal => format!(
            "{}/{} {:?}",
            e.term,
            e.index,
            String::from_utf8_lossy(&e.data)
        ),
        EntryKind::ConfChange(cc) => format!("{}/{} conf[{}]", e.term, e.index, conf_change(cc)),
    }
}

/// `v4 l5 r1` (+ `joint`), or `leave-joint`.
pub fn conf_change(cc: &ConfChange) -> String {
    if cc.is_leave_joint() {
        return "leave-joint".into();
    }
    let mut parts: Vec<String> = cc
        .changes
        .iter()
        .map(|s| match s {
            ConfChangeStep::AddVoter(id) => format!("v{id}"),
            ConfChangeStep::AddLearner(id) => format!("l{id}"),
            ConfChangeStep::Remove(id) => format!("r{id}"),
        })
        .collect();
    if cc.joint {
        parts.push("joint".into());
    }
    parts.join(" ")
}

fn entries(list: &[Entry]) -> String {
    list.iter().map(entry).collect::<Vec<_>>().join(", ")
}

/// `1->2 MsgApp term=2 log=1/5 commit=5 [2/6 "x"]`.
pub fn message(m: &Message) -> String {
    let mut s = format!("{}->{} {} term={}", m.from, m.to, m.body.name(), m.term);
    let _ = match &m.body {
        Body::Append {
            index,
            log_term,
            entries: es,
            commit,
        } => {
            let list = if es.is_empty() {
                String::new()
            } else {
                format!(" [{}]", entries(es))
            };
            write!(s, " log={log_term}/{index} commit={commit}{list}")
        }
        Body::AppendResponse {
            index,
            reject: None,
        } => write!(s, " index={index}"),
        Body::AppendResponse {
            index,
            reject: Some(h),
        } => {
            write!(s, " rejected index={index} hint={}/{}", h.term, h.index)
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
            ..
        } => {
            write!(
                s,
                " last={last_term}/{last_index}{}",
                if *transfer { " transfer" } else { "" }
            )
        }
        Body::VoteResponse { granted, .. } => {
            write!(s, " {}", if *granted { "granted" } else { "rejected" })
        }
        Body::Heartbeat { commit, ctx } => write!(s, " commit={commit} round={ctx}"),
        Body::HeartbeatResponse { ctx } => write!(s, " round={ctx}"),
        Body::Snapshot {
            meta,
            offset,
            total,
            data,
        } => write!(
            s,
            " snap={}/{} voters={:?} chunk={}..{} of {}",
            meta.term,
            meta.index,
            meta.conf_state.voters,
            offset,
            offset + data.len() as u64,
            total
        ),
        Body::SnapshotResponse {
            index,
            next_offset,
            reject,
        } => {
            write!(
                s,
                " snap={index} next={next_offset}{}",
                if *reject { " rejected" } else { "" }
            )
        }
        Body::Propose { entries: es } => write!(s, " [{}]", entries(es)),
        Body::ReadIndex { ctx } => write!(s, " ctx={:?}", String::from_utf8_lossy(ctx)),
        Body::ReadIndexResponse {
            index,
            ctx,
            rejected,
        } => write!(
            s,
            " index={index} ctx={:?}{}",
            String::from_utf8_lossy(ctx),
            if *rejected { " rejected" } else { "" }
        ),
        Body::TimeoutNow => Ok(()),
        Body::TransferLeader { target } => write!(s, " target={target}"),
    };
    s
}
