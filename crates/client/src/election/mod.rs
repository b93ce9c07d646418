//! Leader election, four ways behind one [`Elector`] trait:
//!
//! - [`EtcdElector`]: etcd's Election API (the server queues candidates);
//! - [`LeaseElector`]: one key on a lease; the leader renews it and steps
//!   down on its own clock before the lease can expire on the server;
//! - [`SequentialElector`]: ZooKeeper-style sequential keys, each candidate
//!   watching only its predecessor (no herd effect);
//! - [`BullyElector`]: the bully algorithm among processes over their own
//!   TCP transport and no store; under a partition it elects two leaders,
//!   which the store-backed patterns cannot.

mod bully;
mod etcd_api;
mod lease;
mod sequential;

use std::future::Future;

use bytes::Bytes;
use tokio::sync::watch;

pub use bully::{BullyConfig, BullyElector};
pub use etcd_api::EtcdElector;
pub use lease::LeaseElector;
pub use sequential::SequentialElector;

/// A leader as one candidate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's value (its name or address, as it campaigned).
    pub value: Bytes,
    /// Grows with each new leadership: the leader key's create revision in
    /// the store-backed patterns, the leader's id in the bully algorithm.
    pub term: i64,
}

/// What an election can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// A call to the cluster failed.
    #[error(transparent)]
    Client(#[from] crate::Error),
    /// The candidate's lease or session ended before it led.
    #[error("election: session lost: {0}")]
    SessionLost(String),
    /// Resigning or renewing without leading.
    #[error("election: not the leader")]
    NotLeader,
    /// The bully transport failed.
    #[error("election transport: {0}")]
    Transport(#[from] std::io::Error),
}

/// A candidate in an election.
pub trait Elector: Send {
    /// Waits until this candidate leads; the leadership it won.
    fn campaign(&mut self) -> impl Future<Output = Result<Leader, ElectionError>> + Send;

    /// Gives up leadership (or the candidacy) so another can lead.
    fn resign(&mut self) -> impl Future<Output = Result<(), ElectionError>> + Send;

    /// The leader now, as this candidate can learn it.
    fn leader(&mut self) -> impl Future<Output = Result<Option<Leader>, ElectionError>> + Send;

    /// True while this candidate may act as leader.
    fn is_leader(&self) -> bool;

    /// The leader as it changes (`None`: none known); the newest value
    /// wins when the reader lags. Started on first call.
    fn changes(&mut self) -> watch::Receiver<Option<Leader>>;
}

/// The leader a range read finds: its first key-value (value, create
/// revision as the term).
async fn read_leader(
    client: &crate::Client,
    query: &concord_proto::etcdserverpb::RangeRequest,
) -> Result<Option<Leader>, crate::Error> {
    use concord_proto::etcdserverpb::kv_client::KvClient;
    let resp = client
        .read(|ch| {
            let req = query.clone();
            async move { KvClient::new(ch).range(req).await }
        })
        .await?;
    Ok(resp.kvs.into_iter().next().map(|kv| Leader {
        value: kv.value,
        term: kv.create_revision,
    }))
}

/// Publishes the leader `query` finds now, and again after every change
/// to the keys `watched` covers, until nobody listens.
async fn follow(
    client: crate::Client,
    watched: crate::WatchOptions,
    key: Bytes,
    query: concord_proto::etcdserverpb::RangeRequest,
    tx: std::sync::Arc<watch::Sender<Option<Leader>>>,
) {
    let pause = std::time::Duration::from_millis(100);
    while !tx.is_closed() {
        let Ok(mut watcher) = client.watch(&key, watched.clone()).await else {
            tokio::time::sleep(pause).await;
            continue;
        };
        // Read after the watch is open: no change falls between the two.
        loop {
            match read_leader(&client, &query).await {
                Ok(now) => {
                    tx.send_if_modified(|l| {
                        let changed = *l != now;
                        *l = now;
                        changed
                    });
                }
                Err(_) => tokio::time::sleep(pause).await,
            }
            match watcher.next().await {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
}
