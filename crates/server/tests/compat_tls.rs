//! TLS: a 3-member cluster with `https://` client and peer URLs and
//! certificate authentication on both, driven by the real `etcdctl`; and
//! the peer handshake refusing a certificate from another CA; and, with
//! auth enabled, the client certificate's common name as the user of
//! requests that send no token.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and the certificates it signed, written as PEM files under `dir`
/// with names prefixed by `tag`.
fn write_pki(dir: &Path, tag: &str) -> TlsFiles {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{tag} test CA"));
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_named = |sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>, cn: &str| {
        let mut p = CertificateParams::new(sans).expect("leaf params");
        p.extended_key_usages = usages;
        if !cn.is_empty() {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    };
    let leaf = |sans, usages| leaf_named(sans, usages, "");
    let (member_cert, member_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    let (client_cert, client_key) = leaf(
        vec!["client".into()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(format!("{tag}-{name}"));
        std::fs::write(&p, text).expect("write pem");
        p
    };
    // A client certificate whose common name is a user (`<tag>-alice.pem`).
    let (alice_cert, alice_key) = leaf_named(
        vec!["client".into()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        "alice",
    );
    write("alice.pem", &alice_cert);
    write("alice-key.pem", &alice_key);
    TlsFiles {
        ca: write("ca.pem", &ca_cert.pem()),
        member_cert: write("member.pem", &member_cert),
        member_key: write("member-key.pem", &member_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

fn ctl(endpoints: &str, tls_args: &[String], args: &[&str]) -> Out {
    let mut cmd = etcdctl_cmd(endpoints, args);
    cmd.args(tls_args);
    run(&mut cmd, None, CTL_TIMEOUT)
}

#[test]
fn tls_cluster_serves_etcdctl_with_client_certificates() {
    if !have_etcdctl() {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let good = write_pki(pki_dir.path(), "good");
    let rogue = write_pki(pki_dir.path(), "rogue");
    let mut c = Cluster::start_with(3, Some(good.clone()));
    let https: Vec<String> = c.addrs().iter().map(|a| format!("https://{a}")).collect();
    let tls = good.ctl_args();

    // A write through one member is read back through each of the others:
    // replication ran over the TLS peer connections.
    ctl(&https[0], &tls, &["put", "tls-key", "over-tls"]).expect_ok("put over TLS");
    for ep in &https[1..] {
        let got = wait_until(Duration::from_secs(10), || {
            let o = ctl(ep, &tls, &["get", "tls-key", "--print-value-only"]);
            (o.ok() && o.stdout.trim() == "over-tls").then_some(())
        });
        assert!(
            got.is_some(),
            "{ep} never served the value written over TLS"
        );
    }
    let o = ctl(&https.join(","), &tls, &["member", "list"]).expect_ok("member list");
    assert_eq!(o.lines().len(), 3, "{}", o.stdout);
    assert!(o.stdout.contains("https://127.0.0.1"), "{}", o.stdout);

    // Keep-alives and time-to-live queries that reach a follower are
    // forwarded to the leader over TLS: every member answers them.
    let o = ctl(&https[0], &tls, &["lease", "grant", "30"]).expect_ok("lease grant");
    let lease = o
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    for ep in &https {
        let o = ctl(ep, &tls, &["lease", "keep-alive", "--once", &lease]);
        assert!(o.stdout.contains("keepalived with TTL"), "{ep}: {o:#?}");
        let o = ctl(ep, &tls, &["lease", "timetolive", &lease]).expect_ok("timetolive");
        assert!(o.stdout.contains("remaining"), "{ep}: {o:#?}");
    }

    // Without a client certificate, or with one from another CA, or with
    // plaintext, nothing gets through and nothing is written. (Short
    // timeouts: these fail at the handshake, then etcdctl would retry.)
    let fast = [
        "--dial-timeout=1s".to_string(),
        "--command-timeout=2s".into(),
    ];
    let no_cert = [&fast[..], &[format!("--cacert={}", good.ca.display())]].concat();
    assert!(!ctl(&https[0], &no_cert, &["put", "tls-key", "x"]).ok());
    let rogue_client = vec![
        fast[0].clone(),
        fast[1].clone(),
        format!("--cacert={}", good.ca.display()),
        format!("--cert={}", rogue.client_cert.display()),
        format!("--key={}", rogue.client_key.display()),
    ];
    assert!(!ctl(&https[0], &rogue_client, &["put", "tls-key", "y"]).ok());
    let plain = c.addrs()[0].clone();
    assert!(!ctl(&plain, &fast, &["put", "tls-key", "z"]).ok());
    let o = ctl(&https[0], &tls, &["get", "tls-key", "--print-value-only"]);
    assert_eq!(o.expect_ok("get").stdout.trim(), "over-tls");
    c.wait_all_healthy(Duration::from_secs(10));
}

#[test]
fn with_auth_the_certificate_common_name_is_the_user() {
    if !have_etcdctl() {
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = write_pki(pki_dir.path(), "cn");
    let c = Cluster::start_with(1, Some(pki.clone()));
    let ep = format!("https://{}", c.addrs()[0]);
    let tls = pki.ctl_args();
    let alice = vec![
        format!("--cacert={}", pki.ca.display()),
        format!("--cert={}", pki_dir.path().join("cn-alice.pem").display()),
        format!(
            "--key={}",
            pki_dir.path().join("cn-alice-key.pem").display()
        ),
    ];
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "root"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "app/",
            "--prefix",
        ],
        &["user", "add", "alice", "--no-password"],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
    ] {
        ctl(&ep, &tls, args).expect_ok(&args.join(" "));
    }
    // No token: the certificate's common name is the user.
    ctl(&ep, &alice, &["put", "app/1", "v"]).expect_ok("alice by certificate");
    let o = ctl(&ep, &alice, &["get", "app/1", "--print-value-only"]).expect_ok("get");
    assert_eq!(o.stdout, "v\n");
    let o = ctl(&ep, &alice, &["put", "other", "v"]);
    assert!(!o.ok() && o.stderr.contains("permission denied"), "{o:#?}");
    // A certificate naming no user may do nothing; a password still works.
    let o = ctl(&ep, &tls, &["put", "app/2", "v"]);
    assert!(!o.ok() && o.stderr.contains("permission denied"), "{o:#?}");
    ctl(&ep, &tls, &["--user=root:rootpw", "put", "other", "v"]).expect_ok("root by password");
    // A user without a password cannot log in with one.
    let o = ctl(&ep, &tls, &["--user=alice:guess", "get", "app/1"]);
    assert!(
        !o.ok() && o.stderr.contains("authentication failed"),
        "{o:#?}"
    );
}

/// Serves `acceptor` on a loopback port, echoing one byte on every
/// connection that passes the handshake. Returns the `https://` URL.
async fn echo_server(acceptor: tokio_rustls::TlsAcceptor) -> String {
    use concord_server::tls::accept_peer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = accept_peer(tcp, Some(&acceptor)).await {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                        let _ = s.flush().await;
                    }
                }
            });
        }
    });
    url
}

/// Dials `url` as a peer and has one byte echoed.
async fn echo(url: &str, connector: tokio_rustls::TlsConnector) -> std::io::Result<u8> {
    use concord_server::tls::dial;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = dial(url, Some(&connector)).await?;
    s.write_all(&[7]).await?;
    s.flush().await?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    Ok(b[0])
}

#[tokio::test]
async fn peer_handshake_refuses_a_certificate_from_another_ca() {
    use concord_server::tls::{client_config, server_config};

    let dir = tempfile::tempdir().unwrap();
    let good = write_pki(dir.path(), "good");
    let rogue = write_pki(dir.path(), "rogue");
    let s = |p: &Path| p.display().to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(
        server_config(
            &s(&good.member_cert),
            &s(&good.member_key),
            Some(&s(&good.ca)),
            true,
        )
        .unwrap(),
    );
    let url = echo_server(acceptor).await;
    let trusted = client_config(&s(&good.member_cert), &s(&good.member_key), &s(&good.ca));
    assert_eq!(echo(&url, trusted.unwrap().into()).await.unwrap(), 7);
    // A member whose certificate another CA signed is refused by the listener.
    let stranger = client_config(&s(&rogue.member_cert), &s(&rogue.member_key), &s(&good.ca));
    assert!(echo(&url, stranger.unwrap().into()).await.is_err());
    // A dialler that trusts another CA refuses the listener.
    let wary = client_config(&s(&good.member_cert), &s(&good.member_key), &s(&rogue.ca));
    assert!(echo(&url, wary.unwrap().into()).await.is_err());
}

/// Certificates are read again when their files change: after the files
/// are replaced by a pair from another CA, new handshakes show the new
/// certificate; a broken replacement keeps the last good one in use.
#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    use concord_server::tls::{client_config, server_config};
    use concord_server::tls_reload::CHECK_INTERVAL;

    let dir = tempfile::tempdir().unwrap();
    let old = write_pki(dir.path(), "old");
    let new = write_pki(dir.path(), "new");
    let s = |p: &Path| p.display().to_string();
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live-key.pem"));
    std::fs::copy(&old.member_cert, &cert).unwrap();
    std::fs::copy(&old.member_key, &key).unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server_config(&s(&cert), &s(&key), None, false).unwrap());
    let url = echo_server(acceptor).await;
    // Does a dialler that trusts `ca` complete a round trip?
    let trusts = |ca: &Path, who: &TlsFiles| {
        let connector = client_config(&s(&who.member_cert), &s(&who.member_key), &s(ca)).unwrap();
        let url = url.clone();
        async move { echo(&url, connector.into()).await.is_ok() }
    };
    assert!(trusts(&old.ca, &old).await);
    assert!(!trusts(&new.ca, &new).await);

    std::fs::copy(&new.member_cert, &cert).unwrap();
    std::fs::copy(&new.member_key, &key).unwrap();
    tokio::time::sleep(CHECK_INTERVAL + Duration::from_millis(200)).await;
    assert!(trusts(&new.ca, &new).await, "the new certificate is served");
    assert!(!trusts(&old.ca, &old).await);

    // A key that does not match the certificate is not taken.
    std::fs::copy(&old.member_key, &key).unwrap();
    tokio::time::sleep(CHECK_INTERVAL + Duration::from_millis(200)).await;
    assert!(trusts(&new.ca, &new).await, "the last good pair stays");
}

