//! Snapshot files: atomic save, verified load, pruning, chunked streaming to
//! a peer and chunked install, crash safety on the simulated disk.

use std::path::Path;

use bytes::Bytes;
use concord_raft::{ConfState, Snapshot, SnapshotMeta};
use concord_storage::{
    CrashMode, Disk, FsDisk, SimDisk, SnapshotOptions, SnapshotStore, StorageError,
};

fn snap(index: u64, term: u64, size: usize) -> Snapshot {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + index as usize) as u8).collect();
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf_state: ConfState {
                voters: vec![1, 2],
                voters_outgoing: vec![1, 2, 3],
                learners: vec![5],
                learners_next: vec![3],
            },
        },
        data: Bytes::from(data),
    }
}

fn names(disk: &impl Disk, dir: &Path) -> Vec<String> {
    disk.list_dir(dir).unwrap()
}

#[test]
fn save_load_list_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(FsDisk, tmp.path(), SnapshotOptions::default()).unwrap();
    assert_eq!(store.load_latest(1).unwrap(), None);
    for i in 1..=4 {
        store.save(1, &snap(i * 10, 1, 1000)).unwrap();
    }
    store.save(2, &snap(5, 1, 10)).unwrap();
    let list = store.list(1).unwrap();
    assert_eq!(
        list.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![30, 40],
        "keeps 2"
    );
    assert_eq!(store.load_latest(1).unwrap(), Some(snap(40, 1, 1000)));
    assert_eq!(store.load(1, 30).unwrap(), snap(30, 1, 1000));
    assert_eq!(store.load(2, 5).unwrap(), snap(5, 1, 10));
    assert!(matches!(
        store.load(1, 10),
        Err(StorageError::SnapshotNotFound { .. })
    ));
    assert_eq!(names(&FsDisk, tmp.path()).len(), 3);
}

#[test]
fn stream_in_chunks_and_install() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let opts = SnapshotOptions {
        max_chunk_bytes: 4096,
        ..Default::default()
    };
    let sender = SnapshotStore::open(FsDisk, a.path(), opts.clone()).unwrap();
    let receiver = SnapshotStore::open(FsDisk, b.path(), opts).unwrap();
    let original = snap(100, 4, 50_000);
    sender.save(3, &original).unwrap();
    let total = sender.file_len(3, 100).unwrap();
    let mut rx = receiver.receive(3).unwrap();
    let mut offset = 0;
    loop {
        let chunk = sender.read_chunk(3, 100, offset, 1 << 20).unwrap();
        assert!(chunk.len() <= 4096, "chunks are bounded");
        if chunk.is_empty() {
            break;
        }
        // A duplicate or out-of-order chunk is refused and changes nothing.
        if offset > 0 {
            assert!(matches!(
                rx.write_chunk(offset - 1, &chunk),
                Err(StorageError::ChunkOutOfOrder { .. })
            ));
        }
        rx.write_chunk(offset, &chunk).unwrap();
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, total);
    let info = rx.finish().unwrap();
    assert_eq!((info.group, info.index, info.term), (3, 100, 4));
    assert_eq!(receiver.load_latest(3).unwrap(), Some(original));
    assert!(names(&FsDisk, b.path())
        .iter()
        .all(|n| !n.ends_with(".tmp")));
}

#[test]
fn corrupt_or_foreign_install_is_refused_and_leaves_nothing() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sender = SnapshotStore::open(FsDisk, a.path(), SnapshotOptions::default()).unwrap();
    let receiver = SnapshotStore::open(FsDisk, b.path(), SnapshotOptions::default()).unwrap();
    sender.save(3, &snap(100, 4, 5000)).unwrap();
    let mut file = sender.read_chunk(3, 100, 0, u64::MAX).unwrap().to_vec();
    // A flipped bit in transit.
    file[2000] ^= 4;
    let mut rx = receiver.receive(3).unwrap();
    rx.write_chunk(0, &file).unwrap();
    let err = rx.finish().unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(
        names(&FsDisk, b.path()).is_empty(),
        "nothing installed, temp removed"
    );
    // An intact snapshot of another group.
    file[2000] ^= 4;
    let mut rx = receiver.receive(4).unwrap();
    rx.write_chunk(0, &file).unwrap();
    assert!(rx.finish().is_err());
    assert!(names(&FsDisk, b.path()).is_empty());
    // Too large.
    let small = SnapshotOptions {
        max_snapshot_bytes: 1000,
        ..Default::default()
    };
    let limited = SnapshotStore::open(FsDisk, b.path(), small).unwrap();
    let mut rx = limited.receive(3).unwrap();
    assert!(matches!(
        rx.write_chunk(0, &file),
        Err(StorageError::TooLarge { .. })
    ));
    drop(rx);
    assert!(
        names(&FsDisk, b.path()).is_empty(),
        "dropping a receiver removes its temp file"
    );
}

