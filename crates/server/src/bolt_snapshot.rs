//! The file streamed by Maintenance.Snapshot: a bbolt database in etcd's
//! layout (bucket `key` with revision keys and `mvccpb.KeyValue` values,
//! `meta` with the consistent index, `lease` with `leasepb.Lease` values),
//! followed by the sha256 trailer etcd appends, so `etcdctl snapshot save`,
//! `snapshot status` and `snapshot restore` accept it.
//!
//! It holds the latest version of every live key (history before the
//! current revision is not carried over).

use concord_bolt::{etcd, etcd_revision_key, with_sha256_trailer, write_db, Bucket};
use concord_mvcc::{RangeRequest, SortOrder, SortTarget};
use prost::Message;
use tonic::Status;

use crate::error::ServerError;
use crate::grpc::{convert, State};

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// Builds the snapshot file from the store as it is now.
pub fn build(state: &State) -> Result<Vec<u8>, Status> {
    let (kvs, leases, applied) = {
        let store = state.store.read();
        let all = RangeRequest {
            key: bytes::Bytes::from_static(b"\0"),
            range_end: bytes::Bytes::from_static(b"\0"),
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Mod,
            ..Default::default()
        };
        let r = store.range(&all).map_err(ServerError::Mvcc)?;
        (r.kvs, store.leases(), store.applied_index())
    };
    let mut items = Vec::with_capacity(kvs.len());
    let mut last: Option<(i64, i64)> = None;
    for kv in kvs {
        // Keys changed in one txn share a main revision: number them.
        let sub = match last {
            Some((main, sub)) if main == kv.mod_revision => sub + 1,
            _ => 0,
        };
        last = Some((kv.mod_revision, sub));
        let key = etcd_revision_key(kv.mod_revision, sub, false);
        items.push((key, convert::kv(kv).encode_to_vec()));
    }
    let mut lease_items: Vec<(Vec<u8>, Vec<u8>)> = leases
        .into_iter()
        .map(|l| {
            let v = LeasePb {
                id: l.id,
                ttl: l.ttl,
                remaining_ttl: l.remaining_ttl,
            };
            (l.id.to_be_bytes().to_vec(), v.encode_to_vec())
        })
        .collect();
    lease_items.sort();
    let meta = vec![(
        etcd::CONSISTENT_INDEX.to_vec(),
        applied.to_be_bytes().to_vec(),
    )];
    let buckets = vec![
        Bucket::new(etcd::KEY, items),
        Bucket::new(etcd::META, meta),
        Bucket::new(etcd::LEASE, lease_items),
    ];
    let mut out = Vec::new();
    write_db(&buckets, &mut out).map_err(|e| Status::internal(e.to_string()))?;
    Ok(with_sha256_trailer(out))
}
