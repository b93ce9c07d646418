//! Crash consistency: a process that aborts in the middle of applying
//! (after non-durable batches, a checkpoint, and a background checkpoint
//! that may be mid-write) leaves a store whose data is exactly the prefix of
//! the log up to its `applied_index()`, never less than the durable
//! checkpoint.

use bytes::Bytes;
use concord_mvcc::{Command, PutRequest, Store};

const DIR_VAR: &str = "CONCORD_MVCC_CRASH_DIR";
const CHECKPOINT_AT: u64 = 300;
/// Where the child starts a background checkpoint it never waits for.
const LAST_START_AT: u64 = 700;

fn entry(i: u64) -> Command {
    let key = Bytes::from(format!("k{}", i % 37));
    if i % 11 == 0 {
        Command::DeleteRange(concord_mvcc::DeleteRangeRequest {
            key,
            ..Default::default()
        })
    } else {
        Command::Put(PutRequest {
            key,
            value: Bytes::from(format!("v{i}")),
            ..Default::default()
        })
    }
}

/// The child: applies batches, checkpoints in the foreground at 200 and in
/// the background at 300 (collected at 500) and 700 (never collected), then
/// aborts without a clean shutdown. Does nothing when run as an ordinary
/// test.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let mut store = Store::open(std::path::Path::new(&dir).join("db")).unwrap();
    let mut i = 0;
    while i < 1000 {
        let batch: Vec<_> = (i + 1..=i + 50).map(|j| (j, entry(j))).collect();
        store.apply_batch(&batch).unwrap();
        i += 50;
        match i {
            200 => assert_eq!(store.checkpoint().unwrap(), 200),
            CHECKPOINT_AT | LAST_START_AT => store.start_checkpoint().unwrap(),
            500 => {
                store.wait_checkpoint().unwrap();
                assert_eq!(store.durable_applied_index(), CHECKPOINT_AT);
            }
            _ => {}
        }
    }
    std::process::abort();
}

#[test]
fn abort_leaves_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must abort");
    let store = Store::open(dir.path().join("db")).unwrap();
    let applied = store.applied_index();
    assert!(
        applied == CHECKPOINT_AT || applied == LAST_START_AT,
        "the backend is not at a checkpoint: {applied}"
    );
    // Replaying the log prefix into a fresh store gives the same hash.
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = Store::open(fresh_dir.path().join("db")).unwrap();
    let batch: Vec<_> = (1..=applied).map(|j| (j, entry(j))).collect();
    fresh.apply_batch(&batch).unwrap();
    assert_eq!(store.hash_kv(0).unwrap(), fresh.hash_kv(0).unwrap());
    // And the rest of the log replays on top of the crashed store.
    drop(store);
    let mut store = Store::open(dir.path().join("db")).unwrap();
    let all: Vec<_> = (1..=1000).map(|j| (j, entry(j))).collect();
    store.apply_batch(&all).unwrap();
    fresh.apply_batch(&all).unwrap();
    assert_eq!(store.applied_index(), 1000);
    assert_eq!(store.hash_kv(0).unwrap(), fresh.hash_kv(0).unwrap());
}
