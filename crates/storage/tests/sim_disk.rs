//! The simulated disk itself: what a crash keeps and loses.

use std::path::{Path, PathBuf};

use concord_storage::{CrashMode, Disk, DiskFile, SimDisk, SimFile};

fn file(disk: &SimDisk, name: &str) -> (PathBuf, SimFile) {
    let dir = PathBuf::from("/d");
    disk.create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let f = disk.create(&path).unwrap();
    (path, f)
}

#[test]
fn crash_loses_unsynced_writes_and_names() {
    let disk = SimDisk::new(1);
    let (path, mut f) = file(&disk, "a");
    f.write_at(0, b"hello").unwrap();
    f.sync().unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    f.write_at(5, b" world").unwrap();
    let (other, _g) = file(&disk, "b");
    disk.crash();
    assert!(f.len().is_err(), "handles are stale after a crash");
    assert_eq!(disk.contents(&path).unwrap(), b"hello");
    assert!(disk.contents(&other).is_none(), "unsynced create is lost");
}

#[test]
fn synced_data_without_dir_sync_is_lost_with_its_name() {
    let disk = SimDisk::new(2);
    let (path, mut f) = file(&disk, "a");
    f.write_at(0, b"x").unwrap();
    f.sync().unwrap();
    disk.crash();
    assert!(disk.contents(&path).is_none());
}

#[test]
fn rename_is_atomic_and_needs_dir_sync() {
    let disk = SimDisk::new(3);
    let (tmp, mut f) = file(&disk, "a.tmp");
    f.write_at(0, b"data").unwrap();
    f.sync().unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    let dst = PathBuf::from("/d/a");
    disk.rename(&tmp, &dst).unwrap();
    disk.crash();
    assert_eq!(disk.contents(&tmp).unwrap(), b"data");
    assert!(disk.contents(&dst).is_none());
    disk.rename(&tmp, &dst).unwrap();
    disk.sync_dir(Path::new("/d")).unwrap();
    disk.crash();
    assert_eq!(disk.contents(&dst).unwrap(), b"data");
}

#[test]
fn torn_write_keeps_a_prefix() {
    let mut saw_partial = false;
    for seed in 0..20 {
        let disk = SimDisk::new(seed);
        disk.set_crash_mode(CrashMode::TearLastWrite);
        let (path, mut f) = file(&disk, "a");
        f.sync().unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        f.write_at(0, b"abcdefgh").unwrap();
        disk.crash();
        let got = disk.contents(&path).unwrap();
        assert!(b"abcdefgh".starts_with(&got), "{got:?}");
        saw_partial |= !got.is_empty() && got.len() < 8;
    }
    assert!(saw_partial);
}

#[test]
fn scheduled_crash_takes_the_disk_down() {
    let disk = SimDisk::new(4);
    let (_path, mut f) = file(&disk, "a");
    disk.crash_after_ops(2);
    f.write_at(0, b"1").unwrap();
    assert!(f.write_at(1, b"2").is_err());
    assert!(disk.is_down());
    assert!(disk.list_dir(Path::new("/d")).is_err());
    disk.restart();
    assert!(disk.list_dir(Path::new("/d")).unwrap().is_empty());
}
