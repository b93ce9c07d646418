//! The real WAL over the simulated disk, crashed at random points: every
//! batch acknowledged as synced survives, and what is recovered is always the
//! acknowledged state plus a prefix of the unacknowledged operations.

mod common;

use std::path::Path;

use common::{random_op, Model, Op, Rng};
use concord_raft::{Entry, HardState};
use concord_storage::{CrashMode, Recovered, SimDisk, StorageError, Wal, WalBatch, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        max_record_bytes: 1024,
        max_unsynced_bytes: 2048,
    }
}

const DIR: &str = "/wal";

fn open(disk: &SimDisk) -> Result<(Wal<SimDisk>, Recovered), StorageError> {
    Wal::open(disk.clone(), DIR, opts())
}

fn run(wal: &mut Wal<SimDisk>, op: &Op) -> Result<(), StorageError> {
    match op {
        Op::Append(b) => wal.append(b),
        Op::Compact(g, m) => wal.compact(*g, *m).map(|_| ()),
    }
}

#[test]
fn crash_loses_exactly_the_unsynced_batches() {
    let disk = SimDisk::new(7);
    let (mut wal, rec) = open(&disk).unwrap();
    assert!(rec.groups.is_empty());
    let mut rng = Rng::new(7);
    let mut model = Model::default();
    for _ in 0..40 {
        let op = random_op(&mut rng, &model, 2, 100, 0);
        run(&mut wal, &op).unwrap();
        model.apply(&op);
    }
    wal.sync().unwrap();
    let synced = model.clone();
    for _ in 0..5 {
        let op = random_op(&mut rng, &model, 2, 100, 0);
        run(&mut wal, &op).unwrap();
        model.apply(&op);
    }
    drop(wal);
    disk.crash();
    let (_wal, rec) = open(&disk).unwrap();
    assert_eq!(rec.groups, synced.logs());
    assert_ne!(rec.groups, model.logs(), "the unsynced batches are gone");
}

#[test]
fn torn_write_is_truncated_and_reported() {
    let mut torn = 0;
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        disk.set_crash_mode(if seed % 2 == 0 {
            CrashMode::TearLastWrite
        } else {
            CrashMode::TearWithGarbage
        });
        let (mut wal, _) = open(&disk).unwrap();
        let batch = |first: u64, n: u64| WalBatch {
            group: 1,
            snapshot: None,
            entries: (first..first + n)
                .map(|i| Entry::normal(1, i, vec![i as u8; 200].into()))
                .collect(),
            hard_state: Some(HardState {
                term: 1,
                vote: 1,
                commit: first,
            }),
        };
        wal.append_sync(&batch(1, 3)).unwrap();
        let mut acked = Model::default();
        acked.apply(&Op::Append(batch(1, 3)));
        let mut with_next = acked.clone();
        with_next.apply(&Op::Append(batch(4, 3)));
        wal.append(&batch(4, 3)).unwrap();
        disk.crash_after_ops(1); // the write inside sync
        assert!(wal.sync().is_err());
        drop(wal);
        disk.restart();
        let (_wal, rec) = open(&disk).unwrap();
        assert!(
            rec.groups == acked.logs() || rec.groups == with_next.logs(),
            "seed {seed}: recovered something other than a prefix"
        );
        torn += rec.torn_tail.is_some() as u32;
    }
    assert!(torn > 0, "some crash must have torn the last write");
}

fn crash_rounds(seed: u64, mode: CrashMode, compact: u64) -> (u32, u32, u64) {
    let disk = SimDisk::new(seed);
    disk.set_crash_mode(mode);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let (mut wal, _) = open(&disk).unwrap();
    let mut acked = Model::default();
    let (mut torn, mut lost_unacked, mut released) = (0, 0, 0);
    for round in 0..6 {
        disk.crash_after_ops(rng.range(1, 250));
        let mut current = acked.clone();
        let mut unacked: Vec<Op> = Vec::new();
        for _ in 0..300 {
            let op = random_op(&mut rng, &current, 3, 150, compact);
            match run(&mut wal, &op) {
                Ok(()) => {
                    current.apply(&op);
                    if matches!(op, Op::Compact(..)) {
                        acked = current.clone();
                        unacked.clear();
                    } else {
                        unacked.push(op);
                    }
                }
                Err(e) => {
                    assert!(disk.is_down(), "seed {seed}: unexpected error {e}");
                    if matches!(op, Op::Compact(..)) {
                        unacked.push(op); // it may have reached the disk
                    }
                    break;
                }
            }
            if rng.chance(30) {
                if wal.sync().is_err() {
                    assert!(disk.is_down());
                    break;
                }
                acked = current.clone();
                unacked.clear();
            }
        }
        released += wal.stats().segments_released;
        drop(wal);
        if disk.is_down() {
            disk.restart();
        } else {
            disk.crash();
        }
        // Sometimes crash again during recovery itself.
        if rng.chance(30) {
            disk.crash_after_ops(rng.range(1, 6));
            if open(&disk).is_err() {
                assert!(disk.is_down());
            }
            disk.restart();
            disk.crash();
        }
        let mut candidates = vec![acked.clone()];
        for op in &unacked {
            let mut next = candidates.last().expect("non-empty").clone();
            next.apply(op);
            candidates.push(next);
        }
        let (w, rec) = open(&disk).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        let k = candidates.iter().position(|m| m.logs() == rec.groups);
        let k = k.unwrap_or_else(|| {
            panic!("seed {seed} round {round}: recovered state is not acked + a prefix")
        });
        torn += rec.torn_tail.is_some() as u32;
        lost_unacked += (k + 1 < candidates.len()) as u32;
        acked = Model::from_logs(&rec.groups);
        wal = w;
    }
    (torn, lost_unacked, released)
}

