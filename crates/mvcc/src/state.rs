//! The in-memory state machine: key index, retained history (metadata,
//! and values until the backend holds them), leases, revision counters,
//! and the list of changes the backend must persist.
//!
//! Everything is applied here first; `store.rs` writes the recorded
//! [`Changes`] into the same redb transaction as the applied index.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::AuthState;
use crate::chunk::MetaRow;
use crate::config::Limits;
use crate::error::{MvccError, Result};
use crate::history::History;
use crate::keymap::KeyMap;
use crate::types::{Event, EventType, KeyValue, LeaseRecord, Record, Revision};
use crate::values::ValueStore;

/// One revision of the history in memory: its metadata, and its value
/// until a checkpoint has written it to the backend (`None` after; then
/// [`State::value`] reads it back through the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistRec {
    pub(crate) key: Bytes,
    pub(crate) value: Option<Bytes>,
    pub(crate) create_revision: i64,
    pub(crate) version: i64,
    pub(crate) lease: i64,
    pub(crate) tombstone: bool,
}

impl HistRec {
    /// A revision the backend holds (loaded on open).
    pub(crate) fn stored(row: MetaRow) -> HistRec {
        HistRec {
            key: row.key,
            value: None,
            create_revision: row.create_revision,
            version: row.version,
            lease: row.lease,
            tombstone: row.tombstone,
        }
    }

    /// A revision just written, value in memory.
    pub(crate) fn fresh(r: &Record) -> HistRec {
        HistRec {
            key: r.key.clone(),
            value: Some(r.value.clone()),
            create_revision: r.create_revision,
            version: r.version,
            lease: r.lease,
            tombstone: r.tombstone,
        }
    }

    /// The whole record, with its value.
    pub(crate) fn record(&self, value: Bytes) -> Record {
        Record {
            key: self.key.clone(),
            value,
            create_revision: self.create_revision,
            version: self.version,
            lease: self.lease,
            tombstone: self.tombstone,
        }
    }

    /// The key-value at `rev`, with `value`.
    pub(crate) fn kv(&self, rev: Revision, value: Bytes) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision: rev.main,
            version: self.version,
            value,
            lease: self.lease,
        }
    }
}

/// Changes to persist, in order.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) hist_put: Vec<(Revision, Record)>,
    pub(crate) hist_del: Vec<Revision>,
    /// `(id, Some(record))` = upsert, `(id, None)` = delete; in order.
    pub(crate) leases: Vec<(i64, Option<LeaseRecord>)>,
    /// The auth state, once changed (it is small: written whole).
    pub(crate) auth: Option<AuthState>,
    /// Client sessions, as leases: upsert or delete, in order.
    pub(crate) sessions: Vec<(u64, Option<crate::SessionRecord>)>,
}

impl Changes {
    /// Takes the changes, leaving empty lists sized for as many puts as
    /// were taken: the next checkpoint's list is allocated once, not grown
    /// by doubling from nothing (each growth a copy into fresh memory).
    pub(crate) fn take(&mut self) -> Changes {
        let next = Changes {
            hist_put: Vec::with_capacity(self.hist_put.len()),
            ..Changes::default()
        };
        std::mem::replace(self, next)
    }
}

/// A lease and its volatile bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) rec: LeaseRecord,
    /// Keys currently attached (rebuilt on open).
    pub(crate) keys: BTreeSet<Bytes>,
    /// Leader-local expiry (ms); never part of the replicated state.
    pub(crate) expiry_ms: Option<i64>,
}

impl Lease {
    /// A lease loaded from storage or a snapshot: keys are re-attached by
    /// `rebuild`, and the expiry is leader-local, so neither is restored.
    pub(crate) fn restored(rec: LeaseRecord) -> Self {
        Lease {
            rec,
            keys: Default::default(),
            expiry_ms: None,
        }
    }
}

