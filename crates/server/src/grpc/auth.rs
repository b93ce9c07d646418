//! The Auth service: etcd's seventeen calls, its errors and codes.
//!
//! Changes go through the log as [`AuthOp`]s, checked (admin only) on the
//! member that receives them and refused at apply if the auth store moved
//! since. Passwords are hashed (bcrypt, `--bcrypt-cost`) and checked on a
//! blocking thread of the receiving member, never in the apply loop.
//! Reads are linearizable: served from the member's applied state after
//! a ReadIndex barrier.

use bytes::Bytes;
use concord_mvcc::{AuthError, AuthOp, AuthState, Command, PermType, Permission};
use concord_proto::authpb;
use concord_proto::etcdserverpb::auth_server::Auth;
use concord_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::{count, current_header, State};
use crate::auth::{denied, tokens::SimpleTokens, Caller};
use crate::envelope::{Payload, ServerOp};
use crate::error::ServerError;

/// The Auth service.
#[derive(Debug, Clone)]
pub struct AuthService {
    /// Shared server state.
    pub state: State,
}

impl AuthService {
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        self.state.auth.caller(req)
    }

    /// An admin's change through the log.
    async fn change<T>(&self, req: &Request<T>, op: AuthOp) -> Result<ResponseHeader, Status> {
        let caller = self.caller(req)?;
        caller.check_admin()?;
        super::kv::write(&self.state, caller.checked(Command::Auth(op))).await?;
        Ok(current_header(&self.state))
    }

    /// The applied auth state, once every change committed before the
    /// request is applied here.
    async fn read(&self) -> Result<std::sync::Arc<AuthState>, Status> {
        self.state.read_barrier().await?;
        Ok(self.state.auth.view())
    }

    /// bcrypt on a blocking thread (tens of ms at etcd's cost).
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.state.auth.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .map_err(|e| ServerError::Internal(format!("bcrypt: {e}")).into())
    }

    /// The hash a UserAdd or UserChangePassword stores: the one given
    /// (`hashedPassword`, etcd 3.5), or the password hashed here.
    async fn hash_of(&self, password: String, hashed: String) -> Result<String, Status> {
        if hashed.is_empty() {
            self.hash(password).await
        } else {
            Ok(hashed)
        }
    }
}

fn perm_of(p: authpb::Permission) -> Result<Permission, Status> {
    let perm_type = PermType::from_i32(p.perm_type)
        .ok_or_else(|| Status::invalid_argument("etcdserver: invalid permission type"))?;
    Ok(Permission {
        perm_type,
        key: p.key,
        range_end: p.range_end,
    })
}

