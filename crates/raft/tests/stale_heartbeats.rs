//! A member back from the dead answers every heartbeat that queued up for
//! it while it was down. Those answers say nothing about the leader's last
//! append, so they must not each resend it: only the answer to a heartbeat
//! sent after that append unblocks the probe (or frees the window).

use bytes::Bytes;
use concord_raft::testkit::{Cluster, Filter};
use concord_raft::{Body, Config, NodeId, Role};

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id, 1);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.pre_vote = true;
    c.check_quorum = true;
    c
}

/// Appends queued from 1 to 3.
fn appends_to_3(c: &Cluster) -> usize {
    c.queue
        .iter()
        .filter(|m| m.from == 1 && m.to == 3 && matches!(m.body, Body::Append { .. }))
        .count()
}

/// 1 leads with 2's vote while 3 is down; heartbeats for 3 pile up.
fn leader_with_a_dead_member(heartbeats: usize) -> Cluster {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], cfg);
    c.stabilize(&[]);
    c.crash(3);
    c.node(1).campaign();
    c.stabilize(&[1, 2]);
    assert_eq!(c.node(1).status().role, Role::Leader);
    for i in 0..20u32 {
        c.node(1)
            .propose(Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
        c.stabilize(&[1, 2]);
    }
    for _ in 0..heartbeats {
        c.tick(1, 1);
        c.stabilize(&[1, 2]);
    }
    c
}

/// 3 restarts, gets everything that queued for it and answers.
fn member_3_returns(c: &mut Cluster) {
    c.restart(3);
    c.deliver(Filter {
        to: Some(3),
        ..Filter::default()
    });
    while c.handle_ready(3) {}
}

/// The leader takes every answer from 3 and handles one round.
fn leader_hears_3(c: &mut Cluster) {
    c.deliver(Filter {
        from: Some(3),
        to: Some(1),
        drop: false,
    });
    while c.handle_ready(1) {}
}

#[test]
fn a_burst_of_stale_heartbeat_answers_resends_the_probe_once() {
    let mut c = leader_with_a_dead_member(200);
    let queued_heartbeats = c
        .queue
        .iter()
        .filter(|m| m.to == 3 && matches!(m.body, Body::Heartbeat { .. }))
        .count();
    assert!(queued_heartbeats >= 200, "{queued_heartbeats} heartbeats");
    member_3_returns(&mut c);
    leader_hears_3(&mut c);
    // The rejected probe is resent once; the 200 old answers resend nothing
    // (each used to resend the same probe).
    let sent = appends_to_3(&c);
    assert!(
        (1..=2).contains(&sent),
        "{sent} appends to 3 after its return"
    );
}

#[test]
fn an_answer_to_a_later_heartbeat_unblocks_a_lost_probe() {
    let mut c = leader_with_a_dead_member(5);
    member_3_returns(&mut c);
    leader_hears_3(&mut c);
    // The leader's new probe is lost.
    c.deliver(Filter {
        from: Some(1),
        to: Some(3),
        drop: true,
    });
    assert_eq!(appends_to_3(&c), 0);
    // One heartbeat later, 3's answer says the probe was lost: resend.
    c.tick(1, 1);
    while c.handle_ready(1) {}
    c.deliver(Filter {
        from: Some(1),
        to: Some(3),
        drop: false,
    });
    while c.handle_ready(3) {}
    leader_hears_3(&mut c);
    assert_eq!(appends_to_3(&c), 1, "the lost probe was not resent");
    // And the cluster then catches 3 up.
    c.stabilize(&[]);
    assert_eq!(
        c.node(3).status().hard_state.commit,
        c.node(1).status().hard_state.commit
    );
}
