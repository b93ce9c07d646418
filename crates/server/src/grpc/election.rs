//! The Election service (`v3electionpb`), built like etcd's on the lock
//! recipe: a candidate's key is `name/<lease id in hex>` holding its
//! proposal; the leader is the key with the lowest create revision.

use std::pin::Pin;

use bytes::Bytes;
use concord_mvcc::{
    Access, Command, PutRequest, RangeRequest, RequestOp, Response as MvccResponse, SortOrder,
    SortTarget, TxnRequest,
};
use concord_proto::v3electionpb::election_server::Election;
use concord_proto::v3electionpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::kv::write;
use super::lock::{
    create_key, created_at, lease_alive, lease_key, name_prefix, prefix_end, require_lease,
    wait_for_turn,
};
use super::{convert, count, current_header, header, State};
use crate::error::ServerError;
use crate::watch::WatchSpec;

/// The Election service.
#[derive(Debug, Clone)]
pub struct ElectionService {
    /// Shared server state.
    pub state: State,
}

fn not_leader() -> Status {
    Status::failed_precondition("election: not leader")
}

/// The current leader's key-value under `name`.
fn leader_kv(state: &State, name: &[u8]) -> Result<Option<concord_mvcc::KeyValue>, Status> {
    let prefix = name_prefix(name);
    let r = state
        .store
        .read()
        .range(&RangeRequest {
            key: prefix.clone(),
            range_end: prefix_end(&prefix),
            limit: 1,
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Create,
            ..Default::default()
        })
        .map_err(ServerError::Mvcc)?;
    Ok(r.kvs.into_iter().next())
}

/// Puts `value` on `leader.key` if it is still the same key (same create revision).
async fn guarded_put(state: &State, leader: &LeaderKey, value: Bytes) -> Result<i64, Status> {
    let txn = TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![RequestOp::Put(PutRequest {
            key: leader.key.clone(),
            value,
            lease: leader.lease,
            ..Default::default()
        })],
        failure: vec![],
    };
    match write(state, Command::Txn(txn)).await? {
        MvccResponse::Txn(t) if t.succeeded => Ok(t.revision),
        MvccResponse::Txn(_) => Err(not_leader()),
        _ => Err(super::unexpected()),
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        count("Campaign");
        let caller = self.state.auth.caller(&req)?;
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("election: name is not provided"));
        }
        caller.check_prefix(&name_prefix(&r.name))?;
        require_lease(&self.state, r.lease).await?;
        let prefix = name_prefix(&r.name);
        let key = lease_key(&prefix, r.lease);
        let (create_rev, _) = create_key(&self.state, &key, &r.value, r.lease).await?;
        let leader = LeaderKey {
            name: r.name.clone(),
            key: key.clone(),
            rev: create_rev,
            lease: r.lease,
        };
        // Campaigning again with the same lease updates the proposal.
        guarded_put(&self.state, &leader, r.value.clone()).await?;
        wait_for_turn(&self.state, &prefix, create_rev).await?;
        if !lease_alive(&self.state, r.lease) {
            return Err(ServerError::Mvcc(concord_mvcc::MvccError::LeaseNotFound).into());
        }
        Ok(Response::new(CampaignResponse {
            header: Some(current_header(&self.state)),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        count("Proclaim");
        let caller = self.state.auth.caller(&req)?;
        let r = req.into_inner();
        let leader = r.leader.ok_or_else(not_leader)?;
        caller.check_range(&leader.key, &Bytes::new(), Access::Write)?;
        let rev = guarded_put(&self.state, &leader, r.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: Some(header(&self.state, rev)),
        }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        count("Leader");
        let caller = self.state.auth.caller(&req)?;
        let name = req.into_inner().name;
        let prefix = name_prefix(&name);
        caller.check_range(&prefix, &prefix_end(&prefix), Access::Read)?;
        self.state.read_barrier().await?;
        match leader_kv(&self.state, &name)? {
            Some(kv) => Ok(Response::new(LeaderResponse {
                header: Some(current_header(&self.state)),
                kv: Some(convert::kv(kv)),
            })),
            None => Err(Status::not_found("election: no leader")),
        }
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<ObserveStream>, Status> {
        count("Observe");
        let caller = self.state.auth.caller(&req)?;
        let name = req.into_inner().name;
        let prefix = name_prefix(&name);
        caller.check_range(&prefix, &prefix_end(&prefix), Access::Read)?;
        let state = self.state.clone();
        let (out, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let prefix = name_prefix(&name);
            let (tx, mut events) = mpsc::channel(64);
            let spec = WatchSpec {
                key: prefix.clone(),
                range_end: prefix_end(&prefix),
                no_put: false,
                no_delete: false,
                prev_kv: false,
            };
            let id = {
                let store = state.store.read();
                state.watch.add(spec, 0, 0, tx, &store)
            };
            let mut last: Option<concord_mvcc::KeyValue> = None;
            loop {
                let current = match leader_kv(&state, &name) {
                    Ok(kv) => kv,
                    Err(_) => break,
                };
                if current.is_some() && current != last {
                    let resp = LeaderResponse {
                        header: Some(current_header(&state)),
                        kv: current.clone().map(convert::kv),
                    };
                    if out.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    last = current;
                }
                tokio::select! {
                    e = events.recv() => if e.is_none() { break },
                    _ = out.closed() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                        if state.watch.is_lagging(id) {
                            let store = state.store.read();
                            state.watch.catch_up(id, &store);
                        }
                    }
                }
            }
            state.watch.remove(id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        count("Resign");
        let caller = self.state.auth.caller(&req)?;
        let leader = req.into_inner().leader.ok_or_else(not_leader)?;
        caller.check_range(&leader.key, &Bytes::new(), Access::Write)?;
        let txn = TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![RequestOp::DeleteRange(concord_mvcc::DeleteRangeRequest {
                key: leader.key.clone(),
                ..Default::default()
            })],
            failure: vec![],
        };
        match write(&self.state, Command::Txn(txn)).await? {
            MvccResponse::Txn(t) => Ok(Response::new(ResignResponse {
                header: Some(header(&self.state, t.revision)),
            })),
            _ => Err(super::unexpected()),
        }
    }
}
