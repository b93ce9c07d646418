//! The `lease-keepalive` workload: grant `leases` leases (TTL 60), then each
//! client sends keepalives on its own keepalive stream, one at a time, and
//! measures the round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::Channel;
use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::Status;

use crate::control::{Control, Stats};
use crate::progress::Progress;
use crate::{Args, BenchError, Report};

/// TTL of the granted leases, in seconds.
const TTL: i64 = 60;
/// Concurrent grant/revoke tasks (setup and cleanup are not measured).
const SETUP_TASKS: usize = 16;

/// Runs the lease keepalive workload.
pub(crate) async fn run(
    args: &Args,
    channels: &[Channel],
    leases: usize,
) -> Result<Report, BenchError> {
    let timeout = args.request_timeout();
    let ids = Arc::new(grant(channels, leases, timeout).await?);

    // Open every client's stream first (with one unmeasured keepalive).
    let mut opening = JoinSet::new();
    for i in 0..args.clients {
        let mut lease = channels[i % channels.len()].lease();
        let id = ids[i % ids.len()];
        let ids = ids.clone();
        opening.spawn(async move {
            let stream = match tokio::time::timeout(timeout, open(&mut lease, id)).await {
                Ok(Ok((s, _))) => s,
                Ok(Err(e)) => return Err(BenchError::from(e)),
                Err(_) => return Err(BenchError::new("opening a keepalive stream timed out")),
            };
            Ok(Client {
                i,
                lease,
                stream: Some(stream),
                ids,
                timeout,
            })
        });
    }
    let mut clients = Vec::with_capacity(args.clients);
    while let Some(r) = opening.join_next().await {
        clients.push(r.map_err(|e| BenchError(format!("keepalive task: {e}")))??);
    }

    let ctl = Arc::new(Control::new(args.total, args.duration()));
    let c = ctl.clone();
    let progress = Progress::start(
        !args.no_progress,
        "lease-keepalive",
        ctl.total(),
        move || c.done(),
    );
    let start = Instant::now();
    let mut set = JoinSet::new();
    for client in clients {
        set.spawn(client.run(ctl.clone(), args.clients));
    }
    let mut stats = Stats::default();
    while let Some(r) = set.join_next().await {
        stats.merge(&r.map_err(|e| BenchError(format!("keepalive task: {e}")))?);
    }
    let elapsed = start.elapsed();
    progress.finish();
    revoke(channels, &ids, timeout).await;
    Ok(Report::new(args, args.clients, &stats, elapsed))
}

/// A keepalive stream: the request sender (kept open) and the responses.
type KeepAlive = (
    mpsc::Sender<LeaseKeepAliveRequest>,
    Streaming<LeaseKeepAliveResponse>,
);

/// Opens a keepalive stream by sending a keepalive for `id` (servers send
/// the response headers with the first response, so the request goes first).
async fn open(
    lease: &mut LeaseClient<Channel>,
    id: i64,
) -> Result<(KeepAlive, LeaseKeepAliveResponse), Status> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| Status::internal("keepalive request channel closed"))?;
    let mut responses = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = responses.message().await?.ok_or_else(stream_ended)?;
    Ok(((tx, responses), first))
}

fn stream_ended() -> Status {
    Status::unavailable("keepalive stream ended")
}

/// One keepalive round trip on an open stream.
async fn round_trip(s: &mut KeepAlive, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    s.0.send(LeaseKeepAliveRequest { id })
        .await
        .map_err(|_| stream_ended())?;
    s.1.message().await?.ok_or_else(stream_ended)
}

struct Client {
    i: usize,
    lease: LeaseClient<Channel>,
    stream: Option<KeepAlive>,
    ids: Arc<Vec<i64>>,
    timeout: Duration,
}

impl Client {
    /// Keeps leases `i, i + clients, ...` (mod the lease count) alive, back
    /// to back; a failed stream is reopened (the reopening is measured).
    async fn run(mut self, ctl: Arc<Control>, clients: usize) -> Stats {
        let mut stats = Stats::default();
        let mut k = self.i;
        while ctl.next() {
            let id = self.ids[k % self.ids.len()];
            k = k.wrapping_add(clients);
            let start = Instant::now();
            let result = tokio::time::timeout(self.timeout, async {
                match self.stream.as_mut() {
                    Some(s) => round_trip(s, id).await,
                    None => {
                        let (s, resp) = open(&mut self.lease, id).await?;
                        self.stream = Some(s);
                        Ok(resp)
                    }
                }
            })
            .await;
            match result {
                Ok(Ok(resp)) if resp.ttl > 0 => stats.ok(start.elapsed()),
                Ok(Ok(_)) => stats.error("LeaseNotFound"),
                Ok(Err(s)) => {
                    stats.status(&s);
                    self.stream = None;
                }
                Err(_) => {
                    stats.error("Timeout");
                    self.stream = None;
                }
            }
            ctl.finish_one();
        }
        stats
    }
}

/// Grants `n` leases (TTL [`TTL`]).
async fn grant(channels: &[Channel], n: usize, timeout: Duration) -> Result<Vec<i64>, BenchError> {
    let tasks = SETUP_TASKS.min(n);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let mut lease = channels[t % channels.len()].lease();
        let count = (t..n).step_by(tasks).count();
        set.spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let req = LeaseGrantRequest { ttl: TTL, id: 0 };
                let resp = tokio::time::timeout(timeout, lease.lease_grant(req))
                    .await
                    .map_err(|_| BenchError::new("lease grant timed out"))??
                    .into_inner();
                if !resp.error.is_empty() {
                    return Err(BenchError(format!("lease grant: {}", resp.error)));
                }
                ids.push(resp.id);
            }
            Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        ids.extend(r.map_err(|e| BenchError(format!("grant task: {e}")))??);
    }
    Ok(ids)
}

/// Revokes the leases, best effort (errors are ignored).
async fn revoke(channels: &[Channel], ids: &[i64], timeout: Duration) {
    let mut set = JoinSet::new();
    for (t, chunk) in ids
        .chunks(ids.len().div_ceil(SETUP_TASKS).max(1))
        .enumerate()
    {
        let mut lease = channels[t % channels.len()].lease();
        let chunk = chunk.to_vec();
        set.spawn(async move {
            for id in chunk {
                let _ =
                    tokio::time::timeout(timeout, lease.lease_revoke(LeaseRevokeRequest { id }))
                        .await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}
