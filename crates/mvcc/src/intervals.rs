//! etcd's `checkIntervals`: inside one branch of a txn (nested txns
//! included) a key may be put at most once and never both put and deleted,
//! otherwise `etcdserver: duplicate key given in txn request`. The then and
//! else branches of a nested txn exclude each other, so they may share keys.

use crate::error::{MvccError, Result};
use crate::request::RequestOp;
use crate::state::key_bounds;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};

type Interval = (Bound<Bytes>, Bound<Bytes>);

fn hits(dels: &[Interval], k: &Bytes) -> bool {
    dels.iter().any(|d| d.contains(k))
}

/// Checks one branch; returns its put keys and delete ranges.
pub(crate) fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Interval>)> {
    let dup = || MvccError::DuplicateKey;
    let mut dels: Vec<Interval> = Vec::new();
    for op in ops {
        if let RequestOp::DeleteRange(d) = op {
            dels.push(key_bounds(&d.key, &d.range_end)?);
        }
    }
    let mut puts: BTreeSet<Bytes> = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (then_puts, then_dels) = check_intervals(&t.success)?;
        let (else_puts, else_dels) = check_intervals(&t.failure)?;
        for k in &then_puts {
            if puts.contains(k) || hits(&dels, k) {
                return Err(dup());
            }
            puts.insert(k.clone());
        }
        for k in &else_puts {
            if (puts.contains(k) && !then_puts.contains(k)) || hits(&dels, k) {
                return Err(dup());
            }
            puts.insert(k.clone());
        }
        dels.extend(then_dels);
        dels.extend(else_dels);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(dup());
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}
