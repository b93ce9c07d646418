//! HashKV: a crc32c over the retained key space up to a revision.

use crate::error::Result;
use crate::state::State;
use crate::types::Revision;

/// etcd's HashKV answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// crc32c of the retained history up to `revision`.
    pub hash: u32,
    /// Revision hashed.
    pub revision: i64,
    /// Compaction revision at the time.
    pub compact_revision: i64,
}

impl State {
    /// Hashes every retained revision `<= rev` (0 = current): revision, key,
    /// value, create revision, version, lease, tombstone flag; then the
    /// compaction revision. Equal on replicas that applied the same log.
    pub(crate) fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let rev = self.check_read_rev(rev, self.current_rev)?;
        let mut h = crc32c::crc32c(&self.compact_rev.to_be_bytes());
        for (r, rec) in self.history.range(..Revision::new(rev + 1, 0)) {
            let mut buf = Vec::with_capacity(64 + rec.key.len() + rec.value.len());
            buf.extend_from_slice(&r.main.to_be_bytes());
            buf.extend_from_slice(&r.sub.to_be_bytes());
            buf.extend_from_slice(&(rec.key.len() as u64).to_be_bytes());
            buf.extend_from_slice(&rec.key);
            buf.extend_from_slice(&(rec.value.len() as u64).to_be_bytes());
            buf.extend_from_slice(&rec.value);
            buf.extend_from_slice(&rec.create_revision.to_be_bytes());
            buf.extend_from_slice(&rec.version.to_be_bytes());
            buf.extend_from_slice(&rec.lease.to_be_bytes());
            buf.push(rec.tombstone as u8);
            h = crc32c::crc32c_append(h, &buf);
        }
        Ok(HashKv {
            hash: h,
            revision: rev,
            compact_revision: self.compact_rev,
        })
    }
}
