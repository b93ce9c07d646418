//! The lock recipe against a real 3-member cluster: mutual exclusion in
//! revision order, and the paused holder refused in both forms of fencing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use concord_client::{FencingError, FencingGuard, GetOptions, LockError, Mutex, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_hold_the_lock_one_at_a_time_in_revision_order() {
    let cluster = Cluster::start().await;
    let inside = Arc::new(AtomicBool::new(false));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = cluster.client().await;
        let (inside, order) = (inside.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = Session::new(&client, 10).await.unwrap();
            let guard = Mutex::new("turns").lock(&mut session).await.unwrap();
            assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
            order.lock().unwrap().push(guard.token());
            tokio::time::sleep(Duration::from_millis(100)).await;
            inside.store(false, Ordering::SeqCst);
            guard.unlock().await.unwrap();
            session.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 4);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "tokens not granted in queue order: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_refused_by_the_store_and_by_the_guard() {
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let guard_file = dir.path().join("resource.fence");
    let mutex = Mutex::new("job");

    // A holds the lock on a lease nobody renews: its pause starts now.
    let a_client = cluster.client().await;
    let lease = a_client.lease_grant(2, 0).await.unwrap();
    let mut a_session = Session::on_lease(&a_client, lease.id, lease.ttl);
    let a = mutex.lock(&mut a_session).await.unwrap();
    let a_fence = a.fence();
    a_fence.put(&a_client, "data", "A1").await.unwrap();
    FencingGuard::open(&guard_file)
        .unwrap()
        .accept(a.token())
        .unwrap();

    // B queues behind A and gets the lock once A's lease expires.
    let b_client = cluster.client().await;
    let mut b_session = Session::new(&b_client, 10).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(15), mutex.lock(&mut b_session))
        .await
        .expect("B acquires after A's lease expires")
        .unwrap();
    assert!(b.token() > a.token());
    b.fence().put(&b_client, "data", "B").await.unwrap();
    let mut resource = FencingGuard::open(&guard_file).unwrap();
    resource.accept(b.token()).unwrap();

    // A wakes and writes with its old token: both forms refuse it.
    let refused = a_fence.put(&a_client, "data", "A2").await.unwrap_err();
    assert!(matches!(refused, LockError::Fenced { token, .. } if token == a.token()));
    let got = a_client.get("data", GetOptions::new()).await.unwrap();
    assert_eq!(&got.kvs[0].value[..], b"B");
    assert!(matches!(
        resource.accept(a.token()),
        Err(FencingError::Stale { .. })
    ));
    drop(resource);
    let mut reopened = FencingGuard::open(&guard_file).unwrap();
    assert_eq!(reopened.highest(), b.token());
    assert!(matches!(
        reopened.accept(a.token()),
        Err(FencingError::Stale { .. })
    ));

    // A's late unlock does not release B's lock.
    a.unlock().await.unwrap();
    let held = b_client.get(b.key(), GetOptions::new()).await.unwrap();
    assert_eq!(held.kvs.len(), 1, "B's lock key was removed by A");
    b.fence().put(&b_client, "data", "B2").await.unwrap();
}
