//! Compatibility with the `etcd-client` crate (an independent Rust client
//! of the etcd v3 API) against a 3-member cluster.

mod common;

use std::future::Future;
use std::time::Duration;

use common::*;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, LeaseTimeToLiveOptions,
    LockOptions, ProclaimOptions, PutOptions, ResignOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::time::timeout;

/// Starts a cluster and runs `f` with a client of all its members.
fn with_cluster<F, Fut>(f: F)
where
    F: FnOnce(Client, Vec<String>) -> Fut,
    Fut: Future<Output = ()>,
{
    let c = Cluster::start(3);
    let addrs = c.addrs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cl = client(&addrs).await.expect("connect");
        timeout(Duration::from_secs(60), f(cl, addrs))
            .await
            .expect("test timed out");
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(c);
}

const T: Duration = Duration::from_secs(10);

fn s(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf8")
}

#[test]
fn kv_and_txn() {
    with_cluster(|mut c, _| async move {
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d/x", "4")] {
            c.put(k, v, None).await.expect("put");
        }
        let r = c.get("b", None).await.expect("get");
        assert_eq!(r.kvs().len(), 1);
        assert_eq!(r.kvs()[0].value(), b"2");
        let b_rev = r.kvs()[0].mod_revision();

        let r = c
            .get("a", Some(GetOptions::new().with_range("c")))
            .await
            .expect("range");
        let keys: Vec<&str> = r.kvs().iter().map(|kv| s(kv.key())).collect();
        assert_eq!(keys, ["a", "b"]);
        let r = c
            .get(
                "",
                Some(
                    GetOptions::new()
                        .with_all_keys()
                        .with_sort(SortTarget::Key, SortOrder::Descend)
                        .with_limit(2)
                        .with_keys_only(),
                ),
            )
            .await
            .expect("sorted");
        let keys: Vec<&str> = r.kvs().iter().map(|kv| s(kv.key())).collect();
        assert_eq!(keys, ["d/x", "c"]);
        assert!(r.more());
        assert_eq!(r.count(), 4);
        assert!(r.kvs().iter().all(|kv| kv.value().is_empty()));
        let r = c
            .get(
                "",
                Some(GetOptions::new().with_all_keys().with_count_only()),
            )
            .await
            .expect("count");
        assert_eq!((r.count(), r.kvs().len()), (4, 0));

        let p = c
            .put("b", "20", Some(PutOptions::new().with_prev_key()))
            .await
            .expect("put prev");
        assert_eq!(p.prev_key().map(|kv| kv.value()), Some(&b"2"[..]));
        let old = c
            .get("b", Some(GetOptions::new().with_revision(b_rev)))
            .await
            .expect("get at rev");
        assert_eq!(old.kvs()[0].value(), b"2");
        let serial = c
            .get("b", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable");
        assert_eq!(serial.kvs().len(), 1);

        let d = c
            .delete(
                "d/",
                Some(DeleteOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .expect("delete");
        assert_eq!(d.deleted(), 1);
        assert_eq!(d.prev_kvs()[0].key(), b"d/x");
        assert_eq!(c.delete("nothing", None).await.expect("del").deleted(), 0);

        // Txn: compare on value and version, ops in both branches.
        let txn = Txn::new()
            .when([
                Compare::value("a", CompareOp::Equal, "1"),
                Compare::version("b", CompareOp::Greater, 1),
            ])
            .and_then([
                TxnOp::put("a", "won", None),
                TxnOp::get("b", None),
                TxnOp::delete("c", None),
            ])
            .or_else([TxnOp::put("a", "lost", None)]);
        let r = c.txn(txn).await.expect("txn");
        assert!(r.succeeded());
        let ops = r.op_responses();
        assert_eq!(ops.len(), 3);
        match &ops[1] {
            TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"20"),
            other => panic!("{other:?}"),
        }
        match &ops[2] {
            TxnOpResponse::Delete(d) => assert_eq!(d.deleted(), 1),
            other => panic!("{other:?}"),
        }
        let txn = Txn::new()
            .when([Compare::value("a", CompareOp::Equal, "1")])
            .and_then([TxnOp::put("a", "again", None)])
            .or_else([TxnOp::put("a", "lost", None), TxnOp::get("a", None)]);
        let r = c.txn(txn).await.expect("txn 2");
        assert!(!r.succeeded());
        match &r.op_responses()[1] {
            TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"lost"),
            other => panic!("{other:?}"),
        }
        // create_revision == 0: "create if absent".
        let txn = Txn::new()
            .when([Compare::create_revision("fresh", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("fresh", "x", None)]);
        assert!(c.txn(txn.clone()).await.expect("create").succeeded());
        assert!(!c.txn(txn).await.expect("create again").succeeded());
    });
}

#[test]
fn too_large_request() {
    with_cluster(|mut c, _| async move {
        let big = vec![b'x'; 1536 * 1024 + 64 * 1024];
        let err = c.put("big", big, None).await.expect_err("too large");
        match err {
            etcd_client::Error::GRpcStatus(st) => {
                assert_eq!(st.code(), tonic::Code::InvalidArgument, "{st:?}");
                assert_eq!(st.message(), "etcdserver: request is too large");
            }
            other => panic!("unexpected error {other:?}"),
        }
        // Just under the limit is fine, and the cluster keeps working.
        let ok = vec![b'y'; 1024 * 1024];
        c.put("fits", ok, None).await.expect("1 MiB put");
        c.put("small", "v", None).await.expect("put");
        let r = c.get("fits", None).await.expect("get");
        assert_eq!(r.kvs()[0].value().len(), 1024 * 1024);
        assert!(c.get("big", None).await.expect("get").kvs().is_empty());
    });
}

#[test]
fn watch_from_revision_with_prev_kv() {
    with_cluster(|mut c, _| async move {
        let start = c.put("w/a", "1", None).await.expect("put");
        let start = start.header().expect("header").revision();
        c.put("w/a", "2", None).await.expect("put");
        c.put("w/b", "3", None).await.expect("put");
        c.delete("w/a", None).await.expect("del");
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start)
            .with_prev_key();
        let mut w = c.watch("w/", Some(opts)).await.expect("watch");
        let created = timeout(T, w.message()).await.expect("created in time");
        let created = created.expect("stream").expect("message");
        assert!(created.created());
        let id = created.watch_id();

        let mut events = Vec::new();
        let mut live = false;
        while events.len() < 6 {
            let m = timeout(T, w.message()).await.expect("events in time");
            let m = m.expect("stream").expect("message");
            assert_eq!(m.watch_id(), id);
            assert!(!m.canceled(), "{m:?}");
            for e in m.events() {
                let kv = e.kv().expect("kv");
                let prev = e.prev_kv().map(|p| s(p.value()).to_string());
                events.push((
                    e.event_type(),
                    s(kv.key()).to_string(),
                    s(kv.value()).to_string(),
                    prev,
                    kv.mod_revision(),
                ));
            }
            if events.len() >= 4 && !live {
                // History replayed: now live events.
                live = true;
                c.put("w/b", "4", None).await.expect("put");
                c.put("other", "x", None).await.expect("put");
                c.delete("w/b", None).await.expect("del");
            }
        }
        let got: Vec<_> = events
            .iter()
            .map(|(t, k, v, p, _)| (*t, k.as_str(), v.as_str(), p.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (EventType::Put, "w/a", "1", None),
                (EventType::Put, "w/a", "2", Some("1")),
                (EventType::Put, "w/b", "3", None),
                (EventType::Delete, "w/a", "", Some("2")),
                (EventType::Put, "w/b", "4", Some("3")),
                (EventType::Delete, "w/b", "", Some("4")),
            ]
        );
        assert_eq!(events[0].4, start);
        assert!(events.windows(2).all(|p| p[0].4 < p[1].4), "{events:?}");

        w.cancel(id).await.expect("cancel");
        let m = timeout(T, w.message()).await.expect("cancel in time");
        assert!(m.expect("stream").expect("message").canceled());

        // A compacted start revision cancels the watch.
        let now = c.get("w/", None).await.expect("get");
        let now = now.header().expect("header").revision();
        c.compact(now, None).await.expect("compact");
        let opts = WatchOptions::new().with_start_revision(start);
        let mut w = c.watch("w/a", Some(opts)).await.expect("watch");
        let canceled = loop {
            let m = timeout(T, w.message()).await.expect("in time");
            let m = m.expect("stream").expect("message");
            if m.canceled() {
                break m;
            }
        };
        assert_eq!(canceled.compact_revision(), now);
    });
}

