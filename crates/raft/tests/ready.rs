//! The `Ready` contract as an application meets it: `advance` needs
//! nothing back from the public fields, and `must_sync` tells a write
//! that must be fsynced from one that may wait for a later fsync.

use bytes::Bytes;
use concord_raft::{Config, RawNode, Ready, Role};

/// A single-member group that has elected itself.
fn leader() -> RawNode {
    let mut n = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
    drain(&mut n);
    n.campaign();
    drain(&mut n);
    assert!(n.is_leader());
    n
}

fn drain(n: &mut RawNode) {
    while n.has_ready() {
        let rd = n.ready();
        handle(n, rd);
    }
}

/// Handles a `Ready` the way a driver that moves everything out does.
fn handle(n: &mut RawNode, mut rd: Ready) -> (bool, Vec<u64>) {
    let sync = rd.must_sync();
    let _entries = std::mem::take(&mut rd.entries);
    let _messages = std::mem::take(&mut rd.messages);
    let _ = rd.persisted();
    let applied: Vec<u64> = std::mem::take(&mut rd.committed_entries)
        .iter()
        .map(|e| e.index)
        .collect();
    rd.hard_state = None;
    rd.soft_state = None;
    n.advance(rd);
    (sync, applied)
}

#[test]
fn advance_reads_nothing_back_and_commit_only_writes_need_no_fsync() {
    let mut n = leader();
    let applied_before = n.status().applied;
    n.propose(Bytes::from_static(b"x")).unwrap();
    // The new entry: written and fsynced (the leader counts itself after).
    let rd = n.ready();
    assert_eq!(rd.entries.len(), 1);
    let (sync, _) = handle(&mut n, rd);
    assert!(sync, "new entries must be fsynced");
    // Its commit: a hard state that only moves the commit index, and the
    // entry to apply.
    let rd = n.ready();
    let hs = rd.hard_state.expect("commit moved");
    assert!(rd.entries.is_empty() && rd.snapshot.is_none());
    assert!(rd.must_persist() && !rd.must_sync());
    let (_, applied) = handle(&mut n, rd);
    assert_eq!(applied, vec![applied_before + 1]);
    // Advanced from what was recorded, though every field was taken.
    let st = n.status();
    assert_eq!(st.applied, applied_before + 1);
    assert_eq!(st.hard_state, hs);
    assert_eq!(st.role, Role::Leader);
    assert!(
        !n.has_ready(),
        "the taken hard and soft states were recorded"
    );
}

#[test]
fn a_new_term_must_be_fsynced() {
    let mut n = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
    drain(&mut n);
    n.campaign();
    let rd = n.ready();
    assert!(rd.hard_state.is_some_and(|hs| hs.term == 2 && hs.vote == 1));
    assert!(rd.must_sync(), "a vote must be durable before it counts");
    handle(&mut n, rd);
}
