//! The file streamed by Maintenance.Snapshot: a bbolt database in etcd's
//! layout (bucket `key` with revision keys and `mvccpb.KeyValue` values,
//! `meta` with the consistent index, `lease` with `leasepb.Lease` values),
//! followed by the sha256 trailer etcd appends, so `etcdctl snapshot save`,
//! `snapshot status` and `snapshot restore` accept it.
//!
//! It holds every revision the store retains, tombstones included, and the
//! compaction revision, as etcd's backend does: a restored member serves
//! reads at old revisions just as the source did.

use concord_bolt::{etcd, etcd_revision_key, with_sha256_trailer, write_db, Bucket};
use prost::Message;
use tonic::Status;

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
    let (history, leases, applied, compacted) = {
        let store = state.store.read();
        (
            store.retained().map_err(crate::error::ServerError::Mvcc)?,
            store.leases(),
            store.applied_index(),
            store.compact_revision(),
        )
    };
    // Revision keys sort as the revisions do (big-endian main, then sub).
    let items: Vec<(Vec<u8>, Vec<u8>)> = history
        .into_iter()
        .map(|(rev, kv, tombstone)| {
            let key = etcd_revision_key(rev.main, rev.sub, tombstone);
            (key, convert::kv(kv).encode_to_vec())
        })
        .collect();
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
    // Sorted by key: consistent_index < finishedCompactRev < scheduledCompactRev.
    let mut meta = vec![(
        etcd::CONSISTENT_INDEX.to_vec(),
        applied.to_be_bytes().to_vec(),
    )];
    if compacted > 0 {
        let rev = etcd_revision_key(compacted, 0, false);
        meta.push((etcd::FINISHED_COMPACT_REV.to_vec(), rev.clone()));
        meta.push((etcd::SCHEDULED_COMPACT_REV.to_vec(), rev));
    }
    let buckets = vec![
        Bucket::new(etcd::KEY, items),
        Bucket::new(etcd::META, meta),
        Bucket::new(etcd::LEASE, lease_items),
    ];
    let mut out = Vec::new();
    write_db(&buckets, &mut out).map_err(|e| Status::internal(e.to_string()))?;
    Ok(with_sha256_trailer(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Shared;
    use bytes::Bytes;
    use concord_bolt::etcd::parse_revision_key;
    use concord_bolt::read_db;
    use concord_mvcc::{Command, DeleteRangeRequest, PutRequest};
    use concord_proto::mvccpb::KeyValue as KvPb;

    fn put(k: &str, v: &str) -> Command {
        Command::Put(PutRequest {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
            ..Default::default()
        })
    }

    /// The file carries the whole retained history with real revisions
    /// (txn sub-revisions and tombstones included) and the compaction mark.
    #[test]
    fn the_snapshot_holds_every_retained_revision() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _inbox) = Shared::for_tests(1, 7, dir.path());
        let cmds = vec![
            put("a", "1"), // rev 2
            put("a", "2"), // rev 3
            put("b", "1"), // rev 4
            Command::DeleteRange(DeleteRangeRequest {
                // rev 5
                key: Bytes::from_static(b"b"),
                ..Default::default()
            }),
            put("a", "3"), // rev 6
            Command::Compact { revision: 3 },
            put("c", "1"), // rev 7
        ];
        let batch: Vec<_> = (1..).zip(cmds).collect();
        state.store.write().apply_batch(&batch).unwrap();

        let file = build(&state).unwrap();
        let db = &file[..file.len() - 32]; // the sha256 trailer
        let buckets = read_db(db).unwrap();
        let bucket = |name: &[u8]| buckets.iter().find(|b| b.name == name).unwrap();
        let revs: Vec<(i64, i64, bool, String, String)> = bucket(etcd::KEY)
            .items
            .iter()
            .map(|(k, v)| {
                let (main, sub, tomb) = parse_revision_key(k).unwrap();
                let kv = KvPb::decode(&v[..]).unwrap();
                let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                (main, sub, tomb, s(&kv.key), s(&kv.value))
            })
            .collect();
        let row = |m, t, k: &str, v: &str| (m, 0, t, k.to_string(), v.to_string());
        // Revision 2 (a=1) was compacted away; a=2 at 3 is kept as a's
        // version at the compaction revision.
        assert_eq!(
            revs,
            vec![
                row(3, false, "a", "2"),
                row(4, false, "b", "1"),
                row(5, true, "b", ""),
                row(6, false, "a", "3"),
                row(7, false, "c", "1"),
            ]
        );
        let meta = &bucket(etcd::META).items;
        let compacted = etcd_revision_key(3, 0, false);
        assert!(meta.contains(&(etcd::FINISHED_COMPACT_REV.to_vec(), compacted.clone())));
        assert!(meta.contains(&(etcd::SCHEDULED_COMPACT_REV.to_vec(), compacted)));
        assert!(meta.contains(&(etcd::CONSISTENT_INDEX.to_vec(), 7u64.to_be_bytes().to_vec())));
    }
}
