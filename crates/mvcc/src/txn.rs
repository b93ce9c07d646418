//! Writes: Put, DeleteRange and Txn (compares, branches, nested txns), with
//! validation first so that a refused request changes nothing.

use crate::error::{MvccError, Result};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::state::{key_bounds, State, Writer};
use crate::types::KeyValue;
use std::cmp::Ordering;

/// Sum of key and value bytes in an op list (recursively).
fn ops_size(ops: &[RequestOp]) -> usize {
    ops.iter()
        .map(|op| match op {
            RequestOp::Put(p) => p.key.len() + p.value.len(),
            RequestOp::Range(r) => r.key.len() + r.range_end.len(),
            RequestOp::DeleteRange(d) => d.key.len() + d.range_end.len(),
            RequestOp::Txn(t) => txn_size(t),
        })
        .sum()
}

/// Sum of key and value bytes in a txn.
pub(crate) fn txn_size(t: &TxnRequest) -> usize {
    let cmp: usize = t
        .compare
        .iter()
        .map(|c| {
            let v = match &c.target {
                CompareTarget::Value(v) => v.len(),
                _ => 8,
            };
            c.key.len() + c.range_end.len() + v
        })
        .sum();
    cmp + ops_size(&t.success) + ops_size(&t.failure)
}

impl State {
    /// Static checks of a put.
    pub(crate) fn check_put_static(&self, p: &PutRequest) -> Result<()> {
        if p.key.is_empty() {
            return Err(MvccError::EmptyKey);
        }
        if p.key.len() + p.value.len() > self.limits.max_request_bytes {
            return Err(MvccError::RequestTooLarge);
        }
        if p.ignore_value && !p.value.is_empty() {
            return Err(MvccError::ValueProvided);
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(MvccError::LeaseProvided);
        }
        Ok(())
    }

    /// Checks of a put against the current state.
    pub(crate) fn check_put(&self, p: &PutRequest) -> Result<()> {
        self.check_put_static(p)?;
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && self.get_meta(&p.key, self.current_rev).is_none() {
            return Err(MvccError::KeyNotFound);
        }
        Ok(())
    }

    /// Applies a validated put.
    pub(crate) fn put(&mut self, w: &mut Writer, p: &PutRequest) -> Result<PutResponse> {
        // The previous value is read only when something needs it.
        let prev = self.prev(&p.key, p.prev_kv || p.ignore_value || w.record_events)?;
        let value = match (&prev, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        let prev_kv = if p.prev_kv { prev.clone() } else { None };
        self.put_raw(w, p.key.clone(), value, lease, prev);
        Ok(PutResponse {
            revision: w.main,
            prev_kv,
        })
    }

    /// Applies a (validated) delete-range.
    pub(crate) fn delete_range(
        &mut self,
        w: &mut Writer,
        d: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        let bounds = key_bounds(&d.key, &d.range_end)?;
        // Values only for the response's prev_kvs.
        let victims: Vec<KeyValue> = self
            .live_in(bounds, i64::MAX)
            .map(|(r, h)| match d.prev_kv {
                true => self.kv_of(r, h),
                false => Ok(h.kv(r, bytes::Bytes::new())),
            })
            .collect::<Result<_>>()?;
        for kv in &victims {
            self.delete_raw(w, kv.key.clone())?;
        }
        Ok(DeleteRangeResponse {
            revision: w.read_rev(),
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { Vec::new() },
        })
    }

    /// Static checks of a txn: sizes, op counts, keys, ranges (both branches).
    pub(crate) fn check_txn_static(&self, t: &TxnRequest) -> Result<()> {
        let max = self.limits.max_txn_ops;
        if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
            return Err(MvccError::TooManyTxnOps);
        }
        if txn_size(t) > self.limits.max_request_bytes {
            return Err(MvccError::RequestTooLarge);
        }
        for c in &t.compare {
            key_bounds(&c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Range(r) => drop(key_bounds(&r.key, &r.range_end)?),
                RequestOp::Put(p) => self.check_put_static(p)?,
                RequestOp::DeleteRange(d) => drop(key_bounds(&d.key, &d.range_end)?),
                RequestOp::Txn(n) => self.check_txn_static(n)?,
            }
        }
        Ok(())
    }

    /// Decides every branch (compares are all evaluated before any op runs,
    /// as etcd's `compareToPath` does) and checks the chosen ops against the
    /// current state. Returns the path: one bool per txn, depth first.
    pub(crate) fn txn_path(&self, t: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let ok = self.compare_all(&t.compare)?;
        path.push(ok);
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            match op {
                RequestOp::Range(r) => drop(self.check_read_rev(r.revision, self.current_rev)?),
                RequestOp::Put(p) => self.check_put(p)?,
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(n) => self.txn_path(n, path)?,
            }
        }
        Ok(())
    }

    /// Runs a txn along a precomputed path.
    pub(crate) fn txn(
        &mut self,
        w: &mut Writer,
        t: &TxnRequest,
        path: &mut std::slice::Iter<'_, bool>,
    ) -> Result<TxnResponse> {
        let ok = *path.next().expect("txn path covers every txn");
        let ops = if ok { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r, w.read_rev())?),
                RequestOp::Put(p) => ResponseOp::Put(self.put(w, p)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_range(w, d)?),
                RequestOp::Txn(n) => ResponseOp::Txn(self.txn(w, n, path)?),
            });
        }
        Ok(TxnResponse {
            revision: w.read_rev(),
            succeeded: ok,
            responses,
        })
    }

    /// Runs a read-only txn (see [`TxnRequest::is_read_only`]) at the
    /// current revision without a writer.
    pub(crate) fn read_txn(&self, t: &TxnRequest) -> Result<TxnResponse> {
        let ok = self.compare_all(&t.compare)?;
        let ops = if ok { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r, self.current_rev)?),
                RequestOp::Txn(n) => ResponseOp::Txn(self.read_txn(n)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    return Err(MvccError::NotReadOnly)
                }
            });
        }
        Ok(TxnResponse {
            revision: self.current_rev,
            succeeded: ok,
            responses,
        })
    }

    /// Whether every compare holds.
    fn compare_all(&self, cs: &[Compare]) -> Result<bool> {
        for c in cs {
            if !self.compare(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Evaluates one compare at the current revision (etcd's
    /// `applyCompare`); values are read only for a value compare.
    pub(crate) fn compare(&self, c: &Compare) -> Result<bool> {
        let Ok(bounds) = key_bounds(&c.key, &c.range_end) else {
            return Ok(false);
        };
        let by_value = matches!(c.target, CompareTarget::Value(_));
        let mut any = false;
        for (r, h) in self.live_in(bounds, self.current_rev) {
            any = true;
            let kv = match by_value {
                true => self.kv_of(r, h)?,
                false => h.kv(r, bytes::Bytes::new()),
            };
            if !compare_kv(c, &kv) {
                return Ok(false);
            }
        }
        if !any {
            return Ok(!by_value && compare_kv(c, &KeyValue::default()));
        }
        Ok(true)
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}
