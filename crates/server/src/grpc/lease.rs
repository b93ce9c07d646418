//! The Lease service. Grants and revocations go through the log; lease
//! clocks run on the leader only, so a keep-alive or a time-to-live query
//! that reaches a follower is forwarded to the leader's client URL.

use std::pin::Pin;

use concord_mvcc::{Command, Response as MvccResponse};
use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::lease_server::Lease;
use concord_proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::forward::leader_channel;
use super::kv::write;
use super::{count, current_header, header, State};
use crate::error::ServerError;

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    /// Shared server state.
    pub state: State,
    /// Smallest TTL granted (etcd: 1.5 election timeouts), in seconds.
    pub min_ttl: i64,
}

fn keep_alive_local(state: &State, id: i64) -> LeaseKeepAliveResponse {
    let now = state.now_ms();
    // etcd answers a keep-alive of an unknown lease with TTL 0.
    let ttl = state.store.write().lease_renew(id, now).unwrap_or(0);
    LeaseKeepAliveResponse {
        header: Some(current_header(state)),
        id,
        ttl,
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

struct Forward {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

async fn forward_keep_alive(
    state: &State,
    fwd: &mut Option<Forward>,
    req: LeaseKeepAliveRequest,
) -> Result<LeaseKeepAliveResponse, Status> {
    if fwd.is_none() {
        let ch = leader_channel(state).await?;
        let (tx, rx) = mpsc::channel(16);
        let resp = LeaseClient::new(ch)
            .lease_keep_alive(ReceiverStream::new(rx))
            .await?;
        *fwd = Some(Forward {
            tx,
            rx: resp.into_inner(),
        });
    }
    let f = fwd.as_mut().expect("just set");
    if f.tx.send(req).await.is_err() {
        *fwd = None;
        return Err(ServerError::LeaderChanged.into());
    }
    match f.rx.next().await {
        Some(Ok(r)) => Ok(r),
        _ => {
            *fwd = None;
            Err(ServerError::LeaderChanged.into())
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        count("LeaseGrant");
        // Any caller may grant (as in etcd), but a token must be live.
        self.state.auth.caller(&req)?;
        let r = req.into_inner();
        let ttl = r.ttl.max(self.min_ttl);
        let cmd = Command::LeaseGrant {
            id: r.id,
            ttl,
            now_ms: self.state.now_ms(),
        };
        match write(&self.state, cmd).await? {
            MvccResponse::LeaseGrant { id, ttl, revision } => {
                Ok(Response::new(LeaseGrantResponse {
                    header: Some(header(&self.state, revision)),
                    id,
                    ttl,
                    error: String::new(),
                }))
            }
            _ => Err(super::unexpected()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        count("LeaseRevoke");
        let caller = self.state.auth.caller(&req)?;
        let id = req.into_inner().id;
        if caller.view.enabled {
            // Revoking deletes the lease's keys: write on each, as etcd checks.
            let keys = self.state.store.read().lease_keys(id);
            caller
                .view
                .check_keys_writable(caller.user(), &keys)
                .map_err(crate::auth::denied)?;
        }
        let cmd = caller.checked(Command::LeaseRevoke { id });
        match write(&self.state, cmd).await? {
            MvccResponse::LeaseRevoke { revision } => Ok(Response::new(LeaseRevokeResponse {
                header: Some(header(&self.state, revision)),
            })),
            _ => Err(super::unexpected()),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        count("LeaseKeepAlive");
        let mut input = req.into_inner();
        let state = self.state.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut fwd: Option<Forward> = None;
            while let Some(Ok(r)) = input.next().await {
                let resp = if state.is_leader() {
                    fwd = None;
                    Ok(keep_alive_local(&state, r.id))
                } else {
                    forward_keep_alive(&state, &mut fwd, r).await
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        count("LeaseTimeToLive");
        let r = req.into_inner();
        if !self.state.is_leader() {
            let ch = leader_channel(&self.state).await?;
            return LeaseClient::new(ch).lease_time_to_live(r).await;
        }
        let now = self.state.now_ms();
        let t = self
            .state
            .store
            .read()
            .lease_time_to_live(r.id, now, r.keys);
        match t {
            Ok(t) => Ok(Response::new(LeaseTimeToLiveResponse {
                header: Some(current_header(&self.state)),
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys: t.keys,
            })),
            // etcd answers an unknown lease with TTL -1.
            Err(concord_mvcc::MvccError::LeaseNotFound) => {
                Ok(Response::new(LeaseTimeToLiveResponse {
                    header: Some(current_header(&self.state)),
                    id: r.id,
                    ttl: -1,
                    ..Default::default()
                }))
            }
            Err(e) => Err(ServerError::Mvcc(e).into()),
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        count("LeaseLeases");
        let leases = self
            .state
            .store
            .read()
            .leases()
            .into_iter()
            .map(|l| LeaseStatus { id: l.id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(current_header(&self.state)),
            leases,
        }))
    }
}
