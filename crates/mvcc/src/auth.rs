//! etcd's auth store: users, roles, key-range permissions, the enabled flag
//! and the auth revision, replicated as [`AuthOp`]s through the log and
//! persisted with the rest of the state machine.
//!
//! Every successful mutation raises the auth revision by one, as etcd's
//! does. A request checked against an older permission set carries the
//! revision it was checked at ([`crate::Command::Checked`]); applying it
//! after the revision moved is refused with
//! [`AuthError::OldRevision`] and the client retries.
//!
//! Password hashes arrive already hashed (bcrypt, done by the member that
//! received the request): hashing in the apply loop would stall it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The user and the role etcd treats as all-powerful.
pub const ROOT: &str = "root";

/// Errors of the auth store, worded as etcd words them (clients match on
/// the strings).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum AuthError {
    /// `auth enable` without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// `auth enable` while `root` lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// The user exists already.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// No user name (an anonymous request once auth is enabled).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// No such user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// The role exists already.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// No such role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// No role name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Wrong user or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The permission to grant names no key.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// Revoking a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// Revoking a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    NotEnabled,
    /// The token is unknown or expired.
    #[error("etcdserver: invalid auth token")]
    InvalidToken,
    /// A change that would lock everyone out (deleting `root`, taking its role).
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The permissions changed after the request was checked.
    #[error("etcdserver: revision of auth store is old")]
    OldRevision,
}

/// Read, write or both, with etcd's `authpb.Permission.Type` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermType {
    /// READ = 0.
    Read,
    /// WRITE = 1.
    Write,
    /// READWRITE = 2.
    ReadWrite,
}

impl PermType {
    /// From etcd's enum value; `None` for an unknown one.
    pub fn from_i32(v: i32) -> Option<PermType> {
        match v {
            0 => Some(PermType::Read),
            1 => Some(PermType::Write),
            2 => Some(PermType::ReadWrite),
            _ => None,
        }
    }

    /// etcd's enum value.
    pub fn as_i32(self) -> i32 {
        match self {
            PermType::Read => 0,
            PermType::Write => 1,
            PermType::ReadWrite => 2,
        }
    }

    /// Does this permission allow `access`.
    pub fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (PermType::ReadWrite, _)
                | (PermType::Read, Access::Read)
                | (PermType::Write, Access::Write)
        )
    }
}

/// What a request does to a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads it.
    Read,
    /// Writes it.
    Write,
}

/// A key-range permission of a role, with etcd's range conventions: an
/// empty `range_end` is the single key, `"\0"` is every key from `key` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What it allows.
    pub perm_type: PermType,
    /// First key.
    pub key: Bytes,
    /// End of the range (exclusive).
    pub range_end: Bytes,
}

/// A role: a name and its permissions, kept sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Name.
    pub name: String,
    /// Permissions, sorted by `(key, range_end)`.
    pub perms: Vec<Permission>,
}

/// A user: a name, a bcrypt hash and the roles granted, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Name.
    pub name: String,
    /// bcrypt hash of the password (empty for a `no_password` user).
    pub password_hash: String,
    /// Granted roles, sorted.
    pub roles: Vec<String>,
    /// May log in only with a client certificate.
    pub no_password: bool,
}

impl User {
    /// Has the `root` role.
    pub fn is_root(&self) -> bool {
        self.roles.iter().any(|r| r == ROOT)
    }
}

/// The replicated auth state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// Auth is on: requests are checked.
    pub enabled: bool,
    /// Raised by every change.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
}

/// A change to the auth state, as it travels through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    /// AuthEnable.
    Enable,
    /// AuthDisable.
    Disable,
    /// UserAdd (`password_hash` empty for a `no_password` user).
    UserAdd {
        /// Name.
        name: String,
        /// bcrypt hash.
        password_hash: String,
        /// Certificate login only.
        no_password: bool,
    },
    /// UserDelete.
    UserDelete {
        /// Name.
        name: String,
    },
    /// UserChangePassword.
    UserChangePassword {
        /// Name.
        name: String,
        /// bcrypt hash of the new password.
        password_hash: String,
    },
    /// UserGrantRole.
    UserGrantRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// UserRevokeRole.
    UserRevokeRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// RoleAdd.
    RoleAdd {
        /// Name.
        name: String,
    },
    /// RoleDelete (also revoked from every user).
    RoleDelete {
        /// Name.
        name: String,
    },
    /// RoleGrantPermission: adds the permission, or replaces the type of
    /// one on the same range.
    RoleGrantPermission {
        /// Role.
        role: String,
        /// Permission.
        perm: Permission,
    },
    /// RoleRevokePermission: the permission on exactly this range.
    RoleRevokePermission {
        /// Role.
        role: String,
        /// First key.
        key: Bytes,
        /// Range end.
        range_end: Bytes,
    },
}

