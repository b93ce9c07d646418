//! The auth store in the state machine: changes through the log, kept
//! across reopen and carried by snapshots; a command checked at an older
//! auth revision is refused once the revision moved.

mod common;
use common::{b, H};
use concord_mvcc::*;

fn setup(h: &mut H) {
    for op in [
        AuthOp::UserAdd {
            name: ROOT.into(),
            password_hash: "$2b$hash".into(),
            no_password: false,
        },
        AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        },
        AuthOp::RoleAdd { name: "r".into() },
        AuthOp::RoleGrantPermission {
            role: "r".into(),
            perm: Permission {
                perm_type: PermType::ReadWrite,
                key: b("p/"),
                range_end: b("p0"),
            },
        },
        AuthOp::UserAdd {
            name: "alice".into(),
            password_hash: "$2b$other".into(),
            no_password: false,
        },
        AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "r".into(),
        },
        AuthOp::Enable,
    ] {
        h.ok(Command::Auth(op));
    }
}

#[test]
fn auth_state_survives_reopen_and_travels_in_snapshots() {
    let mut h = H::new();
    setup(&mut h);
    let want = h.store.auth().clone();
    assert!(want.enabled);
    assert_eq!(want.revision, 7);
    assert_eq!(
        h.err(Command::Auth(AuthOp::RoleAdd { name: "r".into() })),
        MvccError::Auth(AuthError::RoleAlreadyExist)
    );
    assert_eq!(h.store.auth(), &want, "a refused change changes nothing");
    h.store.checkpoint().unwrap();
    h.reopen();
    assert_eq!(h.store.auth(), &want);

    let image = h.store.snapshot().unwrap();
    let mut dst = H::new();
    dst.put("x", "1");
    dst.store.restore(&image).unwrap();
    assert_eq!(dst.store.auth(), &want);
    dst.reopen();
    assert_eq!(dst.store.auth(), &want, "restored durably");

    // A store restored from an image without auth has none.
    let mut empty = H::new();
    empty.put("y", "1");
    let plain = empty.store.snapshot().unwrap();
    dst.store.restore(&plain).unwrap();
    assert_eq!(dst.store.auth(), &AuthState::default());
}

#[test]
fn a_command_checked_at_an_older_auth_revision_is_refused() {
    let mut h = H::new();
    setup(&mut h);
    let rev = h.store.auth().revision;
    let put = |k: &str| {
        Box::new(Command::Put(PutRequest {
            key: b(k),
            value: b("v"),
            ..Default::default()
        }))
    };
    h.ok(Command::Checked {
        auth_revision: rev,
        cmd: put("p/1"),
    });
    h.ok(Command::Auth(AuthOp::RoleRevokePermission {
        role: "r".into(),
        key: b("p/"),
        range_end: b("p0"),
    }));
    let before = h.store.current_revision();
    assert_eq!(
        h.err(Command::Checked {
            auth_revision: rev,
            cmd: put("p/2"),
        }),
        MvccError::Auth(AuthError::OldRevision)
    );
    assert_eq!(h.store.current_revision(), before, "nothing written");
    // With auth disabled nothing is checked.
    h.ok(Command::Auth(AuthOp::Disable));
    h.ok(Command::Checked {
        auth_revision: rev,
        cmd: put("p/3"),
    });
}
