//! Round trips over the real file system: write, reopen, same content; log
//! repair across reopen; compaction releases segments; refused batches change
//! nothing; a torn tail is truncated.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{random_op, Model, Op, Rng};
use concord_raft::{Entry, HardState};
use concord_storage::{
    DiskFile, FsDisk, SnapshotMark, StorageError, Wal, WalBatch, WalOptions, SEGMENT_HEADER_LEN,
};

fn small() -> WalOptions {
    WalOptions {
        segment_size: 8192,
        max_record_bytes: 2048,
        max_unsynced_bytes: 4096,
    }
}

fn entries(first: u64, n: u64, term: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| Entry::normal(term, i, Bytes::from(format!("e{i}t{term}"))))
        .collect()
}

fn batch(group: u64, first: u64, n: u64, term: u64) -> WalBatch {
    WalBatch {
        group,
        snapshot: None,
        entries: entries(first, n, term),
        hard_state: None,
    }
}

fn open(dir: &Path, opts: WalOptions) -> (Wal<FsDisk>, concord_storage::Recovered) {
    Wal::open(FsDisk, dir, opts).expect("open")
}

#[test]
fn batches_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let mut model = Model::default();
    let (mut wal, rec) = open(tmp.path(), small());
    assert!(rec.groups.is_empty() && rec.torn_tail.is_none());
    for i in 0..300 {
        let op = random_op(&mut rng, &model, 3, 300, 0);
        match &op {
            Op::Append(b) => wal.append(b).unwrap(),
            Op::Compact(..) => unreachable!(),
        }
        model.apply(&op);
        if i % 7 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.close().unwrap();
    let (wal, rec) = open(tmp.path(), small());
    assert_eq!(rec.groups, model.logs());
    assert!(rec.torn_tail.is_none());
    assert!(wal.segment_paths().len() > 2, "small segments rolled over");
    for (g, log) in &rec.groups {
        assert_eq!(wal.last_index(*g), Some(log.last_index()));
        assert_eq!(wal.hard_state(*g), Some(log.hard_state));
    }
    drop(wal);
    // And again: reopening is idempotent.
    let (_wal, rec2) = open(tmp.path(), small());
    assert_eq!(rec2.groups, rec.groups);
}

#[test]
fn hard_state_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    let hs = HardState {
        term: 5,
        vote: 2,
        commit: 0,
    };
    wal.append_sync(&WalBatch {
        hard_state: Some(hs),
        ..WalBatch::new(9)
    })
    .unwrap();
    drop(wal);
    // Many reopens roll segments; the hard state rides along in checkpoints.
    for _ in 0..3 {
        let (wal, rec) = open(tmp.path(), small());
        assert_eq!(rec.groups[&9].hard_state, hs);
        drop(wal);
    }
}

#[test]
fn log_repair_truncates_the_suffix_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 1, 10, 1)).unwrap();
    drop(wal);
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 6, 3, 2)).unwrap();
    drop(wal);
    let (mut wal, rec) = open(tmp.path(), small());
    let mut want = entries(1, 5, 1);
    want.extend(entries(6, 3, 2));
    assert_eq!(rec.groups[&1].entries, want);
    // Repair within one segment, then extend.
    wal.append(&batch(1, 8, 1, 3)).unwrap();
    wal.append(&batch(1, 9, 2, 3)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = open(tmp.path(), small());
    want.truncate(7);
    want.extend(entries(8, 3, 3));
    assert_eq!(rec.groups[&1].entries, want);
}

