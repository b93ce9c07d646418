//! Reads that do not hold the store's lock while they touch the disk, nor
//! for long while they walk memory: the lock the Raft driver needs to
//! apply.
//!
//! - [`RangeRead`]: a range in steps. Each [`Store::range_step`] walks at
//!   most a given number of keys of the index under the caller's lock,
//!   keeping metadata and the values still in memory; [`RangeRead::finish`]
//!   reads the other values from the backend without the lock.
//! - [`HistoryRead`]: every retained revision up to a revision, in order
//!   and in steps, for hashes and snapshot images; [`HistoryRead::load`]
//!   reads a step's values from the backend, in chunk order.
//!
//! Consistency: all steps read at one revision `R`. A compaction at `C <=
//! R` removes nothing visible at `R`, so steps before and after it agree;
//! a compaction past `R` makes the read fail as etcd's would
//! (`mvcc: required revision has been compacted`). Values are immutable
//! once written, and a value the backend no longer holds was compacted
//! past `R`.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{MvccError, Result};
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::state::key_bounds;
use crate::store::Store;
use crate::types::{KeyValue, Record, Revision};
use crate::values::ValueStore;

/// A range being read in steps ([`Store::range_start`]).
#[derive(Debug)]
pub struct RangeRead {
    req: RangeRequest,
    /// The revision read at.
    rev: i64,
    /// Where the next step starts (`None`: done).
    next: Option<(Bound<Bytes>, Bound<Bytes>)>,
    count: i64,
    fetch: Option<usize>,
    with_values: bool,
    /// Key-values found, and the revision whose value the backend holds.
    kvs: Vec<(KeyValue, Option<Revision>)>,
    header: i64,
    values: Arc<ValueStore>,
}

impl Store {
    /// Starts a range read at the current revision (or `req.revision`).
    pub fn range_start(&self, req: &RangeRequest) -> Result<RangeRead> {
        let s = &self.state;
        let bounds = key_bounds(&req.key, &req.range_end)?;
        let rev = s.check_read_rev(req.revision, s.current_rev)?;
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let key_order = matches!(req.sort_target, SortTarget::Key)
            && matches!(req.sort_order, SortOrder::None | SortOrder::Ascend);
        // Like etcd: fetch limit + 1 when nothing forces a full scan.
        let fetch = if req.count_only {
            Some(0)
        } else if req.limit > 0 && key_order && !filtered {
            Some(req.limit as usize + 1)
        } else {
            None
        };
        Ok(RangeRead {
            req: req.clone(),
            rev,
            next: Some(bounds),
            count: 0,
            fetch,
            with_values: !req.count_only
                && (!req.keys_only || matches!(req.sort_target, SortTarget::Value)),
            kvs: Vec::new(),
            header: s.current_rev,
            values: self.values.clone(),
        })
    }

    /// Walks up to `max_keys` keys of `r`; true when the walk is done.
    pub fn range_step(&self, r: &mut RangeRead, max_keys: usize) -> Result<bool> {
        let s = &self.state;
        if s.compact_rev > r.rev {
            return Err(MvccError::Compacted);
        }
        let Some(bounds) = r.next.take() else {
            return Ok(true);
        };
        let end = bounds.1.clone();
        for (walked, (key, ki)) in s.index.range(bounds).enumerate() {
            if walked == max_keys {
                r.next = Some((Bound::Included(key.clone()), end));
                return Ok(false);
            }
            let Some(rev) = ki.visible_at(r.rev) else {
                continue;
            };
            r.count += 1;
            if r.fetch.is_some_and(|f| r.kvs.len() >= f) {
                continue;
            }
            let h = &s.history[&rev];
            let item = match (&h.value, r.with_values) {
                (Some(v), true) => (h.kv(rev, v.clone()), None),
                (None, true) => (h.kv(rev, Bytes::new()), Some(rev)),
                (_, false) => (h.kv(rev, Bytes::new()), None),
            };
            r.kvs.push(item);
        }
        Ok(true)
    }

    /// Every retained revision with main revision `<= upto` (0: current),
    /// to read in steps ([`Store::history_step`]).
    pub fn history_read(&self, upto: i64) -> Result<HistoryRead> {
        let s = &self.state;
        let rev = s.check_read_rev(upto, s.current_rev)?;
        Ok(HistoryRead {
            next: Some(Revision::new(0, 0)),
            end: Revision::new(rev + 1, 0),
            revision: rev,
            compact_revision: s.compact_rev,
            values: self.values.clone(),
        })
    }