/// The whole state machine in memory (values excepted, once durable).
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) index: KeyMap,
    pub(crate) history: History,
    /// The backend's values (`None` only for a state without a backend,
    /// whose values all stay in memory).
    pub(crate) values: Option<Arc<ValueStore>>,
    pub(crate) leases: BTreeMap<i64, Lease>,
    /// Users, roles, permissions, the enabled flag and the auth revision.
    pub(crate) auth: AuthState,
    /// Client sessions of exactly-once writes (`session.rs`).
    pub(crate) sessions: crate::session::Sessions,
    pub(crate) current_rev: i64,
    pub(crate) compact_rev: i64,
    pub(crate) limits: Limits,
    pub(crate) changes: Changes,
    /// Applying builds no watch events ([`crate::Store::set_events`]).
    pub(crate) events_off: bool,
    /// Bytes of values held in memory (written since the last checkpoint
    /// that finished).
    pub(crate) resident_bytes: usize,
    /// This member's clock for lease expiries set while applying
    /// ([`crate::Store::set_clock`]); `None`: the command's own time.
    pub(crate) local_now_ms: Option<i64>,
}

/// An open write transaction: one main revision, increasing subs.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) main: i64,
    pub(crate) sub: i64,
    pub(crate) events: Vec<Event>,
    /// Build `events` (off when nobody watches).
    pub(crate) record_events: bool,
}

impl Writer {
    /// The revision reads inside this txn see (its own writes included).
    pub(crate) fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.main - 1
        }
    }
}

/// Key bounds of `[key, range_end)` following etcd's conventions.
pub(crate) fn key_bounds(key: &Bytes, range_end: &Bytes) -> Result<(Bound<Bytes>, Bound<Bytes>)> {
    if key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if range_end.is_empty() {
        return Ok((Bound::Included(key.clone()), Bound::Included(key.clone())));
    }
    if range_end.as_ref() == b"\0" {
        return Ok((Bound::Included(key.clone()), Bound::Unbounded));
    }
    if range_end < key {
        return Err(MvccError::InvalidRange);
    }
    Ok((
        Bound::Included(key.clone()),
        Bound::Excluded(range_end.clone()),
    ))
}

impl State {
    /// Checks a read revision (<= 0 = current) and returns the one to use.
    pub(crate) fn check_read_rev(&self, rev: i64, current: i64) -> Result<i64> {
        if rev <= 0 {
            return Ok(current);
        }
        if rev > current {
            return Err(MvccError::FutureRevision);
        }
        if rev < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// Starts a write transaction at the next main revision.
    pub(crate) fn writer(&self) -> Writer {
        Writer {
            main: self.current_rev + 1,
            sub: 0,
            events: Vec::new(),
            record_events: !self.events_off,
        }
    }

    /// Ends a write transaction; bumps the revision when it wrote anything.
    pub(crate) fn finish(&mut self, w: Writer) -> Vec<Event> {
        if w.sub > 0 {
            assert_eq!(w.main, self.current_rev + 1, "revision must advance by one");
            self.current_rev = w.main;
        }
        w.events
    }

    /// Live revisions in bounds at `rev`, in key order (metadata only).
    pub(crate) fn live_in(
        &self,
        bounds: (Bound<Bytes>, Bound<Bytes>),
        rev: i64,
    ) -> impl Iterator<Item = (Revision, &HistRec)> + '_ {
        self.index.range(bounds).filter_map(move |(_, ki)| {
            let r = ki.visible_at(rev)?;
            Some((
                r,
                self.history.get(&r).expect("indexed revision in history"),
            ))
        })
    }