#[test]
fn compaction_releases_old_segments_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    let mut next = 1;
    while wal.segment_paths().len() < 6 {
        wal.append_sync(&batch(1, next, 20, 1)).unwrap();
        next += 20;
    }
    // Another group with a few entries in the first segment holds it back.
    let first_segment = wal.segment_paths()[0].clone();
    let last = next - 1;
    assert_eq!(
        wal.compact(
            1,
            SnapshotMark {
                index: last - 5,
                term: 1
            }
        )
        .unwrap(),
        5
    );
    assert!(!first_segment.exists(), "released segments are removed");
    assert_eq!(wal.segment_paths().len(), 1);
    wal.append_sync(&batch(2, 1, 3, 1)).unwrap();
    drop(wal);
    let (mut wal, rec) = open(tmp.path(), small());
    let g = &rec.groups[&1];
    assert_eq!(
        g.snapshot,
        Some(SnapshotMark {
            index: last - 5,
            term: 1
        })
    );
    assert_eq!(g.entries, entries(last - 4, 5, 1));
    assert_eq!(rec.groups[&2].entries, entries(1, 3, 1));
    // Group 2 has entries in the segment before the active one: compacting
    // group 1 alone cannot release it.
    for _ in 0..3 {
        wal.append_sync(&batch(1, next, 20, 1)).unwrap();
        next += 20;
    }
    let before = wal.segment_paths().len();
    assert_eq!(
        wal.compact(
            1,
            SnapshotMark {
                index: next - 1,
                term: 1
            }
        )
        .unwrap(),
        0
    );
    assert_eq!(
        wal.compact(2, SnapshotMark { index: 3, term: 1 }).unwrap(),
        before - 1
    );
    // Bad compactions are refused.
    assert!(wal.compact(1, SnapshotMark { index: 2, term: 1 }).is_err());
    assert!(wal
        .compact(
            1,
            SnapshotMark {
                index: next + 5,
                term: 1
            }
        )
        .is_err());
    assert!(wal.compact(7, SnapshotMark { index: 1, term: 1 }).is_err());
}

#[test]
fn invalid_batches_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 1, 5, 2)).unwrap();
    let hs = HardState {
        term: 3,
        vote: 1,
        commit: 2,
    };
    wal.append_sync(&WalBatch {
        hard_state: Some(hs),
        ..WalBatch::new(1)
    })
    .unwrap();
    let refused = [
        batch(1, 7, 1, 2), // gap
        batch(1, 6, 1, 1), // term goes back
        WalBatch {
            entries: vec![entries(6, 1, 2)[0].clone(), entries(8, 1, 2)[0].clone()],
            ..WalBatch::new(1)
        },
        WalBatch {
            hard_state: Some(HardState {
                term: 2,
                vote: 1,
                commit: 0,
            }),
            ..WalBatch::new(1)
        },
        WalBatch {
            hard_state: Some(HardState {
                term: 3,
                vote: 2,
                commit: 0,
            }),
            ..WalBatch::new(1)
        },
        WalBatch {
            snapshot: Some(SnapshotMark { index: 0, term: 1 }),
            ..WalBatch::new(1)
        },
    ];
    for b in &refused {
        let err = wal.append(b).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidBatch { group: 1, .. }),
            "{err}"
        );
    }
    let big = WalBatch {
        entries: vec![Entry::normal(2, 6, Bytes::from(vec![0u8; 4096]))],
        ..WalBatch::new(1)
    };
    assert!(matches!(
        wal.append(&big),
        Err(StorageError::TooLarge { .. })
    ));
    wal.sync().unwrap();
    assert_eq!(wal.last_index(1), Some(5));
    drop(wal);
    let (_, rec) = open(tmp.path(), small());
    assert_eq!(rec.groups[&1].entries, entries(1, 5, 2));
    assert_eq!(rec.groups[&1].hard_state, hs);
}

#[test]
fn installed_snapshot_discards_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 1, 5, 1)).unwrap();
    let install = WalBatch {
        group: 1,
        snapshot: Some(SnapshotMark { index: 3, term: 2 }),
        entries: entries(4, 2, 2),
        hard_state: Some(HardState {
            term: 2,
            vote: 0,
            commit: 3,
        }),
    };
    wal.append_sync(&install).unwrap();
    drop(wal);
    let (_, rec) = open(tmp.path(), small());
    let g = &rec.groups[&1];
    assert_eq!(g.snapshot, Some(SnapshotMark { index: 3, term: 2 }));
    assert_eq!(g.entries, entries(4, 2, 2));
}

