//! A leader by lease: one key `NAME` put on a lease by whoever gets there
//! first. The leader renews the lease and steps down on its own monotonic
//! clock when `now >= sent + ttl - drift_margin`, where `sent` is when the
//! last acknowledged renewal was sent: the server's lease cannot have
//! started earlier, so the leader stops before the server can expire the
//! key and another candidate can take it, as long as the two clocks drift
//! apart by less than the margin over one TTL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::response_op::Response;
use concord_proto::etcdserverpb::{LeaseKeepAliveRequest, RangeRequest};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::{follow, read_leader, ElectionError, Elector, Leader};
use crate::lock::wait_deleted;
use crate::{Client, Cmp, GetOptions, Op, Safety, Txn, WatchOptions, When};

/// The leadership held: the lease and the instant to step down at.
#[derive(Debug, Clone, Copy)]
struct Held {
    lease: i64,
    step_down_at: Instant,
}

/// A candidate for a leader-by-lease.
#[derive(Debug)]
pub struct LeaseElector {
    client: Client,
    key: String,
    value: Bytes,
    ttl: Duration,
    drift_margin: Duration,
    held: Arc<Mutex<Option<Held>>>,
    changes: Arc<watch::Sender<Option<Leader>>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    observer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for LeaseElector {
    fn drop(&mut self) {
        for t in [&self.renewer, &self.observer].into_iter().flatten() {
            t.abort();
        }
    }
}

impl LeaseElector {
    /// A candidate for `name` offering `value`, on leases of `ttl` whole
    /// seconds, stepping down `drift_margin` before they could expire.
    pub fn new(
        client: &Client,
        name: &str,
        value: impl Into<Bytes>,
        ttl: Duration,
        drift_margin: Duration,
    ) -> LeaseElector {
        assert!(
            ttl.as_secs() >= 1 && drift_margin < ttl,
            "lease TTL must be at least 1 s and exceed the drift margin"
        );
        LeaseElector {
            client: client.clone(),
            key: name.to_string(),
            value: value.into(),
            ttl: Duration::from_secs(ttl.as_secs()),
            drift_margin,
            held: Arc::new(Mutex::new(None)),
            changes: Arc::new(watch::channel(None).0),
            renewer: None,
            observer: None,
        }
    }

    /// The instant this leader steps down at unless renewed first (once
    /// past: when it stepped down).
    pub fn step_down_at(&self) -> Option<Instant> {
        self.held().map(|h| h.step_down_at)
    }

    fn held(&self) -> Option<Held> {
        *self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn query(&self) -> RangeRequest {
        GetOptions::new().to_request(self.key.as_bytes())
    }
}

impl Elector for LeaseElector {
    async fn campaign(&mut self) -> Result<Leader, ElectionError> {
        let ttl = self.ttl.as_secs() as i64;
        loop {
            let sent = Instant::now();
            let grant = self.client.lease_grant(ttl, 0).await?;
            let take = Txn::new()
                .when([When::version(&self.key, Cmp::Equal, 0)])
                .and_then([Op::put(&self.key, &self.value, grant.id)])
                .or_else([Op::get(&self.key, GetOptions::new())]);
            let resp = match self.client.txn(take).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.client.lease_revoke(grant.id).await;
                    return Err(e.into());
                }
            };
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if resp.succeeded {
                let granted = Duration::from_secs(grant.ttl.max(1) as u64);
                let held = Held {
                    lease: grant.id,
                    step_down_at: sent + granted.saturating_sub(self.drift_margin),
                };
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
                let won = Leader {
                    value: self.value.clone(),
                    term: rev,
                };
                self.changes.send_replace(Some(won.clone()));
                let renew = renew(
                    self.client.clone(),
                    self.held.clone(),
                    self.changes.clone(),
                    self.drift_margin,
                );
                self.renewer = Some(tokio::spawn(renew));
                return Ok(won);
            }
            let _ = self.client.lease_revoke(grant.id).await;
            let present = resp.responses.iter().any(
                |r| matches!(&r.response, Some(Response::ResponseRange(g)) if !g.kvs.is_empty()),
            );
            if present {
                wait_deleted(&self.client, self.key.as_bytes(), rev + 1, None).await?;
            }
        }
    }

    async fn resign(&mut self) -> Result<(), ElectionError> {
        if let Some(t) = self.renewer.take() {
            t.abort();
        }
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(held) = held else {
            return Err(ElectionError::NotLeader);
        };
        self.changes.send_replace(None);
        self.client.lease_revoke(held.lease).await?;
        Ok(())
    }

    async fn leader(&mut self) -> Result<Option<Leader>, ElectionError> {
        Ok(read_leader(&self.client, &self.query()).await?)
    }

    /// Decided on the clock at each call, so never later than the step-down
    /// instant even when the renewing task is late to run.
    fn is_leader(&self) -> bool {
        self.held().is_some_and(|h| Instant::now() < h.step_down_at)
    }

    fn changes(&mut self) -> watch::Receiver<Option<Leader>> {
        let rx = self.changes.subscribe();
        if self.observer.is_none() {
            self.observer = Some(tokio::spawn(follow(
                self.client.clone(),
                WatchOptions::default(),
                Bytes::from(self.key.clone()),
                self.query(),
                self.changes.clone(),
            )));
        }
        rx
    }
}

/// Renews every quarter TTL; steps down at the deadline if no renewal was
/// acknowledged in time, or at once if the lease is gone.
async fn renew(
    client: Client,
    held: Arc<Mutex<Option<Held>>>,
    changes: Arc<watch::Sender<Option<Leader>>>,
    drift_margin: Duration,
) {
    let lock = || held.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let Some(now) = *lock() else { return };
        if Instant::now() >= now.step_down_at {
            break;
        }
        let granted_left = now.step_down_at.saturating_duration_since(Instant::now());
        let pause = (granted_left / 4).max(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep_until(now.step_down_at.into()) => break,
            _ = tokio::time::sleep(pause) => {}
        }
        let sent = Instant::now();
        let renewal = tokio::select! {
            r = renew_once(&client, now.lease) => r,
            _ = tokio::time::sleep_until(now.step_down_at.into()) => break,
        };
        match renewal {
            Some(0) => break,
            Some(ttl) => {
                let next = sent + Duration::from_secs(ttl as u64).saturating_sub(drift_margin);
                if let Some(h) = lock().as_mut() {
                    h.step_down_at = h.step_down_at.max(next);
                }
            }
            None => {}
        }
    }
    // Kept, ended: `is_leader` is false from here on and the instant stays
    // readable.
    if let Some(h) = lock().as_mut() {
        h.step_down_at = h.step_down_at.min(Instant::now());
    }
    changes.send_replace(None);
}

/// One renewal: the TTL granted (0: the lease is gone), `None` on failure.
async fn renew_once(client: &Client, lease: i64) -> Option<i64> {
    let url = client.route(Safety::Read).await;
    let ch = client.channel(&url).await.ok()?;
    let reqs = tokio_stream::iter([LeaseKeepAliveRequest { id: lease }]);
    let once = async {
        let mut resps = LeaseClient::new(ch)
            .lease_keep_alive(reqs)
            .await
            .ok()?
            .into_inner();
        resps.next().await?.ok().map(|r| r.ttl)
    };
    match tokio::time::timeout(client.timeout, once).await {
        Ok(Some(ttl)) => Some(ttl),
        _ => {
            client.endpoint_failed(&url);
            None
        }
    }
}
