//! The tricky cases of the Raft paper, as unit tests over the in-memory cluster:
//! Figure 7 (log repair), Figure 8 (commit rule), the vote restriction,
//! a stale leader meeting a higher term, and a split vote.

use bytes::Bytes;
use concord_raft::testkit::{Cluster, Filter, MemStorage};
use concord_raft::{ConfChange, ConfChangeStep, Config, Entry, EntryKind, HardState, NodeId, Role};

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id, 1);
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

/// Durable state whose log has the given terms after a bootstrap entry
/// adding voters `1..=n` at index 1.
fn storage_with_terms(n: u64, terms: &[u64], term: u64) -> MemStorage {
    let boot = ConfChange {
        changes: (1..=n).map(ConfChangeStep::AddVoter).collect(),
        joint: false,
    };
    let mut entries = vec![Entry {
        term: 1,
        index: 1,
        kind: EntryKind::ConfChange(boot),
        data: Bytes::new(),
    }];
    for (i, &t) in terms.iter().enumerate() {
        let index = i as u64 + 2;
        entries.push(Entry::normal(
            t,
            index,
            Bytes::from(format!("t{t}i{index}")),
        ));
    }
    MemStorage {
        hard_state: HardState {
            term,
            vote: 0,
            commit: 1,
        },
        entries,
        ..Default::default()
    }
}

fn log_terms(c: &Cluster, id: NodeId) -> Vec<u64> {
    c.members[&id]
        .storage
        .entries
        .iter()
        .map(|e| e.term)
        .collect()
}

fn role(c: &mut Cluster, id: NodeId) -> Role {
    c.node(id).status().role
}

fn commit(c: &mut Cluster, id: NodeId) -> u64 {
    c.node(id).status().hard_state.commit
}

/// Deliver only the messages whose recipient is in `to`; drop the rest.
fn deliver_only(c: &mut Cluster, from: NodeId, to: &[NodeId]) {
    for &t in to {
        c.deliver(Filter {
            from: Some(from),
            to: Some(t),
            drop: false,
        });
    }
    c.deliver(Filter {
        from: Some(from),
        to: None,
        drop: true,
    });
}

/// Figure 7: a new leader of term 8 repairs followers that are missing
/// entries, have extra uncommitted entries, or both.
#[test]
fn figure_7_leader_repairs_every_follower_log() {
    let leader = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[u64]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],          // (a) missing one
        &[1, 1, 1, 4],                         // (b) missing many
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],    // (c) one extra uncommitted
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
        &[1, 1, 1, 4, 4, 4, 4],                // (e) missing and extra
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],    // (f) long divergent suffix
    ];
    let mut c = Cluster::new();
    c.start_with(cfg(1), storage_with_terms(7, &leader, 7));
    for (i, terms) in followers.iter().enumerate() {
        let id = i as u64 + 2;
        c.start_with(cfg(id), storage_with_terms(7, terms, 7));
    }
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    assert_eq!(
        role(&mut c, 1),
        Role::Leader,
        "1 wins with votes of a, b, e, f"
    );
    assert_eq!(c.node(1).status().hard_state.term, 8);
    let want: Vec<u64> = [1]
        .iter()
        .chain(leader.iter())
        .chain([8].iter())
        .copied()
        .collect();
    for id in 1..=7 {
        assert_eq!(log_terms(&c, id), want, "log of member {id} after repair");
        assert_eq!(commit(&mut c, id), want.len() as u64);
    }
    c.assert_state_machines_agree();
}

/// Campaign at `id` until it wins with the votes of `voters` only. Returns
/// with the new leader's first appends queued (nothing else).
fn elect(c: &mut Cluster, id: NodeId, voters: &[NodeId]) {
    for _ in 0..5 {
        c.node(id).campaign();
        c.handle_ready(id);
        deliver_only(c, id, voters);
        for &v in voters {
            c.handle_ready(v);
        }
        for &v in voters {
            c.deliver(Filter {
                from: Some(v),
                to: Some(id),
                drop: false,
            });
        }
        c.queue.clear();
        if role(c, id) == Role::Leader {
            c.handle_ready(id);
            return;
        }
    }
    panic!("{id} could not win with {voters:?}");
}

