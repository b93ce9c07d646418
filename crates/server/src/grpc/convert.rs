//! Conversions between the etcd protobuf messages and the MVCC types.

use concord_mvcc as m;
use concord_proto::etcdserverpb as pb;
use concord_proto::mvccpb;
use tonic::Status;

/// A protobuf key-value.
pub fn kv(k: m::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        value: k.value,
        lease: k.lease,
    }
}

/// A protobuf event.
pub fn event(e: m::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            m::EventType::Put => mvccpb::event::EventType::Put as i32,
            m::EventType::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv(e.kv)),
        prev_kv: e.prev_kv.map(kv),
    }
}

/// An MVCC range request (`serializable` is handled by the caller).
pub fn range_request(r: pb::RangeRequest) -> Result<m::RangeRequest, Status> {
    let sort_order = match pb::range_request::SortOrder::try_from(r.sort_order) {
        Ok(pb::range_request::SortOrder::None) => m::SortOrder::None,
        Ok(pb::range_request::SortOrder::Ascend) => m::SortOrder::Ascend,
        Ok(pb::range_request::SortOrder::Descend) => m::SortOrder::Descend,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort option")),
    };
    let sort_target = match pb::range_request::SortTarget::try_from(r.sort_target) {
        Ok(pb::range_request::SortTarget::Key) => m::SortTarget::Key,
        Ok(pb::range_request::SortTarget::Version) => m::SortTarget::Version,
        Ok(pb::range_request::SortTarget::Create) => m::SortTarget::Create,
        Ok(pb::range_request::SortTarget::Mod) => m::SortTarget::Mod,
        Ok(pb::range_request::SortTarget::Value) => m::SortTarget::Value,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort option")),
    };
    Ok(m::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

/// True when `range_end` sorts before `key` (etcd answers such a range
/// with nothing rather than an error).
pub fn is_backwards(key: &[u8], range_end: &[u8]) -> bool {
    !range_end.is_empty() && range_end != b"\0" && range_end < key
}

/// A protobuf range response.
pub fn range_response(r: m::RangeResponse, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(pb::ResponseHeader {
            revision: r.revision,
            ..header
        }),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

/// An MVCC put.
pub fn put_request(r: pb::PutRequest) -> m::PutRequest {
    m::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

/// An MVCC delete.
pub fn delete_request(r: pb::DeleteRangeRequest) -> m::DeleteRangeRequest {
    m::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

fn compare(c: pb::Compare) -> Result<m::Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result) {
        Ok(R::Equal) => m::CompareResult::Equal,
        Ok(R::Greater) => m::CompareResult::Greater,
        Ok(R::Less) => m::CompareResult::Less,
        Ok(R::NotEqual) => m::CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare result",
            ))
        }
    };
    let target = match (T::try_from(c.target), c.target_union) {
        (Ok(T::Version), Some(U::Version(v))) => m::CompareTarget::Version(v),
        (Ok(T::Create), Some(U::CreateRevision(v))) => m::CompareTarget::Create(v),
        (Ok(T::Mod), Some(U::ModRevision(v))) => m::CompareTarget::Mod(v),
        (Ok(T::Value), Some(U::Value(v))) => m::CompareTarget::Value(v),
        (Ok(T::Lease), Some(U::Lease(v))) => m::CompareTarget::Lease(v),
        // proto3 drops zero values: a missing union means zero of the target type.
        (Ok(T::Version), None) => m::CompareTarget::Version(0),
        (Ok(T::Create), None) => m::CompareTarget::Create(0),
        (Ok(T::Mod), None) => m::CompareTarget::Mod(0),
        (Ok(T::Value), None) => m::CompareTarget::Value(Default::default()),
        (Ok(T::Lease), None) => m::CompareTarget::Lease(0),
        _ => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare target",
            ))
        }
    };
    Ok(m::Compare {
        result,
        target,
        key: c.key,
        range_end: c.range_end,
    })
}

fn request_op(op: pb::RequestOp) -> Result<m::RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => m::RequestOp::Range(range_request(r)?),
        Some(Request::RequestPut(p)) => m::RequestOp::Put(put_request(p)),
        Some(Request::RequestDeleteRange(d)) => m::RequestOp::DeleteRange(delete_request(d)),
        Some(Request::RequestTxn(t)) => m::RequestOp::Txn(txn_request(t)?),
        None => return Err(Status::invalid_argument("etcdserver: empty request op")),
    })
}

/// An MVCC txn.
pub fn txn_request(t: pb::TxnRequest) -> Result<m::TxnRequest, Status> {
    Ok(m::TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: t
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: t
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

/// A protobuf put response.
pub fn put_response(r: m::PutResponse, h: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(pb::ResponseHeader {
            revision: r.revision,
            ..h
        }),
        prev_kv: r.prev_kv.map(kv),
    }
}

/// A protobuf delete response.
pub fn delete_response(
    r: m::DeleteRangeResponse,
    h: pb::ResponseHeader,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(pb::ResponseHeader {
            revision: r.revision,
            ..h
        }),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

/// A protobuf txn response.
pub fn txn_response(r: m::TxnResponse, h: pb::ResponseHeader) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = r
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                m::ResponseOp::Range(x) => Response::ResponseRange(range_response(x, h)),
                m::ResponseOp::Put(x) => Response::ResponsePut(put_response(x, h)),
                m::ResponseOp::DeleteRange(x) => {
                    Response::ResponseDeleteRange(delete_response(x, h))
                }
                m::ResponseOp::Txn(x) => Response::ResponseTxn(txn_response(x, h)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: Some(pb::ResponseHeader {
            revision: r.revision,
            ..h
        }),
        succeeded: r.succeeded,
        responses,
    }
}
