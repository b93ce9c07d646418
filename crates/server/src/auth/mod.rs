//! Who is asking, and may they: the member's view of the replicated auth
//! store, its simple tokens, and the caller of each request.
//!
//! Permissions are checked on the member that receives a request, against
//! the auth state it has applied ([`Gate::view`]). A write is proposed
//! wrapped in [`Command::Checked`] with the auth revision it was checked
//! at; if the revision moved before it applies, every member refuses it
//! alike (`etcdserver: revision of auth store is old`) and the client
//! retries, as with etcd.

pub(crate) mod jwt;
pub(crate) mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_mvcc::{Access, AuthError, AuthOp, AuthState, Command, MvccError};
use parking_lot::{Mutex, RwLock};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::error::ServerError;
use jwt::JwtTokens;
use tokens::SimpleTokens;

/// Metadata keys a token arrives under (etcd's clients send `token`).
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];
/// At most one failed-login log line per this interval (the rest counted).
const LOGIN_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The member's auth machinery, shared by the services and the driver.
#[derive(Debug)]
pub(crate) struct Gate {
    view: RwLock<Arc<AuthState>>,
    /// The simple tokens this member knows.
    pub tokens: SimpleTokens,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--auth-token jwt,...`: used instead of the simple tokens.
    pub jwt: Option<Arc<JwtTokens>>,
    failed_logins: Mutex<(Option<Instant>, u64)>,
}

impl Gate {
    /// A gate over the auth state the store holds at start-up.
    pub(crate) fn new(
        initial: AuthState,
        token_ttl: Duration,
        bcrypt_cost: u32,
        jwt: Option<Arc<JwtTokens>>,
    ) -> Gate {
        Gate {
            view: RwLock::new(Arc::new(initial)),
            tokens: SimpleTokens::new(token_ttl),
            bcrypt_cost,
            jwt,
            failed_logins: Mutex::new((None, 0)),
        }
    }

    /// The auth state as last applied here.
    pub(crate) fn view(&self) -> Arc<AuthState> {
        self.view.read().clone()
    }

    /// The driver applied `ops` (successfully or not) and the store's auth
    /// state is now `state`: publish it, and forget tokens as etcd does
    /// (a deleted user's, a changed password's, all when auth is off).
    pub(crate) fn applied(&self, state: &AuthState, ops: &[AuthOp]) {
        *self.view.write() = Arc::new(state.clone());
        for op in ops {
            match op {
                AuthOp::UserDelete { name } | AuthOp::UserChangePassword { name, .. } => {
                    self.tokens.invalidate_user(name)
                }
                AuthOp::Disable => self.tokens.clear(),
                _ => {}
            }
        }
    }

    /// The auth state was replaced whole (a snapshot from the leader).
    pub(crate) fn restored(&self, state: &AuthState) {
        *self.view.write() = Arc::new(state.clone());
        self.tokens.clear();
    }

    /// Logs a failed login, at most once per second (the rest counted);
    /// never the password.
    pub(crate) fn log_failed_login(&self, user: &str, why: &str) {
        let mut f = self.failed_logins.lock();
        let now = Instant::now();
        if f.0
            .is_some_and(|t| now.duration_since(t) < LOGIN_LOG_INTERVAL)
        {
            f.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut f.1);
        f.0 = Some(now);
        drop(f);
        tracing::warn!(user, why, suppressed, "authentication failed");
    }

    /// Who sent `req`: nobody while auth is disabled; the user of its
    /// token, which must be live; without a token, the common name of the
    /// client's verified certificate (`--client-cert-auth`), as in etcd;
    /// else anonymous.
    pub(crate) fn caller<T>(&self, req: &tonic::Request<T>) -> Result<Caller, Status> {
        let view = self.view();
        if !view.enabled {
            return Ok(Caller { view, user: None });
        }
        let meta = req.metadata();
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| meta.get(*k))
            .and_then(|v| v.to_str().ok());
        let user = match token {
            None => req
                .extensions()
                .get::<ClientIdentity>()
                .and_then(|c| c.0.clone()),
            Some(t) => {
                let user = match &self.jwt {
                    Some(jwt) => jwt.user_of(t),
                    None => self.tokens.user_of(t, Instant::now()),
                };
                Some(user.ok_or_else(|| denied(AuthError::InvalidToken))?)
            }
        };
        Ok(Caller { view, user })
    }
}

/// The caller of a request and the auth state it is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The auth state at the check.
    pub view: Arc<AuthState>,
    /// The user, if authenticated.
    pub user: Option<String>,
}

impl Caller {
    /// The user's name, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Admin-only operations need the `root` role.
    pub(crate) fn check_admin(&self) -> Result<(), Status> {
        self.view.check_admin(self.user()).map_err(denied)
    }

    /// `access` to `[key, range_end)`, etcd's range conventions.
    pub(crate) fn check_range(
        &self,
        key: &Bytes,
        range_end: &Bytes,
        access: Access,
    ) -> Result<(), Status> {
        self.view
            .check_range(self.user(), key, range_end, access)
            .map_err(denied)
    }

    /// Read and write on every key under `prefix` (a lock's or an
    /// election's keys, which its calls read and write).
    pub(crate) fn check_prefix(&self, prefix: &Bytes) -> Result<(), Status> {
        let end = prefix_end(prefix);
        self.check_range(prefix, &end, Access::Read)?;
        self.check_range(prefix, &end, Access::Write)
    }

    /// `cmd`, to be refused at apply if the auth state changed since this
    /// check.
    pub(crate) fn checked(&self, cmd: Command) -> Command {
        Command::Checked {
            auth_revision: self.view.revision,
            cmd: Box::new(cmd),
        }
    }
}

/// A request to hand to the leader, carrying the caller's token (every
/// member knows every token) so the leader checks the same caller.
pub(crate) fn forwarded<T>(meta: &MetadataMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    for k in TOKEN_KEYS {
        if let Some(v) = meta.get(k) {
            req.metadata_mut().insert(k, v.clone());
        }
    }
    req
}

/// An auth error as the client sees it.
pub(crate) fn denied(e: AuthError) -> Status {
    ServerError::Mvcc(MvccError::Auth(e)).into()
}

/// Who the client's verified certificate names (`--client-cert-auth`): its
/// subject's common name. With auth enabled it is the user of a request
/// that carries no token, as in etcd. Every request of the connection
/// carries it in its extensions (set by `tls.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity(pub Option<String>);

/// `prefix` + 1 on the last byte: the end of a prefix range.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_mvcc::ROOT;

