//! The real WAL on the simulated disk, driven like the simulator drives it.

use concord_raft::{Config, RawNode};
use concord_sim::real_disk::RealDisk;

/// A single-member group that has elected itself, with every `Ready`
/// written and synced to `disk`.
fn leader_on(disk: &mut RealDisk) -> RawNode {
    let mut node = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
    for _ in 0..3 {
        while node.has_ready() {
            let mut rd = node.ready();
            disk.write(&rd).unwrap();
            disk.sync().unwrap();
            let _ = rd.persisted();
            node.advance(rd);
        }
        node.campaign();
    }
    assert!(node.is_leader());
    node
}

#[test]
fn synced_state_survives_a_crash() {
    let mut disk = RealDisk::new(1).unwrap();
    let node = leader_on(&mut disk);
    let before = node.status().hard_state;
    disk.crash();
    let (state, _) = disk.recover(0).unwrap();
    assert_eq!(state.hard_state, before);
    assert_eq!(state.entries.len() as u64, node.status().last_index);
}

#[test]
fn crash_with_an_unsynced_write_keeps_the_synced_ones() {
    for seed in 0..50 {
        let mut disk = RealDisk::new(seed).unwrap();
        let mut node = leader_on(&mut disk);
        let before = node.status().hard_state;
        node.propose(bytes::Bytes::from("unsynced")).unwrap();
        let rd = node.ready();
        disk.write(&rd).unwrap();
        disk.crash();
        let (state, _) = disk.recover(0).unwrap();
        assert_eq!(state.hard_state.term, before.term, "seed {seed}");
        assert!(
            state.entries.len() >= 2,
            "seed {seed}: {:?}",
            state.entries.len()
        );
    }
}

#[test]
fn recovery_check_catches_a_wal_that_was_never_synced() {
    use concord_sim::real_disk::check_recovery;
    use concord_sim::storage::DurableLog;
    let mut disk = RealDisk::new(3).unwrap();
    let mut node = RawNode::bootstrap(Config::new(1, 1), &[1]).unwrap();
    let mut model = DurableLog::default();
    while node.has_ready() {
        let mut rd = node.ready();
        disk.write(&rd).unwrap(); // written, but the fsync is "forgotten"
        model.persist(&rd); // while the model believes it is durable
        let _ = rd.persisted();
        node.advance(rd);
    }
    disk.crash();
    let (state, _) = disk.recover(0).unwrap();
    assert!(check_recovery(1, &model, &state).is_err());
}
