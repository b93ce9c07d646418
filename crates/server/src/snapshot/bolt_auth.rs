//! The auth buckets of the etcd-format snapshot file, as etcd's backend
//! keeps them: `auth` (`authEnabled`: one byte, `authRevision`: 8 bytes big
//! endian), `authUsers` (name -> `authpb.User`, the bcrypt hash as the
//! password) and `authRoles` (name -> `authpb.Role`). With them a snapshot
//! restored into etcd (`etcdctl snapshot restore`) keeps its users, roles,
//! permissions and whether auth is on.

use concord_bolt::{etcd, Bucket};
use concord_mvcc::AuthState;
use concord_proto::authpb;
use prost::Message;

/// `auth`, `authRoles` and `authUsers`, each sorted by key (names are the
/// keys of sorted maps).
pub(crate) fn auth_buckets(auth: &AuthState) -> Vec<Bucket> {
    let flags = vec![
        (b"authEnabled".to_vec(), vec![u8::from(auth.enabled)]),
        (
            b"authRevision".to_vec(),
            auth.revision.to_be_bytes().to_vec(),
        ),
    ];
    let roles = auth
        .roles
        .values()
        .map(|r| {
            let pb = authpb::Role {
                name: r.name.clone().into_bytes().into(),
                key_permission: r
                    .perms
                    .iter()
                    .map(|p| authpb::Permission {
                        perm_type: p.perm_type.as_i32(),
                        key: p.key.clone(),
                        range_end: p.range_end.clone(),
                    })
                    .collect(),
            };
            (r.name.clone().into_bytes(), pb.encode_to_vec())
        })
        .collect();
    let users = auth
        .users
        .values()
        .map(|u| {
            let pb = authpb::User {
                name: u.name.clone().into_bytes().into(),
                password: u.password_hash.clone().into_bytes().into(),
                roles: u.roles.clone(),
                options: Some(authpb::UserAddOptions {
                    no_password: u.no_password,
                }),
            };
            (u.name.clone().into_bytes(), pb.encode_to_vec())
        })
        .collect();
    vec![
        Bucket::new(etcd::AUTH, flags),
        Bucket::new(etcd::AUTH_ROLES, roles),
        Bucket::new(etcd::AUTH_USERS, users),
    ]
}
