//! The Cluster service: membership through joint-consensus-safe single
//! changes, with the member's name and URLs carried in the change entry.

use concord_proto::etcdserverpb::cluster_client::ClusterClient;
use concord_proto::etcdserverpb::cluster_server::Cluster;
use concord_proto::etcdserverpb::*;
use concord_raft::{ConfChange, ConfChangeStep};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::forward::leader_channel;
use super::reconfig::{may_add, may_promote, may_remove, View};
use super::{count, current_header, State};
use crate::error::ServerError;
use crate::members;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    /// Shared server state.
    pub state: State,
    /// `--initial-cluster-token`, salted into new member ids.
    pub token: String,
}

fn pb_members(state: &State) -> Vec<Member> {
    state
        .members
        .read()
        .list()
        .into_iter()
        .map(|m| Member {
            id: m.id,
            name: m.name,
            peer_ur_ls: m.peer_urls,
            client_ur_ls: m.client_urls,
            is_learner: m.is_learner,
        })
        .collect()
}

impl ClusterService {
    /// A client to the leader when this member is not it: membership
    /// changes are checked and proposed there.
    async fn leader(&self) -> Result<Option<ClusterClient<Channel>>, Status> {
        if self.state.is_leader() {
            return Ok(None);
        }
        Ok(Some(ClusterClient::new(leader_channel(&self.state).await?)))
    }

    /// Runs a strict reconfiguration check (leader only).
    fn check(&self, f: impl FnOnce(View<'_>) -> Result<(), ServerError>) -> Result<(), Status> {
        if !self.state.limits.strict_reconfig {
            return Ok(());
        }
        let members = self.state.members.read();
        let active = self.state.active_peers.read();
        f(View {
            members: &members,
            active: &active,
        })
        .map_err(Status::from)
    }
}

fn single(step: ConfChangeStep) -> ConfChange {
    ConfChange {
        changes: vec![step],
        joint: false,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        count("MemberAdd");
        self.state.auth.caller(&req)?.check_admin()?;
        let (meta, _, r) = req.into_parts();
        if r.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs are not provided",
            ));
        }
        for u in &r.peer_ur_ls {
            crate::config::parse_host_port(u)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        if self
            .state
            .members
            .read()
            .find_by_peer_urls(&r.peer_ur_ls)
            .is_some()
        {
            return Err(ServerError::PeerUrlExists.into());
        }
        if let Some(mut leader) = self.leader().await? {
            return leader.member_add(crate::auth::forwarded(&meta, r)).await;
        }
        self.check(|v| may_add(v, r.is_learner))?;
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let id = members::member_id(&r.peer_ur_ls, &self.token, salt);
        let m = members::Member {
            id,
            name: String::new(),
            peer_urls: r.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            is_learner: r.is_learner,
        };
        let step = if r.is_learner {
            ConfChangeStep::AddLearner(id)
        } else {
            ConfChangeStep::AddVoter(id)
        };
        self.state
            .propose_conf_change(single(step), Some(m))
            .await?;
        let members = pb_members(&self.state);
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(MemberAddResponse {
            header: Some(current_header(&self.state)),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        count("MemberRemove");
        self.state.auth.caller(&req)?.check_admin()?;
        let (meta, _, r) = req.into_parts();
        let id = r.id;
        if !self.state.members.read().members.contains_key(&id) {
            return Err(ServerError::MemberNotFound.into());
        }
        if let Some(mut leader) = self.leader().await? {
            return leader.member_remove(crate::auth::forwarded(&meta, r)).await;
        }
        self.check(|v| may_remove(v, id))?;
        self.state
            .propose_conf_change(single(ConfChangeStep::Remove(id)), None)
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(current_header(&self.state)),
            members: pb_members(&self.state),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        count("MemberUpdate");
        self.state.auth.caller(&req)?.check_admin()?;
        let r = req.into_inner();
        if !self.state.members.read().members.contains_key(&r.id) {
            return Err(ServerError::MemberNotFound.into());
        }
        for u in &r.peer_ur_ls {
            crate::config::parse_host_port(u)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let op = crate::envelope::ServerOp::SetPeerUrls {
            id: r.id,
            peer_urls: r.peer_ur_ls,
        };
        self.state
            .propose(crate::envelope::Payload::Server(op))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(current_header(&self.state)),
            members: pb_members(&self.state),
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        count("MemberList");
        if req.into_inner().linearizable {
            self.state.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(current_header(&self.state)),
            members: pb_members(&self.state),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        count("MemberPromote");
        self.state.auth.caller(&req)?.check_admin()?;
        let (meta, _, r) = req.into_parts();
        let id = r.id;
        match self.state.members.read().members.get(&id) {
            None => return Err(ServerError::MemberNotFound.into()),
            Some(m) if !m.is_learner => return Err(ServerError::NotLearner.into()),
            Some(_) => {}
        }
        if let Some(mut leader) = self.leader().await? {
            return leader
                .member_promote(crate::auth::forwarded(&meta, r))
                .await;
        }
        self.check(|v| may_promote(v, id))?;
        self.state
            .propose_conf_change(single(ConfChangeStep::AddVoter(id)), None)
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(current_header(&self.state)),
            members: pb_members(&self.state),
        }))
    }
}
