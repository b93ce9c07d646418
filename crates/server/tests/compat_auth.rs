//! Auth with the real `etcdctl`: users, roles, read, write and readwrite
//! permissions on a key, a prefix and from a key, `auth enable`, each user
//! seeing exactly what its roles allow, anonymous and wrong-password
//! requests refused, admin operations refused to a non-root user, a
//! revoked permission and a changed password taking effect at once; then
//! the same checks through a restarted member and through a new member
//! that caught up from a snapshot; then `auth disable` and cleanup.
//! Passes against etcd too (`CONCORD_COMPAT_SERVER=etcd`).

mod common;

use std::time::Duration;

use common::*;

const ROOT: &str = "root:rootpw";
const ALICE: &str = "alice:alicepw";
const ALICE_NEW: &str = "alice:newpw";
const BOB: &str = "bob:bobpw";
const DENIED: &str = "permission denied";

fn with_user(user: Option<&str>, args: &[&str]) -> Vec<String> {
    user.map(|u| format!("--user={u}"))
        .into_iter()
        .chain(args.iter().map(|s| s.to_string()))
        .collect()
}

/// `etcdctl` as `user` against every running member.
fn ctl(c: &mut Cluster, user: Option<&str>, args: &[&str]) -> Out {
    let a = with_user(user, args);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    c.ctl(&a)
}

/// `etcdctl` through the endpoints given (comma separated).
struct Via<'a>(&'a str);

impl Via<'_> {
    fn run(&self, user: Option<&str>, args: &[&str]) -> Out {
        self.run_stdin(user, args, None)
    }

    fn run_stdin(&self, user: Option<&str>, args: &[&str], stdin: Option<&str>) -> Out {
        let a = with_user(user, args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&mut etcdctl_cmd(self.0, &a), stdin, CTL_TIMEOUT)
    }
}

#[track_caller]
fn refused(o: Out, why: &str) {
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        !o.ok() && all.contains(why),
        "expected a refusal with {why:?}: {o:#?}"
    );
}

/// Roles: `ro` reads `cfg`; `rw` reads and writes the prefix `app/`;
/// `wo` writes `w` and every key from `z` on. alice has `ro` and `rw`,
/// bob has `wo`.
fn set_up(c: &mut Cluster) {
    for args in [
        &["user", "add", ROOT][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "ro"],
        &["role", "grant-permission", "ro", "read", "cfg"],
        &["role", "add", "rw"],
        &[
            "role",
            "grant-permission",
            "rw",
            "readwrite",
            "app/",
            "--prefix",
        ],
        &["role", "add", "wo"],
        &["role", "grant-permission", "wo", "write", "w"],
        &["role", "grant-permission", "wo", "write", "z", "--from-key"],
        &["user", "add", ALICE],
        &["user", "grant-role", "alice", "ro"],
        &["user", "grant-role", "alice", "rw"],
        &["user", "add", BOB],
        &["user", "grant-role", "bob", "wo"],
        &["put", "cfg", "c1"],
    ] {
        ctl(c, None, args).expect_ok(&args.join(" "));
    }
    let o = ctl(c, None, &["user", "get", "alice"]).expect_ok("user get");
    assert!(o.stdout.contains("Roles: ro rw"), "{o:#?}");
    let o = ctl(c, None, &["role", "get", "rw"]).expect_ok("role get");
    assert!(o.stdout.contains("[app/, app0) (prefix app/)"), "{o:#?}");
    let o = ctl(c, None, &["auth", "enable"]).expect_ok("auth enable");
    assert!(o.stdout.contains("Authentication Enabled"), "{o:#?}");
}

