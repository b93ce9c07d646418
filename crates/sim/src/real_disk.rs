//! The production storage stack (`concord-storage`: the WAL and snapshot
//! files) over a simulated disk that loses unsynced writes on a crash. When a
//! run uses it, every node writes each `Ready` to a real WAL, fsyncs it when
//! the simulated fsync completes, and restarts by recovering the WAL and the
//! latest snapshot file.

use concord_raft::{InitialState, Ready, Snapshot};
use concord_storage::{
    SimDisk, SnapshotMark, SnapshotOptions, SnapshotStore, Wal, WalBatch, WalOptions,
};

use crate::storage::DurableLog;

/// The Raft group of the simulated cluster.
const GROUP: u64 = 1;
const WAL_DIR: &str = "/data/wal";
const SNAP_DIR: &str = "/data/snap";

/// One node's disk with the real WAL and snapshot store on it.
#[derive(Debug)]
pub struct RealDisk {
    disk: SimDisk,
    wal: Option<Wal<SimDisk>>,
    snaps: SnapshotStore<SimDisk>,
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: 256 * 1024,
        ..WalOptions::default()
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("storage: {e}")
}

impl RealDisk {
    /// A fresh, empty disk.
    pub fn new(seed: u64) -> Result<Self, String> {
        let disk = SimDisk::new(seed);
        let (wal, _) = Wal::open(disk.clone(), WAL_DIR, options()).map_err(err)?;
        let snaps =
            SnapshotStore::open(disk.clone(), SNAP_DIR, SnapshotOptions::default()).map_err(err)?;
        Ok(RealDisk {
            disk,
            wal: Some(wal),
            snaps,
        })
    }

    fn wal(&mut self) -> &mut Wal<SimDisk> {
        self.wal
            .as_mut()
            .expect("the WAL is open while the node runs")
    }

    /// Start writing `rd` (not yet synced). A snapshot from the leader is
    /// saved to its file first (the store syncs it itself).
    pub fn write(&mut self, rd: &Ready) -> Result<(), String> {
        if let Some(s) = &rd.snapshot {
            self.snaps.save(GROUP, s).map_err(err)?;
        }
        let batch = WalBatch::from_ready(GROUP, rd);
        if batch.is_empty() {
            return Ok(());
        }
        self.wal().append(&batch).map_err(err)
    }

    /// The simulated fsync completed.
    pub fn sync(&mut self) -> Result<(), String> {
        self.wal().sync().map_err(err)
    }

    /// The application made a snapshot: save it, then release the log before it.
    pub fn compact(&mut self, snap: &Snapshot) -> Result<(), String> {
        self.snaps.save(GROUP, snap).map_err(err)?;
        let mark = SnapshotMark {
            index: snap.meta.index,
            term: snap.meta.term,
        };
        self.wal().compact(GROUP, mark).map_err(err)?;
        Ok(())
    }

    /// Power loss: everything unsynced is gone.
    pub fn crash(&mut self) {
        self.wal = None;
        self.disk.crash();
    }

    /// Recover the WAL and the latest snapshot file. Returns the state to
    /// restart from and the latest snapshot.
    pub fn recover(&mut self, applied: u64) -> Result<(InitialState, Option<Snapshot>), String> {
        self.disk.restart();
        let (wal, rec) = Wal::open(self.disk.clone(), WAL_DIR, options()).map_err(err)?;
        self.wal = Some(wal);
        self.snaps = SnapshotStore::open(self.disk.clone(), SNAP_DIR, SnapshotOptions::default())
            .map_err(err)?;
        let snapshot = self.snaps.load_latest(GROUP).map_err(err)?;
        let log = rec.groups.get(&GROUP).cloned().unwrap_or_default();
        let applied = applied.max(snapshot.as_ref().map_or(0, |s| s.meta.index));
        let state = log
            .into_initial_state(GROUP, snapshot.clone(), applied)
            .map_err(err)?;
        // A snapshot file newer than the WAL's mark (saved just before a crash
        // that lost the batch carrying its mark) must be recorded first.
        if let Some(s) = &snapshot {
            let mark = SnapshotMark {
                index: s.meta.index,
                term: s.meta.term,
            };
            self.wal().record_snapshot(GROUP, mark).map_err(err)?;
        }
        Ok((state, snapshot))
    }
}

/// What the WAL recovered must hold everything the durable model says was
/// synced: the same hard state (or a later one that also reached the disk)
/// and every synced entry above the recovered snapshot.
pub fn check_recovery(node: u64, model: &DurableLog, got: &InitialState) -> Result<(), String> {
    let (m, g) = (model.hard_state, got.hard_state);
    if g.term < m.term || (g.term == m.term && m.vote != 0 && g.vote != m.vote) {
        return Err(format!(
            "storage recovery: node {node} recovered hard state {g:?}, synced {m:?}"
        ));
    }
    let snap = got.snapshot.as_ref().map_or(0, |s| s.meta.index);
    for e in model.entries.iter().filter(|e| e.index > snap) {
        let found = got.entries.iter().find(|x| x.index == e.index);
        if found != Some(e) {
            return Err(format!(
                "storage recovery: node {node} lost synced entry {}/{} (recovered {:?})",
                e.term,
                e.index,
                found.map(|x| (x.term, x.index))
            ));
        }
    }
    Ok(())
}
