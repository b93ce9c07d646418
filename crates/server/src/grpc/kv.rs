//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Writes go through the log (a follower forwards them to the leader);
//! linearizable reads wait for a ReadIndex barrier and are then served from
//! the local store; serializable reads are served locally at once (after
//! the client's minimum revision, if it sent one: `min_revision.rs`).

use std::sync::OnceLock;
use std::time::Instant;

use concord_mvcc::{Access, Command, Response as MvccResponse};
use concord_proto::etcdserverpb::kv_server::Kv;
use concord_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::{convert, min_revision, once};
use super::{current_header, header, State};
use crate::auth::denied;
use crate::envelope::Payload;
use crate::error::ServerError;
use crate::proposer::Outcome;

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    /// Shared server state.
    pub state: State,
}

/// Runs an MVCC command through the log and returns its response.
pub async fn write(state: &State, cmd: Command) -> Result<MvccResponse, Status> {
    super::quota::check(state, &cmd).await?;
    match state.propose(Payload::Mvcc(cmd)).await? {
        Outcome::Mvcc(r) => r.map_err(|e| ServerError::Mvcc(e).into()),
        Outcome::Done => Err(super::unexpected()),
    }
}

/// The KV service's methods: the metrics' labels, and what the fast path
/// (`unary.rs`) serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KvMethod {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl KvMethod {
    pub(crate) const ALL: [KvMethod; 5] = [
        KvMethod::Range,
        KvMethod::Put,
        KvMethod::DeleteRange,
        KvMethod::Txn,
        KvMethod::Compact,
    ];

    /// The method's name, as in its gRPC path.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KvMethod::Range => "Range",
            KvMethod::Put => "Put",
            KvMethod::DeleteRange => "DeleteRange",
            KvMethod::Txn => "Txn",
            KvMethod::Compact => "Compact",
        }
    }

    /// The method a gRPC path (`/etcdserverpb.KV/Put`) names.
    pub(crate) fn of_path(path: &str) -> Option<KvMethod> {
        let name = path.strip_prefix("/etcdserverpb.KV/")?;
        KvMethod::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A KV method's request counter and latency histogram, looked up in the
/// metrics registry once (the server installs the recorder before it
/// serves): a lookup per request, hashing the name and labels, was about 1%
/// of a member's CPU under load.
struct MethodMetrics {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

fn observe(method: KvMethod, started: Instant) {
    static HANDLES: OnceLock<Vec<MethodMetrics>> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        KvMethod::ALL
            .iter()
            .map(|m| MethodMetrics {
                requests: metrics::counter!("concord_grpc_requests_total", "method" => m.name()),
                duration: metrics::histogram!(
                    "concord_grpc_request_duration_seconds",
                    "method" => m.name()
                ),
            })
            .collect()
    });
    // ALL lists the variants in declaration order.
    let h = &handles[method as usize];
    h.requests.increment(1);
    h.duration.record(started.elapsed().as_secs_f64());
}

/// etcd's `--max-txn-ops` rule: the longest of the compare, success and
/// failure lists counts, and a nested txn gets what its parent leaves.
pub(crate) fn check_txn_ops(t: &TxnRequest, max: usize) -> Result<(), Status> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max {
        return Err(Status::invalid_argument(
            "etcdserver: too many operations in txn request",
        ));
    }
    for op in t.success.iter().chain(&t.failure) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            check_txn_ops(inner, max - ops)?;
        }
    }
    Ok(())
}

fn check_size(state: &State, n: usize) -> Result<(), Status> {
    if n > state.limits.max_request_bytes {
        return Err(ServerError::RequestTooLarge.into());
    }
    Ok(())
}

/// Serves a range (after the barrier, if linearizable).
pub async fn range(state: &State, r: RangeRequest) -> Result<RangeResponse, Status> {
    if r.key.is_empty() {
        return Err(ServerError::Mvcc(concord_mvcc::MvccError::EmptyKey).into());
    }
    if !r.serializable {
        state.read_barrier().await?;
    }
    if convert::is_backwards(&r.key, &r.range_end) {
        return Ok(RangeResponse {
            header: Some(current_header(state)),
            ..Default::default()
        });
    }
    let req = convert::range_request(r)?;
    let resp = read_range(state, &req).await?;
    Ok(convert::range_response(resp, header(state, 0)))
}

/// Keys of the index a range walks per hold of the store's lock: the
/// driver waits for that lock to apply, so a range over a million keys
/// must not hold it throughout.
pub const RANGE_STEP_KEYS: usize = 10_000;

/// Reads a range without holding the store's lock for long: the index in
/// steps of [`RANGE_STEP_KEYS`], then the values the backend holds with no
/// lock at all (on a blocking thread when there are any).
pub async fn read_range(
    state: &State,
    req: &concord_mvcc::RangeRequest,
) -> Result<concord_mvcc::RangeResponse, ServerError> {
    let (mut read, mut done) = {
        let store = state.store.read();
        let mut read = store.range_start(req)?;
        let done = store.range_step(&mut read, RANGE_STEP_KEYS)?;
        (read, done)
    };
    while !done {
        tokio::task::yield_now().await;
        done = state.store.read().range_step(&mut read, RANGE_STEP_KEYS)?;
    }
    if read.backend_reads() == 0 {
        return Ok(read.finish()?);
    }
    tokio::task::spawn_blocking(move || read.finish())
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(ServerError::Mvcc)
}

