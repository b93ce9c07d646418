//! HashKV: a crc32c over the retained key space up to a revision.

use crate::error::Result;
use crate::state::State;
use crate::types::{Record, Revision};

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

/// HashKV computed revision by revision (in revision order): the compaction
/// revision, then each retained revision's revision, key, value, create
/// revision, version, lease and tombstone flag. Equal on replicas that
/// applied the same log.
#[derive(Debug, Clone)]
pub struct KvHasher {
    h: u32,
    buf: Vec<u8>,
}

impl KvHasher {
    /// Starts a hash of a store compacted at `compact_revision`.
    pub fn new(compact_revision: i64) -> KvHasher {
        KvHasher {
            h: crc32c::crc32c(&compact_revision.to_be_bytes()),
            buf: Vec::new(),
        }
    }

    /// Adds the next revision.
    pub fn add(&mut self, r: Revision, rec: &Record) {
        self.add_with_value(r, rec, &rec.value);
    }

    /// Adds the next revision, its value given apart (`rec.value` is not
    /// read).
    pub fn add_with_value(&mut self, r: Revision, rec: &Record, value: &[u8]) {
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&r.main.to_be_bytes());
        buf.extend_from_slice(&r.sub.to_be_bytes());
        buf.extend_from_slice(&(rec.key.len() as u64).to_be_bytes());
        buf.extend_from_slice(&rec.key);
        buf.extend_from_slice(&(value.len() as u64).to_be_bytes());
        buf.extend_from_slice(value);
        buf.extend_from_slice(&rec.create_revision.to_be_bytes());
        buf.extend_from_slice(&rec.version.to_be_bytes());
        buf.extend_from_slice(&rec.lease.to_be_bytes());
        buf.push(rec.tombstone as u8);
        self.h = crc32c::crc32c_append(self.h, buf);
    }

    /// The hash so far.
    pub fn finish(&self) -> u32 {
        self.h
    }
}

impl State {
    /// Hashes every retained revision `<= rev` (0 = current); see
    /// [`KvHasher`].
    pub(crate) fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        let rev = self.check_read_rev(rev, self.current_rev)?;
        let mut h = KvHasher::new(self.compact_rev);
        for (r, hist) in self.history.range(..Revision::new(rev + 1, 0)) {
            h.add(*r, &hist.record(self.value(*r, hist)?));
        }
        Ok(HashKv {
            hash: h.finish(),
            revision: rev,
            compact_revision: self.compact_rev,
        })
    }
}
