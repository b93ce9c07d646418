//! Range reads with etcd's semantics: limit, sort, filters, keys_only,
//! count_only, historical revisions; `count` and `more` as etcd sets them.

use crate::error::Result;
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::state::{key_bounds, State};
use crate::types::KeyValue;
use bytes::Bytes;

impl State {
    /// Serves a range at `current` (the latest revision visible to the caller).
    pub(crate) fn range(&self, req: &RangeRequest, current: i64) -> Result<RangeResponse> {
        let bounds = key_bounds(&req.key, &req.range_end)?;
        let rev = self.check_read_rev(req.revision, current)?;
        let header = self.current_rev.max(current);
        let mut resp = RangeResponse {
            revision: header,
            ..Default::default()
        };
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let key_order = matches!(req.sort_target, SortTarget::Key)
            && matches!(req.sort_order, SortOrder::None | SortOrder::Ascend);
        if req.count_only {
            resp.count = self.live_in(bounds, rev).count() as i64;
            return Ok(resp);
        }
        // Like etcd: fetch limit + 1 when nothing forces a full scan.
        let fetch = if req.limit > 0 && key_order && !filtered {
            Some(req.limit as usize + 1)
        } else {
            None
        };
        let mut count = 0i64;
        let mut kvs: Vec<KeyValue> = Vec::new();
        // Values are needed unless only keys go back, or a value sort.
        let values = !req.keys_only || matches!(req.sort_target, SortTarget::Value);
        for (r, h) in self.live_in(bounds, rev) {
            count += 1;
            if fetch.is_some_and(|f| kvs.len() >= f) {
                continue;
            }
            kvs.push(match values {
                true => self.kv_of(r, h)?,
                false => h.kv(r, Bytes::new()),
            });
        }
        resp.count = count;
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        sort(&mut kvs, req.sort_order, req.sort_target);
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

/// Sorts as etcd does: `None` with a non-key target means ascending; ties
/// keep key order (stable sort over key-ordered input).
pub(crate) fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ => kvs.sort_by(cmp),
    }
}
