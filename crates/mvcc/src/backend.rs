//! The redb backend: table layout, loading, and writing recorded changes.
//!
//! Tables:
//! - `history_chunks`: the first `(main, sub)` revision of a chunk ->
//!   postcard-encoded `Vec<(Revision, Record)>`, revisions increasing; the
//!   chunks' ranges do not overlap. A checkpoint appends its new revisions
//!   as a few chunks (up to [`CHUNK_RECORDS`] records or [`CHUNK_BYTES`]
//!   bytes each) instead of one B-tree insert per revision, which cost a
//!   tenth of the machine's CPU under write load. Compaction rewrites the
//!   chunks it removes revisions from.
//! - `history`: `(main, sub)` revision -> postcard-encoded [`Record`]: the
//!   earlier one-row-per-revision layout, still read and compacted, never
//!   written.
//! - `leases`: lease id -> postcard-encoded [`LeaseRecord`]
//! - `meta`: `applied_index`, `current_rev`, `compact_rev` (u64)
//!
//! The applied index is written in the same write transaction as the data
//! of the entries it covers, so a crash never applies an entry twice or
//! skips one.

use crate::error::{MvccError, Result};
use crate::state::{Changes, Lease, State};
use crate::types::{LeaseRecord, Record, Revision};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

pub(crate) const HISTORY: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("history");
pub(crate) const HISTORY_CHUNKS: TableDefinition<(i64, i64), &[u8]> =
    TableDefinition::new("history_chunks");
/// Most records in one history chunk.
pub(crate) const CHUNK_RECORDS: usize = 4096;
/// Most encoded bytes in one history chunk (at least one record).
pub(crate) const CHUNK_BYTES: usize = 4 << 20;
pub(crate) const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const APPLIED: &str = "applied_index";
pub(crate) const CURRENT: &str = "current_rev";
pub(crate) const COMPACT: &str = "compact_rev";

fn decode<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| MvccError::Corrupt(e.to_string()))
}

/// Loads the whole state; returns it with the applied index.
pub(crate) fn load(db: &Database, state: &mut State) -> Result<u64> {
    let tx = db.begin_read().map_err(MvccError::storage)?;
    // etcd starts an empty store at revision 1 (the first write gets 2);
    // client recipes rely on it (a campaign bounded by `create_rev - 1`).
    state.current_rev = state.current_rev.max(1);
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(MvccError::storage(e)),
    };
    let get = |k: &str| -> Result<u64> {
        Ok(meta
            .get(k)
            .map_err(MvccError::storage)?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    let applied = get(APPLIED)?;
    state.current_rev = (get(CURRENT)? as i64).max(1);
    state.compact_rev = get(COMPACT)? as i64;
    match tx.open_table(HISTORY) {
        Ok(hist) => {
            for item in hist.iter().map_err(MvccError::storage)? {
                let (k, v) = item.map_err(MvccError::storage)?;
                let (main, sub) = k.value();
                let rec: Record = decode(v.value())?;
                state.history.insert(Revision::new(main, sub), rec);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(MvccError::storage(e)),
    }
    match tx.open_table(HISTORY_CHUNKS) {
        Ok(chunks) => {
            for item in chunks.iter().map_err(MvccError::storage)? {
                let (k, v) = item.map_err(MvccError::storage)?;
                let recs: Vec<(Revision, Record)> = decode(v.value())?;
                check_chunk(k.value(), &recs)?;
                state.history.extend(recs);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(MvccError::storage(e)),
    }
    let leases = tx.open_table(LEASES).map_err(MvccError::storage)?;
    for item in leases.iter().map_err(MvccError::storage)? {
        let (_, v) = item.map_err(MvccError::storage)?;
        let rec: LeaseRecord = decode(v.value())?;
        state.leases.insert(rec.id, Lease::restored(rec));
    }
    state.rebuild();
    Ok(applied)
}

/// The meta row written with every batch of changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) applied: u64,
    pub(crate) current_rev: i64,
    pub(crate) compact_rev: i64,
}

impl Meta {
    pub(crate) fn of(state: &State, applied: u64) -> Meta {
        Meta {
            applied,
            current_rev: state.current_rev,
            compact_rev: state.compact_rev,
        }
    }
}

/// A chunk read back must be what was written: keyed by its first
/// revision, revisions strictly increasing.
fn check_chunk(key: (i64, i64), recs: &[(Revision, Record)]) -> Result<()> {
    let first = recs.first().map(|(r, _)| (r.main, r.sub));
    if first != Some(key) || recs.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(MvccError::Corrupt(format!(
            "history chunk {key:?} does not start at its key or is out of order"
        )));
    }
    Ok(())
}

/// Appends new revisions as chunks. Invariant: every new revision is above
/// every stored one (history only grows at the top; restores clear first).
fn put_chunks(tx: &WriteTransaction, puts: &[(Revision, Record)]) -> Result<()> {
    let mut chunks = tx.open_table(HISTORY_CHUNKS).map_err(MvccError::storage)?;
    if let (Some((first, _)), Some(last)) =
        (puts.first(), chunks.last().map_err(MvccError::storage)?)
    {
        let (main, sub) = last.0.value();
        assert!(
            *first > Revision::new(main, sub),
            "history chunks must be appended above the stored ones"
        );
    }
    // A snapshot image from a peer arrives here too: refuse, do not trust.
    if puts.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(MvccError::Corrupt(
            "history to write is not in revision order".into(),
        ));
    }
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, rec)) in puts.iter().enumerate() {
        bytes += rec.key.len() + rec.value.len() + 32;
        let full = i + 1 - start >= CHUNK_RECORDS || bytes >= CHUNK_BYTES;
        if full || i + 1 == puts.len() {
            let chunk = &puts[start..=i];
            let key = (chunk[0].0.main, chunk[0].0.sub);
            chunks
                .insert(key, enc(&chunk).as_slice())
                .map_err(MvccError::storage)?;
            start = i + 1;
            bytes = 0;
        }
    }
    Ok(())
}

