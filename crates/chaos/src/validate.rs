//! The validators run after every run, on the records of the watchers,
//! lock holders and lease clients (`concord-check`'s watch, lock and lease
//! checks), and the faults a test may plant in those records to show that
//! each check can fail.

use std::path::Path;

use concord_check::{
    check_leases, check_locks, check_watch, FinalKv, Hold, LeaseLife, LeaseRead, LeaseVerdict,
    LockVerdict, WatchEntry, WatchLog, WatchVerdict,
};
use serde::Serialize;

use crate::verify::issued_writes;
use crate::workload::Op;

/// What the non-key-value clients recorded.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// One log per watcher.
    pub watches: Vec<WatchLog>,
    /// Every lock hold.
    pub holds: Vec<Hold>,
    /// Every lease's life.
    pub leases: Vec<LeaseLife>,
}

/// The validators' verdicts (in `report.json` as `checks`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdicts {
    /// One per watcher.
    pub watch: Vec<WatchVerdict>,
    /// Lock safety.
    pub locks: LockVerdict,
    /// Lease safety.
    pub leases: LeaseVerdict,
}

impl Verdicts {
    /// Every violation found, by every validator.
    pub fn violations(&self) -> Vec<String> {
        let watch = self.watch.iter().flat_map(|w| {
            w.violations
                .iter()
                .map(move |m| format!("watcher {}: {m}", w.watcher))
        });
        watch
            .chain(self.locks.violations.iter().map(|m| format!("lock: {m}")))
            .chain(self.leases.violations.iter().map(|m| format!("lease: {m}")))
            .collect()
    }
}

/// A fault planted in the records before validation, to show a check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// Watcher 0 loses the event of an acknowledged write.
    WatchGap,
    /// A second holder is recorded holding the lock with the first hold.
    LockOverlap,
    /// A key of an ended lease is read present after the end.
    LeaseRead,
}

/// Runs every validator. `finals` is the range read of the workload's keys
/// after the run.
pub fn validate(records: &Records, ops: &[Op], finals: &[FinalKv]) -> Verdicts {
    let writes = issued_writes(ops);
    Verdicts {
        watch: records
            .watches
            .iter()
            .map(|w| check_watch(w, &writes, finals))
            .collect(),
        locks: check_locks(&records.holds),
        leases: check_leases(&records.leases),
    }
}

/// Plants `plant` in `records` (see [`Plant`]).
pub fn plant(records: &mut Records, ops: &[Op], plant: Plant) {
    match plant {
        Plant::WatchGap => {
            let acked: Vec<(u64, &str)> = ops
                .iter()
                .filter(|o| o.acked_write())
                .filter_map(|o| Some((o.rev()?, o.writes().first()?.0)))
                .collect();
            if let Some(w) = records.watches.first_mut() {
                let hit = w.entries.iter().position(|e| {
                    matches!(e, WatchEntry::Event { rev, key, .. }
                        if acked.contains(&(*rev, key.as_str())))
                });
                w.entries.remove(hit.unwrap_or(0));
            }
        }
        Plant::LockOverlap => {
            if let Some(h) = records.holds.iter().find(|h| h.valid()).cloned() {
                records.holds.push(Hold {
                    holder: h.holder + 100,
                    token: h.token + 1,
                    ..h
                });
            }
        }
        Plant::LeaseRead => {
            if let Some(l) = records.leases.iter_mut().find(|l| l.ended.is_some()) {
                let at = l.ended.map_or(0, |e| e.1);
                l.reads.push(LeaseRead {
                    key: l.keys[0].clone(),
                    invoke: at + 1,
                    complete: at + 2,
                    present: true,
                });
            }
        }
    }
}

/// Writes the records into `dir`: `watch-N.jsonl` (one entry a line),
/// `locks.json`, `leases.json`.
pub fn write(dir: &Path, records: &Records) -> std::io::Result<()> {
    for w in &records.watches {
        let mut text = String::new();
        for e in &w.entries {
            text.push_str(&serde_json::to_string(e).expect("an entry serializes"));
            text.push('\n');
        }
        std::fs::write(dir.join(format!("watch-{}.jsonl", w.watcher)), text)?;
    }
    std::fs::write(dir.join("locks.json"), pretty(&records.holds))?;
    std::fs::write(dir.join("leases.json"), pretty(&records.leases))?;
    Ok(())
}

fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("records serialize")
}
