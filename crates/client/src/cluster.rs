//! Cluster (membership) and Maintenance calls.

use concord_proto::etcdserverpb::alarm_request::AlarmAction;
use concord_proto::etcdserverpb::cluster_client::ClusterClient;
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, StatusRequest, StatusResponse,
};

use crate::call::Safety;
use crate::{Client, Error};

impl Client {
    /// The members (`linearizable`: confirmed by the leader).
    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse, Error> {
        let req = MemberListRequest { linearizable };
        self.read(|ch| async move { ClusterClient::new(ch).member_list(req).await })
            .await
    }

    /// Adds a member (sent once: a second add would be refused or add twice).
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<MemberAddResponse, Error> {
        let req = MemberAddRequest {
            peer_ur_ls: peer_urls,
            is_learner: learner,
        };
        self.call(Safety::Write, |ch| {
            let req = req.clone();
            async move { ClusterClient::new(ch).member_add(req).await }
        })
        .await
    }

    /// Removes a member (sent once).
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, Error> {
        let req = MemberRemoveRequest { id };
        self.call(Safety::Write, |ch| async move {
            ClusterClient::new(ch).member_remove(req).await
        })
        .await
    }

    /// Promotes a learner (sent once).
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, Error> {
        let req = MemberPromoteRequest { id };
        self.call(Safety::Write, |ch| async move {
            ClusterClient::new(ch).member_promote(req).await
        })
        .await
    }

    /// The status of the member calls go to now (retried elsewhere when it
    /// does not answer).
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        self.read(|ch| async move { MaintenanceClient::new(ch).status(StatusRequest {}).await })
            .await
    }

    /// The status of one endpoint, asked once.
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusResponse, Error> {
        let url = crate::normalize(endpoint, self.inner.config.tls.is_some())?;
        let ch = self.channel(&url).await?;
        let mut maintenance = MaintenanceClient::new(ch);
        let call = maintenance.status(StatusRequest {});
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(Error::from_status(&url, s)),
            Err(_) => Err(Error::Timeout {
                endpoint: url,
                deadline: self.timeout,
            }),
        }
    }

    /// The raised alarms.
    pub async fn alarm_list(&self) -> Result<AlarmResponse, Error> {
        let req = AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: 0,
        };
        self.read(|ch| async move { MaintenanceClient::new(ch).alarm(req).await })
            .await
    }
}
