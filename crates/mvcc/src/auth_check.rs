//! Permission checks against the auth state, with etcd's rules: nothing is
//! checked while auth is disabled; an anonymous request is refused with
//! [`AuthError::UserEmpty`], an unknown user or a missing permission with
//! [`AuthError::PermissionDenied`]; a user with the `root` role may do
//! anything. A request's key range must be covered by the union of the
//! ranges its user's roles grant for that access.

use bytes::Bytes;

use crate::auth::{Access, AuthError, AuthState, User};
use crate::request::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};

/// A half-open key interval; `None` as the end is "to the last key".
type Interval = (Bytes, Option<Bytes>);

/// etcd's range conventions as an interval: an empty `range_end` is the
/// single key (up to the key followed by a zero byte), `"\0"` the end.
fn interval(key: &Bytes, range_end: &Bytes) -> Interval {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        (key.clone(), Some(Bytes::from(end)))
    } else if range_end.as_ref() == b"\0" {
        (key.clone(), None)
    } else {
        (key.clone(), Some(range_end.clone()))
    }
}

/// Is `want` inside the union of `have`.
fn covered(mut have: Vec<Interval>, want: &Interval) -> bool {
    if let Some(end) = &want.1 {
        if end <= &want.0 {
            return true; // an empty range reads and writes nothing
        }
    }
    have.sort_by(|a, b| a.0.cmp(&b.0));
    // `[want.0, reach)` is covered so far (`None`: to the last key). In key
    // order, an interval that starts inside it extends it; the first that
    // starts beyond it leaves a gap no later one can fill.
    let mut reach = Some(want.0.clone());
    for (start, end) in have {
        let Some(r) = &reach else { break };
        if start > *r {
            break;
        }
        reach = match end {
            None => None,
            Some(e) if e > *r => Some(e),
            Some(_) => reach,
        };
    }
    match (reach, &want.1) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(e)) => r >= *e,
    }
}

