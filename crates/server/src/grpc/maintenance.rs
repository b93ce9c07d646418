//! The Maintenance service: Status, Alarm, Hash, HashKV, Snapshot,
//! Defragment, MoveLeader.

use std::pin::Pin;

use concord_proto::etcdserverpb::alarm_request::AlarmAction;
use concord_proto::etcdserverpb::maintenance_server::Maintenance;
use concord_proto::etcdserverpb::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{count, current_header, State};
use crate::envelope::{Payload, ServerOp};
use crate::error::ServerError;

/// The version reported by Status (the etcd API level Concord serves).
pub const SERVER_VERSION: &str = "3.5.0";
/// Bytes per Snapshot stream message.
pub const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// The Maintenance service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    /// Shared server state.
    pub state: State,
}

/// Size of the backend file.
pub fn db_size(state: &State) -> i64 {
    state.data_dir().backend_size() as i64
}

/// Refreshes the backend size the per-request quota check reads, and
/// raises NOSPACE through the log when the backend outgrows the quota.
pub async fn check_quota(state: &State) {
    let size = db_size(state).max(0) as u64;
    state.set_backend_size(size);
    if state.limits.quota_backend_bytes > 0 && size >= state.limits.quota_backend_bytes {
        super::quota::raise_no_space(state).await;
    }
}

/// Revisions hashed per hold of the store's lock.
const HASH_STEP: usize = 8192;

/// HashKV at `rev` (0: current) without holding the store's lock for long:
/// the history in steps, the values read from the backend with no lock.
pub async fn hash_history(state: &State, rev: i64) -> Result<concord_mvcc::HashKv, ServerError> {
    let mut read = state.store.read().history_read(rev)?;
    let mut hasher = concord_mvcc::KvHasher::new(read.compact_revision);
    loop {
        let items = state.store.read().history_step(&mut read, HASH_STEP)?;
        if items.is_empty() {
            break;
        }
        let (r, h) = tokio::task::spawn_blocking(move || {
            let visited = read.visit(&items, |it, v| {
                hasher.add_with_value(it.revision, &it.record, v);
                Ok(())
            });
            (visited.map(|()| read), hasher)
        })
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
        read = r?;
        hasher = h;
    }
    Ok(concord_mvcc::HashKv {
        hash: hasher.finish(),
        revision: read.revision,
        compact_revision: read.compact_revision,
    })
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        count("Alarm");
        let caller = self.state.auth.caller(&req)?;
        let r = req.into_inner();
        let action = AlarmAction::try_from(r.action)
            .map_err(|_| Status::invalid_argument("etcdserver: invalid alarm action"))?;
        if action != AlarmAction::Get {
            // Raising or clearing an alarm is an admin's; listing is anyone's.
            caller.check_admin()?;
            let activate = action == AlarmAction::Activate;
            let op = ServerOp::Alarm {
                activate,
                member: r.member_id,
                alarm: r.alarm,
            };
            self.state.propose(Payload::Server(op)).await?;
        }
        let alarms = self
            .state
            .members
            .read()
            .alarms
            .iter()
            .filter(|(m, a)| {
                action == AlarmAction::Get
                    || (r.member_id == 0 || *m == r.member_id) && (r.alarm == 0 || *a == r.alarm)
            })
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect();
        Ok(Response::new(AlarmResponse {
            header: Some(current_header(&self.state)),
            alarms,
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        count("Status");
        let st = self.state.raft_status();
        let size = db_size(&self.state);
        let errors = self
            .state
            .members
            .read()
            .alarms
            .iter()
            .map(|(m, a)| format!("memberID:{m} alarm:{} ", alarm_name(*a)))
            .collect();
        Ok(Response::new(StatusResponse {
            header: Some(current_header(&self.state)),
            version: SERVER_VERSION.into(),
            db_size: size,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            errors,
            db_size_in_use: size,
            is_learner: st.is_learner,
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        count("Defragment");
        self.state.auth.caller(&req)?.check_admin()?;
        // Like etcd's, a defragment holds the backend (writes wait) while
        // it moves live pages down and truncates the file.
        let state = self.state.clone();
        let path = state.data_dir().backend();
        let (before, after) =
            tokio::task::spawn_blocking(move || state.store.write().defragment(&path))
                .await
                .map_err(|e| ServerError::Internal(e.to_string()))?
                .map_err(ServerError::Mvcc)?;
        self.state.set_backend_size(after);
        tracing::info!(before, after, "defragmented the backend");
        Ok(Response::new(DefragmentResponse {
            header: Some(current_header(&self.state)),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        count("Hash");
        self.state.auth.caller(&req)?.check_admin()?;
        let h = hash_history(&self.state, 0).await?;
        Ok(Response::new(HashResponse {
            header: Some(current_header(&self.state)),
            hash: h.hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        count("HashKV");
        self.state.auth.caller(&req)?.check_admin()?;
        let rev = req.into_inner().revision;
        let h = hash_history(&self.state, rev).await?;
        Ok(Response::new(HashKvResponse {
            header: Some(current_header(&self.state)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        count("Snapshot");
        self.state.auth.caller(&req)?.check_admin()?;
        let mut snap = crate::snapshot::bolt::build(&self.state).await?;
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // Read and sent chunk by chunk (the client's pace sets the reads);
        // the file goes when the stream ends or the client leaves.
        tokio::task::spawn_blocking(move || loop {
            let item = match snap.read_chunk(SNAPSHOT_CHUNK) {
                Ok(c) if c.is_empty() => return,
                Ok(c) => Ok(SnapshotResponse {
                    header: Some(current_header(&state)),
                    remaining_bytes: snap.remaining(),
                    blob: bytes::Bytes::from(c),
                    version: String::new(),
                }),
                Err(e) => Err(Status::internal(format!("reading the snapshot: {e}"))),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        count("MoveLeader");
        self.state.auth.caller(&req)?.check_admin()?;
        let target = req.into_inner().target_id;
        if !self.state.is_leader() {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        match self.state.members.read().members.get(&target) {
            None => return Err(ServerError::MemberNotFound.into()),
            Some(m) if m.is_learner => {
                return Err(Status::failed_precondition(
                    "etcdserver: can not transfer leadership to a learner",
                ))
            }
            Some(_) => {}
        }
        self.state.transfer_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(current_header(&self.state)),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("concord: downgrade is not supported"))
    }
}

fn alarm_name(a: i32) -> &'static str {
    match AlarmType::try_from(a) {
        Ok(AlarmType::Nospace) => "NOSPACE",
        Ok(AlarmType::Corrupt) => "CORRUPT",
        _ => "NONE",
    }
}