/// Every user sees exactly what its roles allow, through `run`.
fn check_permissions(via: &Via, alice: &str) {
    let run = |user: Option<&str>, args: &[&str]| via.run(user, args);
    refused(run(None, &["get", "cfg"]), "etcdserver: user name is empty");
    refused(
        run(None, &["put", "app/x", "1"]),
        "etcdserver: user name is empty",
    );
    refused(
        run(Some("alice:wrong"), &["get", "cfg"]),
        "etcdserver: authentication failed, invalid user ID or password",
    );
    refused(
        run(Some("nobody:pw"), &["get", "cfg"]),
        "etcdserver: authentication failed, invalid user ID or password",
    );

    // alice: read on cfg, readwrite under app/.
    let o = run(Some(alice), &["get", "cfg", "--print-value-only"]).expect_ok("alice get cfg");
    assert_eq!(o.stdout, "c1\n");
    run(Some(alice), &["put", "app/a", "1"]).expect_ok("alice put app/a");
    let o =
        run(Some(alice), &["get", "app/", "--prefix", "--keys-only"]).expect_ok("alice get app/");
    assert!(o.stdout.contains("app/a"), "{o:#?}");
    refused(run(Some(alice), &["put", "cfg", "x"]), DENIED);
    refused(run(Some(alice), &["get", "w"]), DENIED);
    refused(run(Some(alice), &["get", "app", "--prefix"]), DENIED);
    refused(run(Some(alice), &["get", "a", "--from-key"]), DENIED);
    refused(run(Some(alice), &["del", "cfg"]), DENIED);

    // bob: write only, on w and from z on.
    run(Some(BOB), &["put", "w", "1"]).expect_ok("bob put w");
    run(Some(BOB), &["put", "zz", "1"]).expect_ok("bob put zz (from-key)");
    refused(run(Some(BOB), &["get", "w"]), DENIED);
    refused(run(Some(BOB), &["put", "y", "1"]), DENIED);
    refused(run(Some(BOB), &["get", "app/a"]), DENIED);

    // Txn: every compare and every op of both branches is checked.
    let txn = "value(\"cfg\") = \"c1\"\n\nput app/t 1\n\nget cfg\n\n";
    let o = via.run_stdin(Some(alice), &["txn"], Some(txn));
    assert!(o.ok() && o.stdout.starts_with("SUCCESS"), "{o:#?}");
    let txn = "value(\"cfg\") = \"c1\"\n\nput app/t 2\n\nput w 2\n\n";
    refused(via.run_stdin(Some(alice), &["txn"], Some(txn)), DENIED);

    // A watch on a range the user may not read is refused when created.
    refused(run(Some(alice), &["watch", "w"]), DENIED);

    // Admin operations: root only; listing members is anyone's.
    refused(run(Some(alice), &["user", "list"]), DENIED);
    refused(run(Some(alice), &["role", "add", "x"]), DENIED);
    refused(run(Some(alice), &["defrag"]), DENIED);
    refused(run(Some(alice), &["member", "remove", "1234"]), DENIED);
    run(Some(alice), &["member", "list"]).expect_ok("alice member list");
    let o = run(Some(ROOT), &["user", "list"]).expect_ok("root user list");
    assert_eq!(o.stdout, "alice\nbob\nroot\n");
    let o = run(Some(ROOT), &["get", "", "--from-key", "--keys-only"]).expect_ok("root get all");
    for k in ["app/a", "cfg", "w", "zz"] {
        assert!(o.stdout.contains(k), "root sees {k}: {o:#?}");
    }
}

