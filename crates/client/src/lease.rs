//! Lease calls: grant, revoke, time-to-live.

use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use crate::call::Safety;
use crate::{Client, Error};

impl Client {
    /// Grants a lease of `ttl` seconds (`id` 0: the server picks). Sent
    /// once when the server picks; with an id of the caller's it is
    /// idempotent (a second grant of the same id is refused) and retried.
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> Result<LeaseGrantResponse, Error> {
        let req = LeaseGrantRequest { ttl, id };
        let safety = if id != 0 {
            Safety::IdempotentWrite
        } else {
            Safety::Write
        };
        self.call(safety, |ch| async move {
            LeaseClient::new(ch).lease_grant(req).await
        })
        .await
    }

    /// Revokes a lease (retried: revoking twice leaves the same state).
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse, Error> {
        let req = LeaseRevokeRequest { id };
        self.call(Safety::IdempotentWrite, |ch| async move {
            LeaseClient::new(ch).lease_revoke(req).await
        })
        .await
    }

    /// The lease's remaining and granted TTL (and its keys, when asked).
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Error> {
        let req = LeaseTimeToLiveRequest { id, keys };
        self.read(|ch| async move { LeaseClient::new(ch).lease_time_to_live(req).await })
            .await
    }
}