/// Figure 8: an entry from an earlier term stored on a majority is not
/// committed by counting replicas; had it been, S5 could overwrite it.
#[test]
fn figure_8_old_term_entries_are_not_committed_by_counting() {
    let mut c = Cluster::new();
    let small = |id| {
        let mut c = cfg(id);
        c.max_size_per_msg = 1; // one entry per append, so we can place them exactly
        c
    };
    c.bootstrap(&[1, 2, 3, 4, 5], small);
    c.stabilize(&[]);

    // (a) S1 leads term 2 and replicates its entry at index 2 to S2 only.
    elect(&mut c, 1, &[2, 3]);
    deliver_only(&mut c, 1, &[2]);
    c.handle_ready(2);
    c.queue.clear();
    assert_eq!(log_terms(&c, 1), vec![1, 2]);
    assert_eq!(log_terms(&c, 2), vec![1, 2]);
    c.crash(1);

    // (b) S5 wins term 3 with votes of S3 and S4, appends at index 2, crashes.
    elect(&mut c, 5, &[3, 4]);
    c.queue.clear();
    assert_eq!(log_terms(&c, 5), vec![1, 3]);
    assert_eq!(log_terms(&c, 3), vec![1], "S5's entry reached nobody");
    c.crash(5);

    // (c) S1 restarts and wins term 4 with S2 and S3. Its term-4 entry goes
    // to S2 (which already has index 2); S3 gets only the term-2 entry.
    c.restart(1);
    c.stabilize(&[1]);
    elect(&mut c, 1, &[2, 3]);
    assert_eq!(c.node(1).status().hard_state.term, 4);
    for _ in 0..4 {
        deliver_only(&mut c, 1, &[2, 3]);
        c.handle_ready(2);
        c.handle_ready(3);
        c.deliver(Filter {
            from: Some(2),
            to: Some(1),
            drop: false,
        });
        c.deliver(Filter {
            from: Some(3),
            to: Some(1),
            drop: false,
        });
        if log_terms(&c, 3) == vec![1, 2] {
            break;
        }
        c.handle_ready(1);
    }
    c.handle_ready(1);
    c.queue.clear();
    assert_eq!(log_terms(&c, 1), vec![1, 2, 4]);
    assert_eq!(log_terms(&c, 2), vec![1, 2, 4]);
    assert_eq!(
        log_terms(&c, 3),
        vec![1, 2],
        "term-2 entry now on S1, S2, S3"
    );
    let matched: Vec<u64> = c
        .node(1)
        .status()
        .progress
        .iter()
        .map(|(_, p)| p.matched)
        .collect();
    assert_eq!(
        matched,
        vec![3, 3, 2, 0, 0],
        "the leader knows a majority holds index 2"
    );
    assert_eq!(
        commit(&mut c, 1),
        1,
        "index 2 is on a majority but from term 2: not committed"
    );

    // (d) S1 crashes; S5 can still win (its last term 3 beats S3's 2) and
    // overwrite index 2 on S2 and S3: it was never committed, so no harm.
    c.crash(1);
    c.restart(5);
    c.stabilize(&[5]);
    elect(&mut c, 5, &[3, 4]);
    c.stabilize(&[2, 3, 4, 5]);
    for id in [2, 3, 4, 5] {
        assert_eq!(
            log_terms(&c, id)[1],
            3,
            "member {id} has S5's entry at index 2"
        );
    }
    // Nothing that was committed was lost, and S1 is repaired when it returns.
    c.restart(1);
    c.tick(5, 1);
    c.stabilize(&[]);
    assert_eq!(log_terms(&c, 1)[1], 3);
    c.assert_state_machines_agree();
}

/// Figure 8 (e): once an entry of the leader's own term is on a majority,
/// it and everything before it are committed.
#[test]
fn figure_8_current_term_entry_commits_earlier_ones() {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3, 4, 5], cfg);
    c.stabilize(&[]);
    elect(&mut c, 1, &[2, 3]);
    deliver_only(&mut c, 1, &[2]);
    c.handle_ready(2);
    c.queue.clear();
    c.crash(1);
    c.restart(1);
    c.stabilize(&[1]);
    elect(&mut c, 1, &[2, 3]);
    // The term-3 entry reaches S2 and S3 together with the term-2 entry.
    c.stabilize(&[1, 2, 3]);
    assert_eq!(log_terms(&c, 3), vec![1, 2, 3]);
    assert_eq!(
        commit(&mut c, 1),
        3,
        "index 3 (term 3) commits, and index 2 with it"
    );
}