#[test]
fn etcdctl_auth_end_to_end_across_restart_and_snapshot() {
    if !have_etcdctl() {
        return;
    }
    let etcd = std::env::var("CONCORD_COMPAT_SERVER").is_ok();
    let mut c = Cluster::start_with_args(3, &["--snapshot-count", "20"]);
    c.form = EndpointForm::Mixed;
    set_up(&mut c);
    let all = c.endpoints();
    check_permissions(&Via(&all), ALICE);

    // A revoked permission takes effect at once, as does a grant.
    ctl(
        &mut c,
        Some(ROOT),
        &["role", "revoke-permission", "rw", "app/", "--prefix"],
    )
    .expect_ok("revoke");
    refused(ctl(&mut c, Some(ALICE), &["put", "app/b", "1"]), DENIED);
    refused(ctl(&mut c, Some(ALICE), &["get", "app/a"]), DENIED);
    ctl(
        &mut c,
        Some(ROOT),
        &[
            "role",
            "grant-permission",
            "rw",
            "readwrite",
            "app/",
            "--prefix",
        ],
    )
    .expect_ok("grant again");
    ctl(&mut c, Some(ALICE), &["put", "app/b", "1"]).expect_ok("alice put after grant");

    // A changed password: the old one is refused, the new one works.
    let ep = c.endpoints();
    let passwd = ["user", "passwd", "alice", "--interactive=false"];
    Via(&ep)
        .run_stdin(Some(ROOT), &passwd, Some("newpw\n"))
        .expect_ok("passwd");
    refused(
        ctl(&mut c, Some(ALICE), &["get", "cfg"]),
        "etcdserver: authentication failed, invalid user ID or password",
    );
    ctl(&mut c, Some(ALICE_NEW), &["get", "cfg"]).expect_ok("alice with the new password");

    // A restarted member has it all, from its own files.
    assert!(
        c.nodes[1].stop(Duration::from_secs(10)).is_some(),
        "stop m2"
    );
    c.restart(1);
    c.wait_all_healthy(START_TIMEOUT);
    let m2 = format!("http://{}", c.nodes[1].addr());
    check_permissions(&Via(&m2), ALICE_NEW);

    // A new member catches up from a snapshot (every member snapshots
    // every 20 entries, and the log behind it is compacted) and enforces
    // the same permissions.
    let i = c.prepare_join("m4");
    let peer = format!("--peer-urls={}", c.nodes[i].peer_url());
    let added = wait_until(Duration::from_secs(20), || {
        let o = ctl(&mut c, Some(ROOT), &["member", "add", "m4", &peer]);
        (!o.stderr.contains("unhealthy cluster")).then_some(o)
    })
    .expect("member add: cluster never healthy");
    added.expect_ok("member add");
    c.nodes[i].spawn();
    c.wait_all_healthy(START_TIMEOUT);
    let m4 = c.nodes[i].addr();
    let caught_up = wait_until(Duration::from_secs(30), || {
        Via(&m4)
            .run(Some(ROOT), &["get", "cfg", "--consistency=s"])
            .stdout
            .contains("c1")
            .then_some(())
    });
    assert!(caught_up.is_some(), "m4 never caught up");
    if !etcd {
        let log = std::fs::read_to_string(&c.nodes[i].log).unwrap_or_default();
        assert!(
            log.contains("restored a snapshot from the leader"),
            "m4 caught up without a snapshot"
        );
    }
    check_permissions(&Via(&m4), ALICE_NEW);

    // Auth off: anonymous requests work again; then clean up.
    let o = ctl(&mut c, Some(ROOT), &["auth", "disable"]).expect_ok("auth disable");
    assert!(o.stdout.contains("Authentication Disabled"), "{o:#?}");
    ctl(&mut c, None, &["put", "cfg", "c2"]).expect_ok("anonymous put");
    for args in [
        &["user", "delete", "alice"][..],
        &["user", "delete", "bob"],
        &["user", "delete", "root"],
        &["role", "delete", "ro"],
        &["role", "delete", "rw"],
        &["role", "delete", "wo"],
        &["role", "delete", "root"],
    ] {
        ctl(&mut c, None, args).expect_ok(&args.join(" "));
    }
    assert_eq!(ctl(&mut c, None, &["user", "list"]).stdout, "");
    assert_eq!(ctl(&mut c, None, &["role", "list"]).stdout, "");
    refused(
        ctl(&mut c, None, &["user", "get", "alice"]),
        "etcdserver: user name not found",
    );
}

