//! `RawNode::report_leader_gone`: followers told that the leader's
//! connection closed elect a new leader within half an election timeout,
//! and a wrong hint does not unseat a live leader.

use concord_raft::testkit::Cluster;
use concord_raft::{Config, NodeId, ReadMode, Role};

const ELECTION_TICK: u32 = 10;

fn cfg(id: NodeId, mode: ReadMode) -> Config {
    let mut c = Config::new(id, 1);
    c.election_tick = ELECTION_TICK;
    c.heartbeat_tick = 1;
    c.pre_vote = true;
    c.check_quorum = true;
    c.read_mode = mode;
    c
}

/// Three members with 1 leading.
fn elected(mode: ReadMode) -> Cluster {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], |id| cfg(id, mode));
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    assert_eq!(c.node(1).status().role, Role::Leader);
    c
}

/// Ticks `ids` one tick at a time, delivering between ticks; the tick at
/// which one of them leads, if within `max`.
fn ticks_to_leader(c: &mut Cluster, ids: &[NodeId], max: u32) -> Option<u32> {
    for t in 1..=max {
        for &id in ids {
            c.tick(id, 1);
        }
        c.stabilize(ids);
        if ids
            .iter()
            .any(|&id| c.node(id).status().role == Role::Leader)
        {
            return Some(t);
        }
    }
    None
}

#[test]
fn told_followers_elect_within_half_an_election_timeout() {
    let half = ELECTION_TICK / 2 + 1;
    let mut c = elected(ReadMode::Safe);
    c.crash(1);
    for id in [2, 3] {
        c.node(id).report_leader_gone(1);
    }
    let t = ticks_to_leader(&mut c, &[2, 3], half);
    assert!(t.is_some(), "no leader within {half} ticks of the hint");
    // The control: without the hint, the followers wait out the timeout.
    let mut c = elected(ReadMode::Safe);
    c.crash(1);
    assert_eq!(ticks_to_leader(&mut c, &[2, 3], half), None);
}

#[test]
fn a_wrong_hint_does_not_unseat_a_live_leader() {
    let mut c = elected(ReadMode::Safe);
    let term = c.node(1).status().hard_state.term;
    c.node(2).report_leader_gone(1);
    // Everyone keeps ticking for two election timeouts; 2's early
    // pre-vote is refused by members that still hear the leader.
    ticks_to_leader(&mut c, &[1, 2, 3], 2 * ELECTION_TICK);
    assert_eq!(c.node(1).status().role, Role::Leader);
    assert_eq!(c.node(1).status().hard_state.term, term);
}

#[test]
fn under_lease_reads_the_hint_changes_nothing() {
    let half = ELECTION_TICK / 2 + 1;
    let mut c = elected(ReadMode::LeaseBased);
    c.crash(1);
    for id in [2, 3] {
        c.node(id).report_leader_gone(1);
    }
    assert_eq!(ticks_to_leader(&mut c, &[2, 3], half), None);
}
