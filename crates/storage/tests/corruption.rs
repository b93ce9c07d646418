//! Flip bytes in, zero ranges of, and truncate WAL segments and snapshot
//! files at seeded random offsets. The WAL either recovers exactly a prefix
//! of what was written (a torn tail) or refuses to open with an error naming
//! the file and the byte offset; a snapshot is always detected on load.
//! Nothing panics and no wrong data comes back.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{random_op, Model, Op, Rng};
use concord_raft::{ConfState, Snapshot, SnapshotMeta};
use concord_storage::{
    FsDisk, GroupLog, SnapshotOptions, SnapshotStore, StorageError, Wal, WalOptions,
};

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 8192,
        max_record_bytes: 1024,
        max_unsynced_bytes: 2048,
    }
}

/// Write a WAL where every batch is synced; return its files and the logical
/// state after each batch (`states[k]` = after k batches).
/// File name -> content.
type Files = BTreeMap<String, Vec<u8>>;
/// `states[k]`: the logs after k batches.
type States = Vec<BTreeMap<u64, GroupLog>>;

fn build_wal(dir: &Path) -> (Files, States) {
    let (mut wal, _) = Wal::open(FsDisk, dir, opts()).unwrap();
    let mut rng = Rng::new(99);
    let mut model = Model::default();
    let mut states = vec![model.logs()];
    for _ in 0..120 {
        let op = random_op(&mut rng, &model, 2, 150, 0);
        let Op::Append(b) = &op else { unreachable!() };
        wal.append_sync(b).unwrap();
        model.apply(&op);
        states.push(model.logs());
    }
    assert!(wal.segment_paths().len() >= 4);
    drop(wal);
    let files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    (files, states)
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip,
    Zero,
    Truncate,
}

/// Damage one file at a random offset; returns (file name, offset, kind).
fn damage(rng: &mut Rng, files: &mut Files) -> (String, usize, Damage) {
    let names: Vec<String> = files.keys().cloned().collect();
    let name = names[rng.range(0, names.len() as u64 - 1) as usize].clone();
    let data = files.get_mut(&name).unwrap();
    // Favour the region holding records over the long run of preallocated zeros.
    let used = data
        .iter()
        .rposition(|&b| b != 0)
        .map_or(data.len(), |p| p + 64)
        .min(data.len());
    let limit = if rng.chance(80) { used } else { data.len() };
    let at = rng.range(0, limit as u64 - 1) as usize;
    let kind = [Damage::Flip, Damage::Zero, Damage::Truncate][rng.range(0, 2) as usize];
    match kind {
        Damage::Flip => {
            for k in 0..rng.range(1, 3) as usize {
                if let Some(b) = data.get_mut(at + k) {
                    *b ^= rng.range(1, 255) as u8;
                }
            }
        }
        Damage::Zero => {
            let end = (at + rng.range(1, 512) as usize).min(data.len());
            data[at..end].iter_mut().for_each(|b| *b = 0);
        }
        Damage::Truncate => data.truncate(at),
    }
    (name, at, kind)
}

#[test]
fn damaged_wal_recovers_a_prefix_or_refuses_with_file_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let (files, states) = build_wal(&base.path().join("orig"));
    let (mut refused, mut full, mut shorter) = (0, 0, 0);
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut files = files.clone();
        let (name, at, kind) = damage(&mut rng, &mut files);
        let dir = base.path().join(format!("run{seed}"));
        std::fs::create_dir(&dir).unwrap();
        for (n, data) in &files {
            std::fs::write(dir.join(n), data).unwrap();
        }
        let ctx = format!("seed {seed}: {kind:?} of {name} at {at}");
        match Wal::open(FsDisk, &dir, opts()) {
            Ok((_wal, rec)) => {
                let k = states.iter().rposition(|s| *s == rec.groups);
                let k = k.unwrap_or_else(|| panic!("{ctx}: recovered data that was never written"));
                if k == states.len() - 1 {
                    full += 1;
                } else {
                    shorter += 1;
                    assert!(
                        rec.torn_tail.is_some() || matches!(kind, Damage::Truncate),
                        "{ctx}"
                    );
                }
            }
            Err(StorageError::Corrupt {
                path,
                offset,
                reason,
            }) => {
                refused += 1;
                assert!(
                    path.starts_with(&dir),
                    "{ctx}: error names {}",
                    path.display()
                );
                let shown = StorageError::Corrupt {
                    path: path.clone(),
                    offset,
                    reason,
                }
                .to_string();
                assert!(shown.contains(&path.display().to_string()) && shown.contains("offset"));
            }
            Err(e) => panic!("{ctx}: unexpected error kind: {e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("refused {refused}, full {full}, shorter prefix {shorter}");
    assert!(
        refused > 0 && shorter > 0 && full > 0,
        "every outcome was exercised"
    );
}

#[test]
fn mid_log_corruption_names_file_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let (mut files, _) = build_wal(&base.path().join("orig"));
    let first = files.keys().next().unwrap().clone();
    files.get_mut(&first).unwrap()[200] ^= 0x40;
    let dir = base.path().join("bad");
    std::fs::create_dir(&dir).unwrap();
    for (n, data) in &files {
        std::fs::write(dir.join(n), data).unwrap();
    }
    let before: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let err = Wal::open(FsDisk, &dir, opts()).unwrap_err();
    let StorageError::Corrupt { path, offset, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, &dir.join(&first));
    assert!(*offset <= 200, "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    let after: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after, "a refused open changes nothing");
}

#[test]
fn damaged_snapshot_is_detected_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(FsDisk, tmp.path(), SnapshotOptions::default()).unwrap();
    let mut rng = Rng::new(5);
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: 42,
            term: 3,
            conf_state: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..Default::default()
            },
        },
        data: rng.bytes(10_000),
    };
    let info = store.save(1, &snap).unwrap();
    assert_eq!(store.load(1, 42).unwrap(), snap);
    let good = std::fs::read(&info.path).unwrap();
    for seed in 0..200 {
        let mut rng = Rng::new(seed);
        let mut files = BTreeMap::from([("s".to_string(), good.clone())]);
        let (_, at, kind) = damage(&mut rng, &mut files);
        let bad = &files["s"];
        if *bad == good {
            continue; // zeroing zeros changes nothing
        }
        std::fs::write(&info.path, bad).unwrap();
        match store.load(1, 42) {
            Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, info.path),
            Err(e) => panic!("seed {seed}: {kind:?} at {at}: unexpected error {e}"),
            Ok(_) => panic!("seed {seed}: {kind:?} at {at}: a damaged snapshot was trusted"),
        }
        assert!(store.load_latest(1).is_err());
    }
    let _ = Bytes::new();
}
