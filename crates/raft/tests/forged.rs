//! Messages a peer could send that would trip the core's assertions:
//! `RawNode::check_message` refuses each one, and each one, stepped
//! without the check, does reach an assertion (so the check guards a real
//! failure, and the assertions stay where they are).

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use concord_raft::testkit::Cluster;
use concord_raft::{
    Body, ConfState, Config, Entry, Message, NodeId, RawNode, Refusal, Role, SnapshotMeta,
};

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id, 1);
    c.pre_vote = true;
    c.check_quorum = true;
    c
}

/// A 3-member group with member 1 elected and a few entries committed.
fn elected() -> Cluster {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], cfg);
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    for i in 0..3 {
        c.node(1).propose(Bytes::from(format!("v{i}"))).unwrap();
        c.stabilize(&[]);
    }
    assert_eq!(c.node(1).status().role, Role::Leader);
    c
}

fn msg(from: NodeId, to: NodeId, term: u64, body: Body) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body,
    }
}

/// `m` to member `to` of a fresh elected group: the check refuses it with
/// `want`, and stepping it unchecked panics with `panic` in the message
/// (`None`: no assertion, but the check still refuses it).
fn case(to: NodeId, make: impl Fn(&mut RawNode) -> Message, want: Refusal, panic: Option<&str>) {
    let mut c = elected();
    let node = c.node(to);
    let m = make(node);
    assert_eq!(node.check_message(&m), Err(want), "{m:?}");
    let Some(text) = panic else { return };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _ = node.step(m.clone());
        while node.has_ready() {
            let mut rd = node.ready();
            let _ = rd.persisted();
            node.advance(rd);
        }
    }));
    let e = r.expect_err("stepping it unchecked must trip an assertion");
    let s = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(s.contains(text), "panicked with {s:?}, wanted {text:?}");
}

fn term(n: &RawNode) -> u64 {
    n.hard_state().term
}

#[test]
fn a_heartbeat_from_a_made_up_leader_is_refused() {
    // The 60-byte frame of the report: a heartbeat in the current term
    // from a sender that is not the leader.
    let hb = |n: &mut RawNode| msg(77, 2, term(n), Body::Heartbeat { commit: 0, ctx: 0 });
    case(2, hb, Refusal::SecondLeader, Some("two leaders in term"));
    // Not even from a real member that is not the leader.
    let hb = |n: &mut RawNode| msg(3, 2, term(n), Body::Heartbeat { commit: 0, ctx: 0 });
    case(2, hb, Refusal::SecondLeader, Some("two leaders in term"));
    // Nor to the leader itself.
    let hb = |n: &mut RawNode| msg(3, 1, term(n), Body::Heartbeat { commit: 0, ctx: 0 });
    case(1, hb, Refusal::SecondLeader, None);
}

fn append(n: &RawNode, entries: Vec<Entry>, at: u64) -> Message {
    let t = n.hard_state().term;
    let body = Body::Append {
        index: at,
        log_term: t,
        entries,
        commit: 0,
    };
    msg(1, 2, t, body)
}

#[test]
fn appends_with_gaps_or_falling_terms_are_refused() {
    let gap = |n: &mut RawNode| {
        let (last, t) = (n.last_index(), term(n));
        append(n, vec![Entry::normal(t, last + 3, Bytes::new())], last)
    };
    case(2, gap, Refusal::BadEntries, Some("append leaves a gap"));
    let falling = |n: &mut RawNode| {
        let (last, t) = (n.last_index(), term(n));
        let es = vec![
            Entry::normal(t, last + 1, Bytes::new()),
            Entry::normal(t - 1, last + 2, Bytes::new()),
        ];
        append(n, es, last)
    };
    case(
        2,
        falling,
        Refusal::BadEntries,
        Some("append with a lower term"),
    );
    let future = |n: &mut RawNode| {
        let (last, t) = (n.last_index(), term(n));
        append(n, vec![Entry::normal(t + 5, last + 1, Bytes::new())], last)
    };
    case(2, future, Refusal::BadEntries, None);
}

#[test]
fn a_snapshot_whose_member_is_voter_and_learner_is_refused() {
    let snap = |n: &mut RawNode| {
        let t = term(n);
        let meta = SnapshotMeta {
            index: n.last_index() + 10,
            term: t,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![3],
                ..Default::default()
            },
        };
        let body = Body::Snapshot {
            meta,
            offset: 0,
            total: 4,
            data: Bytes::from_static(b"data"),
        };
        msg(1, 2, t, body)
    };
    case(2, snap, Refusal::BadSnapshot, Some("is voter and learner"));
}

#[test]
fn acks_beyond_the_log_and_unsent_rounds_are_refused_by_the_leader() {
    let ack = |n: &mut RawNode| {
        let body = Body::AppendResponse {
            index: n.last_index() + 100,
            reject: None,
        };
        msg(2, 1, term(n), body)
    };
    case(1, ack, Refusal::AckBeyondLog, Some("no snapshot to send"));
    // Would confirm pending reads that no quorum confirmed.
    let round = |n: &mut RawNode| msg(2, 1, term(n), Body::HeartbeatResponse { ctx: 1 << 40 });
    case(1, round, Refusal::FutureRound, None);
}

#[test]
fn senders_terms_and_read_answers_are_checked() {
    let own = |n: &mut RawNode| {
        let body = Body::Vote {
            pre: false,
            last_index: 100,
            last_term: 100,
            transfer: true,
        };
        msg(2, 2, term(n) + 1, body)
    };
    case(2, own, Refusal::BadSender, Some("never sends to itself"));
    let no_term = |_: &mut RawNode| msg(1, 2, 0, Body::Heartbeat { commit: 0, ctx: 0 });
    case(2, no_term, Refusal::BadTerm, None);
    let read = |n: &mut RawNode| {
        let body = Body::ReadIndexResponse {
            index: 1,
            ctx: Bytes::new(),
            rejected: false,
        };
        msg(3, 2, term(n), body)
    };
    case(2, read, Refusal::SecondLeader, None);
    let elsewhere = |n: &mut RawNode| msg(1, 3, term(n), Body::Heartbeat { commit: 0, ctx: 0 });
    case(2, elsewhere, Refusal::Misaddressed, None);
}

#[test]
fn what_the_protocol_sends_passes() {
    // Everything the elected group exchanges while it works passes the
    // check (the check must not refuse real traffic).
    let mut c = elected();
    for i in 0..20 {
        c.node(1).propose(Bytes::from(format!("w{i}"))).unwrap();
        c.stabilize(&[]);
        c.tick(1, 1);
        c.stabilize(&[]);
    }
    let checked = c.take_trace();
    assert!(!checked.is_empty());
}