/// Section 5.4.1: a candidate whose log is behind cannot win.
#[test]
fn vote_restriction_rejects_a_stale_candidate() {
    let mut c = Cluster::new();
    c.start_with(cfg(1), storage_with_terms(3, &[2], 2));
    c.start_with(cfg(2), storage_with_terms(3, &[2, 2], 2));
    c.start_with(cfg(3), storage_with_terms(3, &[2, 2], 2));
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    assert_ne!(
        role(&mut c, 1),
        Role::Leader,
        "1's log is behind both voters"
    );
    c.node(2).campaign();
    c.stabilize(&[]);
    assert_eq!(role(&mut c, 2), Role::Leader);
    assert_eq!(log_terms(&c, 1), log_terms(&c, 2));
}

/// A leader cut off while the others elect a new one steps down on hearing
/// the higher term, and its uncommitted proposal is discarded.
#[test]
fn stale_leader_steps_down_and_loses_uncommitted_entries() {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], cfg);
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    c.partition(&[vec![1], vec![2, 3]]);
    c.node(1).propose(Bytes::from("lost")).unwrap();
    c.stabilize(&[]);
    c.node(2).campaign();
    c.stabilize(&[]);
    c.node(2).propose(Bytes::from("kept")).unwrap();
    c.stabilize(&[]);
    assert_eq!(
        role(&mut c, 1),
        Role::Leader,
        "1 has not heard of term 3 yet"
    );
    c.heal();
    c.tick(2, 1); // heartbeat from the new leader reaches the old one
    c.stabilize(&[]);
    assert_eq!(role(&mut c, 1), Role::Follower);
    assert_eq!(c.node(1).status().leader, 2);
    let applied: Vec<Bytes> = c.members[&1].storage.applied_data.clone();
    assert_eq!(applied, vec![Bytes::from("kept")]);
    c.assert_state_machines_agree();
}

/// Two candidates split four votes; nobody wins the term, and randomized
/// timeouts let one of them win a later term.
#[test]
fn split_vote_is_resolved_by_a_later_term() {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3, 4], cfg);
    c.stabilize(&[]);
    c.node(1).campaign();
    c.node(2).campaign();
    c.handle_ready(1);
    c.handle_ready(2);
    // 3 hears 1 first, 4 hears 2 first.
    c.deliver(Filter {
        from: Some(1),
        to: Some(3),
        drop: false,
    });
    c.deliver(Filter {
        from: Some(2),
        to: Some(4),
        drop: false,
    });
    c.stabilize(&[]);
    for id in 1..=4 {
        assert_ne!(role(&mut c, id), Role::Leader, "nobody has 3 of 4 votes");
    }
    let term = c.node(1).status().hard_state.term;
    for _ in 0..100 {
        for id in 1..=4 {
            c.tick(id, 1);
        }
        c.stabilize(&[]);
        if (1..=4).any(|id| role(&mut c, id) == Role::Leader) {
            break;
        }
    }
    let leaders: Vec<NodeId> = (1..=4)
        .filter(|&id| role(&mut c, id) == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert!(c.node(leaders[0]).status().hard_state.term > term);
}

/// A vote survives a crash: a restarted member does not vote twice in a term.
#[test]
fn persisted_vote_prevents_double_voting() {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], cfg);
    c.stabilize(&[]);
    c.node(1).campaign();
    c.handle_ready(1);
    c.deliver(Filter {
        from: Some(1),
        to: Some(3),
        drop: false,
    });
    c.handle_ready(3); // 3 persists its vote for 1
    c.queue.clear();
    c.crash(3);
    c.restart(3);
    assert_eq!(c.node(3).status().hard_state.vote, 1);
    // 2 campaigns in the same term as 1 did: 3 must refuse.
    c.crash(2);
    let mut s = c.crashed[&2].1.clone();
    s.hard_state.term = 1;
    c.crashed.remove(&2);
    c.start_with(cfg(2), s);
    c.stabilize(&[2]);
    c.node(2).campaign(); // term 2, the term 3 voted in for 1
    c.handle_ready(2);
    c.deliver(Filter {
        from: Some(2),
        to: Some(3),
        drop: false,
    });
    c.handle_ready(3);
    let resp: Vec<String> = c
        .queue
        .iter()
        .filter(|m| m.from == 3)
        .map(concord_raft::testkit::describe::message)
        .collect();
    assert_eq!(resp, vec!["3->2 MsgVoteResp term=2 rejected".to_string()]);
}
