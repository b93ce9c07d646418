//! Lock holders: clients taking a lock through the v3lock Lock API on a
//! lease they keep alive, holding it briefly, writing a fenced key (a txn
//! guarded by the lock key's mod revision being the token), and unlocking.
//! Each hold is recorded with its token (the lock key's create revision),
//! when the Lock answer came, when Unlock was sent, and the send times of
//! the keep-alives that vouch for the lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_check::Hold;
use concord_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::request_op::Request as OpRequest;
use concord_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use concord_proto::v3lockpb::lock_client::LockClient;
use concord_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

use crate::cluster::channel;
use crate::leases::{grant, keep_alive, revoke, timed};
use crate::workload::Recorder;

/// The lock leases' TTL in seconds.
const TTL: i64 = 3;
/// The lock every holder takes.
const LOCK: &str = "lock/0";

/// Runs one lock holder until `stop`; returns its holds.
pub async fn run(
    holder: usize,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> Vec<Hold> {
    let mut holds = Vec::new();
    let mut at = holder % endpoints.len();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(ch) = channel(&endpoints[at], Duration::from_millis(500)).await {
            // Returns when a request fails: the lease is revoked (its key
            // with it, so no stale key blocks the lock) and a new one used.
            session(holder, &ch, &rec, &stop, &mut holds).await;
        }
        at = (at + 1) % endpoints.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holds
}

/// One lease: holds the lock again and again until something fails.
async fn session(
    holder: usize,
    ch: &Channel,
    rec: &Arc<Recorder>,
    stop: &AtomicBool,
    holds: &mut Vec<Hold>,
) {
    let t = Duration::from_secs(2);
    let sent = rec.now();
    let Ok((lease, ttl)) = timed(t, grant(ch, TTL)).await else {
        return;
    };
    let confirmed = Arc::new(Mutex::new(vec![sent]));
    let keeper = tokio::spawn(keep_alive_loop(
        ch.clone(),
        lease,
        ttl,
        rec.clone(),
        confirmed.clone(),
    ));
    let name = LOCK.to_string();
    let mut lock = LockClient::new(ch.clone());
    while !stop.load(Ordering::Relaxed) {
        let req = LockRequest {
            name: name.clone().into(),
            lease,
        };
        let Ok(r) = timed(Duration::from_secs(4), lock.lock(req)).await else {
            break;
        };
        let acquired = rec.now();
        let key = r.into_inner().key;
        let (token, fenced) = fenced_write(ch, &key, &name, holder).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let released = rec.now();
        let from = acquired.saturating_sub(ttl as u64 * 1_000_000_000);
        let vouched = confirmed.lock().expect("confirmed").clone();
        holds.push(Hold {
            lock: name.clone(),
            holder,
            token,
            acquired,
            released,
            ttl_ms: ttl as u64 * 1000,
            confirmed: vouched
                .into_iter()
                .filter(|&s| s >= from && s <= released)
                .collect(),
            fenced,
        });
        if timed(t, lock.unlock(UnlockRequest { key })).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    keeper.abort();
    let _ = timed(t, revoke(ch, lease)).await;
}

/// Keeps the lease alive every third of its TTL, recording the send time
/// of each keep-alive answered with a TTL > 0.
async fn keep_alive_loop(
    ch: Channel,
    lease: i64,
    ttl: i64,
    rec: Arc<Recorder>,
    confirmed: Arc<Mutex<Vec<u64>>>,
) {
    let every = Duration::from_millis(ttl.max(1) as u64 * 1000 / 3);
    loop {
        tokio::time::sleep(every).await;
        let sent = rec.now();
        if let Ok(Ok(left)) = tokio::time::timeout(every, keep_alive(&ch, lease)).await {
            if left > 0 {
                confirmed.lock().expect("confirmed").push(sent);
            }
        }
    }
}

/// Reads the lock key's create revision (the token; 0 if the key is gone)
/// and writes `fence/NAME` in a txn guarded by the key's mod revision being
/// the token; whether that write happened (`None`: no answer; a key found
/// gone counts as a failed write).
async fn fenced_write(ch: &Channel, key: &[u8], name: &str, holder: usize) -> (u64, Option<bool>) {
    let t = Duration::from_secs(2);
    let mut kv = KvClient::new(ch.clone());
    let read = RangeRequest {
        key: key.to_vec().into(),
        ..Default::default()
    };
    let token = match timed(t, kv.range(read)).await {
        Ok(r) => r
            .into_inner()
            .kvs
            .first()
            .map_or(0, |kv| kv.create_revision),
        Err(_) => return (0, None),
    };
    if token == 0 {
        return (0, Some(false));
    }
    let guard = Compare {
        key: key.to_vec().into(),
        target: CompareTarget::Mod as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(TargetUnion::ModRevision(token)),
        ..Default::default()
    };
    let put = RequestOp {
        request: Some(OpRequest::RequestPut(PutRequest {
            key: format!("fence/{name}").into(),
            value: format!("{holder}-{token}").into(),
            ..Default::default()
        })),
    };
    let txn = TxnRequest {
        compare: vec![guard],
        success: vec![put],
        failure: vec![],
    };
    let fenced = timed(t, kv.txn(txn))
        .await
        .ok()
        .map(|r| r.into_inner().succeeded);
    (token as u64, fenced)
}