impl AuthState {
    /// The user a request acts for, once auth is enabled: `None` while it
    /// is disabled (nothing is checked).
    fn subject<'a>(&'a self, user: Option<&str>) -> Result<Option<&'a User>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let name = user.filter(|u| !u.is_empty()).ok_or(AuthError::UserEmpty)?;
        let u = self.users.get(name).ok_or(AuthError::PermissionDenied)?;
        Ok(Some(u))
    }

    /// Admin-only operations (auth and membership changes, maintenance):
    /// the user must have the `root` role.
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), AuthError> {
        match self.subject(user)? {
            Some(u) if !u.is_root() => Err(AuthError::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// `access` to `[key, range_end)` (etcd's conventions).
    pub fn check_range(
        &self,
        user: Option<&str>,
        key: &Bytes,
        range_end: &Bytes,
        access: Access,
    ) -> Result<(), AuthError> {
        let Some(u) = self.subject(user)? else {
            return Ok(());
        };
        self.user_may(u, key, range_end, access)
    }

    fn user_may(
        &self,
        u: &User,
        key: &Bytes,
        range_end: &Bytes,
        access: Access,
    ) -> Result<(), AuthError> {
        if u.is_root() {
            return Ok(());
        }
        let have: Vec<Interval> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.perms)
            .filter(|p| p.perm_type.allows(access))
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        if covered(have, &interval(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// A put: write on the key, read too when it asks for the previous
    /// value. (Keys already on its lease are checked by the caller, who
    /// can see them: [`AuthState::check_keys_writable`].)
    pub fn check_put(&self, user: Option<&str>, p: &PutRequest) -> Result<(), AuthError> {
        let Some(u) = self.subject(user)? else {
            return Ok(());
        };
        self.put_allowed(u, p)
    }

    fn put_allowed(&self, u: &User, p: &PutRequest) -> Result<(), AuthError> {
        self.user_may(u, &p.key, &Bytes::new(), Access::Write)?;
        if p.prev_kv {
            self.user_may(u, &p.key, &Bytes::new(), Access::Read)?;
        }
        Ok(())
    }

    /// A delete: write on the range, read too when it asks for the
    /// previous values.
    pub fn check_delete(
        &self,
        user: Option<&str>,
        d: &DeleteRangeRequest,
    ) -> Result<(), AuthError> {
        let Some(u) = self.subject(user)? else {
            return Ok(());
        };
        self.delete_allowed(u, d)
    }

    fn delete_allowed(&self, u: &User, d: &DeleteRangeRequest) -> Result<(), AuthError> {
        self.user_may(u, &d.key, &d.range_end, Access::Write)?;
        if d.prev_kv {
            self.user_may(u, &d.key, &d.range_end, Access::Read)?;
        }
        Ok(())
    }

    /// A txn: read on every compare, and every operation of both branches
    /// (nested txns too), whichever branch runs.
    pub fn check_txn(&self, user: Option<&str>, t: &TxnRequest) -> Result<(), AuthError> {
        let Some(u) = self.subject(user)? else {
            return Ok(());
        };
        self.txn_allowed(u, t)
    }

    fn txn_allowed(&self, u: &User, t: &TxnRequest) -> Result<(), AuthError> {
        for c in &t.compare {
            self.user_may(u, &c.key, &c.range_end, Access::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Range(r) => self.user_may(u, &r.key, &r.range_end, Access::Read)?,
                RequestOp::Put(p) => self.put_allowed(u, p)?,
                RequestOp::DeleteRange(d) => self.delete_allowed(u, d)?,
                RequestOp::Txn(inner) => self.txn_allowed(u, inner)?,
            }
        }
        Ok(())
    }

    /// Write on each of `keys` (a lease's attached keys: revoking a lease
    /// or attaching more to it, as etcd checks).
    pub fn check_keys_writable<'a>(
        &self,
        user: Option<&str>,
        keys: impl IntoIterator<Item = &'a Bytes>,
    ) -> Result<(), AuthError> {
        let Some(u) = self.subject(user)? else {
            return Ok(());
        };
        for k in keys {
            self.user_may(u, k, &Bytes::new(), Access::Write)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthOp, PermType, Permission, ROOT};
    use crate::request::{Compare, CompareResult, CompareTarget, RangeRequest};

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    /// alice: read on `a`, readwrite on `p/`..`p0` (prefix), write from
    /// `z` on; bob: no roles; root: root.
    fn state() -> AuthState {
        let mut s = AuthState::default();
        for name in [ROOT, "alice", "bob"] {
            s.apply(&AuthOp::UserAdd {
                name: name.into(),
                password_hash: String::new(),
                no_password: true,
            })
            .unwrap();
        }
        s.apply(&AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        })
        .unwrap();
        s.apply(&AuthOp::RoleAdd { name: "r".into() }).unwrap();
        for (t, k, e) in [
            (PermType::Read, "a", ""),
            (PermType::ReadWrite, "p/", "p0"),
            (PermType::Write, "z", "\0"),
        ] {
            s.apply(&AuthOp::RoleGrantPermission {
                role: "r".into(),
                perm: Permission {
                    perm_type: t,
                    key: b(k),
                    range_end: b(e),
                },
            })
            .unwrap();
        }
        s.apply(&AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "r".into(),
        })
        .unwrap();
        s.apply(&AuthOp::Enable).unwrap();
        s
    }

    #[test]
    fn ranges_are_checked_with_etcd_conventions() {
        let s = state();
        let ok = |k: &str, e: &str, a| s.check_range(Some("alice"), &b(k), &b(e), a).is_ok();
        assert!(ok("a", "", Access::Read));
        assert!(!ok("a", "", Access::Write));
        assert!(!ok("a", "b", Access::Read), "a range beyond the single key");
        assert!(!ok("a0", "", Access::Read));
        assert!(ok("p/x", "", Access::Write));
        assert!(ok("p/", "p0", Access::Read), "the whole prefix");
        assert!(ok("p/a", "p/b", Access::Read), "inside the prefix");
        assert!(!ok("p", "p0", Access::Read), "wider than the prefix");
        assert!(!ok("p/", "\0", Access::Read), "from-key past the prefix");
        assert!(ok("zz", "\0", Access::Write), "from-key inside from-key");
        assert!(ok("z", "", Access::Write));
        assert!(!ok("y", "\0", Access::Write));
        assert!(!ok("zz", "", Access::Read));
    }

    #[test]
    fn adjacent_ranges_of_several_roles_add_up() {
        let mut s = state();
        s.apply(&AuthOp::RoleAdd { name: "r2".into() }).unwrap();
        s.apply(&AuthOp::RoleGrantPermission {
            role: "r2".into(),
            perm: Permission {
                perm_type: PermType::Read,
                key: b("p0"),
                range_end: b("p5"),
            },
        })
        .unwrap();
        let read = |s: &AuthState| {
            s.check_range(Some("alice"), &b("p/"), &b("p5"), Access::Read)
                .is_ok()
        };
        assert!(!read(&s));
        s.apply(&AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "r2".into(),
        })
        .unwrap();
        assert!(read(&s));
    }

    #[test]
    fn who_is_asking_decides_first() {
        let mut s = state();
        let k = b("a");
        let e = Bytes::new();
        assert_eq!(
            s.check_range(None, &k, &e, Access::Read),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            s.check_range(Some(""), &k, &e, Access::Read),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            s.check_range(Some("nobody"), &k, &e, Access::Read),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check_range(Some("bob"), &k, &e, Access::Read),
            Err(AuthError::PermissionDenied)
        );
        assert!(s
            .check_range(Some(ROOT), &b("x"), &b("\0"), Access::Write)
            .is_ok());
        assert_eq!(
            s.check_admin(Some("alice")),
            Err(AuthError::PermissionDenied)
        );
        assert!(s.check_admin(Some(ROOT)).is_ok());
        s.apply(&AuthOp::Disable).unwrap();
        assert!(s.check_range(None, &k, &e, Access::Write).is_ok());
        assert!(s.check_admin(None).is_ok());
    }

    #[test]
    fn a_txn_needs_every_compare_and_every_op_of_both_branches_nested() {
        let s = state();
        let put = |k: &str| {
            RequestOp::Put(PutRequest {
                key: b(k),
                value: b("v"),
                ..Default::default()
            })
        };
        let range = |k: &str| {
            RequestOp::Range(RangeRequest {
                key: b(k),
                ..Default::default()
            })
        };
        let cmp = |k: &str| Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: b(k),
            range_end: Bytes::new(),
        };
        let txn = |compare, success, failure| TxnRequest {
            compare,
            success,
            failure,
        };
        let ok = |t: &TxnRequest| s.check_txn(Some("alice"), t).is_ok();
        assert!(ok(&txn(vec![cmp("a")], vec![put("p/1")], vec![range("a")])));
        assert!(!ok(&txn(vec![cmp("b")], vec![put("p/1")], vec![])));
        assert!(
            !ok(&txn(vec![], vec![put("p/1")], vec![put("a")])),
            "failure branch"
        );
        let inner = txn(
            vec![],
            vec![],
            vec![RequestOp::Txn(txn(vec![], vec![], vec![put("q")]))],
        );
        assert!(
            !ok(&txn(vec![], vec![RequestOp::Txn(inner)], vec![])),
            "nested twice"
        );
        let del = |k: &str, prev_kv| {
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b(k),
                range_end: Bytes::new(),
                prev_kv,
            })
        };
        assert!(ok(&txn(vec![], vec![del("p/1", true)], vec![])));
        assert!(ok(&txn(vec![], vec![del("z", false)], vec![])));
        assert!(
            !ok(&txn(vec![], vec![del("z", true)], vec![])),
            "prev_kv reads"
        );
        assert!(s
            .check_txn(Some(ROOT), &txn(vec![cmp("b")], vec![put("q")], vec![]))
            .is_ok());
    }

    #[test]
    fn lease_keys_need_write() {
        let s = state();
        let keys = [b("p/1"), b("z1")];
        assert!(s.check_keys_writable(Some("alice"), &keys).is_ok());
        let keys = [b("p/1"), b("a")];
        assert_eq!(
            s.check_keys_writable(Some("alice"), &keys),
            Err(AuthError::PermissionDenied)
        );
    }
}
