//! The [`Client`]: endpoints, discovery of members and of the leader.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_proto::etcdserverpb::cluster_client::ClusterClient;
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::{MemberListRequest, StatusRequest};
use concord_rng::SplitMix64;

use crate::auth::Login;
use crate::breaker::Breakers;
use crate::endpoint::{normalize, Endpoints};
use crate::{ClientConfig, Error};

/// A client of a Concord (or etcd v3) cluster. Cheap to clone: clones
/// share connections.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    /// Deadline of each attempt (see [`Client::with_timeout`]).
    pub(crate) timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) endpoints: Endpoints,
    pub(crate) breakers: Breakers,
    /// The token and how to get one.
    pub(crate) login: Login,
    /// Seeds of backoffs, drawn from the policy's seed.
    seeds: Mutex<SplitMix64>,
    /// The highest revision any response showed this client.
    seen_revision: AtomicI64,
}

impl Client {
    /// Builds a client; with discovery on, adds every member's client URL
    /// (best effort: a cluster that does not answer yet is no error).
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let tls = config.tls.is_some();
        let urls = config
            .endpoints
            .iter()
            .map(|e| normalize(e, tls))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let endpoints = Endpoints::new(urls, config.connect_timeout, config.tls.clone());
        let client = Client {
            timeout: config.request_timeout,
            inner: Arc::new(Inner {
                seeds: Mutex::new(SplitMix64::new(config.retry.seed)),
                seen_revision: AtomicI64::new(0),
                breakers: Breakers::new(config.breaker.clone()),
                login: Login::new(config.credentials.clone()),
                endpoints,
                config,
            }),
        };
        client.login_at_connect().await?;
        if client.inner.config.discover {
            let _ = client.refresh_endpoints().await;
        }
        Ok(client)
    }

    /// A client sharing this one's connections with another deadline per
    /// attempt.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// The endpoints known now.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints.urls()
    }

    /// The endpoint calls go to first now.
    pub fn current_endpoint(&self) -> String {
        self.inner.endpoints.current()
    }

    /// The leader's client URL as last learned.
    pub fn leader_endpoint(&self) -> Option<String> {
        self.inner.endpoints.leader()
    }

    /// The circuit breaker's state of `url` (an endpoint as
    /// [`Client::endpoints`] spells it).
    pub fn breaker_state(&self, url: &str) -> crate::BreakerState {
        self.inner.breakers.state(url)
    }

    /// The highest revision this client has seen in a KV response (what
    /// its serializable reads ask a member to have applied).
    pub fn seen_revision(&self) -> i64 {
        self.inner.seen_revision.load(Ordering::Relaxed)
    }

    /// Notes a response header's revision.
    pub(crate) fn saw(&self, header: Option<&concord_proto::etcdserverpb::ResponseHeader>) {
        if let Some(h) = header {
            self.inner
                .seen_revision
                .fetch_max(h.revision, Ordering::Relaxed);
        }
    }

    /// A fresh seed for one call's backoff.
    pub(crate) fn backoff_seed(&self) -> u64 {
        self.inner
            .seeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64()
    }

    /// Adds the client URLs of all members (`MemberList`, asked of the
    /// endpoints in turn) to the endpoints; returns them all.
    pub async fn refresh_endpoints(&self) -> Result<Vec<String>, Error> {
        let tls = self.inner.config.tls.is_some();
        let resp = self
            .read(|ch| async move {
                ClusterClient::new(ch)
                    .member_list(MemberListRequest {
                        linearizable: false,
                    })
                    .await
            })
            .await?;
        let urls = resp
            .members
            .iter()
            .flat_map(|m| m.client_ur_ls.iter())
            .filter_map(|u| normalize(u, tls).ok());
        self.inner.endpoints.add(urls);
        Ok(self.endpoints())
    }

    /// Asks the endpoints in turn who leads (`Status`, then the leader's
    /// client URL from `MemberList` on the same member) and records it.
    pub async fn refresh_leader(&self) -> Result<Option<String>, Error> {
        let eps = &self.inner.endpoints;
        let mut last = Error::NoEndpoints;
        for url in eps.urls() {
            match self.leader_from(&url).await {
                Ok(Some(leader)) => {
                    eps.set_leader(Some(leader.clone()));
                    return Ok(Some(leader));
                }
                Ok(None) => {}
                Err(e) => last = e,
            }
        }
        eps.set_leader(None);
        match last {
            Error::NoEndpoints => Ok(None),
            e => Err(e),
        }
    }

    async fn leader_from(&self, url: &str) -> Result<Option<String>, Error> {
        type Found = Result<Option<Result<String, u64>>, tonic::Status>;
        let ch = self.channel(url).await?;
        let ask = async {
            let status = MaintenanceClient::new(ch.clone())
                .status(StatusRequest {})
                .await?;
            let leader = status.into_inner().leader;
            if leader == 0 {
                return Found::Ok(None);
            }
            let list = ClusterClient::new(ch)
                .member_list(MemberListRequest {
                    linearizable: false,
                })
                .await?;
            let member = list
                .into_inner()
                .members
                .into_iter()
                .find(|m| m.id == leader);
            Ok(Some(
                member
                    .and_then(|m| m.client_ur_ls.into_iter().next())
                    .ok_or(leader),
            ))
        };
        let found = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| Error::Timeout {
                endpoint: url.to_string(),
                deadline: self.timeout,
            })?
            .map_err(|s| Error::from_status(url, s))?;
        let tls = self.inner.config.tls.is_some();
        match found {
            Some(Ok(url)) => Ok(normalize(&url, tls).ok()),
            Some(Err(id)) => Ok(self.endpoint_of(id).await),
            None => Ok(None),
        }
    }

    /// The endpoint whose member has this id (a member that has not
    /// published its client URLs yet is found by asking each endpoint).
    async fn endpoint_of(&self, id: u64) -> Option<String> {
        for url in self.inner.endpoints.urls() {
            if let Ok(s) = self.status_of(&url).await {
                if s.header.is_some_and(|h| h.member_id == id) {
                    return Some(url);
                }
            }
        }
        None
    }
}
