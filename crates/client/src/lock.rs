//! A mutex on a lease with fencing tokens.
//!
//! Each contender puts `NAME/<lease hex>` on its session's lease; the
//! key's create revision orders the queue and is the fencing token. A
//! contender waits for the deletion of its predecessor only (the newest key
//! created before its own), so a release wakes one waiter, not all.
//!
//! A holder whose lease expired (a long pause, a partition) no longer holds
//! the lock even if it still believes so. Its writes are refused by
//! [`Fence`], a transaction that commits only while the lock key still
//! exists with the holder's create revision, and by a
//! [`crate::FencingGuard`] at a resource outside the store.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use concord_proto::etcdserverpb::response_op::Response;
use concord_proto::etcdserverpb::{Compare, RangeRequest, RangeResponse, RequestOp, TxnResponse};
use concord_proto::mvccpb::event::EventType;

use crate::{Client, Cmp, Error, GetOptions, Op, Session, Txn, WatchOptions, When};

/// What a lock operation or a fenced write can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A call to the cluster failed.
    #[error(transparent)]
    Client(#[from] Error),
    /// The session's lease was lost before the lock was acquired.
    #[error("lock {key:?}: session lost while waiting: {reason}")]
    SessionLost {
        /// The contender's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A fenced write was refused: the lock key no longer has the token's
    /// revision (the lock was lost and maybe taken by another).
    #[error("fenced write refused: lock key {lock_key:?} no longer has revision {token}")]
    Fenced {
        /// The lock key.
        lock_key: String,
        /// The stale token.
        token: i64,
    },
}

/// A named mutex. Cheap: holds only the key prefix.
#[derive(Debug, Clone)]
pub struct Mutex {
    prefix: String,
}

/// A held lock. Dropping it does not release the lock (the key stays until
/// [`LockGuard::unlock`] or until the session's lease ends).
#[derive(Debug, Clone)]
pub struct LockGuard {
    client: Client,
    fence: Fence,
}

/// The proof of holding a lock that the store checks: the lock key and its
/// create revision (the fencing token). Stays usable after the lock is
/// lost, which is the point: writes made with it are then refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    lock_key: String,
    token: i64,
}

impl Mutex {
    /// The mutex called `name` (its keys live under `name/`).
    pub fn new(name: &str) -> Mutex {
        Mutex {
            prefix: format!("{}/", name.trim_end_matches('/')),
        }
    }

    /// The prefix of the contenders' keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Waits until this session holds the lock.
    pub async fn lock(&self, session: &mut Session) -> Result<LockGuard, LockError> {
        let client = session.client().clone();
        let key = format!("{}{:x}", self.prefix, session.lease());
        let token = enqueue(&client, &key, b"", session.lease()).await?;
        // Each pass sees one predecessor deleted; keys created later cannot
        // get a lower revision, so passes are bounded by the queue ahead.
        loop {
            let pred = tokio::select! {
                p = predecessor(&client, &self.prefix, token) => p?,
                e = session.lost() => return Err(lost(&key, e)),
            };
            let Some((pred_key, rev)) = pred else { break };
            tokio::select! {
                r = wait_deleted(&client, &pred_key, rev + 1, None) => r?,
                e = session.lost() => return Err(lost(&key, e)),
            }
        }
        // The lease may have ended while we waited: the key would be gone.
        let now = client.get(&key, GetOptions::new()).await?;
        if now.kvs.first().map(|kv| kv.create_revision) != Some(token) {
            return Err(lost(
                &key,
                Error::LeaseLost {
                    id: session.lease(),
                    reason: "lock key gone".into(),
                },
            ));
        }
        Ok(LockGuard {
            client,
            fence: Fence {
                lock_key: key,
                token,
            },
        })
    }
}

/// Puts `key` on `lease` unless it exists; its create revision (the
/// place in the queue). Retried safely: a second attempt reads the key.
pub(crate) async fn enqueue(
    client: &Client,
    key: &str,
    value: &[u8],
    lease: i64,
) -> Result<i64, Error> {
    let enqueue = Txn::new()
        .when([When::create_revision(key, Cmp::Equal, 0)])
        .and_then([Op::put(key, value, lease)])
        .or_else([Op::get(key, GetOptions::new())])
        .idempotent();
    let resp = client.txn(enqueue).await?;
    let token = own_revision(&resp);
    assert!(token > 0, "queue key {key} has no create revision");
    Ok(token)
}