    /// The value of revision `rev` (`h` is its history entry): in memory
    /// until a checkpoint writes it, then from the backend.
    pub(crate) fn value(&self, rev: Revision, h: &HistRec) -> Result<Bytes> {
        match (&h.value, &self.values) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(values)) => values.get(rev),
            (None, None) => Err(MvccError::Storage(format!(
                "value of revision {rev:?} is neither in memory nor in a backend"
            ))),
        }
    }

    /// The key-value at `rev`, value included.
    pub(crate) fn kv_of(&self, rev: Revision, h: &HistRec) -> Result<KeyValue> {
        Ok(h.kv(rev, self.value(rev, h)?))
    }

    /// The revision holding `key`'s live value at `rev`, and its entry.
    pub(crate) fn get_meta(&self, key: &[u8], rev: i64) -> Option<(Revision, &HistRec)> {
        let r = self.index.get(key)?.visible_at(rev)?;
        Some((r, &self.history[&r]))
    }

    /// `key`'s live key-value now, its value read only when `with_value`
    /// (otherwise empty): a put needs the previous version's metadata, and
    /// its value only for `prev_kv`, `ignore_value` or a watcher.
    pub(crate) fn prev(&self, key: &[u8], with_value: bool) -> Result<Option<KeyValue>> {
        match self.get_meta(key, i64::MAX) {
            None => Ok(None),
            Some((r, h)) if with_value => self.kv_of(r, h).map(Some),
            Some((r, h)) => Ok(Some(h.kv(r, Bytes::new()))),
        }
    }

    /// Writes one record at the writer's next sub-revision; `prev_kv` is the
    /// key's live value before it (the caller looked it up already).
    fn record(&mut self, w: &mut Writer, rec: Record, prev_kv: Option<KeyValue>) -> Revision {
        let rev = Revision::new(w.main, w.sub);
        w.sub += 1;
        let tomb = rec.tombstone;
        match self.index.get_mut(&rec.key) {
            Some(ki) => ki.push(rev, tomb),
            None => self.index.entry(&rec.key).push(rev, tomb),
        }
        if w.record_events {
            let kv = if tomb {
                KeyValue {
                    key: rec.key.clone(),
                    mod_revision: rev.main,
                    ..Default::default()
                }
            } else {
                rec.to_kv(rev)
            };
            let kind = if tomb {
                EventType::Delete
            } else {
                EventType::Put
            };
            w.events.push(Event {
                kind,
                kv,
                prev_kv,
                revision: rev,
            });
        }
        self.resident_bytes += rec.value.len();
        self.history.insert(rev, HistRec::fresh(&rec));
        self.changes.hist_put.push((rev, rec));
        rev
    }

    /// Writes `key = value` with `lease` (already validated).
    /// `prev` is the key's live key-value ([`State::prev`]; its value is
    /// needed only for watch events).
    pub(crate) fn put_raw(
        &mut self,
        w: &mut Writer,
        key: Bytes,
        value: Bytes,
        lease: i64,
        prev: Option<KeyValue>,
    ) {
        debug_assert_eq!(
            prev.as_ref().map(|p| p.mod_revision),
            self.get_meta(&key, i64::MAX).map(|(r, _)| r.main)
        );
        let (create, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (w.main, 1),
        };
        if let Some(p) = &prev {
            if p.lease != 0 && p.lease != lease {
                if let Some(l) = self.leases.get_mut(&p.lease) {
                    l.keys.remove(&key);
                }
            }
        }
        if lease != 0 {
            let l = self
                .leases
                .get_mut(&lease)
                .expect("lease validated before put");
            l.keys.insert(key.clone());
        }
        let rec = Record {
            key,
            value,
            create_revision: create,
            version,
            lease,
            tombstone: false,
        };
        self.record(w, rec, prev);
    }

    /// Deletes a live key (writes a tombstone), detaching its lease.
    pub(crate) fn delete_raw(&mut self, w: &mut Writer, key: Bytes) -> Result<()> {
        let prev = self.prev(&key, w.record_events)?;
        if let Some(p) = &prev {
            if p.lease != 0 {
                if let Some(l) = self.leases.get_mut(&p.lease) {
                    l.keys.remove(&key);
                }
            }
        }
        let rec = Record {
            key,
            value: Bytes::new(),
            create_revision: 0,
            version: 0,
            lease: 0,
            tombstone: true,
        };
        self.record(w, rec, prev);
        Ok(())
    }

    /// Rebuilds the key index and lease attachments from history (on open / restore).
    pub(crate) fn rebuild(&mut self) {
        self.index.clear();
        for l in self.leases.values_mut() {
            l.keys.clear();
        }
        for (rev, rec) in self.history.iter() {
            self.index.entry(&rec.key).push(*rev, rec.tombstone);
        }
        for ki in self.index.values() {
            if let Some((r, false)) = ki.last() {
                let rec = &self.history[&r];
                if rec.lease != 0 {
                    if let Some(l) = self.leases.get_mut(&rec.lease) {
                        l.keys.insert(rec.key.clone());
                    }
                }
            }
        }
    }
}