#[test]
fn crash_during_save_never_exposes_a_partial_snapshot() {
    let mut outcomes = [0u32; 2];
    for seed in 0..60 {
        let disk = SimDisk::new(seed);
        disk.set_crash_mode(if seed % 2 == 0 {
            CrashMode::TearLastWrite
        } else {
            CrashMode::LoseUnsynced
        });
        let dir = Path::new("/snap");
        let store = SnapshotStore::open(disk.clone(), dir, SnapshotOptions::default()).unwrap();
        store.save(1, &snap(10, 1, 3000)).unwrap();
        disk.crash_after_ops(1 + seed % 9);
        let saved = store.save(1, &snap(20, 2, 3000)).is_ok();
        drop(store);
        disk.restart();
        disk.crash();
        let store = SnapshotStore::open(disk.clone(), dir, SnapshotOptions::default()).unwrap();
        let latest = store
            .load_latest(1)
            .unwrap()
            .expect("the older snapshot at least");
        assert!(
            latest == snap(10, 1, 3000) || latest == snap(20, 2, 3000),
            "seed {seed}"
        );
        if saved {
            assert_eq!(
                latest,
                snap(20, 2, 3000),
                "seed {seed}: an acknowledged save is durable"
            );
        }
        outcomes[(latest.meta.index == 20) as usize] += 1;
        assert!(names(&disk, dir).iter().all(|n| !n.ends_with(".tmp")));
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_streamed_snapshot_is_the_file_save_writes() {
    use concord_storage::{FsDisk, SnapshotOptions, SnapshotStore};
    let dir = tempfile::tempdir().unwrap();
    let a = SnapshotStore::open(FsDisk, dir.path().join("a"), SnapshotOptions::default()).unwrap();
    let b = SnapshotStore::open(FsDisk, dir.path().join("b"), SnapshotOptions::default()).unwrap();
    let meta = concord_raft::SnapshotMeta {
        index: 42,
        term: 3,
        conf_state: concord_raft::ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        },
    };
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    a.save(
        7,
        &concord_raft::Snapshot {
            meta: meta.clone(),
            data: bytes::Bytes::from(data.clone()),
        },
    )
    .unwrap();
    let mut w = b.create(7, &meta).unwrap();
    for piece in data.chunks(12_345) {
        w.write(piece).unwrap();
    }
    let info = w.finish().unwrap();
    let saved = a.latest(7).unwrap().unwrap();
    assert_eq!(
        std::fs::read(&info.path).unwrap(),
        std::fs::read(&saved.path).unwrap()
    );
    let loaded = b.load(7, 42).unwrap();
    assert_eq!((loaded.meta, &loaded.data[..]), (meta.clone(), &data[..]));
    // Metadata and the data section, without reading the data.
    let (m, offset, len) = b.data_section(7, 42).unwrap();
    assert_eq!((m, len), (meta, data.len() as u64));
    let chunk = b.read_chunk(7, 42, offset + 1000, 10).unwrap();
    assert_eq!(&chunk[..], &data[1000..1010]);
    // An unfinished writer leaves nothing behind.
    let w = b
        .create(
            7,
            &concord_raft::SnapshotMeta {
                index: 50,
                ..Default::default()
            },
        )
        .unwrap();
    drop(w);
    assert_eq!(b.list(7).unwrap().len(), 1);
}
