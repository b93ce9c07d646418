//! Property test: the store against a simple BTreeMap model that keeps a
//! full copy of the key space at every revision.

mod common;
use bytes::Bytes;
use common::H;
use concord_mvcc::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

type Map = BTreeMap<Bytes, KeyValue>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8, u8),
    Delete(u8, Option<u8>),
    Range {
        key: u8,
        end: Option<u8>,
        rev: i64,
        limit: i64,
        order: u8,
        target: u8,
        min_mod: i64,
    },
}

#[derive(Debug, Clone)]
enum Step {
    Op(Op),
    Txn {
        key: u8,
        version: i64,
        result: u8,
        success: Vec<Op>,
        failure: Vec<Op>,
    },
    Compact(i64),
    Reopen,
    /// A checkpoint: written values leave memory (read back from redb).
    Checkpoint,
    Grant(u8),
    Revoke(u8),
}

fn key(k: u8) -> Bytes {
    Bytes::from(vec![b'a' + k])
}

fn bounds(k: u8, end: Option<u8>) -> (Bytes, Bytes) {
    match end {
        None => (key(k), Bytes::new()),
        Some(9) => (key(k), Bytes::from_static(b"\0")),
        Some(e) => (key(k), key(k.max(e) + 1)),
    }
}

fn in_range(kv: &Bytes, (k, e): &(Bytes, Bytes)) -> bool {
    if e.is_empty() {
        kv == k
    } else if e.as_ref() == b"\0" {
        kv >= k
    } else {
        kv >= k && kv < e
    }
}

fn range_req(op: &Op) -> RangeRequest {
    let Op::Range {
        key: k,
        end,
        rev,
        limit,
        order,
        target,
        min_mod,
    } = op
    else {
        unreachable!()
    };
    let (key, range_end) = bounds(*k, *end);
    let sort_order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][*order as usize];
    let sort_target = [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ][*target as usize];
    RangeRequest {
        key,
        range_end,
        revision: *rev,
        limit: *limit,
        sort_order,
        sort_target,
        min_mod_revision: *min_mod,
        ..Default::default()
    }
}

#[derive(Default)]
struct Model {
    states: Vec<Map>, // states[r] = key space at revision r
    compact: i64,
    leases: std::collections::BTreeSet<i64>,
}