/// Removes compacted revisions: rewrites each chunk that holds some (or
/// deletes it when none remain), and deletes rows of the earlier layout.
fn delete_revisions(tx: &WriteTransaction, dels: &[Revision]) -> Result<()> {
    if dels.is_empty() {
        return Ok(());
    }
    let mut sorted = dels.to_vec();
    sorted.sort_unstable();
    {
        let mut old = tx.open_table(HISTORY).map_err(MvccError::storage)?;
        if !old.is_empty().map_err(MvccError::storage)? {
            for rev in &sorted {
                old.remove((rev.main, rev.sub))
                    .map_err(MvccError::storage)?;
            }
        }
    }
    let mut chunks = tx.open_table(HISTORY_CHUNKS).map_err(MvccError::storage)?;
    let mut i = 0;
    while i < sorted.len() {
        let rev = sorted[i];
        let found = chunks
            .range(..=(rev.main, rev.sub))
            .map_err(MvccError::storage)?
            .next_back()
            .transpose()
            .map_err(MvccError::storage)?
            .map(|(k, v)| (k.value(), v.value().to_vec()));
        let Some((key, value)) = found else {
            i += 1; // not in any chunk (an earlier-layout row)
            continue;
        };
        let mut recs: Vec<(Revision, Record)> = decode(&value)?;
        check_chunk(key, &recs)?;
        let end = recs.last().map_or(rev, |(r, _)| *r);
        // Every deletion up to this chunk's last revision falls in it.
        let mut j = i;
        while j < sorted.len() && sorted[j] <= end {
            j += 1;
        }
        let doomed = &sorted[i..j.max(i + 1)];
        let before = recs.len();
        recs.retain(|(r, _)| doomed.binary_search(r).is_err());
        if recs.len() != before {
            chunks.remove(key).map_err(MvccError::storage)?;
            if let Some((first, _)) = recs.first() {
                chunks
                    .insert((first.main, first.sub), enc(&recs).as_slice())
                    .map_err(MvccError::storage)?;
            }
        }
        i = j.max(i + 1);
    }
    Ok(())
}

/// Writes changes and meta into an open write transaction.
pub(crate) fn write(tx: &WriteTransaction, ch: &Changes, meta: Meta) -> Result<()> {
    // Puts before deletions: a revision written and compacted within one
    // checkpoint is put, then removed.
    put_chunks(tx, &ch.hist_put)?;
    delete_revisions(tx, &ch.hist_del)?;
    {
        let mut leases = tx.open_table(LEASES).map_err(MvccError::storage)?;
        for (id, rec) in &ch.leases {
            match rec {
                Some(r) => leases
                    .insert(*id, enc(r).as_slice())
                    .map_err(MvccError::storage)?,
                None => leases.remove(*id).map_err(MvccError::storage)?,
            };
        }
    }
    let Meta {
        applied,
        current_rev,
        compact_rev,
    } = meta;
    let mut meta = tx.open_table(META).map_err(MvccError::storage)?;
    meta.insert(APPLIED, applied).map_err(MvccError::storage)?;
    meta.insert(CURRENT, current_rev as u64)
        .map_err(MvccError::storage)?;
    meta.insert(COMPACT, compact_rev as u64)
        .map_err(MvccError::storage)?;
    Ok(())
}

