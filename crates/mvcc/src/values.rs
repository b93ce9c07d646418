//! Values that live in the backend, read back through a bounded cache.
//!
//! The key index and every revision's metadata stay in memory (as etcd
//! keeps its key index); a value stays in memory only until a checkpoint
//! has written it durably, then moves to this cache, which holds at most
//! [`crate::Limits::value_cache_bytes`] and evicts the least useful entries
//! (S3-FIFO). A value not in the cache is read from the backend: one chunk
//! row, one offset lookup ([`crate::chunk`]).
//!
//! It owns the redb database: everything reaches the backend through it
//! (shared: reads, checkpoints; exclusive: a defragment, which moves pages).
//! Shared (`Arc`) between the store and read views, so values can be read
//! without the store's lock.

use bytes::Bytes;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use redb::Database;

use crate::backend::HIST_VALS;
use crate::chunk;
use crate::error::{MvccError, Result};
use crate::types::Revision;

/// Where each revision's value lies in a chunk's bytes.
type Ranges = Vec<(Revision, std::ops::Range<usize>)>;

/// Weighs a cached value by its bytes (plus the entry's own overhead).
#[derive(Clone, Copy, Debug)]
struct ByLen;

impl Weighter<Revision, Bytes> for ByLen {
    fn weight(&self, _: &Revision, v: &Bytes) -> u64 {
        v.len() as u64 + 48
    }
}

/// The backend's values and their cache.
pub(crate) struct ValueStore {
    db: RwLock<Database>,
    cache: Cache<Revision, Bytes, ByLen>,
}

impl std::fmt::Debug for ValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueStore")
            .field("cached_bytes", &self.cache.weight())
            .finish_non_exhaustive()
    }
}

impl ValueStore {
    /// Values of `db`, with a cache of `cache_bytes`.
    pub(crate) fn new(db: Database, cache_bytes: usize) -> ValueStore {
        let items = (cache_bytes / 1024).clamp(16, 1 << 20);
        ValueStore {
            db: RwLock::new(db),
            cache: Cache::with_weighter(items, cache_bytes.max(1) as u64, ByLen),
        }
    }

    /// The value of `rev`: from the cache, else from the backend. A
    /// revision the backend does not hold is an error (the caller asks only
    /// for revisions its index names).
    pub(crate) fn get(&self, rev: Revision) -> Result<Bytes> {
        if let Some(v) = self.cache.get(&rev) {
            return Ok(v);
        }
        let v = read(&self.db.read(), rev)?.ok_or_else(|| {
            MvccError::Storage(format!("value of revision {rev:?} is not in the backend"))
        })?;
        self.cache.insert(rev, v.clone());
        Ok(v)
    }

    /// The values of `revs` (ascending), read chunk by chunk in one read
    /// transaction (for reads of many values: large ranges). They do not
    /// go into the cache.
    pub(crate) fn get_many(&self, revs: &[Revision]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(revs.len());
        self.visit(revs, |_, v| {
            out.push(Bytes::copy_from_slice(v));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(i, value)` for each of `revs` (ascending) in order, reading
    /// the backend chunk by chunk in one read transaction: at most one
    /// chunk is in memory at a time (hashes and snapshot images read every
    /// value this way).
    pub(crate) fn visit(
        &self,
        revs: &[Revision],
        mut f: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(revs.windows(2).all(|w| w[0] <= w[1]), "ascending");
        let db = self.db.read();
        let tx = db.begin_read().map_err(MvccError::storage)?;
        let table = match tx.open_table(HIST_VALS) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(MvccError::storage(e)),
        };
        // The chunk last read: its bytes and (revision, value range)s.
        let mut cur: Option<(Vec<u8>, Ranges)> = None;
        for (i, &rev) in revs.iter().enumerate() {
            if let Some(v) = self.cache.get(&rev) {
                f(i, &v)?;
                continue;
            }
            let covers = |c: &(Vec<u8>, Ranges)| {
                c.1.first().is_some_and(|f| f.0 <= rev) && c.1.last().is_some_and(|l| l.0 >= rev)
            };
            if !cur.as_ref().is_some_and(covers) {
                cur = None;
                if let Some(t) = &table {
                    let found = t
                        .range(..=(rev.main, rev.sub))
                        .map_err(MvccError::storage)?
                        .next_back()
                        .transpose()
                        .map_err(MvccError::storage)?;
                    if let Some((k, v)) = found {
                        let raw = v.value().to_vec();
                        let ranges = chunk::Values::parse(k.value(), &raw)?.ranges();
                        cur = Some((raw, ranges));
                    }
                }
            }
            let value = cur.as_ref().and_then(|(raw, ranges)| {
                let j = ranges.binary_search_by(|(r, _)| r.cmp(&rev)).ok()?;
                Some(&raw[ranges[j].1.clone()])
            });
            let value = value.ok_or_else(|| {
                MvccError::Storage(format!("value of revision {rev:?} is not in the backend"))
            })?;
            f(i, value)?;
        }
        Ok(())
    }

    /// Keeps a value just written to the backend at hand.
    pub(crate) fn cache(&self, rev: Revision, value: Bytes) {
        self.cache.insert(rev, value);
    }

    /// Bytes held by the cache.
    pub(crate) fn cached_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Forgets everything cached (a restore replaced the backend).
    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    /// The backend, shared (reads, write transactions).
    pub(crate) fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db.read()
    }

    /// The backend, exclusively (waits for reads and checkpoints).
    pub(crate) fn db_mut(&self) -> RwLockWriteGuard<'_, Database> {
        self.db.write()
    }
}

/// Reads the value of `rev` from the backend, if it holds it.
pub(crate) fn read(db: &Database, rev: Revision) -> Result<Option<Bytes>> {
    let tx = db.begin_read().map_err(MvccError::storage)?;
    let table = match tx.open_table(HIST_VALS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(MvccError::storage(e)),
    };
    let found = table
        .range(..=(rev.main, rev.sub))
        .map_err(MvccError::storage)?
        .next_back()
        .transpose()
        .map_err(MvccError::storage)?;
    let Some((k, v)) = found else {
        return Ok(None);
    };
    let chunk = chunk::Values::parse(k.value(), v.value())?;
    Ok(chunk.get(rev).map(Bytes::copy_from_slice))
}
