//! The group committer: concurrent submitters share fdatasyncs, a refused
//! batch fails alone, an I/O failure fails the round and poisons the WAL, and
//! acknowledged batches survive a crash.

use std::sync::Arc;

use bytes::Bytes;
use concord_raft::{Entry, HardState};
use concord_storage::{
    FsDisk, GroupCommit, GroupCommitOptions, SimDisk, SnapshotMark, StorageError, Wal, WalBatch,
    WalOptions,
};

fn one(group: u64, index: u64) -> WalBatch {
    WalBatch {
        group,
        snapshot: None,
        entries: vec![Entry::normal(
            1,
            index,
            Bytes::from(format!("{group}/{index}")),
        )],
        hard_state: Some(HardState {
            term: 1,
            vote: 0,
            commit: index,
        }),
    }
}

#[test]
fn concurrent_submitters_share_fsyncs_and_all_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(FsDisk, tmp.path(), WalOptions::default()).unwrap();
    let gc = Arc::new(GroupCommit::start(wal, GroupCommitOptions::default()).unwrap());
    let (threads, per_thread) = (16u64, 40u64);
    let handles: Vec<_> = (0..threads)
        .map(|g| {
            let gc = gc.clone();
            std::thread::spawn(move || {
                for i in 1..=per_thread {
                    gc.append(one(g, i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let gc = Arc::into_inner(gc).unwrap();
    let stats = gc.stats();
    assert_eq!(stats.batches, threads * per_thread);
    assert!(
        stats.rounds < stats.batches,
        "group commit shares syncs: {stats:?}"
    );
    let wal = gc.shutdown().unwrap();
    drop(wal);
    let (_, rec) = Wal::open(FsDisk, tmp.path(), WalOptions::default()).unwrap();
    for g in 0..threads {
        let log = &rec.groups[&g];
        assert_eq!(log.entries.len() as u64, per_thread);
        assert_eq!(log.hard_state.commit, per_thread);
    }
}

#[test]
fn queued_submissions_are_covered_by_few_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(FsDisk, tmp.path(), WalOptions::default()).unwrap();
    let gc = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    let acks: Vec<_> = (1..=200).map(|i| gc.submit(one(1, i)).unwrap()).collect();
    for ack in acks {
        ack.wait().unwrap();
    }
    let stats = gc.stats();
    assert_eq!(stats.batches, 200);
    assert!(stats.rounds <= 100, "{stats:?}");
}

#[test]
fn refused_batch_fails_alone() {
    let disk = SimDisk::new(1);
    let (wal, _) = Wal::open(disk.clone(), "/w", WalOptions::default()).unwrap();
    let gc = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    let ok1 = gc.submit(one(1, 1)).unwrap();
    let bad = gc.submit(one(1, 5)).unwrap(); // gap
    let ok2 = gc.submit(one(1, 2)).unwrap();
    ok1.wait().unwrap();
    assert!(matches!(
        bad.wait(),
        Err(StorageError::InvalidBatch { group: 1, .. })
    ));
    ok2.wait().unwrap();
    assert_eq!(
        gc.compact(1, SnapshotMark { index: 1, term: 1 }).unwrap(),
        0
    );
    let wal = gc.shutdown().unwrap();
    assert_eq!(wal.last_index(1), Some(2));
    assert_eq!(
        wal.snapshot_mark(1),
        Some(SnapshotMark { index: 1, term: 1 })
    );
}

#[test]
fn failed_sync_fails_the_round_and_poisons() {
    let disk = SimDisk::new(2);
    let (wal, _) = Wal::open(disk.clone(), "/w", WalOptions::default()).unwrap();
    let gc = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    gc.append(one(1, 1)).unwrap();
    disk.fail_next_sync();
    let err = gc.append(one(1, 2)).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(matches!(gc.append(one(1, 3)), Err(StorageError::Poisoned)));
    let wal = gc.shutdown().unwrap();
    assert!(wal.is_poisoned());
    drop(wal);
    disk.crash();
    let (_, rec) = Wal::open(disk, "/w", WalOptions::default()).unwrap();
    assert_eq!(
        rec.groups[&1].last_index(),
        1,
        "only the acknowledged batch is guaranteed"
    );
}

#[test]
fn acknowledged_batches_survive_a_crash_under_concurrency() {
    for seed in 0..5 {
        let disk = SimDisk::new(seed);
        let opts = WalOptions {
            segment_size: 8192,
            max_record_bytes: 1024,
            max_unsynced_bytes: 4096,
        };
        let (wal, _) = Wal::open(disk.clone(), "/w", opts.clone()).unwrap();
        let gc = Arc::new(GroupCommit::start(wal, GroupCommitOptions::default()).unwrap());
        disk.crash_after_ops(50 + seed * 37);
        let handles: Vec<_> = (0..8u64)
            .map(|g| {
                let gc = gc.clone();
                std::thread::spawn(move || {
                    let mut acked = 0;
                    for i in 1..=1000 {
                        if gc.append(one(g, i)).is_err() {
                            break;
                        }
                        acked = i;
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        drop(gc);
        assert!(disk.is_down(), "the scheduled crash happened");
        disk.restart();
        let (_, rec) = Wal::open(disk, "/w", opts).unwrap();
        for (g, &n) in acked.iter().enumerate() {
            let have = rec.groups.get(&(g as u64)).map_or(0, |l| l.last_index());
            assert!(
                have >= n,
                "seed {seed}: group {g} acknowledged {n}, recovered {have}"
            );
        }
    }
}

#[test]
fn inline_appends_keep_order_with_queued_ones_and_are_durable() {
    let disk = SimDisk::new(3);
    let (wal, _) = Wal::open(disk.clone(), "/w", WalOptions::default()).unwrap();
    let gc = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    // Queued batches not yet waited for: an inline append must not overtake
    // them (it would leave a gap, which the log refuses).
    let acks: Vec<_> = (1..=50).map(|i| gc.submit(one(1, i)).unwrap()).collect();
    gc.append_now(one(1, 51), true).unwrap();
    for ack in acks {
        ack.wait().unwrap();
    }
    // Idle writer: written on this thread; one sync each.
    let before = gc.stats();
    let disk_syncs = disk.syncs();
    for i in 52..=60 {
        gc.append_now(one(1, i), true).unwrap();
    }
    let after = gc.stats();
    assert_eq!(after.batches - before.batches, 9);
    assert_eq!(after.rounds - before.rounds, 9);
    assert_eq!(after.fdatasyncs - before.fdatasyncs, 9, "{after:?}");
    assert_eq!(disk.syncs() - disk_syncs, 9);
    // Unsynced inline appends are lost by a crash; synced ones are not.
    gc.append_now(one(1, 61), false).unwrap();
    let wal = gc.shutdown().unwrap();
    drop(wal);
    disk.crash();
    let (_, rec) = Wal::open(disk, "/w", WalOptions::default()).unwrap();
    let log = &rec.groups[&1];
    assert!(
        (60..=61).contains(&log.last_index()),
        "{}",
        log.last_index()
    );
    let indexes: Vec<u64> = log.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (1..=log.last_index()).collect::<Vec<_>>());
}

#[test]
fn inline_append_reports_refusals_and_poison() {
    let disk = SimDisk::new(4);
    let (wal, _) = Wal::open(disk.clone(), "/w", WalOptions::default()).unwrap();
    let gc = GroupCommit::start(wal, GroupCommitOptions::default()).unwrap();
    gc.append_now(one(1, 1), true).unwrap();
    assert!(matches!(
        gc.append_now(one(1, 5), true),
        Err(StorageError::InvalidBatch { group: 1, .. })
    ));
    disk.fail_next_sync();
    let err = gc.append_now(one(1, 2), true).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    assert!(matches!(gc.append(one(1, 3)), Err(StorageError::Poisoned)));
    assert!(matches!(
        gc.append_now(one(1, 3), true),
        Err(StorageError::Poisoned)
    ));
}
