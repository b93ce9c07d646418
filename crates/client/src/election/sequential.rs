//! ZooKeeper-style election on sequential keys: each candidate puts
//! `PREFIX/<lease hex>` on its lease; the key created first leads; every
//! other candidate watches only the key created just before its own, so a
//! leader's exit wakes exactly one candidate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use concord_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use concord_proto::etcdserverpb::RangeRequest;
use tokio::sync::watch;

use super::{follow, read_leader, ElectionError, Elector, Leader};
use crate::lock::{enqueue, predecessor, wait_deleted};
use crate::{Cmp, GetOptions, Op, Session, Txn, WatchOptions, When};

/// A candidate on sequential keys.
#[derive(Debug)]
pub struct SequentialElector {
    session: Session,
    prefix: String,
    key: String,
    value: Bytes,
    token: Option<i64>,
    /// Watch events this candidate received while waiting its turn.
    wakeups: Arc<AtomicU64>,
    changes: Arc<watch::Sender<Option<Leader>>>,
    observer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for SequentialElector {
    fn drop(&mut self) {
        if let Some(t) = &self.observer {
            t.abort();
        }
    }
}

impl SequentialElector {
    /// A candidate in election `name` offering `value`, on `session`.
    pub fn new(session: Session, name: &str, value: impl Into<Bytes>) -> SequentialElector {
        let prefix = format!("{}/", name.trim_end_matches('/'));
        SequentialElector {
            key: format!("{prefix}{:x}", session.lease()),
            prefix,
            session,
            value: value.into(),
            token: None,
            wakeups: Arc::new(AtomicU64::new(0)),
            changes: Arc::new(watch::channel(None).0),
            observer: None,
        }
    }

    /// How many watch events this candidate has received while waiting:
    /// one per predecessor that left, whatever the number of candidates.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// The session the candidacy hangs on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn first_in_line(&self) -> RangeRequest {
        let key = Bytes::from(self.prefix.clone());
        RangeRequest {
            range_end: crate::prefix_end(&key).into(),
            key,
            limit: 1,
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Create as i32,
            ..Default::default()
        }
    }
}

impl Elector for SequentialElector {
    async fn campaign(&mut self) -> Result<Leader, ElectionError> {
        let client = self.session.client().clone();
        let lease = self.session.lease();
        let token = enqueue(&client, &self.key, &self.value, lease).await?;
        // Bounded by the candidates ahead: none can join ahead of us.
        loop {
            let pred = tokio::select! {
                p = predecessor(&client, &self.prefix, token) => p?,
                e = self.session.lost() => return Err(ElectionError::SessionLost(e.to_string())),
            };
            let Some((pred_key, rev)) = pred else { break };
            let wakeups = self.wakeups.clone();
            tokio::select! {
                r = wait_deleted(&client, &pred_key, rev + 1, Some(&wakeups)) => r?,
                e = self.session.lost() => return Err(ElectionError::SessionLost(e.to_string())),
            }
        }
        let now = client.get(&self.key, GetOptions::new()).await?;
        if now.kvs.first().map(|kv| kv.create_revision) != Some(token) {
            return Err(ElectionError::SessionLost("candidate key gone".into()));
        }
        self.token = Some(token);
        Ok(Leader {
            value: self.value.clone(),
            term: token,
        })
    }

    async fn resign(&mut self) -> Result<(), ElectionError> {
        let Some(token) = self.token.take() else {
            return Err(ElectionError::NotLeader);
        };
        let del = Txn::new()
            .when([When::create_revision(&self.key, Cmp::Equal, token)])
            .and_then([Op::delete(&self.key, GetOptions::new())])
            .idempotent();
        self.session.client().txn(del).await?;
        Ok(())
    }

    async fn leader(&mut self) -> Result<Option<Leader>, ElectionError> {
        Ok(read_leader(self.session.client(), &self.first_in_line()).await?)
    }

    fn is_leader(&self) -> bool {
        self.token.is_some() && self.session.is_alive()
    }

    fn changes(&mut self) -> watch::Receiver<Option<Leader>> {
        // Subscribed before the observer starts: it runs while one listens.
        let rx = self.changes.subscribe();
        if self.observer.is_none() {
            let watched = WatchOptions {
                range: GetOptions::new().prefix(),
                ..Default::default()
            };
            self.observer = Some(tokio::spawn(follow(
                self.session.client().clone(),
                watched,
                Bytes::from(self.prefix.clone()),
                self.first_in_line(),
                self.changes.clone(),
            )));
        }
        rx
    }
}