#[test]
fn auth_errors_as_etcd_words_them() {
    if !have_etcdctl() {
        return;
    }
    let mut c = Cluster::start(1);
    c.form = EndpointForm::Http;
    refused(
        ctl(&mut c, None, &["auth", "enable"]),
        "etcdserver: root user does not exist",
    );
    ctl(&mut c, None, &["user", "add", ROOT]).expect_ok("user add root");
    refused(
        ctl(&mut c, None, &["user", "add", ROOT]),
        "etcdserver: user name already exists",
    );
    refused(
        ctl(&mut c, None, &["user", "grant-role", "root", "nope"]),
        "etcdserver: role name not found",
    );
    refused(
        ctl(&mut c, None, &["user", "revoke-role", "root", "nope"]),
        "etcdserver: role is not granted to the user",
    );
    ctl(&mut c, None, &["role", "add", "r"]).expect_ok("role add");
    refused(
        ctl(&mut c, None, &["role", "add", "r"]),
        "etcdserver: role name already exists",
    );
    refused(
        ctl(&mut c, None, &["role", "revoke-permission", "r", "k"]),
        "etcdserver: permission is not granted to the role",
    );
    refused(
        ctl(&mut c, None, &["user", "delete", "nope"]),
        "etcdserver: user name not found",
    );
    // etcdctl's `auth enable` adds the root role and grants it when the
    // server says the root user lacks it.
    ctl(&mut c, None, &["auth", "enable"]).expect_ok("auth enable");
    refused(
        ctl(&mut c, Some(ROOT), &["user", "delete", "root"]),
        "etcdserver: invalid auth management",
    );
    // A token that is not one (or no longer is).
    let addr = c.nodes[0].addr();
    let status = block_on_thread(async move {
        use concord_proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
        let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
        let mut req = tonic::Request::new(RangeRequest {
            key: b"k".to_vec().into(),
            ..Default::default()
        });
        req.metadata_mut().insert("token", "bogus.1".parse().ok()?);
        kv.range(req).await.err()
    })
    .expect("a range with a bogus token is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "etcdserver: invalid auth token");
}

#[test]
fn jwt_tokens_signed_by_one_member_are_accepted_by_another() {
    if !have_etcdctl() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
    let (private, public) = (keys.path().join("jwt.pem"), keys.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let flag = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5m",
        public.display(),
        private.display()
    );
    let mut c = Cluster::start_with_args(3, &[&flag]);
    c.form = EndpointForm::Http;
    set_up(&mut c);
    ctl(&mut c, Some(ALICE), &["put", "app/j", "1"]).expect_ok("alice put with a JWT");
    refused(ctl(&mut c, Some(ALICE), &["put", "cfg", "x"]), DENIED);
    refused(
        ctl(&mut c, Some("alice:wrong"), &["get", "cfg"]),
        "etcdserver: authentication failed, invalid user ID or password",
    );

    // A token from member 1 works on member 3, which never saw it.
    let (a, b) = (c.nodes[0].addr(), c.nodes[2].addr());
    let read = block_on_thread(async move {
        use concord_proto::etcdserverpb::{
            auth_client::AuthClient, kv_client::KvClient, AuthenticateRequest, RangeRequest,
        };
        let mut auth = AuthClient::connect(format!("http://{a}")).await.ok()?;
        let login = AuthenticateRequest {
            name: "alice".into(),
            password: "alicepw".into(),
        };
        let token = auth.authenticate(login).await.ok()?.into_inner().token;
        let mut kv = KvClient::connect(format!("http://{b}")).await.ok()?;
        let range = |key: &str, token: &str| {
            let mut req = tonic::Request::new(RangeRequest {
                key: key.as_bytes().to_vec().into(),
                ..Default::default()
            });
            req.metadata_mut().insert("token", token.parse().unwrap());
            req
        };
        let ok = kv
            .range(range("app/j", &token))
            .await
            .ok()?
            .into_inner()
            .kvs
            .len();
        let mut forged = token.clone();
        forged.pop();
        let refused = kv.range(range("app/j", &forged)).await.err()?;
        Some((ok, refused))
    })
    .expect("JWT calls");
    assert_eq!(read.0, 1);
    assert_eq!(read.1.code(), tonic::Code::Unauthenticated);
    assert_eq!(read.1.message(), "etcdserver: invalid auth token");
}
