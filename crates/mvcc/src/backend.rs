//! The redb backend: table layout, loading, and writing recorded changes.
//!
//! Tables:
//! - `history`: `(main, sub)` revision -> postcard-encoded [`Record`]
//! - `leases`: lease id -> postcard-encoded [`LeaseRecord`]
//! - `meta`: `applied_index`, `current_rev`, `compact_rev` (u64)
//!
//! The applied index is written in the same write transaction as the data
//! of the entries it covers, so a crash never applies an entry twice or
//! skips one.

use crate::error::{MvccError, Result};
use crate::state::{Changes, Lease, State};
use crate::types::{LeaseRecord, Record, Revision};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

pub(crate) const HISTORY: TableDefinition<(i64, i64), &[u8]> = TableDefinition::new("history");
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
    let hist = tx.open_table(HISTORY).map_err(MvccError::storage)?;
    for item in hist.iter().map_err(MvccError::storage)? {
        let (k, v) = item.map_err(MvccError::storage)?;
        let (main, sub) = k.value();
        let rec: Record = decode(v.value())?;
        state.history.insert(Revision::new(main, sub), rec);
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

/// Writes changes and meta into an open write transaction.
pub(crate) fn write(tx: &WriteTransaction, ch: &Changes, meta: Meta) -> Result<()> {
    {
        let mut hist = tx.open_table(HISTORY).map_err(MvccError::storage)?;
        for (rev, rec) in &ch.hist_put {
            hist.insert((rev.main, rev.sub), enc(rec).as_slice())
                .map_err(MvccError::storage)?;
        }
        for rev in &ch.hist_del {
            hist.remove((rev.main, rev.sub))
                .map_err(MvccError::storage)?;
        }
    }
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
    tx.delete_table(LEASES).map_err(MvccError::storage)?;
    tx.delete_table(META).map_err(MvccError::storage)?;
    Ok(())
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("record encoding cannot fail")
}
