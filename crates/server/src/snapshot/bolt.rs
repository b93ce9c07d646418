//! The file streamed by Maintenance.Snapshot: a bbolt database in etcd's
//! layout (bucket `key` with revision keys and `mvccpb.KeyValue` values,
//! `meta` with the consistent index, `lease` with `leasepb.Lease` values,
//! and the auth buckets, `bolt_auth.rs`),
//! followed by the sha256 trailer etcd appends, so `etcdctl snapshot save`,
//! `snapshot status` and `snapshot restore` accept it.
//!
//! It holds every revision the store retains, tombstones included, and the
//! compaction revision, as etcd's backend does: a restored member serves
//! reads at old revisions just as the source did.
//!
//! Bounded, and off the driver's path: the history is read in steps from a
//! consistent read view (`HistoryRead`: a short hold of the store's lock per
//! step, values from the backend without it) and written page by page to a
//! temporary file in the data directory (`StreamWriter`), which is then
//! streamed to the client in chunks and removed. At most
//! [`MAX_CONCURRENT`] snapshots are built at once; more wait their turn.

use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::sync::{Arc, OnceLock};

use concord_bolt::{etcd, etcd_revision_key, Bucket, StreamWriter};
use concord_mvcc::{HistoryItem, KeyValue};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServerError;
use crate::grpc::{convert, State};

/// Most etcd-format snapshots built or streamed at once (each reads the
/// whole history and holds a temporary file as large as the store).
pub const MAX_CONCURRENT: usize = 2;
/// Revisions read per hold of the store's lock.
const STEP: usize = 4096;

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

/// A snapshot file ready to stream: the bbolt database (the sha256
/// trailer is computed while it is read, [`SnapshotFile::read_chunk`]).
#[derive(Debug)]
pub struct SnapshotFile {
    file: tempfile::NamedTempFile,
    /// Length of the database, without the 32-byte trailer.
    pub db_len: u64,
    sent: u64,
    hasher: Sha256,
    _slot: OwnedSemaphorePermit,
}

impl SnapshotFile {
    /// Bytes the client receives: the database and the trailer.
    pub fn total(&self) -> u64 {
        self.db_len + 32
    }

    /// The next chunk of at most `max` bytes (the trailer last); empty at
    /// the end.
    pub fn read_chunk(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        if self.sent >= self.total() {
            return Ok(Vec::new());
        }
        if self.sent >= self.db_len {
            let digest = std::mem::take(&mut self.hasher).finalize().to_vec();
            self.sent = self.total();
            return Ok(digest);
        }
        if self.sent == 0 {
            self.file.as_file_mut().seek(SeekFrom::Start(0))?;
        }
        let n = (max as u64).min(self.db_len - self.sent) as usize;
        let mut buf = vec![0u8; n];
        self.file.as_file_mut().read_exact(&mut buf)?;
        self.hasher.update(&buf);
        self.sent += n as u64;
        Ok(buf)
    }

    /// Bytes still to send after what was read.
    pub fn remaining(&self) -> u64 {
        self.total() - self.sent
    }
}

fn slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_CONCURRENT)))
        .clone()
}

/// The etcd form of one retained revision: revision key, `mvccpb.KeyValue`
/// (a deletion keeps only the key, as etcd stores a tombstone).
fn item(it: &HistoryItem, value: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let rec = &it.record;
    let kv = if rec.tombstone {
        KeyValue {
            key: rec.key.clone(),
            ..Default::default()
        }
    } else {
        KeyValue {
            value: bytes::Bytes::copy_from_slice(value),
            ..rec.to_kv(it.revision)
        }
    };
    let key = etcd_revision_key(it.revision.main, it.revision.sub, rec.tombstone);
    (key, convert::kv(kv).encode_to_vec())
}

/// Builds the snapshot file of the store as it is now (see the module
/// docs), waiting for a slot first.
pub async fn build(state: &State) -> Result<SnapshotFile, ServerError> {
    let slot = slots()
        .acquire_owned()
        .await
        .map_err(|_| ServerError::Stopped)?;
    let internal = |e: concord_bolt::BoltError| ServerError::Internal(e.to_string());
    let (mut read, leases, auth, applied, compacted) = {
        let store = state.store.read();
        (
            store.history_read(0)?,
            store.leases(),
            store.auth().clone(),
            store.applied_index(),
            store.compact_revision(),
        )
    };
    let tmp = tempfile::Builder::new()
        .prefix("snapshot-")
        .suffix(".db.tmp")
        .tempfile_in(state.data_dir().root())?;
    let out = BufWriter::with_capacity(1 << 20, tmp.reopen()?);
    let mut writer = StreamWriter::new(out, etcd::KEY).map_err(internal)?;
    loop {
        let items = state.store.read().history_step(&mut read, STEP)?;
        if items.is_empty() {
            break;
        }
        let step = tokio::task::spawn_blocking(move || {
            let mut failed = None;
            read.visit(&items, |it, value| {
                let (k, v) = item(it, value);
                if let Err(e) = writer.push(&k, &v) {
                    failed.get_or_insert(e);
                }
                Ok(())
            })
            .map_err(ServerError::Mvcc)?;
            if let Some(e) = failed {
                return Err(internal(e));
            }
            Ok::<_, ServerError>((read, writer))
        });
        (read, writer) = step
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))??;
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
    let mut others = vec![
        Bucket::new(etcd::META, meta),
        Bucket::new(etcd::LEASE, lease_items),
    ];
    others.extend(super::bolt_auth::auth_buckets(&auth));
    let db_len = tokio::task::spawn_blocking(move || {
        let (out, len) = writer.finish(&others).map_err(internal)?;
        let file = out
            .into_inner()
            .map_err(|e| ServerError::Io(e.into_error()))?;
        file.sync_data()?;
        Ok::<_, ServerError>(len)
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))??;
    Ok(SnapshotFile {
        file: tmp,
        db_len,
        sent: 0,
        hasher: Sha256::new(),
        _slot: slot,
    })
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
    use sha2::{Digest, Sha256};

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

        let mut snap = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(build(&state))
            .unwrap();
        let mut file = Vec::new();
        loop {
            let c = snap.read_chunk(1000).unwrap();
            if c.is_empty() {
                break;
            }
            file.extend(c);
        }
        assert_eq!(file.len() as u64, snap.total());
        // The trailer is the sha256 of the database, as etcdctl checks it.
        let (db, trailer) = file.split_at(file.len() - 32);
        assert_eq!(trailer, &Sha256::digest(db)[..]);
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
