//! Helpers for etcd's backend layout and snapshot framing.
//!
//! etcd keeps its MVCC store in bucket [`KEY`], keyed by revision (see
//! [`etcd_revision_key`]) with protobuf `mvccpb.KeyValue` values; bucket
//! [`META`] holds `consistent_index` (8-byte big-endian) and, after a
//! compaction, `finishedCompactRev` / `scheduledCompactRev` (revision keys);
//! bucket [`LEASE`] maps 8-byte big-endian lease ids to `leasepb.Lease`.
//! Filling the buckets is the caller's business; this module only names them.

use std::io::Write;

use sha2::{Digest, Sha256};

/// Bucket of MVCC revisions.
pub const KEY: &[u8] = b"key";
/// Bucket of backend metadata (consistent index, compaction marks).
pub const META: &[u8] = b"meta";
/// Bucket of leases.
pub const LEASE: &[u8] = b"lease";
/// Bucket of cluster members.
pub const MEMBERS: &[u8] = b"members";
/// Bucket of removed members.
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
/// Bucket of cluster-wide settings (cluster version).
pub const CLUSTER: &[u8] = b"cluster";
/// Bucket of active alarms.
pub const ALARM: &[u8] = b"alarm";
/// Bucket of auth settings.
pub const AUTH: &[u8] = b"auth";
/// Bucket of auth users.
pub const AUTH_USERS: &[u8] = b"authUsers";
/// Bucket of auth roles.
pub const AUTH_ROLES: &[u8] = b"authRoles";
/// `meta` key of the last applied raft index (8-byte big-endian u64).
pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// `meta` key of the last finished compaction (a revision key).
pub const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
/// `meta` key of the last scheduled compaction (a revision key).
pub const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";

/// etcd's revision key: 8-byte big-endian main revision, `_`, 8-byte
/// big-endian sub revision, then `t` when the revision is a tombstone
/// (a delete). Big-endian makes bytewise order equal revision order.
pub fn etcd_revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

/// Parses a revision key back into `(main, sub, tombstone)`.
pub fn parse_revision_key(key: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[0..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((main, sub, tombstone))
}

/// Appends the sha256 of `db` to it, as etcd does at the end of a snapshot
/// stream; `etcdctl snapshot restore` verifies (and strips) that trailer.
pub fn with_sha256_trailer(mut db: Vec<u8>) -> Vec<u8> {
    let digest = Sha256::digest(&db);
    db.extend_from_slice(&digest);
    db
}

/// Passes bytes through to `inner` while hashing them, so a snapshot can be
/// streamed and still end with etcd's sha256 trailer ([`Sha256Writer::finish`]).
#[derive(Debug)]
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Sha256Writer<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Writes the sha256 of everything written so far and returns `inner`.
    pub fn finish(mut self) -> std::io::Result<W> {
        let digest = self.hasher.finalize();
        self.inner.write_all(&digest)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_and_parse() {
        let a = etcd_revision_key(2, 0, false);
        let b = etcd_revision_key(2, 1, false);
        let c = etcd_revision_key(10, 0, true);
        assert_eq!(a.len(), 17);
        assert_eq!(c.len(), 18);
        assert!(a < b && b < c);
        assert_eq!(parse_revision_key(&c), Some((10, 0, true)));
        assert_eq!(parse_revision_key(&a), Some((2, 0, false)));
        assert_eq!(parse_revision_key(b"short"), None);
    }

    #[test]
    fn streaming_trailer_matches_buffered() {
        let data = vec![42u8; 10_000];
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(&data).unwrap();
        assert_eq!(w.finish().unwrap(), with_sha256_trailer(data));
    }
}
