//! An in-process 3-member Raft cluster: elect a leader, commit entries, lose
//! the leader, elect another, bring the old one back. Prints what happens.
//!
//! `cargo run -p concord-raft --example demo [-- --trace]`

use bytes::Bytes;
use concord_raft::testkit::Cluster;
use concord_raft::{Config, NodeId, Role};

fn leader(c: &mut Cluster) -> Option<NodeId> {
    let ids: Vec<NodeId> = c.members.keys().copied().collect();
    ids.into_iter()
        .find(|&id| c.node(id).status().role == Role::Leader)
}

/// Tick every running member until one of them leads; returns it and the ticks it took.
fn elect(c: &mut Cluster, trace: bool) -> (NodeId, u32) {
    for t in 1..=1000 {
        let ids: Vec<NodeId> = c.members.keys().copied().collect();
        for id in ids {
            c.tick(id, 1);
        }
        c.stabilize(&[]);
        flush(c, trace);
        if let Some(l) = leader(c) {
            return (l, t);
        }
    }
    panic!("no leader after 1000 ticks");
}

fn flush(c: &mut Cluster, trace: bool) {
    let t = c.take_trace();
    if trace {
        print!("{t}");
    }
}

fn show(c: &mut Cluster) {
    let mut ids: Vec<NodeId> = c.members.keys().chain(c.crashed.keys()).copied().collect();
    ids.sort_unstable();
    for id in ids {
        if c.crashed.contains_key(&id) {
            println!("    node {id}: crashed");
            continue;
        }
        let s = c.node(id).status();
        let data: Vec<String> = c.members[&id]
            .storage
            .applied_data
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        println!(
            "    node {id}: {:<9} term={} commit={} applied={:?}",
            format!("{:?}", s.role),
            s.hard_state.term,
            s.hard_state.commit,
            data
        );
    }
}

fn propose(c: &mut Cluster, at: NodeId, items: &[&str], trace: bool) {
    for item in items {
        c.node(at)
            .propose(Bytes::from(item.to_string()))
            .expect("leader accepts");
        c.stabilize(&[]);
        flush(c, trace);
    }
}

fn main() {
    let trace = std::env::args().any(|a| a == "--trace");
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], |id| Config::new(id, 1));
    c.stabilize(&[]);
    flush(&mut c, trace);
    println!("Concord Raft core demo: 3 members, in one process, deterministic (seeded).");
    println!("  pre-vote and check-quorum on; election timeout 10-19 ticks, heartbeat 1 tick\n");

    let (l, ticks) = elect(&mut c, trace);
    println!("* election: node {l} became leader after {ticks} ticks");
    show(&mut c);

    propose(&mut c, l, &["x=1", "y=2", "z=3"], trace);
    println!("\n* node {l} committed 3 proposals; every member applied them in order");
    show(&mut c);

    println!("\n* node {l} crashes");
    c.crash(l);
    let (l2, ticks) = elect(&mut c, trace);
    println!("* election: node {l2} became leader after {ticks} ticks (quorum of 2 of 3)");
    propose(&mut c, l2, &["x=10"], trace);
    println!("* node {l2} committed x=10 without node {l}");
    show(&mut c);

    println!("\n* node {l} restarts from its durable state and catches up");
    c.restart(l);
    for _ in 0..3 {
        c.tick(l2, 1);
        c.stabilize(&[]);
    }
    flush(&mut c, trace);
    show(&mut c);
    c.assert_state_machines_agree();
    println!("\nall members applied the same entries in the same order: ok");
}
