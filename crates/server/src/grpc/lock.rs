//! The Lock service (`v3lockpb`), built on KV, leases and watches as
//! etcd's is: the lock key is `name/<lease id in hex>`, created with the
//! caller's lease; the holder is the key with the lowest create revision
//! under `name/`; a waiter watches only the key just before its own (no
//! herd), and re-checks its lease once it gets the lock. The key's create
//! revision is the fencing token.

use bytes::Bytes;
use concord_mvcc::{
    Access, Command, Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp,
    Response as MvccResponse, ResponseOp, SortOrder, SortTarget, TxnRequest,
};
use concord_proto::v3lockpb::lock_server::Lock;
use concord_proto::v3lockpb::*;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::kv::write;
use super::{count, header, State};
use crate::error::ServerError;
use crate::watch::{Delivery, WatchSpec};

/// The Lock service.
#[derive(Debug, Clone)]
pub struct LockService {
    /// Shared server state.
    pub state: State,
}

pub use crate::auth::prefix_end;

/// `name/`: the prefix under which holders of a lock (or candidates of an
/// election) queue.
pub fn name_prefix(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    Bytes::from(p)
}

/// `prefix` followed by the lease id in hex: the key of a lock holder or
/// election candidate, as etcd names it.
pub fn lease_key(prefix: &[u8], lease: i64) -> Bytes {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    Bytes::from(key)
}

/// "`key` was created at revision `rev`" (0: "`key` does not exist").
pub fn created_at(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(rev),
        key: key.clone(),
        range_end: Bytes::new(),
    }
}

/// Creates `key` with `lease` (and `value`) unless it exists; returns its
/// create revision and the header revision.
pub async fn create_key(
    state: &State,
    key: &Bytes,
    value: &Bytes,
    lease: i64,
) -> Result<(i64, i64), Status> {
    let txn = TxnRequest {
        compare: vec![created_at(key, 0)],
        success: vec![RequestOp::Put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            lease,
            ..Default::default()
        })],
        failure: vec![RequestOp::Range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })],
    };
    match write(state, Command::Txn(txn)).await? {
        MvccResponse::Txn(t) if t.succeeded => Ok((t.revision, t.revision)),
        MvccResponse::Txn(t) => match t.responses.first() {
            Some(ResponseOp::Range(r)) if !r.kvs.is_empty() => {
                Ok((r.kvs[0].create_revision, t.revision))
            }
            _ => Err(Status::internal("etcdserver: lock key vanished")),
        },
        _ => Err(super::unexpected()),
    }
}

/// Waits until no key under `prefix` was created before `my_rev`. Each
/// round watches only the newest older key for its deletion.
pub async fn wait_for_turn(state: &State, prefix: &Bytes, my_rev: i64) -> Result<(), Status> {
    loop {
        state.read_barrier().await?;
        let (prev, rev) = {
            let store = state.store.read();
            let r = store
                .range(&RangeRequest {
                    key: prefix.clone(),
                    range_end: prefix_end(prefix),
                    limit: 1,
                    sort_order: SortOrder::Descend,
                    sort_target: SortTarget::Create,
                    max_create_revision: my_rev - 1,
                    ..Default::default()
                })
                .map_err(ServerError::Mvcc)?;
            (r.kvs.into_iter().next(), store.current_revision())
        };
        // `max_create_revision: 0` means "no bound" (possible only if `my_rev`
        // were 1, which no write gets): only a key created before ours counts.
        let Some(prev) = prev.filter(|kv| kv.create_revision < my_rev) else {
            return Ok(());
        };
        wait_deleted(state, &prev.key, rev + 1).await?;
    }
}

/// Waits for a delete of `key` at or after `start_rev`.
pub async fn wait_deleted(state: &State, key: &Bytes, start_rev: i64) -> Result<(), Status> {
    let (tx, mut rx) = mpsc::channel::<Delivery>(16);
    let spec = WatchSpec {
        key: key.clone(),
        range_end: Bytes::new(),
        no_put: true,
        no_delete: false,
        prev_kv: false,
    };
    let id = {
        let store = state.store.read();
        state.watch.add(spec, 0, start_rev, tx, &store)
    };
    let _guard = HubGuard(state.clone(), id);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tokio::select! {
            d = rx.recv() => match d {
                Some(d) if !d.events.is_empty() => return Ok(()),
                Some(_) => {}
                None => return Err(ServerError::Stopped.into()),
            },
            _ = tick.tick() => {
                let r = {
                    let store = state.store.read();
                    state.watch.catch_up(id, &store)
                };
                if let crate::watch::CatchUp::Compacted(_) = r {
                    return Ok(()); // re-check from the current state
                }
            }
        }
    }
}

struct HubGuard(State, u64);

impl Drop for HubGuard {
    fn drop(&mut self) {
        self.0.watch.remove(self.1);
    }
}

/// Deletes a key if the request that created it is abandoned.
struct DeleteOnDrop {
    state: Option<State>,
    key: Bytes,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let key = self.key.clone();
            tokio::spawn(async move {
                let _ = delete_key(&state, key).await;
            });
        }
    }
}

async fn delete_key(state: &State, key: Bytes) -> Result<i64, Status> {
    let cmd = Command::DeleteRange(concord_mvcc::DeleteRangeRequest {
        key,
        ..Default::default()
    });
    match write(state, cmd).await? {
        MvccResponse::DeleteRange(d) => Ok(d.revision),
        _ => Err(super::unexpected()),
    }
}

/// Checks that a lease still exists.
pub fn lease_alive(state: &State, lease: i64) -> bool {
    state.store.read().leases().iter().any(|l| l.id == lease)
}

/// A linearizable lease check before Lock or Campaign writes anything: a
/// member that has not yet applied a grant the client saw acknowledged
/// (through another member) must not answer "lease not found". The read
/// barrier brings this member up to the cluster's commit index first.
pub async fn require_lease(state: &State, lease: i64) -> Result<(), Status> {
    state.read_barrier().await?;
    if lease_alive(state, lease) {
        Ok(())
    } else {
        Err(ServerError::Mvcc(concord_mvcc::MvccError::LeaseNotFound).into())
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        count("Lock");
        let caller = self.state.auth.caller(&req)?;
        let r = req.into_inner();
        if r.name.is_empty() {
            return Err(Status::invalid_argument("etcdserver: key is not provided"));
        }
        caller.check_prefix(&name_prefix(&r.name))?;
        require_lease(&self.state, r.lease).await?;
        let prefix = name_prefix(&r.name);
        let key = lease_key(&prefix, r.lease);
        let (my_rev, _) = create_key(&self.state, &key, &Bytes::new(), r.lease).await?;
        let mut guard = DeleteOnDrop {
            state: Some(self.state.clone()),
            key: key.clone(),
        };
        wait_for_turn(&self.state, &prefix, my_rev).await?;
        if !lease_alive(&self.state, r.lease) {
            return Err(ServerError::Mvcc(concord_mvcc::MvccError::LeaseNotFound).into());
        }
        guard.state = None;
        let rev = self.state.store.read().current_revision();
        Ok(Response::new(LockResponse {
            header: Some(header(&self.state, rev)),
            key,
        }))
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        count("Unlock");
        let caller = self.state.auth.caller(&req)?;
        let key = req.into_inner().key;
        caller.check_range(&key, &Bytes::new(), Access::Write)?;
        let rev = delete_key(&self.state, key).await?;
        Ok(Response::new(UnlockResponse {
            header: Some(header(&self.state, rev)),
        }))
    }
}
