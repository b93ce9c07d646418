//! Shared test helpers.
#![allow(dead_code)]

use bytes::Bytes;
use concord_mvcc::*;
use tempfile::TempDir;

/// A store in a temp dir with an index counter.
pub struct H {
    pub dir: TempDir,
    pub store: Store,
    pub index: u64,
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

impl H {
    pub fn new() -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        H {
            dir,
            store,
            index: 0,
        }
    }

    pub fn reopen(&mut self) {
        let path = self.dir.path().join("db");
        // Drop the old handle first: redb locks the file.
        let placeholder = Store::open(self.dir.path().join("tmp")).unwrap();
        drop(std::mem::replace(&mut self.store, placeholder));
        self.store = Store::open(path).unwrap();
    }

    pub fn run(&mut self, cmd: Command) -> Applied {
        self.index += 1;
        self.store
            .apply(self.index, &cmd)
            .unwrap()
            .expect("fresh index applies")
    }

    pub fn ok(&mut self, cmd: Command) -> Response {
        self.run(cmd).result.expect("command succeeds")
    }

    pub fn err(&mut self, cmd: Command) -> MvccError {
        self.run(cmd).result.expect_err("command fails")
    }

    pub fn put(&mut self, k: &str, v: &str) -> i64 {
        self.put_lease(k, v, 0)
    }

    pub fn put_lease(&mut self, k: &str, v: &str, lease: i64) -> i64 {
        match self.ok(Command::Put(PutRequest {
            key: b(k),
            value: b(v),
            lease,
            ..Default::default()
        })) {
            Response::Put(p) => p.revision,
            r => panic!("unexpected {r:?}"),
        }
    }

    pub fn del(&mut self, k: &str, end: &str) -> i64 {
        match self.ok(Command::DeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: false,
        })) {
            Response::DeleteRange(d) => d.deleted,
            r => panic!("unexpected {r:?}"),
        }
    }

    pub fn get(&self, k: &str) -> Option<KeyValue> {
        self.get_at(k, 0)
    }

    pub fn get_at(&self, k: &str, rev: i64) -> Option<KeyValue> {
        let r = self
            .store
            .range(&RangeRequest {
                key: b(k),
                revision: rev,
                ..Default::default()
            })
            .unwrap();
        r.kvs.into_iter().next()
    }

    pub fn range(&self, req: RangeRequest) -> RangeResponse {
        self.store.range(&req).unwrap()
    }

    pub fn hash(&self) -> u32 {
        self.store.hash_kv(0).unwrap().hash
    }
}
