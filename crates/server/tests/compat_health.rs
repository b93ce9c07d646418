//! An operator's health-check script (`tests/scripts/health-check.sh`:
//! `endpoint health`, `endpoint status`, `member list` as tables and a
//! put/get/del round trip) against a 3-member cluster, with endpoints
//! written bare, with `http://`, and mixed. etcd's Go client sends the
//! scheme on to the server as the HTTP/2 `:authority`; etcd ignores it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn health_check_script_passes_with_every_endpoint_form() {
    if !have_etcdctl() {
        return;
    }
    let c = Cluster::start(3);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/health-check.sh");
    for form in [EndpointForm::Http, EndpointForm::Bare, EndpointForm::Mixed] {
        let endpoints = form.write(&c.addrs());
        let mut cmd = Command::new("bash");
        cmd.arg(script).env("ENDPOINTS", &endpoints);
        let o = run(&mut cmd, None, CTL_TIMEOUT * 3);
        assert!(o.ok(), "{form:?}: {o:#?}");
        assert!(o.stdout.ends_with("health check passed\n"), "{o:#?}");
        // Every endpoint appears, as written, in the health and status
        // tables, and every member (with its URLs) in the member table.
        for ep in endpoints.split(',') {
            let first_cell = format!("{ep} |");
            let rows = o
                .lines()
                .into_iter()
                .filter(|l| l.trim_start_matches(['|', ' ']).starts_with(&first_cell));
            assert_eq!(rows.count(), 2, "{ep} in health and status tables: {o:#?}");
        }
        for a in c.addrs() {
            assert!(o.stdout.contains(&format!("http://{a} |")), "{a}: {o:#?}");
        }
        let healthy = o.lines().into_iter().filter(|l| l.contains("|   true |"));
        assert_eq!(healthy.count(), 3, "{o:#?}");
    }
}

#[test]
fn endpoint_commands_accept_urls_on_each_member() {
    if !have_etcdctl() {
        return;
    }
    let mut c = Cluster::start(3);
    // One member at a time, so each one's client port is shown to take a
    // URL-shaped authority (a follower and the leader alike).
    for a in c.addrs() {
        for ep in [format!("http://{a}"), format!("http://{a}/"), a.clone()] {
            for args in [
                &["endpoint", "status", "-w", "json"][..],
                &["member", "list", "-w", "json"],
                &["put", "k", "v"],
                &["get", "k", "-w", "json"],
            ] {
                let o = run(&mut etcdctl_cmd(&ep, args), None, CTL_TIMEOUT);
                assert!(o.ok(), "{ep} {args:?}: {o:#?}");
            }
        }
    }
    let _ = c.leader(START_TIMEOUT);
}