    fn enabled() -> AuthState {
        let mut s = AuthState::default();
        for op in [
            AuthOp::UserAdd {
                name: ROOT.into(),
                password_hash: String::new(),
                no_password: true,
            },
            AuthOp::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
            AuthOp::Enable,
        ] {
            s.apply(&op).unwrap();
        }
        s
    }

    fn request(token: Option<&str>, cn: Option<&str>) -> tonic::Request<()> {
        let mut req = tonic::Request::new(());
        if let Some(t) = token {
            req.metadata_mut().insert("token", t.parse().unwrap());
        }
        if let Some(cn) = cn {
            req.extensions_mut()
                .insert(ClientIdentity(Some(cn.to_string())));
        }
        req
    }

    #[test]
    fn the_caller_comes_from_a_live_token_once_auth_is_on() {
        let gate = Gate::new(AuthState::default(), Duration::from_secs(60), 4, None);
        let bogus = request(Some("bogus"), None);
        // Disabled: tokens are not even looked at.
        assert_eq!(gate.caller(&bogus).unwrap().user, None);
        gate.applied(&enabled(), &[AuthOp::Enable]);
        let err = gate.caller(&bogus).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "etcdserver: invalid auth token");
        gate.tokens
            .assign("bogus".into(), ROOT.into(), Instant::now());
        let c = gate.caller(&bogus).unwrap();
        assert_eq!(c.user(), Some(ROOT));
        assert!(c.check_admin().is_ok());
        let anon = gate.caller(&request(None, None)).unwrap();
        let err = anon.check_admin().unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: user name is empty");
        // Disabling forgets every token.
        let mut off = enabled();
        off.apply(&AuthOp::Disable).unwrap();
        gate.applied(&off, &[AuthOp::Disable]);
        gate.applied(&enabled(), &[AuthOp::Enable]);
        assert!(gate.caller(&bogus).is_err());
    }

    #[test]
    fn without_a_token_the_certificate_names_the_user() {
        let gate = Gate::new(enabled(), Duration::from_secs(60), 4, None);
        let c = gate.caller(&request(None, Some(ROOT))).unwrap();
        assert_eq!(c.user(), Some(ROOT));
        assert!(c.check_admin().is_ok());
        // A token wins over the certificate, and must be live.
        gate.tokens
            .assign("t.1".into(), "alice".into(), Instant::now());
        let c = gate.caller(&request(Some("t.1"), Some(ROOT))).unwrap();
        assert_eq!(c.user(), Some("alice"));
        assert!(gate.caller(&request(Some("gone"), Some(ROOT))).is_err());
    }

    #[test]
    fn checked_commands_carry_the_revision_of_the_check() {
        let gate = Gate::new(enabled(), Duration::from_secs(60), 4, None);
        let c = gate.caller(&request(None, None)).unwrap();
        match c.checked(Command::Noop) {
            Command::Checked { auth_revision, cmd } => {
                assert_eq!(auth_revision, 3);
                assert_eq!(*cmd, Command::Noop);
            }
            other => panic!("{other:?}"),
        }
    }
}