#[test]
fn torn_tail_on_disk_is_truncated_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 1, 5, 1)).unwrap();
    let path = wal.segment_paths().last().unwrap().clone();
    drop(wal);
    // A half-written frame right after the last record: a plausible length,
    // then garbage, then the preallocated zeros.
    let data = std::fs::read(&path).unwrap();
    let end = data.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut file = concord_storage::Disk::open(&FsDisk, &path).unwrap();
    file.write_at(end as u64, &[100, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9])
        .unwrap();
    drop(file);
    let (_, rec) = open(tmp.path(), small());
    let torn = rec.torn_tail.expect("torn tail reported");
    assert_eq!((torn.path, torn.offset), (path.clone(), end as u64));
    assert_eq!(rec.groups[&1].entries, entries(1, 5, 1));
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        end as u64,
        "cut at the torn record"
    );
    assert!(end as u64 > SEGMENT_HEADER_LEN);
}

#[test]
fn batch_larger_than_a_record_is_split_and_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), small());
    wal.append_sync(&batch(1, 1, 5, 1)).unwrap();
    let big = WalBatch {
        group: 1,
        snapshot: None,
        entries: (3..60)
            .map(|i| Entry::normal(2, i, Bytes::from(vec![i as u8; 300])))
            .collect(),
        hard_state: Some(HardState {
            term: 2,
            vote: 1,
            commit: 2,
        }),
    };
    wal.append_sync(&big).unwrap();
    assert!(
        wal.segment_paths().len() > 1,
        "the split batch spans segments"
    );
    drop(wal);
    let (_, rec) = open(tmp.path(), small());
    let mut want = entries(1, 2, 1);
    want.extend(big.entries.iter().cloned());
    assert_eq!(rec.groups[&1].entries, want);
    assert_eq!(rec.groups[&1].hard_state, big.hard_state.unwrap());
}

#[test]
fn a_snapshot_newer_than_the_log_is_recorded_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small());
    wal.append_sync(&batch(1, 1, 5, 1)).unwrap();
    drop(wal);
    // Recovery found a snapshot file at index 9: entries after it would leave a gap.
    let (mut wal, _) = open(dir.path(), small());
    assert!(
        wal.append_sync(&batch(1, 10, 1, 2)).is_err(),
        "a gap is refused"
    );
    let mark = SnapshotMark { index: 9, term: 2 };
    wal.record_snapshot(1, mark).unwrap();
    wal.record_snapshot(1, mark).unwrap(); // idempotent
    wal.append_sync(&batch(1, 10, 2, 2)).unwrap();
    drop(wal);
    let (wal, rec) = open(dir.path(), small());
    let log = &rec.groups[&1];
    assert_eq!(log.snapshot, Some(mark));
    assert_eq!(
        log.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![10, 11]
    );
    assert_eq!(wal.last_index(1), Some(11));
}

/// Blocks allocated to the (only) segment file of `dir`.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".wal") {
            total += e.metadata().unwrap().blocks() * 512;
        }
    }
    total
}

#[test]
fn space_ahead_of_the_frames_is_written_not_left_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(tmp.path(), WalOptions::default());
    let sparse = allocated_bytes(tmp.path());
    wal.append_sync(&batch(1, 1, 3, 1)).unwrap();
    let after = allocated_bytes(tmp.path());
    // A 64 MiB segment created sparse holds only its header's block; after
    // the first sync the next MiB is written (zeros), so the next frames
    // overwrite allocated blocks.
    assert!(sparse < 64 << 10, "a new segment is sparse: {sparse} bytes");
    assert!(after >= 1 << 20, "zeros ahead of the frames: {after} bytes");
    // The zeros read as preallocated space: everything is recovered.
    drop(wal);
    let (_, rec) = open(tmp.path(), WalOptions::default());
    assert_eq!(rec.groups[&1].entries.len(), 3);
}
