//! Lease clients: grant a short lease, put keys with it, keep it alive a
//! while, then revoke it or let it run out; once its end is acknowledged
//! (the revoke answered, or its time-to-live reported as -1: the lease is
//! gone on the leader, so its revoke was applied), read its keys back.
//!
//! A time-to-live of 0 is not an acknowledgement: etcd reports an expired
//! lease whose revoke is not yet applied that way, and its keys are still
//! there. Nor is a -1 from a member that has not applied the lease's puts
//! (its header revision is older than theirs): that member may never have
//! seen the grant. etcd 3.4 answers so from a paused leader just resumed,
//! which still thinks it leads, for a lease granted while it was paused;
//! such answers are counted (`stale_ends`) and polling goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_check::{LeaseEnd, LeaseLife, LeaseRead};
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    PutRequest, RangeRequest,
};
use tonic::transport::Channel;
use tonic::Status;

use crate::cluster::channel;
use crate::workload::Recorder;

/// The TTL lease clients ask for, in seconds (etcd grants at least 1.5
/// election timeouts, 2 s with its defaults).
const TTL: i64 = 2;
/// How long a lease is kept alive before it is ended.
const KEEP: Duration = Duration::from_millis(1200);
/// How long to wait for an expiry to be acknowledged.
const EXPIRY_WAIT: Duration = Duration::from_secs(12);

/// Grants a lease of `ttl` seconds: its id and granted TTL.
pub(crate) async fn grant(ch: &Channel, ttl: i64) -> Result<(i64, i64), Status> {
    let r = LeaseClient::new(ch.clone())
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await?
        .into_inner();
    Ok((r.id, r.ttl))
}

/// One keep-alive: the TTL the server answered (0: the lease is gone).
pub(crate) async fn keep_alive(ch: &Channel, id: i64) -> Result<i64, Status> {
    let req = tokio_stream::once(LeaseKeepAliveRequest { id });
    let mut answers = LeaseClient::new(ch.clone())
        .lease_keep_alive(req)
        .await?
        .into_inner();
    match answers.message().await? {
        Some(r) => Ok(r.ttl),
        None => Err(Status::unavailable("keep-alive stream closed")),
    }
}

/// Revokes a lease.
pub(crate) async fn revoke(ch: &Channel, id: i64) -> Result<(), Status> {
    LeaseClient::new(ch.clone())
        .lease_revoke(LeaseRevokeRequest { id })
        .await?;
    Ok(())
}

/// Runs one lease client until `stop`; returns every lease's life.
pub async fn run(
    client: usize,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Vec<LeaseLife> {
    let mut lives = Vec::new();
    let mut at = client % endpoints.len();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(ch) = channel(&endpoints[at], Duration::from_millis(500)).await else {
            at = (at + 1) % endpoints.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        n += 1;
        match life(client, n, &ch, &rec, &stop).await {
            Ok(l) => lives.push(l),
            Err(_) => at = (at + 1) % endpoints.len(),
        }
    }
    lives
}

/// One lease, from grant to the reads after its end. Leases alternate
/// between being revoked and running out.
async fn life(
    client: usize,
    n: usize,
    ch: &Channel,
    rec: &Recorder,
    stop: &AtomicBool,
) -> Result<LeaseLife, Status> {
    let t = Duration::from_secs(2);
    let (id, _) = timed(t, grant(ch, TTL)).await?;
    let keys: Vec<String> = (0..2).map(|j| format!("lease/{client}/{n}/{j}")).collect();
    let mut kv = KvClient::new(ch.clone());
    let mut written = 0;
    for key in &keys {
        let put = PutRequest {
            key: key.clone().into(),
            value: "x".into(),
            lease: id,
            ..Default::default()
        };
        let r = timed(t, kv.put(put)).await?.into_inner();
        written = r.header.map_or(0, |h| h.revision);
    }
    let mut life = LeaseLife {
        client,
        lease: id,
        keys,
        ended: None,
        stale_ends: 0,
        reads: Vec::new(),
    };
    let until = tokio::time::Instant::now() + KEEP;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // A lost keep-alive only makes the lease end sooner.
        let _ = timed(t, keep_alive(ch, id)).await;
    }
    life.ended = if n % 2 == 0 {
        timed(t, revoke(ch, id))
            .await
            .ok()
            .map(|_| (LeaseEnd::Revoked, rec.now()))
    } else {
        expiry(ch, id, written, rec, stop, &mut life.stale_ends).await
    };
    if life.ended.is_some() {
        life.reads = read_keys(&mut kv, &life.keys, rec).await?;
    }
    Ok(life)
}

/// Reads each key (linearizably): whether it is there.
async fn read_keys(
    kv: &mut KvClient<Channel>,
    keys: &[String],
    rec: &Recorder,
) -> Result<Vec<LeaseRead>, Status> {
    let mut reads = Vec::new();
    for key in keys {
        let invoke = rec.now();
        let req = RangeRequest {
            key: key.clone().into(),
            ..Default::default()
        };
        let r = timed(Duration::from_secs(2), kv.range(req))
            .await?
            .into_inner();
        reads.push(LeaseRead {
            key: key.clone(),
            invoke,
            complete: rec.now(),
            present: !r.kvs.is_empty(),
        });
    }
    Ok(reads)
}

/// Polls the lease's time-to-live until a member that has applied the
/// lease's puts (revision `written`) reports it gone (-1); when that
/// answer arrived. Earlier -1s are counted in `stale`.
async fn expiry(
    ch: &Channel,
    id: i64,
    written: i64,
    rec: &Recorder,
    stop: &AtomicBool,
    stale: &mut usize,
) -> Option<(LeaseEnd, u64)> {
    let mut lease = LeaseClient::new(ch.clone());
    let give_up = tokio::time::Instant::now() + EXPIRY_WAIT;
    while tokio::time::Instant::now() < give_up && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let req = LeaseTimeToLiveRequest { id, keys: false };
        let Ok(r) = timed(Duration::from_secs(2), lease.lease_time_to_live(req)).await else {
            continue;
        };
        let r = r.into_inner();
        if r.ttl == -1 {
            if r.header.is_some_and(|h| h.revision >= written) {
                return Some((LeaseEnd::Expired, rec.now()));
            }
            *stale += 1;
        }
    }
    None
}

/// `f` within `t`, a timeout being an unavailable error.
pub(crate) async fn timed<T>(
    t: Duration,
    f: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(t, f)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("timed out")))
}
