//! Membership changes and leadership transfers while the workload runs,
//! through the etcd Cluster API (MemberAdd, MemberPromote, MemberRemove)
//! and Maintenance.MoveLeader, which Concord and etcd both serve.
//!
//! Each change is one fault of the lab's schedule: [`inject`] makes it and
//! [`after_outage`] finishes it (a learner-promote removes another member,
//! a leader-remove adds a fresh one, so the cluster keeps its size).

use std::future::Future;
use std::time::{Duration, Instant};

use concord_proto::etcdserverpb::cluster_client::ClusterClient;
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest, RangeRequest,
};
use concord_rng::SplitMix64;
use tonic::transport::Channel;

use crate::cluster::{channel, status, Cluster};
use crate::scenario::FaultKind;
use crate::LabError;

/// How long a membership call is retried (elections, "unhealthy cluster"
/// while a new member connects, a learner not yet in sync).
const RETRY_FOR: Duration = Duration::from_secs(15);
/// How long a removed leader is watched for stepping down.
const STEP_DOWN_WITHIN: Duration = Duration::from_secs(5);

/// Calls `f` on the members at `urls` in turn until it succeeds, fails
/// for good (`done` says an error means it already took effect), or
/// [`RETRY_FOR`] passed.
async fn retry<T, F, Fut>(
    urls: &[String],
    done: impl Fn(&str) -> Option<T>,
    mut f: F,
) -> Result<T, LabError>
where
    F: FnMut(Channel) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    let mut last = String::from("no member reachable");
    for at in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let url = &urls[at % urls.len()];
        if let Ok(ch) = channel(url, Duration::from_millis(500)).await {
            match tokio::time::timeout(Duration::from_secs(5), f(ch)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => match done(e.message()) {
                    Some(v) => return Ok(v),
                    None => last = format!("{url}: {}", e.message()),
                },
                Err(_) => last = format!("{url}: timed out"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(LabError::Member(last))
}

/// Client URLs of the current members other than `but`.
fn others(cluster: &Cluster, but: usize) -> Vec<String> {
    let urls: Vec<String> = cluster
        .current()
        .into_iter()
        .filter(|&i| i != but)
        .map(|i| cluster.client_url(i).to_string())
        .collect();
    urls
}

/// Member `i`'s id, from the member list (matched by peer URL).
pub async fn id_of(cluster: &Cluster, i: usize) -> Result<u64, LabError> {
    let peer = cluster.peer_url(i).to_string();
    let list = retry(
        &others(cluster, i),
        |_| None,
        |ch| async move {
            let r = ClusterClient::new(ch)
                .member_list(MemberListRequest { linearizable: true })
                .await?;
            Ok(r.into_inner().members)
        },
    )
    .await?;
    list.iter()
        .find(|m| m.peer_ur_ls.contains(&peer))
        .map(|m| m.id)
        .ok_or_else(|| LabError::Member(format!("{} is not in the member list", cluster.name(i))))
}

/// Removes member `i` from the cluster (asking the others), then stops
/// its process for good.
pub async fn remove(cluster: &mut Cluster, i: usize) -> Result<(), LabError> {
    let id = id_of(cluster, i).await?;
    let gone = |m: &str| m.contains("not found").then_some(());
    retry(&others(cluster, i), gone, |ch| async move {
        let req = MemberRemoveRequest { id };
        ClusterClient::new(ch).member_remove(req).await.map(|_| ())
    })
    .await?;
    cluster.forget(i)
}

/// Adds a fresh member (a learner if asked), and starts it.
pub async fn add(cluster: &mut Cluster, learner: bool) -> Result<usize, LabError> {
    let j = cluster.prepare_member()?;
    let peer = cluster.peer_url(j).to_string();
    // A retry after an answer that was lost finds the URL already added.
    let exists = |m: &str| m.contains("exists").then_some(());
    let added = retry(&others(cluster, j), exists, |ch| {
        let req = MemberAddRequest {
            peer_ur_ls: vec![peer.clone()],
            is_learner: learner,
        };
        async move { ClusterClient::new(ch).member_add(req).await.map(|_| ()) }
    })
    .await;
    if let Err(e) = added {
        cluster.forget(j)?;
        return Err(e);
    }
    cluster.restart(j)?;
    Ok(j)
}

/// Promotes learner `j` once it has caught up; returns how long that took.
pub async fn promote(cluster: &Cluster, j: usize) -> Result<Duration, LabError> {
    let id = id_of(cluster, j).await?;
    let t0 = Instant::now();
    let promoted = |m: &str| m.contains("not a learner").then_some(());
    retry(&others(cluster, j), promoted, |ch| async move {
        let req = MemberPromoteRequest { id };
        ClusterClient::new(ch).member_promote(req).await.map(|_| ())
    })
    .await?;
    Ok(t0.elapsed())
}

/// A member drawn by the seed among the current running ones, other than
/// those in `not`.
fn pick(cluster: &Cluster, not: &[usize], rng: &mut SplitMix64) -> Option<usize> {
    let pool: Vec<usize> = cluster
        .current()
        .into_iter()
        .filter(|i| !not.contains(i))
        .collect();
    (!pool.is_empty()).then(|| pool[rng.below(pool.len() as u64) as usize])
}

/// Makes the change `kind` names; returns what it did, in words.
pub async fn inject(
    cluster: &mut Cluster,
    kind: FaultKind,
    leader: usize,
    rng: &mut SplitMix64,
) -> Result<String, LabError> {
    let name = |c: &Cluster, i: usize| c.name(i).to_string();
    match kind {
        FaultKind::MemberReplace => {
            let f = pick(cluster, &[leader], rng).ok_or(LabError::Member("no follower".into()))?;
            remove(cluster, f).await?;
            let j = add(cluster, false).await?;
            Ok(format!(
                "removed {}, added {}",
                name(cluster, f),
                name(cluster, j)
            ))
        }
        FaultKind::LearnerPromote => {
            let j = add(cluster, true).await?;
            let took = promote(cluster, j).await?;
            let ms = took.as_millis();
            Ok(format!(
                "learner {} added, promoted after {ms} ms",
                name(cluster, j)
            ))
        }
        FaultKind::LeaderTransfer => transfer(cluster, leader, rng).await,
        FaultKind::LeaderRemove => remove_leader(cluster, leader).await,
        _ => Err(LabError::Member(format!(
            "{kind:?} is no membership change"
        ))),
    }
}

/// Finishes the change after the outage: a learner-promote removes a
/// member other than the new one and the leader, a leader-remove adds a
/// fresh member in the removed leader's place.
pub async fn after_outage(
    cluster: &mut Cluster,
    kind: FaultKind,
    rng: &mut SplitMix64,
    label: String,
) -> Result<String, LabError> {
    match kind {
        FaultKind::LearnerPromote => {
            let newest = *cluster.current().last().unwrap_or(&0);
            let leader = cluster.leader().await.unwrap_or(newest);
            let f = pick(cluster, &[leader, newest], rng)
                .ok_or(LabError::Member("no member to remove".into()))?;
            remove(cluster, f).await?;
            Ok(format!("{label}; removed {}", cluster.name(f)))
        }
        FaultKind::LeaderRemove => {
            let j = add(cluster, false).await?;
            Ok(format!("{label}; added {}", cluster.name(j)))
        }
        _ => Ok(label),
    }
}

/// MoveLeader from `leader` to a follower drawn by the seed; waits to see
/// the follower lead.
async fn transfer(
    cluster: &mut Cluster,
    leader: usize,
    rng: &mut SplitMix64,
) -> Result<String, LabError> {
    let to = pick(cluster, &[leader], rng).ok_or(LabError::Member("no follower".into()))?;
    let target_id = id_of(cluster, to).await?;
    let t0 = Instant::now();
    let ch = channel(cluster.client_url(leader), Duration::from_millis(500)).await?;
    let req = MoveLeaderRequest { target_id };
    let moved = tokio::time::timeout(
        Duration::from_secs(5),
        MaintenanceClient::new(ch).move_leader(req),
    )
    .await;
    let (from, to_name) = (cluster.name(leader), cluster.name(to));
    match moved {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Ok(format!("{from} → {to_name} refused: {}", e.message())),
        Err(_) => return Ok(format!("{from} → {to_name} timed out")),
    }
    let acked = t0.elapsed().as_millis();
    while t0.elapsed() < Duration::from_secs(5) {
        if cluster.leader().await == Some(to) {
            let seen = t0.elapsed().as_millis();
            return Ok(format!(
                "{from} → {to_name} (acknowledged in {acked} ms, leads at {seen} ms)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(format!(
        "{from} → {to_name} acknowledged in {acked} ms, not seen leading"
    ))
}

/// Removes the leader; watches it step down and another member lead,
/// probes it with a linearizable read, then stops it.
async fn remove_leader(cluster: &mut Cluster, leader: usize) -> Result<String, LabError> {
    let id = id_of(cluster, leader).await?;
    let gone = |m: &str| m.contains("not found").then_some(());
    let t0 = Instant::now();
    retry(&others(cluster, leader), gone, |ch| async move {
        let req = MemberRemoveRequest { id };
        ClusterClient::new(ch).member_remove(req).await.map(|_| ())
    })
    .await?;
    let acked = t0.elapsed().as_millis();
    let url = cluster.client_url(leader).to_string();
    let rest = others(cluster, leader);
    let (mut stepped, mut elected) = (None, None);
    // Watched from the acknowledgement: a removal retried for seconds
    // (etcd's "unhealthy cluster") still gets the whole window.
    let until = Instant::now() + STEP_DOWN_WITHIN;
    while Instant::now() < until && (stepped.is_none() || elected.is_none()) {
        let claims = matches!(status(&url).await, Some(s) if s.member == s.leader && s.leader != 0);
        if !claims && stepped.is_none() {
            stepped = Some(t0.elapsed().as_millis());
        }
        for u in &rest {
            if matches!(status(u).await, Some(s) if s.leader != 0 && s.leader != id) {
                elected = elected.or(Some(t0.elapsed().as_millis()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = if read_answers(&url).await {
        "; it still ANSWERS linearizable reads"
    } else {
        ""
    };
    let name = cluster.name(leader).to_string();
    cluster.forget(leader)?;
    let ms = |v: Option<u128>| v.map_or("never".to_string(), |v| format!("{v} ms"));
    Ok(format!(
        "removed leader {name} (acknowledged in {acked} ms; stepped down: {}; new leader: {}){probe}",
        ms(stepped),
        ms(elected)
    ))
}

/// Whether the member at `url` answers a linearizable read within a second.
async fn read_answers(url: &str) -> bool {
    let Ok(ch) = channel(url, Duration::from_millis(300)).await else {
        return false;
    };
    let req = RangeRequest {
        key: b"k0".to_vec().into(),
        ..Default::default()
    };
    let read = tokio::time::timeout(Duration::from_secs(1), KvClient::new(ch).range(req)).await;
    matches!(read, Ok(Ok(_)))
}