impl AuthState {
    /// Applies one change; on error nothing changed. A successful change
    /// raises the revision.
    pub fn apply(&mut self, op: &AuthOp) -> Result<(), AuthError> {
        match op {
            AuthOp::Enable => {
                if self.enabled {
                    return Ok(()); // as etcd: enabling twice is no change
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.is_root() {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
            }
            AuthOp::Disable => {
                if !self.enabled {
                    return Ok(());
                }
                self.enabled = false;
            }
            AuthOp::UserAdd {
                name,
                password_hash,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    name: name.clone(),
                    password_hash: password_hash.clone(),
                    roles: Vec::new(),
                    no_password: *no_password,
                };
                self.users.insert(name.clone(), user);
            }
            AuthOp::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthOp::UserChangePassword {
                name,
                password_hash,
            } => {
                let u = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                u.password_hash = password_hash.clone();
                u.no_password = false;
            }
            AuthOp::UserGrantRole { user, role } => {
                // The root role exists without being added, as in etcd.
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                let u = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                if let Err(at) = u.roles.binary_search(role) {
                    u.roles.insert(at, role.clone());
                }
            }
            AuthOp::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                let at = u
                    .roles
                    .binary_search(role)
                    .map_err(|_| AuthError::RoleNotGranted)?;
                u.roles.remove(at);
            }
            AuthOp::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                let role = Role {
                    name: name.clone(),
                    perms: Vec::new(),
                };
                self.roles.insert(name.clone(), role);
            }
            AuthOp::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.retain(|r| r != name);
                }
            }
            AuthOp::RoleGrantPermission { role, perm } => {
                if perm.key.is_empty() {
                    return Err(AuthError::PermissionNotGiven);
                }
                let r = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let at = r.perms.binary_search_by(|p| {
                    (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end))
                });
                match at {
                    Ok(i) => r.perms[i].perm_type = perm.perm_type,
                    Err(i) => r.perms.insert(i, perm.clone()),
                }
            }
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let r = self.roles.get_mut(role).ok_or(AuthError::RoleNotFound)?;
                let at = r
                    .perms
                    .iter()
                    .position(|p| p.key == *key && p.range_end == *range_end)
                    .ok_or(AuthError::PermissionNotGranted)?;
                r.perms.remove(at);
            }
        }
        self.revision += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_user(s: &mut AuthState, name: &str) {
        s.apply(&AuthOp::UserAdd {
            name: name.into(),
            password_hash: "h".into(),
            no_password: false,
        })
        .unwrap();
    }

    #[test]
    fn enabling_needs_a_root_user_with_the_root_role() {
        let mut s = AuthState::default();
        assert_eq!(s.apply(&AuthOp::Enable), Err(AuthError::RootUserNotExist));
        add_user(&mut s, ROOT);
        assert_eq!(s.apply(&AuthOp::Enable), Err(AuthError::RootRoleNotExist));
        let grant = AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        };
        s.apply(&grant).unwrap();
        let before = s.revision;
        s.apply(&AuthOp::Enable).unwrap();
        assert!(s.enabled);
        assert_eq!(s.revision, before + 1);
        // Nobody may lock the cluster out while auth is on.
        let del = AuthOp::UserDelete { name: ROOT.into() };
        assert_eq!(s.apply(&del), Err(AuthError::InvalidAuthMgmt));
        let revoke = AuthOp::UserRevokeRole {
            user: ROOT.into(),
            role: ROOT.into(),
        };
        assert_eq!(s.apply(&revoke), Err(AuthError::InvalidAuthMgmt));
        s.apply(&AuthOp::Disable).unwrap();
        s.apply(&revoke).unwrap();
        s.apply(&del).unwrap();
    }

    #[test]
    fn errors_change_nothing_and_changes_raise_the_revision() {
        let mut s = AuthState::default();
        add_user(&mut s, "alice");
        let snapshot = s.clone();
        let bad = [
            AuthOp::UserAdd {
                name: "alice".into(),
                password_hash: String::new(),
                no_password: true,
            },
            AuthOp::UserAdd {
                name: String::new(),
                password_hash: String::new(),
                no_password: true,
            },
            AuthOp::UserGrantRole {
                user: "alice".into(),
                role: "nope".into(),
            },
            AuthOp::UserRevokeRole {
                user: "alice".into(),
                role: "nope".into(),
            },
            AuthOp::RoleDelete {
                name: "nope".into(),
            },
            AuthOp::RoleAdd {
                name: String::new(),
            },
            AuthOp::UserDelete { name: "bob".into() },
        ];
        let want = [
            AuthError::UserAlreadyExist,
            AuthError::UserEmpty,
            AuthError::RoleNotFound,
            AuthError::RoleNotGranted,
            AuthError::RoleNotFound,
            AuthError::RoleEmpty,
            AuthError::UserNotFound,
        ];
        for (op, err) in bad.iter().zip(want) {
            assert_eq!(s.apply(op), Err(err), "{op:?}");
        }
        assert_eq!(s, snapshot);
    }

    #[test]
    fn granting_a_permission_twice_replaces_its_type_and_deleting_a_role_revokes_it() {
        let mut s = AuthState::default();
        add_user(&mut s, "alice");
        s.apply(&AuthOp::RoleAdd { name: "r".into() }).unwrap();
        let perm = |t| Permission {
            perm_type: t,
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"b"),
        };
        let grant = |t| AuthOp::RoleGrantPermission {
            role: "r".into(),
            perm: perm(t),
        };
        s.apply(&grant(PermType::Read)).unwrap();
        s.apply(&grant(PermType::ReadWrite)).unwrap();
        assert_eq!(s.roles["r"].perms, vec![perm(PermType::ReadWrite)]);
        s.apply(&AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "r".into(),
        })
        .unwrap();
        let revoke = AuthOp::RoleRevokePermission {
            role: "r".into(),
            key: Bytes::from_static(b"a"),
            range_end: Bytes::new(),
        };
        assert_eq!(s.apply(&revoke), Err(AuthError::PermissionNotGranted));
        s.apply(&AuthOp::RoleDelete { name: "r".into() }).unwrap();
        assert!(s.users["alice"].roles.is_empty());
    }
}
