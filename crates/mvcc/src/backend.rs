//! The redb backend: table layout, loading, and writing recorded changes.
//!
//! Tables:
//! - `hist_meta` and `hist_vals`: the retained history in chunks keyed by
//!   their first `(main, sub)` revision ([`crate::chunk`]): metadata rows
//!   (the key index is rebuilt from them on open, no value read) and the
//!   values behind an offset table (read back one at a time). Compaction
//!   rewrites the chunks it removes revisions from, in both tables.
//! - `leases`: lease id -> postcard-encoded [`LeaseRecord`]
//! - `auth`: one row, `state` -> postcard-encoded [`AuthState`] (users,
//!   roles, permissions, the enabled flag and the auth revision; small, so
//!   written whole when it changes)
//! - `sessions`: client session id -> postcard-encoded
//!   [`crate::SessionRecord`] (exactly-once writes)
//! - `meta`: `applied_index`, `current_rev`, `compact_rev` (u64)
//! - `history_chunks` and `history`: two earlier layouts (whole records in
//!   chunks; one row per revision), moved to the current one on open.
//!
//! The applied index is written in the same write transaction as the data
//! of the entries it covers, so a crash never applies an entry twice or
//! skips one.

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use crate::auth::AuthState;
use crate::chunk;
use crate::error::{MvccError, Result};
use crate::state::{Changes, HistRec, Lease, State};
use crate::types::{LeaseRecord, Record, Revision};

pub(crate) const HIST_META: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("hist_meta");
pub(crate) const HIST_VALS: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("hist_vals");
/// Earlier layout: one row per revision (read only to migrate).
const HISTORY: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("history");
/// Earlier layout: whole records in chunks (read only to migrate).
const HISTORY_CHUNKS: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("history_chunks");
pub(crate) const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
/// Client sessions: session id -> postcard-encoded [`crate::SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const AUTH: TableDefinition<&str, &[u8]> = TableDefinition::new("auth");
const AUTH_ROW: &str = "state";

pub(crate) const APPLIED: &str = "applied_index";
pub(crate) const CURRENT: &str = "current_rev";
pub(crate) const COMPACT: &str = "compact_rev";

fn decode<'a, T: serde::Deserialize<'a>>(b: &'a [u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| MvccError::Corrupt(e.to_string()))
}