#[test]
fn random_crashes_keep_every_acknowledged_batch() {
    let (mut torn, mut lost, mut released) = (0, 0, 0);
    for seed in 0..150 {
        let mode = [
            CrashMode::LoseUnsynced,
            CrashMode::TearLastWrite,
            CrashMode::TearWithGarbage,
        ][seed as usize % 3];
        let compact = if seed % 2 == 0 { 3 } else { 0 };
        let (t, l, r) = crash_rounds(seed, mode, compact);
        torn += t;
        lost += l;
        released += r;
    }
    eprintln!(
        "torn tails {torn}, rounds that lost unacked work {lost}, segments released {released}"
    );
    assert!(released > 0, "compaction released segments between crashes");
    assert!(torn > 0, "torn tails were exercised");
    assert!(lost > 0, "crashes did lose unacknowledged work");
}

#[test]
fn compaction_releases_segments_on_the_simulated_disk() {
    let disk = SimDisk::new(3);
    let (mut wal, _) = open(&disk).unwrap();
    let mut rng = Rng::new(3);
    let mut model = Model::default();
    for _ in 0..200 {
        let op = random_op(&mut rng, &model, 1, 200, 0);
        run(&mut wal, &op).unwrap();
        model.apply(&op);
    }
    wal.sync().unwrap();
    let before = wal.segment_paths().len();
    assert!(before > 3, "small segments roll over");
    let g = &model.groups[&1];
    let last = g.last_index();
    let mark = concord_storage::SnapshotMark {
        index: last,
        term: g.entries[&last].term,
    };
    let released = wal.compact(1, mark).unwrap();
    model.apply(&Op::Compact(1, mark));
    assert_eq!(
        released,
        before - 1,
        "everything but the active segment goes"
    );
    let names = concord_storage::Disk::list_dir(&disk, Path::new(DIR)).unwrap();
    assert_eq!(names.len(), 1);
    drop(wal);
    disk.crash();
    let (_wal, rec) = open(&disk).unwrap();
    assert_eq!(rec.groups, model.logs());
}

#[test]
fn crash_inside_a_split_batch_keeps_a_prefix_of_it() {
    let opts = WalOptions {
        segment_size: 1 << 16,
        max_record_bytes: 1024,
        max_unsynced_bytes: 1 << 15,
    };
    let mut partial = 0;
    for seed in 0..40 {
        let disk = SimDisk::new(seed);
        disk.set_crash_mode(CrashMode::TearLastWrite);
        let (mut wal, _) = Wal::open(disk.clone(), DIR, opts.clone()).unwrap();
        let ents = |first: u64, n: u64, term: u64| -> Vec<Entry> {
            (first..first + n)
                .map(|i| Entry::normal(term, i, vec![i as u8; 100].into()))
                .collect()
        };
        let acked = WalBatch {
            group: 1,
            entries: ents(1, 10, 1),
            ..WalBatch::new(1)
        };
        wal.append_sync(&acked).unwrap();
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 5,
        };
        let big = WalBatch {
            group: 1,
            entries: ents(6, 40, 2),
            hard_state: Some(hs),
            snapshot: None,
        };
        wal.append(&big).unwrap();
        disk.crash_after_ops(1);
        assert!(wal.sync().is_err());
        drop(wal);
        disk.restart();
        let (_, rec) = Wal::open(disk.clone(), DIR, opts.clone()).unwrap();
        let log = &rec.groups[&1];
        let k = log
            .entries
            .len()
            .checked_sub(5)
            .expect("acked entries 1..=5 survive");
        assert_eq!(log.entries[..5], acked.entries[..5], "seed {seed}");
        if log.hard_state == hs {
            assert_eq!(
                log.entries[5..],
                big.entries[..k],
                "seed {seed}: a prefix of the batch"
            );
            partial += (k > 0 && k < big.entries.len()) as u32;
        } else {
            assert_eq!(
                log.entries, acked.entries,
                "seed {seed}: entries without their hard state"
            );
        }
    }
    assert!(partial > 0, "some crash kept part of the split batch");
}
