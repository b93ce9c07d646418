//! Keeping a lease alive across broken streams and leader changes.

use std::time::{Duration, Instant};

use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::LeaseKeepAliveRequest;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use crate::{Client, Error};

/// What a [`KeepAlive`] knows of its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed: the TTL the server granted, and the endpoint that said so.
    Alive {
        /// Seconds left after the last renewal.
        ttl: i64,
        /// The endpoint of the last renewal.
        endpoint: String,
    },
    /// Expired, revoked, or not renewed within its TTL.
    Lost(String),
}

/// A task renewing a lease every third of its TTL, re-opening its stream on
/// another endpoint when one breaks. Dropping it stops the renewals.
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    state: watch::Receiver<LeaseState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepAlive {
    /// The lease.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The state now.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Waits until the lease is lost; the error says why.
    pub async fn lost(&mut self) -> Error {
        let id = self.id;
        loop {
            if let LeaseState::Lost(reason) = &*self.state.borrow_and_update() {
                return Error::LeaseLost {
                    id,
                    reason: reason.clone(),
                };
            }
            if self.state.changed().await.is_err() {
                return Error::LeaseLost {
                    id,
                    reason: "keep-alive stopped".into(),
                };
            }
        }
    }
}

impl Client {
    /// Starts keeping lease `id` (granted with `ttl` seconds) alive.
    pub fn keep_alive(&self, id: i64, ttl: i64) -> KeepAlive {
        let ttl = Duration::from_secs(ttl.max(1) as u64);
        let (tx, state) = watch::channel(LeaseState::Alive {
            ttl: ttl.as_secs() as i64,
            endpoint: String::new(),
        });
        let task = tokio::spawn(renew(self.clone(), id, ttl, tx));
        KeepAlive { id, state, task }
    }
}

/// Renews until the lease is lost or nobody holds the [`KeepAlive`].
async fn renew(client: Client, id: i64, ttl: Duration, state: watch::Sender<LeaseState>) {
    let mut deadline = Instant::now() + ttl;
    loop {
        if Instant::now() >= deadline {
            let _ = state.send(LeaseState::Lost(format!("not renewed within {ttl:?}")));
            return;
        }
        let url = client.route(crate::Safety::Read).await;
        match stream(&client, &url, id, ttl, &mut deadline, &state).await {
            Ok(()) => return,
            Err(()) => {
                client.endpoint_failed(&url);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One keep-alive stream: `Ok` when the lease is gone (state sent), `Err`
/// when the stream broke first.
async fn stream(
    client: &Client,
    url: &str,
    id: i64,
    ttl: Duration,
    deadline: &mut Instant,
    state: &watch::Sender<LeaseState>,
) -> Result<(), ()> {
    let ch = client.channel(url).await.map_err(|_| ())?;
    let (req_tx, req_rx) = mpsc::channel(4);
    // Queued before the call opens: a grpc-go server (etcd) sends its
    // response headers only with its first answer, so opening would wait
    // for an answer to a request not yet sent.
    if req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
        return Err(());
    }
    let reqs = tokio_stream::wrappers::ReceiverStream::new(req_rx);
    let mut lease = LeaseClient::new(ch);
    let open = lease.lease_keep_alive(reqs);
    let mut resps = match tokio::time::timeout(client.timeout, open).await {
        Ok(Ok(r)) => r.into_inner(),
        _ => return Err(()),
    };
    let period = ttl / 3;
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(client.timeout);
        let resp = match tokio::time::timeout(wait, resps.next()).await {
            Ok(Some(Ok(r))) => r,
            _ => return Err(()),
        };
        if resp.ttl <= 0 {
            let _ = state.send(LeaseState::Lost("expired or revoked".into()));
            return Ok(());
        }
        *deadline = Instant::now() + Duration::from_secs(resp.ttl as u64);
        let alive = LeaseState::Alive {
            ttl: resp.ttl,
            endpoint: url.to_string(),
        };
        if state.send(alive).is_err() {
            return Ok(());
        }
        tokio::time::sleep(period).await;
        if req_tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return Err(());
        }
    }
}