/// Moves history stored in an earlier layout to the current one, in one
/// durable write (a crash leaves either layout whole).
pub(crate) fn migrate(db: &Database) -> Result<()> {
    let mut old: Vec<(Revision, Record)> = Vec::new();
    {
        let tx = db.begin_read().map_err(MvccError::storage)?;
        match tx.open_table(HISTORY) {
            Ok(t) => {
                for item in t.iter().map_err(MvccError::storage)? {
                    let (k, v) = item.map_err(MvccError::storage)?;
                    let (main, sub) = k.value();
                    old.push((Revision::new(main, sub), decode(v.value())?));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(MvccError::storage(e)),
        }
        match tx.open_table(HISTORY_CHUNKS) {
            Ok(t) => {
                for item in t.iter().map_err(MvccError::storage)? {
                    let (k, v) = item.map_err(MvccError::storage)?;
                    let recs: Vec<(Revision, Record)> = decode(v.value())?;
                    let first = recs.first().map(|(r, _)| (r.main, r.sub));
                    if first != Some(k.value()) || recs.windows(2).any(|w| w[0].0 >= w[1].0) {
                        return Err(MvccError::Corrupt(format!(
                            "history chunk {:?} does not start at its key or is out of order",
                            k.value()
                        )));
                    }
                    old.extend(recs);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(MvccError::storage(e)),
        }
    }
    old.sort_by_key(|(r, _)| *r);
    let mut tx = db.begin_write().map_err(MvccError::storage)?;
    tx.set_durability(redb::Durability::Immediate);
    put_chunks(&tx, &old)?;
    tx.delete_table(HISTORY).map_err(MvccError::storage)?;
    tx.delete_table(HISTORY_CHUNKS)
        .map_err(MvccError::storage)?;
    tx.commit().map_err(MvccError::storage)?;
    Ok(())
}

/// Loads the key index, every revision's metadata and the leases (values
/// stay in the backend); returns the applied index.
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
    match tx.open_table(HIST_META) {
        Ok(t) => {
            let mut last: Option<Revision> = None;
            for item in t.iter().map_err(MvccError::storage)? {
                let (k, v) = item.map_err(MvccError::storage)?;
                for row in chunk::decode_meta(k.value(), v.value())? {
                    if last.is_some_and(|l| l >= row.rev) {
                        return Err(MvccError::Corrupt("history chunks overlap".into()));
                    }
                    last = Some(row.rev);
                    state.history.insert(row.rev, HistRec::stored(row));
                }
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
    match tx.open_table(AUTH) {
        Ok(t) => {
            if let Some(v) = t.get(AUTH_ROW).map_err(MvccError::storage)? {
                state.auth = decode::<AuthState>(v.value())?;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(MvccError::storage(e)),
    }
    match tx.open_table(SESSIONS) {
        Ok(t) => {
            for item in t.iter().map_err(MvccError::storage)? {
                let (_, v) = item.map_err(MvccError::storage)?;
                state.sessions.insert(decode(v.value())?);
            }
        }
        // A backend written before sessions existed.
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(MvccError::storage(e)),
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

/// Appends new revisions as chunks. Invariant: every new revision is above
/// every stored one (history only grows at the top; restores clear first).
fn put_chunks(tx: &WriteTransaction, puts: &[(Revision, Record)]) -> Result<()> {
    let mut metas = tx.open_table(HIST_META).map_err(MvccError::storage)?;
    let mut vals = tx.open_table(HIST_VALS).map_err(MvccError::storage)?;
    if let (Some((first, _)), Some(last)) =
        (puts.first(), metas.last().map_err(MvccError::storage)?)
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
    for range in chunk::split(puts) {
        let recs = &puts[range];
        let key = (recs[0].0.main, recs[0].0.sub);
        metas
            .insert(key, chunk::encode_meta(recs).as_slice())
            .map_err(MvccError::storage)?;
        let values = chunk::encode_values(recs.iter().map(|(r, rec)| (*r, rec.value.as_ref())));
        vals.insert(key, values.as_slice())
            .map_err(MvccError::storage)?;
    }
    Ok(())
}

/// Removes compacted revisions: rewrites each chunk that holds some (or
/// deletes it when none remain), in both tables.
fn delete_revisions(tx: &WriteTransaction, dels: &[Revision]) -> Result<()> {
    if dels.is_empty() {
        return Ok(());
    }
    let mut sorted = dels.to_vec();
    sorted.sort_unstable();
    let mut metas = tx.open_table(HIST_META).map_err(MvccError::storage)?;
    let mut vals = tx.open_table(HIST_VALS).map_err(MvccError::storage)?;
    let mut i = 0;
    while i < sorted.len() {
        let rev = sorted[i];
        let found = metas
            .range(..=(rev.main, rev.sub))
            .map_err(MvccError::storage)?
            .next_back()
            .transpose()
            .map_err(MvccError::storage)?
            .map(|(k, v)| (k.value(), v.value().to_vec()));
        let Some((key, meta)) = found else {
            i += 1; // not in any chunk: nothing to remove
            continue;
        };
        let mut rows = chunk::decode_meta(key, &meta)?;
        let end = rows.last().map_or(rev, |r| r.rev);
        // Every deletion up to this chunk's last revision falls in it.
        let mut j = i;
        while j < sorted.len() && sorted[j] <= end {
            j += 1;
        }
        let doomed = &sorted[i..j.max(i + 1)];
        let before = rows.len();
        rows.retain(|r| doomed.binary_search(&r.rev).is_err());
        if rows.len() != before {
            let raw = vals
                .get(key)
                .map_err(MvccError::storage)?
                .ok_or_else(|| MvccError::Corrupt(format!("history chunk {key:?} has no values")))?
                .value()
                .to_vec();
            let values = chunk::Values::parse(key, &raw)?;
            let kept: Vec<(Revision, &[u8])> = values
                .all()
                .filter(|(r, _)| doomed.binary_search(r).is_err())
                .collect();
            if kept.len() != rows.len() {
                return Err(MvccError::Corrupt(format!(
                    "history chunk {key:?}: metadata and values disagree"
                )));
            }
            metas.remove(key).map_err(MvccError::storage)?;
            vals.remove(key).map_err(MvccError::storage)?;
            if let Some(first) = rows.first() {
                let nk = (first.rev.main, first.rev.sub);
                let meta = postcard::to_allocvec(&rows).expect("meta rows encode");
                metas
                    .insert(nk, meta.as_slice())
                    .map_err(MvccError::storage)?;
                let v = chunk::encode_values(kept.into_iter());
                vals.insert(nk, v.as_slice()).map_err(MvccError::storage)?;
            }
        }
        i = j.max(i + 1);
    }
    Ok(())
}

/// Appends revisions above the stored ones (a restore's batches).
pub(crate) fn put_history(tx: &WriteTransaction, puts: &[(Revision, Record)]) -> Result<()> {
    put_chunks(tx, puts)
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
    if let Some(auth) = &ch.auth {
        let mut t = tx.open_table(AUTH).map_err(MvccError::storage)?;
        t.insert(AUTH_ROW, enc(auth).as_slice())
            .map_err(MvccError::storage)?;
    }
    if !ch.sessions.is_empty() {
        let mut sessions = tx.open_table(SESSIONS).map_err(MvccError::storage)?;
        for (id, rec) in &ch.sessions {
            match rec {
                Some(r) => sessions
                    .insert(*id, enc(r).as_slice())
                    .map_err(MvccError::storage)?,
                None => sessions.remove(*id).map_err(MvccError::storage)?,
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
    for t in [HIST_META, HIST_VALS, HISTORY, HISTORY_CHUNKS] {
        tx.delete_table(t).map_err(MvccError::storage)?;
    }
    tx.delete_table(LEASES).map_err(MvccError::storage)?;
    tx.delete_table(AUTH).map_err(MvccError::storage)?;
    tx.delete_table(SESSIONS).map_err(MvccError::storage)?;
    tx.delete_table(META).map_err(MvccError::storage)?;
    Ok(())
}

/// Number of chunk rows (tests).
#[cfg(test)]
pub(crate) fn chunk_rows(db: &Database) -> u64 {
    use redb::ReadableTableMetadata;
    let tx = db.begin_read().unwrap();
    tx.open_table(HIST_META).unwrap().len().unwrap()
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("record encoding cannot fail")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::values;

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

    /// Everything the backend holds, metadata and values read back.
    fn loaded(db: &Database) -> Result<Vec<(Revision, Record)>> {
        let mut state = State::default();
        load(db, &mut state)?;
        state
            .history
            .iter()
            .map(|(r, h)| {
                let value = values::read(db, *r)?.expect("value stored");
                Ok((*r, h.record(value)))
            })
            .collect()
    }

    #[test]
    fn history_goes_in_chunks_and_compaction_rewrites_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let n = chunk::CHUNK_RECORDS as i64 * 2 + 10;
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
        dels.extend(want[want.len() - 5..].iter().map(|(r, _)| *r));
        dels.push(third[0].0);
        dels.sort();
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
    fn earlier_layouts_are_moved_to_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db")).unwrap();
        let rows = puts(2..12);
        let chunked = puts(12..20);
        {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(HISTORY).unwrap();
                for (r, rec) in &rows {
                    t.insert((r.main, r.sub), enc(rec).as_slice()).unwrap();
                }
                let mut c = tx.open_table(HISTORY_CHUNKS).unwrap();
                c.insert((12, 0), enc(&chunked).as_slice()).unwrap();
                let mut m = tx.open_table(META).unwrap();
                m.insert(APPLIED, 1).unwrap();
                m.insert(CURRENT, 19).unwrap();
                tx.open_table(LEASES).unwrap();
            }
            tx.commit().unwrap();
        }
        migrate(&db).unwrap();
        let want: Vec<_> = rows.into_iter().chain(chunked).collect();
        assert_eq!(loaded(&db).unwrap(), want);
        // Nothing of the earlier layouts is left.
        let tx = db.begin_read().unwrap();
        assert!(tx.open_table(HISTORY).is_err());
        assert!(tx.open_table(HISTORY_CHUNKS).is_err());
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
                let mut t = tx.open_table(HIST_META).unwrap();
                let recs = puts(5..9);
                t.insert((2, 0), chunk::encode_meta(&recs).as_slice())
                    .unwrap();
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
