//! A small builder for transactions: compares, then ops on success and
//! on failure.

use bytes::Bytes;
use concord_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use concord_proto::etcdserverpb::request_op::Request;
use concord_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};

use crate::GetOptions;

/// How a compare compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl Cmp {
    fn result(self) -> CompareResult {
        match self {
            Cmp::Equal => CompareResult::Equal,
            Cmp::NotEqual => CompareResult::NotEqual,
            Cmp::Greater => CompareResult::Greater,
            Cmp::Less => CompareResult::Less,
        }
    }
}

fn compare(key: &[u8], cmp: Cmp, target: CompareTarget, value: TargetUnion) -> Compare {
    Compare {
        result: cmp.result() as i32,
        target: target as i32,
        key: Bytes::copy_from_slice(key),
        target_union: Some(value),
        range_end: Bytes::new(),
    }
}

/// Compares on one key.
#[derive(Debug, Clone, Copy)]
pub struct When;

impl When {
    /// The key's version (0: absent).
    pub fn version(key: impl AsRef<[u8]>, cmp: Cmp, v: i64) -> Compare {
        compare(
            key.as_ref(),
            cmp,
            CompareTarget::Version,
            TargetUnion::Version(v),
        )
    }

    /// The key's creation revision.
    pub fn create_revision(key: impl AsRef<[u8]>, cmp: Cmp, r: i64) -> Compare {
        compare(
            key.as_ref(),
            cmp,
            CompareTarget::Create,
            TargetUnion::CreateRevision(r),
        )
    }

    /// The key's last modification revision.
    pub fn mod_revision(key: impl AsRef<[u8]>, cmp: Cmp, r: i64) -> Compare {
        compare(
            key.as_ref(),
            cmp,
            CompareTarget::Mod,
            TargetUnion::ModRevision(r),
        )
    }

    /// The key's value.
    pub fn value(key: impl AsRef<[u8]>, cmp: Cmp, v: impl AsRef<[u8]>) -> Compare {
        let v = Bytes::copy_from_slice(v.as_ref());
        compare(
            key.as_ref(),
            cmp,
            CompareTarget::Value,
            TargetUnion::Value(v),
        )
    }

    /// The key's lease.
    pub fn lease(key: impl AsRef<[u8]>, cmp: Cmp, id: i64) -> Compare {
        compare(
            key.as_ref(),
            cmp,
            CompareTarget::Lease,
            TargetUnion::Lease(id),
        )
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, Copy)]
pub struct Op;

impl Op {
    /// A range read.
    pub fn get(key: impl AsRef<[u8]>, opts: GetOptions) -> RequestOp {
        let req = opts.to_request(key.as_ref());
        RequestOp {
            request: Some(Request::RequestRange(req)),
        }
    }

    /// A put (`lease` 0: none).
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>, lease: i64) -> RequestOp {
        let req = PutRequest {
            key: Bytes::copy_from_slice(key.as_ref()),
            value: Bytes::copy_from_slice(value.as_ref()),
            lease,
            ..Default::default()
        };
        RequestOp {
            request: Some(Request::RequestPut(req)),
        }
    }

    /// A delete of the key (or the range `opts` names).
    pub fn delete(key: impl AsRef<[u8]>, opts: GetOptions) -> RequestOp {
        let key = key.as_ref();
        let req = DeleteRangeRequest {
            key: Bytes::copy_from_slice(key),
            range_end: opts.end_for(key),
            prev_kv: false,
        };
        RequestOp {
            request: Some(Request::RequestDeleteRange(req)),
        }
    }
}

/// A transaction being built: `Txn::new().when([..]).and_then([..]).or_else([..])`.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    req: TxnRequest,
    pub(crate) idempotent: bool,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds compares (all must hold for the success branch).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.req.compare.extend(compares);
        self
    }

    /// Adds ops run when the compares hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = RequestOp>) -> Txn {
        self.req.success.extend(ops);
        self
    }

    /// Adds ops run when they do not.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = RequestOp>) -> Txn {
        self.req.failure.extend(ops);
        self
    }

    /// Marks the transaction safe to apply twice (e.g. guarded by a compare
    /// that fails the second time): it may be retried.
    pub fn idempotent(mut self) -> Txn {
        self.idempotent = true;
        self
    }

    /// True when no branch writes.
    pub fn is_read_only(&self) -> bool {
        let reads = |ops: &[RequestOp]| {
            ops.iter()
                .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
        };
        reads(&self.req.success) && reads(&self.req.failure)
    }

    /// The request.
    pub fn into_request(self) -> TxnRequest {
        self.req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds() {
        let t = Txn::new()
            .when([When::version("k", Cmp::Equal, 0)])
            .and_then([Op::put("k", "v", 0)])
            .or_else([Op::get("k", GetOptions::new())]);
        assert!(!t.is_read_only());
        let req = t.into_request();
        assert_eq!(req.compare.len(), 1);
        assert_eq!(req.compare[0].target, CompareTarget::Version as i32);
        let ro = Txn::new().and_then([Op::get("k", GetOptions::new())]);
        assert!(ro.is_read_only());
    }
}