fn perm_to_pb(p: &Permission) -> authpb::Permission {
    authpb::Permission {
        perm_type: p.perm_type.as_i32(),
        key: p.key.clone(),
        range_end: p.range_end.clone(),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        count("AuthEnable");
        let header = self.change(&req, AuthOp::Enable).await?;
        tracing::info!("auth enabled");
        Ok(Response::new(AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        count("AuthDisable");
        let header = self.change(&req, AuthOp::Disable).await?;
        tracing::info!("auth disabled");
        Ok(Response::new(AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(
        &self,
        _req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        count("AuthStatus");
        let view = self.read().await?;
        Ok(Response::new(AuthStatusResponse {
            header: Some(current_header(&self.state)),
            enabled: view.enabled,
            auth_revision: view.revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        count("Authenticate");
        let r = req.into_inner();
        let gate = &self.state.auth;
        let view = gate.view();
        if !view.enabled {
            return Err(denied(AuthError::NotEnabled));
        }
        let hash = match view.users.get(&r.name) {
            Some(u) if !u.no_password => u.password_hash.clone(),
            Some(_) => {
                gate.log_failed_login(&r.name, "user has no password");
                return Err(denied(AuthError::AuthFailed));
            }
            None => {
                gate.log_failed_login(&r.name, "no such user");
                return Err(denied(AuthError::AuthFailed));
            }
        };
        let password = r.password;
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .unwrap_or(false);
        if !ok {
            gate.log_failed_login(&r.name, "wrong password");
            return Err(denied(AuthError::AuthFailed));
        }
        if let Some(jwt) = &gate.jwt {
            // Signed and self-contained: nothing to tell the other members.
            let token = jwt.sign(&r.name, view.revision)?;
            return Ok(Response::new(AuthenticateResponse {
                header: Some(current_header(&self.state)),
                token,
            }));
        }
        let index = self.state.raft_status().applied;
        let token = SimpleTokens::generate(index)
            .map_err(|e| ServerError::Internal(format!("no randomness for a token: {e}")))?;
        // Every member learns the token through the log; this one has
        // applied it when the proposal returns.
        let op = ServerOp::Authenticate {
            name: r.name.clone(),
            token: token.clone(),
        };
        self.state.propose(Payload::Server(op)).await?;
        if gate
            .tokens
            .user_of(&token, std::time::Instant::now())
            .is_none()
        {
            // The user was deleted between the check and the apply.
            return Err(denied(AuthError::AuthFailed));
        }
        Ok(Response::new(AuthenticateResponse {
            header: Some(current_header(&self.state)),
            token,
        }))
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        count("UserAdd");
        self.caller(&req)?.check_admin()?;
        let r = req.get_ref();
        if r.name.is_empty() {
            return Err(denied(AuthError::UserEmpty));
        }
        if self.state.auth.view().users.contains_key(&r.name) {
            return Err(denied(AuthError::UserAlreadyExist));
        }
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password_hash = if no_password {
            String::new()
        } else {
            self.hash_of(r.password.clone(), r.hashed_password.clone())
                .await?
        };
        let op = AuthOp::UserAdd {
            name: r.name.clone(),
            password_hash,
            no_password,
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        count("UserGet");
        let caller = self.caller(&req)?;
        let name = &req.get_ref().name;
        // A user may read its own record, as in etcd.
        if caller.user() != Some(name.as_str()) {
            caller.check_admin()?;
        }
        let view = self.read().await?;
        let user = view
            .users
            .get(name)
            .ok_or(denied(AuthError::UserNotFound))?;
        Ok(Response::new(AuthUserGetResponse {
            header: Some(current_header(&self.state)),
            roles: user.roles.clone(),
        }))
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        count("UserList");
        self.caller(&req)?.check_admin()?;
        let view = self.read().await?;
        Ok(Response::new(AuthUserListResponse {
            header: Some(current_header(&self.state)),
            users: view.users.keys().cloned().collect(),
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        count("UserDelete");
        let name = req.get_ref().name.clone();
        let header = self.change(&req, AuthOp::UserDelete { name }).await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        count("UserChangePassword");
        self.caller(&req)?.check_admin()?;
        let r = req.get_ref();
        if !self.state.auth.view().users.contains_key(&r.name) {
            return Err(denied(AuthError::UserNotFound));
        }
        let password_hash = self
            .hash_of(r.password.clone(), r.hashed_password.clone())
            .await?;
        let op = AuthOp::UserChangePassword {
            name: r.name.clone(),
            password_hash,
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        count("UserGrantRole");
        let r = req.get_ref();
        let op = AuthOp::UserGrantRole {
            user: r.user.clone(),
            role: r.role.clone(),
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        count("UserRevokeRole");
        let r = req.get_ref();
        let op = AuthOp::UserRevokeRole {
            user: r.name.clone(),
            role: r.role.clone(),
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        count("RoleAdd");
        let name = req.get_ref().name.clone();
        let header = self.change(&req, AuthOp::RoleAdd { name }).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        count("RoleGet");
        let caller = self.caller(&req)?;
        let name = &req.get_ref().role;
        // A user may read the roles it has, as in etcd.
        let has_it = caller
            .user()
            .and_then(|u| caller.view.users.get(u))
            .is_some_and(|u| u.roles.contains(name));
        if !has_it {
            caller.check_admin()?;
        }
        let view = self.read().await?;
        let perm = match view.roles.get(name) {
            Some(role) => role.perms.iter().map(perm_to_pb).collect(),
            // The root role exists without being added.
            None if name == concord_mvcc::ROOT => Vec::new(),
            None => return Err(denied(AuthError::RoleNotFound)),
        };
        Ok(Response::new(AuthRoleGetResponse {
            header: Some(current_header(&self.state)),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        count("RoleList");
        self.caller(&req)?.check_admin()?;
        let view = self.read().await?;
        Ok(Response::new(AuthRoleListResponse {
            header: Some(current_header(&self.state)),
            roles: view.roles.keys().cloned().collect(),
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        count("RoleDelete");
        let name = req.get_ref().role.clone();
        let header = self.change(&req, AuthOp::RoleDelete { name }).await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        count("RoleGrantPermission");
        let r = req.get_ref();
        let perm = r
            .perm
            .clone()
            .ok_or(denied(AuthError::PermissionNotGiven))?;
        let op = AuthOp::RoleGrantPermission {
            role: r.name.clone(),
            perm: perm_of(perm)?,
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        count("RoleRevokePermission");
        let r = req.get_ref();
        let op = AuthOp::RoleRevokePermission {
            role: r.role.clone(),
            key: Bytes::clone(&r.key),
            range_end: Bytes::clone(&r.range_end),
        };
        let header = self.change(&req, op).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