/// Concord's own client over TLS: `https://` endpoints, the cluster's CA
/// and a client certificate (the members require one). It writes through
/// one member and reads through another, and discovers the members'
/// `https://` URLs; a client trusting another CA cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concord_client_over_tls_with_a_client_certificate() {
    use concord_client::{Client, ClientConfig, GetOptions, PutOptions, TlsConfig};
    let pki_dir = tempfile::tempdir().unwrap();
    let good = write_pki(pki_dir.path(), "good");
    let rogue = write_pki(pki_dir.path(), "rogue");
    let c = Cluster::start_with(3, Some(good.clone()));
    let https: Vec<String> = c.addrs().iter().map(|a| format!("https://{a}")).collect();
    let tls = |f: &TlsFiles| {
        TlsConfig::from_files(&f.ca, Some((&f.client_cert, &f.client_key))).expect("pem files")
    };
    let config = |eps: &[String], f: &TlsFiles| {
        ClientConfig::new(eps.to_vec())
            .tls(tls(f))
            .connect_timeout(Duration::from_secs(3))
            .request_timeout(Duration::from_secs(5))
    };

    let writer = Client::connect(config(&https[..1], &good))
        .await
        .expect("connect over TLS");
    writer
        .put("tls/client", "yes", PutOptions::default())
        .await
        .expect("put over TLS");
    let members = writer.member_list(true).await.expect("member list");
    assert_eq!(members.members.len(), 3);
    assert!(members
        .members
        .iter()
        .all(|m| m.client_ur_ls.iter().all(|u| u.starts_with("https://"))));
    let reader = Client::connect(config(&https[2..], &good).discover(false))
        .await
        .expect("connect over TLS");
    let got = reader
        .get("tls/client", GetOptions::new())
        .await
        .expect("get over TLS");
    assert_eq!(&got.kvs[0].value[..], b"yes");

    // The members' certificates are not signed by the rogue CA.
    let refused = async {
        let rogue_client = Client::connect(config(&https[..1], &rogue).discover(false)).await?;
        rogue_client.get("tls/client", GetOptions::new()).await
    };
    assert!(
        refused.await.is_err(),
        "a client trusting another CA got in"
    );
}
