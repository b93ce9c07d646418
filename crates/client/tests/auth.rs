//! Logging in against a real 3-member cluster with auth on (turned on by
//! the real `etcdctl`): permissions, refusals in etcd's words, a token the
//! server dropped renewed without the caller noticing, streams and the
//! lock recipe under auth.

mod common;

use std::time::Duration;

use common::Cluster;
use concord_client::{
    Client, ClientConfig, Elector, Error, EtcdElector, GetOptions, LeaseState, Mutex, PutOptions,
    Session, WatchOptions,
};
use tonic::Code;

/// Members hash passwords cheaply: the tests log in often.
const CHEAP_BCRYPT: &[&str] = &["--bcrypt-cost=4"];

async fn cluster_with_alice() -> Cluster {
    let cluster = Cluster::start_with(CHEAP_BCRYPT).await;
    cluster.enable_auth("alice", "pw", "app/");
    cluster
}

async fn login(cluster: &Cluster, user: &str, password: &str) -> Result<Client, Error> {
    Client::connect(ClientConfig::new(cluster.client_urls.clone()).credentials(user, password))
        .await
}

fn status_of(err: &Error) -> (Code, String) {
    match err {
        Error::Status { code, message, .. } => (*code, message.clone()),
        e => panic!("not a server's answer: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_works_under_its_prefix_and_is_refused_elsewhere() {
    let cluster = cluster_with_alice().await;
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    alice
        .put("app/a", "1", PutOptions::default())
        .await
        .unwrap();
    let got = alice.get("app/a", GetOptions::new()).await.unwrap();
    assert_eq!(&got.kvs[0].value[..], b"1");
    for err in [
        alice
            .put("other", "x", PutOptions::default())
            .await
            .unwrap_err(),
        alice.get("other", GetOptions::new()).await.unwrap_err(),
    ] {
        assert_eq!(
            status_of(&err),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied".into()
            )
        );
    }
    // The server saw alice: root's view of the key she wrote.
    assert!(cluster.etcdctl_root(&["get", "app/a"]).contains('1'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_user_name_is_empty() {
    let cluster = cluster_with_alice().await;
    let anonymous = cluster.client().await;
    let err = anonymous.get("app/a", GetOptions::new()).await.unwrap_err();
    assert_eq!(
        status_of(&err),
        (
            Code::InvalidArgument,
            "etcdserver: user name is empty".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_at_connect_in_etcds_words() {
    let cluster = cluster_with_alice().await;
    let err = login(&cluster, "alice", "wrong").await.unwrap_err();
    match &err {
        Error::AuthFailed { user, message, .. } => {
            assert_eq!(user, "alice");
            assert_eq!(
                message,
                "etcdserver: authentication failed, invalid user ID or password"
            );
        }
        e => panic!("expected AuthFailed, got {e:?}"),
    }
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert!(
        !format!("{err:?}").contains("wrong"),
        "password shown: {err:?}"
    );
}

/// Root sets alice's password to the one she has: her tokens are gone.
fn drop_tokens_of_alice(cluster: &Cluster) {
    let out = cluster.etcdctl_input(
        &[
            &format!("--user=root:{}", common::ROOT_PASSWORD),
            "user",
            "passwd",
            "alice",
            "--interactive=false",
        ],
        "pw\n",
    );
    assert!(out.contains("Password updated"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_dropped_is_renewed_for_calls_and_watches() {
    let cluster = cluster_with_alice().await;
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    alice
        .put("app/k", "1", PutOptions::default())
        .await
        .unwrap();
    // Changing a password (to the same one) drops the user's tokens on
    // every member: the watch opens with a refused token first.
    drop_tokens_of_alice(&cluster);
    let mut watch = alice
        .watch(
            "app/",
            WatchOptions {
                range: GetOptions::new().prefix(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A plain write: sent again after the refusal only because the
    // refusal came before anything applied.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop_tokens_of_alice(&cluster);
    alice
        .put("app/k", "2", PutOptions::default())
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("no error");
    assert_eq!(&batch.events[0].kv.as_ref().unwrap().value[..], b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_and_the_call_succeeds() {
    // Tokens expire after a second without use.
    let cluster = Cluster::start_with(&["--bcrypt-cost=4", "--auth-token-ttl=1"]).await;
    cluster.enable_auth("alice", "pw", "app/");
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    alice
        .put("app/e", "1", PutOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    alice
        .put("app/e", "2", PutOptions::default())
        .await
        .unwrap();
    let got = alice.get("app/e", GetOptions::new()).await.unwrap();
    assert_eq!(&got.kvs[0].value[..], b"2");
    assert_eq!(got.kvs[0].version, 2, "the retried put applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_keep_alive_work_under_auth() {
    let cluster = cluster_with_alice().await;
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    let mut watch = alice
        .watch(
            "app/",
            WatchOptions {
                range: GetOptions::new().prefix(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut refused = alice.watch("other", WatchOptions::default()).await.unwrap();
    let lease = alice.lease_grant(2, 0).await.unwrap();
    let keep = alice.keep_alive(lease.id, lease.ttl);
    let opts = PutOptions {
        lease: lease.id,
        ..Default::default()
    };
    alice.put("app/w", "v", opts).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    assert_eq!(&batch.events[0].kv.as_ref().unwrap().key[..], b"app/w");
    match refused.next().await {
        Some(Err(Error::WatchCanceled(reason))) => {
            assert_eq!(reason, "etcdserver: permission denied")
        }
        other => panic!("watch outside the prefix not refused: {other:?}"),
    }
    // Longer than the TTL: alive only if the renewals got through.
    tokio::time::sleep(Duration::from_secs(lease.ttl as u64 + 1)).await;
    assert!(
        matches!(keep.state(), LeaseState::Alive { .. }),
        "{:?}",
        keep.state()
    );
    let got = alice.get("app/w", GetOptions::new()).await.unwrap();
    assert_eq!(got.kvs.len(), 1, "the key went with the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_recipe_works_with_readwrite_on_its_prefix() {
    let cluster = cluster_with_alice().await;
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    let mut session = Session::new(&alice, 10).await.unwrap();
    let guard = Mutex::new("app/lock").lock(&mut session).await.unwrap();
    assert!(guard.token() > 0);
    let fenced = guard.fence().put(&alice, "app/data", "x").await.unwrap();
    assert!(fenced.header.is_some());
    guard.unlock().await.unwrap();
    session.close().await.unwrap();
    let mut session = Session::new(&alice, 10).await.unwrap();
    let err = Mutex::new("elsewhere")
        .lock(&mut session)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_observer_logs_in_again_when_its_token_is_dropped() {
    let cluster = cluster_with_alice().await;
    let alice = login(&cluster, "alice", "pw").await.unwrap();
    let session = Session::new(&alice, 10).await.unwrap();
    let mut candidate = EtcdElector::new(session, "app/el", "a");
    candidate.campaign().await.unwrap();
    // The observer's client makes no other call that could log it in.
    let watching = login(&cluster, "alice", "pw").await.unwrap();
    let session = Session::new(&watching, 10).await.unwrap();
    let mut observer = EtcdElector::new(session, "app/el", "o");
    drop_tokens_of_alice(&cluster);
    let mut changes = observer.changes();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        changes.wait_for(|l| l.as_ref().is_some_and(|l| &l.value[..] == b"a")),
    )
    .await;
    assert!(seen.is_ok(), "the observer never saw the leader");
}