/// Empties every table (before a restore).
pub(crate) fn clear(tx: &WriteTransaction) -> Result<()> {
    tx.delete_table(HISTORY).map_err(MvccError::storage)?;
    tx.delete_table(HISTORY_CHUNKS)
        .map_err(MvccError::storage)?;
    tx.delete_table(LEASES).map_err(MvccError::storage)?;
    tx.delete_table(META).map_err(MvccError::storage)?;
    Ok(())
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("record encoding cannot fail")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rec(i: i64) -> Record {
        Record {
            key: Bytes::from(format!("k{}", i % 50)),
            value: Bytes::from(format!("v{i}")),
            create_revision: 2,
            version: 1,
            lease: 0,
            tombstone: false,
        }
    }

    fn puts(mains: std::ops::Range<i64>) -> Vec<(Revision, Record)> {
        mains.map(|m| (Revision::new(m, 0), rec(m))).collect()
    }

    fn commit(db: &Database, ch: &Changes, applied: u64) {
        let tx = db.begin_write().unwrap();
        let meta = Meta {
            applied,
            current_rev: ch.hist_put.last().map_or(1, |(r, _)| r.main),
            compact_rev: 0,
        };
        write(&tx, ch, meta).unwrap();
        tx.commit().unwrap();
    }

    fn commit_puts(db: &Database, puts: &[(Revision, Record)], applied: u64) {
        let ch = Changes {
            hist_put: puts.to_vec(),
            ..Default::default()
        };
        commit(db, &ch, applied);
    }

    fn loaded(db: &Database) -> Result<Vec<(Revision, Record)>> {
        let mut state = State::default();
        load(db, &mut state)?;
        Ok(state.history.into_iter().collect())
    }

    fn chunk_rows(db: &Database) -> u64 {
        let tx = db.begin_read().unwrap();
        tx.open_table(HISTORY_CHUNKS).unwrap().len().unwrap()
    }

    #[test]
    fn history_goes_in_chunks_and_compaction_rewrites_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let n = CHUNK_RECORDS as i64 * 2 + 10;
        let first = puts(2..2 + n);
        commit_puts(&db, &first, 1);
        assert_eq!(chunk_rows(&db), 3, "one insert per chunk, not per revision");
        let second = puts(2 + n..2 + n + 5);
        commit_puts(&db, &second, 2);
        let mut want: Vec<_> = first.into_iter().chain(second).collect();
        assert_eq!(loaded(&db).unwrap(), want);

        // Compact: every third revision, across chunk boundaries, including
        // revisions put in the same checkpoint, and a whole small chunk.
        let third = puts(2 + n + 5..2 + n + 8);
        let mut dels: Vec<Revision> = want
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| r.main % 3 == 0)
            .collect();
        dels.extend(
            want[want.len() - 5..]
                .iter()
                .map(|(r, _)| r.main)
                .map(|m| Revision::new(m, 0)),
        );
        dels.push(third[0].0);
        dels.dedup();
        commit(
            &db,
            &Changes {
                hist_put: third.clone(),
                hist_del: dels.clone(),
                ..Default::default()
            },
            3,
        );
        want.extend(third);
        want.retain(|(r, _)| !dels.contains(r));
        assert_eq!(loaded(&db).unwrap(), want);
    }

    #[test]
    fn rows_of_the_earlier_layout_are_read_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let old = puts(2..12);
        {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(HISTORY).unwrap();
                for (r, rec) in &old {
                    t.insert((r.main, r.sub), enc(rec).as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let new = puts(12..20);
        commit_puts(&db, &new, 1);
        let mut want: Vec<_> = old.into_iter().chain(new).collect();
        assert_eq!(loaded(&db).unwrap(), want);
        let dels = vec![
            Revision::new(3, 0),
            Revision::new(11, 0),
            Revision::new(15, 0),
        ];
        commit(
            &db,
            &Changes {
                hist_del: dels.clone(),
                ..Default::default()
            },
            2,
        );
        want.retain(|(r, _)| !dels.contains(r));
        assert_eq!(loaded(&db).unwrap(), want);
    }

    #[test]
    fn a_chunk_that_does_not_match_its_key_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        commit(
            &db,
            &Changes {
                hist_put: puts(2..10),
                ..Default::default()
            },
            1,
        );
        {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(HISTORY_CHUNKS).unwrap();
                let recs = puts(5..9);
                t.insert((2, 0), enc(&recs).as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(matches!(loaded(&db), Err(MvccError::Corrupt(_))));
    }

    #[test]
    fn history_out_of_revision_order_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let mut bad = puts(2..6);
        bad.swap(1, 2);
        let tx = db.begin_write().unwrap();
        let ch = Changes {
            hist_put: bad,
            ..Default::default()
        };
        let meta = Meta {
            applied: 1,
            current_rev: 5,
            compact_rev: 0,
        };
        assert!(matches!(write(&tx, &ch, meta), Err(MvccError::Corrupt(_))));
        drop(tx);
        assert_eq!(loaded(&db).unwrap(), vec![]);
    }
}