/// etcd's `isTxnSerializable`: every op of both branches is a
/// serializable range (vacuously true for a compare-only txn).
fn txn_is_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(
        |op| matches!(&op.request, Some(request_op::Request::RequestRange(r)) if r.serializable),
    )
}

/// Serves a txn without writes as etcd does: as a read (after the barrier
/// unless serializable), not through the log.
async fn read_txn(
    state: &State,
    t: &concord_mvcc::TxnRequest,
    serializable: bool,
) -> Result<MvccResponse, Status> {
    if !serializable {
        state.read_barrier().await?;
    }
    let resp = state.store.read().read_txn(t).map_err(ServerError::Mvcc)?;
    Ok(MvccResponse::Txn(resp))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let started = Instant::now();
        let caller = self.state.auth.caller(&req)?;
        let min = min_revision::min_revision(req.metadata())?;
        let r = req.into_inner();
        let user = caller.user();
        caller
            .view
            .check_range(user, &r.key, &r.range_end, Access::Read)
            .map_err(denied)?;
        if let (Some(rev), true) = (min, r.serializable) {
            min_revision::wait_applied(&self.state, rev).await?;
        }
        let r = range(&self.state, r).await;
        observe(KvMethod::Range, started);
        r.map(Response::new)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let started = Instant::now();
        let caller = self.state.auth.caller(&req)?;
        let id = once::request_id(req.metadata())?;
        let r = req.into_inner();
        check_size(&self.state, r.key.len() + r.value.len())?;
        let p = convert::put_request(r);
        caller.view.check_put(caller.user(), &p).map_err(denied)?;
        if p.lease != 0 && caller.view.enabled {
            // Attaching to a lease needs write on the keys already on it.
            let keys = self.state.store.read().lease_keys(p.lease);
            caller
                .view
                .check_keys_writable(caller.user(), &keys)
                .map_err(denied)?;
        }
        let cmd = once::tag(id, caller.checked(Command::Put(p)));
        let resp = write(&self.state, cmd).await;
        observe(KvMethod::Put, started);
        match resp? {
            MvccResponse::Put(p) => Ok(Response::new(convert::put_response(
                p,
                header(&self.state, 0),
            ))),
            _ => Err(super::unexpected()),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let started = Instant::now();
        let caller = self.state.auth.caller(&req)?;
        let id = once::request_id(req.metadata())?;
        let r = req.into_inner();
        check_size(&self.state, r.key.len() + r.range_end.len())?;
        if convert::is_backwards(&r.key, &r.range_end) {
            return Ok(Response::new(DeleteRangeResponse {
                header: Some(current_header(&self.state)),
                ..Default::default()
            }));
        }
        let d = convert::delete_request(r);
        caller
            .view
            .check_delete(caller.user(), &d)
            .map_err(denied)?;
        let cmd = once::tag(id, caller.checked(Command::DeleteRange(d)));
        let resp = write(&self.state, cmd).await;
        observe(KvMethod::DeleteRange, started);
        match resp? {
            MvccResponse::DeleteRange(d) => Ok(Response::new(convert::delete_response(
                d,
                header(&self.state, 0),
            ))),
            _ => Err(super::unexpected()),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let started = Instant::now();
        let caller = self.state.auth.caller(&req)?;
        let id = once::request_id(req.metadata())?;
        let min = min_revision::min_revision(req.metadata())?;
        let r = req.into_inner();
        check_size(&self.state, prost::Message::encoded_len(&r))?;
        check_txn_ops(&r, self.state.limits.max_txn_ops)?;
        let serializable = txn_is_serializable(&r);
        let t = convert::txn_request(r)?;
        caller.view.check_txn(caller.user(), &t).map_err(denied)?;
        if let (Some(rev), true) = (min, serializable && t.is_read_only()) {
            min_revision::wait_applied(&self.state, rev).await?;
        }
        let resp = if t.is_read_only() {
            read_txn(&self.state, &t, serializable).await
        } else {
            write(&self.state, once::tag(id, caller.checked(Command::Txn(t)))).await
        };
        observe(KvMethod::Txn, started);
        match resp? {
            MvccResponse::Txn(t) => Ok(Response::new(convert::txn_response(
                t,
                header(&self.state, 0),
            ))),
            _ => Err(super::unexpected()),
        }
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let started = Instant::now();
        let caller = self.state.auth.caller(&req)?;
        caller.check_admin()?;
        let r = req.into_inner();
        let cmd = Command::Compact {
            revision: r.revision,
        };
        let resp = write(&self.state, caller.checked(cmd)).await;
        observe(KvMethod::Compact, started);
        match resp? {
            MvccResponse::Compact { revision } => Ok(Response::new(CompactionResponse {
                header: Some(header(&self.state, revision)),
            })),
            _ => Err(super::unexpected()),
        }
    }
}