    /// The next at most `max` revisions of `r`, in order (empty: done).
    /// Values the backend holds are left empty: [`HistoryRead::load`].
    pub fn history_step(&self, r: &mut HistoryRead, max: usize) -> Result<Vec<HistoryItem>> {
        let s = &self.state;
        if s.compact_rev != r.compact_revision {
            // What is retained changed under the read.
            return Err(MvccError::Compacted);
        }
        let Some(from) = r.next.take() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(max.min(4096));
        for (rev, h) in s.history.range(from..r.end) {
            if out.len() == max {
                r.next = Some(*rev);
                break;
            }
            out.push(HistoryItem {
                revision: *rev,
                in_backend: h.value.is_none() && !h.tombstone,
                record: h.record(h.value.clone().unwrap_or_default()),
            });
        }
        Ok(out)
    }
}

impl RangeRead {
    /// How many values [`RangeRead::finish`] reads from the backend.
    pub fn backend_reads(&self) -> usize {
        self.kvs.iter().filter(|(_, r)| r.is_some()).count()
    }

    /// Reads the values still missing (from the backend, in revision
    /// order) and applies etcd's filters, sort and limit.
    pub fn finish(self) -> Result<RangeResponse> {
        let RangeRead {
            req,
            count,
            mut kvs,
            header,
            values,
            ..
        } = self;
        let mut missing: Vec<(Revision, usize)> = kvs
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r))| r.map(|r| (r, i)))
            .collect();
        if !missing.is_empty() {
            missing.sort_unstable();
            let revs: Vec<Revision> = missing.iter().map(|(r, _)| *r).collect();
            let got = values.get_many(&revs).map_err(compacted_if_gone)?;
            for ((_, i), v) in missing.into_iter().zip(got) {
                kvs[i].0.value = v;
            }
        }
        let mut kvs: Vec<KeyValue> = kvs.into_iter().map(|(kv, _)| kv).collect();
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        crate::range::sort(&mut kvs, req.sort_order, req.sort_target);
        let mut resp = RangeResponse {
            revision: header,
            count,
            ..Default::default()
        };
        if req.count_only {
            return Ok(resp);
        }
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        resp.kvs = kvs;
        Ok(resp)
    }
}

/// A value that left the backend was compacted past the read's revision.
fn compacted_if_gone(e: MvccError) -> MvccError {
    match e {
        MvccError::Storage(m) if m.contains("is not in the backend") => MvccError::Compacted,
        e => e,
    }
}

/// Retained history being read in steps ([`Store::history_read`]).
#[derive(Debug)]
pub struct HistoryRead {
    next: Option<Revision>,
    end: Revision,
    /// The revision read up to.
    pub revision: i64,
    /// The compaction revision when the read started.
    pub compact_revision: i64,
    values: Arc<ValueStore>,
}

/// One retained revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Its revision.
    pub revision: Revision,
    /// What it wrote (the value empty until loaded, if in the backend).
    pub record: Record,
    in_backend: bool,
}

impl HistoryRead {
    /// Calls `f` on each of `items` in order with its value, reading those
    /// the backend holds chunk by chunk without the store's lock: at most
    /// one chunk of values is in memory at a time, however large the step.
    pub fn visit(
        &self,
        items: &[HistoryItem],
        mut f: impl FnMut(&HistoryItem, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let backend: Vec<usize> = (0..items.len()).filter(|&i| items[i].in_backend).collect();
        let revs: Vec<Revision> = backend.iter().map(|&i| items[i].revision).collect();
        let mut next = 0;
        self.values
            .visit(&revs, |j, v| {
                let i = backend[j];
                // The items before it hold their values (revision order).
                while next < i {
                    f(&items[next], &items[next].record.value)?;
                    next += 1;
                }
                f(&items[i], v)?;
                next = i + 1;
                Ok(())
            })
            .map_err(compacted_if_gone)?;
        for it in &items[next..] {
            f(it, &it.record.value)?;
        }
        Ok(())
    }

    /// Reads the values of `items` that the backend holds, in chunk order,
    /// without the store's lock.
    pub fn load(&self, items: &mut [HistoryItem]) -> Result<()> {
        let need: Vec<usize> = (0..items.len()).filter(|&i| items[i].in_backend).collect();
        if need.is_empty() {
            return Ok(());
        }
        let revs: Vec<Revision> = need.iter().map(|&i| items[i].revision).collect();
        let got = self.values.get_many(&revs).map_err(compacted_if_gone)?;
        for (i, v) in need.into_iter().zip(got) {
            items[i].record.value = v;
            items[i].in_backend = false;
        }
        Ok(())
    }
}