/// The newest key under `prefix` created before revision `token`, and the
/// revision read at; `None` when `token` is first in line.
pub(crate) async fn predecessor(
    client: &Client,
    prefix: &str,
    token: i64,
) -> Result<Option<(Bytes, i64)>, Error> {
    let key = Bytes::from(prefix.to_string());
    let req = RangeRequest {
        range_end: crate::prefix_end(&key).into(),
        key,
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: token - 1,
        keys_only: true,
        ..Default::default()
    };
    let resp: RangeResponse = client
        .read(|ch| {
            let req = req.clone();
            async move { KvClient::new(ch).range(req).await }
        })
        .await?;
    let rev = resp.header.map_or(0, |h| h.revision);
    Ok(resp.kvs.into_iter().next().map(|kv| (kv.key, rev)))
}

fn lost(key: &str, e: Error) -> LockError {
    LockError::SessionLost {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// The create revision of the contender's key from the enqueue txn.
fn own_revision(resp: &TxnResponse) -> i64 {
    if resp.succeeded {
        return resp.header.as_ref().map_or(0, |h| h.revision);
    }
    resp.responses
        .iter()
        .find_map(|r| match &r.response {
            Some(Response::ResponseRange(range)) => range.kvs.first().map(|kv| kv.create_revision),
            _ => None,
        })
        .unwrap_or(0)
}

/// Returns once `key` is deleted at or after revision `from`; `events`
/// counts every event the watch delivers (the herd test reads it).
pub(crate) async fn wait_deleted(
    client: &Client,
    key: &[u8],
    from: i64,
    events: Option<&AtomicU64>,
) -> Result<(), Error> {
    let opts = WatchOptions {
        start_revision: from,
        ..Default::default()
    };
    let mut watcher = client.watch(key, opts).await?;
    while let Some(batch) = watcher.next().await {
        match batch {
            Ok(b) => {
                if let Some(n) = events {
                    n.fetch_add(b.events.len() as u64, Ordering::Relaxed);
                }
                if b.events
                    .iter()
                    .any(|e| e.r#type == EventType::Delete as i32)
                {
                    return Ok(());
                }
            }
            // History gone: the caller looks again at the present.
            Err(Error::Compacted { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl LockGuard {
    /// The fencing token: the lock key's create revision. Tokens of
    /// successive holders of one lock only grow.
    pub fn token(&self) -> i64 {
        self.fence.token
    }

    /// The lock key.
    pub fn key(&self) -> &str {
        &self.fence.lock_key
    }

    /// The fence for writes made under this lock.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Releases the lock (deletes the key; the session stays).
    pub async fn unlock(self) -> Result<(), Error> {
        let del = Txn::new()
            .when([self.fence.compare()])
            .and_then([Op::delete(&self.fence.lock_key, GetOptions::new())])
            .idempotent();
        self.client.txn(del).await.map(|_| ())
    }
}

impl Fence {
    /// A fence from its parts (e.g. a token handed to another process).
    pub fn new(lock_key: impl Into<String>, token: i64) -> Fence {
        Fence {
            lock_key: lock_key.into(),
            token,
        }
    }

    /// The fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The lock key.
    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    /// The compare that holds while the lock is still held with this token.
    pub fn compare(&self) -> Compare {
        When::create_revision(&self.lock_key, Cmp::Equal, self.token)
    }

    /// Runs `ops` in a transaction that commits only while the lock is
    /// held with this token; [`LockError::Fenced`] otherwise. Sent once.
    pub async fn txn(
        &self,
        client: &Client,
        ops: impl IntoIterator<Item = RequestOp>,
    ) -> Result<TxnResponse, LockError> {
        let txn = Txn::new().when([self.compare()]).and_then(ops);
        let resp = client.txn(txn).await?;
        if !resp.succeeded {
            return Err(LockError::Fenced {
                lock_key: self.lock_key.clone(),
                token: self.token,
            });
        }
        Ok(resp)
    }

    /// A put that commits only while the lock is held with this token.
    pub async fn put(
        &self,
        client: &Client,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<TxnResponse, LockError> {
        self.txn(client, [Op::put(key, value, 0)]).await
    }

    /// A delete that commits only while the lock is held with this token.
    pub async fn delete(
        &self,
        client: &Client,
        key: impl AsRef<[u8]>,
    ) -> Result<TxnResponse, LockError> {
        self.txn(client, [Op::delete(key, GetOptions::new())]).await
    }
}