impl Model {
    fn rev(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn range(&self, req: &RangeRequest, map: &Map) -> RangeResponse {
        let r = (req.key.clone(), req.range_end.clone());
        let all: Vec<KeyValue> = map
            .values()
            .filter(|kv| in_range(&kv.key, &r))
            .cloned()
            .collect();
        let count = all.len() as i64;
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            .collect();
        let t = req.sort_target;
        let key_of = |kv: &KeyValue| -> (i64, Bytes) {
            match t {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Bytes::new()),
                SortTarget::Create => (kv.create_revision, Bytes::new()),
                SortTarget::Mod => (kv.mod_revision, Bytes::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        match (req.sort_order, t) {
            (SortOrder::None, SortTarget::Key) => {}
            (SortOrder::Descend, _) => kvs.sort_by_key(|kv| std::cmp::Reverse(key_of(kv))),
            _ => kvs.sort_by_key(key_of),
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        RangeResponse {
            revision: 0,
            kvs,
            more,
            count,
        }
    }

    fn read(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let rev = if req.revision <= 0 {
            self.rev()
        } else {
            req.revision
        };
        if rev > self.rev() {
            return Err(MvccError::FutureRevision);
        }
        if rev < self.compact {
            return Err(MvccError::Compacted);
        }
        Ok(self.range(req, &self.states[rev as usize]))
    }

    /// Applies an op to `map` at main revision `rev`; returns (wrote, range result).
    fn op(&self, map: &mut Map, op: &Op, rev: i64) -> (bool, Option<RangeResponse>) {
        match op {
            Op::Put(k, v, l) => {
                let k = key(*k);
                let (create, version) = match map.get(&k) {
                    Some(p) => (p.create_revision, p.version + 1),
                    None => (rev, 1),
                };
                let value = Bytes::from(vec![b'0' + v]);
                map.insert(
                    k.clone(),
                    KeyValue {
                        key: k,
                        create_revision: create,
                        mod_revision: rev,
                        version,
                        value,
                        lease: *l as i64,
                    },
                );
                (true, None)
            }
            Op::Delete(k, e) => {
                let r = bounds(*k, *e);
                let victims: Vec<Bytes> = map.keys().filter(|x| in_range(x, &r)).cloned().collect();
                for v in &victims {
                    map.remove(v);
                }
                (!victims.is_empty(), None)
            }
            Op::Range { .. } => (
                false,
                Some(self.range(
                    &RangeRequest {
                        revision: 0,
                        ..range_req(op)
                    },
                    map,
                )),
            ),
        }
    }
}

fn to_request(op: &Op) -> RequestOp {
    match op {
        Op::Put(k, v, l) => RequestOp::Put(PutRequest {
            key: key(*k),
            value: Bytes::from(vec![b'0' + v]),
            lease: *l as i64,
            ..Default::default()
        }),
        Op::Delete(k, e) => {
            let (key, range_end) = bounds(*k, *e);
            RequestOp::DeleteRange(DeleteRangeRequest {
                key,
                range_end,
                prev_kv: false,
            })
        }
        Op::Range { .. } => RequestOp::Range(RangeRequest {
            revision: 0,
            ..range_req(op)
        }),
    }
}

/// True when an op puts with a lease the model does not know.
fn unknown_lease(m: &Model, ops: &[Op]) -> bool {
    ops.iter()
        .any(|o| matches!(o, Op::Put(_, _, l) if *l != 0 && !m.leases.contains(&(*l as i64))))
}

/// etcd's duplicate-key rule for a flat branch.
fn conflicts(ops: &[Op]) -> bool {
    let dels: Vec<(Bytes, Bytes)> = ops
        .iter()
        .filter_map(|o| {
            if let Op::Delete(k, e) = o {
                Some(bounds(*k, *e))
            } else {
                None
            }
        })
        .collect();
    let mut puts = std::collections::BTreeSet::new();
    ops.iter().any(|o| match o {
        Op::Put(k, _, _) => !puts.insert(*k) || dels.iter().any(|d| in_range(&key(*k), d)),
        _ => false,
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5u8, 0..4u8, prop_oneof![3 => Just(0u8), 1 => 1..3u8]).prop_map(|(k, v, l)| Op::Put(k, v, l)),
        1 => (0..5u8, prop::option::of(prop_oneof![0..5u8, Just(9u8)])).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => (0..5u8, prop::option::of(prop_oneof![0..5u8, Just(9u8)]), -1..25i64, 0..4i64, 0..3u8, 0..5u8, prop_oneof![Just(0i64), 1..20i64])
            .prop_map(|(key, end, rev, limit, order, target, min_mod)| Op::Range { key, end, rev, limit, order, target, min_mod }),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        16 => op_strategy().prop_map(Step::Op),
        4 => (0..5u8, 0..3i64, 0..4u8, prop::collection::vec(op_strategy(), 0..4), prop::collection::vec(op_strategy(), 0..3))
            .prop_map(|(key, version, result, success, failure)| Step::Txn { key, version, result, success, failure }),
        2 => (0..25i64).prop_map(Step::Compact),
        1 => Just(Step::Reopen),
        2 => Just(Step::Checkpoint),
        1 => (1..3u8).prop_map(Step::Grant),
        1 => (1..3u8).prop_map(Step::Revoke),
    ]
}

fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut h = H::new();
    // Like etcd, an empty store is at revision 1.
    let mut m = Model {
        states: vec![Map::new(), Map::new()],
        compact: 0,
        leases: Default::default(),
    };
    for step in steps {
        match step {
            Step::Op(op @ Op::Range { .. }) => {
                let req = range_req(&op);
                let got = h
                    .store
                    .range(&req)
                    .map(|r| RangeResponse { revision: 0, ..r });
                prop_assert_eq!(got, m.read(&req), "range {:?}", req);
            }
            Step::Op(op) if unknown_lease(&m, std::slice::from_ref(&op)) => {
                let Op::Put(k, v, l) = op else { unreachable!() };
                let got = h.run(Command::Put(PutRequest {
                    key: key(k),
                    value: Bytes::from(vec![b'0' + v]),
                    lease: l as i64,
                    ..Default::default()
                }));
                prop_assert_eq!(got.result.unwrap_err(), MvccError::LeaseNotFound);
            }
            Step::Op(op) => {
                let mut map = m.states.last().unwrap().clone();
                let (wrote, _) = m.op(&mut map, &op, m.rev() + 1);
                let cmd = match to_request(&op) {
                    RequestOp::Put(p) => Command::Put(p),
                    RequestOp::DeleteRange(d) => Command::DeleteRange(d),
                    _ => unreachable!(),
                };
                h.ok(cmd);
                if wrote {
                    m.states.push(map);
                }
            }
            Step::Txn {
                key: k,
                version,
                result,
                success,
                failure,
            } => {
                let result = [
                    CompareResult::Equal,
                    CompareResult::Greater,
                    CompareResult::Less,
                    CompareResult::NotEqual,
                ][result as usize];
                let cur = m.states.last().unwrap();
                let v = cur.get(&key(k)).map_or(0, |kv| kv.version);
                let ok = match result {
                    CompareResult::Equal => v == version,
                    CompareResult::Greater => v > version,
                    CompareResult::Less => v < version,
                    CompareResult::NotEqual => v != version,
                };
                let mut map = cur.clone();
                let mut wrote = false;
                let mut ranges = Vec::new();
                for op in if ok { &success } else { &failure } {
                    let (w, r) = m.op(&mut map, op, m.rev() + 1);
                    wrote |= w;
                    ranges.extend(r);
                }
                let cmp = Compare {
                    result,
                    target: CompareTarget::Version(version),
                    key: key(k),
                    range_end: Bytes::new(),
                };
                let txn = TxnRequest {
                    compare: vec![cmp],
                    success: success.iter().map(to_request).collect(),
                    failure: failure.iter().map(to_request).collect(),
                };
                if conflicts(&success) || conflicts(&failure) {
                    let got = h.run(Command::Txn(txn)).result;
                    prop_assert_eq!(got.unwrap_err(), MvccError::DuplicateKey);
                    continue;
                }
                if unknown_lease(&m, if ok { &success } else { &failure }) {
                    let got = h.run(Command::Txn(txn)).result;
                    prop_assert_eq!(got.unwrap_err(), MvccError::LeaseNotFound);
                    continue;
                }
                let Response::Txn(resp) = h.ok(Command::Txn(txn)) else {
                    panic!()
                };
                prop_assert_eq!(resp.succeeded, ok);
                let got: Vec<RangeResponse> = resp
                    .responses
                    .into_iter()
                    .filter_map(|r| match r {
                        ResponseOp::Range(r) => Some(RangeResponse { revision: 0, ..r }),
                        _ => None,
                    })
                    .collect();
                prop_assert_eq!(got, ranges);
                if wrote {
                    m.states.push(map);
                }
            }
            Step::Compact(rev) => {
                let want = if rev <= m.compact {
                    Err(MvccError::Compacted)
                } else if rev > m.rev() {
                    Err(MvccError::FutureRevision)
                } else {
                    m.compact = rev;
                    Ok(())
                };
                prop_assert_eq!(
                    h.run(Command::Compact { revision: rev }).result.map(|_| ()),
                    want
                );
            }
            Step::Reopen => h.reopen(),
            Step::Checkpoint => {
                h.store.checkpoint().unwrap();
            }
            Step::Grant(id) => {
                let id = id as i64;
                let got = h
                    .run(Command::LeaseGrant {
                        id,
                        ttl: 10,
                        now_ms: 0,
                    })
                    .result
                    .map(|_| ());
                let want = if m.leases.insert(id) {
                    Ok(())
                } else {
                    Err(MvccError::LeaseExists)
                };
                prop_assert_eq!(got, want);
            }
            Step::Revoke(id) => {
                let id = id as i64;
                let a = h.run(Command::LeaseRevoke { id });
                if !m.leases.remove(&id) {
                    prop_assert_eq!(a.result.unwrap_err(), MvccError::LeaseNotFound);
                } else {
                    prop_assert!(a.result.is_ok());
                    let mut map = m.states.last().unwrap().clone();
                    map.retain(|_, kv| kv.lease != id);
                    let deleted = m.states.last().unwrap().len() - map.len();
                    prop_assert_eq!(a.events.len(), deleted);
                    prop_assert!(a.events.iter().all(|e| e.revision.main == m.rev() + 1));
                    if deleted > 0 {
                        m.states.push(map);
                    }
                }
            }
        }
        prop_assert_eq!(h.store.current_revision(), m.rev());
    }
    // Every retained revision still reads as the model says.
    for rev in m.compact.max(1)..=m.rev() {
        let req = RangeRequest {
            key: key(0),
            range_end: Bytes::from_static(b"\0"),
            revision: rev,
            ..Default::default()
        };
        let got = h
            .store
            .range(&req)
            .map(|r| RangeResponse { revision: 0, ..r });
        prop_assert_eq!(got, m.read(&req));
    }
    // Watch history: replaying the events from the oldest retained revision
    // onto the model's state before it rebuilds every later revision, with
    // strictly increasing event revisions and one or more events per revision.
    // Revision 1 is the empty store's: no event.
    let start = m.compact.max(1) + 1;
    let events = h
        .store
        .events_since(start, &Bytes::new(), &Bytes::new(), 0)
        .unwrap();
    prop_assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    let mut map = m.states[(start - 1) as usize].clone();
    let mut i = 0;
    for rev in start..=m.rev() {
        let before = i;
        while i < events.len() && events[i].revision.main == rev {
            let e = &events[i];
            match e.kind {
                EventType::Put => drop(map.insert(e.kv.key.clone(), e.kv.clone())),
                EventType::Delete => drop(map.remove(&e.kv.key)),
            }
            i += 1;
        }
        prop_assert!(i > before, "no event at revision {}", rev);
        prop_assert_eq!(&map, &m.states[rev as usize]);
    }
    prop_assert_eq!(i, events.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(steps in prop::collection::vec(step_strategy(), 1..60)) {
        check(steps)?;
    }
}
