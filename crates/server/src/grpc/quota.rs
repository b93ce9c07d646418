//! The backend quota (`--quota-backend-bytes`), checked per request as
//! etcd checks it, and the NOSPACE alarm's exceptions.
//!
//! A request's cost is etcd's estimate of what it adds to the backend: a
//! put 256 bytes plus its key and value, a txn its larger branch's puts
//! (nested txns included), a lease grant 64; deletes, compactions and
//! revocations cost nothing. A request that costs something is refused
//! with `etcdserver: mvcc: database space exceeded` while NOSPACE is
//! raised, or when it would take the backend to the quota, which raises
//! NOSPACE. What costs nothing is always allowed, so that an operator can
//! free space (delete, compact, revoke leases, defragment, then disarm).

use concord_mvcc::{Command, RequestOp, TxnRequest};
use concord_proto::etcdserverpb::AlarmType;

use super::State;
use crate::envelope::{Payload, ServerOp};
use crate::error::ServerError;

const KV_OVERHEAD: u64 = 256;
const LEASE_OVERHEAD: u64 = 64;

/// What `cmd` would add to the backend, as etcd estimates it.
pub fn cost(cmd: &Command) -> u64 {
    match cmd {
        Command::Put(p) => KV_OVERHEAD + (p.key.len() + p.value.len()) as u64,
        Command::Txn(t) => txn_cost(t),
        Command::LeaseGrant { .. } => LEASE_OVERHEAD,
        Command::Once { command, .. } => cost(command),
        _ => 0,
    }
}

fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(p) => KV_OVERHEAD + (p.key.len() + p.value.len()) as u64,
                RequestOp::Txn(inner) => txn_cost(inner),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// Refuses `cmd` if it costs space while NOSPACE is raised or the quota
/// is reached (raising NOSPACE then, as etcd does).
pub async fn check(state: &State, cmd: &Command) -> Result<(), ServerError> {
    let cost = cost(cmd);
    if cost == 0 {
        return Ok(());
    }
    if state.no_space() {
        return Err(ServerError::NoSpace);
    }
    let quota = state.limits.quota_backend_bytes;
    if quota > 0 && state.backend_size() + cost >= quota {
        raise_no_space(state).await;
        return Err(ServerError::NoSpace);
    }
    Ok(())
}

/// Proposes this member's NOSPACE alarm (once it is applied, every member
/// refuses writes that cost space).
pub async fn raise_no_space(state: &State) {
    if state.no_space() {
        return;
    }
    tracing::warn!(
        size = state.backend_size(),
        quota = state.limits.quota_backend_bytes,
        "backend at --quota-backend-bytes; raising NOSPACE"
    );
    let op = ServerOp::Alarm {
        activate: true,
        member: state.me.id,
        alarm: AlarmType::Nospace as i32,
    };
    let _ = state.propose(Payload::Server(op)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord_mvcc::{DeleteRangeRequest, PutRequest};

    fn put(k: &str, v: usize) -> PutRequest {
        PutRequest {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(vec![0; v]),
            ..Default::default()
        }
    }

    #[test]
    fn costs_follow_etcds_estimate() {
        assert_eq!(cost(&Command::Put(put("ab", 10))), 268);
        let delete = RequestOp::DeleteRange(DeleteRangeRequest::default());
        let inner = TxnRequest {
            success: vec![RequestOp::Put(put("x", 100))],
            ..Default::default()
        };
        let t = TxnRequest {
            compare: vec![],
            success: vec![RequestOp::Put(put("a", 1)), delete.clone()],
            failure: vec![RequestOp::Txn(inner), RequestOp::Put(put("b", 1))],
        };
        // The larger branch: failure (357 + 258) over success (258).
        assert_eq!(cost(&Command::Txn(t)), 357 + 258);
        let deletes_only = TxnRequest {
            success: vec![delete],
            ..Default::default()
        };
        assert_eq!(cost(&Command::Txn(deletes_only)), 0);
        assert_eq!(
            cost(&Command::LeaseGrant {
                id: 0,
                ttl: 5,
                now_ms: 0
            }),
            64
        );
        assert_eq!(cost(&Command::LeaseRevoke { id: 1 }), 0);
        assert_eq!(cost(&Command::Compact { revision: 3 }), 0);
    }
}