#[test]
fn leases() {
    with_cluster(|mut c, _| async move {
        let g = c.lease_grant(30, None).await.expect("grant");
        assert_eq!(g.ttl(), 30);
        let id = g.id();
        let opts = PutOptions::new().with_lease(id);
        c.put("l/1", "v", Some(opts.clone())).await.expect("put");
        c.put("l/2", "v", Some(opts)).await.expect("put");

        let (mut keeper, mut stream) = c.lease_keep_alive(id).await.expect("keep alive");
        for _ in 0..3 {
            keeper.keep_alive().await.expect("send");
            let r = timeout(T, stream.message()).await.expect("in time");
            let r = r.expect("stream").expect("message");
            assert_eq!((r.id(), r.ttl()), (id, 30));
        }
        let t = c
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("ttl");
        assert_eq!(t.granted_ttl(), 30);
        assert!((25..=30).contains(&t.ttl()), "{t:?}");
        let mut keys: Vec<&[u8]> = t.keys().iter().map(Vec::as_slice).collect();
        keys.sort();
        assert_eq!(keys, [b"l/1", b"l/2"]);
        let ids: Vec<i64> = c
            .leases()
            .await
            .expect("leases")
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        assert!(ids.contains(&id));

        c.lease_revoke(id).await.expect("revoke");
        let r = c
            .get("l/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert!(r.kvs().is_empty());
        let t = c.lease_time_to_live(id, None).await.expect("ttl");
        assert_eq!(t.ttl(), -1);
        let err = c.lease_revoke(id).await.expect_err("revoke twice");
        assert!(
            err.to_string().contains("requested lease not found"),
            "{err}"
        );
        // Keep-alive of a gone lease: TTL 0.
        keeper.keep_alive().await.expect("send");
        let r = timeout(T, stream.message()).await.expect("in time");
        assert_eq!(r.expect("stream").expect("message").ttl(), 0);
    });
}

#[test]
fn lock_and_unlock() {
    with_cluster(|mut c, addrs| async move {
        let l1 = c.lease_grant(30, None).await.expect("grant").id();
        let l2 = c.lease_grant(30, None).await.expect("grant").id();
        // The first write of the cluster (grants do not bump the revision):
        // the lock key gets the store's first revision.
        let held = c
            .lock("res", Some(LockOptions::new().with_lease(l1)))
            .await
            .expect("lock");
        let key1 = held.key().to_vec();
        assert!(key1.starts_with(b"res/"), "{}", s(&key1));

        // A second locker (another connection) waits.
        let mut other = client(&addrs).await.expect("connect");
        let waiter = tokio::spawn(async move {
            let r = other
                .lock("res", Some(LockOptions::new().with_lease(l2)))
                .await;
            r.map(|r| r.key().to_vec())
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!waiter.is_finished(), "second lock granted while held");

        // The lock keys are ordinary keys; the holder's was created first.
        let by_create = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let r = c.get("res/", Some(by_create)).await.expect("get");
        assert_eq!(r.kvs().len(), 2);
        assert_eq!(r.kvs()[0].key(), &key1[..]);
        assert_eq!(r.kvs()[0].lease(), l1);

        c.unlock(key1.clone()).await.expect("unlock");
        let key2 = timeout(T, waiter)
            .await
            .expect("second lock in time")
            .expect("task")
            .expect("lock");
        assert_ne!(key2, key1);
        // Revoking the holder's lease releases the lock too.
        let mut third = client(&addrs).await.expect("connect");
        let l3 = c.lease_grant(30, None).await.expect("grant").id();
        let waiter = tokio::spawn(async move {
            third
                .lock("res", Some(LockOptions::new().with_lease(l3)))
                .await
                .map(|r| r.key().to_vec())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.lease_revoke(l2).await.expect("revoke");
        let key3 = timeout(T, waiter)
            .await
            .expect("third lock in time")
            .expect("task")
            .expect("lock");
        c.unlock(key3).await.expect("unlock");
    });
}

#[test]
fn election() {
    with_cluster(|mut c, addrs| async move {
        let l1 = c.lease_grant(30, None).await.expect("grant").id();
        let l2 = c.lease_grant(30, None).await.expect("grant").id();
        // The first write of the cluster, as in `lock_and_unlock`.
        let r = c.campaign("el", "v1", l1).await.expect("campaign");
        let leader = r.leader().expect("leader key").clone();
        assert_eq!(leader.name(), b"el");
        assert!(leader.key().starts_with(b"el/"));

        let l = c.leader("el").await.expect("leader");
        assert_eq!(l.kv().map(|kv| kv.value()), Some(&b"v1"[..]));
        let mut obs = c.observe("el").await.expect("observe");
        let first = timeout(T, obs.message()).await.expect("observe in time");
        let first = first.expect("stream").expect("message");
        assert_eq!(first.kv().map(|kv| kv.value()), Some(&b"v1"[..]));

        let mut other = client(&addrs).await.expect("connect");
        let second = tokio::spawn(async move {
            other
                .campaign("el", "v2", l2)
                .await
                .map(|r| r.leader().cloned())
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!second.is_finished(), "second candidate elected too early");

        let opts = ProclaimOptions::new().with_leader(leader.clone());
        c.proclaim("v1b", Some(opts)).await.expect("proclaim");
        let m = timeout(T, obs.message()).await.expect("in time");
        let m = m.expect("stream").expect("message");
        assert_eq!(m.kv().map(|kv| kv.value()), Some(&b"v1b"[..]));

        c.resign(Some(ResignOptions::new().with_leader(leader)))
            .await
            .expect("resign");
        let l2_key = timeout(T, second)
            .await
            .expect("second elected in time")
            .expect("task")
            .expect("campaign")
            .expect("leader key");
        assert_eq!(l2_key.lease(), l2);
        let m = timeout(T, obs.message()).await.expect("in time");
        let m = m.expect("stream").expect("message");
        assert_eq!(m.kv().map(|kv| kv.value()), Some(&b"v2"[..]));
        let l = c.leader("el").await.expect("leader");
        assert_eq!(l.kv().map(|kv| kv.key()), Some(l2_key.key()));
    });
}

#[test]
fn cluster_and_status() {
    with_cluster(|mut c, addrs| async move {
        let ml = c.member_list().await.expect("member list");
        let mut names: Vec<&str> = ml.members().iter().map(|m| m.name()).collect();
        names.sort();
        assert_eq!(names, ["m1", "m2", "m3"]);
        let mut urls: Vec<String> = ml
            .members()
            .iter()
            .flat_map(|m| m.client_urls().to_vec())
            .collect();
        urls.sort();
        let mut want: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        want.sort();
        assert_eq!(urls, want);
        assert!(ml.members().iter().all(|m| !m.is_learner()));
        let cluster_id = ml.header().expect("header").cluster_id();

        let mut leaders = Vec::new();
        for a in &addrs {
            let mut one = client(std::slice::from_ref(a)).await.expect("connect");
            let st = one.status().await.expect("status");
            let h = st.header().expect("header");
            assert_eq!(h.cluster_id(), cluster_id);
            assert!(ml.members().iter().any(|m| m.id() == h.member_id()));
            assert!(st.raft_term() >= 1 && st.raft_index() >= 1);
            assert!(st.db_size() > 0, "{st:?}");
            leaders.push(st.leader());
        }
        assert!(leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]));
        assert!(ml.members().iter().any(|m| m.id() == leaders[0]));
    });
}

/// A lease granted through one member is usable at once through every
/// other member: Lock and Campaign must not answer "lease not found" from a
/// member that has not applied the grant yet (they take a read barrier
/// first). Without the barrier this fails in about one run of three at 30
/// rounds, so it runs 90.
#[test]
fn lock_and_campaign_with_a_fresh_lease_on_every_member() {
    with_cluster(|_, addrs| async move {
        let mut one = Vec::new();
        for a in &addrs {
            one.push(client(std::slice::from_ref(a)).await.expect("connect"));
        }
        for round in 0..90 {
            let (granter, user) = (round % 3, (round + 1 + round / 3 % 2) % 3);
            assert_ne!(granter, user);
            let lease = one[granter]
                .lease_grant(30, None)
                .await
                .expect("grant")
                .id();
            let name = format!("fresh-{round}");
            let key = one[user]
                .lock(name.as_str(), Some(LockOptions::new().with_lease(lease)))
                .await
                .expect("lock with a lease granted through another member");
            one[user].unlock(key.key().to_vec()).await.expect("unlock");
            let lease = one[granter]
                .lease_grant(30, None)
                .await
                .expect("grant")
                .id();
            one[user]
                .campaign(name.as_str(), "v", lease)
                .await
                .expect("campaign with a lease granted through another member");
            one[granter].lease_revoke(lease).await.expect("revoke");
        }
    });
}
