//! [`Store`]: the public state machine, in memory and persisted in redb.
//!
//! # Durability invariant
//!
//! Applied batches live in memory only; [`Store::checkpoint`] writes
//! everything since the previous checkpoint in one durable redb
//! transaction and returns the applied index it covers (dropping the store
//! checkpoints too). The Raft WAL is the source of truth and replays
//! anything lost in a crash. **The server must only
//! compact the WAL below [`Store::durable_applied_index`]**: entries above it
//! may be lost from the backend on a crash and are replayed from the WAL,
//! which is safe because the applied index travels in the same redb
//! transaction as the data (replaying an index `<= applied_index()` is a
//! no-op).

use crate::apply::Applied;
use crate::backend;
use crate::command::Command;
use crate::config::Limits;
use crate::error::{MvccError, Result};
use crate::hash::HashKv;
use crate::request::{LeaseTimeToLive, RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use crate::state::State;
use crate::types::{Event, KeyValue, LeaseRecord, Revision};
use crate::values::ValueStore;
use crate::watch::EventsError;
use bytes::Bytes;
use redb::Database;
use std::path::Path;
use std::sync::Arc;

/// The MVCC state machine over a redb file.
#[derive(Debug)]
pub struct Store {
    /// The backend and its value cache.
    pub(crate) values: Arc<ValueStore>,
    pub(crate) state: State,
    pub(crate) applied: u64,
    pub(crate) durable_applied: u64,
    pub(crate) poisoned: bool,
    /// The background checkpoint thread, once started (at most one
    /// checkpoint in flight on it).
    pub(crate) worker: Option<crate::checkpoint::Worker>,
}

impl Store {
    /// Opens (or creates) the store at `path` with default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path, Limits::default())
    }

    /// Opens (or creates) the store at `path`; rebuilds the in-memory index.
    pub fn open_with(path: impl AsRef<Path>, limits: Limits) -> Result<Store> {
        let db = Database::builder()
            .set_cache_size(limits.backend_cache_bytes)
            .create(path)
            .map_err(MvccError::storage)?;
        backend::migrate(&db)?;
        let values = Arc::new(ValueStore::new(db, limits.value_cache_bytes));
        let mut state = State {
            limits,
            values: Some(values.clone()),
            ..Default::default()
        };
        let applied = backend::load(&values.db(), &mut state)?;
        Ok(Store {
            values,
            state,
            applied,
            durable_applied: applied,
            poisoned: false,
            worker: None,
        })
    }

    /// Applies one entry. `None` when `index <= applied_index()` (replay).
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Option<Applied>> {
        let mut out = self.apply_batch(&[(index, cmd.clone())])?;
        Ok(out.pop())
    }

    /// Applies entries to the in-memory state, which serves every read.
    /// The backend is written only by [`Store::checkpoint`], one durable
    /// transaction for everything applied since the last one: per-batch
    /// transactions cost a copy-on-write page path each and, without
    /// fsync, keep freed pages from being reused (the file balloons).
    /// Entries at or below the applied index are skipped; indexes must
    /// increase. A request error is reported in [`Applied::result`] and
    /// still consumes the index. An `Err` is a backend failure: the store is
    /// then poisoned and must be reopened.
    pub fn apply_batch(&mut self, entries: &[(u64, Command)]) -> Result<Vec<Applied>> {
        if self.poisoned {
            return Err(MvccError::Storage(
                "store poisoned by an earlier failure".into(),
            ));
        }
        let mut out = Vec::with_capacity(entries.len());
        let before = self.applied;
        for (index, cmd) in entries {
            if *index <= self.applied {
                continue;
            }
            let (result, events) = self.state.apply_command(*index, cmd);
            // A value the backend could not give back is not the request's
            // fault: the member cannot apply in step with the others.
            if let Err(e @ (MvccError::Storage(_) | MvccError::Corrupt(_))) = &result {
                self.poisoned = true;
                return Err(e.clone());
            }
            self.applied = *index;
            out.push(Applied {
                index: *index,
                result,
                events,
                revision: self.state.current_rev,
            });
        }
        assert!(self.applied >= before, "applied index went backwards");
        Ok(out)
    }

    /// Whether applying builds watch events ([`Applied::events`]); on by
    /// default. A server with no watchers turns them off: building them was
    /// a large allocation per put that nobody read. Events skipped this way
    /// are still in history ([`Store::events_since`]).
    pub fn set_events(&mut self, on: bool) {
        self.state.events_off = !on;
    }

    /// Changes applied in memory and not yet written to the backend (they
    /// are written, durably, by the next [`Store::checkpoint`]).
    pub fn pending_changes(&self) -> usize {
        let c = &self.state.changes;
        c.hist_put.len()
            + c.hist_del.len()
            + c.leases.len()
            + usize::from(c.auth.is_some())
            + c.sessions.len()
    }

    /// Bytes of values held in memory: written since the last finished
    /// checkpoint (a checkpoint moves them to the backend and its cache).
    pub fn resident_value_bytes(&self) -> usize {
        self.state.resident_bytes
    }

    /// Bytes in the cache of values read back from the backend.
    pub fn cached_value_bytes(&self) -> u64 {
        self.values.cached_bytes()
    }

    /// Commits durably (fsync); everything applied so far survives a crash.
    /// Waits for a background checkpoint first. Returns the durable
    /// applied index.
    pub fn checkpoint(&mut self) -> Result<u64> {
        self.wait_checkpoint()?;
        let job = self.take_checkpoint_job()?;
        let r = job.run();
        self.finish_checkpoint(r)
    }

    /// Shrinks the backend file to what it holds (etcd's Defragment):
    /// writes everything applied durably, then moves the live pages down
    /// and truncates the file. Nothing else may use the backend meanwhile
    /// (the caller holds the store exclusively); slow on a large backend,
    /// as etcd's is. Returns the file's size before and after.
    pub fn defragment(&mut self, path: &Path) -> Result<(u64, u64)> {
        self.checkpoint()?;
        let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        self.values.db_mut().compact().map_err(MvccError::storage)?;
        Ok((before, size()))
    }

    /// Marks the store unusable: nothing more is applied or written to the
    /// backend, not even by the checkpoint on drop. For a member that
    /// cannot go on, whose memory may be ahead of what it applied in order.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// Applied index covered by the last durable checkpoint: the WAL may be
    /// compacted up to here, never beyond.
    pub fn durable_applied_index(&self) -> u64 {
        self.durable_applied
    }

    /// Current main revision.
    pub fn current_revision(&self) -> i64 {
        self.state.current_rev
    }

    /// Compaction revision (0 = never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.state.compact_rev
    }

    /// Every revision the store retains, in revision order: all after the
    /// compaction revision, and each live key's version at or before it.
    /// A deletion is `(revision, key-value with only the key, true)`, as
    /// etcd stores a tombstone.
    pub fn retained(&self) -> Result<Vec<(Revision, KeyValue, bool)>> {
        self.state
            .history
            .iter()
            .map(|(rev, h)| {
                let kv = if h.tombstone {
                    KeyValue {
                        key: h.key.clone(),
                        ..Default::default()
                    }
                } else {
                    self.state.kv_of(*rev, h)?
                };
                Ok((*rev, kv, h.tombstone))
            })
            .collect()
    }

    /// Serves a range read at the current revision (or `req.revision`).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.state.range(req, self.state.current_rev)
    }

    /// Serves a txn whose ops are all ranges (see
    /// [`TxnRequest::is_read_only`]) at the current revision; a txn that
    /// writes is refused.
    pub fn read_txn(&self, t: &TxnRequest) -> Result<TxnResponse> {
        if !t.is_read_only() {
            return Err(MvccError::NotReadOnly);
        }
        self.state.check_txn_static(t)?;
        self.state.read_txn(t)
    }

    /// Events with revision `>= start_rev` for `[key, range_end)` (empty key
    /// = all keys), in order; `limit` (0 = all) is rounded up to the end of
    /// a main revision, so resuming at `last.revision.main + 1` is exact.
    pub fn events_since(
        &self,
        start_rev: i64,
        key: &Bytes,
        range_end: &Bytes,
        limit: usize,
    ) -> Result<Vec<Event>, EventsError> {
        self.state.events_since(start_rev, key, range_end, limit)
    }

    /// HashKV at `rev` (0 = current).
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv> {
        self.state.hash_kv(rev)
    }

    /// Leader only: leases expired at `now_ms`; propose a `LeaseRevoke` for each.
    pub fn expired_leases(&self, now_ms: i64) -> Vec<i64> {
        self.state.expired_leases(now_ms)
    }

    /// Leader only, on becoming leader: restart lease clocks from their
    /// remaining (checkpointed) TTLs.
    pub fn lease_promote(&mut self, now_ms: i64) {
        self.state.lease_promote(now_ms)
    }

    /// Leader only: a keep-alive. Returns the TTL.
    pub fn lease_renew(&mut self, id: i64, now_ms: i64) -> Result<i64> {
        self.state.lease_renew(id, now_ms)
    }

    /// Leader only: remaining TTLs to propose in a `LeaseCheckpoint`
    /// (rounded up to whole seconds, at most the granted TTL).
    pub fn lease_remaining(&self, now_ms: i64) -> Vec<(i64, i64)> {
        self.state.lease_remaining(now_ms)
    }

    /// Sets this member's clock (ms on the same scale as the `now_ms`
    /// given to the lease queries) for what is applied next: a lease
    /// granted then expires `ttl` after this time, whichever member
    /// proposed it. Without it the grant's own `now_ms` is used.
    pub fn set_clock(&mut self, now_ms: i64) {
        self.state.local_now_ms = Some(now_ms);
    }

    /// Lease TimeToLive at `now_ms` (whole seconds left, as etcd answers,
    /// never more than granted), with attached keys when `keys`.
    pub fn lease_time_to_live(&self, id: i64, now_ms: i64, keys: bool) -> Result<LeaseTimeToLive> {
        self.state.lease_ttl(id, now_ms, keys)
    }

    /// The auth store: users, roles, permissions, the enabled flag and
    /// the auth revision.
    pub fn auth(&self) -> &crate::auth::AuthState {
        &self.state.auth
    }

    /// Keys attached to lease `id` (empty for an unknown lease).
    pub fn lease_keys(&self, id: i64) -> Vec<bytes::Bytes> {
        self.state
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The client sessions of exactly-once writes, in id order.
    pub fn sessions(&self) -> Vec<crate::SessionRecord> {
        self.state.sessions.records().cloned().collect()
    }

    /// All leases, in id order.
    pub fn leases(&self) -> Vec<LeaseRecord> {
        self.state.leases.values().map(|l| l.rec.clone()).collect()
    }
}

impl Drop for Store {
    /// A clean close keeps what was applied (a crash relies on the WAL).
    fn drop(&mut self) {
        let _ = self.wait_checkpoint();
        if !self.poisoned && self.applied > self.durable_applied {
            let _ = self.checkpoint();
        }
    }
}
