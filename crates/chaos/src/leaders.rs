//! Who leads, over the run: every member's Maintenance.Status is polled a
//! few times a second, and each change of (leader, term) is recorded, so
//! the report and the timeline can say when leadership moved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::StatusRequest;
use serde::Serialize;
use tonic::transport::Channel;

use crate::cluster::channel;
use crate::workload::Recorder;

/// How often the members are asked.
const POLL: Duration = Duration::from_millis(200);
/// A member that does not answer by then is skipped for this poll.
const ANSWER_WITHIN: Duration = Duration::from_millis(400);

/// Leadership as the lab saw it change.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LeaderChange {
    /// When it was first seen, ms since the run began.
    pub at_ms: f64,
    /// The new leader's name (`m1`...), or its id in hex when the lab
    /// did not start it; empty when no member knows a leader.
    pub leader: String,
    /// Its term.
    pub term: u64,
}

/// The poller; `stop` returns what it saw.
#[derive(Debug)]
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<LeaderChange>>,
}

impl LeaderWatch {
    /// Starts polling `members` (name, client URL); times from `rec`.
    pub fn start(members: Vec<(String, String)>, rec: Arc<Recorder>) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move { poll(members, rec, flag).await });
        LeaderWatch { stop, task }
    }

    /// Stops polling; the changes seen, in order.
    pub async fn stop(self) -> Vec<LeaderChange> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

async fn poll(
    members: Vec<(String, String)>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Vec<LeaderChange> {
    let mut conns: Vec<Option<MaintenanceClient<Channel>>> = vec![None; members.len()];
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut changes: Vec<LeaderChange> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Side by side: a paused member must not hold up the others.
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, url)) in members.iter().enumerate() {
            let (url, mut conn) = (url.clone(), conns[i].take());
            set.spawn(async move {
                let a = ask(&url, &mut conn).await;
                (i, conn, a)
            });
        }
        let mut answers = vec![None; members.len()];
        while let Some(Ok((i, conn, a))) = set.join_next().await {
            conns[i] = conn;
            answers[i] = a;
        }
        let mut best: Option<(u64, u64)> = None;
        for ((name, _), a) in members.iter().zip(&answers) {
            let Some((me, leader, term)) = *a else {
                continue;
            };
            names.entry(me).or_insert_with(|| name.clone());
            // The newest term wins; a member without a leader still says
            // an election is going on.
            if best.is_none_or(|(_, t)| term > t) {
                best = Some((leader, term));
            }
        }
        if let Some((leader, term)) = best {
            let leader = match leader {
                0 => String::new(),
                id => names.get(&id).cloned().unwrap_or_else(|| format!("{id:x}")),
            };
            let last = changes.last();
            if last.is_none_or(|c| c.leader != leader || c.term != term) {
                changes.push(LeaderChange {
                    at_ms: rec.now() as f64 / 1e6,
                    leader,
                    term,
                });
            }
        }
        tokio::time::sleep(POLL).await;
    }
    changes
}

/// One member's (member id, leader id, term), within `ANSWER_WITHIN`.
async fn ask(url: &str, conn: &mut Option<MaintenanceClient<Channel>>) -> Option<(u64, u64, u64)> {
    if conn.is_none() {
        *conn = Some(MaintenanceClient::new(
            channel(url, ANSWER_WITHIN).await.ok()?,
        ));
    }
    let c = conn.as_mut()?;
    match tokio::time::timeout(ANSWER_WITHIN, c.status(StatusRequest {})).await {
        Ok(Ok(s)) => {
            let s = s.into_inner();
            Some((s.header.map_or(0, |h| h.member_id), s.leader, s.raft_term))
        }
        Ok(Err(_)) | Err(_) => {
            // Dial again next time: the member may have restarted.
            *conn = None;
            None
        }
    }
}

/// How many changes fall in `[from_ms, to_ms)`.
pub fn count_between(changes: &[LeaderChange], from_ms: f64, to_ms: f64) -> usize {
    changes
        .iter()
        .filter(|c| c.at_ms >= from_ms && c.at_ms < to_ms)
        .count()
}
